//! The one layer every request passes (three used to, each with its own boxed future): a
//! request id (the caller's valid `x-request-id`, else one made here; echoed in `x-request-id`
//! unless a relayed answer has its own, and in error bodies), the per-IP rate limit before
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

/// The id of one request: made here, or the caller's (SPEC 6.2).
#[derive(Clone, Debug)]
enum RequestId {
    /// A process-random prefix and a counter: unique across nodes in practice, no system call
    /// and no allocation per request.
    Made { prefix: u64, count: u64 },
    /// The caller's `x-request-id`, valid (see [`adoptable`]): its header value, shared with
    /// the request (a reference count, not a copy).
    Caller(HeaderValue),
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller id adopted (SPEC 6.2).
const MAX_CALLER_ID: usize = 128;

/// A caller's id is adopted when it is 1 to 128 visible ASCII characters (`%x21-7E`: no space,
/// no control character, nothing outside ASCII): it then goes into logs, the audit trail and
/// JSON bodies as is, and cannot forge a log line or break a column.
fn adoptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_CALLER_ID).contains(&bytes.len())
        && bytes.iter().all(|byte| (0x21..=0x7e).contains(byte))
}

tokio::task_local! {
    static REQUEST_ID: RequestId;
}

impl RequestId {
    fn next() -> Self {
        static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self::Made {
            prefix: *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0),
            count: COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The id of `request`: its one valid `x-request-id`, or a new one. An invalid id (too
    /// long, empty, a space, a control or non-ASCII character, or the field sent twice) is
    /// replaced in the request by the new id, so that a target the call is forwarded to sees
    /// the id the gateway logs, never the refused one. A request without the header is left
    /// alone and costs no allocation.
    fn of(request: &mut Request) -> Self {
        let mut values = request.headers().get_all(X_REQUEST_ID).iter();
        let (first, second) = (values.next(), values.next());
        match (first, second) {
            (None, _) => Self::next(),
            (Some(value), None) if adoptable(value) => Self::Caller(value.clone()),
            (Some(_), _) => {
                let made = Self::next();
                match made.header_value() {
                    Some(value) => {
                        request.headers_mut().insert(X_REQUEST_ID, value);
                    }
                    None => {
                        request.headers_mut().remove(X_REQUEST_ID);
                    }
                }
                made
            }
        }
    }

    /// The id as a header value (the made one's 32 lower-case hex digits).
    fn header_value(&self) -> Option<HeaderValue> {
        match self {
            Self::Made { prefix, count } => HeaderValue::from_bytes(&hex(*prefix, *count)).ok(),
            Self::Caller(value) => Some(value.clone()),
        }
    }
}

/// 32 lower-case hex digits: `prefix`, then `count`.
fn hex(prefix: u64, count: u64) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'0'; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        let (word, position) = if index < 16 {
            (prefix, 15 - index)
        } else {
            (count, 31 - index)
        };
        let nibble = (word >> (position * 4)) & 0xf;
        if let Some(digit) = DIGITS.get(usize::try_from(nibble).unwrap_or(0)) {
            *byte = *digit;
        }
    }
    out
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Made { prefix, count } => write!(f, "{prefix:016x}{count:016x}"),
            // Visible ASCII (checked when adopted), so `to_str` cannot fail.
            Self::Caller(value) => f.write_str(value.to_str().unwrap_or("-")),
        }
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
    mut request: Request,
    peer: IpAddr,
    group: Option<Group>,
    route: Option<&str>,
    inner: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let id = RequestId::of(&mut request);
    let metrics_group = crate::metrics::group_name(group, request.uri().path());
    let method = request.method().clone();
    let started = Instant::now();
    let span = crate::tracing_export::ServerSpan::start(state, metrics_group, request.headers());
    let mut response = REQUEST_ID
        .scope(id.clone(), async {
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
    // A relayed answer keeps the target's own id (SPEC 6.2); the gateway's own answers never
    // set one, so they always get this request's.
    if let header::Entry::Vacant(slot) = response.headers_mut().entry(X_REQUEST_ID)
        && let Some(value) = id.header_value()
    {
        slot.insert(value);
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
        let id = RequestId::Made {
            prefix: 0x0123_4567_89ab_cdef,
            count: 42,
        };
        assert_eq!(
            id.header_value().unwrap().to_str().unwrap(),
            id.to_string().as_str()
        );
        assert_eq!(id.to_string(), "0123456789abcdef000000000000002a");
    }

    fn request(values: &[&[u8]]) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        for value in values {
            request
                .headers_mut()
                .append(X_REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
        }
        request
    }

    #[test]
    fn a_valid_caller_id_is_adopted_and_left_in_the_request() {
        let longest = "a".repeat(128);
        for value in [
            "caller-trace-1",
            "0af7651916cd43dd8448eb211c80319c",
            "!~",
            longest.as_str(),
        ] {
            let mut request = request(&[value.as_bytes()]);
            let id = RequestId::of(&mut request);
            assert_eq!(id.to_string(), value);
            assert_eq!(request.headers()[X_REQUEST_ID], value);
        }
    }

    #[test]
    fn an_invalid_caller_id_is_replaced_by_a_made_one_everywhere() {
        let too_long = "a".repeat(129);
        for values in [
            vec![too_long.as_bytes()],
            vec![b"".as_slice()],
            vec![b"with space".as_slice()],
            vec![b"tab\there".as_slice()],
            vec!["caf\u{e9}".as_bytes()],
            vec![b"one".as_slice(), b"two".as_slice()],
        ] {
            let mut request = request(&values);
            let id = RequestId::of(&mut request);
            assert!(matches!(id, RequestId::Made { .. }), "{values:?}");
            let sent: Vec<_> = request.headers().get_all(X_REQUEST_ID).iter().collect();
            assert_eq!(sent, [&id.header_value().unwrap()], "{values:?}");
        }
        let mut without = request(&[]);
        assert!(matches!(
            RequestId::of(&mut without),
            RequestId::Made { .. }
        ));
        assert!(without.headers().get(X_REQUEST_ID).is_none());
    }
}
