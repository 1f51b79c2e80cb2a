//! The one layer every request passes (three used to, each with its own boxed future): a
//! request id ([`crate::request_id`]: echoed in `x-request-id` unless a relayed answer has its
//! own, and in error bodies), the per-IP rate limit before authentication, the body of
//! OAuth-signed forms kept for the signature, the request metrics, and one access-log line:
//! method, route template, status, duration. Never headers, query strings or bodies, which may
//! carry credentials.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use crate::ratelimit::Group;
use crate::request_id::{RequestId, X_REQUEST_ID};

pub(crate) async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
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
    let mut response = crate::request_id::scope(id.clone(), async {
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
        if let Err(refused) =
            crate::ratelimit::admit(state.rate_limiter(), group, peer, request.headers())
        {
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
