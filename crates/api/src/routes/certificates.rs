//! `/mtls/account/{accountId}/certificates` (SPEC 4.3): create and replace (JSON array or
//! multipart, both path spellings), list, get, soft delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};

use crate::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use mtls_auth::AccountId;
use mtls_control::certificates::{self, RawItem};
use mtls_control::mappings::{self, MappingInput};
use mtls_control::{Backends, Control};

use crate::AppState;
use crate::audit::audited;
use crate::dto::{Certificate, Mapping, SaveResult};
use crate::error::ApiError;
use crate::extract::{
    Authorized, Caller, ReadConfiguration, WriteConfiguration, path_id, query_flag,
};
use crate::multipart;

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    include_deleted: Option<String>,
    /// Additive: only live certificates whose `notAfter` is at most this many days away
    /// (expired ones included).
    #[serde(default, rename = "expiringWithinDays")]
    expiring_within_days: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct DeleteQuery {
    #[serde(default)]
    force: Option<String>,
}

async fn json_items(request: Request, state: &AppState) -> Result<Vec<RawItem>, ApiError> {
    let items = crate::upload::items(request, state).await?;
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
    let item = crate::upload::item(&certificate, state.control().limits().p12_max_bytes).map_err(
        |_| {
            ApiError::bad_request(
                "invalid_certificate_part",
                "the 'certificate' part must be a JSON object",
            )
        },
    )?;
    Ok(vec![(item, Some(file))])
}

/// After a certificate change: revisions bumped (other nodes resync) and this node's routing
/// table rebuilt before the answer leaves.
async fn changed(control: &Control, backends: &Backends, account: &str) -> Result<(), ApiError> {
    Ok(certificates::changed(control, backends, account).await?)
}

fn saved(status: StatusCode, saved: &certificates::Saved) -> Response {
    let status = if saved.all_failed() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        status
    };
    (status, Json(SaveResult::from_saved(saved))).into_response()
}

/// Create (`replace` false) or rotate (`replace` true) the items of one request, and audit it.
async fn save(
    state: &AppState,
    caller: &Caller,
    account: &AccountId,
    items: Result<Vec<RawItem>, ApiError>,
    replace: bool,
) -> Result<Response, ApiError> {
    let mut ids = Vec::new();
    let control = state.control();
    let result = async {
        let items = certificates::check_items(control, items?, replace).await?;
        let backends = control.backends().require()?;
        let outcome = if replace {
            certificates::replace(control, &backends, account.as_str(), items).await?
        } else {
            certificates::create(control, &backends, account.as_str(), items).await?
        };
        ids = outcome.ids();
        changed(control, &backends, account.as_str()).await?;
        Ok(saved(
            if replace {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            &outcome,
        ))
    }
    .await;
    let action = if replace {
        "certificate.update"
    } else {
        "certificate.create"
    };
    audited(state, caller, account, action, ids, result).await
}

pub(super) async fn create_json(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    request: Request,
) -> Result<Response, ApiError> {
    let items = json_items(request, &state).await;
    save(&state, &caller, &account, items, false).await
}

pub(super) async fn create_multipart(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    request: Request,
) -> Result<Response, ApiError> {
    let items = multipart_item(request, &state).await;
    save(&state, &caller, &account, items, false).await
}

pub(super) async fn update_json(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    request: Request,
) -> Result<Response, ApiError> {
    let items = json_items(request, &state).await;
    save(&state, &caller, &account, items, true).await
}

pub(super) async fn update_multipart(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    request: Request,
) -> Result<Response, ApiError> {
    let items = multipart_item(request, &state).await;
    save(&state, &caller, &account, items, true).await
}

pub(super) async fn list(
    State(state): State<AppState>,
    Authorized { account, .. }: Authorized<ReadConfiguration>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Certificate>>, ApiError> {
    let within = match query.expiring_within_days.as_deref() {
        None => None,
        Some(days) => Some(
            days.parse::<u32>()
                .ok()
                .filter(|days| *days <= 36_500)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        "expiringWithinDays must be a whole number of days from 0 to 36500",
                    )
                })?,
        ),
    };
    let backends = state.control().backends().require()?;
    let rows = backends
        .store
        .certificates(
            account.as_str(),
            query_flag(query.include_deleted.as_deref())?,
        )
        .await?;
    let now = state.control().now();
    Ok(Json(
        rows.iter()
            .filter(|row| {
                within.is_none_or(|days| {
                    !row.deleted && row.not_after <= now + i64::from(days) * 86_400
                })
            })
            .map(|row| Certificate::from_row(row, now))
            .collect(),
    ))
}

pub(super) async fn get(
    State(state): State<AppState>,
    Authorized { account, .. }: Authorized<ReadConfiguration>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Certificate>, ApiError> {
    let id = path_id(&id, "certificate")?;
    let backends = state.control().backends().require()?;
    let row = certificates::live(&backends, account.as_str(), id).await?;
    Ok(Json(Certificate::from_row(&row, state.control().now())))
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
) -> Result<Json<Certificate>, ApiError> {
    let ids: Vec<i64> = id.parse().into_iter().collect();
    let result: Result<Json<Certificate>, ApiError> = async {
        let id = path_id(&id, "certificate")?;
        let force = query_flag(query.force.as_deref())?;
        let backends = state.control().backends().require()?;
        let row =
            certificates::delete(state.control(), &backends, account.as_str(), id, force).await?;
        Ok(Json(Certificate::from_row(&row, state.control().now())))
    }
    .await;
    audited(&state, &caller, &account, "certificate.delete", ids, result).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ActivateQuery {
    #[serde(default)]
    is_validate_url_enabled: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ActivateBody {
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

/// SPEC 4.4: a mapping for the certificate from `{serviceName, url}`, named
/// `<serviceName>-<uuid>`.
pub(super) async fn activate(
    State(state): State<AppState>,
    Authorized {
        caller, account, ..
    }: Authorized<WriteConfiguration>,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<ActivateQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ids: Vec<i64> = id.parse().into_iter().collect();
    let result: Result<Response, ApiError> = async {
        let id = path_id(&id, "certificate")?;
        let validate = query_flag(query.is_validate_url_enabled.as_deref())?;
        let input: ActivateBody = serde_json::from_slice(&body).map_err(|_| {
            ApiError::bad_request(
                "invalid_json",
                "the body must be {\"serviceName\": ..., \"url\": ...}",
            )
        })?;
        let service_name = input.service_name.unwrap_or_default();
        let service_id = state
            .control()
            .services()
            .id(&service_name)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "unknown_service",
                    format!("\"{service_name}\" is not a known service"),
                )
            })?
            .to_owned();
        let backends = state.control().backends().require()?;
        let version = certificates::live(&backends, account.as_str(), id)
            .await?
            .version;
        let mut fields = mappings::check_all(
            state.control(),
            &backends,
            account.as_str(),
            vec![activation_mapping(
                &service_name,
                id,
                &service_id,
                input.url.clone(),
            )],
            None,
        )
        .await?;
        let fields = fields
            .pop()
            .ok_or_else(|| ApiError::internal(&"no checked mapping"))?;
        if validate {
            validate_url(&state, account.as_str(), (id, version), &fields.url).await?;
        }
        let mapping_id = mtls_store::new_id()?;
        let (_, rows) = mappings::insert(
            state.control(),
            &backends,
            account.as_str(),
            &[(mapping_id, fields)],
            "a mapping for this service and URL already exists",
        )
        .await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("mapping"))?;
        Ok((StatusCode::CREATED, Json(Mapping::from(&row))).into_response())
    }
    .await;
    audited(
        &state,
        &caller,
        &account,
        "certificate.activate",
        ids,
        result,
    )
    .await
}

fn activation_mapping(
    service_name: &str,
    certificate: i64,
    service_id: &str,
    url: Option<String>,
) -> MappingInput {
    MappingInput {
        name: Some(format!("{service_name}-{}", uuid::Uuid::new_v4())),
        certification_id: Some(serde_json::Value::from(certificate)),
        service_id: Some(serde_json::Value::from(service_id)),
        url,
        site_id: None,
        enable: Some(true),
        upstream_ca_pem: None,
    }
}

/// SPEC 4.4: a `GET` to `url` presenting the certificate must complete below 400.
async fn validate_url(
    state: &AppState,
    account: &str,
    certificate: (i64, i64),
    url: &str,
) -> Result<(), ApiError> {
    let key = mtls_runtime::forward::ClientKey {
        certificate: Some(certificate),
        upstream_ca: None,
    };
    let client = mtls_control::identities::client_for(state.control(), account, key).await?;
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_url", "the URL cannot be called"))?;
    let body: mtls_runtime::forward::ForwardBody =
        http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(
            http_body_util::Empty::new(),
            |never: std::convert::Infallible| match never {},
        ));
    let request = axum::http::Request::get(uri)
        .body(body)
        .map_err(|_| ApiError::bad_request("invalid_url", "the URL cannot be called"))?;
    let response = super::forward::send(state, &client, request).await?;
    let status = response.status();
    if status.as_u16() >= 400 {
        return Err(ApiError::transport(
            "validation_failed",
            format!("the target answered {status} to the validation call; nothing was stored"),
        ));
    }
    Ok(())
}
