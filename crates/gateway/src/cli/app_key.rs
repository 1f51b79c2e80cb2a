//! `mtls-gateway app-key create | list | revoke`: OAuth 1.0a app keys. Secrets are printed once
//! at creation and kept only in the secret store; the running gateways pick changes up within
//! `runtime.sync_interval_seconds`.

use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use mtls_auth::{AccountId, Privilege};
use mtls_gateway::backends;
use mtls_gateway::config::Config;
use mtls_secrets::{APP_KEYS, SecretKey, SecretStore};
use mtls_store::{AppKeyRow, AuditEntry, GLOBAL, Store};

#[derive(Debug, Subcommand)]
pub(crate) enum AppKeyCommand {
    /// Create a key and print its four values (the secrets only this once).
    Create(CreateArgs),
    /// List the keys (no secrets).
    List,
    /// Revoke a key by its consumer key; its secrets are destroyed.
    Revoke { consumer_key: String },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Account ids the key may act on, comma-separated, or `*`.
    #[arg(long, value_delimiter = ',', required = true)]
    account: Vec<String>,
    /// Privileges, comma-separated: MTLS_READ_INTERNAL, MTLS_WRITE_INTERNAL, MTLS_FORWARD.
    #[arg(long, value_delimiter = ',', required = true)]
    privileges: Vec<String>,
}

pub(crate) fn run(config: &Config, command: AppKeyCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(execute(config, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

pub(crate) async fn connect(config: &Config) -> Result<(Store, SecretStore), String> {
    mtls_gateway::data_dir::ensure(&config.data_dir).map_err(|error| error.to_string())?;
    let store = Store::connect(&backends::store_options(config))
        .await
        .map_err(|error| error.to_string())?;
    store.migrate().await.map_err(|error| error.to_string())?;
    let secrets = backends::secret_store(config, &store).map_err(|error| error.to_string())?;
    secrets.check().await.map_err(|error| error.to_string())?;
    Ok((store, secrets))
}

fn random_text(bytes: usize) -> Result<String, String> {
    let mut buffer = vec![0u8; bytes];
    mtls_gateway::data_dir::random(&mut buffer).map_err(|error| error.to_string())?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

pub(crate) async fn audit(store: &Store, accounts: &str, action: &str, id: i64) {
    for account in accounts.split(',') {
        let entry = AuditEntry {
            id: mtls_store::new_id().unwrap_or(id),
            account_id: account.to_owned(),
            at: mtls_control::now(),
            actor: "cli".to_owned(),
            action: action.to_owned(),
            target_ids: vec![id],
            outcome: "success".to_owned(),
            request_id: "-".to_owned(),
        };
        if let Err(error) = store.insert_audit(&entry).await {
            eprintln!("warning: audit entry not recorded: {error}");
        }
    }
}

async fn execute(config: &Config, command: AppKeyCommand) -> Result<(), String> {
    let (store, secrets) = connect(config).await?;
    match command {
        AppKeyCommand::Create(args) => {
            for account in &args.account {
                if account != "*" && AccountId::parse(account).is_err() {
                    return Err(format!("'{account}' is not an account id or '*'"));
                }
            }
            let mut privileges = Vec::new();
            for name in &args.privileges {
                privileges.push(
                    Privilege::parse(name.trim())
                        .ok_or_else(|| format!("unknown privilege '{name}'"))?
                        .name(),
                );
            }
            let id = mtls_store::new_id().map_err(|error| error.to_string())?;
            let consumer_key = format!("ck_{}", random_text(18)?);
            let access_token = format!("at_{}", random_text(18)?);
            let consumer_secret = zeroize::Zeroizing::new(random_text(32)?);
            let token_secret = zeroize::Zeroizing::new(random_text(32)?);
            let material = mtls_control::app_keys::material(&consumer_secret, &token_secret);
            secrets
                .put(
                    SecretKey {
                        account: APP_KEYS,
                        certificate_id: id,
                    },
                    1,
                    &material,
                )
                .await
                .map_err(|error| error.to_string())?;
            let row = AppKeyRow {
                id,
                consumer_key: consumer_key.clone(),
                access_token: access_token.clone(),
                account_scope: args.account.join(","),
                privileges: privileges.join(","),
                revoked: false,
                created_at: mtls_control::now(),
            };
            store
                .insert_app_key(&row)
                .await
                .map_err(|error| error.to_string())?;
            store
                .bump_revisions(GLOBAL)
                .await
                .map_err(|error| error.to_string())?;
            audit(&store, &row.account_scope, "app_key.create", id).await;
            println!("consumer_key={consumer_key}");
            println!("consumer_secret={}", consumer_secret.as_str());
            println!("access_token={access_token}");
            println!("token_secret={}", token_secret.as_str());
            eprintln!(
                "The secrets are shown only now. Running gateways accept the key within their sync interval."
            );
        }
        AppKeyCommand::List => {
            for row in store
                .app_keys(true)
                .await
                .map_err(|error| error.to_string())?
            {
                println!(
                    "{}\taccounts={}\tprivileges={}\tcreated={}\t{}",
                    row.consumer_key,
                    row.account_scope,
                    row.privileges,
                    mtls_control::clock::rfc3339(row.created_at),
                    if row.revoked { "revoked" } else { "active" }
                );
            }
        }
        AppKeyCommand::Revoke { consumer_key } => {
            let keys = store
                .app_keys(false)
                .await
                .map_err(|error| error.to_string())?;
            let scope = keys
                .iter()
                .find(|row| row.consumer_key == consumer_key)
                .map(|row| row.account_scope.clone());
            let id = store
                .revoke_app_key(&consumer_key)
                .await
                .map_err(|error| error.to_string())?
                .ok_or_else(|| format!("no active app key {consumer_key}"))?;
            secrets
                .destroy(SecretKey {
                    account: APP_KEYS,
                    certificate_id: id,
                })
                .await
                .map_err(|error| error.to_string())?;
            store
                .bump_revisions(GLOBAL)
                .await
                .map_err(|error| error.to_string())?;
            audit(&store, &scope.unwrap_or_default(), "app_key.revoke", id).await;
            println!("revoked {consumer_key}");
        }
    }
    store.close().await;
    Ok(())
}
