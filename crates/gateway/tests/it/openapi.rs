//! `/openapi.json` describes what the router serves: every documented operation is routed
//! (never the router's own 404 or 405), and every request body and answer schema it names
//! exists. Conformance of answers to the schemas is `scripts/api-fuzz` (schemathesis).

use mtls_auth::Privilege;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{client, spawn};

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn(|_| {}).await;
    let document: Value = client()
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let token = app.token(
        &["acme"],
        &[
            Privilege::ReadInternal,
            Privilege::WriteInternal,
            Privilege::Forward,
        ],
    );
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let text = document.to_string();
    for (name, _) in schemas {
        assert!(
            text.contains(&format!("#/components/schemas/{name}")),
            "{name} is never used"
        );
    }
    for reference in text.split("#/components/schemas/").skip(1) {
        let name: String = reference.chars().take_while(|c| *c != '"').collect();
        assert!(
            schemas.contains_key(&name),
            "{name} is referenced but not defined"
        );
    }
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        let url = app.url(&path.replace("{accountId}", "acme").replace("{id}", "1"));
        for (method, _) in item.as_object().unwrap() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let response = client()
                .request(method.clone(), &url)
                .bearer_auth(&token)
                .header("LP-forward-url", "https://192.168.0.1/")
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !(status == StatusCode::NOT_FOUND && body.contains("no such resource")),
                "{method} {path} is documented but not routed"
            );
            operations += 1;
        }
    }
    assert!(operations >= 30, "{operations} operations");
    app.running.stop().await.unwrap();
}

/// The other direction: every path the router was built with (as recorded while building it,
/// `mtls_api::routed_paths`, the forward route among them) is asked with every method;
/// each method the application answers with anything but its 405 fallback is documented. A
/// route added without its operation fails here. HEAD is covered by a documented GET (axum
/// answers HEAD with the GET handler, as HTTP requires); CONNECT is not a method a route takes.
#[tokio::test]
async fn every_routed_operation_is_documented() {
    use axum::body::Body;
    use axum::http::{Method, Request};

    let app = spawn(|_| {}).await;
    let document: Value = client()
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented = document["paths"].as_object().unwrap();
    let state = mtls_gateway::server::state(&app.config).unwrap();
    let paths = mtls_api::routed_paths(&state, mtls_api::Surface::All);
    let application = mtls_api::App::new(state, mtls_api::Surface::All);
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let mut undocumented = Vec::new();
    let mut routed = 0;
    for path in &paths {
        let name = path.replace("{account_id}", "{accountId}");
        let item = documented.get(&name);
        let url = path.replace("{account_id}", "acme").replace("{id}", "1");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
        ] {
            let request = Request::builder()
                .method(method.clone())
                .uri(&url)
                .header("LP-forward-url", "https://192.168.0.1/")
                .body(Body::empty())
                .unwrap();
            let status = application.call(request, peer).await.status();
            if status == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            routed += 1;
            let lower = method.as_str().to_lowercase();
            let covered = item.is_some_and(|item| {
                item.get(&lower).is_some() || (method == Method::HEAD && item.get("get").is_some())
            });
            if !covered {
                undocumented.push(format!("{method} {name}"));
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "routed but not in /openapi.json: {undocumented:?}"
    );
    assert!(routed >= 30, "{routed} routed operations");
    app.running.stop().await.unwrap();
}
