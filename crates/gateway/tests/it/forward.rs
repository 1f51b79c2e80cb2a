//! Forward (SPEC 6.2, 6.3, 7.4) through the real gateway to a real TLS server that requires
//! client certificates, asserting on the certificate the server saw.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mtls_auth::Privilege;
use mtls_test_support::{P12Fixtures, p12_fixtures, random_account};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, client, spawn};
use crate::upstream::{self, Upstream};

pub(crate) struct Tenant<'a> {
    pub app: &'a TestApp,
    pub account: String,
    pub token: String,
}

impl<'a> Tenant<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
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

    /// Uploads a fixture; returns its id and the fingerprint the server must see.
    pub(crate) async fn certificate(&self, fixtures: &P12Fixtures, file: &str) -> (i64, String) {
        let case = fixtures.case(file);
        let item = json!([{ "name": file, "p12": STANDARD.encode(fixtures.bytes(file)), "password": case.password }]);
        let response = client()
            .post(
                self.app
                    .url(&format!("/mtls/account/{}/certificates", self.account)),
            )
            .bearer_auth(&self.token)
            .json(&item)
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        let saved = &body["successfulySavedCertificates"][0];
        (
            saved["id"].as_i64().unwrap(),
            saved["fingerprintSha256"].as_str().unwrap().to_owned(),
        )
    }

    pub(crate) async fn map(&self, certificate: i64, service: &str, url: &str) {
        let mapping = json!([{ "name": format!("{service}-{url}"), "certificationId": certificate, "serviceId": service, "url": url, "siteId": self.account }]);
        let response = client()
            .post(self.app.url(&format!(
                "/api/account/{}/configuration/ac-common/mtls?v=3.0",
                self.account
            )))
            .bearer_auth(&self.token)
            .json(&mapping)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
    }

    pub(crate) fn forward(&self, method: reqwest::Method, target: &str) -> reqwest::RequestBuilder {
        client()
            .request(
                method,
                self.app.url(&format!("/mtls/account/{}", self.account)),
            )
            .bearer_auth(&self.token)
            .header("LP-forward-url", target)
    }
}

pub(crate) async fn answer(
    request: reqwest::RequestBuilder,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// The PKCS#12 fixtures and a server PKI, or `None` when the tools that make them are missing
/// (the test skips, and says so; with `CI=true` it fails).
fn fixtures_and_pki() -> Option<(P12Fixtures, std::path::PathBuf)> {
    Some((p12_fixtures()?, upstream::server_pki()?))
}

async fn setup() -> Option<(P12Fixtures, std::path::PathBuf, Upstream)> {
    let (fixtures, pki) = fixtures_and_pki()?;
    let server = upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    Some((fixtures, pki, server))
}

/// A gateway with one worker (pools are per worker thread, so every request sees the same
/// pool) trusting `server`.
async fn one_worker(
    server: &Upstream,
    configure: impl FnOnce(&mut mtls_gateway::config::Config),
) -> TestApp {
    spawn(|config| {
        trusting(server)(config);
        config.server.workers = 1;
        configure(config);
    })
    .await
}

/// A tenant whose P-256 certificate is mapped to each of `urls` for service 1.
async fn mapped_tenant<'a>(
    app: &'a TestApp,
    fixtures: &P12Fixtures,
    urls: &[String],
) -> Tenant<'a> {
    let tenant = Tenant::new(app);
    let (id, _) = tenant
        .certificate(fixtures, "openssl-default-p256.p12")
        .await;
    for url in urls {
        tenant.map(id, "1", url).await;
    }
    tenant
}

pub(crate) fn trusting(server: &Upstream) -> impl FnOnce(&mut mtls_gateway::config::Config) + '_ {
    move |config| {
        config.egress.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
        config.tls.trust_roots = vec![server.ca_pem.clone()];
    }
}

#[tokio::test]
async fn the_mapped_certificate_is_presented_for_every_key_type() {
    let Some((fixtures, _pki, server)) = setup().await else {
        return;
    };
    let app = spawn(trusting(&server)).await;
    let tenant = Tenant::new(&app);
    for (index, file) in [
        "openssl-default-p256.p12",
        "openssl-default-rsa2048.p12",
        "openssl-default-p384.p12",
        "openssl-default-ed25519.p12",
        "openssl-legacy-rsa4096.p12",
    ]
    .iter()
    .enumerate()
    {
        let (id, fingerprint) = tenant.certificate(&fixtures, file).await;
        let target = format!("https://localhost:{}/echo/{index}?q=1", server.port);
        tenant.map(id, "1", &target).await;
        let (status, _, body) = answer(
            tenant
                .forward(reqwest::Method::GET, &target)
                .header("LP-service-name", "IDP"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{file}: {body}");
        assert_eq!(
            body["fingerprint"],
            fingerprint.as_str(),
            "{file}: the server saw the mapped certificate"
        );
        assert_eq!(body["path"], format!("/echo/{index}?q=1"));
        assert_eq!(body["version"], "HTTP/2.0", "h2 by ALPN");
    }
    app.running.stop().await.unwrap();
}

/// `forward.upstream_http2 = "never"`: a target that offers HTTP/2 is spoken to over HTTP/1.1
/// (ALPN offers `http/1.1` only), with the mapped certificate; by default the same target is
/// spoken to over HTTP/2.
#[tokio::test]
async fn upstream_http2_never_speaks_http1_to_a_target_that_offers_h2() {
    use mtls_gateway::config::UpstreamHttp2;
    let Some((fixtures, _pki, server)) = setup().await else {
        return;
    };
    for (setting, version, alpn) in [
        (UpstreamHttp2::WhenOffered, "HTTP/2.0", "h2"),
        (UpstreamHttp2::Never, "HTTP/1.1", "http/1.1"),
    ] {
        let app = spawn(|config| {
            trusting(&server)(config);
            config.forward.upstream_http2 = setting;
        })
        .await;
        let tenant = Tenant::new(&app);
        let (id, fingerprint) = tenant
            .certificate(&fixtures, "openssl-default-p256.p12")
            .await;
        let target = format!("https://localhost:{}/echo/alpn", server.port);
        tenant.map(id, "1", &target).await;
        for _ in 0..2 {
            let (status, _, body) = answer(
                tenant
                    .forward(reqwest::Method::GET, &target)
                    .header("LP-service-name", "IDP"),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{setting:?}: {body}");
            assert_eq!(body["fingerprint"], fingerprint.as_str(), "{setting:?}");
            assert_eq!(body["version"], version, "{setting:?}");
            assert_eq!(body["alpn"], alpn, "{setting:?}");
        }
        app.running.stop().await.unwrap();
    }
}

/// The upstream pool (`runtime/src/pool.rs`): an HTTP/1.1 connection is reused request after
/// request; one the server closed is never handed out again (the next request gets a new
/// connection and succeeds); one idle past `forward.idle_timeout_seconds` is not reused;
/// HTTP/2 requests share one connection.
#[tokio::test]
async fn upstream_connections_are_reused_and_closed_ones_replaced() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let roots = fixtures.path("root.pem");
    let h1 = upstream::start_with(&pki, Some(&roots), true, false).await;
    let h2 = upstream::start(&pki, Some(&roots)).await;
    let app = spawn(|config| {
        trusting(&h1)(config);
        config.forward.idle_timeout_seconds = std::time::Duration::from_secs_f64(1.0);
        // Pools are per worker thread: one worker, so every request sees the same pool.
        config.server.workers = 1;
    })
    .await;
    let tenant = Tenant::new(&app);
    let (id, fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let h1_base = format!("https://localhost:{}", h1.port);
    let h2_base = format!("https://localhost:{}", h2.port);
    for base in [&h1_base, &h2_base] {
        for path in ["/a", "/close", "/b", "/c"] {
            tenant.map(id, "1", &format!("{base}{path}")).await;
        }
    }
    let fingerprint = fingerprint.as_str();
    let call = |target: String| {
        let request = tenant
            .forward(reqwest::Method::GET, &target)
            .header("LP-service-name", "IDP");
        async move {
            let (status, _, body) = answer(request).await;
            assert_eq!(status, StatusCode::OK, "{target}: {body}");
            assert_eq!(body["fingerprint"], fingerprint);
            body
        }
    };
    let first = call(format!("{h1_base}/a")).await;
    assert_eq!(first["version"], "HTTP/1.1");
    let again = call(format!("{h1_base}/a")).await;
    assert_eq!(
        again["peerPort"], first["peerPort"],
        "kept alive and reused"
    );
    let closing = call(format!("{h1_base}/close")).await;
    assert_eq!(closing["peerPort"], first["peerPort"]);
    // The server has closed that connection: the next request must not be sent on it.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let fresh = call(format!("{h1_base}/b")).await;
    assert_ne!(fresh["peerPort"], first["peerPort"], "a new connection");
    let reused = call(format!("{h1_base}/c")).await;
    assert_eq!(
        reused["peerPort"], fresh["peerPort"],
        "and that one is reused"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    let after_idle = call(format!("{h1_base}/a")).await;
    assert_ne!(
        after_idle["peerPort"], fresh["peerPort"],
        "idle past the timeout: closed"
    );

    let opened = call(format!("{h2_base}/a")).await;
    let (a, b, c) = tokio::join!(
        call(format!("{h2_base}/a")),
        call(format!("{h2_base}/b")),
        call(format!("{h2_base}/c"))
    );
    let together = [a, b, c];
    for body in &together {
        assert_eq!(body["version"], "HTTP/2.0");
        assert_eq!(
            body["peerPort"], opened["peerPort"],
            "one HTTP/2 connection"
        );
    }
    app.running.stop().await.unwrap();
}

/// HTTP/2 connections per target and worker thread: a burst of first requests opens several,
/// two stay pooled (the others serve their request and close), and the thread's next requests
/// alternate between those two (`pool::HTTP2_PER_TARGET`), so that the server can spread them.
#[tokio::test]
async fn a_burst_leaves_two_http2_connections_and_requests_alternate_between_them() {
    let Some((fixtures, _pki, server)) = setup().await else {
        return;
    };
    let app = one_worker(&server, |_| {}).await;
    let tenant = Tenant::new(&app);
    let (id, fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let target = format!("https://localhost:{}/echo/burst", server.port);
    tenant.map(id, "1", &target).await;
    let fingerprint = fingerprint.as_str();
    let call = || forwarded(&tenant, &target, fingerprint);
    let (a, b, c, d, e, f, g, h) = tokio::join!(
        call(),
        call(),
        call(),
        call(),
        call(),
        call(),
        call(),
        call()
    );
    let burst = [a, b, c, d, e, f, g, h];
    let opened: std::collections::BTreeSet<String> = burst
        .iter()
        .map(|body| body["peerPort"].to_string())
        .collect();
    assert!(
        opened.len() >= 3,
        "the burst found no pooled connection and opened several: {opened:?}"
    );
    // The burst's other connections close once their request ends.
    let mut idle = 0;
    for _ in 0..50 {
        idle = pool_metric(&app, "mtls_forward_idle_connections").await;
        if idle == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(idle, 2, "two HTTP/2 connections pooled of {}", opened.len());
    let mut ports = Vec::new();
    for _ in 0..6 {
        let body = forwarded(&tenant, &target, fingerprint).await;
        assert_eq!(body["version"], "HTTP/2.0");
        ports.push(body["peerPort"].to_string());
    }
    assert_ne!(ports[0], ports[1], "alternating: {ports:?}");
    assert!(
        ports.iter().step_by(2).all(|port| *port == ports[0])
            && ports
                .iter()
                .skip(1)
                .step_by(2)
                .all(|port| *port == ports[1]),
        "alternating between two connections: {ports:?}"
    );
    assert!(opened.contains(&ports[0]) && opened.contains(&ports[1]));
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn headers_bodies_statuses_and_lookups() {
    let Some((fixtures, _pki, server)) = setup().await else {
        return;
    };
    let app = spawn(trusting(&server)).await;
    let tenant = Tenant::new(&app);
    let (p256, p256_fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let (p384, p384_fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p384.p12")
        .await;
    let echo = format!("https://localhost:{}/echo?b=2&a=1", server.port);
    tenant.map(p256, "1", &echo).await;

    // Header relay: no Authorization, Host or LP-* to the target; the override becomes Authorization.
    let (status, _, body) = answer(
        tenant
            .forward(reqwest::Method::POST, &echo)
            .header("LP-service-name", "IDP")
            .header("LP-authorization-override", "Bearer for-the-target")
            .header("X-Custom", "kept")
            .header("Content-Type", "text/plain")
            .body("hello upstream"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["body"], "hello upstream");
    assert_eq!(body["headers"]["authorization"], "Bearer for-the-target");
    assert_eq!(body["headers"]["x-custom"], "kept");
    assert_eq!(body["host"], format!("localhost:{}", server.port));
    let names: Vec<&String> = body["headers"].as_object().unwrap().keys().collect();
    assert!(
        !names.iter().any(|name| name.starts_with("lp-")),
        "{names:?}"
    );

    // Found by URL alone when LP-service-name is absent.
    let (status, _, body) = answer(tenant.forward(reqwest::Method::GET, &echo)).await;
    assert_eq!(
        (status, body["fingerprint"].as_str()),
        (StatusCode::OK, Some(p256_fingerprint.as_str()))
    );

    // A second certificate on the same URL for another service: ambiguous without the header.
    tenant.map(p384, "2", &echo).await;
    let (status, _, body) = answer(tenant.forward(reqwest::Method::GET, &echo)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("mapping_ambiguous"))
    );
    let (_, _, body) = answer(
        tenant
            .forward(reqwest::Method::GET, &echo)
            .header("LP-service-name", "WEBHOOKS"),
    )
    .await;
    assert_eq!(body["fingerprint"], p384_fingerprint.as_str());

    // Statuses and headers relayed, a redirect to another origin not followed.
    let created = format!("https://localhost:{}/status/201", server.port);
    tenant.map(p256, "3", &created).await;
    let (status, headers, _) = answer(tenant.forward(reqwest::Method::PUT, &created)).await;
    assert_eq!(
        (status, headers["x-upstream"].to_str().unwrap()),
        (StatusCode::CREATED, "yes")
    );
    let redirect = format!("https://localhost:{}/redirect", server.port);
    tenant.map(p256, "0", &redirect).await;
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .get(app.url(&format!("/mtls/account/{}", tenant.account)))
        .bearer_auth(&tenant.token)
        .header("LP-forward-url", &redirect)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "https://elsewhere.example/");

    // Unmapped: out without a client certificate (refused by this server), or stopped.
    let unmapped = format!("https://localhost:{}/unmapped", server.port);
    let (status, headers, body) = answer(tenant.forward(reqwest::Method::GET, &unmapped)).await;
    assert_eq!(status, StatusCode::FAILED_DEPENDENCY, "{body}");
    // TLS 1.3: the server judges the client's certificate after the client's handshake is
    // over, so its alert races the request the client already sent; when the request arrives
    // first, the server's close turns into a reset that discards the alert (Linux drops unread
    // data on RST). Both answers are right; which one comes is timing.
    let code = body["error"]["code"].as_str().unwrap();
    assert!(
        ["client_certificate_rejected", "connection_reset"].contains(&code),
        "{body}"
    );
    assert_eq!(headers["lp-error-from-transport"], code);
    assert!(headers.contains_key("lp-message-from-transport"));
    let (status, _, body) = answer(
        tenant
            .forward(reqwest::Method::GET, &unmapped)
            .header("LP-stop-if-certificate-not-found", "true"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("no_certificate_mapping"))
    );

    // Bad calls.
    let (status, _, body) = answer(
        client()
            .get(app.url(&format!("/mtls/account/{}", tenant.account)))
            .bearer_auth(&tenant.token),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_forward_url"))
    );
    // Two LP-forward-url headers: refused, not the first one called.
    let (status, _, body) = answer(
        tenant
            .forward(reqwest::Method::GET, &echo)
            .header("LP-service-name", "IDP")
            .header("LP-forward-url", &created),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_forward_url")),
        "{body}"
    );
    let reader = app.token(&[&tenant.account], &[Privilege::ReadInternal]);
    let response = client()
        .get(app.url(&format!("/mtls/account/{}", tenant.account)))
        .bearer_auth(reader)
        .header("LP-forward-url", &echo)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    app.running.stop().await.unwrap();
}

/// The gateway's own HTTP/1.1 client against answers written byte by byte: chunked bodies,
/// connections the target closes silently or drops under the next request, bytes past an
/// answer, bodies framed by the close, and a head that contradicts itself. A connection is
/// reused only when its last answer ended cleanly, and only an idempotent request without a
/// body is sent again.
#[tokio::test]
async fn http1_answers_are_framed_strictly_and_connections_reused_safely() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let server = upstream::start_scripted(&pki, &fixtures.path("root.pem")).await;
    let app = one_worker(&server, |_| {}).await;
    let base = format!("https://localhost:{}", server.port);
    let paths = [
        "/plain",
        "/chunked",
        "/quiet-close",
        "/drop-next",
        "/extra",
        "/until-close",
        "/double-length",
    ];
    let urls: Vec<String> = paths.iter().map(|path| format!("{base}{path}")).collect();
    let tenant = mapped_tenant(&app, &fixtures, &urls).await;
    let call = |method: reqwest::Method, path: &str| {
        let request = tenant
            .forward(method, &format!("{base}{path}"))
            .header("LP-service-name", "IDP");
        async move { answer(request).await }
    };
    let conn = |path: &'static str, expected: u64| {
        let call = &call;
        async move {
            let (status, headers, body) = call(reqwest::Method::GET, path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {headers:?} {body}");
            assert_eq!(body["conn"], expected, "{path}");
        }
    };
    conn("/plain", 1).await;
    conn("/chunked", 1).await;
    conn("/plain", 1).await;
    // Closed by the target after an answer that did not say so: not lent again, so even a
    // request that is never sent twice (a POST with a body) finds a live connection.
    conn("/quiet-close", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let post = |body: &'static str| {
        let request = tenant
            .forward(reqwest::Method::POST, &format!("{base}/plain"))
            .header("LP-service-name", "IDP")
            .body(body);
        async move { answer(request).await }
    };
    let (status, _, body) = post("after the close").await;
    assert_eq!(
        (status, &body["conn"]),
        (StatusCode::OK, &json!(2)),
        "{body}"
    );
    // Dropped under the next request: a GET is sent again on a new connection...
    conn("/drop-next", 2).await;
    conn("/plain", 3).await;
    // ...a POST with a body is not (it may have been acted on).
    conn("/drop-next", 3).await;
    let (status, headers, body) = post("payload").await;
    assert_eq!(status, StatusCode::FAILED_DEPENDENCY, "{body}");
    assert_eq!(headers["lp-error-from-transport"], "connection_reset");
    conn("/plain", 4).await;
    // Bytes past the answer: the answer is relayed as framed, the connection not reused.
    conn("/extra", 4).await;
    conn("/plain", 5).await;
    // No framing: the body is what comes until the close.
    conn("/until-close", 5).await;
    conn("/plain", 6).await;
    let (status, headers, body) = call(reqwest::Method::GET, "/double-length").await;
    assert_eq!(status, StatusCode::FAILED_DEPENDENCY, "{body}");
    assert_eq!(headers["lp-error-from-transport"], "connection_reset");
    let message = headers["lp-message-from-transport"].to_str().unwrap();
    assert!(message.contains("Content-Length"), "{message}");
    conn("/plain", 7).await;
    app.running.stop().await.unwrap();
}

/// RFC 9112 6.3 on the target's `Content-Length`: beside a chunked body it is not relayed
/// (the caller would take it for the body's length and get the body cut short, or nothing);
/// a list of equal values, in one field or two, is relayed as the one value.
#[tokio::test]
async fn http1_content_length_is_relayed_as_rfc_9112_says() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let server = upstream::start_scripted(&pki, &fixtures.path("root.pem")).await;
    let app = one_worker(&server, |_| {}).await;
    let base = format!("https://localhost:{}", server.port);
    let paths = ["/chunked-with-length", "/listed-length", "/repeated-length"];
    let urls: Vec<String> = paths.iter().map(|path| format!("{base}{path}")).collect();
    let tenant = mapped_tenant(&app, &fixtures, &urls).await;
    for path in paths {
        let response = tenant
            .forward(reqwest::Method::GET, &format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let lengths: Vec<String> = response
            .headers()
            .get_all("content-length")
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect();
        let body = response.bytes().await;
        let body: Value = serde_json::from_slice(&body.unwrap()).unwrap();
        assert!(body["conn"].is_u64(), "{path}: the whole body: {body}");
        let expected = body.to_string().len().to_string();
        match path {
            // Chunked in, and relayed without a length (hyper chunks it again).
            "/chunked-with-length" => assert!(
                lengths.iter().all(|length| *length == expected),
                "{path}: {lengths:?}"
            ),
            _ => assert_eq!(lengths, [expected], "{path}"),
        }
    }
    app.running.stop().await.unwrap();
}

/// A target that refuses an upload at once and reads none of it: its answer is relayed while
/// the body is still going out (a client that sent the whole body before reading would wait
/// until the response timeout, with the target's and the kernel's buffers full).
#[tokio::test]
async fn http1_an_early_answer_is_relayed_during_the_upload() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let server = upstream::start_scripted(&pki, &fixtures.path("root.pem")).await;
    let app = one_worker(&server, |config| {
        config.forward.max_body_bytes = 64 * 1024 * 1024;
        config.forward.response_timeout_seconds = std::time::Duration::from_secs_f64(2.0);
    })
    .await;
    let early = format!("https://localhost:{}/early", server.port);
    let tenant = mapped_tenant(&app, &fixtures, std::slice::from_ref(&early)).await;
    // Larger than what loopback's socket buffers hold, so the upload cannot finish unread.
    let upload = vec![b'x'; 32 * 1024 * 1024];
    let started = std::time::Instant::now();
    let response = tenant
        .forward(reqwest::Method::POST, &early)
        .body(upload)
        .send()
        .await;
    let status = response.as_ref().map(reqwest::Response::status);
    assert_eq!(
        status.ok(),
        Some(StatusCode::PAYLOAD_TOO_LARGE),
        "{response:?} after {:?}",
        started.elapsed()
    );
    app.running.stop().await.unwrap();
}

/// Writes `head` and then each of `parts` (after `pause`) on a new connection to the gateway,
/// and reads the answer: its status and its JSON body (`Null` if none).
async fn raw_call(
    app: &TestApp,
    head: &str,
    parts: &[Vec<u8>],
    pause: std::time::Duration,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let address = app.base.trim_start_matches("http://");
    let mut raw = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut reading, mut writing) = raw.split();
    let write = async {
        writing.write_all(head.as_bytes()).await.unwrap();
        for part in parts {
            tokio::time::sleep(pause).await;
            if writing.write_all(part).await.is_err() {
                break;
            }
        }
        // Stays open (a caller that stalls): the read below decides when the call is over.
        std::future::pending::<()>().await;
    };
    let read = async {
        let mut answer = Vec::new();
        loop {
            let mut chunk = [0u8; 8192];
            match reading.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
            let text = String::from_utf8_lossy(&answer);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|value| value.trim().parse::<usize>().unwrap())
                });
                if length.is_some_and(|length| body.len() >= length) {
                    break;
                }
            }
        }
        answer
    };
    let answer = tokio::select! {
        answer = read => answer,
        () = write => unreachable!(),
    };
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// The head of a forward call with a body, written by hand.
fn raw_head(app: &TestApp, tenant: &Tenant<'_>, target: &str, framing: &str) -> String {
    let address = app.base.trim_start_matches("http://");
    format!(
        "POST /mtls/account/{} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {}\r\n\
         lp-forward-url: {target}\r\n{framing}\r\nconnection: close\r\n\r\n",
        tenant.account, tenant.token
    )
}

/// The count of forward failures with `code` in `/metrics`.
async fn failures(app: &TestApp, code: &str) -> u64 {
    let text = client()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("mtls_forward_failures_total{{code=\"{code}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map_or(0, |count| count.trim().parse().unwrap())
}

/// A gateway with one worker, a response timeout of 1 s and a body idle timeout of 0.5 s, to
/// the scripted upstream, and a tenant mapped to `paths` on it (their URLs returned).
async fn clocked(server: &Upstream, paths: &[&str]) -> (TestApp, Vec<String>) {
    let app = one_worker(server, |config| {
        config.forward.response_timeout_seconds = std::time::Duration::from_secs_f64(1.0);
        config.forward.body_idle_timeout_seconds = Some(std::time::Duration::from_secs_f64(0.5));
    })
    .await;
    let base = format!("https://localhost:{}", server.port);
    let urls: Vec<String> = paths.iter().map(|path| format!("{base}{path}")).collect();
    (app, urls)
}

/// [`clocked`] with two targets that read the request body as it comes: the scripted
/// HTTP/1.1 one (`/plain`) and an HTTP/2 echo, and their URLs.
async fn clocked_targets(fixtures: &P12Fixtures, pki: &std::path::Path) -> (TestApp, Vec<String>) {
    let scripted = upstream::start_scripted(pki, &fixtures.path("root.pem")).await;
    let h2 = upstream::start(pki, Some(&fixtures.path("root.pem"))).await;
    let (app, mut urls) = clocked(&scripted, &["/plain"]).await;
    urls.push(format!("https://localhost:{}/echo", h2.port));
    (app, urls)
}

/// `forward.body_idle_timeout_seconds` is the response timeout's value unless it is set.
#[test]
fn the_body_idle_timeout_defaults_to_the_response_timeout() {
    let mut config = mtls_gateway::config::Config::default();
    config.forward.response_timeout_seconds = std::time::Duration::from_secs_f64(7.0);
    let forwarder = mtls_gateway::server::forwarder(&config).unwrap();
    assert_eq!(
        forwarder.timeouts.body_idle,
        std::time::Duration::from_secs(7)
    );
    config.forward.body_idle_timeout_seconds = Some(std::time::Duration::from_secs_f64(2.5));
    let forwarder = mtls_gateway::server::forwarder(&config).unwrap();
    assert_eq!(
        forwarder.timeouts.body_idle,
        std::time::Duration::from_millis(2500)
    );
}

/// A target that stalls its response body is given up after the body idle timeout: the
/// caller gets the head, then an error instead of a body that never ends, and the failure is
/// counted.
#[tokio::test]
async fn a_stalled_response_body_is_cut_and_counted() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let server = upstream::start_scripted(&pki, &fixtures.path("root.pem")).await;
    let (app, urls) = clocked(&server, &["/stall-body"]).await;
    let tenant = mapped_tenant(&app, &fixtures, &urls).await;
    let response = tenant
        .forward(reqwest::Method::GET, &urls[0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(std::time::Duration::from_secs(10), response.bytes()).await;
    assert!(
        matches!(body, Ok(Err(_))),
        "the relayed body ends in an error: {body:?}"
    );
    assert_eq!(failures(&app, "response_body_timeout").await, 1);
    app.running.stop().await.unwrap();
}

/// The response timeout runs from the end of the upload: a slow upload (600 kB at about
/// 200 kB/s, three times the response timeout) to a target that reads it as it comes and
/// answers at once succeeds.
#[tokio::test]
async fn a_slow_upload_is_not_the_targets_delay() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let (app, urls) = clocked_targets(&fixtures, &pki).await;
    let tenant = mapped_tenant(&app, &fixtures, &urls).await;
    let parts: Vec<Vec<u8>> = (0..30).map(|_| vec![b'x'; 20_000]).collect();
    for url in &urls {
        let head = raw_head(&app, &tenant, url, "content-length: 600000");
        let (status, body) =
            raw_call(&app, &head, &parts, std::time::Duration::from_millis(100)).await;
        assert_eq!(status, 200, "{url}: {}", body["error"]);
        // The scripted target answers with its connection number, the echo with the body.
        let whole = body["conn"].is_u64() || body["body"].as_str().map(str::len) == Some(600_000);
        assert!(whole, "{url}");
    }
    app.running.stop().await.unwrap();
}

/// A caller that sends part of its body and then nothing gets 408 `request_body_timeout`:
/// its own fault, not a 424 that blames the target (and not counted as one).
#[tokio::test]
async fn a_stalled_upload_is_the_callers_fault() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let (app, urls) = clocked_targets(&fixtures, &pki).await;
    let tenant = mapped_tenant(&app, &fixtures, &urls).await;
    for url in &urls {
        let head = raw_head(&app, &tenant, url, "content-length: 1000");
        let (status, body) = raw_call(
            &app,
            &head,
            &[b"only ten b".to_vec()],
            std::time::Duration::ZERO,
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (408, Some("request_body_timeout")),
            "{url}: {body}"
        );
    }
    assert_eq!(failures(&app, "response_timeout").await, 0);
    app.running.stop().await.unwrap();
}

/// A malformed chunked request body from the caller is the caller's fault: 400
/// `invalid_request_body`, not a 424 that blames the target, and not counted as one.
#[tokio::test]
async fn a_malformed_request_body_is_the_callers_fault() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    // Targets that read the whole body before they answer, over HTTP/1.1 and HTTP/2.
    let roots = fixtures.path("root.pem");
    let h1 = upstream::start_with(&pki, Some(&roots), true, false).await;
    let h2 = upstream::start(&pki, Some(&roots)).await;
    let app = one_worker(&h1, |_| {}).await;
    let targets = [
        format!("https://localhost:{}/echo", h1.port),
        format!("https://localhost:{}/echo", h2.port),
    ];
    let tenant = mapped_tenant(&app, &fixtures, &targets).await;
    for (target, broken) in targets.iter().flat_map(|target| {
        [
            &b"5\r\nhello\r\nzz\r\n"[..],
            b"5\r\nhelloXX\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
        ]
        .map(|broken| (target, broken))
    }) {
        let head = raw_head(&app, &tenant, target, "transfer-encoding: chunked");
        let (status, body) =
            raw_call(&app, &head, &[broken.to_vec()], std::time::Duration::ZERO).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_request_body")),
            "{target} {}: {body}",
            String::from_utf8_lossy(broken)
        );
    }
    for code in ["connect_failed", "connection_reset"] {
        assert_eq!(failures(&app, code).await, 0, "{code}");
    }
    app.running.stop().await.unwrap();
}

/// Request bodies over the gateway's own HTTP/1.1 client: sent with the caller's
/// `Content-Length`, or chunked when the caller's body has no known length; and a `HEAD`
/// answer, which has no body whatever its `Content-Length` says, leaves its connection
/// reusable.
#[tokio::test]
async fn http1_request_bodies_and_head_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let server = upstream::start_with(&pki, Some(&fixtures.path("root.pem")), true, false).await;
    let app = one_worker(&server, |_| {}).await;
    let echo = format!("https://localhost:{}/echo", server.port);
    let tenant = mapped_tenant(&app, &fixtures, std::slice::from_ref(&echo)).await;

    let (status, _, sized) = answer(
        tenant
            .forward(reqwest::Method::POST, &echo)
            .body("hello upstream"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sized}");
    assert_eq!(sized["version"], "HTTP/1.1");
    assert_eq!(sized["body"], "hello upstream");
    assert_eq!(sized["headers"]["content-length"], "14");
    assert!(sized["headers"].get("transfer-encoding").is_none());

    // A chunked body from the caller (written by hand: the test client sends only sized ones).
    let address = app.base.trim_start_matches("http://");
    let mut raw = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST /mtls/account/{} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {}\r\n\
         lp-forward-url: {echo}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         6\r\nhello \r\n7\r\nchunked\r\n0\r\n\r\n",
        tenant.account, tenant.token
    );
    raw.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    raw.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    let chunked: Value = serde_json::from_str(body).unwrap();
    assert_eq!(chunked["body"], "hello chunked");
    assert_eq!(chunked["headers"]["transfer-encoding"], "chunked");
    assert!(chunked["headers"].get("content-length").is_none());

    let (status, headers, _) = answer(tenant.forward(reqwest::Method::HEAD, &echo)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("content-length"), "{headers:?}");
    let (_, _, after) = answer(tenant.forward(reqwest::Method::GET, &echo)).await;
    assert_eq!(after["method"], "GET");
    assert_eq!(
        after["peerPort"], sized["peerPort"],
        "every answer ended cleanly: one connection throughout"
    );
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn transport_failures_egress_and_size() {
    let Some((fixtures, _pki, server)) = setup().await else {
        return;
    };
    let target = format!("https://localhost:{}/echo", server.port);

    // The target's certificate is not trusted: 424 server_certificate_invalid.
    let untrusting =
        spawn(|config| config.egress.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let tenant = Tenant::new(&untrusting);
    let (id, _) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    tenant.map(id, "1", &target).await;
    let (status, headers, body) = answer(tenant.forward(reqwest::Method::GET, &target)).await;
    assert_eq!(status, StatusCode::FAILED_DEPENDENCY);
    assert_eq!(
        headers["lp-error-from-transport"], "server_certificate_invalid",
        "{body}"
    );
    untrusting.running.stop().await.unwrap();

    // Loopback is not allowed by default: 403 egress_denied, nothing sent.
    let strict = spawn(|config| config.tls.trust_roots = vec![server.ca_pem.clone()]).await;
    let tenant = Tenant::new(&strict);
    let (status, _, body) = answer(tenant.forward(reqwest::Method::GET, &target)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("egress_denied"))
    );
    let (status, _, _) =
        answer(tenant.forward(reqwest::Method::GET, "http://localhost:9/plain")).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "plain http is off by default"
    );
    strict.running.stop().await.unwrap();

    // Connection refused, unknown host, and the body limit.
    let app = spawn(|config| {
        trusting(&server)(config);
        config.forward.max_body_bytes = 16;
        config.forward.response_timeout_seconds = std::time::Duration::from_secs_f64(0.5);
    })
    .await;
    let tenant = Tenant::new(&app);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (status, headers, _) = answer(tenant.forward(
        reqwest::Method::GET,
        &format!("https://127.0.0.1:{closed}/"),
    ))
    .await;
    assert_eq!(
        (status, headers["lp-error-from-transport"].to_str().unwrap()),
        (StatusCode::FAILED_DEPENDENCY, "connect_failed")
    );
    let (status, headers, _) =
        answer(tenant.forward(reqwest::Method::GET, "https://no-such-host.invalid/")).await;
    assert_eq!(
        (status, headers["lp-error-from-transport"].to_str().unwrap()),
        (StatusCode::FAILED_DEPENDENCY, "dns_failed")
    );
    let slow = format!("https://localhost:{}/slow", server.port);
    let (slow_certificate, _) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    tenant.map(slow_certificate, "1", &slow).await;
    let (status, headers, body) = answer(tenant.forward(reqwest::Method::GET, &slow)).await;
    assert_eq!(status, StatusCode::FAILED_DEPENDENCY, "{body}");
    assert_eq!(
        (status, headers["lp-error-from-transport"].to_str().unwrap()),
        (StatusCode::FAILED_DEPENDENCY, "response_timeout")
    );
    let (status, _, body) = answer(
        tenant
            .forward(reqwest::Method::POST, &target)
            .body(vec![b'x'; 100]),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn activation_validates_the_url_with_the_certificate() {
    let Some((fixtures, _pki, server)) = setup().await else {
        return;
    };
    let app = spawn(trusting(&server)).await;
    let tenant = Tenant::new(&app);
    let (id, _) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let activate = app.url(&format!(
        "/mtls/account/{}/certificates/activate/{id}?isValidateUrlEnabled=true",
        tenant.account
    ));
    let good = format!("https://localhost:{}/token", server.port);
    let (status, _, body) = answer(
        client()
            .post(&activate)
            .bearer_auth(&tenant.token)
            .json(&json!({"serviceName": "IDP", "url": good})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bad = format!("https://localhost:{}/status/404", server.port);
    let (status, headers, body) = answer(
        client()
            .post(&activate)
            .bearer_auth(&tenant.token)
            .json(&json!({"serviceName": "IDP", "url": bad})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FAILED_DEPENDENCY, Some("validation_failed"))
    );
    assert_eq!(headers["lp-error-from-transport"], "validation_failed");
    let listed: Value = client()
        .get(app.url(&format!(
            "/api/account/{}/configuration/ac-common/mtls?v=3.0",
            tenant.account
        )))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "only the validated mapping was stored"
    );
    app.running.stop().await.unwrap();
}

/// Two tenants and unmapped calls, interleaved and concurrent, to one upstream: each request
/// presents exactly its own certificate, or none.
#[tokio::test]
async fn identities_never_mix_under_concurrency() {
    let Some((fixtures, pki, _)) = setup().await else {
        return;
    };
    let server = upstream::start_with(&pki, Some(&fixtures.path("root.pem")), false, true).await;
    let app = spawn(trusting(&server)).await;
    let alice = Tenant::new(&app);
    let bob = Tenant::new(&app);
    let target = format!("https://localhost:{}/shared", server.port);
    let (alice_id, alice_fingerprint) = alice
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let (bob_id, bob_fingerprint) = bob
        .certificate(&fixtures, "openssl-default-rsa2048.p12")
        .await;
    alice.map(alice_id, "1", &target).await;
    bob.map(bob_id, "1", &target).await;
    let unmapped = format!("https://localhost:{}/shared?unmapped", server.port);

    let mut calls = tokio::task::JoinSet::new();
    for round in 0..30 {
        for (who, tenant, url, expected) in [
            (
                "alice",
                &alice,
                target.clone(),
                Some(alice_fingerprint.clone()),
            ),
            ("bob", &bob, target.clone(), Some(bob_fingerprint.clone())),
            ("unmapped", &alice, unmapped.clone(), None),
        ] {
            let request = tenant
                .forward(reqwest::Method::GET, &url)
                .header("LP-service-name", "IDP");
            calls.spawn(async move {
                let (status, _, body) = answer(request).await;
                let fingerprint = if status == StatusCode::OK {
                    body["fingerprint"].as_str().map(str::to_owned)
                } else {
                    Some(body.to_string())
                };
                (round, who, status, fingerprint, expected)
            });
        }
    }
    let mut seen = 0;
    while let Some(result) = calls.join_next().await {
        let (round, who, status, fingerprint, expected) = result.unwrap();
        assert_eq!(status, StatusCode::OK, "{who} #{round}: {fingerprint:?}");
        assert_eq!(
            fingerprint, expected,
            "{who} #{round} presented the wrong certificate"
        );
        seen += 1;
    }
    assert_eq!(seen, 90);
    app.running.stop().await.unwrap();
}

/// Replacing the certificate under continuous load: no request fails, and the new certificate
/// is what the server sees afterwards. Also HTTP/1.1 only upstreams.
#[tokio::test]
async fn rotation_under_load_fails_nothing() {
    let Some((fixtures, pki, _)) = setup().await else {
        return;
    };
    let server = upstream::start_with(&pki, Some(&fixtures.path("root.pem")), true, false).await;
    let app = spawn(trusting(&server)).await;
    let tenant = Tenant::new(&app);
    let (id, old_fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let target = format!("https://localhost:{}/rotating", server.port);
    tenant.map(id, "1", &target).await;
    let (_, _, first) = answer(tenant.forward(reqwest::Method::GET, &target)).await;
    assert_eq!(
        first["version"], "HTTP/1.1",
        "the upstream offers only HTTP/1.1"
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let request = tenant.forward(reqwest::Method::GET, &target);
        let stop = stop.clone();
        workers.spawn(async move {
            let mut outcomes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, _, body) = answer(request.try_clone().unwrap()).await;
                outcomes.push((status, body["fingerprint"].as_str().map(str::to_owned)));
            }
            outcomes
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let case = fixtures.case("openssl-default-p384.p12");
    let replacement = json!([{ "id": id, "name": "rotated", "p12": STANDARD.encode(fixtures.bytes(&case.file)), "password": case.password }]);
    let response = client()
        .put(app.url(&format!("/mtls/account/{}/certificates", tenant.account)))
        .bearer_auth(&tenant.token)
        .json(&replacement)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let new_fingerprint = body["successfulySavedCertificates"][0]["fingerprintSha256"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    let mut after = 0;
    while let Some(outcomes) = workers.join_next().await {
        for (status, fingerprint) in outcomes.unwrap() {
            assert_eq!(status, StatusCode::OK, "a request failed during rotation");
            let fingerprint = fingerprint.unwrap();
            assert!(fingerprint == old_fingerprint || fingerprint == new_fingerprint);
            total += 1;
            after += usize::from(fingerprint == new_fingerprint);
        }
    }
    assert!(
        total > 20 && after > 0,
        "{total} requests, {after} with the new certificate"
    );
    let (_, _, body) = answer(tenant.forward(reqwest::Method::GET, &target)).await;
    assert_eq!(
        body["fingerprint"],
        new_fingerprint.as_str(),
        "new connections use the new certificate"
    );
    app.running.stop().await.unwrap();
}

/// nginx requiring client certificates (`ssl_verify_client on`) sees the mapped certificate.
#[tokio::test]
async fn nginx_verifies_the_presented_certificate() {
    let Some((fixtures, pki, server)) = setup().await else {
        return;
    };
    let Some(nginx) = upstream::nginx(&pki, &fixtures.path("root.pem")) else {
        return;
    };
    let app = spawn(trusting(&server)).await;
    let tenant = Tenant::new(&app);
    let (id, _) = tenant
        .certificate(&fixtures, "openssl-default-rsa2048.p12")
        .await;
    let target = format!("https://localhost:{}/hello", nginx.port);
    tenant.map(id, "1", &target).await;
    let response = tenant
        .forward(reqwest::Method::GET, &target)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains("CN=client-rsa2048"), "{text}");
    // Unmapped: nginx answers 400 itself ("No required SSL certificate was sent"), relayed as is.
    let unmapped = format!("https://localhost:{}/other", nginx.port);
    let response = tenant
        .forward(reqwest::Method::GET, &unmapped)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    app.running.stop().await.unwrap();
}

/// Targets that misbehave below HTTP: a reset during the handshake, a server that does not
/// speak TLS, and one that never completes the TCP connection.
#[tokio::test]
async fn handshake_level_failures_have_their_codes() {
    let app = spawn(|config| {
        config.egress.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
        config.forward.connect_timeout_seconds = std::time::Duration::from_secs_f64(0.5);
    })
    .await;
    let tenant = Tenant::new(&app);

    // Accepts, then closes at once.
    let resetting = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reset_port = resetting.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = resetting.accept().await {
            drop(stream);
        }
    });
    // Answers in plain text.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut stream, _)) = plain.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    // A listener whose accept queue is full: further connections never complete.
    let full = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let full_port = full.local_addr().unwrap().port();
    let mut held = Vec::new();
    for _ in 0..1024 {
        match std::net::TcpStream::connect_timeout(
            &full.local_addr().unwrap(),
            std::time::Duration::from_millis(100),
        ) {
            Ok(stream) => held.push(stream),
            Err(_) => break,
        }
    }

    for (port, code) in [
        (reset_port, "connection_reset"),
        (plain_port, "tls_handshake_failed"),
        (full_port, "connect_timeout"),
    ] {
        let (status, headers, body) =
            answer(tenant.forward(reqwest::Method::GET, &format!("https://127.0.0.1:{port}/")))
                .await;
        assert_eq!(status, StatusCode::FAILED_DEPENDENCY, "{code}: {body}");
        assert_eq!(headers["lp-error-from-transport"], code, "{body}");
    }
    drop(held);

    // A TLS 1.2 server refusing the client inside the handshake: always the alert's code,
    // for no certificate (unmapped) and for one from a CA it does not accept.
    if let (Some(fixtures), Some(pki)) = (p12_fixtures(), upstream::server_pki()) {
        let strict = upstream::start_tls12(&pki, &fixtures.path("root.pem")).await;
        let other_ca = upstream::server_pki().unwrap();
        let foreign = upstream::start_tls12(&pki, &other_ca.join("ca.pem")).await;
        let app = spawn(|config| {
            config.egress.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
            config.tls.trust_roots = vec![pki.join("ca.pem")];
        })
        .await;
        let tenant = Tenant::new(&app);
        let (p256, _) = tenant
            .certificate(&fixtures, "openssl-default-p256.p12")
            .await;
        let mapped = format!("https://localhost:{}/mapped", foreign.port);
        tenant.map(p256, "0", &mapped).await;
        for target in [
            format!("https://localhost:{}/unmapped", strict.port),
            mapped,
        ] {
            for _ in 0..5 {
                let (status, headers, body) =
                    answer(tenant.forward(reqwest::Method::GET, &target)).await;
                assert_eq!(status, StatusCode::FAILED_DEPENDENCY, "{body}");
                assert_eq!(
                    headers["lp-error-from-transport"], "client_certificate_rejected",
                    "{target}: {body}"
                );
                assert!(
                    body["error"]["message"].as_str().unwrap().contains("alert"),
                    "the message names the alert: {body}"
                );
            }
        }
        app.running.stop().await.unwrap();
    }
    app.running.stop().await.unwrap();
}

// ---- Request ids (issue 18, items 1 and 2; SPEC 6.2) and the egress 403 (item 4) ----------

/// Forwards a GET to `target` with `request_id` as the caller's `X-Request-Id` (raw bytes, so
/// that invalid ones can be sent too).
fn with_request_id(
    tenant: &Tenant<'_>,
    target: &str,
    request_id: Option<&[u8]>,
) -> reqwest::RequestBuilder {
    let request = tenant.forward(reqwest::Method::GET, target);
    match request_id {
        Some(value) => request.header(
            "x-request-id",
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        ),
        None => request,
    }
}

/// The one `x-request-id` of `headers`.
fn request_id_of(headers: &reqwest::header::HeaderMap) -> String {
    let values: Vec<_> = headers.get_all("x-request-id").iter().collect();
    assert_eq!(values.len(), 1, "{headers:?}");
    values[0].to_str().unwrap().to_owned()
}

fn made_by_the_gateway(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|byte| byte.is_ascii_hexdigit())
}

#[tokio::test]
async fn the_targets_request_id_is_relayed_and_the_gateways_added_only_when_it_has_none() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let server = upstream::start_with_request_id(&pki, &fixtures.path("root.pem")).await;
    let app = spawn(trusting(&server)).await;
    let own = format!("https://localhost:{}/own-request-id", server.port);
    let none = format!("https://localhost:{}/no-request-id", server.port);
    let tenant = mapped_tenant(&app, &fixtures, &[own.clone(), none.clone()]).await;

    // The target's own id is relayed unchanged, with or without the caller's.
    for caller in [None, Some(b"caller-trace-17".as_slice())] {
        let (status, headers, body) = answer(with_request_id(&tenant, &own, caller)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(request_id_of(&headers), "target-own-id", "{caller:?}");
    }
    // None from the target: the gateway's, which is the caller's when it sent one.
    let (status, headers, body) = answer(with_request_id(&tenant, &none, None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(made_by_the_gateway(&request_id_of(&headers)), "{headers:?}");
    assert!(
        body["headers"].get("x-request-id").is_none(),
        "no id is invented for the target when the caller sent none: {body}"
    );
    let (_, headers, body) =
        answer(with_request_id(&tenant, &none, Some(b"caller-trace-18"))).await;
    assert_eq!(request_id_of(&headers), "caller-trace-18");
    assert_eq!(body["headers"]["x-request-id"], "caller-trace-18");
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn a_callers_request_id_is_the_calls_id_and_an_invalid_one_is_replaced() {
    let Some((fixtures, _pki, server)) = setup().await else {
        return;
    };
    let app = spawn(trusting(&server)).await;
    let target = format!("https://localhost:{}/echo-ids", server.port);
    let tenant = mapped_tenant(&app, &fixtures, std::slice::from_ref(&target)).await;

    // Adopted: sent on to the target unchanged, and the id of the answer (128 characters is
    // the longest kept).
    let longest = "i".repeat(128);
    for id in [
        "0af7651916cd43dd8448eb211c80319c-01",
        "a!~",
        longest.as_str(),
    ] {
        let (status, headers, body) =
            answer(with_request_id(&tenant, &target, Some(id.as_bytes()))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["headers"]["x-request-id"], id, "the target saw it");
        assert_eq!(request_id_of(&headers), id);
    }
    // In the gateway's own answers: a 400 before the call, and a 424 after it.
    let unmapped = format!("https://localhost:{}/unmapped", server.port);
    let refused = "https://localhost:1/refused";
    for (url, stop, status, code) in [
        (
            unmapped.as_str(),
            true,
            StatusCode::BAD_REQUEST,
            "no_certificate_mapping",
        ),
        (
            refused,
            false,
            StatusCode::FAILED_DEPENDENCY,
            "connect_failed",
        ),
    ] {
        let mut request = with_request_id(&tenant, url, Some(b"caller-trace-424"));
        if stop {
            request = request.header("LP-stop-if-certificate-not-found", "true");
        }
        let (got, headers, body) = answer(request).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)));
        assert_eq!(body["error"]["requestId"], "caller-trace-424", "{body}");
        assert_eq!(request_id_of(&headers), "caller-trace-424");
    }

    // Invalid (too long, a control character, not ASCII, a space, empty, sent twice): a fresh
    // id replaces it everywhere, the target included.
    let too_long = "i".repeat(129);
    for invalid in [
        too_long.as_bytes(),
        b"tab\there".as_slice(),
        "caf\u{e9}".as_bytes(),
        b"with space".as_slice(),
        b"".as_slice(),
    ] {
        let (status, headers, body) =
            answer(with_request_id(&tenant, &target, Some(invalid))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let id = request_id_of(&headers);
        assert!(made_by_the_gateway(&id), "{invalid:?}: {id}");
        assert_eq!(body["headers"]["x-request-id"], id.as_str(), "{invalid:?}");
        let (_, headers, body) = answer(
            with_request_id(&tenant, &unmapped, Some(invalid))
                .header("LP-stop-if-certificate-not-found", "true"),
        )
        .await;
        let id = request_id_of(&headers);
        assert!(made_by_the_gateway(&id), "{invalid:?}: {id}");
        assert_eq!(body["error"]["requestId"], id.as_str());
    }
    let (_, headers, body) = answer(
        tenant
            .forward(reqwest::Method::GET, &target)
            .header("x-request-id", "one")
            .header("x-request-id", "two"),
    )
    .await;
    let id = request_id_of(&headers);
    assert!(made_by_the_gateway(&id), "{id}");
    assert_eq!(body["headers"]["x-request-id"], id.as_str());
    app.running.stop().await.unwrap();
}

/// `egress_denied` refuses the target, not the credential: no `WWW-Authenticate`, whatever the
/// scheme (docs/errors.md).
#[tokio::test]
async fn an_egress_refusal_carries_no_challenge() {
    let app = spawn(|_| {}).await;
    let tenant = Tenant::new(&app);
    let (status, headers, body) = answer(tenant.forward(
        reqwest::Method::GET,
        "https://127.0.0.1:8443/loopback-is-refused",
    ))
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("egress_denied"))
    );
    assert!(headers.get("www-authenticate").is_none(), "{headers:?}");
    app.running.stop().await.unwrap();
}

/// A forward call from a client that follows no redirect itself (reqwest's default would).
fn forward_once(
    tenant: &Tenant<'_>,
    method: reqwest::Method,
    target: &str,
) -> reqwest::RequestBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .request(
            method,
            tenant.app.url(&format!("/mtls/account/{}", tenant.account)),
        )
        .bearer_auth(&tenant.token)
        .header("LP-forward-url", target)
}

/// A gateway trusting a redirecting server, a tenant whose P-256 certificate is mapped to
/// `paths` on it, and that certificate's fingerprint.
async fn redirect_setup(
    configure: impl FnOnce(&mut mtls_gateway::config::Config),
) -> Option<(
    P12Fixtures,
    std::path::PathBuf,
    upstream::Redirecting,
    TestApp,
)> {
    let (fixtures, pki) = fixtures_and_pki()?;
    let server = upstream::start_redirecting(&pki, &fixtures.path("root.pem")).await;
    let app = spawn(|config| {
        trusting(&server.upstream)(config);
        configure(config);
    })
    .await;
    Some((fixtures, pki, server, app))
}

/// SPEC 6.2 "Redirects": each of the five statuses on the same origin is followed with the
/// mapped certificate (no new lookup: the hops' URLs are not mapped); 301/302/303 go on as a
/// GET without the body and its headers (HEAD stays HEAD), 307/308 repeat the method and the
/// body; the caller's other headers (the override's Authorization included) go to every hop;
/// no byte of a 3xx followed reaches the caller. Relative (path-absolute and path-relative)
/// and absolute `Location`s.
#[tokio::test]
async fn same_origin_redirects_are_followed_with_the_certificate() {
    let Some((fixtures, _pki, server, app)) = redirect_setup(|_| {}).await else {
        return;
    };
    let tenant = Tenant::new(&app);
    let (id, fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let base = format!("https://localhost:{}", server.upstream.port);
    for (status, location, method_after, body_after, path_after) in [
        (301, "/echo/301?x=1".to_owned(), "GET", "", "/echo/301?x=1"),
        (302, "../echo/302".to_owned(), "GET", "", "/echo/302"),
        (303, format!("{base}/echo/303"), "GET", "", "/echo/303"),
        (
            307,
            "/echo/307".to_owned(),
            "POST",
            "hello redirect",
            "/echo/307",
        ),
        (
            308,
            format!("HTTPS://LOCALHOST:{}/echo/308", server.upstream.port),
            "POST",
            "hello redirect",
            "/echo/308",
        ),
    ] {
        let target = format!("{base}/redirect-to/{status}?{location}");
        tenant.map(id, "1", &target).await;
        let (got, headers, body) = answer(
            forward_once(&tenant, reqwest::Method::POST, &target)
                .header("LP-authorization-override", "Bearer for-the-target")
                .header("Content-Type", "text/plain")
                .header("X-Custom", "kept")
                .body("hello redirect"),
        )
        .await;
        assert_eq!(got, StatusCode::OK, "{status}: {headers:?} {body}");
        assert_eq!(body["method"], method_after, "{status}");
        assert_eq!(body["path"], path_after, "{status}");
        assert_eq!(body["body"], body_after, "{status}");
        assert_eq!(
            body["fingerprint"],
            fingerprint.as_str(),
            "{status}: the hop presented the mapped certificate"
        );
        assert_eq!(body["headers"]["authorization"], "Bearer for-the-target");
        assert_eq!(body["headers"]["x-custom"], "kept");
        let has = |name: &str| body["headers"].get(name).is_some();
        if method_after == "GET" {
            assert!(
                !has("content-type") && !has("content-length"),
                "{status}: {body}"
            );
        } else {
            assert_eq!(body["headers"]["content-type"], "text/plain");
        }
        assert!(
            !headers.contains_key("location"),
            "{status}: the 3xx's head stays home"
        );
    }
    // HEAD stays HEAD after a 303.
    let target = format!("{base}/redirect-to/303?/echo/head");
    tenant.map(id, "1", &target).await;
    let response = forward_once(&tenant, reqwest::Method::HEAD, &target)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        server.seen().last().map(String::as_str),
        Some("HEAD /echo/head")
    );
    app.running.stop().await.unwrap();
}

/// Five hops at most: a loop is followed five times and the sixth 3xx relayed as is (its
/// status, its `Location` verbatim, its body), over HTTP/2 and over HTTP/1.1 (where each
/// redirect's body is read away and its connection serves the next hop).
#[tokio::test]
async fn past_five_hops_the_redirect_is_relayed() {
    let Some((fixtures, pki, h2_server, app)) = redirect_setup(|_| {}).await else {
        return;
    };
    let h1_server = upstream::start_redirecting_with(&pki, &fixtures.path("root.pem"), false).await;
    let tenant = Tenant::new(&app);
    let (id, _) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    for server in [&h2_server, &h1_server] {
        let target = format!("https://localhost:{}/loop/0", server.upstream.port);
        tenant.map(id, "1", &target).await;
        let response = forward_once(&tenant, reqwest::Method::GET, &target)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["location"], "/loop/6");
        assert_eq!(response.text().await.unwrap(), upstream::REDIRECT_BODY);
        let expected: Vec<String> = (0..=5).map(|n| format!("GET /loop/{n}")).collect();
        assert_eq!(server.seen(), expected);
    }
    let metrics = client()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mtls_forward_redirects_followed_total 10\n"),
        "{metrics}"
    );
    app.running.stop().await.unwrap();
}

/// A 307/308 repeats a body of at most 64 KiB (sized or chunked); after a larger one (not
/// kept) it is relayed. Over HTTP/2 and over HTTP/1.1.
#[tokio::test]
async fn a_307_is_followed_with_a_small_body_and_relayed_after_a_large_one() {
    let Some((fixtures, pki, h2_server, app)) = redirect_setup(|_| {}).await else {
        return;
    };
    let h1_server = upstream::start_redirecting_with(&pki, &fixtures.path("root.pem"), false).await;
    let tenant = Tenant::new(&app);
    let (id, _) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    for server in [&h2_server, &h1_server] {
        let target = format!(
            "https://localhost:{}/redirect-to/307?/echo/replayed",
            server.upstream.port
        );
        tenant.map(id, "1", &target).await;
        let small = "k".repeat(1024);
        let (status, _, body) =
            answer(forward_once(&tenant, reqwest::Method::PUT, &target).body(small.clone())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (body["method"].as_str(), body["body"].as_str()),
            (Some("PUT"), Some(small.as_str()))
        );
        // Streamed without a length (chunked): the same.
        let head = raw_head(&app, &tenant, &target, "transfer-encoding: chunked");
        let chunks = format!(
            "258\r\n{}\r\n258\r\n{}\r\n0\r\n\r\n",
            "a".repeat(600),
            "b".repeat(600)
        );
        let (status, body) = raw_call(
            &app,
            &head,
            &[chunks.into_bytes()],
            std::time::Duration::ZERO,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["method"], "POST");
        assert_eq!(body["body"].as_str().map(str::len), Some(1200));

        let before = server.seen().len();
        let large = "L".repeat(65 * 1024);
        let response = forward_once(&tenant, reqwest::Method::PUT, &target)
            .body(large)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(response.headers()["location"], "/echo/replayed");
        assert_eq!(response.text().await.unwrap(), upstream::REDIRECT_BODY);
        assert_eq!(
            server.seen().get(before..).unwrap(),
            ["PUT /redirect-to/307?/echo/replayed".to_owned()],
            "not followed"
        );
    }
    app.running.stop().await.unwrap();
}

/// A redirect to another origin (another port, another host name for the same address, or an
/// address the egress policy refuses) is relayed as is and never followed: the other server
/// sees nothing.
#[tokio::test]
async fn cross_origin_and_refused_redirects_are_relayed_never_followed() {
    let Some((fixtures, pki, server, app)) = redirect_setup(|_| {}).await else {
        return;
    };
    let other = upstream::start_redirecting(&pki, &fixtures.path("root.pem")).await;
    let tenant = Tenant::new(&app);
    let (id, _) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let port = server.upstream.port;
    for location in [
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        "https://10.0.0.1/internal".to_owned(),
        format!("https://localhost:{}/echo/other", other.upstream.port),
        format!("https://127.0.0.1:{port}/echo/same-address"),
        format!("http://localhost:{port}/echo/plain"),
        format!("//127.0.0.2:{port}/echo/network-path"),
    ] {
        let target = format!("https://localhost:{port}/redirect-to/307?{location}");
        tenant.map(id, "1", &target).await;
        let before = server.seen().len();
        let response = forward_once(&tenant, reqwest::Method::GET, &target)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::TEMPORARY_REDIRECT,
            "{location}"
        );
        assert_eq!(response.headers()["location"], location.as_str());
        assert_eq!(response.text().await.unwrap(), upstream::REDIRECT_BODY);
        assert_eq!(server.seen().len(), before + 1, "{location}: one request");
    }
    assert!(other.seen().is_empty(), "{:?}", other.seen());
    app.running.stop().await.unwrap();
}

/// `forward.follow_redirects = "never"` relays every 3xx, same origin included.
#[tokio::test]
async fn follow_redirects_never_relays_every_redirect() {
    let Some((fixtures, _pki, server, app)) = redirect_setup(|config| {
        config.forward.follow_redirects = mtls_gateway::config::FollowRedirects::Never;
    })
    .await
    else {
        return;
    };
    let tenant = Tenant::new(&app);
    let (id, _) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    for status in [301u16, 302, 303, 307, 308] {
        let target = format!(
            "https://localhost:{}/redirect-to/{status}?/echo/{status}",
            server.upstream.port
        );
        tenant.map(id, "1", &target).await;
        let response = forward_once(&tenant, reqwest::Method::GET, &target)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.headers()["location"],
            format!("/echo/{status}").as_str()
        );
    }
    assert!(
        server
            .seen()
            .iter()
            .all(|seen| seen.contains("/redirect-to/")),
        "{:?}",
        server.seen()
    );
    app.running.stop().await.unwrap();
}

/// The value of one `/metrics` line without labels.
async fn pool_metric(app: &TestApp, name: &str) -> u64 {
    let value = crate::support::metric_value(app, name).await;
    value.unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// One forward call that must succeed with `fingerprint`; the server's view of it.
async fn forwarded(tenant: &Tenant<'_>, target: &str, fingerprint: &str) -> Value {
    let (status, _, body) = answer(tenant.forward(reqwest::Method::GET, target)).await;
    assert_eq!(status, StatusCode::OK, "{target}: {body}");
    assert_eq!(body["fingerprint"], fingerprint, "{target}");
    body
}

#[tokio::test]
async fn idle_connections_per_identity_stay_within_their_cap() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let server = upstream::start_with(&pki, Some(&fixtures.path("root.pem")), true, false).await;
    let app = one_worker(&server, |config| {
        config.forward.max_idle_per_identity = 2;
    })
    .await;
    let tenant = Tenant::new(&app);
    let (id, fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let target = format!("https://localhost:{}/slow", server.port);
    tenant.map(id, "1", &target).await;
    // Six at once on HTTP/1.1: six connections, all handed back when their answers end.
    let call = || forwarded(&tenant, &target, &fingerprint);
    let (a, b, c, d, e, f) = tokio::join!(call(), call(), call(), call(), call(), call());
    let bodies = [a, b, c, d, e, f];
    let mut ports: Vec<_> = bodies.iter().map(|body| body["peerPort"].clone()).collect();
    ports.sort_by_key(ToString::to_string);
    ports.dedup();
    assert_eq!(ports.len(), 6, "six connections were open at once");
    assert_eq!(pool_metric(&app, "mtls_forward_idle_connections").await, 2);
    assert_eq!(
        pool_metric(&app, "mtls_forward_idle_evicted_total").await,
        4
    );
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn past_the_total_cap_the_least_recently_used_identity_loses_its_connections_first() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let server = upstream::start_with(&pki, Some(&fixtures.path("root.pem")), true, false).await;
    let app = one_worker(&server, |config| {
        config.forward.max_idle_total = 2;
    })
    .await;
    let target = format!("https://localhost:{}/lru", server.port);
    let mut tenants = Vec::new();
    for _ in 0..3 {
        let tenant = Tenant::new(&app);
        let (id, fingerprint) = tenant
            .certificate(&fixtures, "openssl-default-p256.p12")
            .await;
        tenant.map(id, "1", &target).await;
        tenants.push((tenant, fingerprint));
    }
    let (first, second) = (&tenants[0], &tenants[1]);
    let a = forwarded(&first.0, &target, &first.1).await;
    let b = forwarded(&second.0, &target, &second.1).await;
    // Used again: now the first tenant's connection is the most recently used one.
    let a_again = forwarded(&first.0, &target, &first.1).await;
    assert_eq!(a_again["peerPort"], a["peerPort"]);
    // A third identity's connection makes three idle: the second tenant's goes.
    let third = &tenants[2];
    let c = forwarded(&third.0, &target, &third.1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(pool_metric(&app, "mtls_forward_idle_connections").await, 2);
    assert_eq!(
        pool_metric(&app, "mtls_forward_idle_evicted_total").await,
        1
    );
    // (The kept ones first: the second tenant's new connection will make three again.)
    let a_after = forwarded(&first.0, &target, &first.1).await;
    assert_eq!(a_after["peerPort"], a["peerPort"], "kept");
    let c_after = forwarded(&third.0, &target, &third.1).await;
    assert_eq!(c_after["peerPort"], c["peerPort"], "kept");
    let b_after = forwarded(&second.0, &target, &second.1).await;
    assert_ne!(
        b_after["peerPort"], b["peerPort"],
        "evicted: a new connection"
    );
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_identity_is_unloaded_and_its_next_request_loads_it_again() {
    let Some((fixtures, pki)) = fixtures_and_pki() else {
        return;
    };
    let server = upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    let app = spawn(|config| {
        trusting(&server)(config);
        config.forward.identity_idle_seconds = std::time::Duration::from_secs_f64(1.0);
        config.forward.allow_unmapped = false;
        config.server.workers = 1;
    })
    .await;
    let target = format!("https://localhost:{}/unload", server.port);
    let idle = Tenant::new(&app);
    let (id, idle_fingerprint) = idle
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    idle.map(id, "1", &target).await;
    let busy = Tenant::new(&app);
    let (id, busy_fingerprint) = busy
        .certificate(&fixtures, "openssl-default-p384.p12")
        .await;
    busy.map(id, "1", &target).await;
    let before = forwarded(&idle, &target, &idle_fingerprint).await;
    assert_eq!(before["version"], "HTTP/2.0");
    let busy_first = forwarded(&busy, &target, &busy_fingerprint).await;
    assert_eq!(pool_metric(&app, "mtls_forward_identities_loaded").await, 2);
    // The busy tenant calls every 200 ms for 2 s (past the idle time): it stays loaded, and
    // keeps its connection; the other is unloaded and its connection closed.
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let body = forwarded(&busy, &target, &busy_fingerprint).await;
        assert_eq!(body["peerPort"], busy_first["peerPort"], "not unloaded");
    }
    assert_eq!(pool_metric(&app, "mtls_forward_identities_loaded").await, 1);
    assert_eq!(
        pool_metric(&app, "mtls_forward_identities_unloaded_total").await,
        1
    );
    assert_eq!(pool_metric(&app, "mtls_forward_idle_connections").await, 1);
    // Its next request loads it again (cold path) and succeeds with its own certificate.
    let after = forwarded(&idle, &target, &idle_fingerprint).await;
    assert_ne!(after["peerPort"], before["peerPort"], "a new connection");
    assert_eq!(pool_metric(&app, "mtls_forward_identities_loaded").await, 2);
    app.running.stop().await.unwrap();
}

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `count` tenants with their certificates (P-256 and RSA-2048 alternating) mapped to `target`.
async fn memory_tenants<'a>(
    app: &'a TestApp,
    fixtures: &P12Fixtures,
    target: &str,
    count: usize,
) -> Vec<Tenant<'a>> {
    let mut tenants = Vec::new();
    for index in 0..count {
        let tenant = Tenant::new(app);
        let file = if index % 2 == 0 {
            "openssl-default-p256.p12"
        } else {
            "openssl-default-rsa2048.p12"
        };
        let (id, _) = tenant.certificate(fixtures, file).await;
        tenant.map(id, "1", target).await;
        tenants.push(tenant);
    }
    tenants
}

/// RSS growth (KiB) while each tenant after the first makes one call (after a warm-up).
async fn rss_growth(tenants: &[Tenant<'_>], target: &str) -> u64 {
    let call = |tenant: &Tenant<'_>| {
        let request = tenant.forward(reqwest::Method::GET, target);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.bytes().await.unwrap();
        }
    };
    for _ in 0..20 {
        call(&tenants[0]).await;
    }
    let before = rss_kib();
    for tenant in &tenants[1..] {
        call(tenant).await;
    }
    rss_kib().saturating_sub(before)
}

/// Not a check, a measurement for docs/forward.md ("Upstream connections"): the gateway's RSS
/// growth per warm identity and per idle upstream connection (HTTP/2, to nginx out of process
/// so that only the gateway's side counts). Growth only: freed memory is not given back to the
/// system by the allocator, so RSS cannot show what closing or unloading frees (the metrics do).
/// Two gateways in turn, `MEMORY_TENANTS` (default 200: nginx takes 256 connections) tenants
/// each: on the first, connections close 0.1 s after their call (identities only); on the
/// second they stay idle (identities and connections). Run with
/// `cargo test -p mtls-gateway --test it -- --ignored --nocapture forward::memory_per`.
#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn memory_per_identity_and_idle_connection() {
    let Some((fixtures, pki, server)) = setup().await else {
        return;
    };
    let Some(nginx) = upstream::nginx(&pki, &fixtures.path("root.pem")) else {
        return;
    };
    let count: usize = std::env::var("MEMORY_TENANTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200);
    let target = format!("https://localhost:{}/hello", nginx.port);
    let closing = one_worker(&server, |config| {
        config.forward.idle_timeout_seconds = std::time::Duration::from_secs_f64(0.1);
    })
    .await;
    let tenants = memory_tenants(&closing, &fixtures, &target, count).await;
    let identities = rss_growth(&tenants, &target).await;
    let loaded = pool_metric(&closing, "mtls_forward_identities_loaded").await;
    let keeping = one_worker(&server, |_| {}).await;
    let tenants_kept = memory_tenants(&keeping, &fixtures, &target, count).await;
    let with_connections = rss_growth(&tenants_kept, &target).await;
    let idle = pool_metric(&keeping, "mtls_forward_idle_connections").await;
    let n = u64::try_from(count - 1).unwrap();
    println!(
        "{n} identities ({loaded} loaded): +{identities} KiB; with {idle} idle connections: \
         +{with_connections} KiB"
    );
    println!(
        "per warm identity: {} KiB; per idle connection: {} KiB",
        identities / n,
        with_connections.saturating_sub(identities) / n
    );
    drop(tenants);
    drop(tenants_kept);
    closing.running.stop().await.unwrap();
    keeping.running.stop().await.unwrap();
}

/// The count of a cold identity load stage in `/metrics` (`unseal`: re-sealed identity reads,
/// `secret_store`: reads of the version's own secret, `parse`: PKCS#12 parses, `load`: loads).
async fn identity_loads(app: &TestApp, stage: &str) -> u64 {
    let series = format!("mtls_forward_identity_load_seconds_count{{stage=\"{stage}\"}}");
    crate::support::metric_value(app, &series)
        .await
        .unwrap_or(0)
}

/// `count` concurrent forwards of `tenant` to `target`: status and what the target saw (the
/// fingerprint of the presented certificate) or the error body.
async fn concurrent_forwards(
    tenant: &Tenant<'_>,
    target: &str,
    count: usize,
) -> Vec<(StatusCode, Value)> {
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..count {
        let request = tenant
            .forward(reqwest::Method::GET, target)
            .header("LP-service-name", "IDP");
        calls.spawn(async move {
            let (status, _, body) = answer(request).await;
            (status, body)
        });
    }
    let mut answers = Vec::new();
    while let Some(result) = calls.join_next().await {
        answers.push(result.unwrap());
    }
    answers
}

/// Twenty concurrent first requests for one cold identity, on every worker thread: one read
/// of its re-sealed identity in all (single flight) and no PKCS#12 parse, and every request
/// presents the mapped certificate to a target that requires one.
#[tokio::test]
async fn concurrent_first_requests_load_a_cold_identity_once() {
    let Some((fixtures, _, server)) = setup().await else {
        return;
    };
    let app = spawn(|config| {
        trusting(&server)(config);
        config.server.workers = 2;
    })
    .await;
    let tenant = Tenant::new(&app);
    let (id, fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let target = format!("https://localhost:{}/cold", server.port);
    tenant.map(id, "1", &target).await;
    assert_eq!(identity_loads(&app, "secret_store").await, 0);

    let answers = concurrent_forwards(&tenant, &target, 20).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["fingerprint"], fingerprint.as_str());
    }
    assert_eq!(answers.len(), 20);
    assert_eq!(
        identity_loads(&app, "unseal").await,
        1,
        "re-sealed identity reads"
    );
    // The identity re-sealed at upload: neither the file read nor its parse.
    assert_eq!(identity_loads(&app, "secret_store").await, 0, "file reads");
    assert_eq!(identity_loads(&app, "parse").await, 0, "PKCS#12 parses");
    assert_eq!(identity_loads(&app, "load").await, 1, "loads");
    assert_eq!(
        identity_loads(&app, "first_call").await,
        1,
        "first calls timed"
    );
    app.running.stop().await.unwrap();
}

/// A cold identity whose secret is missing: every concurrent request gets the load's error
/// (503 `dependency_unavailable`, nothing relayed); the failure is not kept, so once the secret is
/// back the next request loads it and succeeds.
#[tokio::test]
async fn a_failed_cold_load_reaches_every_waiter_and_is_retried() {
    let Some((fixtures, _, server)) = setup().await else {
        return;
    };
    let app = spawn(trusting(&server)).await;
    let tenant = Tenant::new(&app);
    let (id, fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let target = format!("https://localhost:{}/cold", server.port);
    tenant.map(id, "1", &target).await;

    // The sealed secret goes away behind the gateway's back (kept to be put back).
    use mtls_secrets::SealedBlobs;
    let store = mtls_store::Store::connect(&mtls_gateway::backends::store_options(&app.config))
        .await
        .unwrap();
    let key = mtls_secrets::SecretKey {
        account: &tenant.account,
        certificate_id: id,
    };
    let blob = store.blob(key, 1).await.unwrap().unwrap();
    store
        .delete_blobs(key, mtls_secrets::Versions::All)
        .await
        .unwrap();
    // And its re-sealed identity, which would load without it.
    store
        .delete_identities(key, mtls_secrets::Versions::All)
        .await
        .unwrap();

    let answers = concurrent_forwards(&tenant, &target, 20).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "dependency_unavailable", "{body}");
    }
    let reads = identity_loads(&app, "secret_store").await;
    assert!((1..=20).contains(&reads), "{reads} secret reads");
    assert_eq!(identity_loads(&app, "parse").await, 0);

    assert!(store.insert_blob(key, blob).await.unwrap());
    store.close().await;
    let answers = concurrent_forwards(&tenant, &target, 1).await;
    assert_eq!(answers[0].0, StatusCode::OK, "{}", answers[0].1);
    assert_eq!(answers[0].1["fingerprint"], fingerprint.as_str());
    assert_eq!(identity_loads(&app, "secret_store").await, reads + 1);
    assert_eq!(identity_loads(&app, "parse").await, 1);
    app.running.stop().await.unwrap();
}

/// The sum of a cold identity load stage's histogram in `/metrics`, in milliseconds.
async fn identity_load_millis(app: &TestApp, stage: &str) -> f64 {
    let series = format!("mtls_forward_identity_load_seconds_sum{{stage=\"{stage}\"}}");
    crate::support::metric_value::<f64>(app, &series)
        .await
        .unwrap_or(0.0)
        * 1e3
}

/// The first request of a cold identity, stage by stage (`mtls_forward_identity_load_seconds`):
/// each stage counted once per load that passes through it, and the figures printed for
/// docs/forward.md ("Cold identities"; `--nocapture` shows them; no assertion on time). The
/// OpenSSL default files, and, when the `openssl` tool is there, a P-256 file with 600,000
/// PBKDF2 iterations; each loaded once from its PKCS#12 file (its re-sealed identity removed,
/// as for a certificate stored before identities were re-sealed) and once from the identity
/// re-sealed at upload.
#[tokio::test]
async fn a_cold_identitys_first_request_is_timed_by_stage() {
    let Some((fixtures, _, server)) = setup().await else {
        return;
    };
    let app = spawn(trusting(&server)).await;
    let mut files: Vec<(String, Vec<u8>, String)> =
        ["openssl-default-p256.p12", "openssl-default-rsa2048.p12"]
            .iter()
            .map(|file| {
                (
                    (*file).to_owned(),
                    fixtures.bytes(file),
                    fixtures.case(file).password.clone(),
                )
            })
            .collect();
    let scratch = mtls_test_support::temp_dir("cold-identity");
    let (key, certificate, chain) = (
        fixtures.path("p256.key"),
        fixtures.path("p256.pem"),
        fixtures.path("chain.pem"),
    );
    #[rustfmt::skip]
    let made = mtls_test_support::openssl(&scratch, &[
        "pkcs12", "-export", "-name", "fixture", "-iter", "600000", "-maciter",
        "-inkey", key.to_str().unwrap(), "-in", certificate.to_str().unwrap(),
        "-certfile", chain.to_str().unwrap(), "-passout", "pass:cold-secret", "-out", "costly.p12",
    ]);
    if made.is_some() {
        files.push((
            "p256, 600,000 iterations".to_owned(),
            std::fs::read(scratch.join("costly.p12")).unwrap(),
            "cold-secret".to_owned(),
        ));
    }
    // Each file twice: loaded from its PKCS#12 file (its re-sealed identity removed first, as
    // for a certificate stored before identities were re-sealed), then from the identity.
    let store = mtls_store::Store::connect(&mtls_gateway::backends::store_options(&app.config))
        .await
        .unwrap();
    let runs = files
        .iter()
        .flat_map(|file| [(file, true), (file, false)])
        .enumerate();
    for (index, ((label, bytes, password), from_file)) in runs {
        let tenant = Tenant::new(&app);
        let item = json!([{ "name": format!("cold-{index}"), "p12": STANDARD.encode(bytes), "password": password }]);
        let response = client()
            .post(app.url(&format!("/mtls/account/{}/certificates", tenant.account)))
            .bearer_auth(&tenant.token)
            .json(&item)
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        let saved = &body["successfulySavedCertificates"][0];
        let id = saved["id"].as_i64().unwrap();
        let target = format!("https://localhost:{}/cold-{index}", server.port);
        tenant.map(id, "1", &target).await;
        if from_file {
            use mtls_secrets::SealedBlobs;
            let key = mtls_secrets::SecretKey {
                account: &tenant.account,
                certificate_id: id,
            };
            store
                .delete_identities(key, mtls_secrets::Versions::All)
                .await
                .unwrap();
        }
        let stages = ["unseal", "secret_store", "parse", "load", "first_call"];
        let mut before = Vec::new();
        for stage in stages {
            before.push((
                identity_loads(&app, stage).await,
                identity_load_millis(&app, stage).await,
            ));
        }
        let started = std::time::Instant::now();
        let cold = concurrent_forwards(&tenant, &target, 1).await;
        let cold_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = std::time::Instant::now();
        let warm = concurrent_forwards(&tenant, &target, 1).await;
        let warm_ms = started.elapsed().as_secs_f64() * 1e3;
        for (status, body) in cold.iter().chain(&warm) {
            assert_eq!(*status, StatusCode::OK, "{body}");
            assert_eq!(body["fingerprint"], saved["fingerprintSha256"]);
        }
        let how = if from_file { "PKCS#12" } else { "unseal" };
        let mut line =
            format!("{label} ({how}): first request {cold_ms:.1} ms (next {warm_ms:.1} ms)");
        for (stage, (count, millis)) in stages.iter().zip(before) {
            // Loaded from the re-sealed identity: the file is neither read nor parsed.
            let counted = u64::from(from_file || !["secret_store", "parse"].contains(stage));
            assert_eq!(
                identity_loads(&app, stage).await,
                count + counted,
                "{label} ({how}): {stage}"
            );
            let spent = identity_load_millis(&app, stage).await - millis;
            line.push_str(&format!(", {stage} {spent:.1} ms"));
        }
        eprintln!("{line}");
    }
    store.close().await;
    app.running.stop().await.unwrap();
}
