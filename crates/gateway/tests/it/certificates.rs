//! The certificate API (SPEC 4.1, 4.3, 4.5) on every stack: SQLite + the embedded store, and
//! MariaDB + Vault (OpenBao) when they are reachable.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mtls_auth::Privilege;
use mtls_test_support::{P12Fixtures, p12_fixtures, random_account};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::support::{Stack, TestApp, client, spawn_on, stacks};

struct Api<'a> {
    app: &'a TestApp,
    account: String,
    token: String,
}

impl<'a> Api<'a> {
    fn new(app: &'a TestApp) -> Self {
        let account = random_account();
        let token = app.token(
            &[&account],
            &[Privilege::ReadInternal, Privilege::WriteInternal],
        );
        Self {
            app,
            account,
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        self.app.url(&format!(
            "/mtls/account/{}/certificates{path}",
            self.account
        ))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.bearer_auth(&self.token).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn create(&self, items: Value) -> (StatusCode, Value) {
        self.send(client().post(self.url("")).json(&items)).await
    }

    async fn list(&self, include_deleted: bool) -> Vec<Value> {
        let url = if include_deleted {
            self.url("?include_deleted=true")
        } else {
            self.url("")
        };
        let (status, body) = self.send(client().get(url)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().unwrap().clone()
    }
}

fn item(fixtures: &P12Fixtures, file: &str, name: &str) -> Value {
    let case = fixtures.case(file);
    json!({ "name": name, "p12": STANDARD.encode(fixtures.bytes(file)), "password": case.password })
}

/// The same file as a JSON array of signed byte values, as Java clients send it.
fn signed_bytes_item(fixtures: &P12Fixtures, file: &str, name: &str) -> Value {
    let case = fixtures.case(file);
    let bytes: Vec<i64> = fixtures
        .bytes(file)
        .iter()
        .map(|byte| i64::from(*byte as i8))
        .collect();
    json!({ "name": name, "p12": bytes, "password": case.password })
}

fn multipart(fixtures: &P12Fixtures, file: &str, certificate: Value) -> Form {
    Form::new()
        .part("file", Part::bytes(fixtures.bytes(file)).file_name("c.p12"))
        .text("certificate", certificate.to_string())
}

async fn vault_json(stack: &Stack, path: &str) -> (StatusCode, Value) {
    let (address, token) = stack.vault().unwrap();
    let response = client()
        .get(format!("{address}/v1/{path}"))
        .header("X-Vault-Token", token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

// ---- Issue 17, defect 2: the row decides which secret is live (secrets per version) ----

/// The versions of certificate `id` the secret store holds: the embedded store's rows (read
/// from the database) or the Vault paths under `.../certificates/<id>/versions/`, and whether
/// the legacy layout (one secret per certificate, before versions) is still there.
pub(crate) async fn stored_versions(
    stack: &Stack,
    app: &TestApp,
    account: &str,
    id: i64,
) -> (Vec<i64>, bool) {
    match stack.vault() {
        None => {
            use mtls_secrets::SealedBlobs;
            let store =
                mtls_store::Store::connect(&mtls_gateway::backends::store_options(&app.config))
                    .await
                    .unwrap();
            let key = mtls_secrets::SecretKey {
                account,
                certificate_id: id,
            };
            let mut versions = Vec::new();
            for version in 1..=64 {
                if store.blob(key, version).await.unwrap().is_some() {
                    versions.push(version);
                }
            }
            let legacy = store.blob(key, 0).await.unwrap().is_some();
            store.close().await;
            (versions, legacy)
        }
        Some(_) => {
            let base = format!("secret/metadata/mtls/accounts/{account}/certificates/{id}");
            let (status, listed) = vault_json(stack, &format!("{base}/versions?list=true")).await;
            let mut versions: Vec<i64> = if status == StatusCode::NOT_FOUND {
                Vec::new()
            } else {
                listed["data"]["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|key| key.as_str().unwrap().parse().unwrap())
                    .collect()
            };
            versions.sort_unstable();
            let (status, _) = vault_json(stack, &base).await;
            (versions, status == StatusCode::OK)
        }
    }
}

/// Two `PUT .../by-file` of one certificate at once, with two different files, 15 times. Each
/// round one may lose (409 `concurrent_update`) or both may pass one after the other; either
/// way the certificate a real TLS server is then shown on a forward is the one `GET` describes,
/// and the secret store holds that version only (the loser's and the replaced version's
/// secrets are gone).
#[tokio::test]
async fn concurrent_replacements_present_the_certificate_the_row_names() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let Some(pki) = crate::upstream::server_pki() else {
        return;
    };
    let server = crate::upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    for stack in stacks() {
        let app = spawn_on(&stack, crate::forward::trusting(&server)).await;
        let tenant = crate::forward::Tenant::new(&app);
        let api = Api {
            app: &app,
            account: tenant.account.clone(),
            token: tenant.token.clone(),
        };
        let (id, _) = tenant
            .certificate(&fixtures, "openssl-default-p256.p12")
            .await;
        let target = format!("https://localhost:{}/raced", server.port);
        tenant.map(id, "1", &target).await;
        let replace = |file: &'static str| {
            let case = fixtures.case(file);
            let form = multipart(
                &fixtures,
                file,
                json!({"id": id, "name": "raced", "password": case.password}),
            );
            api.send(client().put(api.url("/by-file")).multipart(form))
        };
        let mut conflicts = 0;
        for round in 0..15 {
            let ((first, first_body), (second, second_body)) = tokio::join!(
                replace("openssl-default-p384.p12"),
                replace("openssl-default-ed25519.p12")
            );
            let statuses = [first, second];
            assert!(
                statuses.contains(&StatusCode::OK),
                "{stack:?} round {round}: {first_body} {second_body}"
            );
            for (status, body) in [(first, &first_body), (second, &second_body)] {
                if status == StatusCode::CONFLICT {
                    assert_eq!(body["error"]["code"], "concurrent_update");
                    conflicts += 1;
                } else {
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
            }
            let (status, current) = api.send(client().get(api.url(&format!("/{id}")))).await;
            assert_eq!(status, StatusCode::OK);
            let (status, _, echoed) = crate::forward::answer(
                tenant
                    .forward(reqwest::Method::GET, &target)
                    .header("LP-service-name", "IDP"),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{echoed}");
            assert_eq!(
                echoed["fingerprint"], current["fingerprintSha256"],
                "{stack:?} round {round}: the server was shown another certificate than GET \
                 describes ({})",
                current["subject"]
            );
            let version = current["version"].as_i64().unwrap();
            assert_eq!(
                stored_versions(&stack, &app, &api.account, id).await,
                (vec![version], false),
                "{stack:?} round {round}: only the live version's secret is kept"
            );
        }
        println!("{stack:?}: {conflicts} of 15 rounds had a loser");

        // Delete destroys every version's secret.
        let (status, body) = api
            .send(client().delete(api.url(&format!("/{id}?force=true"))))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            stored_versions(&stack, &app, &api.account, id).await,
            (vec![], false)
        );
        app.running.stop().await.unwrap();
    }
}

// ---- end of issue 17, defect 2 ----

#[tokio::test]
async fn create_read_rotate_delete_on_every_stack() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    for stack in stacks() {
        let app = spawn_on(&stack, |_| {}).await;
        let api = Api::new(&app);

        // JSON create: base64 and signed byte arrays, several items at once.
        let (status, body) = api
            .create(json!([
                item(&fixtures, "openssl-default-rsa2048.p12", "brand-a-idp"),
                signed_bytes_item(&fixtures, "openssl-legacy-p256.p12", "brand-a-webhooks"),
            ]))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{stack:?}: {body}");
        assert_eq!(body["failedSaveToVaultCertificates"], json!([]));
        let saved = body["successfulySavedCertificates"].as_array().unwrap();
        assert_eq!(saved.len(), 2);
        let first = &saved[0];
        assert!(first["id"].as_i64().unwrap() > 0);
        assert_eq!(first["name"], "brand-a-idp");
        assert_eq!(first["displayName"], "brand-a-idp");
        assert_eq!(first["siteId"], api.account.as_str());
        assert_eq!(first["status"], "Available");
        assert_eq!(first["deleted"], false);
        assert_eq!(first["version"], 1);
        assert_eq!(first["keyType"], "RSA-2048");
        assert!(first["expirationDate"].as_str().unwrap().ends_with('Z'));
        assert!(first.get("p12").is_none() && first.get("password").is_none());
        let id = first["id"].as_i64().unwrap();

        // Multipart create, under both spellings of the path.
        for (path, name) in [("/by-file", "mp-1"), ("/byFile", "mp-2")] {
            let case = fixtures.case("openssl-default-ed25519.p12");
            let form = multipart(
                &fixtures,
                &case.file,
                json!({"name": name, "password": case.password}),
            );
            let (status, body) = api.send(client().post(api.url(path)).multipart(form)).await;
            assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
        }
        assert_eq!(api.list(false).await.len(), 4);

        // A name in use is a conflict; names are per account.
        let (status, body) = api
            .create(json!([item(
                &fixtures,
                "openssl-default-p384.p12",
                "brand-a-idp"
            )]))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("name_conflict"))
        );

        // Get, and rotation: same id, version + 1, the new certificate's facts.
        let (status, before) = api.send(client().get(api.url(&format!("/{id}")))).await;
        assert_eq!(status, StatusCode::OK);
        let mut replacement = item(&fixtures, "openssl-default-p384.p12", "brand-a-idp-renamed");
        replacement["id"] = json!(id.to_string());
        let (status, body) = api
            .send(client().put(api.url("")).json(&json!([replacement])))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let rotated = &body["successfulySavedCertificates"][0];
        assert_eq!(rotated["id"], id);
        assert_eq!(rotated["version"], 2);
        assert_eq!(rotated["keyType"], "ECDSA-P384");
        assert_eq!(rotated["name"], "brand-a-idp-renamed");
        assert_ne!(rotated["fingerprintSha256"], before["fingerprintSha256"]);
        let case = fixtures.case("openssl-default-rsa4096.p12");
        let form = multipart(
            &fixtures,
            &case.file,
            json!({"id": id, "name": "brand-a-idp", "password": case.password}),
        );
        let (status, body) = api
            .send(client().put(api.url("/by-file")).multipart(form))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["successfulySavedCertificates"][0]["version"], 3);
        assert_eq!(
            stored_versions(&stack, &app, &api.account, id).await,
            (vec![3], false),
            "the replaced versions' secrets are removed"
        );
        if stack.vault().is_some() {
            let path = format!(
                "secret/metadata/mtls/accounts/{}/certificates/{id}/versions/3",
                api.account
            );
            let (status, metadata) = vault_json(&stack, &path).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                metadata["data"]["current_version"], 1,
                "each certificate version has its own path, written once"
            );
        }

        // Updating an unknown id is a 404, and nothing changes.
        let mut unknown = item(&fixtures, "openssl-default-p384.p12", "whatever");
        unknown["id"] = json!(123_456_789);
        let (status, _) = api
            .send(client().put(api.url("")).json(&json!([unknown])))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Collect: a ZIP, AES-256 encrypted with the upload password, holding the stored file.
        let response = client()
            .get(app.url(&format!("/api/account/{}/certificate/{id}", api.account)))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/zip");
        let archive = response.bytes().await.unwrap().to_vec();
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
        assert!(zip.by_name_decrypt(&format!("{id}.p12"), b"wrong").is_err());
        let mut content = Vec::new();
        zip.by_name_decrypt(&format!("{id}.p12"), case.password.as_bytes())
            .unwrap()
            .read_to_end(&mut content)
            .unwrap();
        assert_eq!(content, fixtures.bytes(&case.file));

        // Soft delete: 200 with deleted: true, then 404, still listed with include_deleted.
        let (status, body) = api.send(client().delete(api.url(&format!("/{id}")))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["deleted"], true);
        assert_eq!(body["status"], "UnAvailable");
        let (status, _) = api.send(client().get(api.url(&format!("/{id}")))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api.send(client().delete(api.url(&format!("/{id}")))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(api.list(false).await.len(), 3);
        let all = api.list(true).await;
        assert_eq!(all.len(), 4);
        assert!(
            all.iter()
                .any(|entity| entity["id"] == id && entity["deleted"] == true)
        );
        // The name is free again.
        let (status, _) = api
            .create(json!([item(
                &fixtures,
                "openssl-default-p256.p12",
                "brand-a-idp"
            )]))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        if stack.vault().is_some() {
            let path = format!(
                "secret/metadata/mtls/accounts/{}/certificates/{id}",
                api.account
            );
            let (status, _) = vault_json(&stack, &path).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "delete destroys every version and the metadata"
            );
            let (status, _) = vault_json(&stack, &path.replace("/metadata/", "/data/")).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
        let response = client()
            .get(app.url(&format!("/api/account/{}/certificate/{id}", api.account)))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        app.running.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_request_is_validated_whole_before_anything_is_stored() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    for stack in stacks() {
        let app = spawn_on(&stack, |_| {}).await;
        let api = Api::new(&app);
        let mut wrong = item(&fixtures, "openssl-default-p256.p12", "two");
        wrong["password"] = json!("not the password");
        let (status, body) = api
            .create(json!([
                item(&fixtures, "openssl-default-rsa2048.p12", "one"),
                wrong,
                {"name": "", "p12": "AAAA"},
                {"name": "four", "p12": [1, 2, 300]},
                item(&fixtures, "pyca-expired.p12", "five"),
            ]))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let items = body["error"]["items"].as_array().unwrap();
        let codes: Vec<(i64, &str)> = items
            .iter()
            .map(|item| {
                (
                    item["index"].as_i64().unwrap(),
                    item["code"].as_str().unwrap(),
                )
            })
            .collect();
        let mut expected = vec![
            (1, "p12_wrong_password"),
            (2, "invalid_name"),
            (3, "invalid_p12_encoding"),
        ];
        if fixtures
            .cases
            .iter()
            .any(|case| case.file == "pyca-expired.p12")
        {
            expected.push((4, "certificate_expired"));
        }
        assert_eq!(codes, expected);
        assert_eq!(body["error"]["code"], "p12_wrong_password");
        assert!(!body.to_string().contains("not the password"));
        assert!(
            api.list(true).await.is_empty(),
            "nothing is stored when one item is bad"
        );

        // Duplicate names inside one request: a conflict, nothing stored.
        let (status, _) = api
            .create(json!([
                item(&fixtures, "openssl-default-rsa2048.p12", "same"),
                item(&fixtures, "openssl-default-p256.p12", "same"),
            ]))
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(api.list(true).await.is_empty());

        for (body, code) in [
            (json!({"not": "an array"}), "invalid_json"),
            (json!([]), "empty_request"),
            (json!([{"name": "x"}]), "missing_p12"),
        ] {
            let (status, answer) = api.create(body).await;
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some(code))
            );
        }
        let (status, body) = api
            .send(client().put(api.url("")).json(&json!([item(
                &fixtures,
                "openssl-default-rsa2048.p12",
                "x"
            )])))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("missing_id"))
        );
        let form = Form::new().text("certificate", json!({"name": "x"}).to_string());
        let (status, body) = api
            .send(client().post(api.url("/by-file")).multipart(form))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("missing_file"))
        );
        app.running.stop().await.unwrap();
    }
}

#[tokio::test]
async fn another_account_cannot_reach_a_certificate() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    for stack in stacks() {
        let app = spawn_on(&stack, |_| {}).await;
        let owner = Api::new(&app);
        let (_, body) = owner
            .create(json!([item(&fixtures, "openssl-default-p256.p12", "mine")]))
            .await;
        let id = body["successfulySavedCertificates"][0]["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{body}"));
        let intruder = Api::new(&app);

        // With its own account in the path: the id is simply not found there.
        let mut replacement = item(&fixtures, "openssl-default-rsa2048.p12", "stolen");
        replacement["id"] = json!(id);
        let calls = [
            client().get(intruder.url(&format!("/{id}"))),
            client().delete(intruder.url(&format!("/{id}"))),
            client()
                .put(intruder.url(""))
                .json(&json!([replacement.clone()])),
            client().get(app.url(&format!(
                "/api/account/{}/certificate/{id}",
                intruder.account
            ))),
        ];
        for call in calls {
            let (status, body) = intruder.send(call).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
            assert!(!body.to_string().contains("mine"));
        }
        // With the owner's account in the path: forbidden, before anything is looked up.
        let calls = [
            client().get(owner.url(&format!("/{id}"))),
            client().get(owner.url("")),
            client().delete(owner.url(&format!("/{id}"))),
            client().put(owner.url("")).json(&json!([replacement])),
            client().get(app.url(&format!("/api/account/{}/certificate/{id}", owner.account))),
        ];
        for call in calls {
            let (status, _) = intruder.send(call).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
        // Read-only callers cannot write or collect.
        let reader = app.token(&[&owner.account], &[Privilege::ReadInternal]);
        for call in [
            client().delete(owner.url(&format!("/{id}"))),
            client().get(app.url(&format!("/api/account/{}/certificate/{id}", owner.account))),
            client().post(owner.url("")).json(&json!([item(
                &fixtures,
                "openssl-default-p256.p12",
                "r"
            )])),
        ] {
            let response = call.bearer_auth(&reader).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        let (status, body) = owner.send(client().get(owner.url(&format!("/{id}")))).await;
        assert_eq!(
            (status, body["name"].as_str()),
            (StatusCode::OK, Some("mine"))
        );
        app.running.stop().await.unwrap();
    }
}

// ---- issue 17 (intake): names, upload limits while reading, per-account cap --------------

/// Issue 17 item 11: certificate names with bidirectional controls or other invisible
/// formatting characters are refused with `invalid_name`, in JSON and multipart alike.
#[tokio::test]
async fn certificate_names_refuse_invisible_characters() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let app = crate::support::spawn(|_| {}).await;
    let api = Api::new(&app);
    let file = "openssl-default-p256.p12";
    for name in [
        "invoice\u{202E}fdp.exe",
        "\u{202A}a",
        "\u{202B}b",
        "\u{202C}c",
        "\u{202D}d",
        "\u{2066}e",
        "\u{2067}f",
        "\u{2068}g",
        "h\u{2069}",
        "i\u{200E}",
        "zero\u{200B}width",
        "bom\u{FEFF}",
        "tag\u{E0041}",
    ] {
        let (status, body) = api.create(json!([item(&fixtures, file, name)])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_name", "{name:?}");
        let (status, body) = api
            .send(client().post(api.url("/by-file")).multipart(multipart(
                &fixtures,
                file,
                json!({ "name": name, "password": fixtures.case(file).password }),
            )))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_name", "{name:?}");
    }
    assert!(api.list(true).await.is_empty());
    let (status, body) = api
        .create(json!([item(&fixtures, file, "Zürich – façade ✓")]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.running.stop().await.unwrap();
}

/// Issue 17 defect 3: the JSON upload is read as it arrives, the file limit applied to the
/// decoded bytes as they are decoded. A byte array past `intake.max_file_bytes` is refused with
/// 413 while the rest of the announced body has not even been sent; base64 past it too; files
/// within it still work in both forms.
#[tokio::test]
async fn json_uploads_are_limited_while_they_are_read() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let limit = 64 * 1024;
    let app = crate::support::spawn(|config| config.intake.max_file_bytes = limit).await;
    let api = Api::new(&app);

    // The head announces a body within the body cap; only the start of one item comes, with
    // one byte value more than the limit, and the connection then stays silent.
    let path = format!("/mtls/account/{}/certificates", api.account);
    let mut body = String::from(r#"[{"name":"big","password":"","p12":["#);
    body.push_str(&"1,".repeat(limit + 1));
    let answer = partial_request(&app, &api.token, &path, 1_500_000, &body).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A body announced past the cap is refused before it is read.
    let answer = partial_request(&app, &api.token, &path, 2_000_000, "").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Base64 past the limit: 413, whatever the bytes are.
    let too_big = STANDARD.encode(vec![7u8; limit + 1]);
    let (status, body) = api
        .create(json!([{ "name": "b64", "password": "", "p12": too_big }]))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    // At the limit exactly it is read, and judged by intake (not a PKCS#12 file).
    let at_limit = STANDARD.encode(vec![7u8; limit]);
    let (status, body) = api
        .create(json!([{ "name": "b64", "password": "", "p12": at_limit }]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["items"][0]["code"], "p12_malformed", "{body}");
    // More than 50 items, and a bad byte value, as before.
    let many: Vec<Value> = (0..51)
        .map(|index| json!({ "name": format!("n{index}") }))
        .collect();
    let (status, body) = api.create(Value::Array(many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "too_many_items");
    let (status, body) = api
        .create(json!([{ "name": "x", "password": "", "p12": [1, 256] }]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["items"][0]["code"], "invalid_p12_encoding");
    assert!(api.list(true).await.is_empty());

    // Real files in both forms are still accepted.
    let file = "openssl-default-p256.p12";
    let (status, body) = api
        .create(json!([
            item(&fixtures, file, "as-base64"),
            signed_bytes_item(&fixtures, file, "as-bytes")
        ]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(api.list(false).await.len(), 2);
    app.running.stop().await.unwrap();
}

/// POSTs JSON announcing `length` bytes, sends `body` (the start of them) and then nothing; the
/// answer's head, which must come within 5 s.
async fn partial_request(
    app: &TestApp,
    token: &str,
    path: &str,
    length: usize,
    body: &str,
) -> String {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
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
    assert!(
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .is_ok(),
        "no answer while the rest of the body is outstanding"
    );
    String::from_utf8_lossy(&answer).into_owned()
}
