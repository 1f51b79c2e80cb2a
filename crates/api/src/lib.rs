//! The HTTP edge of mtls-gateway: the routes of SPEC, their extractors and DTOs, the OpenAPI
//! document, the console, request ids, rate limits, the forward handler, and the one place
//! where errors (the control plane's included) become HTTP responses ([`error`]). What the
//! routes do is `mtls_control`'s.

mod audit;
mod capped_json;
pub mod console;
pub mod dto;
mod edge;
pub mod error;
pub mod extract;
pub mod metrics;
mod multipart;
pub mod openapi;
pub mod ratelimit;
mod request_id;
mod routes;
mod state;
mod tracing_export;
mod upload;

pub use mtls_control::{BackendSlot, Backends, Readiness, app_keys, now, routing, services};
pub use routes::{Surface, routed_paths};
pub use state::{AppState, ForwardSettings, Limits, Settings, TokenEndpoint};

use axum::Router;
use axum::middleware;
use axum::response::IntoResponse;

/// A request head the listener refused before hyper parsed it. The listener hands hyper a
/// stand-in request that carries this as an extension, so that the refusal is answered here,
/// through the edge, like every other error: a JSON body, a request id, an access-log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedHead {
    /// Not a well-formed HTTP/1.1 request head (a bare LF line ending, a malformed line, body
    /// lengths that contradict each other); the text says which, for people.
    Malformed(&'static str),
    /// Larger than `server.max_request_head_bytes`, or more than 100 header fields.
    TooLarge,
}

impl RefusedHead {
    pub fn error(self) -> error::ApiError {
        match self {
            RefusedHead::Malformed(why) => error::ApiError::bad_request(
                "invalid_request_head",
                format!("the request head is not valid HTTP/1.1: {why}"),
            ),
            RefusedHead::TooLarge => error::ApiError::new(
                axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request_header_too_large",
                "the request head (request line and header fields) is too large",
            ),
        }
    }
}

/// The whole application: every route, the request-id and access-log layer, JSON fallbacks.
pub fn router(state: AppState) -> Router {
    surface_router(state, Surface::All)
}

/// One listener's application: its [`Surface`]'s router, with the forward route taken before
/// the router when the surface serves it. Forward is the hot path: matching it by hand and
/// calling its handler directly skips the router's matching, its boxed futures and its
/// path-parameter map (bench/forward.sh, docs/forward.md). Everything else, and any request
/// the shortcut does not recognize exactly, goes through the router.
#[derive(Clone, Debug)]
pub struct App {
    router: Router,
    state: AppState,
    forward: bool,
}

impl App {
    pub fn new(state: AppState, surface: Surface) -> Self {
        Self {
            router: surface_router(state.clone(), surface),
            state,
            forward: surface != Surface::Admin,
        }
    }

    /// The gateway's metrics (the listeners record their connections there).
    pub fn metrics(&self) -> &metrics::Metrics {
        self.state.metrics()
    }

    /// Serves one request from `peer`.
    pub async fn call(
        &self,
        mut request: axum::extract::Request,
        peer: std::net::SocketAddr,
    ) -> axum::response::Response {
        if let Some(refused) = request.extensions().get::<RefusedHead>().copied() {
            return edge::edge(
                &self.state,
                request,
                peer.ip(),
                None,
                None,
                |_| async move { refused.error().into_response() },
            )
            .await;
        }
        if self.forward
            && let Some(account) =
                routes::forward::direct_account(request.method(), request.uri().path())
        {
            let state = self.state.clone();
            return edge::edge(
                &self.state,
                request,
                peer.ip(),
                Some(ratelimit::Group::Forward),
                Some(routes::forward::ROUTE),
                // Boxed: the handler's future is large; the layers above it (this future,
                // hyper's slot for it) then hold and move a pointer instead of its bytes.
                |request| Box::pin(routes::forward::direct(state, account, request)),
            )
            .await;
        }
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        match tower_service::Service::call(&mut self.router.clone(), request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// The routes of one listener's [`Surface`], with the same layers.
pub fn surface_router(state: AppState, surface: Surface) -> Router {
    routes::routes(state.clone(), surface)
        .router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn_with_state(state, edge::layer))
}
