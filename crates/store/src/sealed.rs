//! Sealed blobs of the embedded secret store: the metadata store keeps the ciphertext that
//! `mtls-secrets` produces (it never sees plaintext), one row per certificate version. A
//! version is inserted once: the primary key refuses a second writer. The one update replaces
//! an abandoned claim, and only the very write that was seen (by its nonce).

use mtls_secrets::{BoxFuture, SealedBlob, SealedBlobs, SecretKey, Versions};
use sqlx::Row;

use crate::{Store, StoreError};

impl SealedBlobs for Store {
    fn insert_blob<'a>(
        &'a self,
        key: SecretKey<'a>,
        blob: SealedBlob,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let inserted = sqlx::query(
                "INSERT INTO sealed_secrets (account_id, certificate_id, version, key_id, nonce, ciphertext, written_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(key.account)
            .bind(key.certificate_id)
            .bind(blob.version)
            .bind(blob.key_id)
            .bind(blob.nonce)
            .bind(blob.ciphertext)
            .bind(blob.written_at)
            .execute(&self.pool)
            .await;
            match inserted.map_err(StoreError::from) {
                Ok(_) => Ok(true),
                Err(StoreError::Conflict) => Ok(false),
                Err(error) => Err(error.to_string()),
            }
        })
    }

    fn replace_blob<'a>(
        &'a self,
        key: SecretKey<'a>,
        blob: SealedBlob,
        expected_nonce: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE sealed_secrets SET key_id = ?, nonce = ?, ciphertext = ?, written_at = ? \
                 WHERE account_id = ? AND certificate_id = ? AND version = ? AND nonce = ?",
            )
            .bind(blob.key_id)
            .bind(blob.nonce)
            .bind(blob.ciphertext)
            .bind(blob.written_at)
            .bind(key.account)
            .bind(key.certificate_id)
            .bind(blob.version)
            .bind(expected_nonce.to_vec())
            .execute(&self.pool)
            .await
            .map_err(|error| error.to_string())?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn blob<'a>(
        &'a self,
        key: SecretKey<'a>,
        version: i64,
    ) -> BoxFuture<'a, Result<Option<SealedBlob>, String>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT version, key_id, nonce, ciphertext, written_at FROM sealed_secrets WHERE account_id = ? AND certificate_id = ? AND version = ?",
            )
            .bind(key.account)
            .bind(key.certificate_id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| error.to_string())?;
            row.map(|row| {
                Ok(SealedBlob {
                    version: row.try_get("version")?,
                    key_id: row.try_get("key_id")?,
                    nonce: row.try_get("nonce")?,
                    ciphertext: row.try_get("ciphertext")?,
                    written_at: row.try_get("written_at")?,
                })
            })
            .transpose()
            .map_err(|error: sqlx::Error| error.to_string())
        })
    }

    fn delete_blobs<'a>(
        &'a self,
        key: SecretKey<'a>,
        versions: Versions,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let query = match versions {
                Versions::One(version) => sqlx::query(
                    "DELETE FROM sealed_secrets WHERE account_id = ? AND certificate_id = ? AND version = ?",
                )
                .bind(key.account)
                .bind(key.certificate_id)
                .bind(version),
                Versions::Below(bound) => sqlx::query(
                    "DELETE FROM sealed_secrets WHERE account_id = ? AND certificate_id = ? AND version < ?",
                )
                .bind(key.account)
                .bind(key.certificate_id)
                .bind(bound),
                Versions::All => sqlx::query(
                    "DELETE FROM sealed_secrets WHERE account_id = ? AND certificate_id = ?",
                )
                .bind(key.account)
                .bind(key.certificate_id),
            };
            query
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { Store::ping(self).await.map_err(|error| error.to_string()) })
    }
}
