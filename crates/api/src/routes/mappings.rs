//! `/api/account/{accountId}/configuration/ac-common/mtls?v=3.0` (SPEC 5.2): bulk atomic
//! create, list, get, update, soft delete; the account's revision in `ETag` and `ac-revision`;
//! `If-Match` answered with 412 when stale.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};

use crate::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::audit::audited;
use crate::dto::Mapping;
use crate::error::ApiError;
use crate::extract::{Authorized, ReadConfiguration, WriteConfiguration, path_id, query_flag};
use mtls_control::mappings::{self, MappingInput};

#[derive(Debug, Default, Deserialize)]
pub(super) struct MappingQuery {
    #[serde(default)]
    v: Option<String>,
    #[serde(default)]
    include_deleted: Option<String>,
}

fn version(query: &MappingQuery) -> Result<(), ApiError> {
    if query.v.as_deref() == Some("3.0") {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "unsupported_version",
            "the query parameter v=3.0 is required",
        ))
    }
}

/// `body` with the revision headers.
fn with_revision(status: StatusCode, revision: i64, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
        .headers_mut()
        .insert("ac-revision", HeaderValue::from(revision));
    response
}

/// `If-Match`: `"5"`, `W/"5"` or `5`; `*` or absent: no condition. Anything else never matches.
fn if_match(headers: &HeaderMap) -> Option<i64> {
    let value = headers
        .get(header::IF_MATCH)?
        .to_str()
        .unwrap_or("invalid")
        .trim();
    if value == "*" {
        return None;
    }
    Some(
        value
            .trim_start_matches("W/")
            .trim_matches('"')
            .parse()
            .unwrap_or(-1),
    )
}

/// Most mappings one create may carry.
const MAX_MAPPINGS: usize = 1000;

fn item_count() -> ApiError {
    ApiError::bad_request(
        "invalid_item_count",
        format!("send 1 to {MAX_MAPPINGS} mappings"),
    )
}

pub(super) async fn create(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    Query(query): Query<MappingQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut ids: Vec<i64> = Vec::new();
    let result: Result<Response, ApiError> = async {
        version(&query)?;
        let inputs: Vec<MappingInput> =
            crate::capped_json::array(&body, MAX_MAPPINGS).map_err(|error| match error {
                crate::capped_json::ArrayError::TooMany => item_count(),
                crate::capped_json::ArrayError::Invalid => ApiError::bad_request(
                    "invalid_json",
                    "the body must be a JSON array of mapping objects",
                ),
            })?;
        if inputs.is_empty() {
            return Err(item_count());
        }
        let control = state.control();
        let backends = control.backends().require()?;
        let rows = mappings::prepare(control, &backends, account.as_str(), inputs).await?;
        ids = rows.iter().map(|(id, _)| *id).collect();
        let (revision, rows) = mappings::insert(
            control,
            &backends,
            account.as_str(),
            &rows,
            "a mapping with this name or triplet already exists",
        )
        .await?;
        let created: Vec<Mapping> = rows.iter().map(Mapping::from).collect();
        Ok(with_revision(StatusCode::CREATED, revision, Json(created)))
    }
    .await;
    audited(&state, &caller, &account, "mapping.create", ids, result).await
}

pub(super) async fn list(
    State(state): State<AppState>,
    Authorized { account, .. }: Authorized<ReadConfiguration>,
    Query(query): Query<MappingQuery>,
) -> Result<Response, ApiError> {
    version(&query)?;
    let backends = state.control().backends().require()?;
    let include_deleted = query_flag(query.include_deleted.as_deref())?;
    let revision = backends.store.revision(account.as_str()).await?;
    let rows = backends
        .store
        .mappings(account.as_str(), include_deleted)
        .await?;
    let body: Vec<Mapping> = rows.iter().map(Mapping::from).collect();
    Ok(with_revision(StatusCode::OK, revision, Json(body)))
}

pub(super) async fn get(
    State(state): State<AppState>,
    Authorized { account, .. }: Authorized<ReadConfiguration>,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<MappingQuery>,
) -> Result<Response, ApiError> {
    version(&query)?;
    let id = path_id(&id, "mapping")?;
    let backends = state.control().backends().require()?;
    let revision = backends.store.revision(account.as_str()).await?;
    match backends.store.mapping(account.as_str(), id).await? {
        Some(row) if !row.deleted => Ok(with_revision(
            StatusCode::OK,
            revision,
            Json(Mapping::from(&row)),
        )),
        _ => Err(ApiError::not_found("mapping")),
    }
}

pub(super) async fn update(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<MappingQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ids: Vec<i64> = id.parse().into_iter().collect();
    let result: Result<Response, ApiError> = async {
        version(&query)?;
        let id = path_id(&id, "mapping")?;
        let input: MappingInput = serde_json::from_slice(&body).map_err(|_| {
            ApiError::bad_request("invalid_json", "the body must be one mapping object")
        })?;
        let backends = state.control().backends().require()?;
        let (revision, row) = mappings::update(
            state.control(),
            &backends,
            account.as_str(),
            id,
            input,
            if_match(&headers),
        )
        .await?;
        Ok(with_revision(
            StatusCode::OK,
            revision,
            Json(Mapping::from(&row)),
        ))
    }
    .await;
    audited(&state, &caller, &account, "mapping.update", ids, result).await
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<MappingQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ids: Vec<i64> = id.parse().into_iter().collect();
    let result: Result<Response, ApiError> = async {
        version(&query)?;
        let id = path_id(&id, "mapping")?;
        let backends = state.control().backends().require()?;
        let (revision, row) = mappings::delete(
            state.control(),
            &backends,
            account.as_str(),
            id,
            if_match(&headers),
        )
        .await?;
        Ok(with_revision(
            StatusCode::OK,
            revision,
            Json(Mapping::from(&row)),
        ))
    }
    .await;
    audited(&state, &caller, &account, "mapping.delete", ids, result).await
}
