//! The gateway's spans (docs/operations.md, "Tracing"): a server span per request (made in
//! [`crate::request_id`]'s layer) and a client span per upstream attempt (made around
//! [`crate::routes::forward`]'s send), exported by [`mtls_otel::Exporter`] when
//! `[tracing] otlp_endpoint` is set. Off, each hook is one branch on an `Option`.
//!
//! What a span holds is fixed here, and only this: span and trace ids, the method, the route
//! template, the target's host and port, status codes, the gateway's error code, the stage
//! timings and whether the connection was reused. Never a header value, a path, a query
//! string, an account, a request id or anything secret.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use mtls_otel::{Attribute, Kind, Span, TraceContext};
use mtls_runtime::forward::ForwardBody;
use mtls_runtime::pool::{Stages, UpstreamBody};

use crate::AppState;
use crate::error::ApiError;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The caller's trace context: exactly one valid `traceparent` field, or none.
fn caller_context(headers: &HeaderMap) -> Option<TraceContext> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let first = values.next()?;
    if values.next().is_some() {
        // Two fields: W3C Trace Context says to treat the header as invalid.
        return None;
    }
    TraceContext::parse(first.as_bytes())
}

/// A request's server span, begun.
#[derive(Debug)]
pub(crate) struct ServerSpan {
    exporter: Arc<mtls_otel::Exporter>,
    context: TraceContext,
    parent: Option<[u8; 8]>,
    start: SystemTime,
    /// The clock the span's times are read from.
    clock: mtls_control::Clock,
}

impl ServerSpan {
    /// Begins the span when export is on: in the caller's trace when its `traceparent` is
    /// valid (as its child, sampled as it says), otherwise in a new trace (sampled by
    /// `tracing.sample_ratio`). Probes and scrapes (`group` `health` and `metrics`) get no
    /// span: they would flood the collector with traces nobody reads.
    pub(crate) fn start(state: &AppState, group: &str, headers: &HeaderMap) -> Option<Self> {
        let exporter = state.exporter()?;
        let clock = state.control().clock();
        if matches!(group, "health" | "metrics") {
            return None;
        }
        let caller = caller_context(headers);
        let context = TraceContext {
            trace_id: caller.map_or_else(mtls_otel::context::trace_id, |caller| caller.trace_id),
            span_id: mtls_otel::context::span_id(),
            sampled: caller.map_or_else(|| exporter.sample_new(), |caller| caller.sampled),
        };
        Some(Self {
            exporter: Arc::clone(exporter),
            context,
            parent: caller.map(|caller| caller.span_id),
            start: clock.time(),
            clock,
        })
    }

    /// The context client spans of this request descend from.
    pub(crate) fn context(&self) -> TraceContext {
        self.context
    }

    /// Ends the span: named by method and route template (the method alone when no route
    /// matched), with the status; a 5xx is an error.
    pub(crate) fn finish(self, method: &Method, route: Option<&str>, status: u16) {
        if !self.context.sampled {
            return;
        }
        let name = match route {
            Some(route) => format!("{method} {route}"),
            None => method.to_string(),
        };
        let mut attributes = vec![
            Attribute::text("http.request.method", method.as_str()),
            Attribute::int("http.response.status_code", i64::from(status)),
        ];
        if let Some(route) = route {
            attributes.push(Attribute::text("http.route", route));
        }
        self.exporter.record(Span {
            trace_id: self.context.trace_id,
            span_id: self.context.span_id,
            parent_span_id: self.parent,
            name,
            kind: Kind::Server,
            start: self.start,
            end: self.clock.time(),
            attributes,
            error: status >= 500,
        });
    }
}

/// Runs `work` within `span`'s context (client spans made in it are its children); without
/// a span, just `work`.
pub(crate) async fn within<F: Future>(span: Option<&ServerSpan>, work: F) -> F::Output {
    match span {
        Some(span) => mtls_otel::within(span.context(), work).await,
        None => work.await,
    }
}

/// An upstream attempt's client span, begun.
#[derive(Debug)]
pub(crate) struct ClientSpan {
    exporter: Arc<mtls_otel::Exporter>,
    context: TraceContext,
    parent: Option<[u8; 8]>,
    start: SystemTime,
    /// The clock the span's times are read from.
    clock: mtls_control::Clock,
    started: Instant,
    stages: Arc<Stages>,
    attributes: Vec<Attribute>,
}

impl ClientSpan {
    /// Begins the span when export is on, as a child of the request's server span, and makes
    /// it the target's parent: `traceparent` is replaced by one naming this span. A caller's
    /// `tracestate` goes on with it when the caller's `traceparent` was valid, and is dropped
    /// otherwise (it belongs to the trace the gateway did not continue).
    pub(crate) fn start(
        state: &AppState,
        request: &mut axum::http::Request<ForwardBody>,
    ) -> Option<Self> {
        let exporter = state.exporter()?;
        let clock = state.control().clock();
        let server = mtls_otel::server();
        let context = TraceContext {
            trace_id: server.map_or_else(mtls_otel::context::trace_id, |server| server.trace_id),
            span_id: mtls_otel::context::span_id(),
            sampled: server.map_or_else(|| exporter.sample_new(), |server| server.sampled),
        };
        if caller_context(request.headers()).is_none() {
            request.headers_mut().remove(TRACESTATE);
        }
        if let Ok(value) = HeaderValue::try_from(context.header()) {
            request.headers_mut().insert(TRACEPARENT, value);
        }
        let stages = Arc::new(Stages::default());
        request.extensions_mut().insert(Arc::clone(&stages));
        let uri = request.uri();
        let mut attributes = vec![Attribute::text(
            "http.request.method",
            request.method().as_str(),
        )];
        if let Some(host) = uri.host() {
            attributes.push(Attribute::text("server.address", host));
        }
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        attributes.push(Attribute::int("server.port", i64::from(port)));
        Some(Self {
            exporter: Arc::clone(exporter),
            context,
            parent: server.map(|server| server.span_id),
            start: clock.time(),
            clock,
            started: Instant::now(),
            stages,
            attributes,
        })
    }

    /// Ends the span with the attempt's outcome: the target's status, or the gateway's
    /// answer (status and error code: a SPEC 7.4 code for a 424); the stage timings.
    pub(crate) fn finish(mut self, outcome: &Result<axum::http::Response<UpstreamBody>, ApiError>) {
        if !self.context.sampled {
            return;
        }
        use std::sync::atomic::Ordering::Relaxed;
        let reused = self.stages.reused.load(Relaxed);
        self.attributes
            .push(Attribute::bool("mtls.connection.reused", reused));
        for (key, micros) in [
            (
                "mtls.stage.connect_us",
                self.stages.connect_micros.load(Relaxed),
            ),
            ("mtls.stage.tls_us", self.stages.tls_micros.load(Relaxed)),
        ] {
            // Zero: not reached, or no new connection was made.
            if micros > 0 {
                self.attributes.push(Attribute::int(
                    key,
                    i64::try_from(micros).unwrap_or(i64::MAX),
                ));
            }
        }
        let error = match outcome {
            Ok(response) => {
                self.attributes.push(Attribute::micros(
                    "mtls.stage.first_byte_us",
                    self.started.elapsed(),
                ));
                let status = response.status().as_u16();
                self.attributes.push(Attribute::int(
                    "http.response.status_code",
                    i64::from(status),
                ));
                status >= 500
            }
            Err(refused) => {
                // No response: the gateway's own answer, and its code.
                self.attributes.push(Attribute::int(
                    "mtls.answer.status_code",
                    i64::from(refused.status().as_u16()),
                ));
                self.attributes
                    .push(Attribute::text("error.type", refused.code()));
                true
            }
        };
        let name = self
            .attributes
            .first()
            .and_then(|method| match &method.value {
                mtls_otel::Value::Text(method) => Some(method.clone()),
                _ => None,
            })
            .unwrap_or_default();
        self.exporter.record(Span {
            trace_id: self.context.trace_id,
            span_id: self.context.span_id,
            parent_span_id: self.parent,
            name,
            kind: Kind::Client,
            start: self.start,
            end: self.clock.time(),
            attributes: self.attributes,
            error,
        });
    }
}
