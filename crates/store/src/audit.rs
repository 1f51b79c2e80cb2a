//! The audit trail: who did what to which ids, with what outcome, never a secret value.

use sqlx::Row;

use crate::{Store, StoreError};

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub account_id: String,
    /// Unix seconds.
    pub at: i64,
    /// Who: `bearer:<subject>`, `oauth:<consumer key>`, `cli`.
    pub actor: String,
    /// What: `certificate.create`, `mapping.delete`, `tester.run`, ...
    pub action: String,
    pub target_ids: Vec<i64>,
    /// `success` or the error code the caller got.
    pub outcome: String,
    pub request_id: String,
}

impl Store {
    pub async fn insert_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        mtls_metrics::timed("database", "insert_audit", async move {
            let ids: Vec<String> = entry.target_ids.iter().map(i64::to_string).collect();
            sqlx::query(
                "INSERT INTO audit_log (id, account_id, at, actor, action, target_ids, outcome, request_id) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(entry.id)
            .bind(&entry.account_id)
            .bind(entry.at)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(ids.join(","))
            .bind(&entry.outcome)
            .bind(&entry.request_id)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Entries of `account` at or after `since`, newest first, strictly before the cursor
    /// `(at, id)` when given, at most `limit`.
    pub async fn audit(
        &self,
        account: &str,
        since: i64,
        before: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        mtls_metrics::timed("database", "audit", async move {
            let (at, id) = before.unwrap_or((i64::MAX, i64::MAX));
            let rows = sqlx::query(
                "SELECT id, account_id, at, actor, action, target_ids, outcome, request_id FROM audit_log \
                 WHERE account_id = ? AND at >= ? AND (at < ? OR (at = ? AND id < ?)) \
                 ORDER BY at DESC, id DESC LIMIT ?",
            )
            .bind(account)
            .bind(since)
            .bind(at)
            .bind(at)
            .bind(id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let ids: String = row.try_get("target_ids")?;
                    Ok(AuditEntry {
                        id: row.try_get("id")?,
                        account_id: row.try_get("account_id")?,
                        at: row.try_get("at")?,
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        target_ids: ids.split(',').filter_map(|id| id.parse().ok()).collect(),
                        outcome: row.try_get("outcome")?,
                        request_id: row.try_get("request_id")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
        .await
    }
}
