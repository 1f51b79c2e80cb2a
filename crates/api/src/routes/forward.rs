//! Forward (SPEC 6.2): `/mtls/account/{accountId}` with `LP-forward-url`, for GET, POST, PUT,
//! PATCH, DELETE, HEAD and OPTIONS. The mapping is found in the routing snapshot; the upstream
//! call presents the mapped certificate through that identity's own client; bodies stream both
//! ways; same-origin redirects are followed (docs/forward.md, "Redirects"), others relayed;
//! transport failures are 424 (SPEC 7.4).

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use mtls_auth::AccountId;
use mtls_control::identities::{client_key, client_loaded};
use mtls_runtime::clock::{
    CallerFault, IdleBody, ResponseBodyTimeout, Stopped, Upload, UploadClock,
};
use mtls_runtime::forward::{ForwardBody, UpstreamClient, classify};
use mtls_runtime::pool::UpstreamBody;
use mtls_runtime::redirect::{self, FollowRedirects, NextMethod, Replay};
use mtls_runtime::{Route, normalize};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Authorized, Caller, Forward};

/// Headers that belong to one connection (RFC 9110 section 7.6.1) and never cross the gateway.
/// `name` is lower case, as a `HeaderName` is: the match compiles to a length switch.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

const LP_FORWARD_URL: HeaderName = HeaderName::from_static("lp-forward-url");
const LP_SERVICE_NAME: HeaderName = HeaderName::from_static("lp-service-name");
const LP_STOP: HeaderName = HeaderName::from_static("lp-stop-if-certificate-not-found");
const LP_AUTHORIZATION_OVERRIDE: HeaderName = HeaderName::from_static("lp-authorization-override");

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// [`hop_by_hop`] for a `Connection` token, in any case (`Keep-Alive` is common), without
/// allocating: the longest hop-by-hop name has 19 letters.
fn hop_by_hop_token(token: &str) -> bool {
    let mut lower = [0u8; 19];
    match lower.get_mut(..token.len()) {
        Some(slot) => {
            slot.copy_from_slice(token.as_bytes());
            slot.make_ascii_lowercase();
            std::str::from_utf8(slot).is_ok_and(hop_by_hop)
        }
        None => false,
    }
}

/// Removes what must not be relayed: hop-by-hop headers, those named in `Connection`, and
/// `skip`. The `Connection` tokens are read once, and only those that name something other
/// than a hop-by-hop header (`keep-alive`, the usual one, does not) are looked for. When most
/// headers go (a forwarded request's usually all do: `Host`, `Authorization`, `LP-*`), the few
/// kept move to a new map instead of each doomed one being removed, which costs a hash and a
/// shift each; values and their order are kept either way. Names are never copied on that
/// path. (Measured by instructions per request: bench/forward.sh, docs/forward.md.)
pub(crate) fn strip(headers: &mut HeaderMap, skip: impl Fn(&HeaderName) -> bool) {
    // Owned (the map may be taken apart below); empty, so no allocation, in the usual case.
    let named = connection_named(headers);
    let doomed = |name: &HeaderName| {
        hop_by_hop(name.as_str()) || skip(name) || named.iter().any(|token| token == name.as_str())
    };
    let count = headers.keys().filter(|name| doomed(name)).count();
    if count == 0 {
        return;
    }
    if count * 2 < headers.keys_len() {
        // Few to go (a response's `Connection`, usually): one at a time, with no list.
        for _ in 0..count {
            let Some(name) = headers.keys().find(|name| doomed(name)).cloned() else {
                break;
            };
            headers.remove(name);
        }
        return;
    }
    let all = std::mem::replace(
        headers,
        HeaderMap::with_capacity(headers.keys_len() - count),
    );
    // `into_iter` names a header once, before its first value; `None` continues the last name.
    let mut current: Option<HeaderName> = None;
    for (name, value) in all {
        if let Some(name) = name {
            current = (!doomed(&name)).then_some(name);
        }
        if let Some(name) = &current {
            headers.append(name, value);
        }
    }
}

/// The names `Connection` lists besides the hop-by-hop ones, lower case.
fn connection_named(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty() && !hop_by_hop_token(token))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// What [`strip`] would leave of `headers`, as a new map, `headers` unchanged (values shared,
/// not copied; no allocation when nothing is left).
fn stripped(headers: &HeaderMap, skip: impl Fn(&HeaderName) -> bool) -> HeaderMap {
    let named = connection_named(headers);
    let doomed = |name: &HeaderName| {
        hop_by_hop(name.as_str()) || skip(name) || named.iter().any(|token| token == name.as_str())
    };
    let kept = headers.keys().filter(|name| !doomed(name)).count();
    let mut out = HeaderMap::with_capacity(kept);
    for name in headers.keys().filter(|name| !doomed(name)) {
        for value in headers.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The request headers every hop sends: the caller's end-to-end headers without
/// `Authorization`, `Host` and `LP-*`, and `LP-authorization-override` as `Authorization`.
fn relayed(caller: &HeaderMap) -> HeaderMap {
    let mut headers = stripped(caller, |name| {
        name == header::AUTHORIZATION || name == header::HOST || name.as_str().starts_with("lp-")
    });
    if let Some(value) = caller.get(&LP_AUTHORIZATION_OVERRIDE) {
        headers.insert(header::AUTHORIZATION, value.clone());
    }
    headers
}

/// The route for the call: by (account, service, URL), or by (account, URL) when no service is
/// named, where more than one candidate certificate is ambiguous.
fn route(
    state: &AppState,
    account: &str,
    service: Option<&str>,
    url: &str,
) -> Result<Option<Route>, ApiError> {
    let now = state.control().now();
    state.control().routing().with(|table| match service {
        Some(service) => Ok(table.route(account, service, url).filter(|route| route.available(now)).cloned()),
        None => {
            let candidates: Vec<&Route> = table.routes_for_url(account, url).iter().filter(|route| route.available(now)).collect();
            let first = candidates.first().map(|route| (*route).clone());
            if candidates.iter().any(|route| Some(route.certificate_id) != first.as_ref().map(|first| first.certificate_id)) {
                return Err(ApiError::bad_request(
                    "mapping_ambiguous",
                    "several certificates are mapped to this URL for different services; send LP-service-name",
                ));
            }
            Ok(first)
        }
    })
}

/// Sends `request`, which has no body, with `client` within the response timeout; failures
/// as SPEC 7.4 answers.
pub(crate) async fn send(
    state: &AppState,
    client: &UpstreamClient,
    request: axum::http::Request<ForwardBody>,
) -> Result<axum::http::Response<UpstreamBody>, ApiError> {
    send_watched(state, client, request, &UploadClock::without_body()).await
}

/// Sends `request`, whose body `clock` follows, with `client`: the answer within the response
/// timeout after the end of the upload, the upload within the body idle timeout (docs/forward.md,
/// "Timeouts"). The caller's faults (a stalled, broken or oversized body) are 4xx and not
/// counted as failures of the target; the target's are SPEC 7.4 answers.
pub(crate) async fn send_watched(
    state: &AppState,
    client: &UpstreamClient,
    mut request: axum::http::Request<ForwardBody>,
    clock: &UploadClock,
) -> Result<axum::http::Response<UpstreamBody>, ApiError> {
    let timeouts = state.control().forwarder().timeouts;
    let started = std::time::Instant::now();
    let metrics = state.metrics();
    let span = crate::tracing_export::ClientSpan::start(state, &mut request);
    let call = client.request(request, clock);
    let outcome = match clock
        .watch(timeouts.response_headers, timeouts.body_idle, call)
        .await
    {
        Err(Stopped::Timeout(late)) => {
            metrics.failure("response_timeout");
            Err(ApiError::transport("response_timeout", late.to_string()))
        }
        Ok(response) => {
            metrics.upstream(started.elapsed());
            Ok(response)
        }
        Err(Stopped::Caller(CallerFault::TooLarge)) => {
            let limit = state.forward().max_body_bytes;
            Err(ApiError::too_large(format!(
                "the request body is larger than {limit} bytes"
            )))
        }
        Err(Stopped::Caller(CallerFault::BodyTimeout)) => Err(ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_body_timeout",
            format!(
                "the request body stalled: nothing came for {} s",
                timeouts.body_idle.as_secs_f64()
            ),
        )),
        Err(Stopped::Caller(CallerFault::BodyInvalid)) => Err(ApiError::bad_request(
            "invalid_request_body",
            "the request body is not valid HTTP (a malformed chunk, or cut short)",
        )),
        Err(Stopped::Failed(error)) => {
            let failure = classify(error.as_ref());
            metrics.failure(failure.code);
            tracing::info!(code = failure.code, "upstream call failed");
            Err(if failure.status == 403 {
                ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    failure.code,
                    failure.message,
                )
            } else {
                ApiError::transport(failure.code, failure.message)
            })
        }
    };
    if let Some(span) = span {
        span.finish(&outcome);
    }
    outcome
}

/// One request of a forward call: the first, or a redirect followed.
struct Hop {
    method: Method,
    uri: Uri,
    /// This hop's request headers, until it is sent.
    headers: HeaderMap,
    /// The caller's headers, which each redirect's hop is sent ([`relayed`]): kept instead of
    /// a copy of the first hop's, so that a call that meets no redirect copies nothing.
    caller: HeaderMap,
    /// A 301, 302 or 303 was followed: the next hops have no body, nor its headers.
    bodyless: bool,
}

impl Hop {
    /// This hop's request; the next hop's headers are made from the caller's again.
    fn request(&mut self, body: ForwardBody) -> axum::http::Request<ForwardBody> {
        let mut request = axum::http::Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = std::mem::take(&mut self.headers);
        request
    }

    /// The next hop, to `uri`: the caller's headers again, without the body's after a 301,
    /// 302 or 303.
    fn next(&mut self, uri: Uri) {
        self.uri = uri;
        self.headers = relayed(&self.caller);
        if self.bodyless {
            for name in [
                header::CONTENT_LENGTH,
                header::CONTENT_TYPE,
                header::TRANSFER_ENCODING,
            ] {
                self.headers.remove(name);
            }
        }
    }

    fn into_request(self, body: ForwardBody) -> axum::http::Request<ForwardBody> {
        let mut request = axum::http::Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.headers_mut() = self.headers;
        request
    }
}

/// Sends the forwarded request (`body` followed by `clock`) and follows same-origin
/// redirects (SPEC 6.2, docs/forward.md "Redirects"): with the same client, so the same
/// certificate and no new mapping lookup; each hop's connection made by the client's
/// `VettedConnector` and its host vetted by the egress policy before the 3xx is given up; at
/// most `MAX_HOPS`. The answer past the limit, a redirect elsewhere, a 307/308 whose body was
/// not kept, or one the egress policy refuses, is relayed as is.
async fn send_following(
    state: &AppState,
    client: &UpstreamClient,
    mut hop: Hop,
    body: Upload<http_body_util::Limited<Body>>,
    clock: &UploadClock,
) -> Result<axum::http::Response<UpstreamBody>, ApiError> {
    let policy = state.forward().follow_redirects;
    if policy == FollowRedirects::Never {
        return send_watched(state, client, hop.into_request(body.boxed_unsync()), clock).await;
    }
    let (body, copy) = Replay::new(body);
    let mut response = send_watched(state, client, hop.request(body.boxed_unsync()), clock).await?;
    // The body of the next hop's 307/308: the caller's (while it is the one sent), or none.
    let mut replayed: Option<Bytes> = None;
    for _ in 0..redirect::MAX_HOPS {
        // Not a redirect (the usual answer): relayed before anything is allocated.
        let Some(step) = redirect::next_method(response.status(), &hop.method) else {
            return Ok(response);
        };
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok());
        let current = hop.uri.to_string();
        let Some(next) = redirect::follow(policy, response.status(), &current, location) else {
            return Ok(response);
        };
        let Ok(uri) = Uri::try_from(next.as_str()) else {
            return Ok(response);
        };
        let body = match step {
            NextMethod::WithoutBody(method) => {
                hop.method = method;
                hop.bodyless = true;
                Bytes::new()
            }
            NextMethod::Repeat => match replayed.clone().or_else(|| copy.body()) {
                Some(body) => body,
                // Larger than the copy kept, or not sent whole: the caller decides.
                None => return Ok(response),
            },
        };
        if !egress_allows(state, &uri).await {
            return Ok(response);
        }
        discard(response, state.control().forwarder().timeouts.body_idle).await;
        hop.next(uri);
        replayed = Some(body.clone());
        let body = http_body_util::Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync();
        response = send(state, client, hop.request(body)).await?;
        state.metrics().redirect_followed();
    }
    Ok(response)
}

/// Whether the egress policy allows the host of a redirect's target (its connection is vetted
/// again when made: this only decides between following and relaying).
async fn egress_allows(state: &AppState, uri: &Uri) -> bool {
    let scheme = if uri.scheme_str() == Some("http") {
        mtls_runtime::Scheme::Http
    } else {
        mtls_runtime::Scheme::Https
    };
    let (Some(host), Some(port)) = (
        uri.host(),
        uri.port_u16().or_else(|| {
            uri.scheme_str()
                .map(|scheme| if scheme == "http" { 80 } else { 443 })
        }),
    ) else {
        return false;
    };
    state
        .control()
        .forwarder()
        .policy()
        .vet(scheme, host, port, &mtls_runtime::egress::SystemResolver)
        .await
        .is_ok()
}

/// Reads away a redirect's body, none of it relayed, so that its connection can serve the
/// next hop; a body past the replay limit or stalled past the idle timeout is dropped
/// instead, which closes its connection.
async fn discard(response: axum::http::Response<UpstreamBody>, idle: std::time::Duration) {
    let mut body = response.into_body();
    let mut left = redirect::REPLAY_LIMIT;
    let _ = tokio::time::timeout(idle, async {
        while let Some(Ok(frame)) = body.frame().await {
            let length = frame.data_ref().map_or(0, hyper::body::Buf::remaining);
            if length > left {
                return;
            }
            left -= length;
        }
    })
    .await;
}

/// The forward route's template (the router's, and the access log's).
pub(crate) const ROUTE: &str = "/mtls/account/{account_id}";

/// The methods forward relays (SPEC 6.2), and the live tester's `LP-method-override` accepts.
pub(crate) const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
];

/// The account of a request [`crate::App`] may serve without the router: exactly
/// `/mtls/account/{id}` with a valid id, by one of the forward methods. Anything else (a
/// percent-encoded or invalid id, another method) is left to the router and its answers.
pub(crate) fn direct_account(method: &Method, path: &str) -> Option<AccountId> {
    let forward_method = METHODS.contains(method);
    let raw = path.strip_prefix("/mtls/account/")?;
    if !forward_method || raw.contains('/') {
        return None;
    }
    AccountId::parse(raw).ok()
}

/// The forward route without the router: the same checks ([`Authorized`]'s: the caller,
/// then the account, then the need), in the same order, and the same handler.
pub(crate) async fn direct(state: AppState, account: AccountId, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let authorized = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => Authorized::<Forward>::check(&state, caller, account),
        Err(refused) => Err(refused),
    };
    let authorized = match authorized {
        Ok(authorized) => authorized,
        Err(refused) => return refused.into_response(),
    };
    let request = Request::from_parts(parts, body);
    forward(State(state), authorized, request)
        .await
        .into_response()
}

pub(crate) async fn forward(
    State(state): State<AppState>,
    Authorized { account, .. }: Authorized<Forward>,
    request: Request,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    let mut targets = headers.get_all(&LP_FORWARD_URL).iter();
    if targets.next().is_some() && targets.next().is_some() {
        // Calling either would be a guess about which one the caller meant.
        return Err(ApiError::bad_request(
            "invalid_forward_url",
            "LP-forward-url is sent more than once",
        ));
    }
    let target = text(headers, &LP_FORWARD_URL).ok_or_else(|| {
        ApiError::bad_request(
            "missing_forward_url",
            "the LP-forward-url header is required",
        )
    })?;
    let (_, normalized) = normalize(target)
        .map_err(|error| ApiError::bad_request("invalid_forward_url", error.to_string()))?;
    let uri = Uri::try_from(target).map_err(|_| {
        ApiError::bad_request("invalid_forward_url", "LP-forward-url is not a valid URL")
    })?;
    let service = text(headers, &LP_SERVICE_NAME);
    let stop = text(headers, &LP_STOP).is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let route = route(&state, account.as_str(), service, &normalized)?;
    if route.is_none() && (stop || !state.forward().allow_unmapped) {
        return Err(ApiError::bad_request(
            "no_certificate_mapping",
            "no certificate is mapped to this target",
        ));
    }
    let (client, cold) = client_loaded(
        state.control(),
        account.as_str(),
        &client_key(route.as_ref()),
    )
    .await?;

    let (parts, body) = request.into_parts();
    let axum::http::request::Parts {
        method,
        headers: caller_headers,
        ..
    } = parts;
    let upstream_headers = relayed(&caller_headers);
    let limit = state.forward().max_body_bytes;
    let declared = upstream_headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::too_large(format!(
            "the request body is larger than {limit} bytes"
        )));
    }
    let idle = state.control().forwarder().timeouts.body_idle;
    let (body, clock) = Upload::new(http_body_util::Limited::new(body, limit), idle);
    let first = Hop {
        method,
        uri,
        headers: upstream_headers,
        caller: caller_headers,
        bodyless: false,
    };
    let started = std::time::Instant::now();
    let response = send_following(&state, &client, first, body, &clock).await;
    if cold {
        // The cold start's last stage: connect and the first TLS handshake with the new
        // identity (and the target's answer, which on a loopback benchmark is immediate).
        let first_call = started.elapsed();
        state.metrics().identity_stage("first_call", first_call);
        tracing::debug!(
            first_call_ms = first_call.as_secs_f64() * 1e3,
            "first call with a cold identity"
        );
    }
    let response = response?;
    let (mut parts, incoming) = response.into_parts();
    strip(&mut parts.headers, |_| false);
    let relayed = Relayed {
        body: IdleBody::new(incoming, idle),
        state,
    };
    let mut relayed_response = Response::new(Body::new(relayed));
    *relayed_response.status_mut() = parts.status;
    *relayed_response.headers_mut() = parts.headers;
    Ok(relayed_response)
}

/// The target's response body on its way to the caller: given up when the target stalls it
/// past the body idle timeout (the caller's connection is then cut: the head has gone), and
/// that counted.
struct Relayed {
    body: IdleBody<UpstreamBody>,
    state: AppState,
}

impl hyper::body::Body for Relayed {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<hyper::body::Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Err(error))) = &polled
            && error.is::<ResponseBodyTimeout>()
        {
            tracing::info!(code = "response_body_timeout", "upstream body stalled");
            self.state.metrics().body_failure("response_body_timeout");
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Group;
    use axum::http::HeaderValue;

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn strip_drops_hop_by_hop_connection_named_and_skipped_headers() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "Keep-Alive, X-Private-Hop"),
            ("connection", "upgrade"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-private-hop", "1"),
            ("authorization", "Bearer secret"),
            ("host", "gateway"),
            ("lp-forward-url", "https://target/"),
            ("content-type", "application/json"),
            ("content-length", "2"),
            ("x-end-to-end", "kept"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let mut request = headers.clone();
        strip(&mut request, |name| {
            name == header::AUTHORIZATION
                || name == header::HOST
                || name.as_str().starts_with("lp-")
        });
        assert_eq!(
            names(&request),
            ["content-length", "content-type", "x-end-to-end"]
        );
        let mut response = headers;
        strip(&mut response, |_| false);
        assert_eq!(
            names(&response),
            [
                "authorization",
                "content-length",
                "content-type",
                "host",
                "lp-forward-url",
                "x-end-to-end"
            ]
        );
    }

    #[test]
    fn strip_keeps_every_value_in_order_whichever_way_it_removes() {
        // Mostly doomed (the kept headers move to a new map), and mostly kept (the doomed are
        // removed in place): both keep repeated headers whole and in order.
        for extra_doomed in [4, 0] {
            let mut headers = HeaderMap::new();
            for index in 0..extra_doomed {
                headers.append(
                    HeaderName::from_bytes(format!("lp-x{index}").as_bytes()).unwrap(),
                    HeaderValue::from_static("gone"),
                );
            }
            for value in ["a=1", "b=2", "c=3"] {
                headers.append(header::SET_COOKIE, HeaderValue::from_static(value));
            }
            headers.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
            headers.append(header::VARY, HeaderValue::from_static("accept"));
            headers.append(header::VARY, HeaderValue::from_static("origin"));
            headers.append(header::DATE, HeaderValue::from_static("today"));
            strip(&mut headers, |name| name.as_str().starts_with("lp-"));
            assert_eq!(names(&headers), ["date", "set-cookie", "vary"]);
            let values = |name| {
                headers
                    .get_all(name)
                    .iter()
                    .map(|value| value.to_str().unwrap())
                    .collect::<Vec<_>>()
            };
            assert_eq!(values(header::SET_COOKIE), ["a=1", "b=2", "c=3"]);
            assert_eq!(values(header::VARY), ["accept", "origin"]);
            assert_eq!(headers.len(), 6);
        }
    }

    #[test]
    fn strip_leaves_a_clean_map_alone() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(header::DATE, HeaderValue::from_static("today"));
        strip(&mut headers, |_| false);
        assert_eq!(names(&headers), ["content-type", "date"]);
    }

    #[test]
    fn direct_account_takes_only_the_exact_forward_path() {
        assert_eq!(
            direct_account(&Method::GET, "/mtls/account/acme-1").map(|id| id.to_string()),
            Some("acme-1".to_owned())
        );
        assert!(direct_account(&Method::GET, "/mtls/account/acme-1/").is_none());
        assert!(direct_account(&Method::GET, "/mtls/account/acme/certificates").is_none());
        assert!(direct_account(&Method::GET, "/mtls/account/ac%2Fme").is_none());
        assert!(direct_account(&Method::GET, "/mtls/account/").is_none());
        assert!(direct_account(&Method::CONNECT, "/mtls/account/acme").is_none());
        assert!(direct_account(&Method::TRACE, "/mtls/account/acme").is_none());
        // The shortcut charges the forward bucket without asking the path, as the router's
        // layer would: the path it takes is the forward group's.
        assert_eq!(Group::of("/mtls/account/acme-1"), Some(Group::Forward));
    }
}
