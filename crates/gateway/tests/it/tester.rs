//! The validate-only tester over HTTP (SPEC 8, 4.2, 7.1).

use mtls_auth::Privilege;
use mtls_test_support::p12_fixtures;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::support::{client, spawn};

fn form(file: Vec<u8>, password: &str) -> Form {
    Form::new()
        .part("file", Part::bytes(file).file_name("client.p12"))
        .text("password", password.to_owned())
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["requestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    (status, body["error"]["code"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn every_fixture_answers_with_its_report_or_its_code() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let app = spawn(|_| {}).await;
    let token = app.token(&["123"], &[Privilege::ReadInternal]);
    let url = app.url("/mtls/account/123/p12-test/multipart");
    for case in &fixtures.cases {
        let response = client()
            .post(&url)
            .bearer_auth(&token)
            .multipart(form(fixtures.bytes(&case.file), &case.password))
            .send()
            .await
            .unwrap();
        if case.expect == "ok" {
            assert_eq!(response.status(), StatusCode::OK, "{}", case.file);
            let report: Value = response.json().await.unwrap();
            assert_eq!(report["usable"], true);
            if let Some(key_type) = &case.key_type {
                assert_eq!(report["keyType"], key_type.as_str(), "{}", case.file);
            }
            if let Some(length) = case.chain_length {
                assert_eq!(report["chainLength"], length, "{}", case.file);
            }
            if let Some(warning) = &case.warning {
                let codes: Vec<&str> = report["warnings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w["code"].as_str().unwrap())
                    .collect();
                assert!(
                    codes.contains(&warning.as_str()),
                    "{}: {codes:?}",
                    case.file
                );
            }
            for key in [
                "subject",
                "issuer",
                "serialNumber",
                "notBefore",
                "notAfter",
                "fingerprintSha256",
            ] {
                assert!(report[key].is_string(), "{}: {key}", case.file);
            }
            assert!(report["protection"]["keyEncryption"].is_array());
            assert!(report["hasClientAuthUsage"].is_boolean());
        } else {
            let (status, code) = error_code(response).await;
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::BAD_REQUEST, case.expect.as_str()),
                "{}",
                case.file
            );
        }
    }
    // Part names are matched case-insensitively.
    let case = fixtures.case("openssl-default-p256.p12");
    let upper = Form::new()
        .part("FILE", Part::bytes(fixtures.bytes(&case.file)))
        .text("PassWord", case.password.clone());
    let response = client()
        .post(&url)
        .bearer_auth(&token)
        .multipart(upper)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn size_type_and_part_errors() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let app = spawn(|config| config.intake.max_file_bytes = 1024).await;
    let token = app.token(&["123"], &[Privilege::ReadInternal]);
    let url = app.url("/mtls/account/123/p12-test/multipart");
    let big = fixtures.bytes("openssl-default-rsa4096.p12");
    assert!(big.len() > 1024);
    let response = client()
        .post(&url)
        .bearer_auth(&token)
        .multipart(form(big, "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large".to_owned()
        )
    );

    // A body far past the limit is cut off by the body limit, still as a JSON 413.
    let huge = vec![0u8; 512 * 1024];
    let response = client()
        .post(&url)
        .bearer_auth(&token)
        .multipart(form(huge, "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let response = client()
        .post(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"file": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type".to_owned()
        )
    );

    let no_file = Form::new().text("password", "x");
    let response = client()
        .post(&url)
        .bearer_auth(&token)
        .multipart(no_file)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (StatusCode::BAD_REQUEST, "missing_file".to_owned())
    );

    let small = b"tiny".to_vec();
    let response = client()
        .post(&url)
        .bearer_auth(&token)
        .header("LP-forward-url", "https://example.com/")
        .multipart(form(small, ""))
        .send()
        .await
        .unwrap();
    // The live form runs the same checks first: a broken file never reaches the target.
    assert_eq!(
        error_code(response).await,
        (StatusCode::BAD_REQUEST, "p12_malformed".to_owned())
    );
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn health_readiness_and_json_fallbacks() {
    let app = spawn(|_| {}).await;
    let health: Value = client()
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = client().get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let missing = client().get(app.url("/no/such/path")).send().await.unwrap();
    assert_eq!(
        error_code(missing).await,
        (StatusCode::NOT_FOUND, "not_found".to_owned())
    );
    let wrong_method = client()
        .get(app.url("/mtls/account/1/p12-test/multipart"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(wrong_method).await,
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed".to_owned()
        )
    );
    app.running.stop().await.unwrap();
}
