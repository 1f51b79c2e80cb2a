//! Sealed blobs of the embedded secret store: the metadata store keeps the ciphertext that
//! `mtls-secrets` produces (it never sees plaintext), one row per certificate version. A
//! version is inserted once: the primary key refuses a second writer. The one update replaces
//! an abandoned claim, and only the very write that was seen (by its nonce). A version's
//! re-sealed identity is a row of its own table (`sealed_identities`), kept and removed the
//! same way.

use mtls_secrets::{BoxFuture, SealedBlob, SealedBlobs, SecretKey, Versions};
use sqlx::Row;

use crate::{Store, StoreError};

/// The two tables of sealed blobs, which have the same columns.
#[derive(Clone, Copy)]
enum Table {
    Secrets,
    Identities,
}

impl Table {
    fn insert(self) -> &'static str {
        match self {
            Table::Secrets => {
                "INSERT INTO sealed_secrets (account_id, certificate_id, version, key_id, nonce, ciphertext, written_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            }
            Table::Identities => {
                "INSERT INTO sealed_identities (account_id, certificate_id, version, key_id, nonce, ciphertext, written_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            }
        }
    }

    fn select(self) -> &'static str {
        match self {
            Table::Secrets => {
                "SELECT version, key_id, nonce, ciphertext, written_at FROM sealed_secrets WHERE account_id = ? AND certificate_id = ? AND version = ?"
            }
            Table::Identities => {
                "SELECT version, key_id, nonce, ciphertext, written_at FROM sealed_identities WHERE account_id = ? AND certificate_id = ? AND version = ?"
            }
        }
    }

    fn delete(self, versions: Versions) -> &'static str {
        match (self, versions) {
            (Table::Secrets, Versions::One(_)) => {
                "DELETE FROM sealed_secrets WHERE account_id = ? AND certificate_id = ? AND version = ?"
            }
            (Table::Secrets, Versions::Below(_)) => {
                "DELETE FROM sealed_secrets WHERE account_id = ? AND certificate_id = ? AND version < ?"
            }
            (Table::Secrets, Versions::All) => {
                "DELETE FROM sealed_secrets WHERE account_id = ? AND certificate_id = ?"
            }
            (Table::Identities, Versions::One(_)) => {
                "DELETE FROM sealed_identities WHERE account_id = ? AND certificate_id = ? AND version = ?"
            }
            (Table::Identities, Versions::Below(_)) => {
                "DELETE FROM sealed_identities WHERE account_id = ? AND certificate_id = ? AND version < ?"
            }
            (Table::Identities, Versions::All) => {
                "DELETE FROM sealed_identities WHERE account_id = ? AND certificate_id = ?"
            }
        }
    }
}

impl Store {
    async fn insert_sealed(
        &self,
        table: Table,
        key: SecretKey<'_>,
        blob: SealedBlob,
    ) -> Result<bool, String> {
        let inserted = sqlx::query(table.insert())
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
    }

    async fn sealed(
        &self,
        table: Table,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<SealedBlob>, String> {
        let row = sqlx::query(table.select())
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
    }

    async fn delete_sealed(
        &self,
        table: Table,
        key: SecretKey<'_>,
        versions: Versions,
    ) -> Result<(), String> {
        let query = sqlx::query(table.delete(versions))
            .bind(key.account)
            .bind(key.certificate_id);
        let query = match versions {
            Versions::One(version) | Versions::Below(version) => query.bind(version),
            Versions::All => query,
        };
        query
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
}

impl SealedBlobs for Store {
    fn insert_blob<'a>(
        &'a self,
        key: SecretKey<'a>,
        blob: SealedBlob,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(self.insert_sealed(Table::Secrets, key, blob))
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
        Box::pin(self.sealed(Table::Secrets, key, version))
    }

    fn delete_blobs<'a>(
        &'a self,
        key: SecretKey<'a>,
        versions: Versions,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.delete_sealed(Table::Secrets, key, versions))
    }

    fn insert_identity<'a>(
        &'a self,
        key: SecretKey<'a>,
        blob: SealedBlob,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(self.insert_sealed(Table::Identities, key, blob))
    }

    fn identity_blob<'a>(
        &'a self,
        key: SecretKey<'a>,
        version: i64,
    ) -> BoxFuture<'a, Result<Option<SealedBlob>, String>> {
        Box::pin(self.sealed(Table::Identities, key, version))
    }

    fn delete_identities<'a>(
        &'a self,
        key: SecretKey<'a>,
        versions: Versions,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.delete_sealed(Table::Identities, key, versions))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { Store::ping(self).await.map_err(|error| error.to_string()) })
    }
}
