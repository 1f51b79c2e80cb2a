//! `GET /mtls/account/{accountId}/audit?since=...&limit=...&before=...` (additive): the
//! account's audit trail, newest first, paginated with an opaque `next` cursor.

use axum::Json;
use axum::extract::State;

use crate::extract::Query;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::dto::rfc3339;
use crate::error::ApiError;
use crate::extract::{Authorized, ReadConfiguration};

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    /// RFC 3339 time or Unix seconds; default: everything.
    #[serde(default)]
    since: Option<String>,
    /// 1 to 500, default 100.
    #[serde(default)]
    limit: Option<i64>,
    /// The `next` cursor of the previous page.
    #[serde(default)]
    before: Option<String>,
}

fn parse_since(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().or_else(|| {
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .map(OffsetDateTime::unix_timestamp)
    })
}

pub(super) async fn list(
    State(state): State<AppState>,
    Authorized { account, .. }: Authorized<ReadConfiguration>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let since = match query.since.as_deref() {
        None => 0,
        Some(text) => parse_since(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_since",
                "since must be an RFC 3339 time or Unix seconds",
            )
        })?,
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be 1 to 500",
        ));
    }
    let before = match query.before.as_deref() {
        None => None,
        Some(cursor) => {
            let parsed = cursor
                .split_once('.')
                .and_then(|(at, id)| Some((at.parse().ok()?, id.parse().ok()?)));
            Some(parsed.ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_cursor",
                    "before must be a cursor from a previous page",
                )
            })?)
        }
    };
    let backends = state.control().backends().require()?;
    let entries = backends
        .store
        .audit(account.as_str(), since, before, limit + 1)
        .await?;
    let more = entries.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    let page: Vec<_> = entries
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .collect();
    let next = if more {
        page.last()
            .map(|entry| format!("{}.{}", entry.at, entry.id))
    } else {
        None
    };
    let entries: Vec<Value> = page
        .iter()
        .map(|entry| {
            json!({
                "id": entry.id,
                "at": rfc3339(entry.at),
                "actor": entry.actor,
                "action": entry.action,
                "targetIds": entry.target_ids.iter().map(i64::to_string).collect::<Vec<_>>(),
                "outcome": entry.outcome,
                "requestId": entry.request_id,
            })
        })
        .collect();
    Ok(Json(json!({ "entries": entries, "next": next })))
}
