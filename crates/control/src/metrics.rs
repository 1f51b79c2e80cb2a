//! The gateway's metrics, rendered in the Prometheus text format by [`Metrics::render`] (the
//! HTTP edge serves them at `/metrics`): requests by route group and status with latency
//! histograms; the forward path's upstream latency, connections by handshake kind (full or
//! resumed: requests minus connections is reuse) and failures by code; certificates by status
//! and seconds until each one expires; the routing snapshot's revision, reload count and age;
//! database and secret-store call latency and errors (recorded by those crates, see
//! `mtls_metrics::dependency_call`).
//!
//! Labels carry account ids, certificate ids and names (never secrets).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use mtls_metrics::{Counter, Family, Gauge, Histogram, header as help, label};

use crate::clock::Clock;

/// One live certificate as the expiry monitor last saw it.
#[derive(Clone, Debug)]
pub struct CertificateExpiry {
    pub account: String,
    pub id: i64,
    pub name: String,
    /// `Available`, `Expired` or `UnAvailable`.
    pub status: &'static str,
    pub not_after: i64,
}

/// The gateway's own metrics (the dependency calls are process-wide, in `mtls_metrics`).
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Family<(&'static str, u16), Histogram>,
    upstream: Histogram,
    forwarded: Counter,
    redirects: Counter,
    failures: Family<&'static str, Counter>,
    reloads: Counter,
    last_reload_millis: Gauge,
    certificates: RwLock<Option<Vec<CertificateExpiry>>>,
    /// Requests waiting for their chain and renewals in progress (SPEC 4.6), once counted.
    pending: RwLock<Option<(i64, i64)>>,
    /// The listeners' connections (recorded by the gateway's accept loops).
    pub connections: ConnectionMetrics,
    /// Cold identity loads, by stage (docs/forward.md, "Cold identities").
    identity_load: Family<&'static str, Histogram>,
}

impl Metrics {
    pub fn request(&self, group: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .with(&(group, status), |histogram| histogram.observe(elapsed));
    }

    /// An upstream call answered (headers received) after `elapsed`.
    pub fn upstream(&self, elapsed: Duration) {
        self.forwarded.add(1);
        self.upstream.observe(elapsed);
    }

    /// A same-origin redirect followed by a forward (its hop counted by [`Metrics::upstream`]).
    pub fn redirect_followed(&self) {
        self.redirects.add(1);
    }

    /// A forward failed with `code` (SPEC 7.4, or `egress_denied`).
    pub fn failure(&self, code: &'static str) {
        self.forwarded.add(1);
        self.failures.get(&code).add(1);
    }

    /// A relayed response body failed with `code` after its head had gone: a failure of a
    /// call already counted by [`Metrics::upstream`].
    pub fn body_failure(&self, code: &'static str) {
        self.failures.get(&code).add(1);
    }

    /// The routing snapshot was rebuilt (at `clock`'s now).
    pub fn reloaded(&self, clock: Clock) {
        self.reloads.add(1);
        self.last_reload_millis.set(clock.unix_millis());
    }

    /// What the expiry monitor found.
    pub fn set_certificates(&self, certificates: Vec<CertificateExpiry>) {
        *self
            .certificates
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(certificates);
    }

    /// The certificate requests still pending and the renewals in progress, over every account
    /// (`Store::pending_counts`).
    pub fn set_pending(&self, requests: i64, renewals: i64) {
        *self.pending.write().unwrap_or_else(PoisonError::into_inner) = Some((requests, renewals));
    }

    /// Every metric in the Prometheus text format, as of `clock`; `tracing` adds the span
    /// export's (the HTTP edge owns the exporter).
    pub fn render(
        &self,
        forwarder: &mtls_runtime::forward::Forwarder,
        routing: &mtls_runtime::RoutingTable,
        clock: Clock,
        tracing: impl FnOnce(&mut String),
    ) -> String {
        let mut out = String::with_capacity(8192);
        help(
            &mut out,
            "mtls_http_request_duration_seconds",
            "histogram",
            "Requests served, by route group and status.",
        );
        for ((group, status), histogram) in self.requests.snapshot() {
            histogram.render(
                "mtls_http_request_duration_seconds",
                &format!("group=\"{group}\",status=\"{status}\""),
                &mut out,
            );
        }
        help(
            &mut out,
            "mtls_forward_upstream_duration_seconds",
            "histogram",
            "Forward: time from sending to the target's response headers.",
        );
        self.upstream
            .render("mtls_forward_upstream_duration_seconds", "", &mut out);
        help(
            &mut out,
            "mtls_forward_requests_total",
            "counter",
            "Forward: upstream calls attempted.",
        );
        let _ = writeln!(out, "mtls_forward_requests_total {}", self.forwarded.get());
        help(
            &mut out,
            "mtls_forward_redirects_followed_total",
            "counter",
            "Forward: same-origin redirects followed by the gateway (each also an upstream call).",
        );
        let _ = writeln!(
            out,
            "mtls_forward_redirects_followed_total {}",
            self.redirects.get()
        );
        help(
            &mut out,
            "mtls_forward_failures_total",
            "counter",
            "Forward: failures by code (SPEC 7.4, egress_denied, and response_body_timeout: a response body cut after its head).",
        );
        for (code, counter) in self.failures.snapshot() {
            let _ = writeln!(
                out,
                "mtls_forward_failures_total{{code=\"{code}\"}} {}",
                counter.get()
            );
        }
        let connections = &forwarder.connections;
        help(
            &mut out,
            "mtls_forward_upstream_connections_total",
            "counter",
            "Forward: upstream connections opened, by TLS handshake (full, resumed, or none for http).",
        );
        for (kind, counter) in [
            ("full", &connections.full),
            ("resumed", &connections.resumed),
            ("none", &connections.plain),
        ] {
            let _ = writeln!(
                out,
                "mtls_forward_upstream_connections_total{{handshake=\"{kind}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        help(
            &mut out,
            "mtls_forward_identities_loaded",
            "gauge",
            "Forward: client identities (certificate + key) loaded in memory.",
        );
        let _ = writeln!(
            out,
            "mtls_forward_identities_loaded {}",
            forwarder.identity_count()
        );
        render_pool(forwarder, &mut out);
        self.render_runtime(routing, clock, &mut out);
        self.connections.render(&mut out);
        self.render_certificates(clock, &mut out);
        mtls_metrics::render_dependencies(&mut out);
        tracing(&mut out);
        self.render_identity_loads(&mut out);
        out
    }

    fn render_runtime(&self, routing: &mtls_runtime::RoutingTable, clock: Clock, out: &mut String) {
        let snapshot = routing.snapshot();
        help(
            out,
            "mtls_runtime_snapshot_revision",
            "gauge",
            "The global revision the routing snapshot was built from.",
        );
        let _ = writeln!(
            out,
            "mtls_runtime_snapshot_revision {}",
            snapshot.revision()
        );
        help(
            out,
            "mtls_runtime_snapshot_routes",
            "gauge",
            "Routes in the routing snapshot.",
        );
        let _ = writeln!(out, "mtls_runtime_snapshot_routes {}", snapshot.len());
        help(
            out,
            "mtls_runtime_snapshot_reloads_total",
            "counter",
            "Routing snapshot rebuilds.",
        );
        let _ = writeln!(
            out,
            "mtls_runtime_snapshot_reloads_total {}",
            self.reloads.get()
        );
        let last = self.last_reload_millis.get();
        if last > 0 {
            help(
                out,
                "mtls_runtime_snapshot_age_seconds",
                "gauge",
                "Time since the routing snapshot was last rebuilt.",
            );
            let age = clock.unix_millis().saturating_sub(last) as f64 / 1000.0;
            let _ = writeln!(out, "mtls_runtime_snapshot_age_seconds {age}");
        }
    }

    /// One stage of a cold identity's load took `elapsed`: `secret_store` (the read),
    /// `parse` (the PKCS#12 with its key derivations, on a blocking thread), `load` (both and
    /// the TLS client configuration, once per load however many requests waited on it), and
    /// `first_call` (the loading request's upstream call: connect, first handshake, answer).
    pub fn identity_stage(&self, stage: &'static str, elapsed: Duration) {
        self.identity_load
            .with(&stage, |histogram| histogram.observe(elapsed));
    }

    fn render_identity_loads(&self, out: &mut String) {
        help(
            out,
            "mtls_forward_identity_load_seconds",
            "histogram",
            "Forward: cold identity loads by stage (secret_store, parse, load, first_call); the load count is the number of secret reads and PKCS#12 parses.",
        );
        for (stage, histogram) in self.identity_load.snapshot() {
            histogram.render(
                "mtls_forward_identity_load_seconds",
                &format!("stage=\"{stage}\""),
                out,
            );
        }
    }

    fn render_certificates(&self, clock: Clock, out: &mut String) {
        let pending = *self.pending.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((requests, renewals)) = pending {
            help(
                out,
                "mtls_certificate_requests_pending",
                "gauge",
                "Certificate requests (keys made by the gateway) waiting for their signed chain.",
            );
            let _ = writeln!(out, "mtls_certificate_requests_pending {requests}");
            help(
                out,
                "mtls_certificate_renewals_pending",
                "gauge",
                "Certificate renewals in progress (pending or scheduled).",
            );
            let _ = writeln!(out, "mtls_certificate_renewals_pending {renewals}");
        }
        let certificates = self
            .certificates
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(certificates) = certificates.as_ref() else {
            return;
        };
        help(
            out,
            "mtls_certificates",
            "gauge",
            "Live certificates by status, as of the last expiry check.",
        );
        for status in ["Available", "Expired", "UnAvailable"] {
            let count = certificates
                .iter()
                .filter(|certificate| certificate.status == status)
                .count();
            let _ = writeln!(out, "mtls_certificates{{status=\"{status}\"}} {count}");
        }
        help(
            out,
            "mtls_certificate_expiry_seconds",
            "gauge",
            "Seconds until a certificate's notAfter (negative once expired).",
        );
        let now = i64::try_from(clock.unix_millis() / 1000).unwrap_or(i64::MAX);
        for certificate in certificates {
            let _ = writeln!(
                out,
                "mtls_certificate_expiry_seconds{{account=\"{}\",id=\"{}\",name=\"{}\"}} {}",
                label(&certificate.account),
                certificate.id,
                label(&certificate.name),
                certificate.not_after - now
            );
        }
    }
}

/// The listeners' connections: open now, refused by a cap, closed by a timeout.
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    open: std::sync::atomic::AtomicU64,
    accepted: Counter,
    refused: Family<&'static str, Counter>,
    timed_out: Family<&'static str, Counter>,
}

impl ConnectionMetrics {
    /// A connection was accepted and admitted; pair with [`ConnectionMetrics::closed`].
    pub fn opened(&self) {
        self.accepted.add(1);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                open.checked_sub(1)
            });
    }

    /// A connection closed at once by a cap (`total` or `per_ip`).
    pub fn refused(&self, cap: &'static str) {
        self.refused.get(&cap).add(1);
    }

    /// A connection closed by a timeout (`request_head` or `idle`).
    pub fn timed_out(&self, reason: &'static str) {
        self.timed_out.get(&reason).add(1);
    }

    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        help(
            out,
            "mtls_connections_open",
            "gauge",
            "Client connections open now, every listener together.",
        );
        let _ = writeln!(out, "mtls_connections_open {}", self.open());
        help(
            out,
            "mtls_connections_accepted_total",
            "counter",
            "Client connections accepted and admitted.",
        );
        let _ = writeln!(
            out,
            "mtls_connections_accepted_total {}",
            self.accepted.get()
        );
        help(
            out,
            "mtls_connections_refused_total",
            "counter",
            "Client connections closed at once by a cap (total or per_ip).",
        );
        for cap in ["total", "per_ip"] {
            let _ = writeln!(
                out,
                "mtls_connections_refused_total{{cap=\"{cap}\"}} {}",
                self.refused.with(&cap, Counter::get)
            );
        }
        help(
            out,
            "mtls_connections_timed_out_total",
            "counter",
            "Client connections closed by a timeout (request_head: no complete request head in time; idle: no request in flight for server.idle_timeout_seconds).",
        );
        for reason in ["request_head", "idle"] {
            let _ = writeln!(
                out,
                "mtls_connections_timed_out_total{{reason=\"{reason}\"}} {}",
                self.timed_out.with(&reason, Counter::get)
            );
        }
    }
}

/// The idle-connection caps and identity unloading (docs/forward.md, "Upstream connections").
fn render_pool(forwarder: &mtls_runtime::forward::Forwarder, out: &mut String) {
    let limits = &forwarder.idle_limits;
    for (name, kind, text, value) in [
        (
            "mtls_forward_idle_connections",
            "gauge",
            "Forward: idle upstream connections in the pools now.",
            u64::try_from(limits.idle.load(Ordering::Relaxed)).unwrap_or(u64::MAX),
        ),
        (
            "mtls_forward_idle_evicted_total",
            "counter",
            "Forward: idle upstream connections closed to stay within forward.max_idle_per_identity or forward.max_idle_total.",
            limits.evicted.load(Ordering::Relaxed),
        ),
        (
            "mtls_forward_identities_unloaded_total",
            "counter",
            "Forward: identities unloaded after forward.identity_idle_seconds without a request.",
            forwarder.unloaded.load(Ordering::Relaxed),
        ),
    ] {
        help(out, name, kind, text);
        let _ = writeln!(out, "{name} {value}");
    }
}
