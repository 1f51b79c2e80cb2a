//! The HTTP API of mtls-gateway: the routes of SPEC, their DTOs, and the one place where
//! errors become HTTP responses ([`error`]).

pub mod app_keys;
mod audit;
pub mod backends;
mod certificates;
pub mod console;
pub mod dto;
pub mod error;
pub mod extract;
mod mappings;
pub mod metrics;
mod multipart;
pub mod openapi;
pub mod ratelimit;
mod request_id;
mod routes;
pub mod routing;
pub mod services;
mod state;

pub use backends::{BackendSlot, Backends, Readiness};
pub use certificates::now;
pub use routes::Surface;
pub use state::{AppState, ForwardSettings, Limits, Settings};

use axum::Router;
use axum::middleware;

/// The whole application: every route, the request-id and access-log layer, JSON fallbacks.
pub fn router(state: AppState) -> Router {
    surface_router(state, Surface::All)
}

/// The routes of one listener's [`Surface`], with the same layers.
pub fn surface_router(state: AppState, surface: Surface) -> Router {
    routes::routes(state.clone(), surface)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn_with_state(state, request_id::layer))
}
