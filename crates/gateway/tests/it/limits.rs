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
