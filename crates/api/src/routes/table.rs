//! The route table: the router and every path it is given, so that `/openapi.json` can be
//! checked against what is routed (`tests/it/openapi.rs`).

use axum::Router;
use axum::routing::MethodRouter;

/// A router being built, and every path it is given: the route table `/openapi.json` is
/// checked against. `routes::routes` builds the router through this, so a path cannot be
/// routed without being seen by the check.
pub(crate) struct Table<S> {
    router: Router<S>,
    paths: Vec<String>,
}

/// The built router, and the paths it routes (each once).
pub(crate) struct Routed {
    pub router: Router,
    pub paths: Vec<String>,
}

impl<S: Clone + Send + Sync + 'static> Table<S> {
    pub(crate) fn new() -> Self {
        Self {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    /// `Router::route`, recording `path`.
    pub(crate) fn route(mut self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.paths.push(path.to_owned());
        self.router = self.router.route(path, method_router);
        self
    }

    /// `Router::with_state`.
    pub(crate) fn with_state(self, state: S) -> Routed {
        Routed {
            router: self.router.with_state(state),
            paths: self.paths,
        }
    }
}
