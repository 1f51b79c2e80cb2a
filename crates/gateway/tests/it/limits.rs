//! Rate limits (SPEC 7.3): 429 with `Retry-After` after the burst, recovery after the refill,
//! per IP before authentication and per account only after it.

use std::time::Duration;

use mtls_auth::Privilege;
use mtls_gateway::config::GroupLimits;
use mtls_test_support::random_account;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{client, spawn};

#[tokio::test]
async fn buckets_per_ip_and_per_account() {
    let app = spawn(|config| {
        config.rate_limits.tester = GroupLimits {
            per_ip_per_second: 2.0,
            per_ip_burst: 3.0,
            ..GroupLimits::default()
        };
        config.rate_limits.configuration = GroupLimits {
            per_account_per_second: 2.0,
            per_account_burst: 2.0,
            ..GroupLimits::default()
        };
    })
    .await;
    let account = random_account();
    let token = app.token(&[&account, "other-account"], &[Privilege::ReadInternal]);
    let tester = app.url(&format!("/mtls/account/{account}/p12-test/multipart"));
    let form = || reqwest::multipart::Form::new().text("password", "");

    // Per IP, tester group: a burst of 3, then 429 with Retry-After, then a refill.
    for _ in 0..3 {
        let response = client()
            .post(&tester)
            .bearer_auth(&token)
            .multipart(form())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "missing_file, but counted"
        );
    }
    let response = client()
        .post(&tester)
        .bearer_auth(&token)
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Other groups are not affected by the tester's bucket.
    let list = app.url(&format!("/mtls/account/{account}/certificates"));
    assert_eq!(
        client()
            .get(&list)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let response = client()
        .post(&tester)
        .bearer_auth(&token)
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "one token refilled"
    );

    // Per account, configuration group: unauthenticated calls do not drain the account's bucket.
    let other = app.url("/mtls/account/other-account/certificates");
    for _ in 0..5 {
        assert_eq!(
            client().get(&other).send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        client()
            .get(&other)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        client()
            .get(&other)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let response = client()
        .get(&other)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // `account` already spent one token above; it has one left, its own.
    assert_eq!(
        client()
            .get(&list)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        client()
            .get(&other)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    app.running.stop().await.unwrap();
}

/// Sends a request head announcing a 20 MB body and never sends the body; the status line of
/// whatever answers within 5 s (`None` when nothing does: the gateway is waiting for the body).
async fn head_without_body(
    app: &crate::support::TestApp,
    method: &str,
    path: &str,
    content_type: &str,
    token: Option<&str>,
) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n\
         Content-Length: 20000000\r\n"
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = stream.read(&mut buffer).await.unwrap();
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..read]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1)?.parse().ok()
}

/// ARCHITECTURE "Authorization before anything else": a caller without a credential, without
/// the privilege, or for another account is answered at once on every route that takes a body,
/// while the announced 20 MB never come.
#[tokio::test]
async fn a_refused_caller_is_answered_before_the_body() {
    let app = spawn(|_| {}).await;
    let account = random_account();
    let json = "application/json";
    let multipart = "multipart/form-data; boundary=xyz";
    let certificates = format!("/mtls/account/{account}/certificates");
    let mappings = format!("/api/account/{account}/configuration/ac-common/mtls");
    let writes = [
        ("POST", certificates.clone(), json),
        ("PUT", certificates.clone(), json),
        ("POST", format!("{certificates}/by-file"), multipart),
        ("PUT", format!("{certificates}/by-file"), multipart),
        ("POST", format!("{certificates}/byFile"), multipart),
        ("PUT", format!("{certificates}/byFile"), multipart),
        ("POST", format!("{certificates}/activate/1"), json),
        ("POST", format!("{mappings}?v=3.0"), json),
        ("PUT", format!("{mappings}/1?v=3.0"), json),
    ];
    let reads = [
        (
            "POST",
            format!("/api/account/{account}/checks/serviceUrlMappings"),
            json,
        ),
        (
            "POST",
            format!("/mtls/account/{account}/p12-test/multipart"),
            multipart,
        ),
    ];
    let all = [
        Privilege::ReadInternal,
        Privilege::WriteInternal,
        Privilege::Forward,
    ];
    let another_account = app.token(&["another-account"], &all);
    let read_only = app.token(&[&account], &[Privilege::ReadInternal, Privilege::Forward]);
    let write_only = app.token(&[&account], &[Privilege::WriteInternal, Privilege::Forward]);
    for (routes, lacking) in [(&writes[..], &read_only), (&reads[..], &write_only)] {
        for (method, path, content_type) in routes {
            for (token, expected) in [
                (None, 401),
                (Some(lacking.as_str()), 403),
                (Some(another_account.as_str()), 403),
            ] {
                assert_eq!(
                    head_without_body(&app, method, path, content_type, token).await,
                    Some(expected),
                    "{method} {path} with {}",
                    if token.is_some() {
                        "a token"
                    } else {
                        "no token"
                    }
                );
            }
        }
    }
    // The global check names its accounts in the body: the privilege is checked before it.
    for (token, expected) in [(None, 401), (Some(write_only.as_str()), 403)] {
        assert_eq!(
            head_without_body(&app, "POST", "/mtls/mapping?v=2", json, token).await,
            Some(expected)
        );
    }
    app.running.stop().await.unwrap();
}

/// Issue 17 item 11: per-account caps on live certificates and live mappings (409 with their
/// codes; a deleted one frees its place), held under concurrent creates, on every stack.
#[tokio::test]
async fn per_account_caps_on_certificates_and_mappings() {
    use base64::Engine;
    use serde_json::json;
    let Some(fixtures) = mtls_test_support::p12_fixtures() else {
        return;
    };
    let file = "openssl-default-p256.p12";
    let p12 = base64::engine::general_purpose::STANDARD.encode(fixtures.bytes(file));
    let password = fixtures.case(file).password.clone();
    let certificate = |name: &str| json!({ "name": name, "p12": p12, "password": password });
    for stack in crate::support::stacks() {
        let app = crate::support::spawn_on(&stack, |config| {
            config.accounts.max_certificates = 3;
            config.accounts.max_mappings = 4;
        })
        .await;
        let account = random_account();
        let token = app.token(
            &[&account],
            &[Privilege::ReadInternal, Privilege::WriteInternal],
        );
        let certificates = app.url(&format!("/mtls/account/{account}/certificates"));
        let mappings = app.url(&format!(
            "/api/account/{account}/configuration/ac-common/mtls"
        ));
        let send = |request: reqwest::RequestBuilder| {
            let token = token.clone();
            async move {
                let response = request.bearer_auth(token).send().await.unwrap();
                let status = response.status();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };

        // Certificates: two, then a request for two more is refused whole, one more fits.
        let (status, body) = send(
            client()
                .post(&certificates)
                .json(&json!([certificate("c1"), certificate("c2")])),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let first = body["successfulySavedCertificates"][0]["id"]
            .as_i64()
            .unwrap();
        let (status, body) = send(
            client()
                .post(&certificates)
                .json(&json!([certificate("c3"), certificate("c4")])),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "certificate_limit_reached");
        let (status, body) = send(
            client()
                .post(&certificates)
                .json(&json!([certificate("c3")])),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = send(
            client()
                .post(&certificates)
                .json(&json!([certificate("c4")])),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "certificate_limit_reached");
        // Replacing one is not a create; deleting one frees its place.
        let (status, body) = send(
            client()
                .put(&certificates)
                .json(&json!([{ "id": first, "name": "c1", "p12": p12, "password": password }])),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = send(client().delete(format!("{certificates}/{first}"))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = send(
            client()
                .post(&certificates)
                .json(&json!([certificate("c4")])),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let certificate_id = body["successfulySavedCertificates"][0]["id"]
            .as_i64()
            .unwrap();

        // Mappings: three, then two more refused whole, one more fits, then activate is refused.
        let mapping = |name: &str| {
            json!({ "name": name, "certificationId": certificate_id, "serviceId": "1",
                    "url": format!("https://{name}.example/") })
        };
        let (status, body) = send(client().post(format!("{mappings}?v=3.0")).json(&json!([
            mapping("m1"),
            mapping("m2"),
            mapping("m3")
        ])))
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let first_mapping = body[0]["id"].as_i64().unwrap();
        let (status, body) = send(
            client()
                .post(format!("{mappings}?v=3.0"))
                .json(&json!([mapping("m4"), mapping("m5")])),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "mapping_limit_reached");
        let (status, body) = send(
            client()
                .post(format!("{mappings}?v=3.0"))
                .json(&json!([mapping("m4")])),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let activate = format!("{certificates}/activate/{certificate_id}");
        let (status, body) = send(
            client()
                .post(&activate)
                .json(&json!({"serviceName": "WEBHOOKS", "url": "https://hooks.example/a"})),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "mapping_limit_reached");
        let (status, _) = send(client().delete(format!("{mappings}/{first_mapping}?v=3.0"))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = send(
            client()
                .post(&activate)
                .json(&json!({"serviceName": "WEBHOOKS", "url": "https://hooks.example/a"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");

        // Concurrent creates on a fresh account: never more than the cap stored.
        let other = random_account();
        let token = app.token(
            &[&other],
            &[Privilege::ReadInternal, Privilege::WriteInternal],
        );
        let other_certificates = app.url(&format!("/mtls/account/{other}/certificates"));
        let creates = (0..8).map(|index| {
            client()
                .post(&other_certificates)
                .bearer_auth(&token)
                .json(&json!([certificate(&format!("r{index}"))]))
                .send()
        });
        let statuses: Vec<StatusCode> = futures_statuses(creates).await;
        let created = statuses
            .iter()
            .filter(|status| **status == StatusCode::CREATED)
            .count();
        assert!(
            statuses
                .iter()
                .all(|status| *status == StatusCode::CREATED || *status == StatusCode::CONFLICT),
            "{statuses:?}"
        );
        let listed: Vec<Value> = client()
            .get(&other_certificates)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed.len(), created, "{statuses:?}");
        assert_eq!(created, 3, "{statuses:?}");
        let id = listed[0]["id"].as_i64().unwrap();
        let other_mappings = app.url(&format!(
            "/api/account/{other}/configuration/ac-common/mtls"
        ));
        let creates = (0..8).map(|index| {
            client()
                .post(format!("{other_mappings}?v=3.0"))
                .bearer_auth(&token)
                .json(
                    &json!([{ "name": format!("r{index}"), "certificationId": id,
                                "serviceId": "1", "url": format!("https://r{index}.example/") }]),
                )
                .send()
        });
        let statuses = futures_statuses(creates).await;
        let listed: Vec<Value> = client()
            .get(format!("{other_mappings}?v=3.0"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed.len(), 4, "{statuses:?}");
        assert_eq!(
            statuses
                .iter()
                .filter(|status| **status == StatusCode::CREATED)
                .count(),
            4,
            "{statuses:?}"
        );
        app.running.stop().await.unwrap();
    }
}

/// Runs the requests at once; their statuses in order.
async fn futures_statuses<F>(requests: impl Iterator<Item = F>) -> Vec<StatusCode>
where
    F: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
{
    let handles: Vec<_> = requests.map(tokio::spawn).collect();
    let mut statuses = Vec::new();
    for handle in handles {
        statuses.push(handle.await.unwrap().unwrap().status());
    }
    statuses
}

/// Mapping and check bodies: the item past the cap is refused before it is parsed (what follows
/// it is never looked at, here not even valid JSON), so an array of many tiny items never
/// becomes a vector of full-size inputs (docs/runtime.md: 549 MiB for 4 MB before).
#[tokio::test]
async fn item_caps_apply_while_a_body_is_parsed() {
    let app = spawn(|_| {}).await;
    let account = random_account();
    let token = app.token(
        &[&account],
        &[Privilege::ReadInternal, Privilege::WriteInternal],
    );
    let mut mappings = String::from("[");
    mappings.push_str(&"{},".repeat(1001));
    mappings.push_str("not json");
    let mut checks = String::from("[");
    checks.push_str(&"{\"serviceName\":\"IDP\",\"url\":\"https://a.example/\"},".repeat(1001));
    checks.push_str("not json");
    for (path, body, code) in [
        (
            format!("/api/account/{account}/configuration/ac-common/mtls?v=3.0"),
            mappings,
            "invalid_item_count",
        ),
        (
            format!("/api/account/{account}/checks/serviceUrlMappings"),
            checks,
            "too_many_items",
        ),
    ] {
        let response = client()
            .post(app.url(&path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    app.running.stop().await.unwrap();
}

/// A request head past `server.max_request_head_bytes` (or with more than 100 fields) is a
/// 431 with a JSON body, over HTTP/1.1 and HTTP/2, never hyper's own bodiless one.
#[tokio::test]
async fn a_request_head_too_large_is_a_431_with_a_json_body() {
    use crate::listener::{error_code, raw_exchange};
    let app = spawn(|config| config.server.max_request_head_bytes = 4096).await;
    let address = app.running.address;
    let head = |filler: usize| {
        format!(
            "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(filler)
        )
    };
    // Just under the limit: served.
    let answer = raw_exchange(address, head(3900).as_bytes()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for request in [
        head(5000),
        // Far past hyper's own buffer too.
        head(600_000),
        format!(
            "GET /healthz HTTP/1.1\r\nHost: a\r\n{}\r\n",
            (0..101)
                .map(|index| format!("x-{index}: y\r\n"))
                .collect::<String>()
        ),
    ] {
        let answer = raw_exchange(address, request.as_bytes()).await;
        assert_eq!(answer.status, 431, "{} bytes", request.len());
        assert_eq!(error_code(&answer), "request_header_too_large");
    }
    // With the default limit (64 KiB), a 70 kB head too.
    let defaults = spawn(|_| {}).await;
    let answer = raw_exchange(defaults.running.address, head(70_000).as_bytes()).await;
    assert_eq!(answer.status, 431);
    assert_eq!(error_code(&answer), "request_header_too_large");

    // HTTP/2 (prior knowledge): a header list past the limit.
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    for (filler, status) in [(100, 200), (5000, 431)] {
        let request = hyper::Request::get(format!("http://{address}/healthz"))
            .header("x-filler", "a".repeat(filler))
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), status);
        if status == 431 {
            use http_body_util::BodyExt;
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["code"], "request_header_too_large");
        }
    }
    app.running.stop().await.unwrap();
    defaults.running.stop().await.unwrap();
}
