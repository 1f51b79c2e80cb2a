//! `mtls-gateway p12 inspect FILE`: the tester report of SPEC 8 on the command line. Exit 0
//! when the file is usable; 2 with the error code on stderr otherwise.
//!
//! `mtls-gateway p12 test FILE --url URL`: the live tester's stage-by-stage report (the same
//! checks, then a call to URL presenting the certificate, under the configured egress policy
//! and trust roots). Exit 0 when the call went through, 2 when the file is refused, 3 when a
//! stage failed.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mtls_control::report::TesterReport;
use mtls_gateway::config::Config;
use zeroize::Zeroizing;

#[derive(Debug, Subcommand)]
pub(crate) enum P12Command {
    /// Check a PKCS#12 file and print what the tester reports. Without a password option the
    /// empty password is used (files written with no password open with it).
    Inspect(InspectArgs),
    /// Check the file, then call URL presenting its certificate, and report each stage (DNS,
    /// TCP, TLS, HTTP) with plain-language advice.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    #[command(flatten)]
    inspect: InspectArgs,
    /// The URL to call (the egress policy of the configuration applies).
    #[arg(long)]
    url: String,
    /// The method (GET).
    #[arg(long, default_value = "GET")]
    method: String,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
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

pub(crate) fn run(config: &Config, command: P12Command) -> ExitCode {
    let args = match command {
        P12Command::Inspect(args) => args,
        P12Command::Test(args) => return test(config, &args),
    };
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

fn test(config: &Config, args: &TestArgs) -> ExitCode {
    let refused = |Failure(code, message)| {
        eprintln!("{code}: {message}");
        ExitCode::from(2)
    };
    let (file_report, identity) = match inspect_identity(config, &args.inspect) {
        Ok(checked) => checked,
        Err(failure) => return refused(failure),
    };
    let forwarder = match mtls_gateway::server::forwarder(config) {
        Ok(forwarder) => forwarder,
        Err(error) => return refused(Failure("configuration".to_owned(), error.to_string())),
    };
    let url = match mtls_runtime::normalize(&args.url)
        .map_err(|error| error.to_string())
        .and_then(|_| args.url.parse().map_err(|_| "not a valid URL".to_owned()))
    {
        Ok(url) => url,
        Err(message) => return refused(Failure("invalid_forward_url".to_owned(), message)),
    };
    let method = match args.method.to_ascii_uppercase().parse() {
        Ok(method) => method,
        Err(_) => {
            return refused(Failure(
                "invalid_method_override".to_owned(),
                "not an HTTP method".to_owned(),
            ));
        }
    };
    let call = mtls_runtime::probe::Call {
        url,
        method,
        headers: Default::default(),
        body: Default::default(),
    };
    let host = call.url.host().unwrap_or_default().to_owned();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return refused(Failure("runtime".to_owned(), error.to_string())),
    };
    let settings = mtls_runtime::probe::Settings {
        policy: forwarder.policy(),
        roots: forwarder.roots(),
        timeouts: forwarder.timeouts,
        max_response_bytes: config.forward.max_body_bytes,
    };
    let seen = runtime.block_on(mtls_runtime::probe::probe(&settings, &identity, call));
    let chain = identity.chain.clone();
    drop(identity);
    let report = mtls_control::report::live_report(file_report, &seen, &chain, &host);
    if args.inspect.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_stages(&report);
    }
    if field(&report, "outcome") == "ok" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// A member of a JSON object, `null` when absent.
fn field<'a>(value: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    value.get(key).unwrap_or(&serde_json::Value::Null)
}

fn print_stages(report: &serde_json::Value) {
    let empty = Vec::new();
    for stage in field(report, "stages").as_array().unwrap_or(&empty) {
        let mark = if field(stage, "ok") == true {
            "ok    "
        } else {
            "FAILED"
        };
        let detail = match field(stage, "stage").as_str().unwrap_or_default() {
            "dns" => field(stage, "addresses").to_string(),
            "connect" => field(stage, "address")
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            "tls" => format!(
                "{} {} server certificate verified: {}, client certificate requested: {}, offered: {}, issuer accepted: {}{}",
                field(stage, "version").as_str().unwrap_or("-"),
                field(stage, "cipherSuite").as_str().unwrap_or("-"),
                field(stage, "serverCertificateVerified"),
                field(stage, "clientCertificateRequested"),
                field(stage, "clientCertificateOffered"),
                field(stage, "clientCertificateIssuerAccepted"),
                field(stage, "alert")
                    .as_str()
                    .map(|alert| format!(", alert {alert}"))
                    .unwrap_or_default(),
            ),
            "http" => format!("status {}", field(stage, "status")),
            _ => String::new(),
        };
        println!(
            "{mark} {:8} {:>9} ms  {detail}",
            field(stage, "stage").as_str().unwrap_or_default(),
            field(stage, "durationMs")
        );
        if let Some(error) = field(stage, "error").as_str() {
            println!("       error: {error}");
        }
    }
    for line in field(report, "advice").as_array().unwrap_or(&empty) {
        println!("advice: {}", line.as_str().unwrap_or_default());
    }
}

/// The checks, and the identity for a live call.
fn inspect_identity(
    config: &Config,
    args: &InspectArgs,
) -> Result<(TesterReport, mtls_runtime::identity::ClientIdentity), Failure> {
    let (bytes, password) = read_inputs(config, args)?;
    let inspection = mtls_pki::inspect(
        &bytes,
        &password,
        &config.intake.policy(),
        mtls_control::Clock::system().time(),
    )
    .map_err(|error| Failure(error.code().to_owned(), error.to_string()))?;
    Ok((
        TesterReport::from(&inspection.report),
        mtls_runtime::identity::ClientIdentity {
            chain: inspection.identity.certificate_chain.clone(),
            pkcs8_key: Zeroizing::new(inspection.identity.key.pkcs8_der().to_vec()),
        },
    ))
}

fn read_inputs(
    config: &Config,
    args: &InspectArgs,
) -> Result<(Zeroizing<Vec<u8>>, Zeroizing<String>), Failure> {
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
    Ok((bytes, password(args)?))
}

fn inspect(config: &Config, args: &InspectArgs) -> Result<TesterReport, Failure> {
    inspect_identity(config, args).map(|(report, _)| report)
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
