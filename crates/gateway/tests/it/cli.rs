//! The real binary: `serve` on port 0, `token issue` with the same data directory, `p12
//! inspect` exit codes, configuration errors, and what reaches the log (nothing secret).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mtls_test_support::{p12_fixtures, temp_dir};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};

use crate::support::client;

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mtls-gateway"));
    command
        .env_remove("RUST_LOG")
        .env_remove("MTLS_GATEWAY_CONFIG");
    for (name, _) in std::env::vars() {
        if name.starts_with("MTLS_GATEWAY__") {
            command.env_remove(name);
        }
    }
    command
}

/// A `serve` process logging to a file, and the address it listens on.
pub(crate) struct Served {
    child: Child,
    log: PathBuf,
    pub(crate) base: String,
}

pub(crate) fn serve(dir: &Path, envs: &[(&str, String)]) -> Served {
    let log = dir.join("serve.log");
    let mut child = binary()
        .arg("serve")
        .current_dir(dir)
        .env("MTLS_GATEWAY__SERVER__LISTEN", "127.0.0.1:0")
        .envs(envs.iter().map(|(name, value)| (*name, value.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let log_path = log.clone();
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(&log_path).unwrap();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            writeln!(file, "{line}").unwrap();
            file.flush().unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let address: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
                    .collect();
                let _ = sender.send(address);
            }
        }
    });
    let address = receiver
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "serve did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    Served {
        child,
        log,
        base: format!("http://{address}"),
    }
}

impl Drop for Served {
    /// A test that failed half-way must not leave a server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// SIGTERM, then the exit status must be success.
    pub(crate) fn stop(&mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "serve exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_to_string(&self.log).unwrap()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn tester_form(bytes: Vec<u8>, password: &str) -> Form {
    Form::new()
        .part("file", Part::bytes(bytes).file_name("c.p12"))
        .text("password", password.to_owned())
}

#[tokio::test]
async fn serve_with_defaults_then_mint_a_token_and_test_a_file() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let dir = temp_dir("cli-serve");
    // No configuration at all: the data directory is ./mtls-data, made on first start.
    let mut served = serve(&dir, &[]);
    let data = dir.join("mtls-data");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("token-signing.key")), 0o600);

    let output = binary()
        .current_dir(&dir)
        .args([
            "token",
            "issue",
            "--account",
            "123,456",
            "--privileges",
            "MTLS_READ_INTERNAL",
            "--ttl",
            "10m",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();

    let case = fixtures.case("openssl-default-rsa2048.p12");
    let url = format!("{}/mtls/account/456/p12-test/multipart", served.base);
    let response = client()
        .post(&url)
        .bearer_auth(&token)
        .multipart(tester_form(fixtures.bytes(&case.file), &case.password))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let other_account = url.replace("/456/", "/789/");
    let response = client()
        .post(&other_account)
        .bearer_auth(&token)
        .multipart(tester_form(fixtures.bytes(&case.file), &case.password))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The SQLite database and its WAL and shared-memory files are the gateway's alone.
    for file in [
        "mtls-gateway.db",
        "mtls-gateway.db-wal",
        "mtls-gateway.db-shm",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    served.stop();

    // A signing key that others can read stops the gateway from starting.
    std::fs::set_permissions(
        data.join("token-signing.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let output = binary()
        .current_dir(&dir)
        .arg("serve")
        .env("MTLS_GATEWAY__SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("chmod 600"));
}

#[tokio::test]
async fn no_password_key_or_token_reaches_the_log() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let dir = temp_dir("cli-redaction");
    let secret = "configured-hs256-secret-0123456789abcdef";
    std::fs::write(dir.join("hs256.secret"), secret).unwrap();
    let mut served = serve(
        &dir,
        &[
            (
                "MTLS_GATEWAY__AUTH__HS256_SECRET_FILE",
                dir.join("hs256.secret").display().to_string(),
            ),
            ("MTLS_GATEWAY__LOG__FORMAT", "json".to_owned()),
            ("RUST_LOG", "debug".to_owned()),
        ],
    );
    let output = binary()
        .current_dir(&dir)
        .env(
            "MTLS_GATEWAY__AUTH__HS256_SECRET_FILE",
            dir.join("hs256.secret"),
        )
        .args([
            "token",
            "issue",
            "--account",
            "*",
            "--privileges",
            "MTLS_READ_INTERNAL",
        ])
        .output()
        .unwrap();
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let url = format!("{}/mtls/account/1/p12-test/multipart", served.base);
    let mut secrets = vec![secret.to_owned(), token.clone()];
    for file in [
        "openssl-default-rsa2048.p12",
        "openssl-nonascii.p12",
        "openssl-noenc-nomac.p12",
    ] {
        let case = fixtures.case(file);
        secrets.push(case.password.clone());
        for password in [case.password.as_str(), "wrong-password-for-the-log-test"] {
            let response = client()
                .post(&url)
                .bearer_auth(&token)
                .multipart(tester_form(fixtures.bytes(file), password))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success() || response.status() == StatusCode::BAD_REQUEST);
        }
    }
    secrets.push("wrong-password-for-the-log-test".to_owned());
    let log = served.stop();
    assert!(
        log.contains("effective configuration") && log.contains("<redacted>"),
        "{log}"
    );
    // The requests were served and logged (so the search below searched something).
    assert!(log.matches("p12-test/multipart").count() >= 6, "{log}");
    for needle in &secrets {
        assert!(
            !log.contains(needle.as_str()),
            "the log contains a secret: {needle}"
        );
    }
    // No line of a private key (PEM body) nor its leading DER bytes, in any common rendering.
    let key_pem = std::fs::read_to_string(fixtures.path("rsa2048.key")).unwrap();
    for line in key_pem
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() > 20)
    {
        assert!(!log.contains(line), "the log contains private key material");
    }
    assert!(!log.contains("[48, 130,"), "the log contains DER bytes");
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = temp_dir("cli-config");
    std::fs::write(
        dir.join("bad.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\nlisten_port = 8080\n",
    )
    .unwrap();
    let output = binary()
        .current_dir(&dir)
        .args(["serve", "--config", "bad.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listen_port"), "{stderr}");
    let output = binary()
        .current_dir(&dir)
        .arg("serve")
        .env("MTLS_GATEWAY__SERVER__BACKLOG", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("backlog"));
}

/// Runs `command` (its stderr to a file); a process still running after 3 s (a value that
/// was accepted and the server started) is killed: exit code `None`.
fn run_briefly(mut command: Command) -> (Option<i32>, String) {
    let log = temp_dir("cli-briefly").join("stderr");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

/// Every numeric key, with values that used to panic at start (`Duration::from_secs_f64` of
/// `inf` or `1e300`) or to slip through (`nan`, negatives): each is refused at load, by the
/// real binary, with exit code 1 and an error that names the key.
#[test]
fn every_numeric_key_refuses_values_that_could_panic() {
    let dir = temp_dir("cli-numbers");
    let mut keys: Vec<(String, &str)> = [
        ("server", "workers"),
        ("server", "shutdown_grace_seconds"),
        ("server", "request_head_timeout_seconds"),
        ("server", "idle_timeout_seconds"),
        ("server", "max_connections"),
        ("server", "max_connections_per_ip"),
        ("server", "max_request_head_bytes"),
        ("auth", "leeway_seconds"),
        ("auth", "oauth_timestamp_window_seconds"),
        ("auth.token_endpoint", "lifetime_seconds"),
        ("accounts", "max_certificates"),
        ("accounts", "max_mappings"),
        ("intake", "max_file_bytes"),
        ("intake", "max_iterations"),
        ("intake", "max_total_iterations"),
        ("intake", "expiry_warning_days"),
        ("intake", "concurrency"),
        ("runtime", "sync_interval_seconds"),
        ("forward", "max_body_bytes"),
        ("forward", "connect_timeout_seconds"),
        ("forward", "response_timeout_seconds"),
        ("forward", "idle_timeout_seconds"),
        ("forward", "body_idle_timeout_seconds"),
        ("forward", "max_idle_per_identity"),
        ("forward", "max_idle_total"),
        ("forward", "identity_idle_seconds"),
        ("database", "max_connections"),
        ("database", "acquire_timeout_seconds"),
        ("secrets.vault", "timeout_seconds"),
        ("expiry", "check_interval_seconds"),
        ("expiry", "webhook_timeout_seconds"),
        ("expiry", "thresholds_days"),
        ("tracing", "sample_ratio"),
        ("tracing", "export_timeout_seconds"),
        ("tracing", "batch_size"),
        ("tracing", "queue_capacity"),
    ]
    .into_iter()
    .map(|(table, key)| (table.to_owned(), key))
    .collect();
    for group in ["configuration", "checks", "forward", "tester"] {
        for key in [
            "per_ip_per_second",
            "per_ip_burst",
            "per_account_per_second",
            "per_account_burst",
        ] {
            keys.push((format!("rate_limits.{group}"), key));
        }
    }
    let mut accepted = Vec::new();
    for (table, key) in &keys {
        for value in ["inf", "nan", "-1", "1e300"] {
            let value = if *key == "thresholds_days" {
                format!("[{value}]")
            } else {
                value.to_owned()
            };
            std::fs::write(
                dir.join("bad.toml"),
                format!("[{table}]\n{key} = {value}\n"),
            )
            .unwrap();
            let mut command = binary();
            command
                .current_dir(&dir)
                .args(["serve", "--config", "bad.toml"])
                .env("MTLS_GATEWAY__SERVER__LISTEN", "127.0.0.1:0");
            let (code, stderr) = run_briefly(command);
            let named = stderr.contains(&format!("{table}.{key}"));
            if code != Some(1) || !named || stderr.contains("panicked") {
                let last = stderr.lines().last().unwrap_or_default();
                accepted.push(format!("{table}.{key} = {value}: exit {code:?}, {last}"));
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "not refused with the key named:\n{}",
        accepted.join("\n")
    );
    // The same through the environment.
    for (name, value, key) in [
        (
            "MTLS_GATEWAY__FORWARD__CONNECT_TIMEOUT_SECONDS",
            "inf",
            "forward.connect_timeout_seconds",
        ),
        (
            "MTLS_GATEWAY__SERVER__IDLE_TIMEOUT_SECONDS",
            "1e300",
            "server.idle_timeout_seconds",
        ),
        (
            "MTLS_GATEWAY__RATE_LIMITS__TESTER__PER_IP_BURST",
            "nan",
            "rate_limits.tester.per_ip_burst",
        ),
        (
            "MTLS_GATEWAY__SERVER__MAX_CONNECTIONS",
            "-1",
            "server.max_connections",
        ),
    ] {
        let mut command = binary();
        command
            .current_dir(&dir)
            .arg("serve")
            .env("MTLS_GATEWAY__SERVER__LISTEN", "127.0.0.1:0")
            .env(name, value);
        let (code, stderr) = run_briefly(command);
        assert_eq!(code, Some(1), "{name}={value}: {stderr}");
        assert!(stderr.contains(key), "{name}={value}: {stderr}");
    }
}

#[test]
fn p12_inspect_reports_and_exits_with_the_code() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let dir = temp_dir("cli-inspect");
    let file = fixtures.path("openssl-nonascii.p12");
    let password = &fixtures.case("openssl-nonascii.p12").password;

    let output = binary()
        .env("P12_PASSWORD", password)
        .args(["p12", "inspect"])
        .arg(&file)
        .args(["--password-env", "P12_PASSWORD"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("ECDSA-P384"));

    std::fs::write(dir.join("pw"), format!("{password}\n")).unwrap();
    let output = binary()
        .args(["p12", "inspect", "--json", "--password-file"])
        .arg(dir.join("pw"))
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["keyType"], "ECDSA-P384");

    let mut child = binary()
        .args(["p12", "inspect", "--password-stdin"])
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"not the password\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("p12_wrong_password"), "{stderr}");
    assert!(!stderr.contains("not the password"));

    let output = binary()
        .args(["p12", "inspect"])
        .arg(fixtures.path("openssl-dsa.p12"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = binary()
        .args(["p12", "inspect", "/no/such/file.p12"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("file_unreadable"));
}

/// SIGTERM: listening stops at once, the request in flight finishes, then the process exits 0.
#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let Some(pki) = crate::upstream::server_pki() else {
        return;
    };
    let server = crate::upstream::start(&pki, None).await;
    let dir = temp_dir("cli-sigterm");
    let served = serve(
        &dir,
        &[
            (
                "MTLS_GATEWAY__EGRESS__ALLOW_CIDRS",
                "[\"127.0.0.1/32\"]".to_owned(),
            ),
            (
                "MTLS_GATEWAY__TLS__TRUST_ROOTS",
                format!("[\"{}\"]", server.ca_pem.display()),
            ),
            (
                "MTLS_GATEWAY__SERVER__SHUTDOWN_GRACE_SECONDS",
                "10".to_owned(),
            ),
        ],
    );
    let output = binary()
        .current_dir(&dir)
        .args([
            "token",
            "issue",
            "--account",
            "a1",
            "--privileges",
            "MTLS_FORWARD",
        ])
        .output()
        .unwrap();
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    // An unmapped forward to a target that takes 3 s to answer.
    let slow = tokio::spawn(
        client()
            .get(format!("{}/mtls/account/a1", served.base))
            .bearer_auth(&token)
            .header(
                "LP-forward-url",
                format!("https://localhost:{}/slow", server.port),
            )
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    // SIGHUP (a reload: here no listener has TLS) never ends the process.
    let signal = |name: &str| {
        Command::new("kill")
            .args([name, &served.child.id().to_string()])
            .status()
            .unwrap()
    };
    assert!(signal("-HUP").success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = client()
        .get(format!("{}/healthz", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "alive after SIGHUP");
    assert!(signal("-TERM").success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The listening socket is closed at once: the kernel refuses, nothing queues for nobody.
    let address = served.base.trim_start_matches("http://").to_owned();
    let refused = tokio::net::TcpStream::connect(&address).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|error| error.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "no new connection is accepted after SIGTERM"
    );
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen: serde_json::Value = response.json().await.unwrap();
    assert_eq!(seen["path"], "/slow");
    let mut served = served;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            assert!(status.success(), "serve exited with {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(&served.log).unwrap();
    assert!(log.contains("shutting down"), "{log}");
}

/// `p12 test FILE --url URL`: the live tester's report from the command line.
#[tokio::test]
async fn p12_test_reports_each_stage() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let Some(pki) = crate::upstream::server_pki() else {
        return;
    };
    let accepting = crate::upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    let other = crate::upstream::server_pki().unwrap();
    let refusing = crate::upstream::start(&pki, Some(&other.join("ca.pem"))).await;
    let dir = temp_dir("cli-p12-test");
    let run = |port: u16| {
        let mut command = binary();
        command
            .current_dir(&dir)
            .env("MTLS_GATEWAY__EGRESS__ALLOW_CIDRS", "[\"127.0.0.1/32\"]")
            .env(
                "MTLS_GATEWAY__TLS__TRUST_ROOTS",
                format!("[\"{}\"]", accepting.ca_pem.display()),
            )
            .env("P12_PASSWORD", "fixture-secret")
            .args([
                "p12",
                "test",
                "--password-env",
                "P12_PASSWORD",
                "--json",
                "--url",
            ])
            .arg(format!("https://localhost:{port}/"))
            .arg(fixtures.path("openssl-default-rsa2048.p12"));
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    let output = run(accepting.port).await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["stages"].as_array().unwrap().len(), 4);
    let output = run(refusing.port).await.unwrap();
    assert_eq!(output.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["failedStage"], "tls");
    assert!(report["advice"].to_string().contains("CN=Upstream Test CA"));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("fixture-secret"));
}
