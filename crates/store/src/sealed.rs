//! Sealed blobs of the embedded secret store: the metadata store keeps the ciphertext that
//! `mtls-secrets` produces (it never sees plaintext).

use mtls_secrets::{BoxFuture, SealedBlob, SealedBlobs, SecretKey};
use sqlx::Row;

use crate::Store;

impl SealedBlobs for Store {
    fn put_blob<'a>(
        &'a self,
        key: SecretKey<'a>,
        blob: SealedBlob,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut transaction = self.pool.begin().await.map_err(|error| error.to_string())?;
            sqlx::query("DELETE FROM sealed_secrets WHERE account_id = ? AND certificate_id = ?")
                .bind(key.account)
                .bind(key.certificate_id)
                .execute(&mut *transaction)
                .await
                .map_err(|error| error.to_string())?;
            sqlx::query(
                "INSERT INTO sealed_secrets (account_id, certificate_id, version, key_id, nonce, ciphertext) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(key.account)
            .bind(key.certificate_id)
            .bind(blob.version)
            .bind(blob.key_id)
            .bind(blob.nonce)
            .bind(blob.ciphertext)
            .execute(&mut *transaction)
            .await
            .map_err(|error| error.to_string())?;
            transaction
                .commit()
                .await
                .map_err(|error| error.to_string())
        })
    }

    fn blob<'a>(&'a self, key: SecretKey<'a>) -> BoxFuture<'a, Result<Option<SealedBlob>, String>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT version, key_id, nonce, ciphertext FROM sealed_secrets WHERE account_id = ? AND certificate_id = ?",
            )
            .bind(key.account)
            .bind(key.certificate_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| error.to_string())?;
            row.map(|row| {
                Ok(SealedBlob {
                    version: row.try_get("version")?,
                    key_id: row.try_get("key_id")?,
                    nonce: row.try_get("nonce")?,
                    ciphertext: row.try_get("ciphertext")?,
                })
            })
            .transpose()
            .map_err(|error: sqlx::Error| error.to_string())
        })
    }

    fn delete_blob<'a>(&'a self, key: SecretKey<'a>) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            sqlx::query("DELETE FROM sealed_secrets WHERE account_id = ? AND certificate_id = ?")
                .bind(key.account)
                .bind(key.certificate_id)
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
