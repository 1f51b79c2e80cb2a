//! `/healthz` (the process answers) and `/readyz` (it can serve: SPEC 9): database and secret
//! store reachable now, and which certificates lacked their secret at start.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

fn describe(result: Option<&Result<(), String>>) -> Value {
    match result {
        None => json!("connecting"),
        Some(Ok(())) => json!("ok"),
        Some(Err(reason)) => json!(format!("unavailable: {reason}")),
    }
}

pub(super) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.control().draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        );
    }
    let slot = &state.control().backends();
    let mut readiness = slot.readiness();
    let installed = slot.get();
    if let Some(backends) = &installed {
        readiness.database = Some(
            backends
                .store
                .ping()
                .await
                .map_err(|error| error.to_string()),
        );
        readiness.secret_store = Some(
            backends
                .secrets
                .check()
                .await
                .map_err(|error| error.to_string()),
        );
    }
    // Both reachable is not enough: until the connected dependencies are installed (after the
    // start-up reconciliation and the first routing table), calls still answer 503.
    let ready = installed.is_some()
        && matches!(readiness.database, Some(Ok(())))
        && matches!(readiness.secret_store, Some(Ok(())));
    let missing: Vec<Value> = readiness
        .missing_secrets
        .iter()
        .map(|(account, id)| json!({ "siteId": account, "id": id }))
        .collect();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {
            "database": describe(readiness.database.as_ref()),
            "secretStore": describe(readiness.secret_store.as_ref()),
        },
        "certificatesWithoutSecret": missing,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
