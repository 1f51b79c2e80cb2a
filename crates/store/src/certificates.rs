//! Certificate rows: metadata, version, the state of the secret, soft deletion.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError};

/// What the metadata store knows of a certificate's secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretState {
    /// Written to the secret store.
    Stored,
    /// Not in the secret store (a failed write, or found missing at start).
    Missing,
    /// Destroyed on delete.
    Destroyed,
}

impl SecretState {
    fn as_str(self) -> &'static str {
        match self {
            SecretState::Stored => "stored",
            SecretState::Missing => "missing",
            SecretState::Destroyed => "destroyed",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "stored" => SecretState::Stored,
            "destroyed" => SecretState::Destroyed,
            _ => SecretState::Missing,
        }
    }
}

/// A certificate as stored.
#[derive(Clone, Debug)]
pub struct CertificateRow {
    pub id: i64,
    pub account_id: String,
    pub name: String,
    pub deleted: bool,
    pub version: i64,
    pub secret_state: SecretState,
    pub subject: String,
    pub issuer: String,
    pub serial_number: String,
    pub not_before: i64,
    pub not_after: i64,
    pub fingerprint_sha256: String,
    pub key_type: String,
    pub chain_length: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The facts taken from an accepted PKCS#12 file.
#[derive(Clone, Debug)]
pub struct Replacement {
    pub name: String,
    pub subject: String,
    pub issuer: String,
    pub serial_number: String,
    pub not_before: i64,
    pub not_after: i64,
    pub fingerprint_sha256: String,
    pub key_type: String,
    pub chain_length: i64,
}

/// A row to create.
#[derive(Clone, Debug)]
pub struct NewCertificate {
    pub id: i64,
    pub account_id: String,
    pub secret_state: SecretState,
    pub facts: Replacement,
}

/// The selected columns, as a literal so that every statement stays a static string.
macro_rules! columns {
    () => {
        "id, account_id, name, deleted, version, secret_state, subject, issuer, serial_number, \
         not_before, not_after, fingerprint_sha256, key_type, chain_length, created_at, updated_at"
    };
}
pub(crate) use columns;

pub(crate) fn row(row: &AnyRow) -> Result<CertificateRow, sqlx::Error> {
    Ok(CertificateRow {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        version: row.try_get("version")?,
        secret_state: SecretState::parse(&row.try_get::<String, _>("secret_state")?),
        subject: row.try_get("subject")?,
        issuer: row.try_get("issuer")?,
        serial_number: row.try_get("serial_number")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        fingerprint_sha256: row.try_get("fingerprint_sha256")?,
        key_type: row.try_get("key_type")?,
        chain_length: row.try_get("chain_length")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Inserts every row in one transaction, all or none (a name in use is
    /// [`StoreError::Conflict`]), unless the account would then hold more than `cap` live
    /// certificates ([`crate::OverCap`]): counted under `Store::lock_account` in
    /// the same transaction, so concurrent creates on any node cannot pass the cap together.
    pub async fn insert_certificates_within(
        &self,
        account: &str,
        rows: &[NewCertificate],
        now: i64,
        cap: usize,
    ) -> Result<Result<(), crate::mappings::OverCap>, StoreError> {
        mtls_metrics::timed("database", "insert_certificates", async move {
            let mut transaction = self.pool.begin().await?;
            self.lock_account(&mut transaction, account).await?;
            let live = Self::live_rows(
                &mut transaction,
                crate::mappings::LiveTable::Certificates,
                account,
            )
            .await?;
            let adding = i64::try_from(rows.len()).unwrap_or(i64::MAX);
            if live.saturating_add(adding) > i64::try_from(cap).unwrap_or(i64::MAX) {
                return Ok(Err(crate::mappings::OverCap { live }));
            }
            for new in rows {
                let facts = &new.facts;
                sqlx::query(concat!(
                    "INSERT INTO certificates (",
                    columns!(),
                    ", active_name) VALUES (?, ?, ?, 0, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ))
                .bind(new.id)
                .bind(&new.account_id)
                .bind(&facts.name)
                .bind(new.secret_state.as_str())
                .bind(&facts.subject)
                .bind(&facts.issuer)
                .bind(&facts.serial_number)
                .bind(facts.not_before)
                .bind(facts.not_after)
                .bind(&facts.fingerprint_sha256)
                .bind(&facts.key_type)
                .bind(facts.chain_length)
                .bind(now)
                .bind(now)
                .bind(&facts.name)
                .execute(&mut *transaction)
                .await?;
            }
            transaction.commit().await?;
            Ok(Ok(()))
        })
        .await
    }

    /// Live (not deleted) certificates of `account`, for a cap's early answer.
    pub async fn live_certificate_count(&self, account: &str) -> Result<i64, StoreError> {
        mtls_metrics::timed("database", "live_certificate_count", async move {
            let mut transaction = self.pool.begin().await?;
            let live = Self::live_rows(
                &mut transaction,
                crate::mappings::LiveTable::Certificates,
                account,
            )
            .await?;
            transaction.commit().await?;
            Ok(live)
        })
        .await
    }

    /// One certificate of `account` (deleted ones included; callers decide).
    pub async fn certificate(
        &self,
        account: &str,
        id: i64,
    ) -> Result<Option<CertificateRow>, StoreError> {
        mtls_metrics::timed("database", "certificate", async move {
            let found = sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM certificates WHERE account_id = ? AND id = ?"
            ))
            .bind(account)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(found.as_ref().map(row).transpose()?)
        })
        .await
    }

    /// The certificates of `account`, oldest first.
    pub async fn certificates(
        &self,
        account: &str,
        include_deleted: bool,
    ) -> Result<Vec<CertificateRow>, StoreError> {
        mtls_metrics::timed("database", "certificates", async move {
            let statement = if include_deleted {
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM certificates WHERE account_id = ? ORDER BY created_at, id"
                )
            } else {
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM certificates WHERE account_id = ? AND deleted = 0 ORDER BY created_at, id"
                )
            };
            let rows = sqlx::query(statement)
                .bind(account)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Every live certificate whose secret is believed stored (for start-up reconciliation).
    pub async fn stored_certificates(&self) -> Result<Vec<CertificateRow>, StoreError> {
        mtls_metrics::timed("database", "stored_certificates", async move {
            let rows = sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM certificates WHERE deleted = 0 AND secret_state = 'stored' ORDER BY account_id, id"
            ))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Whether a live certificate of `account` other than `except` has `name`.
    pub async fn name_taken(
        &self,
        account: &str,
        name: &str,
        except: Option<i64>,
    ) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "name_taken", async move {
            let found = sqlx::query(
                "SELECT id FROM certificates WHERE account_id = ? AND active_name = ? AND id <> ?",
            )
            .bind(account)
            .bind(name)
            .bind(except.unwrap_or(0))
            .fetch_optional(&self.pool)
            .await?;
            Ok(found.is_some())
        })
        .await
    }

    /// Replaces a live certificate's facts: version + 1, secret stored. `false` when the row is
    /// gone or was replaced meanwhile (`expected_version` no longer current).
    pub async fn replace_certificate(
        &self,
        account: &str,
        id: i64,
        expected_version: i64,
        facts: &Replacement,
        now: i64,
    ) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "replace_certificate", async move {
            let done = sqlx::query(
                "UPDATE certificates SET name = ?, active_name = ?, version = version + 1, secret_state = 'stored', \
                 subject = ?, issuer = ?, serial_number = ?, not_before = ?, not_after = ?, fingerprint_sha256 = ?, \
                 key_type = ?, chain_length = ?, updated_at = ? \
                 WHERE account_id = ? AND id = ? AND version = ? AND deleted = 0",
            )
            .bind(&facts.name)
            .bind(&facts.name)
            .bind(&facts.subject)
            .bind(&facts.issuer)
            .bind(&facts.serial_number)
            .bind(facts.not_before)
            .bind(facts.not_after)
            .bind(&facts.fingerprint_sha256)
            .bind(&facts.key_type)
            .bind(facts.chain_length)
            .bind(now)
            .bind(account)
            .bind(id)
            .bind(expected_version)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// Soft delete: the row stays for audit, its name is free again, its secret is marked destroyed.
    pub async fn mark_deleted(&self, account: &str, id: i64, now: i64) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "mark_deleted", async move {
            let done = sqlx::query(
                "UPDATE certificates SET deleted = 1, active_name = NULL, secret_state = 'destroyed', updated_at = ? \
                 WHERE account_id = ? AND id = ? AND deleted = 0",
            )
            .bind(now)
            .bind(account)
            .bind(id)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// Records what is known of a certificate's secret.
    pub async fn set_secret_state(
        &self,
        account: &str,
        id: i64,
        state: SecretState,
    ) -> Result<(), StoreError> {
        mtls_metrics::timed("database", "set_secret_state", async move {
            sqlx::query("UPDATE certificates SET secret_state = ? WHERE account_id = ? AND id = ?")
                .bind(state.as_str())
                .bind(account)
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }
}
