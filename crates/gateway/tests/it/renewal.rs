//! Renewal without a gap (SPEC 4.6, issue 20 item 3) on every stack: a PKCS#12 certificate
//! mapped and forwarded to a real TLS server that requires a client certificate; a renewal
//! started (the old key still presented), its CSR signed by an OpenSSL CA, the chain uploaded
//! while several tasks forward without pause (no request fails, the new key afterwards,
//! `version` + 1); a scheduled switch; cancel; the refusals; and the expiry webhook naming a
//! renewal under way.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use mtls_auth::Privilege;
use mtls_gateway::config::Secret;
use mtls_test_support::{P12Fixtures, openssl, p12_fixtures, random_account, short_lived_p12};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::ca::Ca;
use crate::forward::{Tenant, answer, trusting};
use crate::support::{Stack, TestApp, client, metric_value, spawn, spawn_on, stacks};
use crate::upstream::{self, Upstream};

/// The extensions of a renewed client certificate.
const CLIENT_EXTENSIONS: &str =
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n";

/// `csr` signed by `ca` with clientAuth usage: the leaf and the CA, PEM.
fn sign(ca: &Ca, csr: &str) -> String {
    ca.chain(&ca.sign(csr, CLIENT_EXTENSIONS))
}

/// The fixtures' root and `ca`: what the upstream accepts client certificates from.
fn roots_with(ca: &Ca, fixtures: &P12Fixtures) -> PathBuf {
    let mut roots = std::fs::read_to_string(fixtures.path("root.pem")).unwrap();
    roots.push_str(&std::fs::read_to_string(ca.pem()).unwrap());
    let path = ca.dir.join("client-roots.pem");
    std::fs::write(&path, roots).unwrap();
    path
}

/// The PEM of a fixture's own certificate (for the `chain_key_mismatch` refusal).
fn fixture_certificate(fixtures: &P12Fixtures, file: &str, dir: &Path) -> String {
    let case = fixtures.case(file);
    let out = openssl(
        dir,
        &[
            "pkcs12",
            "-in",
            fixtures.path(file).to_str().unwrap(),
            "-nokeys",
            "-clcerts",
            "-passin",
            &format!("pass:{}", case.password),
        ],
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

struct Setup {
    fixtures: P12Fixtures,
    ca: Ca,
    server: Upstream,
}

async fn setup() -> Option<Setup> {
    let fixtures = p12_fixtures()?;
    let pki = upstream::server_pki()?;
    let ca = Ca::new("Renewal Test CA")?;
    let roots = roots_with(&ca, &fixtures);
    let server = upstream::start(&pki, Some(&roots)).await;
    Some(Setup {
        fixtures,
        ca,
        server,
    })
}

fn certificate_url(tenant: &Tenant<'_>, id: i64, rest: &str) -> String {
    tenant.app.url(&format!(
        "/mtls/account/{}/certificates/{id}{rest}",
        tenant.account
    ))
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn start_renewal(tenant: &Tenant<'_>, id: i64, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = client()
        .post(certificate_url(tenant, id, "/renewal"))
        .bearer_auth(&tenant.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

async fn put_chain(
    tenant: &Tenant<'_>,
    id: i64,
    pem: &str,
    activate_at: Option<&str>,
) -> (StatusCode, Value) {
    let mut url = certificate_url(tenant, id, "/renewal/chain");
    if let Some(at) = activate_at {
        let encoded: String = at
            .bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    char::from(byte).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        url = format!("{url}?activateAt={encoded}");
    }
    let request = client()
        .put(url)
        .bearer_auth(&tenant.token)
        .header("content-type", "application/x-pem-file")
        .body(pem.to_owned());
    send(request).await
}

async fn entity(tenant: &Tenant<'_>, id: i64) -> Value {
    let (status, body) = send(
        client()
            .get(certificate_url(tenant, id, ""))
            .bearer_auth(&tenant.token),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn seen(tenant: &Tenant<'_>, target: &str) -> String {
    let (status, _, body) = answer(tenant.forward(reqwest::Method::GET, target)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["fingerprint"].as_str().unwrap().to_owned()
}

/// The renewal's secret version, read from the database, and whether the secret store still
/// holds a secret at `version` of certificate `id`.
async fn renewal_slot(app: &TestApp, account: &str, id: i64) -> Option<i64> {
    let store = mtls_store::Store::connect(&mtls_gateway::backends::store_options(&app.config))
        .await
        .unwrap();
    let slot = store
        .renewal(account, id)
        .await
        .unwrap()
        .map(|detail| detail.row.secret_version);
    store.close().await;
    slot
}

async fn secret_exists(app: &TestApp, account: &str, id: i64, version: i64) -> bool {
    let store = mtls_store::Store::connect(&mtls_gateway::backends::store_options(&app.config))
        .await
        .unwrap();
    let secrets = mtls_gateway::backends::secret_store(&app.config, &store).unwrap();
    let exists = secrets
        .exists(
            mtls_secrets::SecretKey {
                account,
                certificate_id: id,
            },
            version,
        )
        .await
        .unwrap();
    store.close().await;
    exists
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// The immediate switch under continuous load, the refusals, then a second renewal (of what is
/// now a key made by the gateway) cancelled: on every stack.
#[tokio::test]
async fn a_renewal_switches_under_load_without_a_failed_request() {
    let Some(Setup {
        fixtures,
        ca,
        server,
    }) = setup().await
    else {
        return;
    };
    for stack in stacks() {
        one_stack(&stack, &fixtures, &ca, &server).await;
    }
}

async fn one_stack(stack: &Stack, fixtures: &P12Fixtures, ca: &Ca, server: &Upstream) {
    let app = spawn_on(stack, trusting(server)).await;
    let tenant = Tenant::new(&app);
    let renewals_pending =
        || async { metric_value::<i64>(&app, "mtls_certificate_renewals_pending").await };
    let (id, old_fingerprint) = tenant
        .certificate(fixtures, "openssl-default-p256.p12")
        .await;
    let target = format!("https://localhost:{}/renewing", server.port);
    tenant.map(id, "1", &target).await;
    assert_eq!(seen(&tenant, &target).await, old_fingerprint);

    // Nothing to cancel or upload yet.
    let (status, body) = send(
        client()
            .delete(certificate_url(&tenant, id, "/renewal"))
            .bearer_auth(&tenant.token),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "no_renewal")
    );
    let (status, body) = put_chain(&tenant, id, "x", None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "no_renewal")
    );
    let (status, body) = send(
        client()
            .get(certificate_url(&tenant, id, "/renewal/csr"))
            .bearer_auth(&tenant.token),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "no_renewal")
    );
    let (status, body) = start_renewal(&tenant, id, Some(json!({ "keyType": "DSA-1024" }))).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "unsupported_key_type")
    );

    // Started with an empty body: the current key's type and subject; the old key stays live.
    let (status, body) = start_renewal(&tenant, id, None).await;
    assert_eq!(status, StatusCode::CREATED, "{stack:?}: {body}");
    let csr = body["csr"].as_str().unwrap().to_owned();
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{csr}"
    );
    let response = client()
        .get(certificate_url(&tenant, id, "/renewal/csr"))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/pkcs10");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.text().await.unwrap(), csr);
    let pending = entity(&tenant, id).await;
    assert_eq!(pending["renewal"], json!({ "status": "Pending" }));
    assert_eq!(pending["version"], 1);
    assert_eq!(pending["status"], "Available");
    assert_eq!(seen(&tenant, &target).await, old_fingerprint);
    let (status, body) = start_renewal(&tenant, id, Some(json!({}))).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "renewal_pending")
    );

    // Refusals of the chain: another key's certificate, a bad activateAt, too large.
    let old_pem = fixture_certificate(fixtures, "openssl-default-p256.p12", &ca.dir);
    let (status, body) = put_chain(&tenant, id, &old_pem, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "chain_key_mismatch")
    );
    let chain = sign(ca, &csr);
    for bad in ["tomorrow", "2027-13-01T00:00:00Z", "2999-01-01T00:00:00Z"] {
        let (status, body) = put_chain(&tenant, id, &chain, Some(bad)).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_activate_at"),
            "{bad}"
        );
    }
    let (status, body) = send(
        client()
            .put(certificate_url(&tenant, id, "/renewal/chain"))
            .bearer_auth(&tenant.token)
            .header("content-type", "application/json")
            .body(chain.clone()),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let huge = "A".repeat(mtls_pki::MAX_CHAIN_PEM_BYTES + 1);
    let (status, _) = put_chain(&tenant, id, &huge, None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(entity(&tenant, id).await["version"], 1, "nothing changed");
    let slot = renewal_slot(&app, &tenant.account, id).await.unwrap();
    assert!(secret_exists(&app, &tenant.account, id, slot).await);

    // The switch, while four tasks forward without pause.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let request = tenant.forward(reqwest::Method::GET, &target);
        let stop = stop.clone();
        workers.spawn(async move {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, _, body) = answer(request.try_clone().unwrap()).await;
                outcomes.push((status, body["fingerprint"].as_str().map(str::to_owned)));
            }
            outcomes
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, switched) = put_chain(&tenant, id, &chain, None).await;
    assert_eq!(status, StatusCode::OK, "{stack:?}: {switched}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let new_fingerprint = switched["fingerprintSha256"].as_str().unwrap().to_owned();
    assert_ne!(new_fingerprint, old_fingerprint);
    assert_eq!(switched["version"], 2);
    assert_eq!(switched["issuer"], "CN=Renewal Test CA");
    assert_eq!(switched["chainLength"], 2);
    assert!(switched.get("renewal").is_none(), "{switched}");
    let (mut total, mut after) = (0, 0);
    while let Some(outcomes) = workers.join_next().await {
        for (status, fingerprint) in outcomes.unwrap() {
            assert_eq!(
                status,
                StatusCode::OK,
                "{stack:?}: a request failed across the switch"
            );
            let fingerprint = fingerprint.unwrap();
            assert!(fingerprint == old_fingerprint || fingerprint == new_fingerprint);
            total += 1;
            after += usize::from(fingerprint == new_fingerprint);
        }
    }
    assert!(
        total > 20 && after > 0,
        "{total} requests, {after} with the new key"
    );
    assert_eq!(seen(&tenant, &target).await, new_fingerprint);
    // The renewal's slot is gone from the database and from the secret store.
    assert_eq!(renewal_slot(&app, &tenant.account, id).await, None);
    assert!(!secret_exists(&app, &tenant.account, id, slot).await);
    if matches!(stack, Stack::SqliteLocal) {
        assert_eq!(renewals_pending().await, Some(0));
    }
    assert!(secret_exists(&app, &tenant.account, id, 2).await);
    assert!(!secret_exists(&app, &tenant.account, id, 1).await);

    // A second renewal, of the key the gateway made, with another key type; then cancelled.
    let (status, body) = start_renewal(&tenant, id, Some(json!({ "keyType": "P-384" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let slot = renewal_slot(&app, &tenant.account, id).await.unwrap();
    assert!(secret_exists(&app, &tenant.account, id, slot).await);
    // The gauge follows the renewal at once, not at the next expiry round (its own database
    // on SQLite: the count is this test's alone).
    if matches!(stack, Stack::SqliteLocal) {
        assert_eq!(renewals_pending().await, Some(1));
    }
    let (status, cancelled) = send(
        client()
            .delete(certificate_url(&tenant, id, "/renewal"))
            .bearer_auth(&tenant.token),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert!(cancelled.get("renewal").is_none(), "{cancelled}");
    assert_eq!(cancelled["version"], 2);
    assert_eq!(renewal_slot(&app, &tenant.account, id).await, None);
    assert!(!secret_exists(&app, &tenant.account, id, slot).await);
    if matches!(stack, Stack::SqliteLocal) {
        assert_eq!(renewals_pending().await, Some(0));
    }
    let (status, body) = send(
        client()
            .delete(certificate_url(&tenant, id, "/renewal"))
            .bearer_auth(&tenant.token),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "no_renewal")
    );
    assert_eq!(seen(&tenant, &target).await, new_fingerprint);

    // The audit trail names each step.
    let (_, trail) = send(
        client()
            .get(app.url(&format!("/mtls/account/{}/audit?limit=100", tenant.account)))
            .bearer_auth(&tenant.token),
    )
    .await;
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    for action in [
        "certificate.renewal",
        "certificate.renewal.chain",
        "certificate.renewal.cancel",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    app.running.stop().await.unwrap();
}

/// A chain uploaded with `activateAt` two seconds ahead: `Scheduled`, the old key until then,
/// the new one after, switched by the timer (and audited as such); on every stack.
#[tokio::test]
async fn a_scheduled_renewal_switches_at_its_time() {
    let Some(Setup {
        fixtures,
        ca,
        server,
    }) = setup().await
    else {
        return;
    };
    for stack in stacks() {
        let app = spawn_on(&stack, |config| {
            trusting(&server)(config);
            config.runtime.sync_interval_seconds = Duration::from_millis(200);
        })
        .await;
        let tenant = Tenant::new(&app);
        let (id, old_fingerprint) = tenant
            .certificate(&fixtures, "openssl-default-p256.p12")
            .await;
        let target = format!("https://localhost:{}/scheduled", server.port);
        tenant.map(id, "1", &target).await;
        let (status, body) = start_renewal(&tenant, id, Some(json!({}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let chain = sign(&ca, body["csr"].as_str().unwrap());
        let at = mtls_control::clock::rfc3339(
            i64::try_from(mtls_control::clock::unix_now()).unwrap() + 2,
        );
        let (status, scheduled) = put_chain(&tenant, id, &chain, Some(&at)).await;
        assert_eq!(status, StatusCode::OK, "{stack:?}: {scheduled}");
        assert_eq!(
            scheduled["renewal"],
            json!({ "status": "Scheduled", "activateAt": at })
        );
        assert_eq!(scheduled["version"], 1);
        assert_eq!(seen(&tenant, &target).await, old_fingerprint);
        let (status, body) = put_chain(&tenant, id, &chain, None).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "renewal_scheduled")
        );
        let mut switched = Value::Null;
        for _ in 0..100 {
            let now = entity(&tenant, id).await;
            if now["version"] == 2 {
                switched = now;
                break;
            }
            let fingerprint = seen(&tenant, &target).await;
            assert_eq!(
                fingerprint, old_fingerprint,
                "the new key before the switch"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(switched["version"], 2, "{stack:?}: not switched in 10 s");
        assert!(switched.get("renewal").is_none());
        let new_fingerprint = switched["fingerprintSha256"].as_str().unwrap();
        assert_ne!(new_fingerprint, old_fingerprint);
        // The row moves first, the routing table right after it (the timer's switch has no
        // answer to wait for): the new key within moments, never anything else.
        let mut fingerprint = String::new();
        for _ in 0..50 {
            fingerprint = seen(&tenant, &target).await;
            if fingerprint == new_fingerprint {
                break;
            }
            assert_eq!(fingerprint, old_fingerprint);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(fingerprint, new_fingerprint);
        assert_eq!(renewal_slot(&app, &tenant.account, id).await, None);
        let (_, trail) = send(
            client()
                .get(app.url(&format!("/mtls/account/{}/audit", tenant.account)))
                .bearer_auth(&tenant.token),
        )
        .await;
        let activation = trail["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["action"] == "certificate.renewal.activate")
            .unwrap_or_else(|| panic!("no activation in {trail}"))
            .clone();
        assert_eq!(activation["outcome"], "success", "{activation}");
        app.running.stop().await.unwrap();
    }
}

/// 401 and 403 come before the body and before the certificate is looked at.
#[tokio::test]
async fn renewal_routes_authorize_first() {
    let app = spawn(|_| {}).await;
    let account = random_account();
    let reader = app.token(&[&account], &[Privilege::ReadInternal]);
    let base = app.url(&format!(
        "/mtls/account/{account}/certificates/12345/renewal"
    ));
    let (status, _) = send(client().post(&base).json(&json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for request in [
        client().post(&base).json(&json!({})),
        client().delete(&base),
        client().put(format!("{base}/chain")).body("x"),
    ] {
        let (status, body) = send(request.bearer_auth(&reader)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, _) = send(client().get(format!("{base}/csr")).bearer_auth(&reader)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.running.stop().await.unwrap();
}

/// An oversized `POST .../renewal` body is the project's JSON 413, like every other refusal
/// (it was axum's plain-text one).
#[tokio::test]
async fn an_oversized_renewal_body_is_a_json_413() {
    let app = spawn(|_| {}).await;
    let account = random_account();
    let writer = app.token(&[&account], &[Privilege::WriteInternal]);
    let base = app.url(&format!(
        "/mtls/account/{account}/certificates/12345/renewal"
    ));
    let request = client()
        .post(&base)
        .bearer_auth(&writer)
        .header("content-type", "application/json")
        .body(vec![b' '; 70 * 1024]);
    let (status, body) = send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "payload_too_large", "{body}");
    app.running.stop().await.unwrap();
}

/// A webhook receiver: every JSON body POSTed to it.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        let sink = sink.clone();
                        async move {
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            sink.lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap());
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    (url, received)
}

/// The expiry webhook says whether a renewal is under way (`renewalPending`, `renewal`).
#[tokio::test]
async fn expiry_alerts_say_whether_a_renewal_is_pending() {
    let (Some(renewing), Some(plain)) = (short_lived_p12(5 * 86_400), short_lived_p12(5 * 86_400))
    else {
        return;
    };
    let (url, received) = receiver().await;
    // The monitor's first round runs at start (no certificate yet), the next one 2 s later:
    // by then the renewal has started.
    let app = spawn(|config| {
        config.expiry.check_interval_seconds = Duration::from_secs(2);
        config.expiry.webhook_url = Some(Secret::new(url.clone()));
    })
    .await;
    let account = random_account();
    let token = app.token(
        &[&account],
        &[Privilege::ReadInternal, Privilege::WriteInternal],
    );
    let response = client()
        .post(app.url(&format!("/mtls/account/{account}/certificates")))
        .bearer_auth(&token)
        .json(&json!([
            { "name": "renewing", "p12": STANDARD.encode(&renewing), "password": "short" },
            { "name": "plain", "p12": STANDARD.encode(&plain), "password": "short" },
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let saved: Value = response.json().await.unwrap();
    let id = saved["successfulySavedCertificates"][0]["id"]
        .as_i64()
        .unwrap();
    let response = client()
        .post(app.url(&format!(
            "/mtls/account/{account}/certificates/{id}/renewal"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    for _ in 0..100 {
        if received.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let notes = received.lock().unwrap().clone();
    assert_eq!(notes.len(), 2, "{notes:?}");
    for note in &notes {
        let renewing = note["name"] == "renewing";
        assert_eq!(note["renewalPending"], renewing, "{note}");
        if renewing {
            assert_eq!(
                note["renewal"],
                json!({ "status": "Pending", "activateAt": null })
            );
        } else {
            assert_eq!(note["renewal"], Value::Null);
        }
    }
    app.running.stop().await.unwrap();
}

/// The CSR signed by the CA with pyca/cryptography, valid for `seconds` from now (OpenSSL 3.0's
/// `x509 -req` counts in days): the leaf and the CA, PEM; `None` without the package.
fn sign_short_lived(ca: &Ca, csr: &str, seconds: u64) -> Option<String> {
    let script = format!(
        r#"
import datetime, sys
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
ca_dir = sys.argv[1]
ca = x509.load_pem_x509_certificate(open(ca_dir + "/ca.pem", "rb").read())
key = serialization.load_pem_private_key(open(ca_dir + "/ca.key", "rb").read(), None)
csr = x509.load_pem_x509_csr(sys.stdin.buffer.read())
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.subject)
        .public_key(csr.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(seconds={seconds}))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256()))
sys.stdout.buffer.write(cert.public_bytes(serialization.Encoding.PEM))
sys.stdout.buffer.write(ca.public_bytes(serialization.Encoding.PEM))
"#
    );
    use std::io::Write;
    let mut child = std::process::Command::new(mtls_test_support::python())
        .args(["-c", &script, ca.dir.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(csr.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8(output.stdout).unwrap())
}

/// A scheduled renewal whose leaf expired before its time is not switched to: it is dropped
/// (its key removed) and the timer audits why, once; the old key stays.
#[tokio::test]
async fn a_scheduled_renewal_whose_leaf_expired_meanwhile_is_dropped() {
    let Some(Setup {
        fixtures,
        ca,
        server,
    }) = setup().await
    else {
        return;
    };
    let app = spawn(|config| {
        trusting(&server)(config);
        config.runtime.sync_interval_seconds = Duration::from_millis(200);
    })
    .await;
    let tenant = Tenant::new(&app);
    let (id, old_fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let target = format!("https://localhost:{}/expired-renewal", server.port);
    tenant.map(id, "1", &target).await;
    let (status, body) = start_renewal(&tenant, id, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let Some(chain) = sign_short_lived(&ca, body["csr"].as_str().unwrap(), 2) else {
        mtls_test_support::skip("the expired-renewal test", "pyca/cryptography is missing");
        return;
    };
    let slot = renewal_slot(&app, &tenant.account, id).await.unwrap();
    let at =
        mtls_control::clock::rfc3339(i64::try_from(mtls_control::clock::unix_now()).unwrap() + 4);
    let (status, body) = put_chain(&tenant, id, &chain, Some(&at)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["renewal"]["status"], "Scheduled");
    let mut dropped = false;
    for _ in 0..100 {
        if entity(&tenant, id).await.get("renewal").is_none() {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dropped, "the renewal is still there after 10 s");
    let now = entity(&tenant, id).await;
    assert_eq!(now["version"], 1);
    assert_eq!(seen(&tenant, &target).await, old_fingerprint);
    assert!(!secret_exists(&app, &tenant.account, id, slot).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, trail) = send(
        client()
            .get(app.url(&format!("/mtls/account/{}/audit", tenant.account)))
            .bearer_auth(&tenant.token),
    )
    .await;
    let activations: Vec<&Value> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "certificate.renewal.activate")
        .collect();
    assert_eq!(activations.len(), 1, "audited once: {trail}");
    assert_eq!(activations[0]["outcome"], "certificate_expired");
    app.running.stop().await.unwrap();
}
