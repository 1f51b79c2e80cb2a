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
