//! `/mtls/account/{accountId}/certificates` (SPEC 4.3): create and replace (JSON array or
//! multipart, both path spellings), list, get, soft delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mtls_auth::Privilege;
use mtls_secrets::SecretKey;
use serde::Deserialize;

use crate::AppState;
use crate::certificates::{self, ItemInput, RawItem, now};
use crate::dto::Certificate;
use crate::error::ApiError;
use crate::extract::{AccountPath, Caller, authorize};
use crate::multipart;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    include_deleted: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    force: Option<String>,
}

fn flag(value: Option<&String>) -> bool {
    value.is_some_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

fn json_items(body: &Bytes) -> Result<Vec<RawItem>, ApiError> {
    let items: Vec<ItemInput> = serde_json::from_slice(body).map_err(|_| {
        ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON array of certificate objects",
        )
    })?;
    Ok(items.into_iter().map(|item| (item, None)).collect())
}

async fn multipart_item(request: Request, state: &AppState) -> Result<Vec<RawItem>, ApiError> {
    let mut parts = multipart::read(request, state, "invalid_certificate_part").await?;
    let file = parts.take("file").ok_or_else(|| {
        ApiError::bad_request("missing_file", "the multipart part 'file' is missing")
    })?;
    let certificate = parts.take("certificate").ok_or_else(|| {
        ApiError::bad_request(
            "missing_certificate_part",
            "the multipart part 'certificate' (JSON with name and password) is missing",
        )
    })?;
    let item: ItemInput = serde_json::from_slice(&certificate).map_err(|_| {
        ApiError::bad_request(
            "invalid_certificate_part",
            "the 'certificate' part must be a JSON object",
        )
    })?;
    Ok(vec![(item, Some(file))])
}

fn saved(status: StatusCode, (result, all_failed): (crate::dto::SaveResult, bool)) -> Response {
    let status = if all_failed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        status
    };
    (status, Json(result)).into_response()
}

pub async fn create_json(
    State(state): State<AppState>,
    caller: Caller,
    AccountPath(account): AccountPath,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&caller, &account, Privilege::WriteInternal)?;
    let items = certificates::check_items(&state, json_items(&body)?, false).await?;
    let backends = state.inner.backends.require()?;
    Ok(saved(
        StatusCode::CREATED,
        certificates::create(&backends, account.as_str(), items).await?,
    ))
}

pub async fn create_multipart(
    State(state): State<AppState>,
    caller: Caller,
    AccountPath(account): AccountPath,
    request: Request,
) -> Result<Response, ApiError> {
    authorize(&caller, &account, Privilege::WriteInternal)?;
    let items =
        certificates::check_items(&state, multipart_item(request, &state).await?, false).await?;
    let backends = state.inner.backends.require()?;
    Ok(saved(
        StatusCode::CREATED,
        certificates::create(&backends, account.as_str(), items).await?,
    ))
}

pub async fn update_json(
    State(state): State<AppState>,
    caller: Caller,
    AccountPath(account): AccountPath,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&caller, &account, Privilege::WriteInternal)?;
    let items = certificates::check_items(&state, json_items(&body)?, true).await?;
    let backends = state.inner.backends.require()?;
    Ok(saved(
        StatusCode::OK,
        certificates::replace(&backends, account.as_str(), items).await?,
    ))
}

pub async fn update_multipart(
    State(state): State<AppState>,
    caller: Caller,
    AccountPath(account): AccountPath,
    request: Request,
) -> Result<Response, ApiError> {
    authorize(&caller, &account, Privilege::WriteInternal)?;
    let items =
        certificates::check_items(&state, multipart_item(request, &state).await?, true).await?;
    let backends = state.inner.backends.require()?;
    Ok(saved(
        StatusCode::OK,
        certificates::replace(&backends, account.as_str(), items).await?,
    ))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    AccountPath(account): AccountPath,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Certificate>>, ApiError> {
    authorize(&caller, &account, Privilege::ReadInternal)?;
    let backends = state.inner.backends.require()?;
    let rows = backends
        .store
        .certificates(account.as_str(), flag(query.include_deleted.as_ref()))
        .await?;
    let now = now();
    Ok(Json(
        rows.iter()
            .map(|row| Certificate::from_row(row, now))
            .collect(),
    ))
}

/// `{id}` of the path: anything that is not a positive integer is simply not found.
fn certificate_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("certificate"))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    AccountPath(account): AccountPath,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Certificate>, ApiError> {
    authorize(&caller, &account, Privilege::ReadInternal)?;
    let id = certificate_id(&id)?;
    let backends = state.inner.backends.require()?;
    match backends.store.certificate(account.as_str(), id).await? {
        Some(row) if !row.deleted => Ok(Json(Certificate::from_row(&row, now()))),
        _ => Err(ApiError::not_found("certificate")),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    AccountPath(account): AccountPath,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
) -> Result<Json<Certificate>, ApiError> {
    authorize(&caller, &account, Privilege::WriteInternal)?;
    let id = certificate_id(&id)?;
    // `force` matters once mappings exist (SPEC 4.3); accepted now so clients can send it.
    let _force = flag(query.force.as_ref());
    let backends = state.inner.backends.require()?;
    match backends.store.certificate(account.as_str(), id).await? {
        Some(row) if !row.deleted => {}
        _ => return Err(ApiError::not_found("certificate")),
    }
    backends
        .secrets
        .destroy(SecretKey {
            account: account.as_str(),
            certificate_id: id,
        })
        .await?;
    backends
        .store
        .mark_deleted(account.as_str(), id, now())
        .await?;
    let row = backends
        .store
        .certificate(account.as_str(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("certificate"))?;
    Ok(Json(Certificate::from_row(&row, now())))
}
