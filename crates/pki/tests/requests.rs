//! Keys the gateway makes (SPEC 4.6) against real tools: the requests verified by OpenSSL and by
//! pyca/cryptography, signed by an OpenSSL CA, and the chain check's refusals one by one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods // certificates made by openssl now are checked now
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use mtls_pki::{IntakePolicy, RequestKeyType, accept_chain, request};
use mtls_test_support::{openssl, python, skip, temp_dir};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// pyca/cryptography's view of a CSR: whether its signature verifies, its subject and SANs.
fn pyca_reads(csr: &Path) -> Option<String> {
    let script = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
csr = x509.load_pem_x509_csr(open(sys.argv[1], "rb").read())
assert csr.is_signature_valid, "signature"
names = []
try:
    ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = [str(getattr(n, "value", n)) for n in ext]
except x509.ExtensionNotFound:
    pass
print(csr.subject.rfc4514_string() + "|" + ",".join(names) + "|" + ("RSA" if isinstance(csr.public_key(), rsa.RSAPublicKey) else "EC") + "|" + str(csr.public_key().key_size))
"#;
    match Command::new(python())
        .args(["-c", script])
        .arg(csr)
        .output()
    {
        Ok(output) if output.status.success() => {
            Some(String::from_utf8(output.stdout).unwrap().trim().to_owned())
        }
        Ok(output) if String::from_utf8_lossy(&output.stderr).contains("No module named") => {
            skip(
                "pyca checks of requests",
                "the Python package 'cryptography' is not installed",
            );
            None
        }
        Ok(output) => panic!(
            "pyca refused the CSR: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(_) => {
            skip("pyca checks of requests", "no Python");
            None
        }
    }
}

#[test]
fn requests_of_every_key_type_verify_with_openssl_and_pyca() {
    let dir = temp_dir("csr-verify");
    for (kind, pyca_type, bits) in [
        (RequestKeyType::P256, "EC", "256"),
        (RequestKeyType::P384, "EC", "384"),
        (RequestKeyType::Rsa2048, "RSA", "2048"),
        (RequestKeyType::Rsa3072, "RSA", "3072"),
    ] {
        let made = request(
            kind,
            r"CN=brand-a,O=Brand A\, Inc.,C=FR",
            &[
                "brand-a.example".to_owned(),
                "IP:192.0.2.7".to_owned(),
                "spiffe://brand-a/gw".to_owned(),
                "ops@brand-a.example".to_owned(),
            ],
        )
        .unwrap();
        let file = format!("{}.csr", kind.label());
        write(&dir, &file, &made.csr_pem);
        // OpenSSL checks the self-signature (exit status 0 only when it verifies).
        let Some(text) = openssl(&dir, &["req", "-in", &file, "-verify", "-noout", "-text"]) else {
            return;
        };
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("DNS:brand-a.example"), "{text}");
        assert!(text.contains("IP Address:192.0.2.7"), "{text}");
        assert!(text.contains("URI:spiffe://brand-a/gw"), "{text}");
        assert!(text.contains("email:ops@brand-a.example"), "{text}");
        let subject = openssl(
            &dir,
            &[
                "req", "-in", &file, "-noout", "-subject", "-nameopt", "RFC2253",
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(subject).unwrap().trim(),
            r"subject=CN=brand-a,O=Brand A\, Inc.,C=FR"
        );
        if let Some(seen) = pyca_reads(&dir.join(&file)) {
            assert_eq!(
                seen,
                format!(
                    r"CN=brand-a,O=Brand A\, Inc.,C=FR|brand-a.example,192.0.2.7,spiffe://brand-a/gw,ops@brand-a.example|{pyca_type}|{bits}"
                ),
                "{}",
                kind.label()
            );
        }
    }
}

/// A root CA, an intermediate, and a second "intermediate" with the same name but another
/// key, all made by OpenSSL in `dir`.
fn make_cas(dir: &Path) -> Option<()> {
    write(
        dir,
        "ca.cnf",
        "[ca_ext]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         [client]\nextendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n\
         [server]\nextendedKeyUsage=serverAuth\n[plain]\nkeyUsage=critical,digitalSignature\n\
         [server_san]\nsubjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-subj",
            "/CN=Test Root",
            "-days",
            "60",
        ],
    )?;
    for (name, key) in [("inter", "inter.key"), ("impostor", "impostor.key")] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key,
                "-out",
                &format!("{name}.csr"),
                "-subj",
                "/CN=Test Intermediate",
            ],
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "root.pem",
                "-CAkey",
                "root.key",
                "-set_serial",
                "2",
                "-days",
                "60",
                "-extfile",
                "ca.cnf",
                "-extensions",
                "ca_ext",
                "-out",
                &format!("{name}.pem"),
            ],
        )?;
    }
    Some(())
}

/// Signs `csr` with the intermediate, with the `extensions` section of ca.cnf, valid 40 days.
fn sign(dir: &Path, csr: &str, extensions: &str, out: &str) -> Option<String> {
    write(dir, "leaf.csr", csr);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "inter.pem",
            "-CAkey",
            "inter.key",
            "-set_serial",
            "0x0A1B",
            "-days",
            "40",
            "-extfile",
            "ca.cnf",
            "-extensions",
            extensions,
            "-out",
            out,
        ],
    )?;
    Some(read(dir, out))
}

#[test]
fn a_chain_signed_by_an_openssl_ca_is_accepted_and_each_fault_refused() {
    let dir = temp_dir("csr-chain");
    if make_cas(&dir).is_none() {
        return;
    }
    let policy = IntakePolicy::default();
    // A minute on: OpenSSL starts the validity at the second it signs, after this line.
    let now = SystemTime::now() + Duration::from_secs(60);
    let made = request(RequestKeyType::P256, "CN=brand-a,O=Brand A", &[]).unwrap();
    let key = made.key.pkcs8_der();
    let Some(leaf) = sign(&dir, &made.csr_pem, "client", "leaf.pem") else {
        return;
    };
    let (inter, root, impostor) = (
        read(&dir, "inter.pem"),
        read(&dir, "root.pem"),
        read(&dir, "impostor.pem"),
    );

    let accepted =
        accept_chain(format!("{leaf}{inter}{root}").as_bytes(), key, &policy, now).unwrap();
    let report = &accepted.report;
    assert_eq!(report.leaf.subject, "CN=brand-a,O=Brand A");
    assert_eq!(report.leaf.issuer, "CN=Test Intermediate");
    assert_eq!(report.leaf.serial_hex, "0A1B");
    assert_eq!(report.leaf.key_type, "ECDSA-P256");
    assert_eq!(report.key_type.label(), "ECDSA-P256");
    assert_eq!(report.leaf.client_auth, Some(true));
    assert_eq!(report.chain.len(), 2);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(accepted.identity.certificate_chain.len(), 3);
    assert_eq!(accepted.identity.key.pkcs8_der(), key);
    // Leaf and intermediate only: accepted, the server must know the root.
    let short = accept_chain(format!("{leaf}{inter}").as_bytes(), key, &policy, now).unwrap();
    assert_eq!(short.report.warnings[0].code, "chain_incomplete");
    // The stored form round-trips: the PEM the gateway writes reads back the same.
    let stored = mtls_pki::chain_pem(&accepted.identity.certificate_chain);
    let again = accept_chain(stored.as_bytes(), key, &policy, now).unwrap();
    assert_eq!(
        again.report.leaf.fingerprint_sha256,
        report.leaf.fingerprint_sha256
    );

    let refused = |pem: String, key: &[u8], now: SystemTime| {
        accept_chain(pem.as_bytes(), key, &policy, now)
            .map(|_| ())
            .unwrap_err()
            .code()
    };
    // Another pending key.
    let other = request(RequestKeyType::P256, "CN=other", &[]).unwrap();
    assert_eq!(
        refused(format!("{leaf}{inter}"), other.key.pkcs8_der(), now),
        "chain_key_mismatch"
    );
    // Reversed, or the leaf not first.
    assert_eq!(
        refused(format!("{root}{inter}{leaf}"), key, now),
        "chain_order"
    );
    assert_eq!(refused(format!("{inter}{leaf}"), key, now), "chain_order");
    // An issuer missing in the middle.
    assert_eq!(refused(format!("{leaf}{root}"), key, now), "chain_order");
    // Same issuer name, another key: only the signature tells.
    assert_eq!(
        refused(format!("{leaf}{impostor}"), key, now),
        "chain_order"
    );
    // Something after the self-signed root.
    assert_eq!(
        refused(format!("{leaf}{inter}{root}{inter}"), key, now),
        "chain_order"
    );
    // Validity, judged at the `now` given.
    assert_eq!(
        refused(
            format!("{leaf}{inter}"),
            key,
            now - Duration::from_secs(3_600)
        ),
        "certificate_not_yet_valid"
    );
    assert_eq!(
        refused(
            format!("{leaf}{inter}"),
            key,
            now + Duration::from_secs(41 * 86_400)
        ),
        "certificate_expired"
    );
    // Usages stated without client authentication.
    let server_only = sign(&dir, &made.csr_pem, "server", "server.pem").unwrap();
    assert_eq!(
        refused(format!("{server_only}{inter}"), key, now),
        "certificate_usage"
    );
    // No usage stated at all: accepted (the extension's absence allows every usage).
    let plain = sign(&dir, &made.csr_pem, "plain", "plain.pem").unwrap();
    let accepted = accept_chain(format!("{plain}{inter}").as_bytes(), key, &policy, now).unwrap();
    assert_eq!(accepted.report.leaf.client_auth, None);
}

#[test]
fn an_rsa_request_signed_by_openssl_gives_the_rsa_key_type() {
    let dir = temp_dir("csr-rsa");
    if make_cas(&dir).is_none() {
        return;
    }
    let made = request(
        RequestKeyType::Rsa2048,
        "CN=rsa-client",
        &["rsa.example".to_owned()],
    )
    .unwrap();
    let leaf = sign(&dir, &made.csr_pem, "client", "leaf.pem").unwrap();
    let inter = read(&dir, "inter.pem");
    let accepted = accept_chain(
        format!("{leaf}{inter}").as_bytes(),
        made.key.pkcs8_der(),
        &IntakePolicy::default(),
        SystemTime::now() + Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(accepted.report.key_type.label(), "RSA-2048");
    assert_eq!(accepted.report.leaf.key_type, "RSA-2048");
}

/// An `openssl s_server` that this test started; killed when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.0 request over TLS with `config`; the answer, or the error that ended it.
fn fetch(port: u16, config: std::sync::Arc<rustls::ClientConfig>) -> Result<String, String> {
    use std::io::{Read, Write};
    let server_name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(config, server_name).unwrap();
    let socket = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|error| error.to_string())?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            // s_server -www closes without close_notify: the answer so far is the answer.
            Err(_) if !answer.is_empty() => break,
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The identity of a requested key, as a forward loads it, authenticates to a real TLS server
/// that requires a client certificate from the test CA; without it the server refuses.
#[test]
fn a_requested_identity_authenticates_to_openssl_s_server() {
    let dir = temp_dir("csr-tls");
    if make_cas(&dir).is_none() {
        return;
    }
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-set_serial",
            "3",
            "-days",
            "30",
            "-extfile",
            "ca.cnf",
            "-extensions",
            "server_san",
            "-out",
            "server.pem",
        ],
    )
    .unwrap();
    let made = request(RequestKeyType::P384, "CN=forwarder,O=Brand A", &[]).unwrap();
    let leaf = sign(&dir, &made.csr_pem, "client", "leaf.pem").unwrap();
    let stored = format!("{leaf}{}", read(&dir, "inter.pem"));
    let now = SystemTime::now() + Duration::from_secs(60);
    let inspection = mtls_pki::inspect_key(
        made.key.pkcs8_der(),
        Some(&stored),
        &IntakePolicy::default(),
        now,
    )
    .unwrap();
    let identity = mtls_runtime::identity::ClientIdentity {
        chain: inspection.identity.certificate_chain,
        pkcs8_key: zeroize::Zeroizing::new(inspection.identity.key.pkcs8_der().to_vec()),
    };
    let roots = std::sync::Arc::new(
        mtls_runtime::identity::base_roots(&[std::fs::read(dir.join("root.pem")).unwrap()])
            .unwrap(),
    );
    let with_identity =
        mtls_runtime::identity::client_config(&roots, None, Some(&identity)).unwrap();
    let without = mtls_runtime::identity::client_config(&roots, None, None).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(
        Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-cert",
                "server.pem",
            ])
            .args(["-key", "server.key", "-CAfile", "root.pem", "-Verify", "3"])
            .args(["-verify_return_error", "-www", "-quiet"])
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let answer = fetch(port, with_identity).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200 ok"), "{answer}");
    assert!(answer.contains("Client certificate"), "{answer}");
    assert!(answer.contains("forwarder"), "{answer}");
    let refused = fetch(port, without);
    assert!(
        refused
            .as_ref()
            .is_err_and(|error| error.contains("CertificateRequired") || error.contains("alert"))
            || refused
                .as_ref()
                .is_ok_and(|answer| !answer.contains("200 ok")),
        "{refused:?}"
    );
}

/// A renewal's request keeps the current certificate's subject, exactly as encoded, and its
/// alternative names, under a new key; OpenSSL verifies it.
#[test]
fn a_renewal_request_keeps_the_current_names() {
    let dir = temp_dir("csr-renewal");
    if make_cas(&dir).is_none() {
        return;
    }
    let first = request(
        RequestKeyType::P256,
        "CN=brand-a,OU=Payments,O=Brand A",
        &["brand-a.example".to_owned(), "IP:192.0.2.9".to_owned()],
    )
    .unwrap();
    write(&dir, "first.csr", &first.csr_pem);
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "first.csr",
            "-CA",
            "inter.pem",
            "-CAkey",
            "inter.key",
            "-set_serial",
            "5",
            "-days",
            "40",
            "-copy_extensions",
            "copy",
            "-out",
            "first.pem",
        ],
    )
    .unwrap();
    let now = SystemTime::now() + Duration::from_secs(60);
    let current = accept_chain(
        format!("{}{}", read(&dir, "first.pem"), read(&dir, "inter.pem")).as_bytes(),
        first.key.pkcs8_der(),
        &IntakePolicy::default(),
        now,
    )
    .unwrap();
    let leaf = &current.identity.certificate_chain[0];
    let renewal = mtls_pki::renewal_request(RequestKeyType::Rsa2048, leaf, None).unwrap();
    assert_eq!(renewal.subject, "CN=brand-a,OU=Payments,O=Brand A");
    write(&dir, "renewal.csr", &renewal.csr_pem);
    let text = String::from_utf8(
        openssl(
            &dir,
            &["req", "-in", "renewal.csr", "-verify", "-noout", "-text"],
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        text.contains("DNS:brand-a.example, IP Address:192.0.2.9"),
        "{text}"
    );
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    let subject = |file: &str, kind: &str| {
        String::from_utf8(
            openssl(
                &dir,
                &[
                    kind, "-in", file, "-noout", "-subject", "-nameopt", "RFC2253",
                ],
            )
            .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(subject("renewal.csr", "req"), subject("first.pem", "x509"));
    // A new subject may be given instead; the names stay.
    let renamed =
        mtls_pki::renewal_request(RequestKeyType::P384, leaf, Some("CN=brand-a-2")).unwrap();
    assert_eq!(renamed.subject, "CN=brand-a-2");
    assert_eq!(
        mtls_pki::RequestKeyType::from_key_type(current.report.key_type),
        Some(RequestKeyType::P256)
    );
}
