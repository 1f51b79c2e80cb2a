//! Mapping rows and the revision counters: every mapping change bumps its account's revision
//! and the global one (`*`) in the same transaction; `If-Match` is a compare-and-swap on the
//! account's revision.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{Backend, Store, StoreError};

/// The global revision's key in `revisions`: every node watches it.
pub const GLOBAL: &str = "*";

/// The tables whose live rows the per-account caps count.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LiveTable {
    Certificates,
    Mappings,
}

/// A mapping as stored (its URL normalized).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingRow {
    pub id: i64,
    pub account_id: String,
    pub name: String,
    pub certificate_id: i64,
    pub service_id: String,
    pub url: String,
    pub enabled: bool,
    pub deleted: bool,
    pub upstream_ca: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The fields a create or an update sets.
#[derive(Clone, Debug)]
pub struct MappingFields {
    pub name: String,
    pub certificate_id: i64,
    pub service_id: String,
    pub url: String,
    /// Hash of (service id, normalized URL): the duplicate-triplet key.
    pub url_key: String,
    pub enabled: bool,
    pub upstream_ca: Option<String>,
}

/// What a write found.
#[derive(Debug)]
pub enum MappingWrite {
    Done {
        revision: i64,
    },
    /// `If-Match` named another revision than the current one.
    StaleRevision {
        current: i64,
    },
    NotFound,
}

/// A create refused because it would take the account past its cap: nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverCap {
    /// The account's live rows when the create was refused.
    pub live: i64,
}

/// One enabled, live mapping with its certificate, for the routing table.
#[derive(Clone, Debug)]
pub struct RouteRow {
    pub account_id: String,
    pub service_id: String,
    pub url: String,
    pub mapping_id: i64,
    pub certificate_id: i64,
    pub certificate_version: i64,
    pub secret_stored: bool,
    pub not_before: i64,
    pub not_after: i64,
    pub upstream_ca: Option<String>,
}

macro_rules! mapping_columns {
    () => {
        "id, account_id, name, certificate_id, service_id, url, enabled, deleted, upstream_ca, created_at, updated_at"
    };
}

fn mapping(row: &AnyRow) -> Result<MappingRow, sqlx::Error> {
    Ok(MappingRow {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        certificate_id: row.try_get("certificate_id")?,
        service_id: row.try_get("service_id")?,
        url: row.try_get("url")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        upstream_ca: row.try_get("upstream_ca")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// The account's mapping revision (0 before any change).
    pub async fn revision(&self, account: &str) -> Result<i64, StoreError> {
        mtls_metrics::timed("database", "revision", async move {
            let row = sqlx::query("SELECT revision FROM revisions WHERE account_id = ?")
                .bind(account)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row
                .map(|row| row.try_get::<i64, _>("revision"))
                .transpose()?
                .unwrap_or(0))
        })
        .await
    }

    async fn bump(
        &self,
        transaction: &mut Transaction<'_, Any>,
        account: &str,
    ) -> Result<i64, StoreError> {
        let upsert = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO revisions (account_id, revision) VALUES (?, 1) \
                 ON CONFLICT(account_id) DO UPDATE SET revision = revision + 1"
            }
            Backend::MySql => {
                "INSERT INTO revisions (account_id, revision) VALUES (?, 1) \
                 ON DUPLICATE KEY UPDATE revision = revision + 1"
            }
        };
        sqlx::query(upsert)
            .bind(account)
            .execute(&mut **transaction)
            .await?;
        let row = sqlx::query("SELECT revision FROM revisions WHERE account_id = ?")
            .bind(account)
            .fetch_one(&mut **transaction)
            .await?;
        Ok(row.try_get("revision")?)
    }

    /// Bumps the account's and the global revision and commits `transaction`: the end of every
    /// mapping change.
    async fn commit_change(
        &self,
        mut transaction: Transaction<'_, Any>,
        account: &str,
    ) -> Result<i64, StoreError> {
        let revision = self.bump(&mut transaction, account).await?;
        self.bump(&mut transaction, GLOBAL).await?;
        transaction.commit().await?;
        Ok(revision)
    }

    /// Bumps the account's and the global revision in one transaction (certificate changes
    /// call this so that other nodes rebuild their routing tables).
    pub async fn bump_revisions(&self, account: &str) -> Result<i64, StoreError> {
        mtls_metrics::timed("database", "bump_revisions", async move {
            let transaction = self.pool.begin().await?;
            self.commit_change(transaction, account).await
        })
        .await
    }

    /// Locks (MySQL) and reads the account's revision inside `transaction`.
    async fn current_revision(
        &self,
        transaction: &mut Transaction<'_, Any>,
        account: &str,
    ) -> Result<i64, StoreError> {
        let statement = match self.backend {
            Backend::Sqlite => "SELECT revision FROM revisions WHERE account_id = ?",
            Backend::MySql => "SELECT revision FROM revisions WHERE account_id = ? FOR UPDATE",
        };
        let row = sqlx::query(statement)
            .bind(account)
            .fetch_optional(&mut **transaction)
            .await?;
        Ok(row
            .map(|row| row.try_get::<i64, _>("revision"))
            .transpose()?
            .unwrap_or(0))
    }

    /// Holds the account for the rest of `transaction`, so that creates which count the
    /// account's rows before inserting (the per-account caps) run one after the other: the
    /// account's revision row is written (created at 0 when absent, which reads as absent
    /// does), and a written row stays locked until commit on MySQL, while on SQLite the write
    /// takes the database's write lock. Taken first, before anything is read.
    pub(crate) async fn lock_account(
        &self,
        transaction: &mut Transaction<'_, Any>,
        account: &str,
    ) -> Result<(), StoreError> {
        let statement = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO revisions (account_id, revision) VALUES (?, 0) \
                 ON CONFLICT(account_id) DO UPDATE SET revision = revision"
            }
            Backend::MySql => {
                "INSERT INTO revisions (account_id, revision) VALUES (?, 0) \
                 ON DUPLICATE KEY UPDATE revision = revision"
            }
        };
        sqlx::query(statement)
            .bind(account)
            .execute(&mut **transaction)
            .await?;
        Ok(())
    }

    /// Live (not deleted) rows of `account` in `table`, read inside `transaction`.
    pub(crate) async fn live_rows(
        transaction: &mut Transaction<'_, Any>,
        table: LiveTable,
        account: &str,
    ) -> Result<i64, StoreError> {
        let statement = match table {
            LiveTable::Certificates => {
                "SELECT COUNT(*) AS live FROM certificates WHERE account_id = ? AND deleted = 0"
            }
            LiveTable::Mappings => {
                "SELECT COUNT(*) AS live FROM mappings WHERE account_id = ? AND deleted = 0"
            }
        };
        let row = sqlx::query(statement)
            .bind(account)
            .fetch_one(&mut **transaction)
            .await?;
        Ok(row.try_get("live")?)
    }

    /// Inserts all `rows` or none, unless the account would then hold more than `cap` live
    /// mappings ([`OverCap`]; counted under `Store::lock_account`, so concurrent creates on
    /// any node cannot pass the cap together). A duplicate name or triplet is
    /// [`StoreError::Conflict`].
    pub async fn insert_mappings(
        &self,
        account: &str,
        rows: &[(i64, MappingFields)],
        now: i64,
        cap: usize,
    ) -> Result<Result<i64, OverCap>, StoreError> {
        mtls_metrics::timed("database", "insert_mappings", async move {
        let mut transaction = self.pool.begin().await?;
        self.lock_account(&mut transaction, account).await?;
        let live = Self::live_rows(&mut transaction, LiveTable::Mappings, account).await?;
        let adding = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        if live.saturating_add(adding) > i64::try_from(cap).unwrap_or(i64::MAX) {
            return Ok(Err(OverCap { live }));
        }
        for (id, fields) in rows {
            sqlx::query(
                "INSERT INTO mappings (id, account_id, name, active_name, certificate_id, service_id, url, url_key, \
                 active_url_key, enabled, deleted, upstream_ca, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
            )
            .bind(*id)
            .bind(account)
            .bind(&fields.name)
            .bind(&fields.name)
            .bind(fields.certificate_id)
            .bind(&fields.service_id)
            .bind(&fields.url)
            .bind(&fields.url_key)
            .bind(&fields.url_key)
            .bind(i64::from(fields.enabled))
            .bind(fields.upstream_ca.clone())
            .bind(now)
            .bind(now)
            .execute(&mut *transaction)
            .await?;
        }
        let revision = self.commit_change(transaction, account).await?;
        Ok(Ok(revision))
        })
        .await
    }

    pub async fn mapping(&self, account: &str, id: i64) -> Result<Option<MappingRow>, StoreError> {
        mtls_metrics::timed("database", "mapping", async move {
            let row = sqlx::query(concat!(
                "SELECT ",
                mapping_columns!(),
                " FROM mappings WHERE account_id = ? AND id = ?"
            ))
            .bind(account)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(mapping).transpose()?)
        })
        .await
    }

    pub async fn mappings(
        &self,
        account: &str,
        include_deleted: bool,
    ) -> Result<Vec<MappingRow>, StoreError> {
        mtls_metrics::timed("database", "mappings", async move {
            let statement = if include_deleted {
                concat!(
                    "SELECT ",
                    mapping_columns!(),
                    " FROM mappings WHERE account_id = ? ORDER BY created_at, id"
                )
            } else {
                concat!(
                    "SELECT ",
                    mapping_columns!(),
                    " FROM mappings WHERE account_id = ? AND deleted = 0 ORDER BY created_at, id"
                )
            };
            let rows = sqlx::query(statement)
                .bind(account)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().map(mapping).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Enabled, live mappings of a certificate.
    pub async fn mappings_of_certificate(
        &self,
        account: &str,
        certificate_id: i64,
    ) -> Result<Vec<MappingRow>, StoreError> {
        mtls_metrics::timed("database", "mappings_of_certificate", async move {
        let rows = sqlx::query(concat!(
            "SELECT ",
            mapping_columns!(),
            " FROM mappings WHERE account_id = ? AND certificate_id = ? AND deleted = 0 AND enabled = 1 ORDER BY id"
        ))
        .bind(account)
        .bind(certificate_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(mapping).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Replaces a live mapping's fields, honouring `if_match`.
    pub async fn update_mapping(
        &self,
        account: &str,
        id: i64,
        fields: &MappingFields,
        if_match: Option<i64>,
        now: i64,
    ) -> Result<MappingWrite, StoreError> {
        mtls_metrics::timed("database", "update_mapping", async move {
            let mut transaction = self.pool.begin().await?;
            let current = self.current_revision(&mut transaction, account).await?;
            if if_match.is_some_and(|expected| expected != current) {
                return Ok(MappingWrite::StaleRevision { current });
            }
            let done = sqlx::query(
                "UPDATE mappings SET name = ?, active_name = ?, certificate_id = ?, service_id = ?, url = ?, url_key = ?, \
                 active_url_key = ?, enabled = ?, upstream_ca = ?, updated_at = ? WHERE account_id = ? AND id = ? AND deleted = 0",
            )
            .bind(&fields.name)
            .bind(&fields.name)
            .bind(fields.certificate_id)
            .bind(&fields.service_id)
            .bind(&fields.url)
            .bind(&fields.url_key)
            .bind(&fields.url_key)
            .bind(i64::from(fields.enabled))
            .bind(fields.upstream_ca.clone())
            .bind(now)
            .bind(account)
            .bind(id)
            .execute(&mut *transaction)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(MappingWrite::NotFound);
            }
            let revision = self.commit_change(transaction, account).await?;
            Ok(MappingWrite::Done { revision })
        })
        .await
    }

    /// Soft-deletes a live mapping, honouring `if_match`.
    pub async fn delete_mapping(
        &self,
        account: &str,
        id: i64,
        if_match: Option<i64>,
        now: i64,
    ) -> Result<MappingWrite, StoreError> {
        mtls_metrics::timed("database", "delete_mapping", async move {
            let mut transaction = self.pool.begin().await?;
            let current = self.current_revision(&mut transaction, account).await?;
            if if_match.is_some_and(|expected| expected != current) {
                return Ok(MappingWrite::StaleRevision { current });
            }
            let done = sqlx::query(
                "UPDATE mappings SET deleted = 1, active_name = NULL, active_url_key = NULL, updated_at = ? \
                 WHERE account_id = ? AND id = ? AND deleted = 0",
            )
            .bind(now)
            .bind(account)
            .bind(id)
            .execute(&mut *transaction)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(MappingWrite::NotFound);
            }
            let revision = self.commit_change(transaction, account).await?;
            Ok(MappingWrite::Done { revision })
        })
        .await
    }

    /// Disables every enabled mapping of a certificate (a forced certificate delete).
    pub async fn disable_mappings_of_certificate(
        &self,
        account: &str,
        certificate_id: i64,
        now: i64,
    ) -> Result<i64, StoreError> {
        mtls_metrics::timed("database", "disable_mappings_of_certificate", async move {
            let mut transaction = self.pool.begin().await?;
            sqlx::query(
                "UPDATE mappings SET enabled = 0, updated_at = ? WHERE account_id = ? AND certificate_id = ? AND deleted = 0 AND enabled = 1",
            )
            .bind(now)
            .bind(account)
            .bind(certificate_id)
            .execute(&mut *transaction)
            .await?;
            let revision = self.commit_change(transaction, account).await?;
            Ok(revision)
        })
        .await
    }

    /// Every enabled, live mapping with its certificate: what the routing table is built from.
    pub async fn routes(&self) -> Result<Vec<RouteRow>, StoreError> {
        mtls_metrics::timed("database", "routes", async move {
            let rows = sqlx::query(
                "SELECT m.account_id AS account_id, m.service_id AS service_id, m.url AS url, m.id AS mapping_id, \
                 m.certificate_id AS certificate_id, c.version AS version, c.secret_state AS secret_state, \
                 c.deleted AS certificate_deleted, c.not_before AS not_before, c.not_after AS not_after, \
                 m.upstream_ca AS upstream_ca, c.pending AS pending \
                 FROM mappings m JOIN certificates c ON c.id = m.certificate_id AND c.account_id = m.account_id \
                 WHERE m.deleted = 0 AND m.enabled = 1",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(RouteRow {
                        account_id: row.try_get("account_id")?,
                        service_id: row.try_get("service_id")?,
                        url: row.try_get("url")?,
                        mapping_id: row.try_get("mapping_id")?,
                        certificate_id: row.try_get("certificate_id")?,
                        certificate_version: row.try_get("version")?,
                        // A pending request (SPEC 4.6) has a key and no certificate: nothing
                        // to present, so nothing to load.
                        secret_stored: row.try_get::<String, _>("secret_state")? == "stored"
                            && row.try_get::<i64, _>("certificate_deleted")? == 0
                            && row.try_get::<i64, _>("pending")? == 0,
                        not_before: row.try_get("not_before")?,
                        not_after: row.try_get("not_after")?,
                        upstream_ca: row.try_get("upstream_ca")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
        .await
    }
}
