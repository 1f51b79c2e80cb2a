//! Spawning the application and minting tokens for it.

use std::net::SocketAddr;

use mtls_auth::Privilege;
use mtls_auth::bearer::Grant;
use mtls_control::clock::unix_now;
use mtls_gateway::config::Config;
use mtls_gateway::server::{self, Running};
use mtls_test_support::temp_dir;

pub(crate) struct TestApp {
    pub base: String,
    pub running: Running,
    pub config: Config,
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A token signed with this gateway's own secret.
    pub(crate) fn token(&self, accounts: &[&str], privileges: &[Privilege]) -> String {
        let secret = server::hs256_secret(&self.config).unwrap().unwrap();
        let grant = Grant {
            subject: "test-suite".to_owned(),
            accounts: accounts
                .iter()
                .map(|account| (*account).to_owned())
                .collect(),
            privileges: privileges.to_vec(),
            ttl_seconds: 600,
        };
        mtls_auth::TokenIssuer::hs256(&secret)
            .unwrap()
            .issue(&grant, unix_now(), "t".to_owned())
            .unwrap()
    }
}

/// Starts the gateway on 127.0.0.1:0 with a fresh data directory, after `customize`.
pub(crate) async fn spawn(customize: impl FnOnce(&mut Config)) -> TestApp {
    let dir = temp_dir("gateway");
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // Suites hammer one gateway from one address; the rate-limit test turns limits back on.
    config.rate_limits = mtls_gateway::config::RateLimitsConfig {
        configuration: Default::default(),
        checks: Default::default(),
        forward: Default::default(),
        tester: Default::default(),
    };
    customize(&mut config);
    let running = server::start(&config).await.unwrap();
    TestApp {
        base: format!("http://{}", running.address),
        running,
        config,
    }
}

/// The value of the `/metrics` series `series` (`name` or `name{labels}`, exactly as printed),
/// read over plain HTTP; `None` when the gateway prints no such series.
pub(crate) async fn metric_value<T>(app: &TestApp, series: &str) -> Option<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Debug,
{
    let text = client()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

pub(crate) fn client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The stacks an API test runs on: SQLite + the embedded store always, MariaDB + Vault
/// (OpenBao) whenever both are reachable (always in CI).
#[derive(Clone, Debug)]
pub(crate) enum Stack {
    SqliteLocal,
    MariaDbVault {
        mysql_url: String,
        vault_address: String,
        vault_token: String,
    },
}

pub(crate) fn stacks() -> Vec<Stack> {
    let mut stacks = vec![Stack::SqliteLocal];
    if let (Some(mysql_url), Some((vault_address, vault_token))) =
        (mtls_test_support::mysql_url(), mtls_test_support::vault())
    {
        stacks.push(Stack::MariaDbVault {
            mysql_url,
            vault_address,
            vault_token,
        });
    }
    stacks
}

impl Stack {
    pub(crate) fn apply(&self, config: &mut Config) {
        if let Stack::MariaDbVault {
            mysql_url,
            vault_address,
            vault_token,
        } = self
        {
            config.database.url = Some(mtls_gateway::config::Secret::new(mysql_url.clone()));
            config.secrets.backend = mtls_gateway::config::SecretsBackend::Vault;
            config.secrets.vault.address = vault_address.parse().unwrap();
            config.secrets.vault.token =
                Some(mtls_gateway::config::Secret::new(vault_token.clone()));
        }
    }

    pub(crate) fn vault(&self) -> Option<(&str, &str)> {
        match self {
            Stack::SqliteLocal => None,
            Stack::MariaDbVault {
                vault_address,
                vault_token,
                ..
            } => Some((vault_address, vault_token)),
        }
    }
}

/// Starts the gateway on `stack`.
pub(crate) async fn spawn_on(stack: &Stack, customize: impl FnOnce(&mut Config)) -> TestApp {
    spawn(|config| {
        stack.apply(config);
        customize(config);
    })
    .await
}

/// A TCP relay to a real dependency that a test can switch off (connections refused, open
/// ones cut) and on again: an outage of the real MariaDB or OpenBao, seen from the gateway.
pub(crate) struct Switch {
    pub address: std::net::SocketAddr,
    on: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Switch {
    pub(crate) async fn to(upstream: &str) -> Switch {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let upstream = upstream.to_owned();
        let (flag, cuts) = (on.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Switch { address, on, cut }
    }

    pub(crate) fn off(&self) {
        self.on.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }

    pub(crate) fn on(&self) {
        self.on.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
