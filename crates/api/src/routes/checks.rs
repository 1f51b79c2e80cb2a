//! The runtime mapping checks (SPEC 6.1), answered from the routing table snapshot alone: no
//! database call per request.
//!
//! * `POST /mtls/mapping?v=1|2` with `[{serviceName, accountId, url}]`: v1 answers one object
//!   keyed `CertificateMappingParamters{serviceName='..', accountId='..', url='..'}` (the
//!   contract's spelling), v2 echoes each object with `doExist`.
//! * `POST /api/account/{accountId}/checks/serviceUrlMappings` with `[{serviceName, url}]`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;

use crate::extract::Query;
use mtls_auth::AccountId;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::AppState;
use crate::error::{ApiError, ItemError};
use crate::extract::{Authorized, Privileged, ReadChecks};

/// Most triplets one check may carry.
const MAX_TRIPLETS: usize = 1000;

#[derive(Debug, Default, Deserialize)]
pub(super) struct CheckQuery {
    #[serde(default)]
    v: Option<String>,
}

/// The items of a check body; each must carry every one of `fields` as a string (an unknown
/// service or URL is an answer, `false`; a missing one is a malformed question, 400 with every
/// bad item).
fn items(body: &Bytes, fields: &[&str]) -> Result<Vec<Map<String, Value>>, ApiError> {
    let items: Vec<Map<String, Value>> =
        crate::capped_json::array(body, MAX_TRIPLETS).map_err(|error| match error {
            crate::capped_json::ArrayError::TooMany => ApiError::bad_request(
                "too_many_items",
                format!("at most {MAX_TRIPLETS} triplets per request"),
            ),
            crate::capped_json::ArrayError::Invalid => {
                ApiError::bad_request("invalid_json", "the body must be a JSON array of objects")
            }
        })?;
    let bad: Vec<ItemError> = items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| {
            let missing = fields
                .iter()
                .find(|field| !item.get(**field).is_some_and(Value::is_string))?;
            Some(ItemError {
                index,
                code: "invalid_item",
                message: format!("{missing} must be a string"),
            })
        })
        .collect();
    if !bad.is_empty() {
        return Err(ApiError::items(bad));
    }
    Ok(items)
}

fn text<'a>(item: &'a Map<String, Value>, key: &str) -> &'a str {
    item.get(key).and_then(Value::as_str).unwrap_or_default()
}

pub(super) async fn global(
    State(state): State<AppState>,
    privileged: Privileged<ReadChecks>,
    Query(query): Query<CheckQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let version = match query.v.as_deref() {
        None | Some("1") => 1,
        Some("2") => 2,
        Some(_) => {
            return Err(ApiError::bad_request(
                "unsupported_version",
                "v must be 1 or 2",
            ));
        }
    };
    let items = items(&body, &["serviceName", "accountId", "url"])?;
    // Every account named must be valid and covered, before anything is looked up; each
    // distinct account is charged once.
    let mut accounts = std::collections::BTreeSet::new();
    for item in &items {
        accounts.insert(text(item, "accountId"));
    }
    for account in accounts {
        let account = AccountId::parse(account)
            .map_err(|error| ApiError::bad_request("invalid_account_id", error.to_string()))?;
        privileged.on(&state, &account)?;
    }
    let now = state.control().now();
    let answer = state.control().routing().with(|table| {
        let exists = |item: &Map<String, Value>| {
            table.exists(
                text(item, "accountId"),
                text(item, "serviceName"),
                text(item, "url"),
                now,
            )
        };
        if version == 1 {
            let mut object = Map::with_capacity(items.len());
            for item in &items {
                let key = format!(
                    "CertificateMappingParamters{{serviceName='{}', accountId='{}', url='{}'}}",
                    text(item, "serviceName"),
                    text(item, "accountId"),
                    text(item, "url")
                );
                object.insert(key, Value::Bool(exists(item)));
            }
            Value::Object(object)
        } else {
            Value::Array(
                items
                    .iter()
                    .map(|item| {
                        let mut echoed = item.clone();
                        echoed.insert("doExist".to_owned(), Value::Bool(exists(item)));
                        Value::Object(echoed)
                    })
                    .collect(),
            )
        }
    });
    Ok(Json(answer))
}

pub(super) async fn account(
    State(state): State<AppState>,
    Authorized { account, .. }: Authorized<ReadChecks>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let items = items(&body, &["serviceName", "url"])?;
    let now = state.control().now();
    let answer = state.control().routing().with(|table| {
        items
            .iter()
            .map(|item| {
                let exists = table.exists(
                    account.as_str(),
                    text(item, "serviceName"),
                    text(item, "url"),
                    now,
                );
                let mut object = Map::with_capacity(3);
                object.insert(
                    "serviceName".to_owned(),
                    item.get("serviceName").cloned().unwrap_or(Value::Null),
                );
                object.insert(
                    "url".to_owned(),
                    item.get("url").cloned().unwrap_or(Value::Null),
                );
                object.insert("exist".to_owned(), Value::Bool(exists));
                Value::Object(object)
            })
            .collect::<Vec<_>>()
    });
    Ok(Json(Value::Array(answer)))
}
