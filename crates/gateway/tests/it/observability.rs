//! `/metrics` after real traffic, and the expiry monitor: thresholds, the webhook sent once
//! (not again after a restart), `expiringWithinDays`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mtls_auth::Privilege;
use mtls_gateway::config::Secret;
use mtls_test_support::{p12_fixtures, random_account, short_lived_p12, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::forward::{Tenant, answer};
use crate::support::{client, spawn};
use crate::upstream;

async fn metrics(base: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = client().get(format!("{base}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The value of the first sample line starting with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_describe_requests_forwards_handshakes_and_dependencies() {
    let Some(fixtures) = p12_fixtures() else {
        return;
    };
    let Some(pki) = upstream::server_pki() else {
        return;
    };
    let server = upstream::start(&pki, Some(&fixtures.path("root.pem"))).await;
    let app = spawn(|config| {
        config.egress.allow_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
        config.tls.trust_roots = vec![server.ca_pem.clone()];
        // Idle upstream connections close at once: the next request reconnects, resuming.
        config.forward.idle_timeout_seconds = std::time::Duration::from_secs_f64(0.05);
        config.metrics.bearer_token = Some(Secret::new("scrape-token-0123".to_owned()));
        config.expiry.check_interval_seconds = std::time::Duration::from_secs_f64(0.2);
    })
    .await;
    let tenant = Tenant::new(&app);
    let (id, _) = tenant
        .certificate(&fixtures, "openssl-default-p256.p12")
        .await;
    let target = format!("https://localhost:{}/metered", server.port);
    tenant.map(id, "1", &target).await;
    for _ in 0..3 {
        let (status, _, body) = answer(tenant.forward(reqwest::Method::GET, &target)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (status, _, _) =
        answer(tenant.forward(reqwest::Method::GET, "https://localhost:1/refused")).await;
    assert_eq!(status, StatusCode::FAILED_DEPENDENCY);

    // The token is required when configured; nothing else is accepted.
    assert_eq!(metrics(&app.base, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        metrics(&app.base, Some("scrape-token-0124")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, text) = metrics(&app.base, Some("scrape-token-0123")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        sample(
            &text,
            "mtls_http_request_duration_seconds_count{group=\"forward\",status=\"200\"}"
        ) >= Some(3.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "mtls_http_request_duration_seconds_count{group=\"configuration\",status=\"201\"}"
        ) >= Some(1.0)
    );
    assert!(sample(&text, "mtls_forward_upstream_duration_seconds_count") >= Some(3.0));
    assert_eq!(
        sample(
            &text,
            "mtls_forward_failures_total{code=\"connect_failed\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "mtls_forward_upstream_connections_total{handshake=\"full\"}"
        ) >= Some(1.0)
    );
    assert!(
        sample(
            &text,
            "mtls_forward_upstream_connections_total{handshake=\"resumed\"}"
        ) >= Some(1.0),
        "reconnections of one identity resume its TLS session: {text}"
    );
    assert!(sample(&text, "mtls_runtime_snapshot_revision") >= Some(1.0));
    assert!(sample(&text, "mtls_runtime_snapshot_reloads_total") >= Some(1.0));
    assert!(sample(&text, "mtls_runtime_snapshot_age_seconds").is_some());
    assert!(
        sample(
            &text,
            "mtls_dependency_call_duration_seconds_count{dependency=\"database\",operation=\"insert_certificates\"}"
        ) >= Some(1.0)
    );
    assert!(
        sample(
            &text,
            "mtls_dependency_call_duration_seconds_count{dependency=\"secret_store\",operation=\"get\"}"
        ) >= Some(1.0)
    );
    // The expiry monitor's view of the certificate (refreshed every 0.2 s here).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, text) = metrics(&app.base, Some("scrape-token-0123")).await;
    let expiry = sample(
        &text,
        &format!(
            "mtls_certificate_expiry_seconds{{account=\"{}\",id=\"{id}\",name=\"openssl-default-p256.p12\"}}",
            tenant.account
        ),
    )
    .unwrap_or_else(|| panic!("{text}"));
    assert!(expiry > 86_400.0, "{expiry}");
    assert!(sample(&text, "mtls_certificates{status=\"Available\"}") >= Some(1.0));
    // Nothing secret in it.
    assert!(!text.contains("fixture-secret") && !text.contains(&tenant.token));
    app.running.stop().await.unwrap();
}

/// A webhook receiver: every JSON body POSTed to it.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        sink.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap());
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, received)
}

#[tokio::test]
async fn expiring_certificates_are_reported_once_across_restarts() {
    let Some(p12) = short_lived_p12(5 * 86_400) else {
        return;
    };
    let Some(later) = short_lived_p12(60 * 86_400) else {
        return;
    };
    let (url, received) = receiver().await;
    let data_dir = temp_dir("expiry").join("data");
    let configure = |config: &mut mtls_gateway::config::Config| {
        config.data_dir = data_dir.clone();
        config.expiry.check_interval_seconds = std::time::Duration::from_secs_f64(0.2);
        config.expiry.webhook_url = Some(Secret::new(url.clone()));
    };
    let app = spawn(configure).await;
    let account = random_account();
    let token = app.token(
        &[&account],
        &[Privilege::ReadInternal, Privilege::WriteInternal],
    );
    let list = app.url(&format!("/mtls/account/{account}/certificates"));
    let response = client()
        .post(&list)
        .bearer_auth(&token)
        .json(&json!([
            { "name": "soon", "p12": STANDARD.encode(&p12), "password": "short" },
            { "name": "later", "p12": STANDARD.encode(&later), "password": "short" },
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let saved: Value = response.json().await.unwrap();
    let soon = saved["successfulySavedCertificates"][0]["id"]
        .as_i64()
        .unwrap();

    for _ in 0..50 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let notes = received.lock().unwrap().clone();
    // Five days left crosses 30, 14 and 7: one notification, naming the closest threshold.
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["event"], "certificate_expiring");
    assert_eq!(notes[0]["accountId"], account.as_str());
    assert_eq!(notes[0]["certificateId"], soon);
    assert_eq!(notes[0]["name"], "soon");
    assert_eq!(notes[0]["thresholdDays"], 7);
    assert!(!notes[0].to_string().contains("short\""), "no password");

    // The additive filter of the list.
    let names = |body: Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|item| item["name"].as_str().unwrap().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    for (days, expected) in [
        ("6", vec!["soon"]),
        ("4", vec![]),
        ("90", vec!["later", "soon"]),
    ] {
        let body: Value = client()
            .get(format!("{list}?expiringWithinDays={days}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(names(body), expected, "within {days} days");
    }
    let response = client()
        .get(format!("{list}?expiringWithinDays=soon"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // A restart on the same database: the monitor runs again and sends nothing twice.
    app.running.stop().await.unwrap();
    let again = spawn(configure).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "notified again after a restart"
    );
    again.running.stop().await.unwrap();
}

// ---- The caller's request id in the access log (issue 18, item 2; SPEC 6.2) ---------------

/// The real binary's access log names the caller's `X-Request-Id` as the request id; an invalid
/// one never reaches the log (the fresh id that replaced it does).
#[tokio::test]
async fn the_access_log_names_the_callers_request_id() {
    let dir = temp_dir("request-id-log");
    let mut served = crate::cli::serve(&dir, &[]);
    let forward = format!("{}/mtls/account/acct-1", served.base);
    let response = client()
        .get(&forward)
        .header("X-Request-Id", "caller-log-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["x-request-id"], "caller-log-trace-42");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["requestId"], "caller-log-trace-42");
    let response = client()
        .get(&forward)
        .header("X-Request-Id", "forged\tline")
        .send()
        .await
        .unwrap();
    let made = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(made, "forged\tline");
    let log = served.stop();
    let line = |id: &str| {
        log.lines()
            .find(|line| line.contains(&format!("request_id={id}")))
            .unwrap_or_else(|| panic!("no access-log line for {id}: {log}"))
            .to_owned()
    };
    let adopted = line("caller-log-trace-42");
    assert!(
        adopted.contains("status=401") && adopted.contains("/mtls/account/{account_id}"),
        "{adopted}"
    );
    assert!(line(&made).contains("status=401"));
    assert!(!log.contains("forged"), "{log}");
}
