//! Renewal without a gap (SPEC 4.6), under `/mtls/account/{accountId}/certificates/{id}`:
//! `POST /renewal` (a new key and its CSR; the current key stays live), `GET /renewal/csr`,
//! `PUT /renewal/chain[?activateAt=]` (the switch, at once or scheduled), `DELETE /renewal`
//! (cancel). What they do is `mtls_control::renewal`'s.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use mtls_control::renewal::{self, RenewalInput};

use crate::AppState;
use crate::audit::audited;
use crate::dto::Certificate;
use crate::error::ApiError;
use crate::extract::{Authorized, Query, ReadConfiguration, WriteConfiguration, path_id};

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
    body: Bytes,
) -> Result<Response, ApiError> {
    let ids = ids_of(&id);
    let result: Result<Response, ApiError> = async {
        let id = path_id(&id, "certificate")?;
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
    Ok((
        [
            (header::CONTENT_TYPE, "application/pkcs10"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        pem,
    )
        .into_response())
}

/// Whether the chain upload's `Content-Type` is PEM text (or absent), as for a request's chain.
fn pem_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/x-pem-file" | "text/plain" | "application/pem-certificate-chain"
    )
}

/// The body, refused (413) at the first byte past `cap` (or when announced larger).
async fn capped_body(request: Request, cap: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::too_large(format!(
            "the chain is larger than {cap} bytes (PEM text of the leaf and its issuers)"
        ))
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > cap as u64) {
        return Err(too_large());
    }
    let mut body = request.into_body();
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            ApiError::bad_request("invalid_request_body", "the request body could not be read")
        })?;
        if let Ok(data) = frame.into_data() {
            if read.len().saturating_add(data.len()) > cap {
                return Err(too_large());
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(read)
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
        if !pem_content_type(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the chain as PEM text: Content-Type application/x-pem-file or text/plain",
            ));
        }
        let pem = capped_body(request, mtls_pki::MAX_CHAIN_PEM_BYTES).await?;
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
