//! OAuth 1.0a with signatures made by Python's oauthlib (an independent implementation), app
//! keys made by the real `app-key` command, replay across nodes, revocation.

use std::process::Command;
use std::time::{Duration, Instant};

use mtls_gateway::config::Config;
use mtls_test_support::{python, random_account, skip, workspace_root};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Stack, TestApp, client, spawn, spawn_on, stacks};

pub(crate) struct Key {
    pub(crate) consumer_key: String,
    pub(crate) consumer_secret: String,
    pub(crate) token: String,
    pub(crate) token_secret: String,
}

/// The environment that points the command line at `config`'s database and secret store.
pub(crate) fn envs(config: &Config, stack: &Stack) -> Vec<(String, String)> {
    let mut envs = vec![(
        "MTLS_GATEWAY__DATA_DIR".to_owned(),
        config.data_dir.display().to_string(),
    )];
    if let Stack::MariaDbVault {
        mysql_url,
        vault_address,
        vault_token,
    } = stack
    {
        envs.push(("MTLS_GATEWAY__DATABASE__URL".to_owned(), mysql_url.clone()));
        envs.push((
            "MTLS_GATEWAY__SECRETS__BACKEND".to_owned(),
            "vault".to_owned(),
        ));
        envs.push((
            "MTLS_GATEWAY__SECRETS__VAULT__ADDRESS".to_owned(),
            vault_address.clone(),
        ));
        envs.push((
            "MTLS_GATEWAY__SECRETS__VAULT__TOKEN".to_owned(),
            vault_token.clone(),
        ));
    }
    envs
}

pub(crate) fn cli(envs: &[(String, String)], args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_mtls-gateway"))
        .envs(envs.iter().cloned())
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub(crate) fn create_key(envs: &[(String, String)], account: &str) -> Key {
    let out = cli(
        envs,
        &[
            "app-key",
            "create",
            "--account",
            account,
            "--privileges",
            "MTLS_READ_INTERNAL,MTLS_WRITE_INTERNAL",
        ],
    );
    let value = |name: &str| {
        out.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    Key {
        consumer_key: value("consumer_key"),
        consumer_secret: value("consumer_secret"),
        token: value("access_token"),
        token_secret: value("token_secret"),
    }
}

pub(crate) fn oauthlib_available() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import oauthlib"])
        .status()
        .is_ok_and(|status| status.success());
    if !ok {
        skip(
            "OAuth tests",
            "the Python package oauthlib is not installed",
        );
    }
    ok
}

/// The Authorization header oauthlib makes for this request.
fn sign(key: &Key, method: &str, url: &str, extra: &[&str]) -> String {
    let output = Command::new(python())
        .arg(workspace_root().join("scripts/oauth_sign.py"))
        .args(extra)
        // Secrets may begin with '-': end the options first.
        .arg("--")
        .args([
            method,
            url,
            &key.consumer_key,
            &key.consumer_secret,
            &key.token,
            &key.token_secret,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn get(url: &str, authorization: &str) -> StatusCode {
    client()
        .get(url)
        .header("Authorization", authorization)
        .send()
        .await
        .unwrap()
        .status()
}

/// Polls until a freshly signed GET of `url` answers `want` (the sync interval passing).
async fn until(key: &Key, url: &str, want: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get(url, &sign(key, "GET", url, &[])).await == want {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn fast(config: &mut Config) {
    config.runtime.sync_interval_seconds = std::time::Duration::from_secs_f64(0.2);
}

#[tokio::test]
async fn oauthlib_signatures_are_accepted_and_tampering_refused() {
    if !oauthlib_available() {
        return;
    }
    let app = spawn(fast).await;
    let envs = envs(&app.config, &Stack::SqliteLocal);
    let account = random_account();
    let key = create_key(&envs, &account);
    let list = app.url(&format!("/mtls/account/{account}/certificates"));
    until(&key, &list, StatusCode::OK).await;

    // GET with query parameters, non-ASCII values, both signature methods.
    let query = format!("{list}?include_deleted=true&note=caf%C3%A9%20%E2%9C%93&empty=");
    assert_eq!(
        get(&query, &sign(&key, "GET", &query, &[])).await,
        StatusCode::OK
    );
    assert_eq!(
        get(&query, &sign(&key, "GET", &query, &["--sha256"])).await,
        StatusCode::OK
    );

    // POST with form parameters: authenticated (the handler then refuses a form body).
    let form = "name=caf%C3%A9&items=%5B%5D&plus=a+b";
    let authorization = sign(&key, "POST", &list, &["--form", form]);
    let send_form = |authorization: String, body: &'static str| {
        client()
            .post(&list)
            .header("Authorization", authorization)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let response = send_form(
        authorization.clone(),
        "name=caf%C3%A9&items=%5B%5D&plus=a+b",
    )
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "signature accepted, body refused"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");

    // A replayed nonce, a changed form parameter, a changed query parameter, a stale timestamp.
    assert_eq!(
        send_form(authorization, "name=caf%C3%A9&items=%5B%5D&plus=a+b")
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let altered = sign(&key, "POST", &list, &["--form", form]);
    assert_eq!(
        send_form(altered, "name=other&items=%5B%5D&plus=a+b")
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let signed = sign(&key, "GET", &format!("{list}?include_deleted=true"), &[]);
    assert_eq!(
        get(&format!("{list}?include_deleted=false"), &signed).await,
        StatusCode::UNAUTHORIZED
    );
    let stale = (mtls_api::now() - 1000).to_string();
    assert_eq!(
        get(&list, &sign(&key, "GET", &list, &["--timestamp", &stale])).await,
        StatusCode::UNAUTHORIZED
    );
    let wrong_secret = Key {
        consumer_secret: "not-the-secret".to_owned(),
        ..key_clone(&key)
    };
    assert_eq!(
        get(&list, &sign(&wrong_secret, "GET", &list, &[])).await,
        StatusCode::UNAUTHORIZED
    );
    let unknown = Key {
        consumer_key: "ck_unknown".to_owned(),
        ..key_clone(&key)
    };
    assert_eq!(
        get(&list, &sign(&unknown, "GET", &list, &[])).await,
        StatusCode::UNAUTHORIZED
    );
    // The key covers its account only.
    let other = app.url(&format!("/mtls/account/{}/certificates", random_account()));
    assert_eq!(
        get(&other, &sign(&key, "GET", &other, &[])).await,
        StatusCode::FORBIDDEN
    );

    // The audit trail names the consumer key.
    let audit = app.url(&format!("/mtls/account/{account}/audit"));
    let trail: Value = client()
        .get(&audit)
        .header("Authorization", sign(&key, "GET", &audit, &[]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = trail["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|entry| entry["actor"] == format!("oauth:{}", key.consumer_key)),
        "{trail}"
    );
    assert!(
        entries
            .iter()
            .any(|entry| entry["action"] == "app_key.create" && entry["actor"] == "cli"),
        "{trail}"
    );

    // Listed without secrets; revoked: refused within the sync interval.
    let listed = cli(&envs, &["app-key", "list"]);
    assert!(
        listed.contains(&key.consumer_key)
            && !listed.contains(&key.consumer_secret)
            && !listed.contains(&key.token_secret)
    );
    cli(&envs, &["app-key", "revoke", &key.consumer_key]);
    until(&key, &list, StatusCode::UNAUTHORIZED).await;
    assert!(cli(&envs, &["app-key", "list"]).contains("revoked"));
    app.running.stop().await.unwrap();
}

fn key_clone(key: &Key) -> Key {
    Key {
        consumer_key: key.consumer_key.clone(),
        consumer_secret: key.consumer_secret.clone(),
        token: key.token.clone(),
        token_secret: key.token_secret.clone(),
    }
}

/// Two nodes sharing MariaDB and Vault: a nonce used on one is refused on the other.
#[tokio::test]
async fn a_nonce_is_refused_on_every_node_sharing_the_database() {
    if !oauthlib_available() {
        return;
    }
    let Some(stack) = stacks().into_iter().nth(1) else {
        return;
    };
    let first: TestApp = spawn_on(&stack, fast).await;
    let second: TestApp = spawn_on(&stack, fast).await;
    let account = random_account();
    let key = create_key(&envs(&first.config, &stack), &account);
    let path = format!("/mtls/account/{account}/certificates");
    until(&key, &first.url(&path), StatusCode::OK).await;
    until(&key, &second.url(&path), StatusCode::OK).await;
    // The signed URL must be the same on both: sign for the first node's address, and tell the
    // second node that clients address it by that same base URL.
    let signed_url = first.url(&path);
    let authorization = sign(&key, "GET", &signed_url, &[]);
    assert_eq!(get(&signed_url, &authorization).await, StatusCode::OK);
    let response = client()
        .get(second.url(&path))
        .header("Authorization", &authorization)
        .header(
            "Host",
            signed_url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the nonce store is shared"
    );
    let fresh = sign(&key, "GET", &signed_url, &[]);
    let response = client()
        .get(second.url(&path))
        .header("Authorization", &fresh)
        .header(
            "Host",
            signed_url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the same request with a fresh nonce passes on the second node"
    );
    second.running.stop().await.unwrap();
    first.running.stop().await.unwrap();
}

/// Behind a TLS-terminating proxy the client signs the public URL; `auth.public_base_url`
/// makes the gateway verify against it.
#[tokio::test]
async fn the_public_base_url_is_what_clients_sign() {
    if !oauthlib_available() {
        return;
    }
    let app = spawn(|config| {
        fast(config);
        config.auth.public_base_url = Some("https://gateway.example".parse().unwrap());
    })
    .await;
    let account = random_account();
    let key = create_key(&envs(&app.config, &Stack::SqliteLocal), &account);
    let path = format!("/mtls/account/{account}/certificates");
    let public = format!("https://gateway.example:443{path}?x=1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get(
            &app.url(&format!("{path}?x=1")),
            &sign(&key, "GET", &public, &[]),
        )
        .await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "never accepted: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Signed for the address the gateway sees instead: refused.
    let internal = app.url(&format!("{path}?x=1"));
    assert_eq!(
        get(&internal, &sign(&key, "GET", &internal, &[])).await,
        StatusCode::UNAUTHORIZED
    );
    app.running.stop().await.unwrap();
}
