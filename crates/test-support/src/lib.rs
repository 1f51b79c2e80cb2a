//! Helpers for the test suites: PKCS#12 files written by OpenSSL, Java `keytool` and
//! pyca/cryptography (generated once by `scripts/gen-p12-fixtures.py`), and pyca's own vectors.
//!
//! Every helper that needs a tool returns `None` (and says so on stderr) when the tool is not
//! on the machine, so a bare `cargo test` passes and names what it skipped; `CI=true` turns
//! that skip into a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    // Test fixtures read the real clock (file ages, unique names).
    clippy::disallowed_methods
)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// One fixture of the manifest written by `scripts/gen-p12-fixtures.py`.
#[derive(Clone, Debug, Deserialize)]
pub struct P12Case {
    pub file: String,
    pub password: String,
    /// `ok` or the error code the file must be refused with.
    pub expect: String,
    pub source: String,
    pub key_type: Option<String>,
    pub chain_length: Option<usize>,
    pub subject: Option<String>,
    pub warning: Option<String>,
    pub password_form: Option<String>,
    #[serde(default)]
    pub legacy: bool,
}

/// The generated fixtures: the directory and its manifest.
#[derive(Clone, Debug)]
pub struct P12Fixtures {
    pub dir: PathBuf,
    pub cases: Vec<P12Case>,
}

impl P12Fixtures {
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn bytes(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).unwrap()
    }

    /// The first case with this file name.
    pub fn case(&self, file: &str) -> &P12Case {
        self.cases.iter().find(|case| case.file == file).unwrap()
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Whether missing tools must fail the run instead of skipping (set in CI).
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Reports a skipped test, or fails it in CI.
pub fn skip(what: &str, why: &str) {
    assert!(!required(), "{what} cannot be skipped in CI: {why}");
    eprintln!("SKIPPED {what}: {why}");
}

/// The Python interpreter to use: the project's `.venv` when it exists.
pub fn python() -> PathBuf {
    let venv = workspace_root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Fixtures older than this are made again (their certificates have fixed lifetimes).
const MAX_AGE: Duration = Duration::from_secs(3 * 86_400);

/// The PKCS#12 fixtures, generated on first use under `target/test-fixtures/p12`.
pub fn p12_fixtures() -> Option<P12Fixtures> {
    let root = workspace_root();
    let base = root.join("target/test-fixtures");
    let dir = base.join("p12");
    let manifest = dir.join("manifest.json");
    let script = root.join("scripts/gen-p12-fixtures.py");
    std::fs::create_dir_all(&base).unwrap();
    let lock = File::create(base.join("p12.lock")).unwrap();
    lock.lock().unwrap();
    if !fresh(&manifest, &script) {
        let status = Command::new(python()).arg(&script).arg(&dir).status();
        match status {
            Ok(status) if status.success() => {}
            other => {
                skip(
                    "PKCS#12 fixtures",
                    &format!("scripts/gen-p12-fixtures.py failed: {other:?}"),
                );
                return None;
            }
        }
    }
    let cases: Vec<P12Case> = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    for source in ["openssl", "keytool", "pyca"] {
        if !cases.iter().any(|case| case.source == source) {
            skip(&format!("{source} fixtures"), "the tool is not installed");
        }
    }
    Some(P12Fixtures { dir, cases })
}

fn fresh(manifest: &Path, script: &Path) -> bool {
    let modified = |path: &Path| path.metadata().and_then(|meta| meta.modified()).ok();
    match (modified(manifest), modified(script)) {
        (Some(made), Some(edited)) => {
            made >= edited && SystemTime::now().duration_since(made).unwrap_or_default() < MAX_AGE
        }
        _ => false,
    }
}

/// The `pkcs12` folder of pyca's `cryptography-vectors` package, when it is installed.
pub fn pyca_vectors() -> Option<PathBuf> {
    let output = Command::new(python())
        .args(["-c", "import cryptography_vectors, os; print(os.path.dirname(cryptography_vectors.__file__))"])
        .output();
    match output {
        Ok(output) if output.status.success() => {
            let dir =
                PathBuf::from(String::from_utf8(output.stdout).unwrap().trim()).join("pkcs12");
            dir.is_dir().then_some(dir)
        }
        _ => {
            skip(
                "pyca cryptography-vectors",
                "the PyPI package cryptography-vectors is not installed",
            );
            None
        }
    }
}

/// A fresh, empty directory under `target/test-tmp` for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = workspace_root()
        .join("target/test-tmp")
        .join(format!("{name}-{}-{unique}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `openssl` with `args` in `dir`; `None` (a reported skip) when OpenSSL is not installed.
pub fn openssl(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(output) if output.status.success() => Some(output.stdout),
        Ok(output) => panic!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(_) => {
            skip(
                "tests needing the openssl command",
                "openssl is not installed",
            );
            None
        }
    }
}

fn reachable(address: &str) -> bool {
    use std::net::ToSocketAddrs;
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .is_some_and(|address| {
            std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
        })
}

/// The MariaDB/MySQL URL to test against: `MTLS_TEST_MYSQL_URL`, or the machine's MariaDB on
/// 127.0.0.1:3306 (user root, empty password, database `test`) when it answers.
pub fn mysql_url() -> Option<String> {
    if let Ok(url) = std::env::var("MTLS_TEST_MYSQL_URL") {
        return Some(url);
    }
    if reachable("127.0.0.1:3306") {
        return Some("mysql://root@127.0.0.1:3306/test".to_owned());
    }
    skip(
        "tests against MariaDB",
        "nothing answers on 127.0.0.1:3306 and MTLS_TEST_MYSQL_URL is not set",
    );
    None
}

/// A Vault-compatible server to test against: `MTLS_TEST_VAULT_ADDR` and `MTLS_TEST_VAULT_TOKEN`,
/// or an OpenBao dev server on 127.0.0.1:8200 with the root token `root` (what `scripts/test`
/// starts) when it answers.
pub fn vault() -> Option<(String, String)> {
    let address = std::env::var("MTLS_TEST_VAULT_ADDR")
        .unwrap_or_else(|_| "http://127.0.0.1:8200".to_owned());
    let token = std::env::var("MTLS_TEST_VAULT_TOKEN").unwrap_or_else(|_| "root".to_owned());
    let host = address
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    if reachable(host) {
        return Some((address, token));
    }
    skip(
        "tests against Vault (OpenBao)",
        "no server answers at MTLS_TEST_VAULT_ADDR or 127.0.0.1:8200",
    );
    None
}

/// A random account id, so that tests sharing MariaDB and Vault never meet.
pub fn random_account() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "t{:x}{:x}{count}",
        nanos % 0xffff_ffff_ffff,
        std::process::id()
    )
}

/// A PKCS#12 file (password `short`) whose self-signed P-256 certificate is valid from a minute
/// ago until `seconds` from now, written by pyca/cryptography at call time.
pub fn short_lived_p12(seconds: u64) -> Option<Vec<u8>> {
    let script = format!(
        r#"
import datetime, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption
from cryptography.hazmat.primitives.serialization.pkcs12 import serialize_key_and_certificates
now = datetime.datetime.now(datetime.timezone.utc)
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "short-lived")])
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(seconds={seconds})).sign(key, hashes.SHA256()))
sys.stdout.buffer.write(serialize_key_and_certificates(b"short", key, cert, None, BestAvailableEncryption(b"short")))
"#
    );
    match Command::new(python()).args(["-c", &script]).output() {
        Ok(output) if output.status.success() => Some(output.stdout),
        _ => {
            skip(
                "tests with short-lived certificates",
                "the Python package 'cryptography' is not installed",
            );
            None
        }
    }
}
