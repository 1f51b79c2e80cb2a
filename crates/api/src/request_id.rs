//! The request id (the caller's valid `x-request-id`, else one made here), task-local while
//! the request is served: error bodies, logs and the audit trail name it ([`current`]). A leaf
//! module: [`crate::edge`] gives each request its id, everything else only reads it.

use std::fmt;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};

/// The id of one request: made here, or the caller's (SPEC 6.2).
#[derive(Clone, Debug)]
pub(crate) enum RequestId {
    /// A process-random prefix and a counter: unique across nodes in practice, no system call
    /// and no allocation per request.
    Made { prefix: u64, count: u64 },
    /// The caller's `x-request-id`, valid (see [`adoptable`]): its header value, shared with
    /// the request (a reference count, not a copy).
    Caller(HeaderValue),
}

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
    pub(crate) fn of(request: &mut Request) -> Self {
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
    pub(crate) fn header_value(&self) -> Option<HeaderValue> {
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
pub(crate) fn current() -> String {
    REQUEST_ID
        .try_with(ToString::to_string)
        .unwrap_or_else(|_| "-".to_owned())
}

/// Runs `future` as the request `id`'s: [`current`] names it within.
pub(crate) fn scope<F: Future>(
    id: RequestId,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<RequestId, F> {
    REQUEST_ID.scope(id, future)
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
