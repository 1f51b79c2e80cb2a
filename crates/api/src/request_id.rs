//! The one layer every request passes (three used to, each with its own boxed future): a
//! request id (echoed in `x-request-id` and in error bodies), the per-IP rate limit before
//! authentication, the body of OAuth-signed forms kept for the signature, the request metrics,
//! and one access-log line: method, route template, status, duration. Never headers, query
//! strings or bodies, which may carry credentials.

use std::fmt;
use std::time::Instant;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use crate::ratelimit::Group;

/// A process-random prefix and a counter: unique across nodes in practice, no system call and
/// no allocation per request.
#[derive(Clone, Copy, Debug)]
struct RequestId {
    prefix: u64,
    count: u64,
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: RequestId;
}

impl RequestId {
    fn next() -> Self {
        static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            prefix: *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0),
            count: COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// 32 lower-case hex digits.
    fn hex(self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'0'; 32];
        for (index, byte) in out.iter_mut().enumerate() {
            let (word, position) = if index < 16 {
                (self.prefix, 15 - index)
            } else {
                (self.count, 31 - index)
            };
            let nibble = (word >> (position * 4)) & 0xf;
            if let Some(digit) = DIGITS.get(usize::try_from(nibble).unwrap_or(0)) {
                *byte = *digit;
            }
        }
        out
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.prefix, self.count)
    }
}

/// The id of the request being served, or `-` outside of one.
pub fn current() -> String {
    REQUEST_ID
        .try_with(ToString::to_string)
        .unwrap_or_else(|_| "-".to_owned())
}

pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |info| info.0.ip());
    let group = Group::of(request.uri().path());
    edge(
        &state,
        request,
        peer,
        group,
        route.as_ref().map(MatchedPath::as_str),
        |request| next.run(request),
    )
    .await
}

/// What [`layer`] does around `inner`, for the router's routes and for the forward route,
/// which [`crate::App`] serves before the router. `group` is the request's rate-limit group
/// ([`Group::of`] its path; the forward shortcut knows it), `route` the template for the
/// access log.
pub(crate) async fn edge<F, Fut>(
    state: &AppState,
    request: Request,
    peer: IpAddr,
    group: Option<Group>,
    route: Option<&str>,
    inner: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let id = RequestId::next();
    let metrics_group = crate::metrics::group_name(group, request.uri().path());
    let method = request.method().clone();
    let started = Instant::now();
    let span = crate::tracing_export::ServerSpan::start(state, metrics_group, request.headers());
    let mut response = REQUEST_ID
        .scope(id, async {
            // Two `Host` fields name two targets; proxies in front may pick one and this
            // gateway the other (RFC 9112 3.2: a 400).
            if request
                .headers()
                .get_all(header::HOST)
                .iter()
                .nth(1)
                .is_some()
            {
                return ApiError::bad_request(
                    "duplicate_host",
                    "the request has more than one Host header field",
                )
                .into_response();
            }
            if let Err(refused) = crate::ratelimit::admit(state, group, peer, request.headers()) {
                return refused.into_response();
            }
            match crate::extract::keep_form_body(request).await {
                Ok(request) => crate::tracing_export::within(span.as_ref(), inner(request)).await,
                Err(refused) => refused,
            }
        })
        .await;
    if let Ok(value) = HeaderValue::from_bytes(&id.hex()) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if let Some(span) = span {
        span.finish(&method, route, status);
    }
    state.metrics().request(metrics_group, status, elapsed);
    tracing::info!(
        request_id = %id,
        method = %method,
        route = route.unwrap_or("<unmatched>"),
        status,
        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_form_is_the_display_form() {
        let id = RequestId {
            prefix: 0x0123_4567_89ab_cdef,
            count: 42,
        };
        assert_eq!(
            std::str::from_utf8(&id.hex()).unwrap(),
            id.to_string().as_str()
        );
        assert_eq!(id.to_string(), "0123456789abcdef000000000000002a");
    }
}
