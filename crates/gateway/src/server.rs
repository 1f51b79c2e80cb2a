//! Start-up wiring: configuration -> authenticator, intake policy, router, listener.

use std::net::SocketAddr;

use mtls_api::ratelimit::{Group, Limit, RateLimits};
use mtls_api::services::Services;
use mtls_api::{AppState, ForwardSettings, Limits, Settings};
use mtls_auth::{Authenticator, BearerConfig, BearerVerifier};
use mtls_runtime::egress::EgressPolicy;
use mtls_runtime::forward::{Forwarder, Timeouts};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::config::{Config, ConfigError};
use crate::data_dir;

/// A gateway serving in the background (tests and `serve`).
#[derive(Debug)]
pub struct Running {
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task
            .await
            .unwrap_or_else(|error| Err(std::io::Error::other(error)))
    }

    /// Waits until the server ends (after a signal, for `serve`).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|error| Err(std::io::Error::other(error)))
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

fn forwarder(config: &Config) -> Result<Forwarder, ConfigError> {
    let mut allow = Vec::new();
    for cidr in &config.egress.allow_cidrs {
        allow.push(
            cidr.parse()
                .map_err(|error| ConfigError(format!("egress.allow_cidrs: {error}")))?,
        );
    }
    let pems = read_all(&config.tls.trust_roots, "tls.trust_roots:")?;
    let roots = mtls_runtime::identity::base_roots(&pems).map_err(ConfigError)?;
    let seconds = |value: f64| std::time::Duration::from_secs_f64(value.max(0.001));
    let timeouts = Timeouts {
        connect: seconds(config.forward.connect_timeout_seconds),
        response_headers: seconds(config.forward.response_timeout_seconds),
        idle: seconds(config.forward.idle_timeout_seconds),
    };
    Ok(Forwarder::new(
        EgressPolicy {
            allow,
            allow_http: config.egress.allow_http,
        },
        roots,
        timeouts,
    ))
}

fn rate_limits(config: &Config) -> Result<RateLimits, ConfigError> {
    let mut limits = RateLimits::default();
    for proxy in &config.server.trusted_proxies {
        limits.trusted_proxies.push(
            proxy
                .parse()
                .map_err(|error| ConfigError(format!("server.trusted_proxies: {error}")))?,
        );
    }
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
    Ok(limits)
}

/// Builds the application state from the configuration.
pub fn state(config: &Config) -> Result<AppState, ConfigError> {
    data_dir::ensure(&config.data_dir)?;
    let bearer = BearerConfig {
        hs256_secret: hs256_secret(config)?,
        public_key_pems: read_all(&config.auth.public_key_files, "auth.public_key_files:")?,
        jwks: read_all(&config.auth.jwks_files, "auth.jwks_files:")?,
        audience: config.auth.audience.clone(),
        issuer: config.auth.issuer.clone(),
        leeway_seconds: config.auth.leeway_seconds,
    };
    let verifier =
        BearerVerifier::new(bearer).map_err(|error| ConfigError(format!("auth: {error}")))?;
    let limits = Limits {
        p12_max_bytes: config.intake.max_file_bytes,
        ..Limits::default()
    };
    let settings = Settings {
        intake: config.intake.policy(),
        limits,
        intake_concurrency: config.intake.concurrency,
        services: Services::new(config.services.clone()),
        allow_http: config.egress.allow_http,
        rate_limits: rate_limits(config)?,
        public_base_url: config.auth.public_base_url.clone(),
        forwarder: std::sync::Arc::new(forwarder(config)?),
        forward: ForwardSettings {
            allow_unmapped: config.forward.allow_unmapped,
            max_body_bytes: config.forward.max_body_bytes,
        },
    };
    Ok(AppState::new(
        Authenticator::new(verifier, config.auth.oauth_timestamp_window_seconds.max(1)),
        settings,
    ))
}

/// Binds the listener and serves in the background until [`Running::stop`] or a signal.
pub async fn start(config: &Config) -> Result<Running, ConfigError> {
    tracing::info!(config = %config.redacted_json(), "effective configuration");
    let state = state(config)?;
    crate::backends::validate(config)?;
    crate::backends::connect(config, &state).await;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|error| {
            ConfigError(format!(
                "cannot listen on {}: {error}",
                config.server.listen
            ))
        })?;
    let address = listener
        .local_addr()
        .map_err(|error| ConfigError(format!("cannot read the listening address: {error}")))?;
    tracing::info!(%address, "listening on http://{address}");
    let (shutdown, stopped) = oneshot::channel::<()>();
    let app = mtls_api::router(state);
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = stopped => {}
                () = signal() => {}
            }
            tracing::info!("shutting down");
        })
        .await
    });
    Ok(Running {
        address,
        shutdown: Some(shutdown),
        task,
    })
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
