//! `mtls-gateway p12 inspect FILE`: the tester report of SPEC 8 on the command line. Exit 0
//! when the file is usable; 2 with the error code on stderr otherwise.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use mtls_api::dto::TesterReport;
use mtls_gateway::config::Config;
use zeroize::Zeroizing;

#[derive(Debug, Subcommand)]
pub enum P12Command {
    /// Check a PKCS#12 file and print what the tester reports. Without a password option the
    /// empty password is used (files written with no password open with it).
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The PKCS#12 file (.p12 / .pfx).
    file: PathBuf,
    /// Read the password from this environment variable.
    #[arg(long, group = "password")]
    password_env: Option<String>,
    /// Read the password from this file (one trailing newline is removed).
    #[arg(long, group = "password")]
    password_file: Option<PathBuf>,
    /// Read the password from standard input (one trailing newline is removed).
    #[arg(long, group = "password")]
    password_stdin: bool,
    /// Print the report as JSON, as the HTTP tester returns it.
    #[arg(long)]
    json: bool,
}

/// A failure: the stable code and a message, printed as `code: message` on stderr.
struct Failure(String, String);

pub fn run(config: &Config, command: P12Command) -> ExitCode {
    let P12Command::Inspect(args) = command;
    match inspect(config, &args) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print_human(&report);
            }
            ExitCode::SUCCESS
        }
        Err(Failure(code, message)) => {
            eprintln!("{code}: {message}");
            ExitCode::from(2)
        }
    }
}

fn inspect(config: &Config, args: &InspectArgs) -> Result<TesterReport, Failure> {
    let unreadable = |what: String| Failure("file_unreadable".to_owned(), what);
    let metadata = std::fs::metadata(&args.file)
        .map_err(|error| unreadable(format!("cannot read {}: {error}", args.file.display())))?;
    let limit = config.intake.max_file_bytes;
    if usize::try_from(metadata.len()).map_or(true, |len| len > limit) {
        return Err(Failure(
            "payload_too_large".to_owned(),
            format!("the file is larger than intake.max_file_bytes ({limit} bytes)"),
        ));
    }
    let bytes =
        Zeroizing::new(std::fs::read(&args.file).map_err(|error| {
            unreadable(format!("cannot read {}: {error}", args.file.display()))
        })?);
    let password = password(args)?;
    let inspection = mtls_pki::inspect(
        &bytes,
        &password,
        &config.intake.policy(),
        SystemTime::now(),
    )
    .map_err(|error| Failure(error.code().to_owned(), error.to_string()))?;
    Ok(TesterReport::from(&inspection.report))
}

fn password(args: &InspectArgs) -> Result<Zeroizing<String>, Failure> {
    let failure = |message: String| Failure("password_unreadable".to_owned(), message);
    let mut text = Zeroizing::new(String::new());
    if let Some(variable) = &args.password_env {
        let value = std::env::var(variable).map_err(|_| {
            failure(format!(
                "the environment variable {variable} is not set or not UTF-8"
            ))
        })?;
        text.push_str(&value);
        return Ok(text);
    }
    if let Some(path) = &args.password_file {
        let value = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|error| failure(format!("cannot read {}: {error}", path.display())))?,
        );
        text.push_str(strip_newline(&value));
        return Ok(text);
    }
    if args.password_stdin {
        let mut value = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut value)
            .map_err(|error| failure(format!("cannot read standard input: {error}")))?;
        text.push_str(strip_newline(&value));
    }
    Ok(text)
}

fn strip_newline(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

fn print_human(report: &TesterReport) {
    println!("usable:        yes");
    println!("subject:       {}", report.subject);
    println!("issuer:        {}", report.issuer);
    println!("serial:        {}", report.serial_number);
    println!(
        "valid:         {} to {}",
        report.not_before, report.not_after
    );
    println!("key:           {}", report.key_type);
    println!("fingerprint:   sha256 {}", report.fingerprint_sha256);
    let usage = match (report.has_extended_key_usage, report.has_client_auth_usage) {
        (false, _) => "allowed (no extended key usage)",
        (true, true) => "yes",
        (true, false) => "NO",
    };
    println!("client auth:   {usage}");
    println!(
        "chain:         {} certificate(s), leaf first",
        report.chain_length
    );
    for (index, element) in report.chain.iter().enumerate() {
        println!(
            "  {}. {} (until {})",
            index + 2,
            element.subject,
            element.not_after
        );
    }
    println!(
        "key protection:         {}",
        report.protection.key_encryption.join("; ")
    );
    println!(
        "certificate protection: {}",
        report.protection.certificate_encryption.join("; ")
    );
    println!(
        "integrity MAC:          {}",
        report.protection.mac.as_deref().unwrap_or("none")
    );
    for warning in &report.warnings {
        println!("warning [{}]: {}", warning.code, warning.message);
    }
}
