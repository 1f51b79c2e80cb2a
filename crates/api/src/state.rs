//! What every handler shares: the authenticator, the intake policy and the limits.

use std::sync::Arc;
use std::time::SystemTime;

use mtls_auth::Authenticator;
use mtls_pki::IntakePolicy;
use tokio::sync::Semaphore;

use crate::backends::BackendSlot;
use crate::ratelimit::{RateLimiter, RateLimits};
use crate::services::Services;

/// Request size limits.
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

/// What the operator configures for the API.
#[derive(Clone, Debug)]
pub struct Settings {
    pub intake: IntakePolicy,
    pub limits: Limits,
    /// PKCS#12 files checked at once.
    pub intake_concurrency: usize,
    pub services: Services,
    /// Whether mappings may target plain `http` URLs (the egress policy's `allow_http`).
    pub allow_http: bool,
    pub rate_limits: RateLimits,
    /// `scheme://host[:port]` clients address the gateway by, for OAuth signatures behind a
    /// TLS-terminating proxy; absent: `http://` and the `Host` header.
    pub public_base_url: Option<String>,
    /// The forward path's clients and egress policy.
    pub forwarder: std::sync::Arc<mtls_runtime::forward::Forwarder>,
    pub forward: ForwardSettings,
    /// Callers authenticated by a verified client certificate.
    pub certificate_principals: mtls_auth::certificate::CertificatePrincipals,
    /// When set, `/metrics` requires `Authorization: Bearer <this>`.
    pub metrics_token: Option<zeroize::Zeroizing<String>>,
    /// The span exporter, when `[tracing] otlp_endpoint` is set.
    pub tracing: Option<Arc<mtls_otel::Exporter>>,
    /// `POST /oauth2/token`; `None`: not served.
    pub token_endpoint: Option<TokenEndpoint>,
}

/// The client-credentials token endpoint (SPEC 3): how its tokens are signed and how long
/// they live.
#[derive(Clone, Debug)]
pub struct TokenEndpoint {
    pub issuer: Arc<mtls_auth::client_credentials::ClientTokenIssuer>,
    pub lifetime_seconds: u64,
}

/// Forward settings (SPEC 6.2).
#[derive(Clone, Copy, Debug)]
pub struct ForwardSettings {
    /// Forward calls that match no mapping (over ordinary TLS, without a client certificate).
    pub allow_unmapped: bool,
    /// Largest request body relayed (413 past it).
    pub max_body_bytes: usize,
    /// Load every mapped identity when the routing table changes, not at its first request.
    pub preload_identities: bool,
    /// Which redirects the gateway follows itself (SPEC 6.2).
    pub follow_redirects: mtls_runtime::redirect::FollowRedirects,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        Self {
            allow_unmapped: true,
            max_body_bytes: 10 * 1024 * 1024,
            preload_identities: false,
            follow_redirects: mtls_runtime::redirect::FollowRedirects::SameOrigin,
        }
    }
}

/// Shared application state; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub authenticator: Authenticator,
    pub intake: IntakePolicy,
    pub limits: Limits,
    /// Bounds concurrent PKCS#12 parses: each may run key derivations for up to a second.
    pub intake_permits: Semaphore,
    pub clock: fn() -> SystemTime,
    /// The database and secret store, once connected.
    pub backends: BackendSlot,
    /// The routing table snapshot the runtime reads.
    pub routing: mtls_runtime::RoutingTable,
    pub services: Services,
    /// Whether mappings may target plain `http` URLs (the egress policy's `allow_http`).
    pub allow_http: bool,
    pub rate_limiter: RateLimiter,
    pub app_keys: crate::app_keys::AppKeyCache,
    pub public_base_url: Option<String>,
    pub forwarder: std::sync::Arc<mtls_runtime::forward::Forwarder>,
    pub forward: ForwardSettings,
    /// Set on shutdown: `/readyz` answers 503 so that load balancers stop sending.
    pub draining: std::sync::atomic::AtomicBool,
    pub certificate_principals: mtls_auth::certificate::CertificatePrincipals,
    pub metrics: crate::metrics::Metrics,
    pub metrics_token: Option<zeroize::Zeroizing<String>>,
    pub tracing: Option<Arc<mtls_otel::Exporter>>,
    pub token_endpoint: Option<TokenEndpoint>,
}

impl AppState {
    /// The OAuth app keys in force.
    pub fn app_keys(&self) -> &crate::app_keys::AppKeyCache {
        &self.inner.app_keys
    }

    /// The routing table snapshot.
    pub fn routing(&self) -> &mtls_runtime::RoutingTable {
        &self.inner.routing
    }

    /// The upstream clients and identities (for the unloading timer).
    pub fn forwarder(&self) -> &std::sync::Arc<mtls_runtime::forward::Forwarder> {
        &self.inner.forwarder
    }

    /// The gateway's metrics (the expiry monitor fills in the certificates).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// Turns readiness off for good (shutdown has begun).
    pub fn drain(&self) {
        self.inner
            .draining
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The slot the start-up task fills with the database and the secret store.
    pub fn backends(&self) -> &BackendSlot {
        &self.inner.backends
    }

    pub fn new(authenticator: Authenticator, settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                authenticator,
                intake: settings.intake,
                limits: settings.limits,
                intake_permits: Semaphore::new(settings.intake_concurrency.max(1)),
                clock: SystemTime::now,
                backends: BackendSlot::default(),
                routing: mtls_runtime::RoutingTable::default(),
                services: settings.services,
                allow_http: settings.allow_http,
                rate_limiter: RateLimiter::new(settings.rate_limits),
                app_keys: crate::app_keys::AppKeyCache::default(),
                public_base_url: settings.public_base_url,
                forwarder: settings.forwarder,
                forward: settings.forward,
                draining: std::sync::atomic::AtomicBool::new(false),
                certificate_principals: settings.certificate_principals,
                metrics: crate::metrics::Metrics::default(),
                metrics_token: settings.metrics_token,
                tracing: settings.tracing,
                token_endpoint: settings.token_endpoint,
            }),
        }
    }
}
