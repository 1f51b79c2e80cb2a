//! Mappings (SPEC 5) and the runtime checks (SPEC 6.1), on every stack.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mtls_auth::Privilege;
use mtls_test_support::{P12Fixtures, p12_fixtures, random_account, short_lived_p12};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, client, spawn_on, stacks};

struct Account<'a> {
    app: &'a TestApp,
    id: String,
    token: String,
}

struct Answer {
    status: StatusCode,
    body: Value,
    revision: Option<i64>,
}

impl Answer {
    fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

impl<'a> Account<'a> {
    fn new(app: &'a TestApp) -> Self {
        let id = random_account();
        let token = app.token(&[&id], &[Privilege::ReadInternal, Privilege::WriteInternal]);
        Self { app, id, token }
    }

    fn mappings_url(&self, suffix: &str) -> String {
        self.app.url(&format!(
            "/api/account/{}/configuration/ac-common/mtls{suffix}",
            self.id
        ))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.bearer_auth(&self.token).send().await.unwrap();
        let status = response.status();
        let revision = response
            .headers()
            .get("ac-revision")
            .map(|value| value.to_str().unwrap().parse().unwrap());
        if let (Some(revision), Some(etag)) = (revision, response.headers().get("etag")) {
            assert_eq!(etag.to_str().unwrap(), format!("\"{revision}\""));
        }
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            body,
            revision,
        }
    }

    async fn certificate(&self, fixtures: &P12Fixtures, file: &str, name: &str) -> i64 {
        let case = fixtures.case(file);
        let item = json!([{ "name": name, "p12": STANDARD.encode(fixtures.bytes(file)), "password": case.password }]);
        let url = self
            .app
            .url(&format!("/mtls/account/{}/certificates", self.id));
        let answer = self.send(client().post(url).json(&item)).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body["successfulySavedCertificates"][0]["id"]
            .as_i64()
            .unwrap()
    }

    async fn create(&self, mappings: Value) -> Answer {
        self.send(client().post(self.mappings_url("?v=3.0")).json(&mappings))
            .await
    }

    async fn exists(&self, service: &str, url: &str) -> bool {
        let check = self.app.url(&format!(
            "/api/account/{}/checks/serviceUrlMappings",
            self.id
        ));
        let answer = self
            .send(
                client()
                    .post(check)
                    .json(&json!([{ "serviceName": service, "url": url }])),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.body[0]["serviceName"], service);
        assert_eq!(answer.body[0]["url"], url);
        answer.body[0]["exist"].as_bool().unwrap()
    }
}

fn mapping(name: &str, certificate: i64, service: &str, url: &str, site: &str) -> Value {
    json!({ "name": name, "certificationId": certificate.to_string(), "serviceId": service, "url": url, "siteId": site, "enable": true })
}

#[tokio::test]
async fn mapping_api_rules_on_every_stack() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    for stack in stacks() {
        let app = spawn_on(&stack, |_| {}).await;
        let account = Account::new(&app);
        let certificate = account
            .certificate(&fixtures, "openssl-default-p256.p12", "c1")
            .await;
        let site = account.id.clone();

        // Create: 201, ids, strings where the contract says so, revision headers.
        let answer = account
            .create(json!([
                mapping("idp", certificate, "1", "HTTPS://IdP.Example:443", &site),
                { "name": "hooks", "certificationId": certificate, "serviceId": 2, "url": "https://hooks.example/in?b=2&a=1", "siteId": site },
            ]))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        let first = &answer.body[0];
        assert!(first["id"].as_i64().unwrap() > 0);
        assert_eq!(first["certificationId"], certificate.to_string());
        assert_eq!(first["serviceId"], "1");
        assert_eq!(first["url"], "https://idp.example/", "stored normalized");
        assert_eq!(first["siteId"], site.as_str());
        assert_eq!(
            (first["enable"].as_bool(), first["deleted"].as_bool()),
            (Some(true), Some(false))
        );
        assert_eq!(answer.body[1]["enable"], true, "enable defaults to true");
        let revision = answer.revision.unwrap();
        let id = first["id"].as_i64().unwrap();

        // Visible to the runtime at once, under the same normalization.
        assert!(account.exists("IDP", "https://idp.example").await);
        assert!(account.exists("IDP", "https://IDP.example:443/").await);
        assert!(!account.exists("IDP", "https://idp.example/other").await);
        assert!(!account.exists("WEBHOOKS", "https://idp.example/").await);
        assert!(
            !account
                .exists("NO_SUCH_SERVICE", "https://idp.example/")
                .await
        );
        assert!(
            account
                .exists("WEBHOOKS", "https://hooks.example/in?b=2&a=1")
                .await
        );
        assert!(
            !account
                .exists("WEBHOOKS", "https://hooks.example/in?a=1&b=2")
                .await,
            "query order matters"
        );

        // v is required.
        let answer = account.send(client().get(account.mappings_url(""))).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::BAD_REQUEST, Some("unsupported_version"))
        );

        // List and get carry the revision.
        let answer = account
            .send(client().get(account.mappings_url("?v=3.0")))
            .await;
        assert_eq!(
            (answer.status, answer.revision),
            (StatusCode::OK, Some(revision))
        );
        assert_eq!(answer.body.as_array().unwrap().len(), 2);
        let answer = account
            .send(client().get(account.mappings_url(&format!("/{id}?v=3.0"))))
            .await;
        assert_eq!(
            (answer.status, answer.body["name"].as_str()),
            (StatusCode::OK, Some("idp"))
        );
        let answer = account
            .send(client().get(account.mappings_url("/99999?v=3.0")))
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);

        // Every validation rule, all reported at once, and nothing stored (atomic).
        let other = Account::new(&app);
        let foreign_certificate = other
            .certificate(&fixtures, "openssl-default-p256.p12", "theirs")
            .await;
        let answer = account
            .create(json!([
                mapping("ok-but-rolled-back", certificate, "1", "https://new.example/", &site),
                mapping("", certificate, "1", "https://a.example/", &site),
                mapping("wrong-site", certificate, "1", "https://b.example/", "someone-else"),
                mapping("foreign", foreign_certificate, "1", "https://c.example/", &site),
                mapping("bad-service", certificate, "42", "https://d.example/", &site),
                mapping("plain-http", certificate, "1", "http://e.example/", &site),
                mapping("fragment", certificate, "1", "https://f.example/#x", &site),
                mapping("userinfo", certificate, "1", "https://u:p@g.example/", &site),
                { "name": "bad-ca", "certificationId": certificate, "serviceId": "1", "url": "https://h.example/", "upstreamCaPem": "nope" },
            ]))
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        let codes: Vec<(i64, &str)> = answer.body["error"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                (
                    item["index"].as_i64().unwrap(),
                    item["code"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            codes,
            [
                (1, "invalid_name"),
                (2, "site_id_mismatch"),
                (3, "unknown_certificate"),
                (4, "unknown_service"),
                (5, "invalid_url"),
                (6, "invalid_url"),
                (7, "invalid_url"),
                (8, "invalid_upstream_ca"),
            ]
        );
        assert!(
            !account.exists("IDP", "https://new.example/").await,
            "the valid item was not stored"
        );
        let answer = account
            .send(client().get(account.mappings_url("?v=3.0")))
            .await;
        assert_eq!(
            (answer.body.as_array().unwrap().len(), answer.revision),
            (2, Some(revision))
        );

        // Duplicates: the same name, or the same triplet after normalization.
        let answer = account
            .create(json!([mapping(
                "idp",
                certificate,
                "2",
                "https://x.example/",
                &site
            )]))
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::CONFLICT, Some("name_conflict"))
        );
        let answer = account
            .create(json!([mapping(
                "idp-2",
                certificate,
                "1",
                "https://IDP.example",
                &site
            )]))
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::CONFLICT, Some("mapping_conflict"))
        );
        let answer = account
            .create(json!([
                mapping("dup-a", certificate, "3", "https://same.example/", &site),
                mapping(
                    "dup-b",
                    certificate,
                    "3",
                    "https://same.example:443/",
                    &site
                ),
            ]))
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::CONFLICT, Some("mapping_conflict"))
        );
        // The same triplet in another account is fine.
        let answer = other
            .create(json!([mapping(
                "idp",
                foreign_certificate,
                "1",
                "https://idp.example/",
                &other.id
            )]))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);

        // Update: If-Match with a stale revision is 412; the current one works; disabling hides it.
        let mut disabled = mapping("idp", certificate, "1", "https://idp.example/", &site);
        disabled["enable"] = json!(false);
        let stale = account
            .send(
                client()
                    .put(account.mappings_url(&format!("/{id}?v=3.0")))
                    .header("If-Match", format!("\"{}\"", revision - 1))
                    .json(&disabled),
            )
            .await;
        assert_eq!(
            (stale.status, stale.code()),
            (StatusCode::PRECONDITION_FAILED, Some("revision_mismatch"))
        );
        assert!(account.exists("IDP", "https://idp.example/").await);
        let updated = account
            .send(
                client()
                    .put(account.mappings_url(&format!("/{id}?v=3.0")))
                    .header("If-Match", format!("\"{revision}\""))
                    .json(&disabled),
            )
            .await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
        assert_eq!(updated.body["enable"], false);
        assert!(updated.revision.unwrap() > revision);
        assert!(
            !account.exists("IDP", "https://idp.example/").await,
            "a disabled mapping does not exist"
        );
        disabled["enable"] = json!(true);
        let answer = account
            .send(
                client()
                    .put(account.mappings_url(&format!("/{id}?v=3.0")))
                    .json(&disabled),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(account.exists("IDP", "https://idp.example/").await);

        // Delete: stale If-Match 412, then 200 with deleted: true; the check answers false.
        let stale = account
            .send(
                client()
                    .delete(account.mappings_url(&format!("/{id}?v=3.0")))
                    .header("If-Match", "\"1\""),
            )
            .await;
        assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
        let answer = account
            .send(client().delete(account.mappings_url(&format!("/{id}?v=3.0"))))
            .await;
        assert_eq!(
            (answer.status, answer.body["deleted"].as_bool()),
            (StatusCode::OK, Some(true))
        );
        assert!(
            !account.exists("IDP", "https://idp.example/").await,
            "a deleted mapping does not exist"
        );
        let answer = account
            .send(client().get(account.mappings_url(&format!("/{id}?v=3.0"))))
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        let answer = account
            .send(client().get(account.mappings_url("?v=3.0&include_deleted=true")))
            .await;
        assert_eq!(answer.body.as_array().unwrap().len(), 2);
        let answer = account
            .send(client().delete(account.mappings_url(&format!("/{id}?v=3.0"))))
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);

        // Another account's mappings: 403 on its path, 404 for its ids on ours.
        let theirs = other
            .send(client().get(other.mappings_url("?v=3.0")))
            .await
            .body[0]["id"]
            .as_i64()
            .unwrap();
        let answer = account
            .send(client().get(other.mappings_url("?v=3.0")))
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        let answer = account
            .send(client().get(account.mappings_url(&format!("/{theirs}?v=3.0"))))
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        app.running.stop().await.unwrap();
    }
}

#[tokio::test]
async fn the_global_check_v1_v2_and_account_coverage() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    for stack in stacks() {
        let app = spawn_on(&stack, |_| {}).await;
        let account = Account::new(&app);
        let certificate = account
            .certificate(&fixtures, "openssl-default-p256.p12", "c")
            .await;
        let answer = account
            .create(json!([mapping(
                "m",
                certificate,
                "1",
                "https://idp.example/token",
                &account.id
            )]))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
        let body = json!([
            { "serviceName": "IDP", "accountId": account.id, "url": "https://idp.example/token" },
            { "serviceName": "IDP", "accountId": account.id, "url": "https://idp.example/other" },
        ]);
        let reader = app.token(&[&account.id], &[Privilege::ReadInternal]);

        let response = client()
            .post(app.url("/mtls/mapping"))
            .bearer_auth(&reader)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        let v1: Value = serde_json::from_str(&text).unwrap();
        let key = format!(
            "CertificateMappingParamters{{serviceName='IDP', accountId='{}', url='https://idp.example/token'}}",
            account.id
        );
        assert_eq!(v1[&key], true, "{text}");
        let other = key.replace("/token", "/other");
        assert_eq!(v1[&other], false);
        assert_eq!(v1.as_object().unwrap().len(), 2);
        // Byte for byte, as the contract's clients parse it.
        assert!(text.contains(&format!("\"{key}\":true")), "{text}");

        let v2: Value = client()
            .post(app.url("/mtls/mapping?v=2"))
            .bearer_auth(&reader)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v2[0]["doExist"], true);
        assert_eq!(v2[1]["doExist"], false);
        assert_eq!(v2[0]["url"], "https://idp.example/token");
        assert_eq!(v2[0]["accountId"], account.id.as_str());

        // Every account in the body must be covered; an invalid one is a 400.
        let stranger = json!([{ "serviceName": "IDP", "accountId": "someone-else", "url": "https://idp.example/token" }]);
        let response = client()
            .post(app.url("/mtls/mapping?v=2"))
            .bearer_auth(&reader)
            .json(&stranger)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let invalid = json!([{ "serviceName": "IDP", "accountId": "bad id", "url": "x" }]);
        let response = client()
            .post(app.url("/mtls/mapping"))
            .bearer_auth(&reader)
            .json(&invalid)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let response = client()
            .post(app.url("/mtls/mapping?v=3"))
            .bearer_auth(&reader)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let response = client()
            .post(app.url("/mtls/mapping"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let forwarder = app.token(&[&account.id], &[Privilege::Forward]);
        let response = client()
            .post(app.url("/mtls/mapping"))
            .bearer_auth(&forwarder)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let too_many: Vec<Value> = (0..1001).map(|_| body[0].clone()).collect();
        let response = client()
            .post(app.url("/mtls/mapping"))
            .bearer_auth(&reader)
            .json(&too_many)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let star = app.token(&["*"], &[Privilege::ReadInternal]);
        let response = client()
            .post(app.url("/mtls/mapping?v=2"))
            .bearer_auth(&star)
            .json(&stranger)
            .send()
            .await
            .unwrap();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer[0]["doExist"], false);
        app.running.stop().await.unwrap();
    }
}

#[tokio::test]
async fn certificates_in_use_activation_and_expiry() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    for stack in stacks() {
        let app = spawn_on(&stack, |_| {}).await;
        let account = Account::new(&app);
        let certificate = account
            .certificate(&fixtures, "openssl-default-rsa2048.p12", "in-use")
            .await;

        // Activate: a mapping named <serviceName>-<uuid>.
        let activate = app.url(&format!(
            "/mtls/account/{}/certificates/activate/{certificate}",
            account.id
        ));
        let answer = account
            .send(
                client()
                    .post(&activate)
                    .json(&json!({"serviceName": "WEBHOOKS", "url": "https://hooks.example/a"})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        assert!(
            answer.body["name"]
                .as_str()
                .unwrap()
                .starts_with("WEBHOOKS-")
        );
        assert_eq!(answer.body["serviceId"], "2");
        assert!(account.exists("WEBHOOKS", "https://hooks.example/a").await);
        let answer = account
            .send(
                client()
                    .post(format!("{activate}?isValidateUrlEnabled=true"))
                    .json(&json!({"serviceName": "IDP", "url": "https://no-such-host.invalid/"})),
            )
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::FAILED_DEPENDENCY, Some("dns_failed"))
        );
        assert!(
            !account.exists("IDP", "https://no-such-host.invalid/").await,
            "nothing stored"
        );
        let answer = account
            .send(
                client()
                    .post(&activate)
                    .json(&json!({"serviceName": "NOPE", "url": "https://idp.example/"})),
            )
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::BAD_REQUEST, Some("unknown_service"))
        );

        // Deleting a certificate that an enabled mapping uses: 409, unless forced.
        let delete = app.url(&format!(
            "/mtls/account/{}/certificates/{certificate}",
            account.id
        ));
        let answer = account.send(client().delete(&delete)).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::CONFLICT, Some("certificate_in_use"))
        );
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("WEBHOOKS-")
        );
        let answer = account
            .send(client().delete(format!("{delete}?force=true")))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(
            !account.exists("WEBHOOKS", "https://hooks.example/a").await,
            "its certificate is deleted"
        );
        let listed = account
            .send(client().get(account.mappings_url("?v=3.0")))
            .await;
        assert_eq!(
            listed.body[0]["enable"], false,
            "forced delete disabled the mapping"
        );

        // A certificate that expires: the triplet stops existing when it does, without any change.
        if let Some(p12) = short_lived_p12(3) {
            let url = app.url(&format!("/mtls/account/{}/certificates", account.id));
            let item =
                json!([{ "name": "short", "p12": STANDARD.encode(&p12), "password": "short" }]);
            let answer = account.send(client().post(url).json(&item)).await;
            assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
            let short = answer.body["successfulySavedCertificates"][0]["id"]
                .as_i64()
                .unwrap();
            let answer = account
                .create(json!([mapping(
                    "short",
                    short,
                    "3",
                    "https://faas.example/",
                    &account.id
                )]))
                .await;
            assert_eq!(answer.status, StatusCode::CREATED);
            assert!(account.exists("FAAS", "https://faas.example/").await);
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert!(
                !account.exists("FAAS", "https://faas.example/").await,
                "an expired certificate does not exist"
            );
        }
        app.running.stop().await.unwrap();
    }
}

/// Two gateway nodes sharing MariaDB and Vault, with the default `runtime.sync_interval_seconds`
/// (2 s): a change through one reaches the other's routing table through the background sync
/// (polling the revision counter), within the interval. Three changes are timed.
#[tokio::test]
async fn another_node_sees_a_change_within_the_sync_interval() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let Some(stack) = stacks().into_iter().nth(1) else {
        return;
    };
    let first = spawn_on(&stack, |_| {}).await;
    assert_eq!(
        first.config.runtime.sync_interval_seconds,
        std::time::Duration::from_secs(2)
    );
    let second = spawn_on(&stack, |config| {
        // Same token secret, so that one token works on both nodes.
        config.auth.hs256_secret = Some(mtls_gateway::config::Secret::new(
            String::from_utf8(
                mtls_gateway::server::hs256_secret(&first.config)
                    .unwrap()
                    .unwrap()
                    .to_vec(),
            )
            .unwrap(),
        ));
    })
    .await;
    let writer = Account::new(&first);
    let reader = Account {
        app: &second,
        id: writer.id.clone(),
        token: writer.token.clone(),
    };
    let certificate = writer
        .certificate(&fixtures, "openssl-default-p256.p12", "shared")
        .await;
    let mut times = Vec::new();
    for round in 0..3 {
        let url = format!("https://shared-{round}.example/");
        assert!(!reader.exists("IDP", &url).await);
        let answer = writer
            .create(json!([mapping(
                &format!("shared-{round}"),
                certificate,
                "1",
                &url,
                &writer.id
            )]))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
        let started = std::time::Instant::now();
        while !reader.exists("IDP", &url).await {
            assert!(
                started.elapsed() < Duration::from_secs(6),
                "the second node did not see the mapping within three sync intervals"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        times.push(started.elapsed());
    }
    times.sort();
    eprintln!(
        "second node converged in {times:?} (median {:?}; sync interval 2 s)",
        times[1]
    );
    second.running.stop().await.unwrap();
    first.running.stop().await.unwrap();
}

// ---- issue 17: what a mapping write accepts (upstreamCaPem parsed, invisible name characters)

/// A self-signed CA certificate in PEM, made by OpenSSL; `None` (a reported skip) without it.
fn ca_pem() -> Option<String> {
    let dir = mtls_test_support::temp_dir("upstream-ca");
    mtls_test_support::openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=issue17 test CA",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    )?;
    Some(std::fs::read_to_string(dir.join("ca.pem")).unwrap())
}

/// Issue 17 defect 8: a bundle the forward path could not load is refused when written (it was
/// stored, then every forward to its URL answered 500); a good one is still stored.
#[tokio::test]
async fn an_upstream_ca_bundle_is_parsed_when_written() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let Some(good) = ca_pem() else {
        return;
    };
    let app = crate::support::spawn(|_| {}).await;
    let account = Account::new(&app);
    let certificate = account
        .certificate(&fixtures, "openssl-default-p256.p12", "c1")
        .await;
    let body: String = good
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let wrap = |base64: &str| {
        format!("-----BEGIN CERTIFICATE-----\n{base64}\n-----END CERTIFICATE-----\n")
    };
    // The same certificate cut short: still base64, no longer DER.
    let mut damaged = STANDARD.decode(&body).unwrap();
    damaged.truncate(damaged.len() - 10);
    let damaged = STANDARD.encode(damaged);
    let bad = [
        wrap("garbage between the markers!"),
        wrap(&STANDARD.encode(b"not a certificate at all, but valid base64")),
        wrap(&damaged),
        format!("{good}{}", wrap("garbage after a good certificate")),
        format!(
            "{good}-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(b"a key has no place in a trust bundle")
        ),
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_owned(),
    ];
    for (index, pem) in bad.iter().enumerate() {
        let answer = account
            .create(json!([{
                "name": format!("bad-{index}"), "certificationId": certificate, "serviceId": "1",
                "url": format!("https://bad-{index}.example/"), "upstreamCaPem": pem,
            }]))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{index}: {}",
            answer.body
        );
        assert_eq!(answer.code(), Some("invalid_upstream_ca"), "{index}");
    }
    let answer = account
        .create(json!([{
            "name": "good", "certificationId": certificate, "serviceId": "1",
            "url": "https://good.example/", "upstreamCaPem": format!("issued by us\n{good}"),
        }]))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let id = answer.body[0]["id"].as_i64().unwrap();
    let put = |pem: &str| {
        client()
            .put(account.mappings_url(&format!("/{id}?v=3.0")))
            .json(&json!({
                "name": "good", "certificationId": certificate, "serviceId": "1",
                "url": "https://good.example/", "upstreamCaPem": pem,
            }))
    };
    for (index, pem) in bad.iter().enumerate() {
        let answer = account.send(put(pem)).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{index}: {}",
            answer.body
        );
        assert_eq!(answer.code(), Some("invalid_upstream_ca"), "{index}");
    }
    let answer = account.send(put(&format!("{good}{good}"))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    app.running.stop().await.unwrap();
}

/// Issue 17 item 11: mapping names with bidirectional controls or other invisible formatting
/// characters are refused (create and update), as control characters were.
#[tokio::test]
async fn mapping_names_refuse_invisible_characters() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let app = crate::support::spawn(|_| {}).await;
    let account = Account::new(&app);
    let certificate = account
        .certificate(&fixtures, "openssl-default-p256.p12", "c1")
        .await;
    let site = account.id.clone();
    let names = [
        "invoice\u{202E}fdp.exe",
        "\u{202A}left",
        "\u{202B}right",
        "\u{202C}pop",
        "\u{202D}override",
        "\u{2066}isolate",
        "\u{2067}isolate",
        "\u{2068}isolate",
        "isolate\u{2069}",
        "mark\u{200F}",
        "zero\u{200B}width",
        "bom\u{FEFF}",
        "tag\u{E0041}",
        "line\u{2028}separator",
    ];
    for (index, name) in names.iter().enumerate() {
        let url = format!("https://n{index}.example/");
        let answer = account
            .create(json!([mapping(name, certificate, "1", &url, &site)]))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{name:?}: {}",
            answer.body
        );
        assert_eq!(answer.code(), Some("invalid_name"), "{name:?}");
    }
    let answer = account
        .create(json!([mapping(
            "Zürich – façade ✓",
            certificate,
            "1",
            "https://ok.example/",
            &site
        )]))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let id = answer.body[0]["id"].as_i64().unwrap();
    let answer = account
        .send(
            client()
                .put(account.mappings_url(&format!("/{id}?v=3.0")))
                .json(&mapping(
                    "ok\u{202E}",
                    certificate,
                    "1",
                    "https://ok.example/",
                    &site,
                )),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(answer.code(), Some("invalid_name"));
    app.running.stop().await.unwrap();
}
