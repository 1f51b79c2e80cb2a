//! `/api/account/{accountId}/configuration/ac-common/mtls?v=3.0` (SPEC 5.2): bulk atomic
//! create, list, get, update, soft delete; the account's revision in `ETag` and `ac-revision`;
//! `If-Match` answered with 412 when stale.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};

use crate::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mtls_store::MappingWrite;
use serde::Deserialize;

use crate::AppState;
use crate::audit::audited;
use crate::dto::Mapping;
use crate::error::ApiError;
use crate::extract::{Authorized, ReadConfiguration, WriteConfiguration, path_id, query_flag};
use mtls_control::mappings::{self, MappingInput};
use mtls_control::{certificates, routing};

#[derive(Debug, Default, Deserialize)]
pub struct MappingQuery {
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

pub async fn create(
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
        let backends = state.control().backends().require()?;
        let mappings_cap = state.control().limits().max_mappings_per_account;
        let control = state.control();
        let fields =
            mappings::check_all(control, &backends, account.as_str(), inputs, None).await?;
        let mut rows = Vec::with_capacity(fields.len());
        for field in fields {
            rows.push((mtls_store::new_id()?, field));
        }
        ids = rows.iter().map(|(id, _)| *id).collect();
        let revision = match backends
            .store
            .insert_mappings(account.as_str(), &rows, control.now(), mappings_cap)
            .await
        {
            Ok(Ok(revision)) => revision,
            Ok(Err(_)) => {
                return Err(ApiError::from(certificates::over_cap(
                    "mapping_limit_reached",
                    "mappings",
                    mappings_cap,
                )));
            }
            Err(mtls_store::StoreError::Conflict) => {
                return Err(ApiError::from(mappings::conflict(
                    "mapping_conflict",
                    "a mapping with this name or triplet already exists".to_owned(),
                )));
            }
            Err(other) => return Err(other.into()),
        };
        routing::refresh(state.control(), &backends).await?;
        let mut created = Vec::with_capacity(rows.len());
        for (id, _) in &rows {
            if let Some(row) = backends.store.mapping(account.as_str(), *id).await? {
                created.push(Mapping::from(&row));
            }
        }
        Ok(with_revision(StatusCode::CREATED, revision, Json(created)))
    }
    .await;
    audited(&state, &caller, &account, "mapping.create", ids, result).await
}

pub async fn list(
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

pub async fn get(
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

pub async fn update(
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
        match backends.store.mapping(account.as_str(), id).await? {
            Some(row) if !row.deleted => {}
            _ => return Err(ApiError::not_found("mapping")),
        }
        let mut fields = mappings::check_all(
            state.control(),
            &backends,
            account.as_str(),
            vec![input],
            Some(id),
        )
        .await?;
        let fields = fields
            .pop()
            .ok_or_else(|| ApiError::internal(&"no checked mapping"))?;
        let write = backends
            .store
            .update_mapping(
                account.as_str(),
                id,
                &fields,
                if_match(&headers),
                state.control().now(),
            )
            .await;
        let revision = finish(write)?;
        routing::refresh(state.control(), &backends).await?;
        let row = backends
            .store
            .mapping(account.as_str(), id)
            .await?
            .ok_or_else(|| ApiError::not_found("mapping"))?;
        Ok(with_revision(
            StatusCode::OK,
            revision,
            Json(Mapping::from(&row)),
        ))
    }
    .await;
    audited(&state, &caller, &account, "mapping.update", ids, result).await
}

pub async fn delete(
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
        let revision = finish(
            backends
                .store
                .delete_mapping(
                    account.as_str(),
                    id,
                    if_match(&headers),
                    state.control().now(),
                )
                .await,
        )?;
        routing::refresh(state.control(), &backends).await?;
        let row = backends
            .store
            .mapping(account.as_str(), id)
            .await?
            .ok_or_else(|| ApiError::not_found("mapping"))?;
        Ok(with_revision(
            StatusCode::OK,
            revision,
            Json(Mapping::from(&row)),
        ))
    }
    .await;
    audited(&state, &caller, &account, "mapping.delete", ids, result).await
}

fn finish(write: Result<MappingWrite, mtls_store::StoreError>) -> Result<i64, ApiError> {
    match write {
        Ok(MappingWrite::Done { revision }) => Ok(revision),
        Ok(MappingWrite::NotFound) => Err(ApiError::not_found("mapping")),
        Ok(MappingWrite::StaleRevision { current }) => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "revision_mismatch",
            format!("If-Match names a stale revision; the current revision is {current}"),
        )),
        Err(mtls_store::StoreError::Conflict) => Err(ApiError::from(mappings::conflict(
            "mapping_conflict",
            "a mapping with this name or triplet already exists".to_owned(),
        ))),
        Err(other) => Err(other.into()),
    }
}
