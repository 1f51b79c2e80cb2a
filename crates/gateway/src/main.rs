//! `mtls-gateway`: serve, mint tokens, inspect PKCS#12 files.

mod cli;

/// mimalloc instead of the system allocator: malloc and free were a fifth of the gateway's
/// user-space time on the forward path (perf, docs/forward.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mtls-gateway",
    version,
    about = "Multi-tenant mutual-TLS egress gateway"
)]
struct Cli {
    /// TOML configuration file (optional; MTLS_GATEWAY__* environment variables override it).
    #[arg(long, global = true, env = "MTLS_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve,
    /// Apply the database migrations and exit (the server also applies them at start).
    Migrate,
    /// Bearer tokens signed with the gateway's HS256 secret.
    #[command(subcommand)]
    Token(cli::token::TokenCommand),
    /// OAuth 1.0a app keys.
    #[command(subcommand)]
    AppKey(cli::app_key::AppKeyCommand),
    /// PKCS#12 files.
    #[command(subcommand)]
    P12(cli::p12::P12Command),
    /// Keys the gateway makes: certificate requests and their signed chains.
    #[command(subcommand)]
    Cert(cli::cert::CertCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match mtls_gateway::config::Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Serve => cli::serve::run(&config),
        Command::Migrate => cli::migrate::run(&config),
        Command::AppKey(command) => cli::app_key::run(&config, command),
        Command::Token(command) => cli::token::run(&config, command),
        Command::P12(command) => cli::p12::run(&config, command),
        Command::Cert(command) => cli::cert::run(&config, command),
    }
}
