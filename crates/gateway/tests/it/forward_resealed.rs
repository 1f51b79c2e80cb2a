//! A cold identity load opens the identity re-sealed from the PKCS#12 file instead of paying
//! the file's key derivations again (issue 16, item 4; docs/forward.md, "Cold identities"):
//! on both stacks, with a real OpenSSL file at 600,000 PBKDF2 iterations, a real TLS server
//! that requires client certificates, and the stage counts of
//! `mtls_forward_identity_load_seconds` telling an unseal from a parse.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mtls_secrets::{SecretKey, SecretStore, Versions};
use mtls_test_support::{P12Fixtures, p12_fixtures};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::forward::{Tenant, answer, trusting};
use crate::support::{Stack, TestApp, client, spawn_on, stacks};
use crate::upstream::{self, Upstream};

async fn setup() -> Option<(P12Fixtures, Upstream)> {
    let fixtures = p12_fixtures()?;
    let pki = upstream::server_pki()?;
    let server = upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    Some((fixtures, server))
}

/// A P-256 PKCS#12 file made by OpenSSL with 600,000 PBKDF2 iterations for the key, the
/// certificates and the MAC (1.8 M in all: about 0.3 s to parse in a debug build), and its
/// password; `None` without the `openssl` tool.
pub(crate) fn costly_p12(fixtures: &P12Fixtures) -> Option<(Vec<u8>, String)> {
    let scratch = mtls_test_support::temp_dir("costly-p12");
    let (key, certificate, chain) = (
        fixtures.path("p256.key"),
        fixtures.path("p256.pem"),
        fixtures.path("chain.pem"),
    );
    #[rustfmt::skip]
    mtls_test_support::openssl(&scratch, &[
        "pkcs12", "-export", "-name", "fixture", "-iter", "600000", "-maciter",
        "-inkey", key.to_str()?, "-in", certificate.to_str()?,
        "-certfile", chain.to_str()?, "-passout", "pass:cold-secret", "-out", "costly.p12",
    ])?;
    Some((
        std::fs::read(scratch.join("costly.p12")).ok()?,
        "cold-secret".to_owned(),
    ))
}

/// Uploads `bytes` for `tenant` (or replaces certificate `id` with it); the saved entity.
async fn upload(tenant: &Tenant<'_>, id: Option<i64>, bytes: &[u8], password: &str) -> Value {
    let mut item = json!({ "name": "costly", "p12": STANDARD.encode(bytes), "password": password });
    if let Some(id) = id {
        item["id"] = json!(id);
    }
    let url = tenant
        .app
        .url(&format!("/mtls/account/{}/certificates", tenant.account));
    let request = match id {
        None => client().post(url),
        Some(_) => client().put(url),
    };
    let response = request
        .bearer_auth(&tenant.token)
        .json(&json!([item]))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["successfulySavedCertificates"][0].clone()
}

/// The gateway's own secret store (the configured backend) and its metadata store.
async fn secret_store(app: &TestApp) -> (mtls_store::Store, SecretStore) {
    let store = mtls_store::Store::connect(&mtls_gateway::backends::store_options(&app.config))
        .await
        .unwrap();
    let secrets = mtls_gateway::backends::secret_store(&app.config, &store).unwrap();
    (store, secrets)
}

/// The versions of certificate `id` (1 to 8) that have a re-sealed identity.
async fn identity_versions(secrets: &SecretStore, account: &str, id: i64) -> Vec<i64> {
    let key = SecretKey {
        account,
        certificate_id: id,
    };
    let mut versions = Vec::new();
    for version in 1..=8 {
        if secrets.identity(key, version).await.unwrap().is_some() {
            versions.push(version);
        }
    }
    versions
}

/// The counts of the cold load stages: (unseal, secret_store, parse, load).
async fn stages(app: &TestApp) -> [u64; 4] {
    let mut counts = [0; 4];
    for (count, stage) in counts
        .iter_mut()
        .zip(["unseal", "secret_store", "parse", "load"])
    {
        let series = format!("mtls_forward_identity_load_seconds_count{{stage=\"{stage}\"}}");
        *count = crate::support::metric_value(app, &series)
            .await
            .unwrap_or(0);
    }
    counts
}

/// One forward that must present `fingerprint`; the stage counts it added.
async fn forward(tenant: &Tenant<'_>, target: &str, fingerprint: &str) -> [u64; 4] {
    let before = stages(tenant.app).await;
    let (status, _, body) = answer(tenant.forward(reqwest::Method::GET, target)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["fingerprint"], fingerprint,
        "the certificate presented"
    );
    let after = stages(tenant.app).await;
    std::array::from_fn(|index| after[index] - before[index])
}

/// Waits until the idle sweep has unloaded `count` identities in all.
async fn unloaded(app: &TestApp, count: u64) {
    for _ in 0..100 {
        let done: u64 = crate::support::metric_value(app, "mtls_forward_identities_unloaded_total")
            .await
            .unwrap_or(0);
        if done >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the idle identity was not unloaded");
}

async fn gateway(stack: &Stack, server: &Upstream) -> TestApp {
    spawn_on(stack, |config| {
        trusting(server)(config);
        config.forward.identity_idle_seconds = std::time::Duration::from_secs_f64(0.5);
        config.server.workers = 1;
    })
    .await
}

/// Unseal, secret_store, parse, load: what a load from the re-sealed identity counts.
const UNSEALED: [u64; 4] = [1, 0, 0, 1];
/// What a load that parses the PKCS#12 file counts (the identity looked for first).
const PARSED: [u64; 4] = [1, 1, 1, 1];

/// Right after the upload, and again after the idle identity was unloaded, a cold load opens
/// the re-sealed identity: no secret read of the file, no PKCS#12 parse, and the target sees
/// the uploaded certificate.
#[tokio::test]
async fn a_cold_load_after_upload_and_after_unload_does_not_parse_the_pkcs12() {
    let Some((fixtures, server)) = setup().await else {
        return;
    };
    let Some((bytes, password)) = costly_p12(&fixtures) else {
        return;
    };
    for stack in stacks() {
        let app = gateway(&stack, &server).await;
        let tenant = Tenant::new(&app);
        let saved = upload(&tenant, None, &bytes, &password).await;
        let id = saved["id"].as_i64().unwrap();
        let fingerprint = saved["fingerprintSha256"].as_str().unwrap();
        let target = format!("https://localhost:{}/resealed", server.port);
        tenant.map(id, "1", &target).await;
        let (store, secrets) = secret_store(&app).await;
        assert_eq!(
            identity_versions(&secrets, &tenant.account, id).await,
            [1],
            "{stack:?}"
        );

        assert_eq!(
            forward(&tenant, &target, fingerprint).await,
            UNSEALED,
            "{stack:?}"
        );
        unloaded(&app, 1).await;
        assert_eq!(
            forward(&tenant, &target, fingerprint).await,
            UNSEALED,
            "{stack:?}: after the unload"
        );
        store.close().await;
        app.running.stop().await.unwrap();
    }
}

/// A certificate stored before identities were re-sealed (its identity removed through the
/// store's API): its first cold load parses the PKCS#12 file once and re-seals the identity,
/// so that the next cold load (after an unload) does not parse it.
#[tokio::test]
async fn a_certificate_without_its_identity_is_parsed_once_and_resealed() {
    let Some((fixtures, server)) = setup().await else {
        return;
    };
    let Some((bytes, password)) = costly_p12(&fixtures) else {
        return;
    };
    for stack in stacks() {
        let app = gateway(&stack, &server).await;
        let tenant = Tenant::new(&app);
        let saved = upload(&tenant, None, &bytes, &password).await;
        let id = saved["id"].as_i64().unwrap();
        let fingerprint = saved["fingerprintSha256"].as_str().unwrap();
        let target = format!("https://localhost:{}/legacy", server.port);
        tenant.map(id, "1", &target).await;
        let (store, secrets) = secret_store(&app).await;
        let key = SecretKey {
            account: &tenant.account,
            certificate_id: id,
        };
        secrets.remove_identities(key, Versions::All).await.unwrap();
        assert!(
            identity_versions(&secrets, &tenant.account, id)
                .await
                .is_empty()
        );

        assert_eq!(
            forward(&tenant, &target, fingerprint).await,
            PARSED,
            "{stack:?}"
        );
        assert_eq!(
            identity_versions(&secrets, &tenant.account, id).await,
            [1],
            "{stack:?}: re-sealed by the load"
        );
        unloaded(&app, 1).await;
        assert_eq!(
            forward(&tenant, &target, fingerprint).await,
            UNSEALED,
            "{stack:?}: after the unload"
        );
        store.close().await;
        app.running.stop().await.unwrap();
    }
}

/// A replacement re-seals the new version's identity and removes the old one's with its
/// file; a delete removes every identity of the certificate.
#[tokio::test]
async fn replacement_and_delete_leave_no_identity_behind() {
    let Some((fixtures, server)) = setup().await else {
        return;
    };
    for stack in stacks() {
        let app = gateway(&stack, &server).await;
        let tenant = Tenant::new(&app);
        let file = "openssl-default-p256.p12";
        let first = fixtures.bytes(file);
        let password = fixtures.case(file).password.clone();
        let saved = upload(&tenant, None, &first, &password).await;
        let id = saved["id"].as_i64().unwrap();
        let (store, secrets) = secret_store(&app).await;
        assert_eq!(identity_versions(&secrets, &tenant.account, id).await, [1]);

        let second = "openssl-default-p384.p12";
        let replaced = upload(
            &tenant,
            Some(id),
            &fixtures.bytes(second),
            &fixtures.case(second).password,
        )
        .await;
        assert_eq!(replaced["version"], 2, "{replaced}");
        assert_eq!(
            identity_versions(&secrets, &tenant.account, id).await,
            [2],
            "{stack:?}: the old version's identity went with its file"
        );
        let target = format!("https://localhost:{}/replaced", server.port);
        tenant.map(id, "1", &target).await;
        let fingerprint = replaced["fingerprintSha256"].as_str().unwrap();
        assert_eq!(
            forward(&tenant, &target, fingerprint).await,
            UNSEALED,
            "{stack:?}"
        );

        let response = client()
            .delete(app.url(&format!(
                "/mtls/account/{}/certificates/{id}?force=true",
                tenant.account
            )))
            .bearer_auth(&tenant.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            identity_versions(&secrets, &tenant.account, id)
                .await
                .is_empty(),
            "{stack:?}: deleted with the certificate"
        );
        if let Some((address, token)) = stack.vault() {
            let listed = client()
                .get(format!(
                    "{address}/v1/secret/metadata/mtls/accounts/{}/certificates/{id}/identities?list=true",
                    tenant.account
                ))
                .header("X-Vault-Token", token)
                .send()
                .await
                .unwrap();
            assert_eq!(
                listed.status(),
                StatusCode::NOT_FOUND,
                "no identity path left"
            );
        }
        store.close().await;
        app.running.stop().await.unwrap();
    }
}
