//! What happens around the certificate API: secret-store outages and their repair, start-up
//! reconciliation, a database that is down at start, and what lies at rest in the database.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mtls_auth::Privilege;
use mtls_gateway::config::{Secret, SecretsBackend};
use mtls_test_support::{P12Fixtures, mysql_url, p12_fixtures, random_account, vault};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Switch, TestApp, client, spawn};

fn item(fixtures: &P12Fixtures, file: &str, name: &str, password: Option<&str>) -> Value {
    let case = fixtures.case(file);
    json!({ "name": name, "p12": STANDARD.encode(fixtures.bytes(file)), "password": password.unwrap_or(&case.password) })
}

async fn call(token: &str, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let response = client().get(app.url("/readyz")).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[tokio::test]
async fn a_secret_store_outage_leaves_unavailable_rows_that_an_update_repairs() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let Some((address, token)) = vault() else {
        return;
    };
    let switch = Switch::to(&host_port(&address)).await;
    let app = spawn(|config| {
        config.secrets.backend = SecretsBackend::Vault;
        config.secrets.vault.address = format!("http://{}", switch.address).parse().unwrap();
        config.secrets.vault.token = Some(Secret::new(token.clone()));
    })
    .await;
    let account = random_account();
    let bearer = app.token(
        &[&account],
        &[Privilege::ReadInternal, Privilege::WriteInternal],
    );
    let url = app.url(&format!("/mtls/account/{account}/certificates"));

    switch.off();
    let (status, body) = call(
        &bearer,
        client().post(&url).json(&json!([item(
            &fixtures,
            "openssl-default-p256.p12",
            "a",
            None
        )])),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["successfulySavedCertificates"], json!([]));
    let failed = &body["failedSaveToVaultCertificates"][0];
    assert_eq!(failed["status"], "UnAvailable");
    let id = failed["id"].as_i64().unwrap();
    let (status, readiness) = ready(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        readiness["checks"]["secretStore"]
            .as_str()
            .unwrap()
            .starts_with("unavailable"),
        "{readiness}"
    );
    assert_eq!(readiness["checks"]["database"], "ok");
    let (_, entity) = call(&bearer, client().get(format!("{url}/{id}"))).await;
    assert_eq!(entity["status"], "UnAvailable");

    switch.on();
    let mut repair = item(&fixtures, "openssl-default-p256.p12", "a", None);
    repair["id"] = json!(id);
    let (status, body) = call(&bearer, client().put(&url).json(&json!([repair]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let repaired = &body["successfulySavedCertificates"][0];
    assert_eq!(
        (repaired["id"].as_i64(), repaired["status"].as_str()),
        (Some(id), Some("Available"))
    );
    assert_eq!(ready(&app).await.0, StatusCode::OK);
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn rows_whose_secret_is_gone_are_reported_at_start() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let app = spawn(|_| {}).await;
    let account = random_account();
    let bearer = app.token(
        &[&account],
        &[Privilege::ReadInternal, Privilege::WriteInternal],
    );
    let url = app.url(&format!("/mtls/account/{account}/certificates"));
    let (_, body) = call(
        &bearer,
        client().post(&url).json(&json!([item(
            &fixtures,
            "openssl-default-p256.p12",
            "a",
            None
        )])),
    )
    .await;
    let id = body["successfulySavedCertificates"][0]["id"]
        .as_i64()
        .unwrap();
    let config = app.config.clone();
    app.running.stop().await.unwrap();

    // Someone removes the sealed secret behind the gateway's back.
    let store = mtls_store::Store::connect(&mtls_gateway::backends::store_options(&config))
        .await
        .unwrap();
    use mtls_secrets::SealedBlobs;
    store
        .delete_blobs(
            mtls_secrets::SecretKey {
                account: &account,
                certificate_id: id,
            },
            mtls_secrets::Versions::All,
        )
        .await
        .unwrap();
    store.close().await;

    let mut restart = config.clone();
    restart.server.listen = "127.0.0.1:0".parse().unwrap();
    let running = mtls_gateway::server::start(&restart).await.unwrap();
    let app = TestApp {
        base: format!("http://{}", running.address),
        running,
        config: restart,
    };
    let (status, readiness) = ready(&app).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        readiness["certificatesWithoutSecret"],
        json!([{ "siteId": account, "id": id }])
    );
    let url = app.url(&format!("/mtls/account/{account}/certificates/{id}"));
    let (_, entity) = call(&bearer, client().get(url)).await;
    assert_eq!(entity["status"], "UnAvailable");
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn a_database_down_at_start_is_retried_and_named() {
    let Some(mysql) = mysql_url() else { return };
    let upstream = mysql
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let switch = Switch::to(&upstream).await;
    switch.off();
    let relayed = mysql.replace(&upstream, &switch.address.to_string());
    let app = spawn(|config| config.database.url = Some(Secret::new(relayed.clone()))).await;
    let account = random_account();
    let bearer = app.token(&[&account], &[Privilege::ReadInternal]);
    let (status, readiness) = ready(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        readiness["checks"]["database"]
            .as_str()
            .unwrap()
            .starts_with("unavailable"),
        "{readiness}"
    );
    assert!(
        !readiness.to_string().contains("root@"),
        "readiness must not echo the database URL"
    );
    let (status, body) = call(
        &bearer,
        client().get(app.url(&format!("/mtls/account/{account}/certificates"))),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("dependency_unavailable")
        )
    );

    switch.on();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready(&app).await.0 != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the gateway did not recover: {}",
            ready(&app).await.1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = call(
        &bearer,
        client().get(app.url(&format!("/mtls/account/{account}/certificates"))),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));
    app.running.stop().await.unwrap();
}

#[tokio::test]
async fn a_master_key_others_can_read_stops_the_start() {
    let dir = mtls_test_support::temp_dir("master-key");
    let mut config = mtls_gateway::config::Config {
        data_dir: dir.clone(),
        ..Default::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    let key = dir.join("master.key");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let error = mtls_gateway::server::start(&config).await.unwrap_err();
    assert!(error.to_string().contains("chmod 600"), "{error}");
}

/// Windows of `bytes` that must not appear anywhere at rest.
fn probes(bytes: &[u8]) -> Vec<Vec<u8>> {
    let step = (bytes.len() / 4).max(1);
    bytes
        .windows(24.min(bytes.len()))
        .step_by(step)
        .map(<[u8]>::to_vec)
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).unwrap()
}

#[tokio::test]
async fn no_password_or_key_lies_in_clear_in_the_database() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let password = "a-distinctive-upload-password-1f9c";
    // A file whose key is not encrypted inside the PKCS#12: stored in clear, it would show.
    let dir = mtls_test_support::temp_dir("at-rest");
    let source = fixtures.path("openssl-noenc-nomac.p12");
    let p12 = dir.join("with-password.p12");
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-in"])
        .arg(&source)
        .args(["-passin", "pass:x", "-nodes", "-out"])
        .arg(dir.join("all.pem"))
        .status()
        .unwrap();
    assert!(status.success());
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-in"])
        .arg(dir.join("all.pem"))
        .args([
            "-keypbe",
            "NONE",
            "-certpbe",
            "NONE",
            "-passout",
            &format!("pass:{password}"),
            "-out",
        ])
        .arg(&p12)
        .status()
        .unwrap();
    assert!(status.success());
    let p12_bytes = std::fs::read(&p12).unwrap();
    let key_der = pem_der(&std::fs::read_to_string(fixtures.path("ed25519.key")).unwrap());
    assert!(
        contains(&p12_bytes, &key_der[key_der.len() - 24..]),
        "the probe key is in clear in the upload"
    );
    let mut needles = probes(&p12_bytes);
    needles.push(key_der[key_der.len() - 24..].to_vec());
    needles.push(password.as_bytes().to_vec());

    let mut stacks: Vec<Option<String>> = vec![None];
    if let Some(url) = mysql_url() {
        stacks.push(Some(url));
    }
    for database in stacks {
        let app = spawn(|config| config.database.url = database.clone().map(Secret::new)).await;
        let account = random_account();
        let bearer = app.token(
            &[&account],
            &[Privilege::WriteInternal, Privilege::ReadInternal],
        );
        let body = json!([{ "name": "at-rest", "p12": STANDARD.encode(&p12_bytes), "password": password }]);
        let (status, answer) = call(
            &bearer,
            client()
                .post(app.url(&format!("/mtls/account/{account}/certificates")))
                .json(&body),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        let config = app.config.clone();
        app.running.stop().await.unwrap();
        let at_rest: Vec<u8> = match &database {
            None => {
                let mut bytes = Vec::new();
                for entry in std::fs::read_dir(&config.data_dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("mtls-gateway.db")
                    {
                        bytes.extend(std::fs::read(path).unwrap());
                    }
                }
                assert!(bytes.len() > 4096, "the SQLite files were read");
                bytes
            }
            Some(url) => {
                // The database the gateway used (MTLS_TEST_MYSQL_URL may name another one).
                let name = url.rsplit('/').next().unwrap().split('?').next().unwrap();
                let query = format!(
                    "SELECT * FROM certificates WHERE account_id='{account}'; \
                     SELECT account_id, certificate_id, key_id, nonce, ciphertext FROM sealed_secrets WHERE account_id='{account}'; \
                     SELECT account_id, certificate_id, key_id, nonce, ciphertext FROM sealed_identities WHERE account_id='{account}'; \
                     SELECT COUNT(*) AS resealed FROM sealed_identities WHERE account_id='{account}'"
                );
                let output = std::process::Command::new("mariadb")
                    .args([
                        "-uroot",
                        "-h127.0.0.1",
                        "--batch",
                        "--raw",
                        name,
                        "-e",
                        &query,
                    ])
                    .output()
                    .unwrap();
                assert!(output.status.success());
                assert!(contains(&output.stdout, b"at-rest"), "the rows were read");
                assert!(
                    contains(&output.stdout, b"resealed\n1\n"),
                    "the re-sealed identity's row was read"
                );
                output.stdout
            }
        };
        for needle in &needles {
            assert!(
                !contains(&at_rest, needle),
                "{database:?}: secret bytes found at rest"
            );
        }
    }
}

/// AppRole login against a real OpenBao, with a token so short-lived that the gateway must
/// renew it (or log in again) between calls.
#[tokio::test]
async fn approle_tokens_are_renewed_before_they_expire() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let Some((address, root)) = vault() else {
        return;
    };
    let vault_call = |method: reqwest::Method, path: &str, body: Value| {
        client()
            .request(method, format!("{address}/v1/{path}"))
            .header("X-Vault-Token", &root)
            .json(&body)
    };
    // Enabling twice answers 400 ("path is already in use"): fine.
    let _ = vault_call(
        reqwest::Method::POST,
        "sys/auth/approle",
        json!({"type": "approle"}),
    )
    .send()
    .await
    .unwrap();
    let policy = r#"path "secret/data/mtls/*" { capabilities = ["create", "read", "update", "delete"] }
path "secret/metadata/mtls/*" { capabilities = ["read", "delete", "list"] }"#;
    let response = vault_call(
        reqwest::Method::POST,
        "sys/policies/acl/mtls-gateway-test",
        json!({"policy": policy}),
    )
    .send()
    .await
    .unwrap();
    assert!(response.status().is_success());
    let role = "auth/approle/role/mtls-gateway-test";
    let response = vault_call(
        reqwest::Method::POST,
        role,
        json!({"token_policies": "mtls-gateway-test", "token_ttl": "3s", "token_max_ttl": "60s"}),
    )
    .send()
    .await
    .unwrap();
    assert!(response.status().is_success());
    let role_id: Value = vault_call(
        reqwest::Method::GET,
        &format!("{role}/role-id"),
        Value::Null,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let secret_id: Value = vault_call(
        reqwest::Method::POST,
        &format!("{role}/secret-id"),
        json!({}),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();

    let app = spawn(|config| {
        config.secrets.backend = SecretsBackend::Vault;
        config.secrets.vault.address = address.parse().unwrap();
        config.secrets.vault.role_id =
            Some(role_id["data"]["role_id"].as_str().unwrap().to_owned());
        config.secrets.vault.secret_id = Some(Secret::new(
            secret_id["data"]["secret_id"].as_str().unwrap(),
        ));
    })
    .await;
    assert_eq!(ready(&app).await.0, StatusCode::OK);
    let account = random_account();
    let bearer = app.token(
        &[&account],
        &[Privilege::ReadInternal, Privilege::WriteInternal],
    );
    let (status, body) = call(
        &bearer,
        client()
            .post(app.url(&format!("/mtls/account/{account}/certificates")))
            .json(&json!([item(
                &fixtures,
                "openssl-default-p256.p12",
                "a",
                None
            )])),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["successfulySavedCertificates"][0]["id"]
        .as_i64()
        .unwrap();
    // Every second for longer than two token lifetimes: each collect reads Vault.
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let response = client()
            .get(app.url(&format!("/api/account/{account}/certificate/{id}")))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    app.running.stop().await.unwrap();
}

/// Nodes starting together on an empty MySQL database: every one of them migrates without
/// error (they take turns on a named lock), and the schema is there once.
#[tokio::test]
async fn concurrent_first_starts_migrate_once() {
    let Some(mysql) = mysql_url() else {
        return;
    };
    let database = format!("migrate_{}", random_account().replace('-', "_"));
    let (prefix, _) = mysql.rsplit_once('/').unwrap();
    // The server's own client, as an administrator would (the gateway never creates databases).
    let sql = |statement: String| {
        let (host, port) = prefix
            .rsplit_once('@')
            .map_or("127.0.0.1:3306", |(_, address)| address)
            .split_once(':')
            .unwrap_or(("127.0.0.1", "3306"));
        let output = std::process::Command::new("mariadb")
            .args(["-h", host, "-P", port, "-uroot", "-e", &statement])
            .output()
            .expect("the mariadb client runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    sql(format!("CREATE DATABASE {database}"));
    let url = format!("{prefix}/{database}");
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let url = url.clone();
        nodes.push(tokio::spawn(async move {
            let store = mtls_store::Store::connect(&mtls_store::StoreOptions {
                url,
                max_connections: 2,
                acquire_timeout: Duration::from_secs(30),
            })
            .await
            .unwrap();
            let migrated = store.migrate().await;
            store.close().await;
            migrated
        }));
    }
    for node in nodes {
        node.await.unwrap().unwrap();
    }
    sql(format!("DROP DATABASE {database}"));
}

// ---- Issue 17, defect 2: secrets per certificate version, and the upgrade from one per
// certificate ----

const MASTER_KEY: [u8; 32] = [0x5a; 32];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The tenant of a gateway trusting `server`, with a P-256 certificate mapped to `target`.
async fn mapped<'a>(
    app: &'a TestApp,
    fixtures: &P12Fixtures,
    target: &str,
) -> (crate::forward::Tenant<'a>, i64, String) {
    let tenant = crate::forward::Tenant::new(app);
    let (id, fingerprint) = tenant
        .certificate(fixtures, "openssl-default-p256.p12")
        .await;
    tenant.map(id, "1", target).await;
    (tenant, id, fingerprint)
}

/// The fingerprint of the client certificate the upstream saw on a forward to `target`.
async fn presented(tenant: &crate::forward::Tenant<'_>, target: &str) -> Value {
    let (status, _, body) = crate::forward::answer(
        tenant
            .forward(reqwest::Method::GET, target)
            .header("LP-service-name", "IDP"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["fingerprint"].clone()
}

/// `PUT .../by-file` of `file` for certificate `id`.
async fn replace_by_file(
    tenant: &crate::forward::Tenant<'_>,
    fixtures: &P12Fixtures,
    id: i64,
    file: &str,
) -> (StatusCode, Value) {
    let case = fixtures.case(file);
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(fixtures.bytes(file)).file_name("c.p12"),
        )
        .text(
            "certificate",
            json!({"id": id, "name": "replaced", "password": case.password}).to_string(),
        );
    call(
        &tenant.token,
        client()
            .put(tenant.app.url(&format!(
                "/mtls/account/{}/certificates/by-file",
                tenant.account
            )))
            .multipart(form),
    )
    .await
}

/// The plaintext layout of a stored secret: password length (u32, big-endian), password,
/// PKCS#12 bytes.
fn plaintext(fixtures: &P12Fixtures, file: &str) -> Vec<u8> {
    let password = fixtures.case(file).password.clone();
    let mut bytes = u32::try_from(password.len())
        .unwrap()
        .to_be_bytes()
        .to_vec();
    bytes.extend_from_slice(password.as_bytes());
    bytes.extend_from_slice(&fixtures.bytes(file));
    bytes
}

/// Puts certificate `id` back the way a gateway before secret versions stored it: in SQLite,
/// the old `sealed_secrets` table (one row per certificate, the additional data naming no
/// version) and migration 5 not applied; in Vault, one path per certificate.
async fn rewind_to_the_legacy_layout(
    stack: &crate::support::Stack,
    config: &mtls_gateway::config::Config,
    fixtures: &P12Fixtures,
    account: &str,
    id: i64,
) {
    let file = "openssl-default-p256.p12";
    match stack.vault() {
        None => {
            use aes_gcm::aead::{Aead, KeyInit, Payload};
            let nonce = [3u8; 12];
            let aad = format!("mtls-gateway/sealed/v1/{account}/{id}");
            let ciphertext = aes_gcm::Aes256Gcm::new_from_slice(&MASTER_KEY)
                .unwrap()
                .encrypt(
                    &aes_gcm::Nonce::from(nonce),
                    Payload {
                        msg: &plaintext(fixtures, file),
                        aad: aad.as_bytes(),
                    },
                )
                .unwrap();
            let key_id = mtls_secrets::MasterKey::from_hex(hex(&MASTER_KEY).as_bytes())
                .unwrap()
                .id()
                .to_owned();
            let url = format!(
                "sqlite://{}",
                config.data_dir.join("mtls-gateway.db").display()
            );
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            for statement in [
                "DROP TABLE sealed_secrets",
                // As crates/store/migrations/sqlite/0001_initial.sql made it.
                "CREATE TABLE sealed_secrets (
                    account_id     VARCHAR(64) NOT NULL,
                    certificate_id BIGINT      NOT NULL,
                    version        BIGINT      NOT NULL,
                    key_id         VARCHAR(32) NOT NULL,
                    nonce          BLOB        NOT NULL,
                    ciphertext     BLOB        NOT NULL,
                    PRIMARY KEY (account_id, certificate_id)
                )",
                "DELETE FROM _sqlx_migrations WHERE version = 5",
            ] {
                sqlx::query(statement).execute(&pool).await.unwrap();
            }
            sqlx::query(
                "INSERT INTO sealed_secrets (account_id, certificate_id, version, key_id, nonce, ciphertext) VALUES (?, ?, 1, ?, ?, ?)",
            )
            .bind(account)
            .bind(id)
            .bind(key_id)
            .bind(nonce.to_vec())
            .bind(ciphertext)
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        Some((address, token)) => {
            let base = format!("{address}/v1/secret");
            let path = format!("mtls/accounts/{account}/certificates/{id}");
            let response = client()
                .delete(format!("{base}/metadata/{path}/versions/1"))
                .header("X-Vault-Token", token)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
            let case = fixtures.case(file);
            let response = client()
                .post(format!("{base}/data/{path}"))
                .header("X-Vault-Token", token)
                .json(&json!({"data": {"p12": STANDARD.encode(fixtures.bytes(file)), "password": case.password}}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
    }
}

/// A certificate stored before secrets were kept per version is still forwarded with after the
/// upgrade (SQLite: the migration turns its row into the legacy version; Vault: its one path is
/// read), counts as stored at start, and its first replacement removes the legacy secret.
#[tokio::test]
async fn a_secret_stored_before_versions_still_works_after_the_upgrade() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let Some(pki) = crate::upstream::server_pki() else {
        return;
    };
    let server = crate::upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    for stack in crate::support::stacks() {
        let trusting = crate::forward::trusting(&server);
        let app = crate::support::spawn_on(&stack, |config| {
            trusting(config);
            config.secrets.local.master_key = Some(Secret::new(hex(&MASTER_KEY)));
        })
        .await;
        let target = format!("https://localhost:{}/legacy", server.port);
        let (tenant, id, fingerprint) = mapped(&app, &fixtures, &target).await;
        let (account, token) = (tenant.account.clone(), tenant.token.clone());
        let config = app.config.clone();
        app.running.stop().await.unwrap();

        rewind_to_the_legacy_layout(&stack, &config, &fixtures, &account, id).await;

        let mut restart = config.clone();
        restart.server.listen = "127.0.0.1:0".parse().unwrap();
        let running = mtls_gateway::server::start(&restart).await.unwrap();
        let app = TestApp {
            base: format!("http://{}", running.address),
            running,
            config: restart,
        };
        let tenant = crate::forward::Tenant {
            app: &app,
            account,
            token,
        };
        assert_eq!(
            crate::certificates::stored_versions(&stack, &app, &tenant.account, id).await,
            (vec![], true),
            "{stack:?}: the legacy layout, and no version yet"
        );
        let (status, readiness) = ready(&app).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            readiness["certificatesWithoutSecret"],
            json!([]),
            "{stack:?}"
        );
        assert_eq!(presented(&tenant, &target).await, fingerprint.as_str());

        let (status, body) =
            replace_by_file(&tenant, &fixtures, id, "openssl-default-p384.p12").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let replaced = &body["successfulySavedCertificates"][0];
        assert_eq!(replaced["version"], 2);
        assert_eq!(
            presented(&tenant, &target).await,
            replaced["fingerprintSha256"]
        );
        assert_eq!(
            crate::certificates::stored_versions(&stack, &app, &tenant.account, id).await,
            (vec![2], false),
            "{stack:?}: the replacement removed the legacy secret"
        );
        app.running.stop().await.unwrap();
    }
}

/// Another writer's claim of `version` of certificate `id`, written `age` seconds ago: a
/// sealed row that opens as nothing, or a Vault path holding a marker.
async fn plant_claim(
    stack: &crate::support::Stack,
    app: &TestApp,
    account: &str,
    id: i64,
    version: i64,
    age: i64,
) {
    let written_at = i64::try_from(mtls_control::clock::unix_now()).unwrap() - age;
    match stack.vault() {
        None => {
            use mtls_secrets::SealedBlobs;
            let store =
                mtls_store::Store::connect(&mtls_gateway::backends::store_options(&app.config))
                    .await
                    .unwrap();
            let claim = mtls_secrets::SealedBlob {
                version,
                key_id: "someone".to_owned(),
                nonce: vec![0; 12],
                ciphertext: b"a writer's claim".to_vec(),
                written_at,
            };
            let key = mtls_secrets::SecretKey {
                account,
                certificate_id: id,
            };
            assert!(store.insert_blob(key, claim).await.unwrap());
            store.close().await;
        }
        Some((address, token)) => {
            let response = client()
                .post(format!("{address}/v1/secret/data/mtls/accounts/{account}/certificates/{id}/versions/{version}"))
                .header("X-Vault-Token", token)
                .json(&json!({"data": {"p12": "YSB3cml0ZXIncyBjbGFpbQ==", "password": "", "writtenAt": written_at}}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
    }
}

/// Whether the claim [`plant_claim`] wrote for `version` is still there, untouched.
async fn claim_left(
    stack: &crate::support::Stack,
    app: &TestApp,
    account: &str,
    id: i64,
    version: i64,
) -> bool {
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
            let blob = store.blob(key, version).await.unwrap();
            store.close().await;
            blob.is_some_and(|blob| blob.ciphertext == b"a writer's claim")
        }
        Some((address, token)) => {
            let response = client()
                .get(format!("{address}/v1/secret/data/mtls/accounts/{account}/certificates/{id}/versions/{version}"))
                .header("X-Vault-Token", token)
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            body["data"]["data"]["p12"] == "YSB3cml0ZXIncyBjbGFpbQ=="
        }
    }
}

/// A version claimed by a writer that never updated the row blocks replacements only until it
/// is old (then it is taken over, and the identity that writer re-sealed is replaced by the
/// new file's); a recent claim is another writer at work: 409, and its claim is left alone.
#[tokio::test]
async fn an_abandoned_version_claim_is_taken_over_and_a_recent_one_is_not() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let Some(pki) = crate::upstream::server_pki() else {
        return;
    };
    let server = crate::upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    for stack in crate::support::stacks() {
        let app = crate::support::spawn_on(&stack, crate::forward::trusting(&server)).await;
        let target = format!("https://localhost:{}/claims", server.port);
        let (tenant, id, fingerprint) = mapped(&app, &fixtures, &target).await;
        let account = tenant.account.clone();

        plant_claim(&stack, &app, &account, id, 2, 10).await;
        let (status, body) =
            replace_by_file(&tenant, &fixtures, id, "openssl-default-p384.p12").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("concurrent_update")),
            "{stack:?}: {body}"
        );
        assert!(
            claim_left(&stack, &app, &account, id, 2).await,
            "{stack:?}: the other writer's claim is untouched"
        );
        assert_eq!(presented(&tenant, &target).await, fingerprint.as_str());

        // The same claim, an hour old: abandoned, taken over.
        let key = mtls_secrets::SecretKey {
            account: &account,
            certificate_id: id,
        };
        match stack.vault() {
            None => {
                use mtls_secrets::SealedBlobs;
                let store =
                    mtls_store::Store::connect(&mtls_gateway::backends::store_options(&app.config))
                        .await
                        .unwrap();
                store
                    .delete_blobs(key, mtls_secrets::Versions::One(2))
                    .await
                    .unwrap();
                store.close().await;
            }
            Some((address, token)) => {
                let response = client()
                    .delete(format!("{address}/v1/secret/metadata/mtls/accounts/{account}/certificates/{id}/versions/2"))
                    .header("X-Vault-Token", token)
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
            }
        }
        plant_claim(&stack, &app, &account, id, 2, 3600).await;
        // The abandoned writer had re-sealed its own file's identity (another key and
        // certificate) beside its claim: the takeover must not leave it to be presented.
        let store = mtls_store::Store::connect(&mtls_gateway::backends::store_options(&app.config))
            .await
            .unwrap();
        let secrets = mtls_gateway::backends::secret_store(&app.config, &store).unwrap();
        let case = fixtures.case("openssl-default-rsa2048.p12");
        let theirs = mtls_pki::inspect(
            &fixtures.bytes(&case.file),
            &case.password,
            &mtls_pki::IntakePolicy::default(),
            mtls_control::Clock::system().time(),
        )
        .unwrap()
        .identity;
        let theirs = mtls_secrets::KeyMaterial {
            pkcs8: zeroize::Zeroizing::new(theirs.key.pkcs8_der().to_vec()),
            chain_pem: Some(mtls_pki::chain_pem(&theirs.certificate_chain)),
        };
        assert_eq!(
            secrets.put_identity(key, 2, &theirs).await.unwrap(),
            mtls_secrets::Written::Stored
        );
        let (status, body) =
            replace_by_file(&tenant, &fixtures, id, "openssl-default-p384.p12").await;
        assert_eq!(status, StatusCode::OK, "{stack:?}: {body}");
        let ours = secrets.identity(key, 2).await.unwrap().unwrap();
        // Compared, never printed: key bytes stay out of test output too.
        assert!(
            ours.pkcs8.as_slice() != theirs.pkcs8.as_slice(),
            "{stack:?}: the abandoned writer's identity was left beside the new file"
        );
        store.close().await;
        let replaced = &body["successfulySavedCertificates"][0];
        assert_eq!(replaced["version"], 2);
        assert_eq!(
            presented(&tenant, &target).await,
            replaced["fingerprintSha256"]
        );
        assert!(!claim_left(&stack, &app, &account, id, 2).await);
        assert_eq!(
            crate::certificates::stored_versions(&stack, &app, &account, id).await,
            (vec![2], false),
            "{stack:?}"
        );
        app.running.stop().await.unwrap();
    }
}

/// Two nodes on one database: node B's routing table still names version 1 after node A
/// replaced the certificate (B syncs only hourly here) and removed version 1's secret. B's
/// first forward loads the row's live version instead of failing: a rotation fails no request
/// on the other nodes either.
#[tokio::test]
async fn a_node_whose_table_lags_loads_the_live_version() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let Some(pki) = crate::upstream::server_pki() else {
        return;
    };
    let server = crate::upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    let node_a = spawn(crate::forward::trusting(&server)).await;
    let target = format!("https://localhost:{}/lagging", server.port);
    let (tenant_a, id, _) = mapped(&node_a, &fixtures, &target).await;
    let trusting = crate::forward::trusting(&server);
    let data_dir = node_a.config.data_dir.clone();
    let node_b = spawn(|config| {
        trusting(config);
        config.data_dir = data_dir;
        config.runtime.sync_interval_seconds = std::time::Duration::from_secs_f64(3600.0);
        config.forward.preload_identities = false;
    })
    .await;
    let (status, body) =
        replace_by_file(&tenant_a, &fixtures, id, "openssl-default-p384.p12").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let replaced = &body["successfulySavedCertificates"][0];
    let tenant_b = crate::forward::Tenant {
        app: &node_b,
        account: tenant_a.account.clone(),
        token: tenant_a.token.clone(),
    };
    assert_eq!(
        presented(&tenant_b, &target).await,
        replaced["fingerprintSha256"]
    );
    node_b.running.stop().await.unwrap();
    node_a.running.stop().await.unwrap();
}

/// Against the real stores (SQLite with the embedded store, OpenBao): a version is written
/// once, and an abandoned claim is replaced by one writer only, the one that saw it last
/// (compare-and-swap on the embedded store's nonce, on Vault's check-and-set).
#[tokio::test]
async fn the_real_stores_write_a_version_once_and_take_a_claim_over_once() {
    use std::sync::Arc;
    let dir = mtls_test_support::temp_dir("claims");
    let store = mtls_store::Store::connect(&mtls_store::StoreOptions {
        url: format!("sqlite://{}", dir.join("claims.db").display()),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
    })
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let master = mtls_secrets::MasterKey::from_hex(hex(&MASTER_KEY).as_bytes()).unwrap();
    let mut stores = vec![mtls_secrets::SecretStore::Local(
        mtls_secrets::LocalStore::new(master, Arc::new(store.clone())),
    )];
    if let Some((address, token)) = vault() {
        stores.push(mtls_secrets::SecretStore::Vault(Box::new(
            mtls_secrets::VaultStore::new(mtls_secrets::VaultOptions {
                address,
                mount: "secret".to_owned(),
                prefix: "mtls".to_owned(),
                namespace: None,
                ca_pem: None,
                auth: mtls_secrets::VaultAuth::Token(zeroize::Zeroizing::new(token)),
                timeout: Duration::from_secs(5),
                max_answer_bytes: mtls_secrets::answer_cap(1024 * 1024),
            })
            .unwrap(),
        )));
    }
    let material = |text: &str| mtls_secrets::SecretMaterial {
        p12: zeroize::Zeroizing::new(text.as_bytes().to_vec()),
        password: zeroize::Zeroizing::new(String::new()),
    };
    let p12 = |found: Option<mtls_secrets::SecretMaterial>| found.map(|found| found.p12.to_vec());
    use mtls_secrets::Written::{Stored, Taken};
    for secrets in &stores {
        let account = random_account();
        let key = mtls_secrets::SecretKey {
            account: &account,
            certificate_id: 7,
        };
        assert_eq!(
            secrets.put(key, 2, &material("first")).await.unwrap(),
            Stored
        );
        assert_eq!(
            secrets.put(key, 2, &material("second")).await.unwrap(),
            Taken
        );
        assert_eq!(
            p12(secrets.get(key, 2).await.unwrap()),
            Some(b"first".to_vec())
        );

        let seen = secrets.claim(key, 2).await.unwrap().unwrap();
        let now = i64::try_from(mtls_control::clock::unix_now()).unwrap();
        assert!((now - seen.written_at).abs() < 60, "{}", secrets.backend());
        let over = secrets
            .take_over(key, 2, &seen, &material("a"))
            .await
            .unwrap();
        let again = secrets
            .take_over(key, 2, &seen, &material("b"))
            .await
            .unwrap();
        assert_eq!((over, again), (Stored, Taken), "{}", secrets.backend());
        assert_eq!(p12(secrets.get(key, 2).await.unwrap()), Some(b"a".to_vec()));

        secrets.destroy(key).await.unwrap();
        assert_eq!(secrets.claim(key, 2).await.unwrap(), None);
    }
    store.close().await;
}

// ---- end of issue 17, defect 2 ----
