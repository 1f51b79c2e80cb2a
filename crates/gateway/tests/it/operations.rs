//! Outages of the real MariaDB and OpenBao, seen from the gateway through TCP relays that a
//! test switches off: the runtime keeps serving from its snapshot and warm identities, the
//! configuration API answers 503, a cold identity gets 503, and everything recovers by itself.

use std::time::{Duration, Instant};

use mtls_auth::Privilege;
use mtls_gateway::config::Secret;
use mtls_test_support::{mysql_url, p12_fixtures, skip, vault};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::forward::{Tenant, answer};
use crate::support::{Switch, TestApp, client, spawn};
use crate::upstream;

async fn exists(app: &TestApp, token: &str, account: &str, url: &str) -> Result<bool, StatusCode> {
    let response = client()
        .post(app.url("/mtls/mapping?v=2"))
        .bearer_auth(token)
        .json(&json!([{ "serviceName": "IDP", "accountId": account, "url": url }]))
        .send()
        .await
        .unwrap();
    let status = response.status();
    if status != StatusCode::OK {
        return Err(status);
    }
    let body: Value = response.json().await.unwrap();
    Ok(body[0]["doExist"].as_bool().unwrap())
}

/// Polls until `condition` holds; fails after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn database_and_secret_store_outages() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let (Some(mysql), Some((vault_address, vault_token))) = (mysql_url(), vault()) else {
        skip("outage test", "needs MariaDB and Vault/OpenBao");
        return;
    };
    let Some(pki) = upstream::server_pki() else {
        return;
    };
    let server = upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    let mysql_address = mysql
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let database = Switch::to(&mysql_address).await;
    let secrets = Switch::to(
        vault_address
            .trim_start_matches("http://")
            .trim_end_matches('/'),
    )
    .await;
    let app = spawn(|config| {
        config.database.url = Some(Secret::new(
            mysql.replace(&mysql_address, &database.address.to_string()),
        ));
        config.database.acquire_timeout_seconds = std::time::Duration::from_secs(1);
        config.secrets.backend = mtls_gateway::config::SecretsBackend::Vault;
        config.secrets.vault.address = format!("http://{}", secrets.address).parse().unwrap();
        config.secrets.vault.token = Some(Secret::new(vault_token.clone()));
        config.secrets.vault.timeout_seconds = std::time::Duration::from_secs(2);
        config.egress.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
        config.tls.trust_roots = vec![server.ca_pem.clone()];
    })
    .await;
    let tenant = Tenant::new(&app);
    let checker = app.token(&["*"], &[Privilege::ReadInternal]);
    let (warm, warm_fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let (cold, cold_fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-rsa2048.p12")
        .await;
    let warm_url = format!("https://localhost:{}/warm", server.port);
    let cold_url = format!("https://localhost:{}/cold", server.port);
    tenant.map(warm, "1", &warm_url).await;
    tenant.map(cold, "1", &cold_url).await;
    let forward = |url: &str| answer(tenant.forward(reqwest::Method::GET, url));
    let (status, _, body) = forward(&warm_url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["fingerprint"].as_str(),
        Some(warm_fingerprint.as_str())
    );
    let list = tenant
        .app
        .url(&format!("/mtls/account/{}/certificates", tenant.account));

    // The database goes away: the runtime answers from its snapshot and warm identities;
    // configuration calls and readiness say 503.
    database.off();
    let outage = Instant::now();
    assert_eq!(
        exists(&app, &checker, &tenant.account, &warm_url).await,
        Ok(true)
    );
    let (status, _, body) = forward(&warm_url).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a warm forward during a database outage: {body}"
    );
    let response = client()
        .get(&list)
        .bearer_auth(&tenant.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "dependency_unavailable");
    let ready = client().get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Several sync intervals pass: the snapshot is kept, not emptied.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        exists(&app, &checker, &tenant.account, &warm_url).await,
        Ok(true)
    );
    database.on();
    let recovered = eventually(Duration::from_secs(20), "database recovery", || async {
        client()
            .get(&list)
            .bearer_auth(&tenant.token)
            .send()
            .await
            .is_ok_and(|response| response.status() == StatusCode::OK)
    })
    .await;
    eprintln!(
        "database outage: {:?} down, configuration API back {recovered:?} after the database",
        outage.elapsed() - recovered
    );

    // The secret store goes away: the warm identity keeps forwarding, a cold one gets 503.
    secrets.off();
    let (status, _, body) = forward(&warm_url).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a warm forward during a Vault outage: {body}"
    );
    let (status, _, body) = forward(&cold_url).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "secret_store_unavailable");
    secrets.on();
    let recovered = eventually(Duration::from_secs(20), "secret store recovery", || async {
        forward(&cold_url).await.0 == StatusCode::OK
    })
    .await;
    eprintln!("secret store outage: cold identity served {recovered:?} after Vault came back");
    let (_, _, body) = forward(&cold_url).await;
    assert_eq!(
        body["fingerprint"].as_str(),
        Some(cold_fingerprint.as_str())
    );
    app.running.stop().await.unwrap();
}

/// With `forward.preload_identities`, a mapped identity is loaded without any forward: it
/// serves during a secret-store outage although it was never used.
#[tokio::test]
async fn preloaded_identities_need_no_secret_store() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let Some((vault_address, vault_token)) = vault() else {
        return;
    };
    let Some(pki) = upstream::server_pki() else {
        return;
    };
    let server = upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    let secrets = Switch::to(
        vault_address
            .trim_start_matches("http://")
            .trim_end_matches('/'),
    )
    .await;
    let app = spawn(|config| {
        config.secrets.backend = mtls_gateway::config::SecretsBackend::Vault;
        config.secrets.vault.address = format!("http://{}", secrets.address).parse().unwrap();
        config.secrets.vault.token = Some(Secret::new(vault_token.clone()));
        config.secrets.vault.timeout_seconds = std::time::Duration::from_secs(2);
        config.egress.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
        config.tls.trust_roots = vec![server.ca_pem.clone()];
        config.forward.preload_identities = true;
    })
    .await;
    let tenant = Tenant::new(&app);
    let (id, fingerprint) = tenant
        .certificate(&fixtures, "openssl-default-p384.p12")
        .await;
    let url = format!("https://localhost:{}/preloaded", server.port);
    tenant.map(id, "1", &url).await;
    // The preload runs in the background after the mapping's routing-table rebuild.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    secrets.off();
    let (status, _, body) = answer(tenant.forward(reqwest::Method::GET, &url)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fingerprint"].as_str(), Some(fingerprint.as_str()));
    app.running.stop().await.unwrap();
}
