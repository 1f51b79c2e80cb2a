//! Trace context and the optional OpenTelemetry export of mtls-gateway (docs/operations.md,
//! "Tracing"): W3C `traceparent` parsing, the spans the gateway makes (one server span per
//! request, one client span per upstream attempt), and their export as OTLP over HTTP
//! (protobuf) by a background task fed through a bounded queue, so that export never slows
//! or fails a request: when the queue is full, the span is dropped and counted.
//!
//! The crate knows nothing of HTTP requests: its callers decide what goes into a span, and
//! only names, ids, numbers and codes do (never a header value, a query string or a secret).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

pub mod context;
mod proto;

pub use context::TraceContext;

/// The span kinds the gateway makes (their `SpanKind` numbers in trace.proto).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Server = 2,
    Client = 3,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// One attribute: the keys are fixed names chosen in the code, never caller input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub key: &'static str,
    pub value: Value,
}

impl Attribute {
    pub fn text(key: &'static str, value: impl Into<String>) -> Self {
        Self {
            key,
            value: Value::Text(value.into()),
        }
    }

    pub fn int(key: &'static str, value: i64) -> Self {
        Self {
            key,
            value: Value::Int(value),
        }
    }

    pub fn micros(key: &'static str, value: Duration) -> Self {
        Self::int(key, i64::try_from(value.as_micros()).unwrap_or(i64::MAX))
    }

    pub fn bool(key: &'static str, value: bool) -> Self {
        Self {
            key,
            value: Value::Bool(value),
        }
    }
}

/// A finished span.
#[derive(Clone, Debug)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: Kind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<Attribute>,
    /// The span's status is `ERROR` (a 5xx answer, a failed upstream attempt).
    pub error: bool,
}

/// The export settings (`[tracing]`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The OTLP/HTTP traces URL, e.g. `http://collector:4318/v1/traces`.
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The share of new traces recorded (0 to 1); a caller's `traceparent` decides for its
    /// own trace by its sampled flag.
    pub sample_ratio: f64,
    /// Per export call.
    pub timeout: Duration,
    /// Most spans per export call.
    pub batch_size: usize,
    /// Most spans waiting for export; past it new spans are dropped (and counted).
    pub queue_capacity: usize,
    /// How long a batch waits to fill before it is sent anyway.
    pub flush_interval: Duration,
}

/// What the export has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Spans sent and accepted by the collector.
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Spans lost because an export call failed (refused, unreachable, timed out).
    pub failed: AtomicU64,
}

/// The exporter: the queue's sending end and the counters. Cheap to share.
#[derive(Debug)]
pub struct Exporter {
    queue: mpsc::Sender<Span>,
    /// `sample_ratio` as a threshold on 64 random bits.
    threshold: u64,
    pub counters: Arc<Counters>,
}

impl Exporter {
    /// Starts the background task that sends batches with `client` (which must ignore proxy
    /// variables and follow no redirect) on the current Tokio runtime (an error outside one).
    pub fn start(settings: Settings, client: reqwest::Client) -> Result<Arc<Self>, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the span exporter needs a Tokio runtime".to_owned())?;
        let (queue, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let ratio = settings.sample_ratio.clamp(0.0, 1.0);
        // Truncation is the intent: a ratio as a share of the 64-bit range.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let threshold = if ratio >= 1.0 {
            u64::MAX
        } else {
            (ratio * (u64::MAX as f64)) as u64
        };
        runtime.spawn(run(receiver, settings, client, Arc::clone(&counters)));
        Ok(Arc::new(Self {
            queue,
            threshold,
            counters,
        }))
    }

    /// Queues `span` for export; never waits. A full queue drops it (counted).
    pub fn record(&self, span: Span) {
        if self.queue.try_send(span).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether a new trace (no valid caller `traceparent`) is sampled.
    pub fn sample_new(&self) -> bool {
        self.threshold == u64::MAX || context::random_u64() <= self.threshold
    }
}

/// Collects batches (up to `batch_size` spans, or what came within `flush_interval` of the
/// first) and sends each; ends when every sender is gone.
async fn run(
    mut receiver: mpsc::Receiver<Span>,
    settings: Settings,
    client: reqwest::Client,
    counters: Arc<Counters>,
) {
    let batch_size = settings.batch_size.max(1);
    loop {
        let Some(first) = receiver.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::sleep(settings.flush_interval);
        tokio::pin!(deadline);
        let mut open = true;
        while batch.len() < batch_size {
            tokio::select! {
                next = receiver.recv() => match next {
                    Some(span) => batch.push(span),
                    None => {
                        open = false;
                        break;
                    }
                },
                () = &mut deadline => break,
            }
        }
        send(&client, &settings, &batch, &counters).await;
        if !open {
            return;
        }
    }
}

async fn send(client: &reqwest::Client, settings: &Settings, batch: &[Span], counters: &Counters) {
    let body = proto::export_request(&settings.service_name, batch);
    let count = u64::try_from(batch.len()).unwrap_or(u64::MAX);
    let answer = client
        .post(&settings.endpoint)
        .header("content-type", "application/x-protobuf")
        .timeout(settings.timeout)
        .body(body)
        .send()
        .await;
    match answer {
        Ok(response) if response.status().is_success() => {
            counters.exported.fetch_add(count, Ordering::Relaxed);
        }
        Ok(response) => {
            counters.failed.fetch_add(count, Ordering::Relaxed);
            tracing::warn!(
                status = response.status().as_u16(),
                spans = count,
                "the trace collector refused a batch"
            );
        }
        Err(error) => {
            counters.failed.fetch_add(count, Ordering::Relaxed);
            // Without the URL: reqwest's text would name the endpoint, which is configuration.
            let error = error.without_url();
            tracing::warn!(%error, spans = count, "cannot export spans");
        }
    }
}

tokio::task_local! {
    static SERVER: TraceContext;
}

/// Runs `work` as the request whose server span is `server` (its trace id and span id):
/// client spans made within it are its children.
pub async fn within<F: Future>(server: TraceContext, work: F) -> F::Output {
    SERVER.scope(server, work).await
}

/// The server span of the request being served, if tracing export is on.
pub fn server() -> Option<TraceContext> {
    SERVER.try_with(|server| *server).ok()
}
