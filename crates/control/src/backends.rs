//! The dependencies behind the API (metadata store and secret store) and what `/readyz` says
//! about them. They may arrive after the listener opens: start-up retries with backoff, and
//! until they are there the calls that need them answer 503.

use std::sync::{Arc, Mutex, PoisonError};

use mtls_secrets::SecretStore;
use mtls_store::Store;
use tokio::sync::OnceCell;

use crate::error::ControlError;

/// The connected dependencies.
#[derive(Debug)]
pub struct Backends {
    pub store: Store,
    pub secrets: SecretStore,
}

/// What readiness reports about each dependency.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    /// `None` until the first attempt; then `Ok` or the (secret-free) reason.
    pub database: Option<Result<(), String>>,
    pub secret_store: Option<Result<(), String>>,
    /// Live certificates whose secret was not found in the secret store at start.
    pub missing_secrets: Vec<(String, i64)>,
}

/// The slot the start-up task fills.
#[derive(Debug, Default)]
pub struct BackendSlot {
    backends: OnceCell<Arc<Backends>>,
    readiness: Mutex<Readiness>,
}

impl BackendSlot {
    pub fn set(&self, backends: Backends) {
        let _ = self.backends.set(Arc::new(backends));
    }

    pub fn get(&self) -> Option<Arc<Backends>> {
        self.backends.get().cloned()
    }

    /// The dependencies, or [`ControlError::Unavailable`] naming the missing one.
    pub fn require(&self) -> Result<Arc<Backends>, ControlError> {
        self.get().ok_or_else(|| {
            let readiness = self.readiness();
            let missing = match (&readiness.database, &readiness.secret_store) {
                (Some(Ok(())), _) => "the secret store",
                _ => "the database",
            };
            ControlError::Unavailable(format!("{missing} is not reachable yet; retrying"))
        })
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut Readiness)) {
        change(
            &mut self
                .readiness
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}
