//! Keys the gateway makes (SPEC 4.6), the request half:
//! `POST /mtls/account/{accountId}/certificates/requests` (JSON `{name, subject, keyType?,
//! subjectAltNames?}` -> 201 the pending entity and its `csr`),
//! `GET .../certificates/{id}/csr` (the CSR, `application/pkcs10` PEM) and
//! `PUT .../certificates/{id}/chain` (the signed chain, PEM, capped at
//! `pki::MAX_CHAIN_PEM_BYTES` while it is read). What they do is `mtls_control::requests`'.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use mtls_control::requests::{self, RequestInput};

use crate::AppState;
use crate::audit::audited;
use crate::dto::{Certificate, CertificateRequested};
use crate::error::ApiError;
use crate::extract::{Authorized, ReadConfiguration, WriteConfiguration, path_id};

use super::capped_body::{read_capped, require_pem};

/// Largest request body: a subject of at most 1024 characters and 64 names fit many times.
pub(super) const REQUEST_BODY_MAX_BYTES: usize = 64 * 1024;

/// The body of `POST .../requests`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    key_type: Option<String>,
    #[serde(default)]
    subject_alt_names: Option<Vec<String>>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    request: Request,
) -> Result<Response, ApiError> {
    let mut ids = Vec::new();
    let result: Result<Response, ApiError> = async {
        let (parts, body) = request.into_parts();
        let bytes = read_capped(body, &parts.headers, REQUEST_BODY_MAX_BYTES).await?;
        let body: RequestBody = serde_json::from_slice(&bytes).map_err(|_| {
            ApiError::bad_request(
                "invalid_json",
                "the body must be {\"name\", \"subject\", \"keyType\"?, \"subjectAltNames\"?: [..]} with string values",
            )
        })?;
        let control = state.control();
        let backends = control.backends().require()?;
        let requested = requests::create(
            control,
            &backends,
            account.as_str(),
            RequestInput {
                name: body.name,
                subject: body.subject,
                key_type: body.key_type,
                subject_alt_names: body.subject_alt_names.unwrap_or_default(),
            },
        )
        .await?;
        ids.push(requested.row.id);
        Ok((
            StatusCode::CREATED,
            Json(CertificateRequested {
                certificate: Certificate::from_row(&requested.row, control.now()),
                csr: requested.csr_pem,
            }),
        )
            .into_response())
    }
    .await;
    audited(
        &state,
        &caller,
        &account,
        "certificate.request",
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
    let csr = requests::csr(&backends, account.as_str(), id).await?;
    Ok(pkcs10(csr))
}

/// A CSR as answered (`GET .../csr` and `GET .../renewal/csr`): PEM as
/// `application/pkcs10`, never cached (a renewal or a new request gives another).
pub(super) fn pkcs10(pem: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/pkcs10"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        pem,
    )
        .into_response()
}

pub(super) async fn chain(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    Path((_, id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let ids: Vec<i64> = id.parse().into_iter().collect();
    let result: Result<Response, ApiError> = async {
        let id = path_id(&id, "certificate")?;
        let (parts, body) = request.into_parts();
        require_pem(&parts.headers)?;
        let pem = read_capped(body, &parts.headers, mtls_pki::MAX_CHAIN_PEM_BYTES).await?;
        let control = state.control();
        let backends = control.backends().require()?;
        let row = requests::complete(control, &backends, account.as_str(), id, pem).await?;
        Ok(Json(Certificate::from_row(&row, control.now())).into_response())
    }
    .await;
    audited(&state, &caller, &account, "certificate.chain", ids, result).await
}
