//! The gateway's own listeners: HTTPS with real clients that verify it (curl and Node's
//! `fetch`), callers authenticated by client certificate, the certificate swapped under load,
//! and the split between the runtime and the configuration listeners.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mtls_auth::Privilege;
use mtls_gateway::config::{ClientAuth, ClientCertificateRule, Config, ListenerTlsConfig};
use mtls_test_support::{P12Fixtures, openssl, p12_fixtures, random_account, skip, temp_dir};
use serde_json::{Value, json};

use crate::support::{TestApp, spawn};
use crate::upstream::{self, Upstream};

fn tls(pki: &Path) -> ListenerTlsConfig {
    ListenerTlsConfig {
        cert_file: pki.join("server.pem"),
        key_file: pki.join("server.key"),
        client_ca_file: None,
        client_auth: ClientAuth::Optional,
    }
}

/// `https://localhost:PORT` of a gateway whose listener is HTTPS.
fn https_base(app: &TestApp) -> String {
    format!("https://localhost:{}", app.running.address.port())
}

/// Runs curl on a blocking thread (the test's runtime keeps driving the gateway's database
/// and secret-store connections, which live on it); returns its exit code and what it printed.
async fn curl(args: &[&str]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(&args)
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// curl's body and, on the last line, `HTTP-VERSION STATUS`.
async fn curl_status(args: &[&str]) -> (String, String, u16) {
    let mut all = vec!["-w", "\n%{http_version} %{http_code}"];
    all.extend_from_slice(args);
    let (code, out) = curl(&all).await;
    assert_eq!(code, 0, "curl {args:?} failed: {out}");
    let (body, last) = out.rsplit_once('\n').unwrap();
    let (version, status) = last.split_once(' ').unwrap();
    (body.to_owned(), version.to_owned(), status.parse().unwrap())
}

/// Runs `node -e script` on a blocking thread, with `env`.
async fn node(script: String, env: Vec<(&'static str, String)>) -> Option<std::process::Output> {
    tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("-e")
            .arg(script)
            .envs(env)
            .output()
            .ok()
    })
    .await
    .unwrap()
}

fn subject(certificate: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
        .arg(certificate)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .trim_start_matches("subject=")
        .to_owned()
}

async fn setup() -> Option<(P12Fixtures, PathBuf, Upstream)> {
    if Command::new("curl").arg("--version").output().is_err() {
        skip("listener tests", "curl is not installed");
        return None;
    }
    let fixtures = p12_fixtures()?;
    let pki = upstream::server_pki()?;
    let server = upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    Some((fixtures, pki, server))
}

#[tokio::test]
async fn https_serves_curl_and_node_over_http1_and_http2() {
    let Some((fixtures, pki, server)) = setup().await else {
        return;
    };
    let app = spawn(|config| {
        config.egress.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
        config.tls.trust_roots = vec![server.ca_pem.clone()];
        config.server.tls = Some(tls(&pki));
    })
    .await;
    let base = https_base(&app);
    let ca = pki.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let account = random_account();
    let token = app.token(
        &[&account],
        &[
            Privilege::ReadInternal,
            Privilege::WriteInternal,
            Privilege::Forward,
        ],
    );
    let bearer = format!("Authorization: Bearer {token}");

    // A client that does not trust the gateway's CA refuses it: this is real TLS.
    let (code, _) = curl(&[&format!("{base}/healthz")]).await;
    assert_eq!(
        code, 60,
        "curl must refuse an unverified server certificate"
    );

    // Configuration API over HTTP/2 (ALPN h2) and HTTP/1.1.
    let case = fixtures.case("openssl-default-rsa2048.p12");
    let upload = temp_dir("listener-upload").join("upload.json");
    std::fs::write(
        &upload,
        json!([{ "name": "over-https", "p12": STANDARD.encode(fixtures.bytes("openssl-default-rsa2048.p12")), "password": case.password }]).to_string(),
    )
    .unwrap();
    let (body, version, status) = curl_status(&[
        "--http2",
        "--cacert",
        ca,
        "-H",
        &bearer,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", upload.display()),
        &format!("{base}/mtls/account/{account}/certificates"),
    ])
    .await;
    assert_eq!((version.as_str(), status), ("2", 201), "{body}");
    let saved: Value = serde_json::from_str(&body).unwrap();
    let id = saved["successfulySavedCertificates"][0]["id"]
        .as_i64()
        .unwrap();
    let fingerprint = saved["successfulySavedCertificates"][0]["fingerprintSha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = format!("https://localhost:{}/over-https", server.port);
    let mapping = json!([{ "name": "https", "certificationId": id, "serviceId": "1", "url": target, "siteId": account }]).to_string();
    let (body, version, status) = curl_status(&[
        "--http1.1",
        "--cacert",
        ca,
        "-H",
        &bearer,
        "-H",
        "Content-Type: application/json",
        "-d",
        &mapping,
        &format!("{base}/api/account/{account}/configuration/ac-common/mtls?v=3.0"),
    ])
    .await;
    assert_eq!((version.as_str(), status), ("1.1", 201), "{body}");

    // Forward over both protocol versions: the upstream saw the mapped certificate.
    for protocol in ["--http1.1", "--http2"] {
        let (body, version, status) = curl_status(&[
            protocol,
            "--cacert",
            ca,
            "-H",
            &bearer,
            "-H",
            &format!("LP-forward-url: {target}"),
            &format!("{base}/mtls/account/{account}"),
        ])
        .await;
        assert_eq!(status, 200, "{protocol}: {body}");
        assert_eq!(version, if protocol == "--http2" { "2" } else { "1.1" });
        let seen: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(seen["fingerprint"].as_str(), Some(fingerprint.as_str()));
    }

    // Node's fetch, trusting the gateway's CA through NODE_EXTRA_CA_CERTS.
    let script = format!(
        "fetch({url:?}, {{ headers: {{ authorization: {auth:?}, 'lp-forward-url': {target:?} }} }})\
         .then(async r => console.log(r.status + ' ' + await r.text()))\
         .catch(e => {{ console.log('error ' + e.cause); process.exit(3); }})",
        url = format!("{base}/mtls/account/{account}"),
        auth = format!("Bearer {token}"),
    );
    let Some(output) = node(script.clone(), vec![("NODE_EXTRA_CA_CERTS", ca.to_owned())]).await
    else {
        skip("Node's fetch over HTTPS", "node is not installed");
        return;
    };
    let printed = String::from_utf8_lossy(&output.stdout);
    let (status, body) = printed.trim().split_once(' ').unwrap();
    assert_eq!(status, "200", "{printed}");
    let seen: Value = serde_json::from_str(body).unwrap();
    assert_eq!(seen["fingerprint"].as_str(), Some(fingerprint.as_str()));
    // And without the CA, Node refuses the gateway.
    let refused = node(script, Vec::new()).await.unwrap();
    assert_eq!(refused.status.code(), Some(3));
}

/// A client key and a chain file (leaf + intermediate) for curl, from the fixtures.
fn client_identity(fixtures: &P12Fixtures, leaf: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir("listener-client");
    let chain = dir.join(format!("{leaf}-chain.pem"));
    let mut pem = std::fs::read(fixtures.path(&format!("{leaf}.pem"))).unwrap();
    pem.extend(std::fs::read(fixtures.path("int.pem")).unwrap());
    std::fs::write(&chain, pem).unwrap();
    (chain, fixtures.path(&format!("{leaf}.key")))
}

#[tokio::test]
async fn client_certificates_authenticate_callers() {
    let Some((fixtures, pki, _server)) = setup().await else {
        return;
    };
    let account = random_account();
    let (mapped_chain, mapped_key) = client_identity(&fixtures, "rsa2048");
    let (unmapped_chain, unmapped_key) = client_identity(&fixtures, "p256");
    let mapped_subject = subject(&fixtures.path("rsa2048.pem"));
    let rule = ClientCertificateRule {
        subject: Some(mapped_subject.clone()),
        san: None,
        accounts: vec![account.clone()],
        privileges: vec![
            "MTLS_READ_INTERNAL".to_owned(),
            "MTLS_WRITE_INTERNAL".to_owned(),
        ],
    };
    let with_client_ca = |required: bool| {
        let rule = rule.clone();
        let pki = pki.clone();
        let root = fixtures.path("root.pem");
        move |config: &mut Config| {
            let mut settings = tls(&pki);
            settings.client_ca_file = Some(root);
            settings.client_auth = if required {
                ClientAuth::Required
            } else {
                ClientAuth::Optional
            };
            config.server.tls = Some(settings);
            config.auth.client_certificates = vec![rule];
        }
    };
    let app = spawn(with_client_ca(false)).await;
    let base = https_base(&app);
    let ca = pki.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let list = format!("{base}/mtls/account/{account}/certificates");
    let as_client = |chain: &Path, key: &Path| {
        vec![
            "--cacert".to_owned(),
            ca.to_owned(),
            "--cert".to_owned(),
            chain.to_str().unwrap().to_owned(),
            "--key".to_owned(),
            key.to_str().unwrap().to_owned(),
        ]
    };
    let mapped = as_client(&mapped_chain, &mapped_key);
    let mapped: Vec<&str> = mapped.iter().map(String::as_str).collect();

    // The mapped certificate is a caller, with no Authorization header at all.
    let (body, _, status) = curl_status(&[&mapped[..], &[list.as_str()]].concat()).await;
    assert_eq!(status, 200, "{body}");
    // A change made by it is audited under the certificate's subject.
    let case = fixtures.case("openssl-default-p256.p12");
    let upload = json!([{ "name": "by-certificate", "p12": STANDARD.encode(fixtures.bytes("openssl-default-p256.p12")), "password": case.password }]).to_string();
    let (body, _, status) = curl_status(
        &[
            &mapped[..],
            &["-H", "Content-Type: application/json", "-d", &upload, &list],
        ]
        .concat(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let audit = app
        .token(&[&account], &[Privilege::ReadInternal])
        .to_string();
    let (body, _, status) = curl_status(&[
        "--cacert",
        ca,
        "-H",
        &format!("Authorization: Bearer {audit}"),
        &format!("{base}/mtls/account/{account}/audit"),
    ])
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("certificate:{mapped_subject}")),
        "the audit trail names the certificate's subject: {body}"
    );
    // Outside its accounts: 403, like a token.
    let (_, _, status) = curl_status(
        &[
            &mapped[..],
            &[format!("{base}/mtls/account/{}/certificates", random_account()).as_str()],
        ]
        .concat(),
    )
    .await;
    assert_eq!(status, 403);

    // A certificate of the trusted CA that no rule names: 403, not anonymous.
    let unmapped = as_client(&unmapped_chain, &unmapped_key);
    let unmapped: Vec<&str> = unmapped.iter().map(String::as_str).collect();
    let (body, _, status) = curl_status(&[&unmapped[..], &[list.as_str()]].concat()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("certificate_not_mapped"), "{body}");
    // No certificate and no token on an `optional` listener: 401 as ever.
    let (_, _, status) = curl_status(&["--cacert", ca, &list]).await;
    assert_eq!(status, 401);

    // `required`: a certificate from an unknown CA, or none, is refused in the handshake.
    let strict = spawn(with_client_ca(true)).await;
    let strict_list = format!(
        "{}/mtls/account/{account}/certificates",
        https_base(&strict)
    );
    let stranger = temp_dir("listener-stranger");
    openssl(
        &stranger,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-subj",
            &mapped_subject.replace(',', "/").replace("CN=", "/CN="),
        ],
    )
    .unwrap();
    let foreign = as_client(&stranger.join("client.pem"), &stranger.join("client.key"));
    let foreign: Vec<&str> = foreign.iter().map(String::as_str).collect();
    let (code, out) = curl(&[&foreign[..], &[strict_list.as_str()]].concat()).await;
    assert_ne!(
        code, 0,
        "a certificate from an unknown CA must not get through: {out}"
    );
    assert!(!out.contains("200"), "{out}");
    let (code, _) = curl(&["--cacert", ca, &strict_list]).await;
    assert_ne!(code, 0, "no certificate on a `required` listener");
    let (body, _, status) = curl_status(&[&mapped[..], &[strict_list.as_str()]].concat()).await;
    assert_eq!(status, 200, "{body}");
}

/// A second server certificate from the same CA, with another subject.
fn second_server_certificate(pki: &Path) -> PathBuf {
    let dir = temp_dir("listener-rotated");
    crate::upstream::server_certificate(pki, &dir, "/CN=localhost/O=Rotated").unwrap();
    dir
}

/// The subject of the certificate the listener serves to a new connection.
fn served_subject(port: u16) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null \
         | openssl x509 -noout -subject -nameopt RFC2253"
    );
    let output = Command::new("sh").arg("-c").arg(script).output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Replaces `to` by `from` in one step (as deployment tools do).
fn replace(from: &Path, to: &Path) {
    let staging = to.with_extension("staging");
    std::fs::copy(from, &staging).unwrap();
    std::fs::rename(&staging, to).unwrap();
}

#[tokio::test]
async fn the_listener_certificate_is_replaced_under_load() {
    let Some(pki) = upstream::server_pki() else {
        return;
    };
    let live = temp_dir("listener-live");
    std::fs::copy(pki.join("server.pem"), live.join("server.pem")).unwrap();
    std::fs::copy(pki.join("server.key"), live.join("server.key")).unwrap();
    let rotated = second_server_certificate(&pki);
    let app = spawn(|config| config.server.tls = Some(tls(&live))).await;
    let port = app.running.address.port();
    assert!(served_subject(port).contains("CN=localhost"));
    assert!(!served_subject(port).contains("O=Rotated"));

    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.pem")).unwrap()).unwrap();
    let url = format!("{}/healthz", https_base(&app));
    let running = Arc::new(AtomicBool::new(true));
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..6 {
        let (ca, url) = (ca.clone(), url.clone());
        let (running, done, failed) = (running.clone(), done.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                // A fresh client every few requests: new connections and handshakes throughout.
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .add_root_certificate(ca.clone())
                    .build()
                    .unwrap();
                for _ in 0..5 {
                    match client.get(&url).send().await {
                        Ok(response) if response.status() == 200 => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            eprintln!("failed: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    replace(&rotated.join("server.key"), &live.join("server.key"));
    replace(&rotated.join("server.pem"), &live.join("server.pem"));
    let mut swapped = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if served_subject(port).contains("O=Rotated") {
            swapped = true;
            break;
        }
    }
    assert!(
        swapped,
        "the new certificate is served within the poll interval"
    );
    // A broken replacement is refused and the last good certificate stays.
    std::fs::write(
        live.join("server.pem"),
        b"-----BEGIN CERTIFICATE-----\nbroken\n",
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(served_subject(port).contains("O=Rotated"));
    running.store(false, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed, 0,
        "no request fails while the certificate is replaced"
    );
    assert!(done > 100, "the load ran ({done} requests)");
}

#[tokio::test]
async fn split_listeners_serve_their_own_routes() {
    let app = spawn(|config| {
        config.server.admin_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let admin = app.running.admin_address.unwrap();
    let account = random_account();
    let token = app.token(&[&account], &[Privilege::ReadInternal, Privilege::Forward]);
    let client = crate::support::client();
    let get = |base: String, path: String| {
        let client = client.clone();
        let token = token.clone();
        async move {
            client
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let runtime = app.base.clone();
    let admin = format!("http://{admin}");
    let certificates = format!("/mtls/account/{account}/certificates");
    assert_eq!(get(admin.clone(), certificates.clone()).await, 200);
    assert_eq!(get(runtime.clone(), certificates).await, 404);
    let checks = "/mtls/mapping?v=2".to_owned();
    let check = |base: String| {
        let client = client.clone();
        let token = app.token(&["*"], &[Privilege::ReadInternal]);
        let url = format!("{base}{checks}");
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!([{ "accountId": "1", "serviceName": "IDP", "url": "https://a.example/" }]))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(check(runtime.clone()).await, 200);
    assert_eq!(check(admin.clone()).await, 404);
    for base in [runtime, admin] {
        assert_eq!(get(base.clone(), "/healthz".to_owned()).await, 200);
        assert_eq!(get(base, "/readyz".to_owned()).await, 200);
    }
}

// ---- Hostile peers: silent connections, idle connections, connection caps ----

/// Far more than any timeout these tests configure: only "closed within a generous bound".
const BOUND: std::time::Duration = std::time::Duration::from_secs(15);

/// Reads until the peer closes (end of stream or reset); `false` when it is still open after
/// `BOUND`. What the peer sent before closing is returned too.
async fn closed_by_peer<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> (bool, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    (read.is_ok(), received)
}

/// A raw HTTP/1.1 answer: status, head (lower-case names), body (by `Content-Length`).
pub(crate) struct RawAnswer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Reads one HTTP/1.1 answer framed by `Content-Length`, and not a byte more (the next
/// answer on the connection stays to be read); `None` when the connection closes first.
pub(crate) async fn read_answer<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Option<RawAnswer> {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::new();
    while !buffer.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(BOUND, stream.read_u8())
            .await
            .ok()?
            .ok()?;
        buffer.push(byte);
    }
    let head = String::from_utf8_lossy(&buffer).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    tokio::time::timeout(BOUND, stream.read_exact(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(RawAnswer {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A TCP connection to the gateway from `source` (another loopback address keeps a test's
/// own connections apart from the per-address cap it exercises).
async fn connect_from(source: [u8; 4], to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// The value of one `/metrics` line (`name{labels}`), read over plain HTTP from 127.0.0.1.
async fn metric(app: &TestApp, line: &str) -> f64 {
    let value = crate::support::metric_value(app, line).await;
    value.unwrap_or_else(|| panic!("no {line} in /metrics"))
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what a client sends right after the preface.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

#[tokio::test]
async fn silent_connections_are_closed_from_accept() {
    use tokio::io::AsyncWriteExt;
    let app = spawn(|config| {
        config.server.request_head_timeout_seconds = std::time::Duration::from_secs_f64(0.3);
        config.server.idle_timeout_seconds = std::time::Duration::from_secs_f64(600.0);
    })
    .await;
    let address = app.running.address;
    // A TCP connection that never sends a byte.
    let mut silent = tokio::net::TcpStream::connect(address).await.unwrap();
    // An HTTP/2 (h2c) connection that sends its preface and settings, then nothing.
    let mut preface = tokio::net::TcpStream::connect(address).await.unwrap();
    preface.write_all(H2_PREFACE).await.unwrap();
    preface.write_all(H2_SETTINGS).await.unwrap();
    // Half a request head, then nothing.
    let mut half = tokio::net::TcpStream::connect(address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    for (what, stream) in [
        ("silent TCP", &mut silent),
        ("h2c preface", &mut preface),
        ("half a head", &mut half),
    ] {
        let (closed, _) = closed_by_peer(stream).await;
        assert!(closed, "{what}: still open after {BOUND:?}");
    }
    assert!(
        metric(
            &app,
            "mtls_connections_timed_out_total{reason=\"request_head\"}"
        )
        .await
            >= 3.0
    );
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn a_tls_handshake_then_silence_is_closed() {
    let Some(pki) = upstream::server_pki() else {
        return;
    };
    let app = spawn(|config| {
        config.server.tls = Some(tls(&pki));
        config.server.request_head_timeout_seconds = std::time::Duration::from_secs_f64(0.5);
    })
    .await;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pki_types::CertificateDer::pem_file_iter(pki.join("ca.pem")).unwrap()
    {
        roots.add(certificate.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(app.running.address)
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    // The handshake completes (the server is real and verified), then the client says nothing.
    let mut stream = connector.connect(name, tcp).await.unwrap();
    let (closed, _) = closed_by_peer(&mut stream).await;
    assert!(closed, "a TLS connection with no request is closed");
}

#[tokio::test]
async fn idle_connections_are_closed_over_http1_and_http2() {
    use tokio::io::AsyncWriteExt;
    let app = spawn(|config| {
        // Longer than the bound: what closes these connections is the idle timeout.
        config.server.request_head_timeout_seconds = std::time::Duration::from_secs_f64(60.0);
        config.server.idle_timeout_seconds = std::time::Duration::from_secs_f64(0.5);
    })
    .await;
    let address = app.running.address;
    // HTTP/1.1 keep-alive: one request answered, then nothing.
    let mut keep_alive = tokio::net::TcpStream::connect(address).await.unwrap();
    keep_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut keep_alive).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!answer.head.contains("connection: close"), "kept alive");
    let (closed, _) = closed_by_peer(&mut keep_alive).await;
    assert!(closed, "an idle HTTP/1.1 connection is closed");

    // HTTP/2 (prior knowledge): one stream answered, then the connection ends (GOAWAY).
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{address}/healthz"))
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let ended = tokio::time::timeout(BOUND, connection).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection is closed");
    assert!(metric(&app, "mtls_connections_timed_out_total{reason=\"idle\"}").await >= 2.0);
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_refused_at_once() {
    use tokio::io::AsyncWriteExt;
    let app = spawn(|config| {
        config.server.max_connections_per_ip = 2;
        config.server.request_head_timeout_seconds = std::time::Duration::from_secs_f64(60.0);
        config.server.idle_timeout_seconds = std::time::Duration::from_secs_f64(600.0);
    })
    .await;
    let address = app.running.address;
    let source = [127, 0, 0, 2];
    let get = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut first = connect_from(source, address).await;
    let mut second = connect_from(source, address).await;
    for stream in [&mut first, &mut second] {
        stream.write_all(get).await.unwrap();
        assert_eq!(read_answer(stream).await.unwrap().status, 200);
    }
    // The third from the same address is closed at once (long before any timeout here),
    // without an answer.
    let mut third = connect_from(source, address).await;
    let _ = third.write_all(get).await;
    let (closed, received) = closed_by_peer(&mut third).await;
    assert!(closed && received.is_empty(), "refused at once");
    // The established connections still work, and other addresses are not affected.
    first.write_all(get).await.unwrap();
    assert_eq!(read_answer(&mut first).await.unwrap().status, 200);
    assert!(
        metric(&app, "mtls_connections_refused_total{cap=\"per_ip\"}").await >= 1.0,
        "counted"
    );
    assert!(metric(&app, "mtls_connections_open").await >= 2.0);
    // A closed connection gives its place back.
    drop(second);
    let mut again = None;
    for _ in 0..50 {
        let mut fourth = connect_from(source, address).await;
        let _ = fourth.write_all(get).await;
        if let Some(answer) = read_answer(&mut fourth).await {
            assert_eq!(answer.status, 200);
            again = Some(fourth);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        again.is_some(),
        "a place freed by a closed connection is reused"
    );
    app.running.stop().await.unwrap();
}

// ---- Request heads hyper would accept: refused with a JSON error ----

/// Sends `bytes` on a fresh connection and reads one answer.
pub(crate) async fn raw_exchange(address: std::net::SocketAddr, bytes: &[u8]) -> RawAnswer {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_answer(&mut stream).await.expect("an answer")
}

/// A JSON error body's code; the answer also carries a request id like every other.
pub(crate) fn error_code(answer: &RawAnswer) -> String {
    assert!(answer.head.contains("x-request-id:"), "{}", answer.head);
    assert!(
        answer.head.contains("content-type: application/json"),
        "{}",
        answer.head
    );
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_bare_lf_in_a_request_head_is_a_400_with_a_json_body() {
    use tokio::io::AsyncWriteExt;
    let app = spawn(|_| {}).await;
    let address = app.running.address;
    for head in [
        &b"GET /healthz HTTP/1.1\nHost: a\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nHost: a\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: b\n\n",
    ] {
        let answer = raw_exchange(address, head).await;
        assert_eq!(answer.status, 400, "{:?}", String::from_utf8_lossy(head));
        assert_eq!(error_code(&answer), "invalid_request_head");
        assert!(answer.head.contains("connection: close"), "{}", answer.head);
    }
    // The second request of a keep-alive connection, after a body with bare LFs in it (a
    // body is not a head): the first is served, the second refused, and the connection ends.
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n\n\n\n\n\
              GET /healthz HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
        )
        .await
        .unwrap();
    let first = read_answer(&mut stream).await.unwrap();
    assert_eq!(first.status, 405, "POST /healthz is served: {}", first.body);
    let second = read_answer(&mut stream).await.unwrap();
    assert_eq!(second.status, 400);
    assert_eq!(error_code(&second), "invalid_request_head");
    let (closed, _) = closed_by_peer(&mut stream).await;
    assert!(closed);
    // The same request with CRLF everywhere is served.
    let answer = raw_exchange(address, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(answer.status, 200);
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn two_host_fields_are_a_400_with_a_json_body() {
    let app = spawn(|_| {}).await;
    let address = app.running.address;
    let account = random_account();
    for path in ["/healthz".to_owned(), format!("/mtls/account/{account}")] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n");
        let answer = raw_exchange(address, request.as_bytes()).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        assert_eq!(error_code(&answer), "duplicate_host");
    }
    // One Host is fine.
    let answer = raw_exchange(address, b"GET /healthz HTTP/1.1\r\nHost: a.example\r\n\r\n").await;
    assert_eq!(answer.status, 200);
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn connections_past_the_total_cap_are_refused_at_once() {
    use tokio::io::AsyncWriteExt;
    let app = spawn(|config| {
        config.server.max_connections = 2;
        config.server.request_head_timeout_seconds = std::time::Duration::from_secs_f64(60.0);
        config.server.idle_timeout_seconds = std::time::Duration::from_secs_f64(600.0);
    })
    .await;
    let address = app.running.address;
    let get = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut first = connect_from([127, 0, 0, 3], address).await;
    let mut second = connect_from([127, 0, 0, 4], address).await;
    for stream in [&mut first, &mut second] {
        stream.write_all(get).await.unwrap();
        assert_eq!(read_answer(stream).await.unwrap().status, 200);
    }
    // A third client, from yet another address: the total is reached.
    let mut third = connect_from([127, 0, 0, 5], address).await;
    let _ = third.write_all(get).await;
    let (closed, received) = closed_by_peer(&mut third).await;
    assert!(closed && received.is_empty(), "refused at once");
    // Read through an established connection (a new one would be refused too).
    first
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let metrics = read_answer(&mut first).await.unwrap();
    assert!(
        metrics
            .body
            .contains("mtls_connections_refused_total{cap=\"total\"} 1"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("mtls_connections_open 2"),
        "{}",
        metrics.body
    );
    app.running.stop().await.unwrap();
}
