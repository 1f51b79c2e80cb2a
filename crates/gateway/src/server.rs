//! Start-up wiring: configuration -> authenticator, intake policy, router, listener.

use std::net::SocketAddr;

use mtls_api::ratelimit::{Group, Limit, RateLimits};
use mtls_api::services::Services;
use mtls_api::{AppState, ForwardSettings, Limits, Settings};
use mtls_auth::certificate::{CertificatePrincipals, CertificateRule};
use mtls_auth::{Authenticator, BearerConfig, BearerVerifier};
use mtls_runtime::egress::EgressPolicy;
use mtls_runtime::forward::{Forwarder, Timeouts};
use std::sync::Arc;

use mtls_api::Surface;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::config::{Config, ConfigError};
use crate::data_dir;
use crate::listen::limits::ConnectionLimits;
use crate::listen::{Endpoint, Workers};
use crate::tls::ServerTls;

/// A gateway serving in the background (tests and `serve`).
#[derive(Debug)]
pub struct Running {
    /// The address of `server.listen`.
    pub address: SocketAddr,
    /// The address of `server.admin_listen`, when set.
    pub admin_address: Option<SocketAddr>,
    state: AppState,
    workers: Option<Workers>,
    reloader: JoinHandle<()>,
    unloader: JoinHandle<()>,
}

impl Running {
    /// Readiness off, stop accepting, let requests in flight finish within the grace period,
    /// and wait for the workers to end.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.state.drain();
        self.reloader.abort();
        self.unloader.abort();
        if let Some(workers) = self.workers.take() {
            tokio::task::spawn_blocking(move || workers.stop())
                .await
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    /// Waits for SIGTERM or Ctrl-C, then [`Running::stop`] (for `serve`).
    pub async fn wait(self) -> std::io::Result<()> {
        signal().await;
        tracing::info!(
            "shutting down: readiness off, no new connections, requests in flight finish"
        );
        self.stop().await
    }
}

/// The HS256 secret in force: configured, or generated in the data directory.
pub fn hs256_secret(config: &Config) -> Result<Option<Zeroizing<Vec<u8>>>, ConfigError> {
    if !config.auth.hs256_enabled {
        return Ok(None);
    }
    if let Some(secret) = &config.auth.hs256_secret {
        return Ok(Some(Zeroizing::new(secret.expose().as_bytes().to_vec())));
    }
    data_dir::ensure(&config.data_dir)?;
    data_dir::secret_file(&config.data_dir, data_dir::SIGNING_KEY_FILE).map(Some)
}

fn read_all(paths: &[std::path::PathBuf], what: &str) -> Result<Vec<Vec<u8>>, ConfigError> {
    paths
        .iter()
        .map(|path: &std::path::PathBuf| {
            std::fs::read(path)
                .map_err(|error| ConfigError(format!("{what} {}: {error}", path.display())))
        })
        .collect()
}

/// The forward clients, egress policy and trust roots the configuration describes.
pub fn forwarder(config: &Config) -> Result<Forwarder, ConfigError> {
    let pems = read_all(&config.tls.trust_roots, "tls.trust_roots:")?;
    let roots = mtls_runtime::identity::base_roots(&pems).map_err(ConfigError)?;
    let timeouts = Timeouts {
        connect: config.forward.connect_timeout_seconds,
        response_headers: config.forward.response_timeout_seconds,
        body_idle: config.forward.body_idle_timeout(),
        idle: config.forward.idle_timeout_seconds,
    };
    Ok(Forwarder::new(
        EgressPolicy {
            allow: config.egress.allow_cidrs.clone(),
            allow_http: config.egress.allow_http,
        },
        roots,
        timeouts,
    )
    .with_limits(
        mtls_runtime::forward::IdleLimits::new(
            config.forward.max_idle_per_identity,
            config.forward.max_idle_total,
        ),
        config.forward.identity_idle_seconds,
    )
    .with_http2(config.forward.upstream_http2.into()))
}

fn rate_limits(config: &Config) -> RateLimits {
    let mut limits = RateLimits {
        trusted_proxies: config.server.trusted_proxies.clone(),
        ..RateLimits::default()
    };
    let groups = &config.rate_limits;
    for (group, settings) in [
        (Group::Configuration, groups.configuration),
        (Group::Checks, groups.checks),
        (Group::Forward, groups.forward),
        (Group::Tester, groups.tester),
    ] {
        if settings.per_ip_per_second > 0.0 {
            limits.per_ip.insert(
                group,
                Limit {
                    per_second: settings.per_ip_per_second,
                    burst: settings.per_ip_burst.max(1.0),
                },
            );
        }
        if settings.per_account_per_second > 0.0 {
            limits.per_account.insert(
                group,
                Limit {
                    per_second: settings.per_account_per_second,
                    burst: settings.per_account_burst.max(1.0),
                },
            );
        }
    }
    limits
}

fn certificate_principals(config: &Config) -> Result<CertificatePrincipals, ConfigError> {
    let rules = config
        .auth
        .client_certificates
        .iter()
        .map(|rule| CertificateRule {
            subject: rule.subject.clone(),
            san: rule.san.clone(),
            accounts: rule.accounts.clone(),
            privileges: rule.privileges.clone(),
        })
        .collect();
    CertificatePrincipals::new(rules).map_err(ConfigError)
}

/// `POST /oauth2/token`, when enabled and HS256 is on (its tokens are signed with that key).
fn token_endpoint(
    config: &Config,
    secret: Option<&[u8]>,
) -> Result<Option<mtls_api::TokenEndpoint>, ConfigError> {
    let settings = &config.auth.token_endpoint;
    let Some(secret) = secret.filter(|_| settings.enabled) else {
        return Ok(None);
    };
    let issuer = mtls_auth::client_credentials::ClientTokenIssuer::new(
        secret,
        config.auth.audience.first().cloned(),
        config.auth.issuer.first().cloned(),
    )
    .map_err(|error| ConfigError(format!("auth.token_endpoint: {error}")))?;
    Ok(Some(mtls_api::TokenEndpoint {
        issuer: std::sync::Arc::new(issuer),
        lifetime_seconds: settings.lifetime_seconds.as_secs(),
    }))
}

/// Builds the application state from the configuration.
pub fn state(config: &Config) -> Result<AppState, ConfigError> {
    data_dir::ensure(&config.data_dir)?;
    let secret = hs256_secret(config)?;
    let token_endpoint = token_endpoint(config, secret.as_deref().map(Vec::as_slice))?;
    let bearer = BearerConfig {
        hs256_secret: secret,
        public_key_pems: read_all(&config.auth.public_key_files, "auth.public_key_files:")?,
        jwks: read_all(&config.auth.jwks_files, "auth.jwks_files:")?,
        audience: config.auth.audience.clone(),
        issuer: config.auth.issuer.clone(),
        leeway_seconds: config.auth.leeway_seconds.as_secs(),
        claims: (config.auth.claims.as_ref())
            .map(|claims| claims.mapping(&config.auth))
            .transpose()?,
    };
    let verifier =
        BearerVerifier::new(bearer).map_err(|error| ConfigError(format!("auth: {error}")))?;
    let limits = Limits {
        p12_max_bytes: config.intake.max_file_bytes,
        max_certificates_per_account: config.accounts.max_certificates,
        max_mappings_per_account: config.accounts.max_mappings,
        ..Limits::default()
    };
    let settings = Settings {
        intake: config.intake.policy(),
        limits,
        intake_concurrency: config.intake.concurrency,
        services: Services::new(config.services.clone()),
        allow_http: config.egress.allow_http,
        rate_limits: rate_limits(config),
        public_base_url: config.auth.public_base_url.clone().map(String::from),
        forwarder: std::sync::Arc::new(forwarder(config)?),
        forward: ForwardSettings {
            allow_unmapped: config.forward.allow_unmapped,
            max_body_bytes: config.forward.max_body_bytes,
            preload_identities: config.forward.preload_identities,
            follow_redirects: config.forward.follow_redirects.into(),
        },
        certificate_principals: certificate_principals(config)?,
        metrics_token: config
            .metrics
            .bearer_token
            .as_ref()
            .map(|token| Zeroizing::new(token.expose().to_owned())),
        tracing: tracing_exporter(config)?,
        token_endpoint,
    };
    Ok(AppState::new(
        Authenticator::new(
            verifier,
            i64::try_from(config.auth.oauth_timestamp_window_seconds.as_secs())
                .unwrap_or(i64::MAX)
                .max(1),
        ),
        settings,
    ))
}

/// The span exporter when `tracing.otlp_endpoint` is set; its task runs on the current
/// runtime.
fn tracing_exporter(config: &Config) -> Result<Option<Arc<mtls_otel::Exporter>>, ConfigError> {
    let wanted = &config.tracing;
    let Some(endpoint) = &wanted.otlp_endpoint else {
        return Ok(None);
    };
    let timeout = wanted.export_timeout_seconds;
    // System roots, no proxy variables, no redirects: the dependencies' client.
    let client = mtls_secrets::vault::client(None, timeout)
        .map_err(|error| ConfigError(format!("tracing: {error}")))?;
    let settings = mtls_otel::Settings {
        endpoint: endpoint.to_string(),
        service_name: wanted.service_name.clone(),
        sample_ratio: wanted.sample_ratio,
        timeout,
        batch_size: wanted.batch_size,
        queue_capacity: wanted.queue_capacity,
        flush_interval: std::time::Duration::from_secs(1),
    };
    tracing::info!(
        batch_size = wanted.batch_size,
        queue_capacity = wanted.queue_capacity,
        "exporting spans over OTLP/HTTP"
    );
    mtls_otel::Exporter::start(settings, client)
        .map(Some)
        .map_err(|error| ConfigError(format!("tracing: {error}")))
}

fn bind(address: SocketAddr) -> Result<std::net::TcpListener, ConfigError> {
    let listener = std::net::TcpListener::bind(address)
        .map_err(|error| ConfigError(format!("cannot listen on {address}: {error}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|error| ConfigError(format!("cannot listen on {address}: {error}")))?;
    Ok(listener)
}

fn listener_tls(
    settings: Option<&crate::config::ListenerTlsConfig>,
    what: &str,
) -> Result<Option<Arc<ServerTls>>, ConfigError> {
    settings
        .map(|settings| {
            ServerTls::load(settings)
                .map(Arc::new)
                .map_err(|error| ConfigError(format!("{what}: {error}")))
        })
        .transpose()
}

/// Binds the listeners and serves in the background until [`Running::stop`] or a signal.
pub async fn start(config: &Config) -> Result<Running, ConfigError> {
    tracing::info!(config = %config.redacted_json(), "effective configuration");
    config.validate()?;
    let state = state(config)?;
    crate::backends::validate(config)?;
    let tls = listener_tls(config.server.tls.as_ref(), "server.tls")?;
    let admin_tls = listener_tls(config.server.admin_tls.as_ref(), "server.admin_tls")?;
    if config.server.admin_tls.is_some() && config.server.admin_listen.is_none() {
        return Err(ConfigError(
            "server.admin_tls is set but server.admin_listen is not".to_owned(),
        ));
    }
    crate::backends::connect(config, state.control()).await;
    let listener = bind(config.server.listen)?;
    let address = local_address(&listener)?;
    let scheme = |tls: &Option<Arc<ServerTls>>| if tls.is_some() { "https" } else { "http" };
    let mut endpoints = Vec::new();
    let mut admin_address = None;
    match config.server.admin_listen {
        None => {
            tracing::info!(%address, "listening on {}://{address}", scheme(&tls));
            endpoints.push(Endpoint {
                listener,
                app: mtls_api::App::new(state.clone(), Surface::All),
                tls: tls.clone(),
            });
        }
        Some(admin) => {
            let admin_listener = bind(admin)?;
            let admin = local_address(&admin_listener)?;
            admin_address = Some(admin);
            tracing::info!(%address, "runtime listening on {}://{address}", scheme(&tls));
            tracing::info!(address = %admin, "configuration API listening on {}://{admin}", scheme(&admin_tls));
            endpoints.push(Endpoint {
                listener,
                app: mtls_api::App::new(state.clone(), Surface::Runtime),
                tls: tls.clone(),
            });
            endpoints.push(Endpoint {
                listener: admin_listener,
                app: mtls_api::App::new(state.clone(), Surface::Admin),
                tls: admin_tls.clone(),
            });
        }
    }
    let count = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        count => count,
    };
    let workers = Workers::start(endpoints, count, &listen_settings(config))
        .map_err(|error| ConfigError(format!("cannot start the worker threads: {error}")))?;
    let watched: Vec<Arc<ServerTls>> = tls.into_iter().chain(admin_tls).collect();
    // Always running: SIGHUP must never end the process, TLS or not.
    let reloader = tokio::spawn(reload_certificates(watched));
    let unloader = tokio::spawn(unload_idle_identities(std::sync::Arc::downgrade(
        state.forwarder(),
    )));
    Ok(Running {
        address,
        admin_address,
        state,
        workers: Some(workers),
        reloader,
        unloader,
    })
}

/// The timer of `forward.identity_idle_seconds` (a scan of the identities per tick, never on
/// a request); ends with the forwarder.
async fn unload_idle_identities(forwarder: std::sync::Weak<Forwarder>) {
    let Some(period) = forwarder
        .upgrade()
        .map(|forwarder| forwarder.unload_period())
    else {
        return;
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(forwarder) = forwarder.upgrade() else {
            return;
        };
        forwarder.unload_idle();
    }
}

/// The listeners' timeouts and connection caps.
fn listen_settings(config: &Config) -> crate::listen::Settings {
    let server = &config.server;
    crate::listen::Settings {
        request_head_timeout: server.request_head_timeout_seconds,
        idle_timeout: server.idle_timeout_seconds,
        grace: server.shutdown_grace_seconds,
        max_request_head_bytes: server.max_request_head_bytes,
        limits: Arc::new(ConnectionLimits::new(
            server.max_connections,
            server.max_connections_per_ip,
            server.trusted_proxies.clone(),
        )),
    }
}

fn local_address(listener: &std::net::TcpListener) -> Result<SocketAddr, ConfigError> {
    listener
        .local_addr()
        .map_err(|error| ConfigError(format!("cannot read the listening address: {error}")))
}

/// How often the listener certificate files are checked for a replacement.
const CERTIFICATE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reloads the listeners' certificates when their files change, and on SIGHUP (which is only
/// logged when no listener has TLS: it never ends the process).
async fn reload_certificates(listeners: Vec<Arc<ServerTls>>) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut poll = tokio::time::interval(CERTIFICATE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = poll.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(hangup) => hangup.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        if forced && listeners.is_empty() {
            tracing::info!("SIGHUP: no listener has TLS; nothing to reload");
        }
        for listener in &listeners {
            if forced {
                listener.reload();
            } else {
                listener.reload_if_changed();
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
