//! `POST /oauth2/token` (SPEC 3, RFC 6749 4.4): app keys made by the real `app-key` command
//! exchanged for Bearer tokens by HTTP Basic and in the form, by hand and by Python's oauthlib;
//! every RFC 6749 5.2 error; the lifetime; revocation; the rate limit; nothing secret logged.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mtls_test_support::{python, random_account, temp_dir, workspace_root};
use reqwest::StatusCode;
use serde_json::Value;

use crate::oauth::{Key, cli, create_key, envs, fast, oauthlib_available};
use crate::support::{Stack, client, spawn};

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'*') {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// RFC 6749 2.3.1: each part form-urlencoded, then base64.
fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A token request whose body comes in chunks without a length, padded past the cap by
/// `padding` bytes, on a raw socket: the status and the body text.
async fn chunked(base: &str, authorization: &str, form: &str, padding: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: {address}\r\nAuthorization: {authorization}\r\n\
         Content-Type: {FORM}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut chunks = vec![form.to_owned()];
    chunks.extend((0..padding / 1000).map(|index| format!("&pad{index:03}={}", "a".repeat(992))));
    for chunk in chunks {
        let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        // The server may answer and close before the last chunks: later writes may fail.
        if socket.write_all(framed.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// A token request head announcing `length` body bytes, and no body: the status and the answer.
async fn announced(base: &str, authorization: &str, length: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: {address}\r\nAuthorization: {authorization}\r\n\
         Content-Type: {FORM}\r\nContent-Length: {length}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    // Not a timing assertion: only a bound on waiting for an answer that must come unprompted.
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
        .await
        .expect("no answer while the body was still missing")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// Status, headers and JSON body of a token request.
async fn request(
    app: &str,
    authorization: Option<&str>,
    content_type: &str,
    body: String,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = client()
        .post(format!("{app}/oauth2/token"))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

const FORM: &str = "application/x-www-form-urlencoded";

async fn by_basic(app: &str, key: &Key) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    request(
        app,
        Some(&basic(&key.consumer_key, &key.consumer_secret)),
        FORM,
        form(&[("grant_type", "client_credentials")]),
    )
    .await
}

async fn by_post(app: &str, key: &Key) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    request(
        app,
        None,
        FORM,
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &key.consumer_key),
            ("client_secret", &key.consumer_secret),
        ]),
    )
    .await
}

/// Polls until the key is in force (the sync interval passing) and returns a Basic answer.
async fn until_issued(app: &str, key: &Key) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = by_basic(app, key).await;
        if status == StatusCode::OK {
            return body;
        }
        assert!(Instant::now() < deadline, "never issued: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn get(url: &str, token: &str) -> StatusCode {
    client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn assert_oauth_error(
    (status, headers, body): &(StatusCode, reqwest::header::HeaderMap, Value),
    want_status: StatusCode,
    want_error: &str,
) {
    assert_eq!(*status, want_status, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let challenge = headers
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    if want_status == StatusCode::UNAUTHORIZED {
        assert!(
            challenge
                .as_deref()
                .is_some_and(|value| value.starts_with("Basic ")),
            "{challenge:?}"
        );
    } else {
        assert_eq!(challenge, None);
    }
}

#[tokio::test]
async fn both_client_authentications_give_a_token_that_works_for_the_keys_account_only() {
    let app = spawn(fast).await;
    let envs = envs(&app.config, &Stack::SqliteLocal);
    let account = random_account();
    let key = create_key(&envs, &account);
    until_issued(&app.base, &key).await;
    let list = app.url(&format!("/mtls/account/{account}/certificates"));
    let other = app.url(&format!("/mtls/account/{}/certificates", random_account()));
    for (status, headers, body) in [
        by_basic(&app.base, &key).await,
        by_post(&app.base, &key).await,
    ] {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["pragma"], "no-cache");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        let token = body["access_token"].as_str().unwrap();
        let claims = claims(token);
        assert_eq!(claims["accounts"], serde_json::json!([account]));
        assert_eq!(
            claims["privileges"],
            serde_json::json!(["MTLS_READ_INTERNAL", "MTLS_WRITE_INTERNAL"])
        );
        assert_eq!(claims["sub"], key.consumer_key.as_str());
        assert_eq!(get(&list, token).await, StatusCode::OK);
        assert_eq!(get(&other, token).await, StatusCode::FORBIDDEN);
    }

    // A scope narrows to a subset of the key's privileges; one it does not hold is refused.
    let (status, _, body) = request(
        &app.base,
        Some(&basic(&key.consumer_key, &key.consumer_secret)),
        FORM,
        form(&[
            ("grant_type", "client_credentials"),
            ("scope", "MTLS_READ_INTERNAL"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "MTLS_READ_INTERNAL");
    let read_only = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get(&list, &read_only).await, StatusCode::OK);
    let create = client()
        .post(&list)
        .bearer_auth(&read_only)
        .json(&serde_json::json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), StatusCode::FORBIDDEN);
    let refused = request(
        &app.base,
        Some(&basic(&key.consumer_key, &key.consumer_secret)),
        FORM,
        form(&[
            ("grant_type", "client_credentials"),
            ("scope", "MTLS_READ_INTERNAL MTLS_FORWARD"),
        ]),
    )
    .await;
    assert_oauth_error(&refused, StatusCode::BAD_REQUEST, "invalid_scope");

    // Audited under the key's account, naming the key.
    let audit = app.url(&format!("/mtls/account/{account}/audit"));
    let trail: Value = client()
        .get(&audit)
        .bearer_auth(&read_only)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        trail["entries"].as_array().unwrap().iter().any(|entry| {
            entry["action"] == "oauth2.token"
                && entry["actor"] == format!("oauth:{}", key.consumer_key)
        }),
        "{trail}"
    );
    app.running.stop().await.unwrap();
}

/// A platform key (`*`): its token acts on every account.
#[tokio::test]
async fn a_platform_keys_token_covers_every_account() {
    let app = spawn(fast).await;
    let key = create_key(&envs(&app.config, &Stack::SqliteLocal), "*");
    let body = until_issued(&app.base, &key).await;
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(claims(token)["accounts"], serde_json::json!(["*"]));
    for account in [random_account(), random_account()] {
        let list = app.url(&format!("/mtls/account/{account}/certificates"));
        assert_eq!(get(&list, token).await, StatusCode::OK);
    }
    app.running.stop().await.unwrap();
}

/// With `auth.audience` and `auth.issuer` set, the gateway requires them in every token: its
/// own tokens carry them.
#[tokio::test]
async fn its_tokens_carry_the_required_audience_and_issuer() {
    let app = spawn(|config| {
        fast(config);
        config.auth.audience = vec!["mtls-gateway".to_owned(), "other".to_owned()];
        config.auth.issuer = vec!["https://gateway.example".to_owned()];
    })
    .await;
    let account = random_account();
    let key = create_key(&envs(&app.config, &Stack::SqliteLocal), &account);
    let body = until_issued(&app.base, &key).await;
    let token = body["access_token"].as_str().unwrap();
    let claims = claims(token);
    assert_eq!(claims["aud"], "mtls-gateway");
    assert_eq!(claims["iss"], "https://gateway.example");
    let list = app.url(&format!("/mtls/account/{account}/certificates"));
    assert_eq!(get(&list, token).await, StatusCode::OK);
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn every_refusal_is_its_rfc_6749_error() {
    let app = spawn(fast).await;
    let envs = envs(&app.config, &Stack::SqliteLocal);
    let key = create_key(&envs, &random_account());
    let issued = until_issued(&app.base, &key).await;
    let grant = ("grant_type", "client_credentials");

    // Wrong secret, unknown client: by Basic 401 with a challenge, in the form 400.
    let wrong = basic(&key.consumer_key, "not-the-secret");
    assert_oauth_error(
        &request(&app.base, Some(&wrong), FORM, form(&[grant])).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    let unknown = basic("ck_unknown", &key.consumer_secret);
    assert_oauth_error(
        &request(&app.base, Some(&unknown), FORM, form(&[grant])).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    for (id, secret) in [
        (key.consumer_key.as_str(), "not-the-secret"),
        ("ck_unknown", key.consumer_secret.as_str()),
        (key.consumer_key.as_str(), &key.consumer_secret[1..]),
    ] {
        let body = form(&[grant, ("client_id", id), ("client_secret", secret)]);
        assert_oauth_error(
            &request(&app.base, None, FORM, body).await,
            StatusCode::BAD_REQUEST,
            "invalid_client",
        );
    }
    // No client authentication at all.
    assert_oauth_error(
        &request(&app.base, None, FORM, form(&[grant])).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    let good = basic(&key.consumer_key, &key.consumer_secret);
    // Missing and wrong grant types.
    assert_oauth_error(
        &request(&app.base, Some(&good), FORM, String::new()).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_oauth_error(
        &request(
            &app.base,
            Some(&good),
            FORM,
            form(&[("grant_type", "password")]),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );
    // Both methods at once.
    let both = form(&[
        grant,
        ("client_id", &key.consumer_key),
        ("client_secret", &key.consumer_secret),
    ]);
    assert_oauth_error(
        &request(&app.base, Some(&good), FORM, both).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // JSON instead of a form.
    let json = serde_json::json!({
        "grant_type": "client_credentials",
        "client_id": key.consumer_key,
        "client_secret": key.consumer_secret,
    })
    .to_string();
    assert_oauth_error(
        &request(&app.base, None, "application/json", json).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // A valid form labelled as something else is still refused.
    let mislabelled = form(&[
        grant,
        ("client_id", &key.consumer_key),
        ("client_secret", &key.consumer_secret),
    ]);
    for content_type in ["application/json", "text/plain", "multipart/form-data"] {
        assert_oauth_error(
            &request(&app.base, None, content_type, mislabelled.clone()).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    // A repeated parameter.
    assert_oauth_error(
        &request(&app.base, Some(&good), FORM, form(&[grant, grant])).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // Over the cap: announced by Content-Length, and streamed without one.
    let padded = format!("{}&pad={}", form(&[grant]), "a".repeat(9000));
    let answer = request(&app.base, Some(&good), FORM, padded).await;
    assert_oauth_error(&answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        answer.2["error_description"]
            .as_str()
            .unwrap()
            .contains("larger"),
        "{}",
        answer.2
    );
    let (status, body) = chunked(&app.base, &good, &form(&[grant]), 10_000).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(r#""error":"invalid_request","error_description":"the form is larger"#),
        "{body}"
    );

    // An announced length past the cap is refused before a byte of the body is read: the answer
    // comes while the client has sent none (a server reading first would wait for it).
    let (status, body) = announced(&app.base, &good, 100_000).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("the form is larger"), "{body}");

    // Revoked: no new token (within the sync interval); one issued before lives until it expires.
    cli(&envs, &["app-key", "revoke", &key.consumer_key]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = by_basic(&app.base, &key).await;
        if answer.0 == StatusCode::UNAUTHORIZED {
            assert_oauth_error(&answer, StatusCode::UNAUTHORIZED, "invalid_client");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked key still gets tokens"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_oauth_error(
        &by_post(&app.base, &key).await,
        StatusCode::BAD_REQUEST,
        "invalid_client",
    );
    let account = claims(issued["access_token"].as_str().unwrap())["accounts"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        get(
            &app.url(&format!("/mtls/account/{account}/certificates")),
            issued["access_token"].as_str().unwrap()
        )
        .await,
        StatusCode::OK,
        "documented: tokens issued before the revocation live until they expire"
    );
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn the_configured_lifetime_is_honoured() {
    let app = spawn(|config| {
        fast(config);
        config.auth.token_endpoint.lifetime_seconds = std::time::Duration::from_secs(123);
    })
    .await;
    let key = create_key(&envs(&app.config, &Stack::SqliteLocal), &random_account());
    let before = mtls_api::now();
    let body = until_issued(&app.base, &key).await;
    let after = mtls_api::now();
    assert_eq!(body["expires_in"], 123);
    let claims = claims(body["access_token"].as_str().unwrap());
    let exp = claims["exp"].as_i64().unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(exp - iat, 123);
    assert!((before..=after).contains(&iat), "{claims}");
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn disabled_it_is_not_served() {
    let app = spawn(|config| config.auth.token_endpoint.enabled = false).await;
    let (status, _, body) = request(
        &app.base,
        Some(&basic("ck", "secret")),
        FORM,
        form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn it_is_rate_limited_per_ip_before_authentication() {
    let app = spawn(|config| {
        config.rate_limits.configuration.per_ip_per_second = 0.01;
        config.rate_limits.configuration.per_ip_burst = 3.0;
    })
    .await;
    let wrong = basic("ck_unknown", "secret");
    let body = form(&[("grant_type", "client_credentials")]);
    for _ in 0..3 {
        let (status, _, answer) = request(&app.base, Some(&wrong), FORM, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    }
    let (status, headers, _) = request(&app.base, Some(&wrong), FORM, body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.get("retry-after").is_some());
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn oauthlib_fetches_tokens_by_both_methods() {
    if !oauthlib_available() {
        return;
    }
    let app = spawn(fast).await;
    let account = random_account();
    let key = create_key(&envs(&app.config, &Stack::SqliteLocal), &account);
    until_issued(&app.base, &key).await;
    let token_url = app.url("/oauth2/token");
    let resource = app.url(&format!("/mtls/account/{account}/certificates"));
    for extra in [
        &[][..],
        &["--post"][..],
        &["--scope", "MTLS_READ_INTERNAL"][..],
    ] {
        let output = Command::new(python())
            .arg(workspace_root().join("scripts/oauth2_client_credentials.py"))
            .args(extra)
            .arg("--")
            .args([
                &token_url,
                &resource,
                &key.consumer_key,
                &key.consumer_secret,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(answer["status"], 200, "{extra:?}: {answer}");
        assert_eq!(answer["token"]["token_type"], "Bearer");
        assert_eq!(answer["token"]["expires_in"], 3600);
    }
    app.running.stop().await.unwrap();
}

/// The real `serve` at debug level: the secret, the Basic credentials and the token it got
/// never reach the log.
#[tokio::test]
async fn no_secret_or_token_reaches_the_log() {
    let dir = temp_dir("token-log");
    let data = dir.join("data");
    let envs = vec![
        (
            "MTLS_GATEWAY__DATA_DIR".to_owned(),
            data.display().to_string(),
        ),
        (
            "MTLS_GATEWAY__RUNTIME__SYNC_INTERVAL_SECONDS".to_owned(),
            "0.2".to_owned(),
        ),
    ];
    let log = dir.join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtls-gateway"))
        .arg("serve")
        .current_dir(&dir)
        .envs(envs.iter().cloned())
        .env("MTLS_GATEWAY__SERVER__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "debug")
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
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let address: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':'))
                    .collect();
                let _ = sender.send(address);
            }
        }
    });
    let address = receiver.recv_timeout(Duration::from_secs(30)).unwrap();
    let base = format!("http://{address}");
    let key = create_key(&envs, &random_account());
    let issued = until_issued(&base, &key).await;
    let (status, _, posted) = by_post(&base, &key).await;
    assert_eq!(status, StatusCode::OK);
    let wrong_secret = format!("{}-wrong", key.consumer_secret);
    let refused = request(
        &base,
        None,
        FORM,
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &key.consumer_key),
            ("client_secret", &wrong_secret),
        ]),
    )
    .await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(200));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("token issued"), "{text}");
    assert!(text.contains("client authentication failed"), "{text}");
    let basic_value = basic(&key.consumer_key, &key.consumer_secret);
    for needle in [
        key.consumer_secret.as_str(),
        wrong_secret.as_str(),
        basic_value.trim_start_matches("Basic "),
        issued["access_token"].as_str().unwrap(),
        posted["access_token"].as_str().unwrap(),
    ] {
        assert!(
            !text.contains(needle),
            "the log contains a secret: {needle}"
        );
    }
}
