//! Expiry monitoring: every live certificate, and which (certificate, validity end, threshold)
//! notifications went out, so that a restart or another node does not send them again.

use crate::certificates::{CertificateRow, row};
use crate::{Store, StoreError};

impl Store {
    /// Every live (not deleted) certificate of every account that has one: a pending request
    /// (SPEC 4.6) has no validity to watch yet.
    pub async fn live_certificates(&self) -> Result<Vec<CertificateRow>, StoreError> {
        mtls_metrics::timed("database", "live_certificates", async move {
            let rows = sqlx::query(concat!(
                "SELECT ",
                crate::certificates::columns!(),
                " FROM certificates WHERE deleted = 0 AND pending = 0 ORDER BY account_id, id"
            ))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Claims the notification of (certificate, `not_after`, threshold): `true` for the one
    /// caller (on any node) that gets to send it, `false` when it was claimed before.
    pub async fn claim_expiry_notification(
        &self,
        account: &str,
        certificate_id: i64,
        not_after: i64,
        threshold_days: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "claim_expiry_notification", async move {
            let inserted = sqlx::query(
                "INSERT INTO expiry_notifications \
                 (account_id, certificate_id, not_after, threshold_days, notified_at) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(account)
            .bind(certificate_id)
            .bind(not_after)
            .bind(threshold_days)
            .bind(now)
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

    /// Gives a claim back (its webhook call failed), so that the next round tries again.
    pub async fn release_expiry_notification(
        &self,
        account: &str,
        certificate_id: i64,
        not_after: i64,
        threshold_days: i64,
    ) -> Result<(), StoreError> {
        mtls_metrics::timed("database", "release_expiry_notification", async move {
            sqlx::query(
                "DELETE FROM expiry_notifications WHERE account_id = ? AND certificate_id = ? \
                 AND not_after = ? AND threshold_days = ?",
            )
            .bind(account)
            .bind(certificate_id)
            .bind(not_after)
            .bind(threshold_days)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }
}
