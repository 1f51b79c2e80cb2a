//! `/metrics` (Prometheus text format): requests by route group and status with latency
//! histograms; the forward path's upstream latency, connections by handshake kind (full or
//! resumed: requests minus connections is reuse) and failures by code; certificates by status
//! and seconds until each one expires; the routing snapshot's revision, reload count and age;
//! database and secret-store call latency and errors (recorded by those crates, see
//! `mtls_metrics::dependency_call`).
//!
//! Labels carry account ids, certificate ids and names (never secrets). `metrics.bearer_token`
//! restricts the endpoint to scrapers that present it.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mtls_metrics::header as help;

use crate::AppState;
use crate::ratelimit::Group;

pub use mtls_control::metrics::{CertificateExpiry, ConnectionMetrics, Metrics};

/// The route group of a path (`group`: its rate-limit group), as the `group` label names it.
pub fn group_name(group: Option<Group>, path: &str) -> &'static str {
    match group {
        Some(Group::Configuration) => "configuration",
        Some(Group::Checks) => "checks",
        Some(Group::Forward) => "forward",
        Some(Group::Tester) => "tester",
        None if path == "/healthz" || path == "/readyz" => "health",
        None if path == "/metrics" => "metrics",
        None => "other",
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = state.metrics_token() {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::as_bytes);
        let matches = presented.is_some_and(|presented| {
            use sha2::Digest;
            // Compared as digests: the comparison's time does not depend on a shared prefix.
            sha2::Sha256::digest(presented) == sha2::Sha256::digest(expected.as_bytes())
        });
        if !matches {
            return crate::error::ApiError::from(mtls_auth::AuthError::Missing).into_response();
        }
    }
    let control = state.control();
    let body = control.metrics().render(
        control.forwarder(),
        control.routing(),
        control.clock(),
        |out| render_tracing(&state, out),
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The span export (only when `[tracing] otlp_endpoint` is set): spans exported, dropped
/// because the queue was full, and lost to failed export calls.
fn render_tracing(state: &AppState, out: &mut String) {
    let Some(exporter) = state.exporter() else {
        return;
    };
    help(
        out,
        "mtls_tracing_spans_total",
        "counter",
        "Tracing export: spans by outcome (exported; dropped: the queue was full; failed: the export call failed).",
    );
    let counters = &exporter.counters;
    for (outcome, counter) in [
        ("exported", &counters.exported),
        ("dropped", &counters.dropped),
        ("failed", &counters.failed),
    ] {
        let _ = writeln!(
            out,
            "mtls_tracing_spans_total{{outcome=\"{outcome}\"}} {}",
            counter.load(Ordering::Relaxed)
        );
    }
}
