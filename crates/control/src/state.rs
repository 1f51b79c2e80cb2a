//! The control plane's state: the dependencies, the routing table, the identities, the app
//! keys, the intake policy and its permits, the metrics and the clock. Cheap to clone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mtls_pki::IntakePolicy;
use tokio::sync::Semaphore;

use crate::app_keys::AppKeyCache;
use crate::backends::BackendSlot;
use crate::clock::Clock;
use crate::error::ControlError;
use crate::metrics::Metrics;
use crate::services::Services;

/// Request size limits and per-account caps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest PKCS#12 file accepted, in bytes (413 past it).
    pub p12_max_bytes: usize,
    /// Largest password part, in bytes.
    pub password_max_bytes: usize,
    /// Most live (not deleted) certificates one account may hold (409 past it).
    pub max_certificates_per_account: usize,
    /// Most live (not deleted) mappings one account may hold (409 past it).
    pub max_mappings_per_account: usize,
}

impl Limits {
    /// Largest JSON certificate body, capped while it streams in: room for a few files at the
    /// limit as arrays of signed byte values (up to 5 characters per byte, "-128,"), many more
    /// as base64. What a request holds is bounded by this, not by the item count.
    pub fn json_body_max_bytes(&self) -> usize {
        self.p12_max_bytes
            .saturating_mul(6)
            .saturating_add(64 * 1024)
            .saturating_mul(4)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            p12_max_bytes: 1024 * 1024,
            password_max_bytes: 4096,
            max_certificates_per_account: 1000,
            max_mappings_per_account: 10_000,
        }
    }
}

/// What the control plane is configured with.
#[derive(Clone, Debug)]
pub struct ControlSettings {
    pub intake: IntakePolicy,
    pub limits: Limits,
    /// PKCS#12 files checked at once.
    pub intake_concurrency: usize,
    pub services: Services,
    /// Whether mappings may target plain `http` URLs (the egress policy's `allow_http`).
    pub allow_http: bool,
    /// The forward path's clients and egress policy (identities are loaded here).
    pub forwarder: Arc<mtls_runtime::forward::Forwarder>,
    /// Load every mapped identity when the routing table changes, not at its first request.
    pub preload_identities: bool,
    pub clock: Clock,
}

/// The control plane; cheap to clone.
#[derive(Clone, Debug)]
pub struct Control {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    clock: Clock,
    intake: IntakePolicy,
    limits: Limits,
    /// Bounds concurrent PKCS#12 parses: each may run key derivations for up to a second.
    intake_permits: Semaphore,
    /// The database and secret store, once connected.
    backends: BackendSlot,
    /// The routing table snapshot the runtime reads.
    routing: mtls_runtime::RoutingTable,
    services: Services,
    allow_http: bool,
    app_keys: AppKeyCache,
    forwarder: Arc<mtls_runtime::forward::Forwarder>,
    preload_identities: bool,
    /// Set on shutdown: readiness turns off so that load balancers stop sending.
    draining: AtomicBool,
    metrics: Metrics,
}

impl Control {
    pub fn new(settings: ControlSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock: settings.clock,
                intake: settings.intake,
                limits: settings.limits,
                intake_permits: Semaphore::new(settings.intake_concurrency.max(1)),
                backends: BackendSlot::default(),
                routing: mtls_runtime::RoutingTable::default(),
                services: settings.services,
                allow_http: settings.allow_http,
                app_keys: AppKeyCache::default(),
                forwarder: settings.forwarder,
                preload_identities: settings.preload_identities,
                draining: AtomicBool::new(false),
                metrics: Metrics::default(),
            }),
        }
    }

    /// The clock every operation reads.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Unix seconds by [`Control::clock`].
    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    pub fn intake(&self) -> &IntakePolicy {
        &self.inner.intake
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The slot the start-up task fills with the database and the secret store.
    pub fn backends(&self) -> &BackendSlot {
        &self.inner.backends
    }

    /// The routing table snapshot.
    pub fn routing(&self) -> &mtls_runtime::RoutingTable {
        &self.inner.routing
    }

    pub fn services(&self) -> &Services {
        &self.inner.services
    }

    /// Whether mappings may target plain `http` URLs.
    pub fn allow_http(&self) -> bool {
        self.inner.allow_http
    }

    /// The OAuth app keys in force.
    pub fn app_keys(&self) -> &AppKeyCache {
        &self.inner.app_keys
    }

    /// The upstream clients and identities.
    pub fn forwarder(&self) -> &Arc<mtls_runtime::forward::Forwarder> {
        &self.inner.forwarder
    }

    pub fn preload_identities(&self) -> bool {
        self.inner.preload_identities
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Turns readiness off for good (shutdown has begun).
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Whether shutdown has begun.
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Runs PKCS#12 intake on `bytes` with `password` on a blocking thread, under the intake
    /// permits, as of [`Control::clock`]. The outer error is the control plane's, the inner
    /// one the file's.
    pub async fn inspect(
        &self,
        bytes: zeroize::Zeroizing<Vec<u8>>,
        password: zeroize::Zeroizing<String>,
    ) -> Result<Result<mtls_pki::Inspection, mtls_pki::IntakeError>, ControlError> {
        let _permit = self
            .inner
            .intake_permits
            .acquire()
            .await
            .map_err(|error| ControlError::internal(&error))?;
        let policy = self.inner.intake;
        let now = self.inner.clock.time();
        tokio::task::spawn_blocking(move || mtls_pki::inspect(&bytes, &password, &policy, now))
            .await
            .map_err(|error| ControlError::internal(&error))
    }

    /// Runs `work` on a blocking thread under the intake permits (key generation and chain
    /// checks of SPEC 4.6 share them with PKCS#12 intake: RSA key generation takes a moment).
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ControlError> {
        let _permit = self
            .inner
            .intake_permits
            .acquire()
            .await
            .map_err(|error| ControlError::internal(&error))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| ControlError::internal(&error))
    }
}
