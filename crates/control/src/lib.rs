//! The control plane of mtls-gateway: what the HTTP edge (`mtls-api`) and the command line
//! both call. Certificate operations (validation, SPEC 4.3's write order), mapping validation,
//! OAuth app keys, the audit trail, the routing table kept in step with the database, the
//! forward path's identities loaded from the secret store, readiness and the dependency slot,
//! the service registry, the metrics and the clock.
//!
//! No HTTP types: every failure is a [`ControlError`], which the edge turns into an answer in
//! one place (`mtls_api::error`).

pub mod app_keys;
pub mod audit;
pub mod backends;
pub mod certificates;
pub mod clock;
pub mod entity;
mod error;
pub mod identities;
pub mod mappings;
mod material;
pub mod metrics;
pub mod renewal;
pub mod report;
pub mod requests;
pub mod routing;
pub mod services;
mod state;

pub use backends::{BackendSlot, Backends, Readiness};
pub use clock::{Clock, now};
pub use error::{ControlError, ItemError};
pub use state::{Control, ControlSettings, Limits};
