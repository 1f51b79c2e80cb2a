//! Keys the gateway makes (SPEC 4.6), the request half, on every stack: a request through the
//! HTTP API, its CSR verified by OpenSSL (`openssl req -verify`) and by pyca/cryptography,
//! signed by an OpenSSL CA, the chain uploaded, the certificate mapped and used for a forward to
//! a real TLS server that requires the client certificate; every refusal of the chain upload one
//! by one; collect without the key; the command line's `cert request` and `cert chain`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mtls_auth::Privilege;
use mtls_test_support::{openssl, python, random_account, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ca::Ca;
use crate::forward::{Tenant, answer, trusting};
use crate::support::{Stack, TestApp, client, metric_value, spawn_on, stacks};
use crate::upstream;

/// Signs `csr` with `ca`'s key through pyca/cryptography (an independent implementation),
/// valid from `start_days` to `end_days` from now (negative: in the past), with clientAuth;
/// after it checked the CSR's signature itself.
fn sign_with_pyca(ca: &Ca, csr: &str, start_days: i64, end_days: i64) -> String {
    let script = r#"
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
csr = x509.load_pem_x509_csr(open(sys.argv[1], 'rb').read())
assert csr.is_signature_valid, 'the CSR signature does not verify'
ca = x509.load_pem_x509_certificate(open(sys.argv[2], 'rb').read())
key = serialization.load_pem_private_key(open(sys.argv[3], 'rb').read(), None)
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.subject)
    .public_key(csr.public_key()).serial_number(x509.random_serial_number())
    .not_valid_before(now + datetime.timedelta(days=int(sys.argv[4])))
    .not_valid_after(now + datetime.timedelta(days=int(sys.argv[5])))
    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    .sign(key, hashes.SHA256()))
sys.stdout.write(cert.public_bytes(serialization.Encoding.PEM).decode())
"#;
    let work = temp_dir("request-pyca");
    std::fs::write(work.join("r.csr"), csr).unwrap();
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(work.join("r.csr"))
        .arg(ca.pem())
        .arg(ca.key())
        .arg(start_days.to_string())
        .arg(end_days.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pyca: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

const CLIENT_AUTH: &str = "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:brand-a.example\n";

/// `openssl req -verify`: the CSR's signature verifies with the key it carries.
fn openssl_verifies(csr: &str) {
    let work = temp_dir("request-verify");
    std::fs::write(work.join("r.csr"), csr).unwrap();
    openssl(&work, &["req", "-in", "r.csr", "-verify", "-noout"]).unwrap();
    let text =
        String::from_utf8(openssl(&work, &["req", "-in", "r.csr", "-noout", "-text"]).unwrap())
            .unwrap();
    assert!(text.contains("brand-a.example"), "{text}");
}

struct Api<'a> {
    app: &'a TestApp,
    account: String,
    token: String,
}

impl<'a> Api<'a> {
    fn new(app: &'a TestApp) -> Self {
        let account = random_account();
        let token = app.token(
            &[&account],
            &[
                Privilege::ReadInternal,
                Privilege::WriteInternal,
                Privilege::Forward,
            ],
        );
        Self {
            app,
            account,
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        self.app.url(&format!(
            "/mtls/account/{}/certificates{path}",
            self.account
        ))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.bearer_auth(&self.token).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn request(&self, body: Value) -> (StatusCode, Value) {
        self.send(client().post(self.url("/requests")).json(&body))
            .await
    }

    async fn pending(&self, name: &str) -> (i64, String) {
        let (status, body) = self
            .request(json!({ "name": name, "subject": "CN=brand-a,O=Brand A", "keyType": "P-256", "subjectAltNames": ["DNS:brand-a.example"] }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["id"].as_i64().unwrap(),
            body["csr"].as_str().unwrap().to_owned(),
        )
    }

    async fn chain(&self, id: i64, pem: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        self.send(
            client()
                .put(self.url(&format!("/{id}/chain")))
                .header("Content-Type", "application/x-pem-file")
                .body(pem),
        )
        .await
    }

    async fn entity(&self, id: i64) -> Value {
        let (status, body) = self.send(client().get(self.url(&format!("/{id}")))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// The secret the store holds for `id`'s live version (to look for its key bytes elsewhere).
async fn stored_key(
    app: &TestApp,
    account: &str,
    id: i64,
    version: i64,
) -> mtls_secrets::KeyMaterial {
    let store = mtls_store::Store::connect(&mtls_gateway::backends::store_options(&app.config))
        .await
        .unwrap();
    let secrets = mtls_gateway::backends::secret_store(&app.config, &store).unwrap();
    let secret = secrets
        .get_secret(
            mtls_secrets::SecretKey {
                account,
                certificate_id: id,
            },
            version,
        )
        .await
        .unwrap()
        .unwrap();
    store.close().await;
    match secret {
        mtls_secrets::Secret::Key(material) => material,
        mtls_secrets::Secret::P12(_) => panic!("a request's secret is a key"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[tokio::test]
async fn a_requested_key_is_signed_uploaded_mapped_and_forwarded_with() {
    let Some(ca) = Ca::new("Request Test CA") else {
        return;
    };
    let Some(pki) = upstream::server_pki() else {
        return;
    };
    // The server requires a client certificate issued by this CA.
    let server = upstream::start(&pki, Some(&ca.pem())).await;
    for stack in stacks() {
        let app = spawn_on(&stack, trusting(&server)).await;
        let api = Api::new(&app);
        // The expiry monitor's first round counts too: let it finish first, so that the
        // counts read below are the ones this test's changes set.
        for _ in 0..100 {
            if metric_value::<i64>(&app, "mtls_certificate_requests_pending")
                .await
                .is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let (status, created) = api
            .request(json!({ "name": "brand-a", "subject": "CN=brand-a,O=Brand A", "keyType": "P-256", "subjectAltNames": ["DNS:brand-a.example"] }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{stack:?}: {created}");
        assert_eq!(created["status"], "Pending");
        assert_eq!(created["subject"], "CN=brand-a,O=Brand A");
        assert_eq!(created["keyType"], "ECDSA-P256");
        assert_eq!(created["version"], 1);
        for absent in [
            "expirationDate",
            "fingerprintSha256",
            "issuer",
            "notBefore",
            "serialNumber",
            "chainLength",
            "renewal",
        ] {
            assert!(created.get(absent).is_none(), "{absent}: {created}");
        }
        let text = created.to_string();
        assert!(!text.contains("PRIVATE"), "{text}");
        let id = created["id"].as_i64().unwrap();
        let csr = created["csr"].as_str().unwrap().to_owned();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        if matches!(stack, Stack::SqliteLocal) {
            assert_eq!(
                metric_value::<i64>(&app, "mtls_certificate_requests_pending").await,
                Some(1)
            );
        }

        // The CSR again, as a file, and verified by OpenSSL and by pyca.
        let response = client()
            .get(api.url(&format!("/{id}/csr")))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/pkcs10");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.text().await.unwrap(), csr);
        openssl_verifies(&csr);
        let _ = sign_with_pyca(&ca, &csr, 0, 1);

        // Listed as Pending; nothing to collect yet.
        let listed = api.send(client().get(api.url(""))).await.1;
        assert_eq!(listed[0]["status"], "Pending", "{listed}");
        let collect = app.url(&format!("/api/account/{}/certificate/{id}", api.account));
        let (status, body) = api.send(client().get(&collect)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "certificate_pending");

        // Mappable while pending, but nothing is presented through it yet.
        let tenant = Tenant {
            app: &app,
            account: api.account.clone(),
            token: api.token.clone(),
        };
        let target = format!("https://localhost:{}/requested", server.port);
        tenant.map(id, "1", &target).await;
        let (status, _, body) = answer(
            tenant
                .forward(reqwest::Method::GET, &target)
                .header("LP-service-name", "IDP"),
        )
        .await;
        assert_ne!(
            status,
            StatusCode::OK,
            "a pending certificate was presented: {body}"
        );
        assert!(body["fingerprint"].is_null(), "{body}");

        // Signed by the OpenSSL CA, uploaded: Available at once.
        let leaf = ca.sign(&csr, CLIENT_AUTH);
        let (status, done) = api.chain(id, ca.chain(&leaf)).await;
        assert_eq!(status, StatusCode::OK, "{stack:?}: {done}");
        assert_eq!(done["status"], "Available");
        assert_eq!(done["version"], 2);
        assert_eq!(done["chainLength"], 2);
        assert_eq!(done["issuer"], "CN=Request Test CA");
        assert_eq!(done["keyType"], "ECDSA-P256");
        assert!(done["expirationDate"].is_string());
        let fingerprint = done["fingerprintSha256"].as_str().unwrap().to_owned();
        assert_eq!(api.entity(id).await["status"], "Available");
        if matches!(stack, Stack::SqliteLocal) {
            assert_eq!(
                metric_value::<i64>(&app, "mtls_certificate_requests_pending").await,
                Some(0)
            );
            assert_eq!(
                metric_value::<i64>(&app, "mtls_certificate_renewals_pending").await,
                Some(0)
            );
        }
        // A second chain: the certificate no longer waits for one.
        let (status, body) = api.chain(id, ca.chain(&leaf)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "not_pending");
        // The CSR it was issued for stays readable.
        let (status, _) = api.send(client().get(api.url(&format!("/{id}/csr")))).await;
        assert_eq!(status, StatusCode::OK);

        // Forwarded with at once (mapped while pending): the server saw this certificate.
        let (status, _, body) = answer(
            tenant
                .forward(reqwest::Method::GET, &target)
                .header("LP-service-name", "IDP"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{stack:?}: {body}");
        assert_eq!(body["fingerprint"], fingerprint.as_str());

        // Collect: the certificate, the chain and the CSR, never the key.
        let response = client()
            .get(&collect)
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let archive = response.bytes().await.unwrap().to_vec();
        let material = stored_key(&app, &api.account, id, 2).await;
        assert!(material.chain_pem.is_some());
        assert!(!contains(&archive, &material.pkcs8), "key bytes in the ZIP");
        use base64::Engine;
        let key_base64 = base64::engine::general_purpose::STANDARD.encode(&*material.pkcs8);
        assert!(!contains(&archive, key_base64.as_bytes()));
        assert!(!contains(&archive, &key_base64.as_bytes()[..40]));
        assert!(!contains(&archive, b"PRIVATE KEY"));
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
        let mut names: Vec<String> = zip
            .file_names()
            .map(|name| name.unwrap().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                format!("{id}-chain.pem"),
                format!("{id}.csr"),
                format!("{id}.pem")
            ]
        );
        let mut text = String::new();
        zip.by_name(&format!("{id}.pem"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text.trim(), leaf.trim());
        let mut text = String::new();
        zip.by_name(&format!("{id}.csr"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, csr);

        // The audit trail names both steps.
        let (_, trail) = api
            .send(client().get(app.url(&format!("/mtls/account/{}/audit", api.account))))
            .await;
        let actions: Vec<&str> = trail["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["action"].as_str().unwrap())
            .collect();
        assert!(actions.contains(&"certificate.request"), "{actions:?}");
        assert!(actions.contains(&"certificate.chain"), "{actions:?}");
        app.running.stop().await.unwrap();
    }
}

/// Sends `head` (a request head without its final blank line) over a raw connection, then
/// `body`, and answers the status line's code (a body announced and never sent is answered
/// or the read times out).
async fn raw(app: &TestApp, head: &str, body: &[u8]) -> u16 {
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let _ = stream.write_all(body).await;
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("no answer")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..read]);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn each_refusal_of_a_request_or_a_chain_has_its_code() {
    let Some(ca) = Ca::new("Request Test CA") else {
        return;
    };
    let stack = Stack::SqliteLocal;
    let app = spawn_on(&stack, |_| {}).await;
    let api = Api::new(&app);

    // Requests refused before any key is made.
    for (body, code) in [
        (
            json!({ "name": "x", "subject": "CN=x", "keyType": "DSA-1024" }),
            "unsupported_key_type",
        ),
        (
            json!({ "name": "x", "subject": "XX=nope" }),
            "invalid_subject",
        ),
        (
            json!({ "name": "x", "subject": "CN=x", "subjectAltNames": ["DNS:not a name"] }),
            "invalid_subject_alt_name",
        ),
        (json!({ "name": "", "subject": "CN=x" }), "invalid_name"),
        (json!({ "name": "x", "subject": 5 }), "invalid_json"),
    ] {
        let (status, answer) = api.request(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}");
    }
    let (id, csr) = api.pending("brand-a").await;
    let (status, answer) = api
        .request(json!({ "name": "brand-a", "subject": "CN=x" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "name_conflict");

    let good = ca.sign(&csr, CLIENT_AUTH);
    // A certificate for another key.
    let (_, other_csr) = api.pending("other").await;
    let foreign = ca.sign(&other_csr, CLIENT_AUTH);
    let ca_pem = std::fs::read_to_string(ca.pem()).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (ca.chain(&foreign), "chain_key_mismatch"),
        (format!("{ca_pem}{good}"), "chain_order"),
        (
            ca.chain(&sign_with_pyca(&ca, &csr, 1, 30)),
            "certificate_not_yet_valid",
        ),
        (
            ca.chain(&sign_with_pyca(&ca, &csr, -30, -1)),
            "certificate_expired",
        ),
        (
            ca.chain(&ca.sign(&csr, "extendedKeyUsage=serverAuth\n")),
            "certificate_usage",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
                .to_owned(),
            "invalid_pem",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_owned(),
            "invalid_pem",
        ),
        ("no certificate here".to_owned(), "invalid_pem"),
    ];
    for (pem, code) in cases {
        let (status, answer) = api.chain(id, pem).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{code}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }
    // Larger than 64 KiB: refused by its length, and while read when no length is announced.
    let (status, answer) = api
        .chain(id, vec![b'a'; mtls_pki::MAX_CHAIN_PEM_BYTES + 1])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
    let path = format!("/mtls/account/{}/certificates/{id}/chain", api.account);
    let mut chunked = Vec::new();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 4096).as_bytes());
        chunked.extend_from_slice(&[b'a'; 4096]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked",
        api.token
    );
    assert_eq!(raw(&app, &head, &chunked).await, 413);
    // Another content type.
    let (status, answer) = api
        .send(
            client()
                .put(api.url(&format!("/{id}/chain")))
                .header("Content-Type", "application/json")
                .body(ca.chain(&good)),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    // 403 before the body: a caller without MTLS_WRITE_INTERNAL announces a body it never sends.
    let reader = app.token(&[&api.account], &[Privilege::ReadInternal]);
    for (method, path) in [
        ("PUT", path.clone()),
        (
            "POST",
            format!("/mtls/account/{}/certificates/requests", api.account),
        ),
    ] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {reader}\r\nContent-Type: text/plain\r\nContent-Length: 1000"
        );
        assert_eq!(raw(&app, &head, b"").await, 403, "{method} {path}");
    }
    // Another account's certificate, or an unknown one: 404, as everywhere.
    let stranger = Api::new(&app);
    for path in [format!("/{id}/csr"), "/99/csr".to_owned()] {
        let (status, _) = stranger.send(client().get(stranger.url(&path))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = stranger.chain(id, ca.chain(&good)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A certificate from a PKCS#12 file has no CSR and waits for no chain.
    if let Some(fixtures) = mtls_test_support::p12_fixtures() {
        use base64::Engine;
        let file = "openssl-default-p256.p12";
        let item = json!([{ "name": "from-p12", "password": fixtures.case(file).password,
            "p12": base64::engine::general_purpose::STANDARD.encode(fixtures.bytes(file)) }]);
        let (status, saved) = api.send(client().post(api.url("")).json(&item)).await;
        assert_eq!(status, StatusCode::CREATED, "{saved}");
        let p12_id = saved["successfulySavedCertificates"][0]["id"]
            .as_i64()
            .unwrap();
        let (status, _) = api
            .send(client().get(api.url(&format!("/{p12_id}/csr"))))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, answer) = api.chain(p12_id, ca.chain(&good)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["error"]["code"], "not_pending");
    }

    // Still pending after every refusal; the right chain completes it.
    let entity = api.entity(id).await;
    assert_eq!(
        (entity["status"].as_str(), entity["version"].as_i64()),
        (Some("Pending"), Some(1))
    );
    let (status, done) = api.chain(id, ca.chain(&good)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "Available");
    app.running.stop().await.unwrap();
}

fn run_cli(envs: &[(String, String)], args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mtls-gateway"))
        .envs(envs.iter().cloned())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test]
async fn the_command_line_requests_and_completes_a_certificate() {
    let Some(ca) = Ca::new("Request Test CA") else {
        return;
    };
    for stack in stacks() {
        let app = spawn_on(&stack, |_| {}).await;
        let api = Api::new(&app);
        let envs = crate::oauth::envs(&app.config, &stack);
        let work = temp_dir("cert-cli");
        let csr_file = work.join("brand-a.csr");
        let (ok, out, err) = run_cli(
            &envs,
            &[
                "cert",
                "request",
                "--account",
                &api.account,
                "--name",
                "brand-a",
                "--subject",
                "CN=brand-a,O=Brand A",
                "--san",
                "DNS:brand-a.example",
                "--key-type",
                "P-256",
                "--csr-out",
                csr_file.to_str().unwrap(),
            ],
        );
        assert!(ok, "{stack:?}: {err}");
        assert!(!out.contains("PRIVATE") && !err.contains("PRIVATE"));
        let printed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(printed["status"], "Pending");
        let id = printed["id"].as_i64().unwrap();
        let csr = std::fs::read_to_string(&csr_file).unwrap();
        openssl_verifies(&csr);

        // The CLI's refusals carry the API's codes.
        let bad = work.join("bad.pem");
        std::fs::write(&bad, "no certificate here").unwrap();
        let id_text = id.to_string();
        let (ok, _, err) = run_cli(
            &envs,
            &[
                "cert",
                "chain",
                "--account",
                &api.account,
                "--id",
                &id_text,
                "--chain",
                bad.to_str().unwrap(),
            ],
        );
        assert!(!ok);
        assert!(err.contains("invalid_pem"), "{err}");

        let chain_file = work.join("chain.pem");
        write_file(&chain_file, &ca.chain(&ca.sign(&csr, CLIENT_AUTH)));
        let (ok, out, err) = run_cli(
            &envs,
            &[
                "cert",
                "chain",
                "--account",
                &api.account,
                "--id",
                &id_text,
                "--chain",
                chain_file.to_str().unwrap(),
            ],
        );
        assert!(ok, "{stack:?}: {err}");
        let printed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(printed["status"], "Available");
        assert_eq!(printed["version"], 2);
        // The gateway sees the same certificate.
        let entity = api.entity(id).await;
        assert_eq!(entity["status"], "Available");
        assert_eq!(entity["fingerprintSha256"], printed["fingerprintSha256"]);
        app.running.stop().await.unwrap();
    }
}

fn write_file(path: &Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}
