//! OAuth app keys (metadata only; their secrets are in the secret store) and the nonce store
//! shared by every node, which refuses a nonce seen before inside the timestamp window.

use sqlx::Row;

use crate::{Store, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppKeyRow {
    pub id: i64,
    pub consumer_key: String,
    pub access_token: String,
    /// Comma-separated account ids, or `*`.
    pub account_scope: String,
    /// Comma-separated privilege names.
    pub privileges: String,
    pub revoked: bool,
    pub created_at: i64,
}

impl Store {
    pub async fn insert_app_key(&self, key: &AppKeyRow) -> Result<(), StoreError> {
        mtls_metrics::timed("database", "insert_app_key", async move {
            sqlx::query(
                "INSERT INTO oauth_app_keys (id, consumer_key, access_token, account_scope, privileges, revoked, created_at) \
                 VALUES (?, ?, ?, ?, ?, 0, ?)",
            )
            .bind(key.id)
            .bind(&key.consumer_key)
            .bind(&key.access_token)
            .bind(&key.account_scope)
            .bind(&key.privileges)
            .bind(key.created_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn app_keys(&self, include_revoked: bool) -> Result<Vec<AppKeyRow>, StoreError> {
        mtls_metrics::timed("database", "app_keys", async move {
            let statement = if include_revoked {
                "SELECT id, consumer_key, access_token, account_scope, privileges, revoked, created_at FROM oauth_app_keys ORDER BY created_at, id"
            } else {
                "SELECT id, consumer_key, access_token, account_scope, privileges, revoked, created_at FROM oauth_app_keys WHERE revoked = 0 ORDER BY created_at, id"
            };
            let rows = sqlx::query(statement).fetch_all(&self.pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(AppKeyRow {
                        id: row.try_get("id")?,
                        consumer_key: row.try_get("consumer_key")?,
                        access_token: row.try_get("access_token")?,
                        account_scope: row.try_get("account_scope")?,
                        privileges: row.try_get("privileges")?,
                        revoked: row.try_get::<i64, _>("revoked")? != 0,
                        created_at: row.try_get("created_at")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
        .await
    }

    /// Marks a key revoked; `None` when no live key has that consumer key.
    pub async fn revoke_app_key(&self, consumer_key: &str) -> Result<Option<i64>, StoreError> {
        mtls_metrics::timed("database", "revoke_app_key", async move {
            let row =
                sqlx::query("SELECT id FROM oauth_app_keys WHERE consumer_key = ? AND revoked = 0")
                    .bind(consumer_key)
                    .fetch_optional(&self.pool)
                    .await?;
            let Some(row) = row else { return Ok(None) };
            let id: i64 = row.try_get("id")?;
            sqlx::query("UPDATE oauth_app_keys SET revoked = 1 WHERE id = ?")
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(Some(id))
        })
        .await
    }

    /// Records a nonce; `false` when it was seen before (a replay).
    pub async fn record_nonce(
        &self,
        consumer_key: &str,
        nonce: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "record_nonce", async move {
            let inserted = sqlx::query(
                "INSERT INTO oauth_nonces (consumer_key, nonce, expires_at) VALUES (?, ?, ?)",
            )
            .bind(consumer_key)
            .bind(nonce)
            .bind(expires_at)
            .execute(&self.pool)
            .await;
            match inserted.map_err(StoreError::from) {
                Ok(_) => Ok(true),
                Err(StoreError::Conflict) => Ok(false),
                Err(other) => Err(other),
            }
        })
        .await
    }

    /// Drops nonces whose timestamp window has passed.
    pub async fn purge_nonces(&self, now: i64) -> Result<u64, StoreError> {
        mtls_metrics::timed("database", "purge_nonces", async move {
            let done = sqlx::query("DELETE FROM oauth_nonces WHERE expires_at < ?")
                .bind(now)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
    }
}
