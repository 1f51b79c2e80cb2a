//! The audit trail: an entry for every audited action, newest first, paginated, no secrets,
//! and no way to read another account's trail.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mtls_auth::Privilege;
use mtls_test_support::{p12_fixtures, random_account};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{client, spawn};

#[tokio::test]
async fn every_audited_action_is_recorded_without_secrets() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let app = spawn(|_| {}).await;
    let account = random_account();
    let token = app.token(
        &[&account],
        &[Privilege::ReadInternal, Privilege::WriteInternal],
    );
    let base = app.url(&format!("/mtls/account/{account}"));
    let case = fixtures.case("openssl-default-p256.p12");
    let p12 = STANDARD.encode(fixtures.bytes(&case.file));
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

    let item = json!([{ "name": "audited", "p12": p12, "password": case.password }]);
    let (status, body) = send(client().post(format!("{base}/certificates")).json(&item)).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["successfulySavedCertificates"][0]["id"]
        .as_i64()
        .unwrap();
    let mut replace = item.clone();
    replace[0]["id"] = json!(id);
    assert_eq!(
        send(client().put(format!("{base}/certificates")).json(&replace))
            .await
            .0,
        StatusCode::OK
    );
    let mut bad = item.clone();
    bad[0]["password"] = json!("wrong-password-never-logged");
    assert_eq!(
        send(client().post(format!("{base}/certificates")).json(&bad))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let collect = app.url(&format!("/api/account/{account}/certificate/{id}"));
    assert_eq!(
        client()
            .get(&collect)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let (status, mapping) = send(
        client()
            .post(format!("{base}/certificates/activate/{id}"))
            .json(&json!({"serviceName": "IDP", "url": "https://idp.example/"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let mapping_id = mapping["id"].as_i64().unwrap();
    let mappings = app.url(&format!(
        "/api/account/{account}/configuration/ac-common/mtls"
    ));
    let mut update = mapping.clone();
    update["enable"] = json!(false);
    assert_eq!(
        send(
            client()
                .put(format!("{mappings}/{mapping_id}?v=3.0"))
                .json(&update)
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        send(client().delete(format!("{mappings}/{mapping_id}?v=3.0")))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send(client().delete(format!("{base}/certificates/{id}")))
            .await
            .0,
        StatusCode::OK
    );
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(fixtures.bytes(&case.file)),
        )
        .text("password", case.password.clone());
    let tested = client()
        .post(format!("{base}/p12-test/multipart"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(tested.status(), StatusCode::OK);

    let (status, trail) = send(client().get(format!("{base}/audit"))).await;
    assert_eq!(status, StatusCode::OK);
    let entries = trail["entries"].as_array().unwrap();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap(),
                entry["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    let expected_oldest_first = [
        ("certificate.create", "success"),
        ("certificate.update", "success"),
        ("certificate.create", "p12_wrong_password"),
        ("certificate.collect", "success"),
        ("certificate.activate", "success"),
        ("mapping.update", "success"),
        ("mapping.delete", "success"),
        ("certificate.delete", "success"),
        ("tester.run", "success"),
    ];
    let mut sorted = actions.clone();
    sorted.sort();
    let mut expected: Vec<_> = expected_oldest_first.to_vec();
    expected.sort();
    assert_eq!(sorted, expected, "{trail}");
    assert!(entries.iter().all(
        |entry| entry["actor"] == "bearer:test-suite" && entry["requestId"].as_str().is_some()
    ));
    assert!(
        entries
            .iter()
            .any(|entry| entry["action"] == "certificate.delete"
                && entry["targetIds"] == json!([id.to_string()]))
    );
    let created = entries
        .iter()
        .find(|entry| entry["action"] == "certificate.create" && entry["outcome"] == "success")
        .unwrap();
    assert_eq!(created["targetIds"], json!([id.to_string()]));
    let ats: Vec<&str> = entries
        .iter()
        .map(|entry| entry["at"].as_str().unwrap())
        .collect();
    assert!(
        ats.windows(2).all(|pair| pair[0] >= pair[1]),
        "newest first"
    );
    let text = trail.to_string();
    for secret in [
        case.password.as_str(),
        "wrong-password-never-logged",
        &p12[..40],
    ] {
        assert!(!text.contains(secret), "the audit trail holds a secret");
    }

    // Pages of 4, following `next`, give the same entries.
    let mut paged = Vec::new();
    let mut url = format!("{base}/audit?limit=4");
    loop {
        let (_, page) = send(client().get(&url)).await;
        paged.extend(
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| entry["id"].clone()),
        );
        match page["next"].as_str() {
            Some(next) => url = format!("{base}/audit?limit=4&before={next}"),
            None => break,
        }
    }
    assert_eq!(
        paged,
        entries
            .iter()
            .map(|entry| entry["id"].clone())
            .collect::<Vec<_>>()
    );
    let (_, future) = send(client().get(format!("{base}/audit?since=2999-01-01T00:00:00Z"))).await;
    assert_eq!(future["entries"], json!([]));
    assert_eq!(
        send(client().get(format!("{base}/audit?limit=0"))).await.0,
        StatusCode::BAD_REQUEST
    );

    // Another account: 403 on this trail; its own trail is empty.
    let stranger = random_account();
    let other = app.token(&[&stranger], &[Privilege::ReadInternal]);
    let response = client()
        .get(format!("{base}/audit"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let own: Value = client()
        .get(app.url(&format!("/mtls/account/{stranger}/audit")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own["entries"], json!([]));
    app.running.stop().await.unwrap();
}

// ---- The caller's request id in the audit trail (issue 18, item 2; SPEC 6.2) --------------

/// A caller's `X-Request-Id` (128 characters, the longest kept: the audit column holds it on
/// MariaDB too) is the request id of a configuration call: in its error body, its answer's
/// header and its audit entry.
#[tokio::test]
async fn a_callers_request_id_is_in_the_audit_entry_and_the_error_body() {
    for stack in crate::support::stacks() {
        let app = crate::support::spawn_on(&stack, |_| {}).await;
        let account = random_account();
        let token = app.token(
            &[&account],
            &[Privilege::ReadInternal, Privilege::WriteInternal],
        );
        let base = app.url(&format!("/mtls/account/{account}"));
        let id = format!("{}-{}", account, "r".repeat(127 - account.len()));
        assert_eq!(id.len(), 128);
        let response = client()
            .delete(format!("{base}/certificates/424242"))
            .bearer_auth(&token)
            .header("X-Request-Id", &id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{stack:?}");
        assert_eq!(response.headers()["x-request-id"], id.as_str());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["requestId"], id.as_str(), "{stack:?}");

        let trail: Value = client()
            .get(format!("{base}/audit"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entries = trail["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{stack:?}: {trail}");
        assert_eq!(entries[0]["action"], "certificate.delete");
        assert_eq!(entries[0]["outcome"], "not_found");
        assert_eq!(entries[0]["requestId"], id.as_str(), "{stack:?}");
        app.running.stop().await.unwrap();
    }
}
