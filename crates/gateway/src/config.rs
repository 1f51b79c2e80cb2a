//! Configuration: a TOML file (optional), overridden by `MTLS_GATEWAY__<SECTION>__<KEY>`
//! environment variables, secrets also from `MTLS_GATEWAY__..._FILE` paths. Unknown keys are
//! errors that name the key. Every default is chosen so that no configuration at all gives a
//! working gateway on 127.0.0.1:8080 with its state in `./mtls-data`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use mtls_runtime::Cidr;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

#[cfg(test)]
mod tests;
mod values;

use values::{
    DAY, MAX_DURATION, MAX_RATE, MIN_DURATION, check_seconds, networks, seconds, show,
    whole_seconds,
};
pub use values::{HttpUrl, Secret};

/// The environment prefix; `__` separates sections and keys.
pub const ENV_PREFIX: &str = "MTLS_GATEWAY__";

/// The keys that hold secrets: each may also come from a file named by `<KEY>_FILE`.
const SECRET_KEYS: &[&str] = &[
    "auth.hs256_secret",
    "database.url",
    "secrets.local.master_key",
    "secrets.vault.token",
    "secrets.vault.secret_id",
    "metrics.bearer_token",
    "expiry.webhook_url",
];

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the gateway keeps its state (created with mode 0700).
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub intake: IntakeConfig,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub secrets: SecretsConfig,
    pub runtime: RuntimeConfig,
    pub egress: EgressConfig,
    pub tls: TlsConfig,
    pub forward: ForwardConfig,
    pub rate_limits: RateLimitsConfig,
    pub metrics: MetricsConfig,
    pub expiry: ExpiryConfig,
    pub accounts: AccountsConfig,
    pub tracing: TracingConfig,
    /// Services beyond the built-in four (SPEC 2): `NAME = "id"`.
    pub services: std::collections::BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./mtls-data"),
            server: ServerConfig::default(),
            auth: AuthConfig::default(),
            intake: IntakeConfig::default(),
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            secrets: SecretsConfig::default(),
            runtime: RuntimeConfig::default(),
            egress: EgressConfig::default(),
            tls: TlsConfig::default(),
            metrics: MetricsConfig::default(),
            expiry: ExpiryConfig::default(),
            forward: ForwardConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            accounts: AccountsConfig::default(),
            tracing: TracingConfig::default(),
            services: std::collections::BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port of the listener: everything, or the runtime (mapping checks and
    /// forward) when `admin_listen` is set.
    pub listen: SocketAddr,
    /// TLS of `listen`; absent: plain HTTP.
    pub tls: Option<ListenerTlsConfig>,
    /// A second listener for the configuration API, the tester and the console.
    pub admin_listen: Option<SocketAddr>,
    /// TLS of `admin_listen`; absent: plain HTTP.
    pub admin_tls: Option<ListenerTlsConfig>,
    /// Worker threads serving connections; 0: one per CPU core.
    pub workers: usize,
    /// On SIGTERM, time given to requests in flight before connections are closed.
    #[serde(with = "seconds")]
    pub shutdown_grace_seconds: Duration,
    /// Proxies (addresses or CIDR networks) whose `X-Forwarded-For` names the client.
    #[serde(with = "networks")]
    pub trusted_proxies: Vec<Cidr>,
    /// Time from accept to the first complete request head (TLS handshake included); on
    /// HTTP/1.1 also from the end of one answer to the end of the next request head.
    #[serde(with = "seconds")]
    pub request_head_timeout_seconds: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY).
    #[serde(with = "seconds")]
    pub idle_timeout_seconds: Duration,
    /// Open client connections, every listener together; past it a new one is closed at once.
    pub max_connections: usize,
    /// Open client connections from one address (IPv6: one /64); `trusted_proxies` are
    /// counted against `max_connections` only.
    pub max_connections_per_ip: usize,
    /// Largest HTTP/1.1 request head (request line and headers), in bytes: 431 past it.
    pub max_request_head_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            admin_listen: None,
            admin_tls: None,
            workers: 0,
            shutdown_grace_seconds: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            request_head_timeout_seconds: Duration::from_secs(15),
            idle_timeout_seconds: Duration::from_secs(60),
            max_connections: 16_384,
            max_connections_per_ip: 1024,
            max_request_head_bytes: 64 * 1024,
        }
    }
}

/// HTTPS on a listener. The files are watched: a replaced certificate is served to new
/// connections (open ones keep theirs); a broken replacement is logged and the last good one
/// stays.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// PEM: the server certificate, then its chain.
    pub cert_file: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM: the CAs whose client certificates callers may present.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: `optional` (ask; callers may still use tokens) or `required`
    /// (no verified certificate, no connection).
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// Whether a listener demands client certificates.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    Optional,
    Required,
}

/// A client certificate that stands for a caller (see `mtls_auth::certificate`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificateRule {
    /// The exact subject, RFC 4514 (`openssl x509 -noout -subject -nameopt RFC2253`).
    #[serde(default)]
    pub subject: Option<String>,
    /// A DNS name, URI or e-mail address among the subject alternative names.
    #[serde(default)]
    pub san: Option<String>,
    pub accounts: Vec<String>,
    pub privileges: Vec<String>,
}

/// Token buckets of one endpoint group; a rate of 0 turns that bucket off.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupLimits {
    pub per_ip_per_second: f64,
    pub per_ip_burst: f64,
    pub per_account_per_second: f64,
    pub per_account_burst: f64,
}

impl GroupLimits {
    fn new(per_ip: (f64, f64), per_account: (f64, f64)) -> Self {
        Self {
            per_ip_per_second: per_ip.0,
            per_ip_burst: per_ip.1,
            per_account_per_second: per_account.0,
            per_account_burst: per_account.1,
        }
    }
}

/// Rate limits per endpoint group (SPEC 7.3).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    pub configuration: GroupLimits,
    pub checks: GroupLimits,
    pub forward: GroupLimits,
    pub tester: GroupLimits,
}

impl Default for RateLimitsConfig {
    /// Configuration and tester calls are limited; the runtime groups serve platform services
    /// at high rates and are unlimited until the operator sets limits.
    fn default() -> Self {
        Self {
            configuration: GroupLimits::new((50.0, 200.0), (20.0, 100.0)),
            checks: GroupLimits::default(),
            forward: GroupLimits::default(),
            tester: GroupLimits::new((5.0, 20.0), (2.0, 10.0)),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accept HS256 tokens signed with the gateway's secret (the ones `token issue` mints).
    pub hs256_enabled: bool,
    /// The HS256 secret (at least 32 bytes). Absent: generated once in the data directory.
    pub hs256_secret: Option<Secret>,
    /// PEM files with RSA or P-256 public keys for RS256/ES256 tokens.
    pub public_key_files: Vec<PathBuf>,
    /// JWKS files with RSA or P-256 keys for RS256/ES256 tokens.
    pub jwks_files: Vec<PathBuf>,
    /// Required `aud` values (any one of them); empty: not checked.
    pub audience: Vec<String>,
    /// Required `iss` values (any one of them); empty: not checked.
    pub issuer: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf` (whole seconds).
    #[serde(with = "whole_seconds")]
    pub leeway_seconds: Duration,
    /// OAuth 1.0a: accepted distance between `oauth_timestamp` and now (whole seconds).
    #[serde(with = "whole_seconds")]
    pub oauth_timestamp_window_seconds: Duration,
    /// OAuth 1.0a: `https://gateway.example` as clients address the gateway, when a proxy in
    /// front changes the scheme, host or port they signed. Absent: `http://` + `Host`.
    pub public_base_url: Option<HttpUrl>,
    /// Callers authenticated by the client certificate a listener verified.
    pub client_certificates: Vec<ClientCertificateRule>,
    /// `[auth.claims]`: how an identity provider's RS256/ES256 tokens name accounts, caller and
    /// rights. Absent: those tokens carry `sub`, `accounts` and `privileges` (SPEC 3).
    pub claims: Option<ClaimsConfig>,
    /// `POST /oauth2/token`: app keys exchanged for Bearer tokens (client credentials).
    pub token_endpoint: TokenEndpointConfig,
}

/// `[auth.claims]`, the claim mapping of SPEC 3 (see `mtls_auth::claims`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsConfig {
    /// The identity provider's `iss` values (any one of them): required, and checked on the
    /// mapped tokens instead of `auth.issuer`.
    pub issuer: Vec<String>,
    /// The claim naming the accounts (a string or an array of strings), e.g. `aud`.
    pub accounts: String,
    /// The claim naming the caller in logs and the audit trail, e.g. `azp`.
    pub caller: String,
    /// The claim carrying the scope values (space-separated string or array).
    #[serde(default = "ClaimsConfig::default_scope")]
    pub scope: String,
    /// `[auth.claims.scopes]`: scope value to privilege names; unlisted values grant nothing.
    #[serde(default)]
    pub scopes: std::collections::BTreeMap<String, Vec<String>>,
    /// Honour `*` in the accounts claim as every account.
    #[serde(default)]
    pub wildcard_accounts: bool,
}

impl ClaimsConfig {
    fn default_scope() -> String {
        "scope".to_owned()
    }

    /// The mapping the verifier applies; the error names the key at fault.
    pub fn mapping(&self, auth: &AuthConfig) -> Result<mtls_auth::ClaimMapping, ConfigError> {
        for (key, name) in [
            ("accounts", &self.accounts),
            ("caller", &self.caller),
            ("scope", &self.scope),
        ] {
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(ConfigError(format!(
                    "auth.claims.{key}: must name a claim, not {name:?}"
                )));
            }
        }
        let mut scopes = std::collections::BTreeMap::new();
        for (value, names) in &self.scopes {
            if value.is_empty() || value.contains(' ') {
                return Err(ConfigError(format!(
                    "auth.claims.scopes: {value:?} is not a scope value (no spaces, not empty)"
                )));
            }
            if let Some(unknown) = names
                .iter()
                .find(|name| mtls_auth::Privilege::parse(name).is_none())
            {
                return Err(ConfigError(format!(
                    "auth.claims.scopes.{value:?}: {unknown:?} is not a privilege"
                )));
            }
            let privileges = mtls_auth::Privileges::from_names(names.iter().map(String::as_str));
            scopes.insert(value.clone(), privileges);
        }
        if self.accounts == "aud" && !auth.audience.is_empty() {
            return Err(ConfigError(
                "auth.claims.accounts: \"aud\" carries the accounts, so auth.audience must be \
                 empty (the issuer check binds the tokens to the identity provider)"
                    .to_owned(),
            ));
        }
        if self.issuer.is_empty() || self.issuer.iter().any(String::is_empty) {
            return Err(ConfigError(
                "auth.claims.issuer: must list the identity provider's `iss` values".to_owned(),
            ));
        }
        if auth.public_key_files.is_empty() && auth.jwks_files.is_empty() {
            return Err(ConfigError(
                "auth.claims: reads RS256/ES256 tokens; set auth.jwks_files or \
                 auth.public_key_files"
                    .to_owned(),
            ));
        }
        Ok(mtls_auth::ClaimMapping {
            issuer: self.issuer.clone(),
            accounts: self.accounts.clone(),
            caller: self.caller.clone(),
            scope: self.scope.clone(),
            scopes,
            wildcard_accounts: self.wildcard_accounts,
        })
    }
}

/// `[auth.token_endpoint]`: RFC 6749 client credentials for app keys (SPEC 3).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenEndpointConfig {
    /// Serve `POST /oauth2/token` (needs `auth.hs256_enabled`: its tokens are HS256).
    pub enabled: bool,
    /// Lifetime of each token (`expires_in`; whole seconds).
    #[serde(with = "whole_seconds")]
    pub lifetime_seconds: Duration,
}

impl Default for TokenEndpointConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lifetime_seconds: Duration::from_secs(3600),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_enabled: true,
            hs256_secret: None,
            public_key_files: Vec::new(),
            jwks_files: Vec::new(),
            audience: Vec::new(),
            issuer: Vec::new(),
            leeway_seconds: Duration::from_secs(30),
            oauth_timestamp_window_seconds: Duration::from_secs(300),
            public_base_url: None,
            client_certificates: Vec::new(),
            claims: None,
            token_endpoint: TokenEndpointConfig::default(),
        }
    }
}

/// Per-account caps (issue 17): a create past one is 409.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Most live (not deleted) certificates per account.
    pub max_certificates: usize,
    /// Most live (not deleted) mappings per account.
    pub max_mappings: usize,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            max_certificates: 1000,
            max_mappings: 10_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Largest PKCS#12 file accepted, in bytes (413 past it).
    pub max_file_bytes: usize,
    /// Largest key-derivation or MAC iteration count accepted in one file (`p12_too_costly`).
    pub max_iterations: u32,
    /// Largest sum of iteration counts over one file.
    pub max_total_iterations: u64,
    /// A leaf expiring within this many days gets a warning.
    pub expiry_warning_days: u32,
    /// PKCS#12 files checked at the same time (each may take up to a second of CPU).
    pub concurrency: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        let cost = mtls_pki::CostLimits::default();
        Self {
            max_file_bytes: 1024 * 1024,
            max_iterations: cost.max_iterations,
            max_total_iterations: cost.max_total_iterations,
            expiry_warning_days: 30,
            concurrency: std::thread::available_parallelism().map_or(2, usize::from),
        }
    }
}

impl IntakeConfig {
    pub fn policy(&self) -> mtls_pki::IntakePolicy {
        mtls_pki::IntakePolicy {
            cost: mtls_pki::CostLimits {
                max_iterations: self.max_iterations,
                max_total_iterations: self.max_total_iterations,
            },
            expiry_warning_seconds: i64::from(self.expiry_warning_days) * 86_400,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// A tracing filter (`info`, `mtls_api=debug,info`, ...); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// `/metrics`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// When set, `/metrics` requires `Authorization: Bearer <this>`.
    pub bearer_token: Option<Secret>,
}

/// OpenTelemetry span export (docs/operations.md, "Tracing"); off without `otlp_endpoint`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The OTLP/HTTP traces URL (protobuf), e.g. `http://collector:4318/v1/traces`: `http`
    /// or `https`, no credentials (it is logged).
    pub otlp_endpoint: Option<HttpUrl>,
    /// The `service.name` resource attribute of every span.
    pub service_name: String,
    /// The share of new traces recorded, 0 to 1 (a caller's sampled flag decides for its own).
    pub sample_ratio: f64,
    /// Per export call.
    #[serde(with = "seconds")]
    pub export_timeout_seconds: Duration,
    /// Most spans per export call.
    pub batch_size: usize,
    /// Most spans waiting for export; past it, new spans are dropped and counted.
    pub queue_capacity: usize,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "mtls-gateway".to_owned(),
            sample_ratio: 1.0,
            export_timeout_seconds: Duration::from_secs(10),
            batch_size: 512,
            queue_capacity: 2048,
        }
    }
}

impl TracingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(format!("tracing.{message}")));
        if self.service_name.trim().is_empty() || self.service_name.len() > 256 {
            return fail("service_name: must be 1 to 256 characters".to_owned());
        }
        let ratio = self.sample_ratio;
        if !(ratio.is_finite() && (0.0..=1.0).contains(&ratio)) {
            return fail(format!(
                "sample_ratio: must be a number from 0 to 1, not {ratio}"
            ));
        }
        check_seconds(
            "tracing.export_timeout_seconds",
            self.export_timeout_seconds,
            MIN_DURATION,
            Duration::from_secs(3600),
        )?;
        for (key, value, max) in [
            ("batch_size", self.batch_size, 100_000),
            ("queue_capacity", self.queue_capacity, 10_000_000),
        ] {
            if !(1..=max).contains(&value) {
                return fail(format!("{key}: must be from 1 to {max}, not {value}"));
            }
        }
        Ok(())
    }
}

/// The certificate expiry monitor.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpiryConfig {
    /// Days before `notAfter` at which a certificate is reported, once per threshold.
    pub thresholds_days: Vec<u32>,
    /// How often the live certificates are checked (and the expiry metrics refreshed).
    #[serde(with = "seconds")]
    pub check_interval_seconds: Duration,
    /// Where a JSON notification is POSTed (once per certificate and threshold); absent: log
    /// and metrics only.
    pub webhook_url: Option<Secret>,
    /// Per webhook call.
    #[serde(with = "seconds")]
    pub webhook_timeout_seconds: Duration,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        Self {
            thresholds_days: vec![30, 14, 7, 1],
            check_interval_seconds: Duration::from_secs(300),
            webhook_url: None,
            webhook_timeout_seconds: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// How often the routing table checks the database for changes made by other nodes.
    #[serde(with = "seconds")]
    pub sync_interval_seconds: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            sync_interval_seconds: Duration::from_secs(2),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Allow plain `http` targets (mappings and forwards). Off: only `https`.
    pub allow_http: bool,
    /// Networks (CIDR) the forward path may reach although they are private, loopback, ...
    #[serde(with = "networks")]
    pub allow_cidrs: Vec<Cidr>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM bundles trusted for upstream server certificates, beside the system roots.
    pub trust_roots: Vec<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Forward calls that match no mapping (ordinary TLS, no client certificate).
    pub allow_unmapped: bool,
    /// Largest request body relayed (413 past it).
    pub max_body_bytes: usize,
    #[serde(with = "seconds")]
    pub connect_timeout_seconds: Duration,
    /// Time allowed for the target's response headers after the end of the request body (for
    /// a request without a body: after the start of the call, TLS handshake included).
    #[serde(with = "seconds")]
    pub response_timeout_seconds: Duration,
    /// A body with nothing moving in either direction for this long is given up (the caller's
    /// upload: 408; the target's response body: the caller's connection is cut). Absent: equal
    /// to `response_timeout_seconds`.
    #[serde(with = "seconds::optional")]
    pub body_idle_timeout_seconds: Option<Duration>,
    /// Idle upstream connections are closed after this long.
    #[serde(with = "seconds")]
    pub idle_timeout_seconds: Duration,
    /// Load every mapped certificate's identity (secret fetch + parse) when the routing table
    /// changes, instead of at its first request.
    pub preload_identities: bool,
    /// `same-origin`: 301/302/303/307/308 to the forwarded URL's origin are followed with the
    /// same certificate (at most 5 hops); `never`: every 3xx is relayed.
    pub follow_redirects: FollowRedirects,
    /// Idle upstream connections kept per identity (over every worker thread); past it the one
    /// idle longest is closed.
    pub max_idle_per_identity: usize,
    /// Idle upstream connections kept in all; past it the ones idle longest, whichever their
    /// identity, are closed.
    pub max_idle_total: usize,
    /// An identity with no request for this long is unloaded (its key material dropped and
    /// zeroized); its next request loads it again.
    #[serde(with = "seconds")]
    pub identity_idle_seconds: Duration,
    /// `when-offered`: ALPN offers `h2` and `http/1.1`, and a target that offers HTTP/2 is
    /// spoken to over it; `never`: `http/1.1` only.
    pub upstream_http2: UpstreamHttp2,
}

/// `forward.upstream_http2`, read into the runtime's setting at load (another value is an
/// error naming the key).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamHttp2 {
    #[default]
    WhenOffered,
    Never,
}

impl From<UpstreamHttp2> for mtls_runtime::forward::UpstreamHttp2 {
    fn from(value: UpstreamHttp2) -> Self {
        match value {
            UpstreamHttp2::WhenOffered => Self::WhenOffered,
            UpstreamHttp2::Never => Self::Never,
        }
    }
}

/// `forward.follow_redirects`, read into the runtime's setting at load (another value is an
/// error naming the key).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FollowRedirects {
    #[default]
    SameOrigin,
    Never,
}

impl From<FollowRedirects> for mtls_runtime::redirect::FollowRedirects {
    fn from(value: FollowRedirects) -> Self {
        match value {
            FollowRedirects::SameOrigin => Self::SameOrigin,
            FollowRedirects::Never => Self::Never,
        }
    }
}

impl ForwardConfig {
    /// `forward.body_idle_timeout_seconds`, or `forward.response_timeout_seconds` when absent.
    pub fn body_idle_timeout(&self) -> Duration {
        self.body_idle_timeout_seconds
            .unwrap_or(self.response_timeout_seconds)
    }
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            allow_unmapped: true,
            max_body_bytes: 10 * 1024 * 1024,
            connect_timeout_seconds: Duration::from_secs(5),
            response_timeout_seconds: Duration::from_secs(30),
            body_idle_timeout_seconds: None,
            idle_timeout_seconds: Duration::from_secs(90),
            preload_identities: false,
            follow_redirects: FollowRedirects::SameOrigin,
            max_idle_per_identity: 256,
            max_idle_total: 4096,
            identity_idle_seconds: Duration::from_secs(600),
            upstream_http2: UpstreamHttp2::WhenOffered,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `mysql://user:password@host:port/database` (a secret: it may hold a
    /// password). Absent: `sqlite://<data_dir>/mtls-gateway.db`.
    pub url: Option<Secret>,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before a 503 (whole seconds).
    #[serde(with = "whole_seconds")]
    pub acquire_timeout_seconds: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 10,
            acquire_timeout_seconds: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SecretsBackend {
    Local,
    Vault,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// `local` (AES-256-GCM, ciphertext in the database) or `vault` (KV v2).
    pub backend: SecretsBackend,
    pub local: LocalSecretsConfig,
    pub vault: VaultConfig,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            backend: SecretsBackend::Local,
            local: LocalSecretsConfig::default(),
            vault: VaultConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSecretsConfig {
    /// 64 hex characters (32 bytes). Absent: `<data_dir>/master.key`, generated (mode 0600) on
    /// first start; refused when group or others can read it.
    pub master_key_file: Option<PathBuf>,
    /// The master key itself (64 hex characters), for deployments that inject it.
    pub master_key: Option<Secret>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// `http` or `https` URL of Vault or OpenBao.
    pub address: HttpUrl,
    /// The KV version 2 mount.
    pub mount: String,
    /// Path prefix inside the mount: secrets live at `<prefix>/accounts/<account>/certificates/<id>`.
    pub prefix: String,
    pub namespace: Option<String>,
    /// PEM CA bundle for Vault's TLS certificate (added to the system roots).
    pub ca_file: Option<PathBuf>,
    /// A Vault token; or use AppRole with `role_id` and `secret_id`.
    pub token: Option<Secret>,
    pub role_id: Option<String>,
    pub secret_id: Option<Secret>,
    /// Where the AppRole auth method is mounted.
    pub approle_mount: String,
    /// Per Vault call (whole seconds).
    #[serde(with = "whole_seconds")]
    pub timeout_seconds: Duration,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            address: HttpUrl::default_vault_address(),
            mount: "secret".to_owned(),
            prefix: "mtls".to_owned(),
            namespace: None,
            ca_file: None,
            token: None,
            role_id: None,
            secret_id: None,
            approle_mount: "approle".to_owned(),
            timeout_seconds: Duration::from_secs(10),
        }
    }
}

/// A configuration that cannot be loaded; the message names the key or file at fault.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads the file (when given) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Loads the file (when given) and `vars` as the environment.
    pub fn load_from(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "configuration file {} not found",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let plain: Vec<(String, String)> = vars
            .iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX) && secret_file_key(name).is_none())
            .cloned()
            .collect();
        figment = figment.merge(env_provider(plain));
        for (name, path) in &vars {
            let Some(key) = secret_file_key(name) else {
                continue;
            };
            let direct = name.trim_end_matches("_FILE");
            if vars.iter().any(|(other, _)| other == direct) {
                return Err(ConfigError(format!(
                    "set either {direct} or {name}, not both"
                )));
            }
            let value = std::fs::read_to_string(path)
                .map_err(|error| ConfigError(format!("{name}: cannot read {path}: {error}")))?;
            let value = Zeroizing::new(value);
            figment = figment.merge(Serialized::default(
                key,
                value.trim_end_matches(['\n', '\r']).to_owned(),
            ));
        }
        let config = figment.extract::<Config>().map_err(|error| {
            let messages: Vec<String> = error.into_iter().map(|error| key_first(&error)).collect();
            ConfigError(format!("invalid configuration: {}", messages.join("; ")))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every numeric value against its range, so that no value can panic or spin later
    /// (`inf`, `nan`, negative or huge durations, a concurrency of 0); the error names the key.
    /// Run by [`Config::load_from`] and again by `server::start` (tests build configurations in
    /// code).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (server, forward, expiry) = (&self.server, &self.forward, &self.expiry);
        let (auth, vault) = (&self.auth, &self.secrets.vault);
        let second = Duration::from_secs(1);
        for (key, value, min, max) in [
            (
                "server.shutdown_grace_seconds",
                server.shutdown_grace_seconds,
                Duration::ZERO,
                MAX_DURATION,
            ),
            (
                "server.request_head_timeout_seconds",
                server.request_head_timeout_seconds,
                MIN_DURATION,
                MAX_DURATION,
            ),
            (
                "server.idle_timeout_seconds",
                server.idle_timeout_seconds,
                MIN_DURATION,
                MAX_DURATION,
            ),
            (
                "runtime.sync_interval_seconds",
                self.runtime.sync_interval_seconds,
                MIN_DURATION,
                MAX_DURATION,
            ),
            (
                "forward.connect_timeout_seconds",
                forward.connect_timeout_seconds,
                MIN_DURATION,
                MAX_DURATION,
            ),
            (
                "forward.response_timeout_seconds",
                forward.response_timeout_seconds,
                MIN_DURATION,
                MAX_DURATION,
            ),
            (
                "forward.idle_timeout_seconds",
                forward.idle_timeout_seconds,
                MIN_DURATION,
                MAX_DURATION,
            ),
            (
                "forward.body_idle_timeout_seconds",
                forward.body_idle_timeout(),
                MIN_DURATION,
                MAX_DURATION,
            ),
            (
                "forward.identity_idle_seconds",
                forward.identity_idle_seconds,
                MIN_DURATION,
                MAX_DURATION,
            ),
            (
                "expiry.check_interval_seconds",
                expiry.check_interval_seconds,
                MIN_DURATION,
                MAX_DURATION,
            ),
            (
                "expiry.webhook_timeout_seconds",
                expiry.webhook_timeout_seconds,
                MIN_DURATION,
                MAX_DURATION,
            ),
            (
                "auth.leeway_seconds",
                auth.leeway_seconds,
                Duration::ZERO,
                DAY,
            ),
            (
                "auth.oauth_timestamp_window_seconds",
                auth.oauth_timestamp_window_seconds,
                second,
                DAY,
            ),
            (
                "auth.token_endpoint.lifetime_seconds",
                auth.token_endpoint.lifetime_seconds,
                second,
                DAY,
            ),
            (
                "database.acquire_timeout_seconds",
                self.database.acquire_timeout_seconds,
                second,
                MAX_DURATION,
            ),
            (
                "secrets.vault.timeout_seconds",
                vault.timeout_seconds,
                second,
                MAX_DURATION,
            ),
        ] {
            check_seconds(key, value, min, max)?;
        }
        // The keys read as whole seconds (a configuration built in code could hold fractions,
        // which the consumers of these keys would cut off).
        for (key, value) in [
            ("auth.leeway_seconds", auth.leeway_seconds),
            (
                "auth.oauth_timestamp_window_seconds",
                auth.oauth_timestamp_window_seconds,
            ),
            (
                "auth.token_endpoint.lifetime_seconds",
                auth.token_endpoint.lifetime_seconds,
            ),
            (
                "database.acquire_timeout_seconds",
                self.database.acquire_timeout_seconds,
            ),
            ("secrets.vault.timeout_seconds", vault.timeout_seconds),
        ] {
            if value.subsec_nanos() != 0 {
                return Err(ConfigError(format!(
                    "{key}: must be a whole number of seconds, got {}",
                    show(value)
                )));
            }
        }
        let limits = &self.rate_limits;
        for (group, limits) in [
            ("configuration", limits.configuration),
            ("checks", limits.checks),
            ("forward", limits.forward),
            ("tester", limits.tester),
        ] {
            for (name, value) in [
                ("per_ip_per_second", limits.per_ip_per_second),
                ("per_ip_burst", limits.per_ip_burst),
                ("per_account_per_second", limits.per_account_per_second),
                ("per_account_burst", limits.per_account_burst),
            ] {
                if !(value.is_finite() && (0.0..=MAX_RATE).contains(&value)) {
                    return Err(ConfigError(format!(
                        "rate_limits.{group}.{name}: must be a number from 0 to {MAX_RATE}, not {value}"
                    )));
                }
            }
        }
        let as_u64 = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
        let (intake, database) = (&self.intake, &self.database);
        for (key, value, min, max) in [
            ("server.workers", as_u64(server.workers), 0, 1024),
            (
                "server.max_connections",
                as_u64(server.max_connections),
                1,
                10_000_000,
            ),
            (
                "server.max_connections_per_ip",
                as_u64(server.max_connections_per_ip),
                1,
                10_000_000,
            ),
            (
                "server.max_request_head_bytes",
                as_u64(server.max_request_head_bytes),
                1024,
                1024 * 1024,
            ),
            (
                "accounts.max_certificates",
                as_u64(self.accounts.max_certificates),
                1,
                10_000_000,
            ),
            (
                "accounts.max_mappings",
                as_u64(self.accounts.max_mappings),
                1,
                10_000_000,
            ),
            (
                "intake.max_file_bytes",
                as_u64(intake.max_file_bytes),
                1,
                1 << 30,
            ),
            (
                "intake.max_iterations",
                u64::from(intake.max_iterations),
                1,
                u64::from(u32::MAX),
            ),
            (
                "intake.max_total_iterations",
                intake.max_total_iterations,
                1,
                1 << 40,
            ),
            (
                "intake.expiry_warning_days",
                u64::from(intake.expiry_warning_days),
                0,
                36_500,
            ),
            ("intake.concurrency", as_u64(intake.concurrency), 1, 1024),
            (
                "forward.max_body_bytes",
                as_u64(forward.max_body_bytes),
                0,
                1 << 40,
            ),
            (
                "forward.max_idle_per_identity",
                as_u64(forward.max_idle_per_identity),
                1,
                1 << 20,
            ),
            (
                "forward.max_idle_total",
                as_u64(forward.max_idle_total),
                1,
                1 << 24,
            ),
            (
                "database.max_connections",
                u64::from(database.max_connections),
                1,
                1000,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err(ConfigError(format!(
                    "{key}: must be from {min} to {max}, not {value}"
                )));
            }
        }
        if let Some(claims) = &self.auth.claims {
            claims.mapping(&self.auth)?;
        }
        if let Some(days) = expiry.thresholds_days.iter().find(|days| **days > 36_500) {
            return Err(ConfigError(format!(
                "expiry.thresholds_days: each must be from 0 to 36500, not {days}"
            )));
        }
        self.tracing.validate()?;
        Ok(())
    }

    /// The configuration as one JSON line, secrets shown as `<redacted>`.
    pub fn redacted_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// One extraction error, the key first: `forward.response_timeout_seconds: must be a number of
/// seconds from 0 to 31536000 (a year), got -1`, then the file it came from, if any.
fn key_first(error: &figment::Error) -> String {
    let mut message = if error.path.is_empty() {
        error.kind.to_string()
    } else {
        format!("{}: {}", error.path.join("."), error.kind)
    };
    if let Some(figment::Source::File(path)) = error
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.source.as_ref())
    {
        message.push_str(&format!(" (in {})", path.display()));
    }
    message
}

/// `MTLS_GATEWAY__AUTH__HS256_SECRET_FILE` -> `Some("auth.hs256_secret")` for secret keys only.
fn secret_file_key(name: &str) -> Option<&'static str> {
    let key = name
        .strip_prefix(ENV_PREFIX)?
        .strip_suffix("_FILE")?
        .to_ascii_lowercase()
        .replace("__", ".");
    SECRET_KEYS.iter().copied().find(|secret| *secret == key)
}

/// The environment provider over an explicit list of variables (so tests need not touch the
/// process environment).
fn env_provider(vars: Vec<(String, String)>) -> impl figment::Provider {
    let mut figment = Figment::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        // Secrets stay text as written: parsing could turn an all-digit key into a number.
        let parsed: figment::value::Value = if SECRET_KEYS.contains(&key.as_str()) {
            value.into()
        } else {
            value.parse().unwrap_or_else(|_| value.clone().into())
        };
        figment = figment.merge(Serialized::default(&key, parsed));
    }
    figment
}
