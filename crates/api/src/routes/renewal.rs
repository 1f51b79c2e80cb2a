//! Renewal without a gap (SPEC 4.6), under `/mtls/account/{accountId}/certificates/{id}`:
//! `POST /renewal` (a new key and its CSR; the current key stays live), `GET /renewal/csr`,
//! `PUT /renewal/chain[?activateAt=]` (the switch, at once or scheduled), `DELETE /renewal`
//! (cancel). What they do is `mtls_control::renewal`'s.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use mtls_control::renewal::{self, RenewalInput};

use crate::AppState;
use crate::audit::audited;
use crate::dto::Certificate;
use crate::error::ApiError;
use crate::extract::{Authorized, Query, ReadConfiguration, WriteConfiguration, path_id};

use super::capped_body::{read_capped, require_pem};

/// `POST .../renewal`'s body: both optional, an empty body too.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody {
    #[serde(default)]
    key_type: Option<String>,
    #[serde(default)]
    subject: Option<String>,
}

/// `POST .../renewal`'s answer.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(super) struct RenewalStarted {
    /// The renewal's PKCS#10 request, PEM.
    pub csr: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ChainQuery {
    #[serde(default, rename = "activateAt")]
    activate_at: Option<String>,
}

fn ids_of(id: &str) -> Vec<i64> {
    id.parse().into_iter().collect()
}

pub(super) async fn start(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    Path((_, id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let ids = ids_of(&id);
    let result: Result<Response, ApiError> = async {
        let id = path_id(&id, "certificate")?;
        let (parts, body) = request.into_parts();
        // The same cap as a request's body: the same two optional fields, smaller.
        let body = read_capped(
            body,
            &parts.headers,
            super::requests::REQUEST_BODY_MAX_BYTES,
        )
        .await?;
        let input: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
            StartBody::default()
        } else {
            serde_json::from_slice(&body).map_err(|_| {
                ApiError::bad_request(
                    "invalid_json",
                    "the body must be empty or {\"keyType\"?: \"P-256\" | \"P-384\" | \"RSA-2048\" | \"RSA-3072\", \"subject\"?: \"CN=...\"}",
                )
            })?
        };
        let backends = state.control().backends().require()?;
        let csr = renewal::start(
            state.control(),
            &backends,
            account.as_str(),
            id,
            RenewalInput {
                key_type: input.key_type,
                subject: input.subject,
            },
        )
        .await?;
        Ok((StatusCode::CREATED, Json(RenewalStarted { csr })).into_response())
    }
    .await;
    audited(
        &state,
        &caller,
        &account,
        "certificate.renewal",
        ids,
        result,
    )
    .await
}

pub(super) async fn csr(
    State(state): State<AppState>,
    Authorized { account, .. }: Authorized<ReadConfiguration>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "certificate")?;
    let backends = state.control().backends().require()?;
    let pem = renewal::csr(&backends, account.as_str(), id).await?;
    Ok(super::requests::pkcs10(pem))
}

pub(super) async fn chain(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<ChainQuery>,
    request: Request,
) -> Result<Json<Certificate>, ApiError> {
    let ids = ids_of(&id);
    let result: Result<Json<Certificate>, ApiError> = async {
        let id = path_id(&id, "certificate")?;
        let (parts, body) = request.into_parts();
        require_pem(&parts.headers)?;
        let pem = read_capped(body, &parts.headers, mtls_pki::MAX_CHAIN_PEM_BYTES).await?;
        let backends = state.control().backends().require()?;
        let uploaded = renewal::upload_chain(
            state.control(),
            &backends,
            account.as_str(),
            id,
            pem,
            query.activate_at.as_deref(),
        )
        .await?;
        Ok(Json(Certificate::from_row(
            uploaded.row(),
            state.control().now(),
        )))
    }
    .await;
    audited(
        &state,
        &caller,
        &account,
        "certificate.renewal.chain",
        ids,
        result,
    )
    .await
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Certificate>, ApiError> {
    let ids = ids_of(&id);
    let result: Result<Json<Certificate>, ApiError> = async {
        let id = path_id(&id, "certificate")?;
        let backends = state.control().backends().require()?;
        let row = renewal::cancel(state.control(), &backends, account.as_str(), id).await?;
        Ok(Json(Certificate::from_row(&row, state.control().now())))
    }
    .await;
    audited(
        &state,
        &caller,
        &account,
        "certificate.renewal.cancel",
        ids,
        result,
    )
    .await
}
