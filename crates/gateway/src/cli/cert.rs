//! `mtls-gateway cert request | chain`: keys the gateway makes (SPEC 4.6) from the command
//! line, on the configured database and secret store (as `app-key` does). `request` makes the
//! key (kept in the secret store only) and writes its CSR to a file; `chain` completes the
//! request with the signed chain from a file. Both print the certificate entity as JSON; the
//! key is never printed or written anywhere else. Running gateways see the change within
//! `runtime.sync_interval_seconds`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use mtls_auth::AccountId;
use mtls_control::entity::Certificate;
use mtls_control::requests::{self, RequestInput};
use mtls_control::services::Services;
use mtls_control::{Backends, Clock, Control, ControlError, ControlSettings, Limits};
use mtls_gateway::config::Config;

use super::app_key::{audit, connect};

#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Make a key in the gateway and write its certificate signing request (CSR) to a file.
    Request(RequestArgs),
    /// Complete a request with the signed certificate and its chain (PEM, leaf first).
    Chain(ChainArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The account.
    #[arg(long)]
    account: String,
    /// The certificate's name (unique in the account).
    #[arg(long)]
    name: String,
    /// The subject, RFC 4514: `CN=brand-a,O=Brand A`.
    #[arg(long)]
    subject: String,
    /// A subject alternative name (`DNS:`, `IP:`, `URI:`, `email:` or bare); repeatable.
    #[arg(long = "san")]
    sans: Vec<String>,
    /// P-256, P-384, RSA-2048 or RSA-3072.
    #[arg(long, default_value = "P-256")]
    key_type: String,
    /// Where to write the CSR (PEM).
    #[arg(long)]
    csr_out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ChainArgs {
    /// The account.
    #[arg(long)]
    account: String,
    /// The certificate id (as `cert request` printed it).
    #[arg(long)]
    id: i64,
    /// The PEM file: the signed certificate, then its issuers.
    #[arg(long)]
    chain: PathBuf,
}

pub(crate) fn run(config: &Config, command: CertCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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

/// The control plane as `serve` builds it, on the configured dependencies.
fn control(config: &Config) -> Result<Control, String> {
    let forwarder = mtls_gateway::server::forwarder(config).map_err(|error| error.to_string())?;
    Ok(Control::new(ControlSettings {
        intake: config.intake.policy(),
        limits: Limits {
            p12_max_bytes: config.intake.max_file_bytes,
            max_certificates_per_account: config.accounts.max_certificates,
            max_mappings_per_account: config.accounts.max_mappings,
            ..Limits::default()
        },
        intake_concurrency: config.intake.concurrency,
        services: Services::new(config.services.clone()),
        allow_http: config.egress.allow_http,
        forwarder: Arc::new(forwarder),
        preload_identities: false,
        clock: Clock::system(),
    }))
}

/// `code: message`: the code the API answers (docs/errors.md); for a dependency failure its
/// detail too (the operator's own log).
fn failed(error: &ControlError) -> String {
    error.to_string()
}

fn print(row: &mtls_store::CertificateRow, now: i64) -> Result<(), String> {
    let text = serde_json::to_string_pretty(&Certificate::from_row(row, now))
        .map_err(|error| error.to_string())?;
    println!("{text}");
    Ok(())
}

/// The chain file, refused past `pki::MAX_CHAIN_PEM_BYTES` (read no further than one byte
/// past it).
fn read_chain(path: &PathBuf) -> Result<Vec<u8>, String> {
    let cap = mtls_pki::MAX_CHAIN_PEM_BYTES;
    let file = std::fs::File::open(path)
        .map_err(|error| format!("file_unreadable: {}: {error}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| format!("file_unreadable: {}: {error}", path.display()))?;
    if bytes.len() > cap {
        return Err(format!(
            "payload_too_large: the chain file is larger than {cap} bytes"
        ));
    }
    Ok(bytes)
}

async fn execute(config: &Config, command: CertCommand) -> Result<(), String> {
    let account = match &command {
        CertCommand::Request(args) => &args.account,
        CertCommand::Chain(args) => &args.account,
    };
    let account = AccountId::parse(account)
        .map_err(|_| format!("invalid_account_id: '{account}' is not an account id"))?
        .as_str()
        .to_owned();
    // Read before anything is changed: a file that cannot be read leaves nothing behind.
    let chain = match &command {
        CertCommand::Chain(args) => Some(read_chain(&args.chain)?),
        CertCommand::Request(_) => None,
    };
    let control = control(config)?;
    let (store, secrets) = connect(config).await?;
    let backends = Backends { store, secrets };
    let outcome = match command {
        CertCommand::Request(args) => {
            let requested = requests::create(
                &control,
                &backends,
                &account,
                RequestInput {
                    name: Some(args.name),
                    subject: Some(args.subject),
                    key_type: Some(args.key_type),
                    subject_alt_names: args.sans,
                },
            )
            .await
            .map_err(|error| failed(&error));
            match requested {
                Ok(requested) => {
                    audit(
                        &backends.store,
                        &account,
                        "certificate.request",
                        requested.row.id,
                    )
                    .await;
                    match std::fs::write(&args.csr_out, &requested.csr_pem) {
                        Ok(()) => {
                            eprintln!(
                                "The key stays in the gateway; the CSR is in {}. Upload the signed chain with `cert chain --id {}`.",
                                args.csr_out.display(),
                                requested.row.id
                            );
                            print(&requested.row, control.now())
                        }
                        Err(error) => Err(format!(
                            "file_unwritable: {}: {error} (certificate {} was requested; GET .../certificates/{}/csr gives the CSR)",
                            args.csr_out.display(),
                            requested.row.id,
                            requested.row.id
                        )),
                    }
                }
                Err(error) => Err(error),
            }
        }
        CertCommand::Chain(args) => {
            let completed = requests::complete(
                &control,
                &backends,
                &account,
                args.id,
                chain.unwrap_or_default(),
            )
            .await
            .map_err(|error| failed(&error));
            match completed {
                Ok(row) => {
                    audit(&backends.store, &account, "certificate.chain", row.id).await;
                    print(&row, control.now())
                }
                Err(error) => Err(error),
            }
        }
    };
    backends.store.close().await;
    outcome
}
