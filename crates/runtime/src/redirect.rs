//! Redirects the forward path follows itself (SPEC 6.2, docs/forward.md "Redirects"): a 301,
//! 302, 303, 307 or 308 whose `Location`, resolved against the URL just called (RFC 3986
//! section 5), is on the same origin (scheme, host, port after SPEC 5.3 normalization), at
//! most [`MAX_HOPS`] times. Callers such as Node's `fetch` would otherwise follow a relayed
//! `Location` themselves: a relative one to the gateway's own path, an absolute one to the
//! target without the client certificate. Pure functions, and the request body's bounded copy
//! ([`Replay`]) that lets a 307/308 send the body again.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::{Method, StatusCode};

use crate::url::normalize;

/// Redirects followed for one call at most; the answer past them is relayed as is.
pub const MAX_HOPS: usize = 5;

/// The largest request body kept to be sent again on a 307/308.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// `forward.follow_redirects`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FollowRedirects {
    /// Same-origin redirects are followed (SPEC 6.2).
    #[default]
    SameOrigin,
    /// Every 3xx is relayed to the caller.
    Never,
}

/// How the next hop is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextMethod {
    /// 301/302/303: this method (GET, or HEAD for HEAD) without a body, and without the
    /// body's `Content-Length`, `Content-Type` and `Transfer-Encoding`.
    WithoutBody(Method),
    /// 307/308: the same method and the same body.
    Repeat,
}

/// What a 3xx means for the next hop, when it is one of the five followed ones.
pub fn next_method(status: StatusCode, method: &Method) -> Option<NextMethod> {
    match status.as_u16() {
        301..=303 => Some(NextMethod::WithoutBody(if method == Method::HEAD {
            Method::HEAD
        } else {
            Method::GET
        })),
        307 | 308 => Some(NextMethod::Repeat),
        _ => None,
    }
}

/// The origin of a URL [`normalize`] returned: `scheme://host[:port]`, lower case and without
/// the default port, so that two origins compare as text.
fn origin(normalized: &str) -> &str {
    let start = normalized.find("://").map_or(0, |at| at + 3);
    let end = normalized
        .get(start..)
        .and_then(|rest| rest.find(['/', '?']))
        .map_or(normalized.len(), |at| at + start);
    normalized.get(..end).unwrap_or(normalized)
}

/// Whether `a` and `b` (absolute URLs) are valid targets on the same origin.
pub fn same_origin(a: &str, b: &str) -> bool {
    match (normalize(a), normalize(b)) {
        (Ok((_, a)), Ok((_, b))) => origin(&a) == origin(&b),
        _ => false,
    }
}

/// Splits an absolute URL into (scheme with `:`, `//authority`, path, `?query` or empty).
fn parts(base: &str) -> Option<(&str, &str, &str, &str)> {
    let colon = base.find(':')?;
    let (scheme, rest) = base.split_at(colon + 1);
    let rest = rest.strip_prefix("//")?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = base.get(colon + 1..colon + 3 + authority_end)?;
    let tail = rest.get(authority_end..)?;
    let (path, query) = match tail.find('?') {
        Some(at) => tail.split_at(at),
        None => (tail, ""),
    };
    Some((scheme, authority, path, query))
}

/// RFC 3986 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let mut input = path;
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = input.get(2..).unwrap_or_default();
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") || input == "/.." {
            input = if input == "/.." {
                "/"
            } else {
                input.get(3..).unwrap_or_default()
            };
            output.pop();
        } else if input == "." || input == ".." {
            input = "";
        } else {
            // The first segment, with its leading slash, up to the next slash.
            let from = usize::from(input.starts_with('/'));
            let end = input
                .get(from..)
                .and_then(|rest| rest.find('/'))
                .map_or(input.len(), |at| at + from);
            let (segment, rest) = input.split_at(end);
            output.push(segment);
            input = rest;
        }
    }
    output.concat()
}

/// `location` (a `Location` value) resolved against `base` (the absolute URL that answered),
/// RFC 3986 section 5.2, without its fragment (never sent). `None` when it cannot be read.
pub fn resolve(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    let location = location
        .split_once('#')
        .map_or(location, |(before, _)| before);
    if location.bytes().any(|byte| byte <= b' ' || byte >= 0x7f) {
        return None;
    }
    let (scheme, authority, base_path, base_query) = parts(base)?;
    // A scheme: letters, digits, `+`, `-`, `.`, starting with a letter, before the first `:`
    // that comes before any `/`, `?`.
    let has_scheme = location
        .find([':', '/', '?'])
        .filter(|at| location.as_bytes().get(*at) == Some(&b':'))
        .and_then(|at| location.get(..at))
        .is_some_and(|scheme| {
            scheme
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        });
    if has_scheme {
        let (target_scheme, rest) = location.split_once(':')?;
        let rest = match rest.strip_prefix("//") {
            Some(after) => {
                let end = after.find(['/', '?']).unwrap_or(after.len());
                let (authority, tail) = after.split_at(end);
                let (path, query) = tail.split_at(tail.find('?').unwrap_or(tail.len()));
                format!("//{authority}{}{query}", remove_dot_segments(path))
            }
            None => return None,
        };
        return Some(format!("{target_scheme}:{rest}"));
    }
    if let Some(after) = location.strip_prefix("//") {
        let end = after.find(['/', '?']).unwrap_or(after.len());
        let (authority, tail) = after.split_at(end);
        let (path, query) = tail.split_at(tail.find('?').unwrap_or(tail.len()));
        return Some(format!(
            "{scheme}//{authority}{}{query}",
            remove_dot_segments(path)
        ));
    }
    let (path, query) = location.split_at(location.find('?').unwrap_or(location.len()));
    let (path, query) = if path.is_empty() {
        (
            base_path.to_owned(),
            if query.is_empty() { base_query } else { query },
        )
    } else if path.starts_with('/') {
        (remove_dot_segments(path), query)
    } else {
        // Merge (5.2.3): the base path up to its last slash, then the reference.
        let merged = match base_path.rfind('/') {
            Some(at) => format!("{}{path}", base_path.get(..=at).unwrap_or("/")),
            None => format!("/{path}"),
        };
        (remove_dot_segments(&merged), query)
    };
    Some(format!("{scheme}{authority}{path}{query}"))
}

/// The URL of the next hop, when `status` with `location` from `current` is a redirect the
/// gateway follows under `policy`: one of the five statuses, a `Location` that resolves to a
/// valid target on `current`'s origin.
pub fn follow(
    policy: FollowRedirects,
    status: StatusCode,
    current: &str,
    location: Option<&str>,
) -> Option<String> {
    if policy == FollowRedirects::Never || !matches!(status.as_u16(), 301..=303 | 307 | 308) {
        return None;
    }
    let next = resolve(current, location?)?;
    same_origin(current, &next).then_some(next)
}

/// The copy of the request body kept while it streams to the first target.
#[derive(Debug, Default)]
struct Copy {
    bytes: Vec<u8>,
    /// Past [`REPLAY_LIMIT`]: the copy is dropped and stays so.
    over: bool,
    /// The body ended (all of it went out, and the copy holds it unless `over`).
    complete: bool,
}

/// A request body that keeps a copy of what it hands on, up to [`REPLAY_LIMIT`], so that a
/// 307/308 can send it again; past the limit the copy is dropped (never more is held).
pub struct Replay<B> {
    inner: B,
    /// `None` for a body that was empty from the start: nothing to copy, nothing allocated.
    copy: Option<Arc<Mutex<Copy>>>,
}

impl<B> std::fmt::Debug for Replay<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay").finish_non_exhaustive()
    }
}

/// The handle to a [`Replay`]'s copy, kept by the sender.
#[derive(Clone, Debug)]
pub struct ReplayCopy(Option<Arc<Mutex<Copy>>>);

impl ReplayCopy {
    /// The whole body, when it has ended and was at most [`REPLAY_LIMIT`] bytes.
    pub fn body(&self) -> Option<Bytes> {
        let Some(copy) = &self.0 else {
            return Some(Bytes::new());
        };
        let copy = copy.lock().unwrap_or_else(PoisonError::into_inner);
        (copy.complete && !copy.over).then(|| Bytes::copy_from_slice(&copy.bytes))
    }
}

impl<B: Body> Replay<B> {
    /// `inner` with an empty copy (complete at once when `inner` has no body).
    pub fn new(inner: B) -> (Self, ReplayCopy) {
        if inner.is_end_stream() {
            return (Self { inner, copy: None }, ReplayCopy(None));
        }
        let copy = Arc::new(Mutex::new(Copy::default()));
        (
            Self {
                inner,
                copy: Some(Arc::clone(&copy)),
            },
            ReplayCopy(Some(copy)),
        )
    }
}

impl<B> Body for Replay<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let Some(shared) = &this.copy else {
            return polled;
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let mut copy = shared.lock().unwrap_or_else(PoisonError::into_inner);
                match frame.data_ref() {
                    Some(data) if !copy.over => {
                        let needed = copy.bytes.len().saturating_add(data.len());
                        if needed > REPLAY_LIMIT {
                            copy.over = true;
                            copy.bytes = Vec::new();
                        } else {
                            // Grown by doubling, but never past the limit: the copy's
                            // allocation, not only its length, stays within 64 KiB.
                            let capacity = copy.bytes.capacity();
                            if needed > capacity {
                                let target =
                                    needed.max(capacity.saturating_mul(2)).min(REPLAY_LIMIT);
                                let len = copy.bytes.len();
                                copy.bytes.reserve_exact(target.saturating_sub(len));
                            }
                            copy.bytes.extend_from_slice(data);
                        }
                    }
                    // Trailers cannot be sent again: no replay.
                    None => copy.over = true,
                    Some(_) => {}
                }
                // A sender that knows the length stops at the last byte without asking for
                // the end: the body's own word counts.
                if this.inner.is_end_stream() {
                    copy.complete = true;
                }
            }
            Poll::Ready(None) => {
                shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .complete = true;
            }
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn the_five_statuses_and_their_next_method() {
        let get = NextMethod::WithoutBody(Method::GET);
        for status in [301, 302, 303] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(next_method(status, &Method::POST), Some(get.clone()));
            assert_eq!(next_method(status, &Method::PUT), Some(get.clone()));
            assert_eq!(
                next_method(status, &Method::HEAD),
                Some(NextMethod::WithoutBody(Method::HEAD))
            );
        }
        for status in [307, 308] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(next_method(status, &Method::POST), Some(NextMethod::Repeat));
        }
        for status in [200, 300, 304, 305, 306, 309, 404] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(next_method(status, &Method::GET), None);
        }
    }

    #[test]
    fn rfc_3986_examples_resolve() {
        // RFC 3986 5.4.1 and 5.4.2 (fragments dropped; those with another scheme left out).
        let base = "http://a/b/c/d;p?q";
        for (reference, expected) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("https://b.example/x/../y", "https://b.example/y"),
        ] {
            assert_eq!(
                resolve(base, reference).as_deref(),
                Some(expected),
                "{reference}"
            );
        }
        assert_eq!(
            resolve("https://h.example", "next").as_deref(),
            Some("https://h.example/next")
        );
        assert_eq!(resolve(base, "/a b"), None, "a space");
        assert_eq!(resolve(base, "/caf\u{e9}"), None, "not ASCII");
    }

    #[test]
    fn origins_compare_after_normalization() {
        assert!(same_origin(
            "https://H.example:443/a",
            "HTTPS://h.example/b?c"
        ));
        assert!(same_origin(
            "https://h.example:8443/",
            "https://h.example:8443/x"
        ));
        assert!(!same_origin("https://h.example/", "http://h.example/"));
        assert!(!same_origin(
            "https://h.example/",
            "https://h.example:8443/"
        ));
        assert!(!same_origin("https://h.example/", "https://g.example/"));
        assert!(!same_origin(
            "https://h.example/",
            "https://h.example.evil/"
        ));
        assert!(!same_origin(
            "https://h.example/",
            "https://h.example@evil.example/"
        ));
        assert!(!same_origin("https://h.example/", "mailto:x@h.example"));
    }

    #[test]
    fn follow_takes_same_origin_redirects_only() {
        let here = "https://h.example:8443/a/b?x=1";
        let found = StatusCode::FOUND;
        assert_eq!(
            follow(FollowRedirects::SameOrigin, found, here, Some("c")).as_deref(),
            Some("https://h.example:8443/a/c")
        );
        assert_eq!(
            follow(
                FollowRedirects::SameOrigin,
                found,
                here,
                Some("https://H.example:8443/z")
            )
            .as_deref(),
            Some("https://H.example:8443/z")
        );
        assert_eq!(
            follow(
                FollowRedirects::SameOrigin,
                found,
                here,
                Some("//other.example/")
            ),
            None
        );
        assert_eq!(
            follow(
                FollowRedirects::SameOrigin,
                found,
                here,
                Some("https://h.example/")
            ),
            None
        );
        assert_eq!(follow(FollowRedirects::SameOrigin, found, here, None), None);
        assert_eq!(follow(FollowRedirects::Never, found, here, Some("c")), None);
        assert_eq!(
            follow(
                FollowRedirects::SameOrigin,
                StatusCode::NOT_MODIFIED,
                here,
                Some("c")
            ),
            None
        );
    }

    /// A body handing on one frame per buffer.
    struct Frames(std::vec::IntoIter<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.get_mut().0.next().map(|data| Ok(Frame::data(data))))
        }
    }

    #[tokio::test]
    async fn the_copy_holds_a_small_whole_body_only() {
        let body = |sizes: &[usize]| {
            let frames: Vec<Bytes> = sizes
                .iter()
                .map(|size| Bytes::from(vec![b'x'; *size]))
                .collect();
            Frames(frames.into_iter())
        };
        // Whole and small: kept.
        let (replay, copy) = Replay::new(body(&[1000, 24]));
        assert_eq!(copy.body(), None, "not yet sent");
        let sent = replay.collect().await.unwrap().to_bytes();
        assert_eq!(copy.body(), Some(sent));
        // Exactly at the limit: kept; one byte more: dropped.
        let (replay, copy) = Replay::new(body(&[REPLAY_LIMIT - 1, 1]));
        replay.collect().await.unwrap();
        assert_eq!(copy.body().map(|body| body.len()), Some(REPLAY_LIMIT));
        // Many small frames: the allocation never grows past the limit.
        let (replay, copy) = Replay::new(body(&[1000; 65]));
        replay.collect().await.unwrap();
        assert_eq!(copy.body().map(|body| body.len()), Some(65_000));
        assert!(copy.0.as_ref().unwrap().lock().unwrap().bytes.capacity() <= REPLAY_LIMIT);
        let (replay, copy) = Replay::new(body(&[REPLAY_LIMIT, 1, 10]));
        replay.collect().await.unwrap();
        assert_eq!(copy.body(), None);
        // Not finished: no replay.
        let (mut replay, copy) = Replay::new(body(&[10, 10]));
        replay.frame().await.unwrap().unwrap();
        assert_eq!(copy.body(), None);
        // No body at all: an empty replay, and no copy kept.
        let (_replay, copy) = Replay::new(http_body_util::Empty::<Bytes>::new());
        assert_eq!(copy.body(), Some(Bytes::new()));
        assert!(copy.0.is_none());
    }
}
