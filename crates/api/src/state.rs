//! What every handler shares: the control plane ([`mtls_control::Control`]) and what only the
//! HTTP edge needs (the authenticator, rate limits, forward settings, the span exporter).

use std::sync::Arc;

use mtls_auth::Authenticator;
use mtls_control::services::Services;
use mtls_control::{BackendSlot, Clock, Control, ControlSettings};
use mtls_pki::IntakePolicy;

use crate::ratelimit::{RateLimiter, RateLimits};

pub use mtls_control::Limits;

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
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    control: Control,
    authenticator: Authenticator,
    rate_limiter: RateLimiter,
    public_base_url: Option<String>,
    forward: ForwardSettings,
    certificate_principals: mtls_auth::certificate::CertificatePrincipals,
    metrics_token: Option<zeroize::Zeroizing<String>>,
    tracing: Option<Arc<mtls_otel::Exporter>>,
    token_endpoint: Option<TokenEndpoint>,
}

impl AppState {
    /// Who callers are: Bearer, OAuth 1.0a and client-certificate verification.
    pub(crate) fn authenticator(&self) -> &Authenticator {
        &self.inner.authenticator
    }

    /// Which verified client certificates name which callers (`auth.client_certificates`).
    pub(crate) fn certificate_principals(&self) -> &mtls_auth::certificate::CertificatePrincipals {
        &self.inner.certificate_principals
    }

    /// The rate limits by address and by account.
    pub(crate) fn rate_limiter(&self) -> &RateLimiter {
        &self.inner.rate_limiter
    }

    /// The origin clients address the gateway by, for OAuth signatures, when configured.
    pub(crate) fn public_base_url(&self) -> Option<&str> {
        self.inner.public_base_url.as_deref()
    }

    /// The forward route's settings (SPEC 6.2).
    pub(crate) fn forward(&self) -> &ForwardSettings {
        &self.inner.forward
    }

    /// The bearer token `/metrics` requires, when set.
    pub(crate) fn metrics_token(&self) -> Option<&zeroize::Zeroizing<String>> {
        self.inner.metrics_token.as_ref()
    }

    /// The span exporter, when tracing export is on.
    pub(crate) fn exporter(&self) -> Option<&Arc<mtls_otel::Exporter>> {
        self.inner.tracing.as_ref()
    }

    /// `POST /oauth2/token`'s issuer, when served.
    pub(crate) fn token_endpoint(&self) -> Option<&TokenEndpoint> {
        self.inner.token_endpoint.as_ref()
    }

    /// The control plane behind the routes.
    pub fn control(&self) -> &Control {
        &self.inner.control
    }

    /// The OAuth app keys in force.
    pub fn app_keys(&self) -> &mtls_control::app_keys::AppKeyCache {
        self.inner.control.app_keys()
    }

    /// The routing table snapshot.
    pub fn routing(&self) -> &mtls_runtime::RoutingTable {
        self.inner.control.routing()
    }

    /// The upstream clients and identities (for the unloading timer).
    pub fn forwarder(&self) -> &std::sync::Arc<mtls_runtime::forward::Forwarder> {
        self.inner.control.forwarder()
    }

    /// The gateway's metrics (the listeners record their connections there).
    pub fn metrics(&self) -> &mtls_control::metrics::Metrics {
        self.inner.control.metrics()
    }

    /// Turns readiness off for good (shutdown has begun).
    pub fn drain(&self) {
        self.inner.control.drain();
    }

    /// The slot the start-up task fills with the database and the secret store.
    pub fn backends(&self) -> &BackendSlot {
        self.inner.control.backends()
    }

    pub fn new(authenticator: Authenticator, settings: Settings) -> Self {
        let control = Control::new(ControlSettings {
            intake: settings.intake,
            limits: settings.limits,
            intake_concurrency: settings.intake_concurrency,
            services: settings.services,
            allow_http: settings.allow_http,
            forwarder: settings.forwarder,
            preload_identities: settings.forward.preload_identities,
            clock: Clock::system(),
        });
        Self {
            inner: Arc::new(Inner {
                control,
                authenticator,
                rate_limiter: RateLimiter::new(settings.rate_limits),
                public_base_url: settings.public_base_url,
                forward: settings.forward,
                certificate_principals: settings.certificate_principals,
                metrics_token: settings.metrics_token,
                tracing: settings.tracing,
                token_endpoint: settings.token_endpoint,
            }),
        }
    }
}
