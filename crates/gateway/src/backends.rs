//! Connecting the database and the secret store: migrations, the secret store's self-check,
//! start-up reconciliation (rows whose secret is missing are reported and shown UnAvailable),
//! and retries with backoff while either is down.

use std::sync::Arc;
use std::time::Duration;

use mtls_control::{Backends, Control};
use mtls_secrets::{
    LocalStore, MasterKey, SecretKey, SecretStore, VaultAuth, VaultOptions, VaultStore,
};
use mtls_store::{SecretState, Store, StoreOptions};
use zeroize::Zeroizing;

use crate::config::{Config, ConfigError, SecretsBackend};
use crate::data_dir;

/// The database URL in force.
pub fn database_url(config: &Config) -> String {
    match &config.database.url {
        Some(url) => url.expose().to_owned(),
        None => format!(
            "sqlite://{}",
            config.data_dir.join("mtls-gateway.db").display()
        ),
    }
}

pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        url: database_url(config),
        max_connections: config.database.max_connections,
        acquire_timeout: config.database.acquire_timeout_seconds,
    }
}

/// The embedded store's master key: configured, read from its file, or generated.
fn master_key(config: &Config) -> Result<MasterKey, ConfigError> {
    let local = &config.secrets.local;
    let key_text = match (&local.master_key, &local.master_key_file) {
        (Some(key), _) => Zeroizing::new(key.expose().as_bytes().to_vec()),
        (None, Some(path)) => data_dir::read_secret(path)?,
        (None, None) => {
            data_dir::ensure(&config.data_dir)?;
            data_dir::secret_file(&config.data_dir, "master.key")?
        }
    };
    MasterKey::from_hex(&key_text).map_err(|error| ConfigError(format!("secrets.local: {error}")))
}

/// The Vault client described by the configuration.
fn vault_store(config: &Config) -> Result<VaultStore, ConfigError> {
    let vault = &config.secrets.vault;
    let auth = match (&vault.token, &vault.role_id, &vault.secret_id) {
        (Some(token), None, None) => VaultAuth::Token(Zeroizing::new(token.expose().to_owned())),
        (None, Some(role_id), Some(secret_id)) => VaultAuth::AppRole {
            role_id: role_id.clone(),
            secret_id: Zeroizing::new(secret_id.expose().to_owned()),
            mount: vault.approle_mount.clone(),
        },
        _ => {
            return Err(ConfigError(
                "secrets.vault: set either token, or role_id and secret_id (AppRole)".to_owned(),
            ));
        }
    };
    let ca_pem = match &vault.ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|error| {
            ConfigError(format!("secrets.vault.ca_file {}: {error}", path.display()))
        })?),
        None => None,
    };
    let options = VaultOptions {
        address: vault.address.to_string(),
        mount: vault.mount.clone(),
        prefix: vault.prefix.trim_matches('/').to_owned(),
        namespace: vault.namespace.clone(),
        ca_pem,
        auth,
        timeout: vault.timeout_seconds,
        max_answer_bytes: mtls_secrets::answer_cap(config.intake.max_file_bytes),
    };
    VaultStore::new(options).map_err(|error| ConfigError(error.to_string()))
}

/// The secret store described by the configuration (not yet checked).
pub fn secret_store(config: &Config, store: &Store) -> Result<SecretStore, ConfigError> {
    match config.secrets.backend {
        SecretsBackend::Local => Ok(SecretStore::Local(LocalStore::new(
            master_key(config)?,
            Arc::new(store.clone()),
        ))),
        SecretsBackend::Vault => {
            vault_store(config).map(|store| SecretStore::Vault(Box::new(store)))
        }
    }
}

/// Checks what can be checked without the network, so that a wrong configuration stops the
/// start instead of being retried forever.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    let url = database_url(config);
    if !(url.starts_with("sqlite://")
        || url.starts_with("mysql://")
        || url.starts_with("mariadb://"))
    {
        return Err(ConfigError(
            "database.url must start with sqlite:// or mysql://".to_owned(),
        ));
    }
    match config.secrets.backend {
        SecretsBackend::Local => {
            master_key(config).map(|key| tracing::info!(key_id = key.id(), "embedded secret store"))
        }
        SecretsBackend::Vault => vault_store(config)
            .map(|_| tracing::info!(address = %config.secrets.vault.address, "Vault secret store")),
    }
}

/// One attempt: database, migrations, secret store, reconciliation. Records each outcome in
/// the readiness report.
async fn connect_once(config: &Config, control: &Control) -> Result<Backends, String> {
    let slot = control.backends();
    let store = match Store::connect(&store_options(config)).await {
        Ok(store) => store,
        Err(error) => {
            slot.update(|readiness| readiness.database = Some(Err(error.to_string())));
            return Err(error.to_string());
        }
    };
    if let Err(error) = store.migrate().await {
        slot.update(|readiness| readiness.database = Some(Err(error.to_string())));
        return Err(error.to_string());
    }
    slot.update(|readiness| readiness.database = Some(Ok(())));
    let secrets = secret_store(config, &store).map_err(|error| error.to_string())?;
    if let Err(error) = secrets.check().await {
        slot.update(|readiness| readiness.secret_store = Some(Err(error.to_string())));
        return Err(error.to_string());
    }
    slot.update(|readiness| readiness.secret_store = Some(Ok(())));
    reconcile(&store, &secrets, control).await;
    Ok(Backends { store, secrets })
}

/// Marks live rows whose secret is missing from the secret store, and reports them.
async fn reconcile(store: &Store, secrets: &SecretStore, control: &Control) {
    let rows = match store.stored_certificates().await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "start-up reconciliation skipped");
            return;
        }
    };
    let mut missing = Vec::new();
    for row in rows {
        let key = SecretKey {
            account: &row.account_id,
            certificate_id: row.id,
        };
        match secrets.exists(key, row.version).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(account = %row.account_id, certificate_id = row.id, "the secret of this certificate is missing from the secret store; it is UnAvailable until replaced");
                if let Err(error) = store
                    .set_secret_state(&row.account_id, row.id, SecretState::Missing)
                    .await
                {
                    tracing::warn!(%error, "cannot record a missing secret");
                }
                missing.push((row.account_id.clone(), row.id));
            }
            Err(error) => {
                tracing::warn!(certificate_id = row.id, %error, "cannot check a secret at start")
            }
        }
    }
    tracing::info!(
        checked_missing = missing.len(),
        "start-up reconciliation done"
    );
    control
        .backends()
        .update(|readiness| readiness.missing_secrets = missing);
}

/// Installs the connected dependencies, builds the routing table, and starts the task that
/// rebuilds it whenever another node moved the global revision.
async fn install(config: &Config, control: &Control, backends: Backends) {
    if let Err(error) = control.app_keys().reload(&backends).await {
        tracing::warn!(%error, "app keys could not be loaded yet; the sync task retries");
    }
    if let Err(error) = mtls_control::routing::refresh(control, &backends).await {
        tracing::warn!(%error, "the routing table could not be built yet; the sync task retries");
    }
    control.backends().set(backends);
    crate::expiry::spawn(config, control);
    let interval = config
        .runtime
        .sync_interval_seconds
        .max(Duration::from_millis(50));
    crate::renewal::spawn(control, interval);
    let control = control.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(backends) = control.backends().get() else {
                continue;
            };
            if let Err(error) = backends.store.purge_nonces(control.now()).await {
                tracing::debug!(%error, "nonce purge failed");
            }
            match mtls_control::routing::sync(&control, &backends).await {
                Ok(true) => tracing::debug!("routing table synchronized with the database"),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "routing table sync failed; serving the last snapshot")
                }
            }
        }
    });
}

/// Connects now if possible; otherwise keeps trying in the background with backoff (0.5 s
/// doubling to 30 s) while `/readyz` names the missing dependency.
pub async fn connect(config: &Config, control: &Control) {
    match connect_once(config, control).await {
        Ok(backends) => install(config, control, backends).await,
        Err(error) => {
            tracing::warn!(%error, "dependencies not reachable at start; retrying in the background");
            let config = config.clone();
            let control = control.clone();
            tokio::spawn(async move {
                let mut delay = Duration::from_millis(500);
                loop {
                    tokio::time::sleep(delay).await;
                    match connect_once(&config, &control).await {
                        Ok(backends) => {
                            tracing::info!("dependencies reachable; serving");
                            install(&config, &control, backends).await;
                            return;
                        }
                        Err(error) => {
                            tracing::warn!(%error, retry_in = ?delay, "dependencies still not reachable");
                            delay = (delay * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            });
        }
    }
}
