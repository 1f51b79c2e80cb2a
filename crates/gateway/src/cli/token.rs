//! `mtls-gateway token issue`: a Bearer JWT signed with the same HS256 secret the server uses.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use mtls_auth::Privilege;
use mtls_auth::bearer::Grant;
use mtls_control::clock::unix_now;
use mtls_gateway::config::Config;
use mtls_gateway::server;

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a new token.
    Issue(IssueArgs),
}

#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// Account ids the token may act on, comma-separated, or `*` for every account.
    #[arg(long, value_delimiter = ',', required = true)]
    account: Vec<String>,
    /// Privileges, comma-separated: MTLS_READ_INTERNAL, MTLS_WRITE_INTERNAL, MTLS_FORWARD.
    #[arg(long, value_delimiter = ',', required = true)]
    privileges: Vec<String>,
    /// Lifetime: a number with s, m, h or d (default 1h).
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// The token subject (who the caller is, as the audit trail will name it).
    #[arg(long, default_value = "cli")]
    subject: String,
}

pub(crate) fn run(config: &Config, command: TokenCommand) -> ExitCode {
    let TokenCommand::Issue(args) = command;
    match issue(config, &args) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn issue(config: &Config, args: &IssueArgs) -> Result<String, String> {
    for account in &args.account {
        if account != "*" && mtls_auth::AccountId::parse(account).is_err() {
            return Err(format!(
                "'{account}' is not an account id (1 to 64 of A-Z a-z 0-9 _ -) or '*'"
            ));
        }
    }
    let mut privileges = Vec::new();
    for name in &args.privileges {
        privileges.push(Privilege::parse(name.trim()).ok_or_else(|| {
            format!("unknown privilege '{name}' (known: MTLS_READ_INTERNAL, MTLS_WRITE_INTERNAL, MTLS_FORWARD)")
        })?);
    }
    let ttl_seconds = parse_ttl(&args.ttl)?;
    let secret = server::hs256_secret(config)
        .map_err(|error| error.to_string())?
        .ok_or("auth.hs256_enabled is false: this gateway accepts only tokens from your identity provider")?;
    let issuer = mtls_auth::TokenIssuer::hs256(&secret).map_err(|error| error.to_string())?;
    let grant = Grant {
        subject: args.subject.clone(),
        accounts: args.account.clone(),
        privileges,
        ttl_seconds,
    };
    let mut id = [0u8; 16];
    getrandom_fill(&mut id)?;
    let token_id: String = id.iter().map(|byte| format!("{byte:02x}")).collect();
    issuer
        .issue(&grant, unix_now(), token_id)
        .map_err(|error| error.to_string())
}

fn getrandom_fill(buffer: &mut [u8]) -> Result<(), String> {
    mtls_gateway::data_dir::random(buffer).map_err(|error| error.to_string())
}

/// `90s`, `15m`, `1h`, `7d` -> seconds.
fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let invalid = || format!("invalid --ttl '{text}': use a number with s, m, h or d, such as 1h");
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    match number.checked_mul(factor) {
        Some(0) | None => Err(invalid()),
        Some(seconds) => Ok(seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        for bad in ["", "h", "10", "1w", "0h", "-1h", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
