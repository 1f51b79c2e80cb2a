//! Certificate rows: metadata, version, the state of the secret, soft deletion; requests for
//! keys the gateway makes and their renewals (SPEC 4.6).

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
    /// A request whose signed certificate has not been uploaded (SPEC 4.6): the leaf facts
    /// above hold no certificate (`issuer`, `serial_number`, `fingerprint_sha256` empty,
    /// `not_before`, `not_after` and `chain_length` 0); `subject` and `key_type` are the
    /// request's.
    pub pending: bool,
    /// The renewal in progress, if any.
    pub renewal: Option<RenewalRow>,
}

/// A renewal in progress, as the row shows it (its request and chain: [`Store::renewal`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalRow {
    /// The secret version holding the renewal's key (in `mtls_secrets::RENEWAL_VERSIONS`).
    pub secret_version: i64,
    /// `RSA-2048`, `ECDSA-P256`, ... as the entity names key types.
    pub key_type: String,
    /// Set once the chain was uploaded with a later activateAt: the switch waits for it.
    pub activate_at: Option<i64>,
    pub created_at: i64,
}

impl RenewalRow {
    /// The chain was uploaded and the switch waits for `activate_at` (SPEC 4.6 `Scheduled`);
    /// `false`: waiting for the chain (`Pending`). Derived from `activate_at`, which only a
    /// scheduled renewal has (the `renewal_state` column says the same for the SQL conditions).
    pub fn scheduled(&self) -> bool {
        self.activate_at.is_some()
    }
}

/// A renewal's request and, once scheduled, its chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalDetail {
    pub row: RenewalRow,
    pub csr_pem: String,
    pub chain_pem: Option<String>,
}

/// A request row to create: the key is already in the secret store as version 1.
#[derive(Clone, Debug)]
pub struct NewRequest {
    pub id: i64,
    pub account_id: String,
    pub name: String,
    pub secret_state: SecretState,
    /// The subject as the request carries it (RFC 4514).
    pub subject: String,
    /// `RSA-2048`, `ECDSA-P256`, ...
    pub key_type: String,
    pub csr_pem: String,
}

/// A renewal to record: its key is already in the secret store as `secret_version`.
#[derive(Clone, Debug)]
pub struct NewRenewal {
    pub secret_version: i64,
    pub key_type: String,
    pub csr_pem: String,
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
         not_before, not_after, fingerprint_sha256, key_type, chain_length, created_at, updated_at, \
         pending, renewal_state, renewal_version, renewal_key_type, renewal_activate_at, renewal_created_at"
    };
}
pub(crate) use columns;

/// The assignments that install a new version's leaf facts (bound by [`bind_facts`]): version
/// + 1, secret stored, no longer pending. Shared by every UPDATE that installs a certificate.
macro_rules! set_facts {
    () => {
        "name = ?, active_name = ?, version = version + 1, secret_state = 'stored', subject = ?, \
         issuer = ?, serial_number = ?, not_before = ?, not_after = ?, fingerprint_sha256 = ?, \
         key_type = ?, chain_length = ?, updated_at = ?, pending = 0"
    };
}

/// The assignments that forget a renewal in progress.
macro_rules! clear_renewal {
    () => {
        "renewal_state = NULL, renewal_version = NULL, renewal_key_type = NULL, renewal_csr_pem = NULL, \
         renewal_chain_pem = NULL, renewal_activate_at = NULL, renewal_created_at = NULL"
    };
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds the placeholders of [`set_facts!`], in its order.
fn bind_facts<'q>(query: Query<'q>, facts: &Replacement, now: i64) -> Query<'q> {
    query
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
}

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
        pending: row.try_get::<i64, _>("pending")? != 0,
        renewal: renewal_row(row)?,
    })
}

fn renewal_row(row: &AnyRow) -> Result<Option<RenewalRow>, sqlx::Error> {
    let state: Option<String> = row.try_get("renewal_state")?;
    let version: Option<i64> = row.try_get("renewal_version")?;
    let (Some(_), Some(secret_version)) = (state, version) else {
        return Ok(None);
    };
    Ok(Some(RenewalRow {
        secret_version,
        key_type: row
            .try_get::<Option<String>, _>("renewal_key_type")?
            .unwrap_or_default(),
        activate_at: row.try_get("renewal_activate_at")?,
        created_at: row
            .try_get::<Option<i64>, _>("renewal_created_at")?
            .unwrap_or_default(),
    }))
}

impl Store {
    /// Runs a conditional UPDATE: `true` when it changed the one row its WHERE names, `false`
    /// when that row is gone or no longer in the state the caller read.
    async fn changed_one(&self, query: Query<'_>) -> Result<bool, StoreError> {
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Locks `account` in `transaction` and counts its live certificates: an [`OverCap`] when
    /// `adding` more would take it past `cap`.
    ///
    /// [`OverCap`]: crate::mappings::OverCap
    async fn room_for(
        &self,
        transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
        account: &str,
        adding: usize,
        cap: usize,
    ) -> Result<Result<(), crate::mappings::OverCap>, StoreError> {
        self.lock_account(transaction, account).await?;
        let live = Self::live_rows(
            transaction,
            crate::mappings::LiveTable::Certificates,
            account,
        )
        .await?;
        let adding = i64::try_from(adding).unwrap_or(i64::MAX);
        if live.saturating_add(adding) > i64::try_from(cap).unwrap_or(i64::MAX) {
            return Ok(Err(crate::mappings::OverCap { live }));
        }
        Ok(Ok(()))
    }

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
            if let Err(over) = self
                .room_for(&mut transaction, account, rows.len(), cap)
                .await?
            {
                return Ok(Err(over));
            }
            for new in rows {
                let facts = &new.facts;
                sqlx::query(
                    "INSERT INTO certificates (id, account_id, name, deleted, version, secret_state, subject, \
                     issuer, serial_number, not_before, not_after, fingerprint_sha256, key_type, chain_length, \
                     created_at, updated_at, active_name) VALUES (?, ?, ?, 0, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
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
    /// gone or was replaced meanwhile (`expected_version` no longer current). A PKCS#12 file
    /// fulfils a pending request too: the row is no longer pending and has no request any more.
    /// A renewal in progress stays.
    pub async fn replace_certificate(
        &self,
        account: &str,
        id: i64,
        expected_version: i64,
        facts: &Replacement,
        now: i64,
    ) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "replace_certificate", async move {
            let query = sqlx::query(concat!(
                "UPDATE certificates SET ",
                set_facts!(),
                ", csr_pem = NULL WHERE account_id = ? AND id = ? AND version = ? AND deleted = 0"
            ));
            self.changed_one(
                bind_facts(query, facts, now)
                    .bind(account)
                    .bind(id)
                    .bind(expected_version),
            )
            .await
        })
        .await
    }

    /// Soft delete: the row stays for audit, its name is free again, its secret is marked
    /// destroyed, a renewal in progress is forgotten (its key goes with every other version).
    pub async fn mark_deleted(&self, account: &str, id: i64, now: i64) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "mark_deleted", async move {
            let query = sqlx::query(concat!(
                "UPDATE certificates SET deleted = 1, active_name = NULL, secret_state = 'destroyed', updated_at = ?, ",
                clear_renewal!(),
                " WHERE account_id = ? AND id = ? AND deleted = 0"
            ));
            self.changed_one(query.bind(now).bind(account).bind(id))
                .await
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

    /// Inserts a request row (SPEC 4.6): version 1, pending, no certificate yet, within the
    /// account's cap of `cap` live certificates, like [`Store::insert_certificates_within`].
    pub async fn insert_request_within(
        &self,
        account: &str,
        new: &NewRequest,
        now: i64,
        cap: usize,
    ) -> Result<Result<(), crate::mappings::OverCap>, StoreError> {
        mtls_metrics::timed("database", "insert_request", async move {
            let mut transaction = self.pool.begin().await?;
            if let Err(over) = self.room_for(&mut transaction, account, 1, cap).await? {
                return Ok(Err(over));
            }
            sqlx::query(
                "INSERT INTO certificates (id, account_id, name, deleted, version, secret_state, subject, issuer, \
                 serial_number, not_before, not_after, fingerprint_sha256, key_type, chain_length, created_at, \
                 updated_at, active_name, pending, csr_pem) \
                 VALUES (?, ?, ?, 0, 1, ?, ?, '', '', 0, 0, '', ?, 0, ?, ?, ?, 1, ?)",
            )
            .bind(new.id)
            .bind(&new.account_id)
            .bind(&new.name)
            .bind(new.secret_state.as_str())
            .bind(&new.subject)
            .bind(&new.key_type)
            .bind(now)
            .bind(now)
            .bind(&new.name)
            .bind(&new.csr_pem)
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
            Ok(Ok(()))
        })
        .await
    }

    /// The PKCS#10 request of a certificate's live key: the pending request's, or the one its
    /// certificate was issued for. `None` for a certificate from a PKCS#12 file (or unknown).
    pub async fn certificate_csr(
        &self,
        account: &str,
        id: i64,
    ) -> Result<Option<String>, StoreError> {
        mtls_metrics::timed("database", "certificate_csr", async move {
            let found = sqlx::query(
                "SELECT csr_pem FROM certificates WHERE account_id = ? AND id = ? AND deleted = 0",
            )
            .bind(account)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(match found {
                Some(row) => row.try_get::<Option<String>, _>("csr_pem")?,
                None => None,
            })
        })
        .await
    }

    /// A pending request's certificate arrived: the row takes the leaf's facts (`facts.name`
    /// included) and the next version (whose secret holds the key and its chain), and is no
    /// longer pending. `false` when the row is gone, not pending, or not at `expected_version`.
    pub async fn complete_request(
        &self,
        account: &str,
        id: i64,
        expected_version: i64,
        facts: &Replacement,
        now: i64,
    ) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "complete_request", async move {
            let query = sqlx::query(concat!(
                "UPDATE certificates SET ",
                set_facts!(),
                " WHERE account_id = ? AND id = ? AND version = ? AND deleted = 0 AND pending = 1"
            ));
            self.changed_one(
                bind_facts(query, facts, now)
                    .bind(account)
                    .bind(id)
                    .bind(expected_version),
            )
            .await
        })
        .await
    }

    /// Records a renewal (its key already stored as `renewal.secret_version`) on a live,
    /// complete certificate at `expected_version` that has no renewal yet. `false` otherwise:
    /// the caller removes the key it stored.
    pub async fn create_renewal(
        &self,
        account: &str,
        id: i64,
        expected_version: i64,
        renewal: &NewRenewal,
        now: i64,
    ) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "create_renewal", async move {
            let query = sqlx::query(
                "UPDATE certificates SET renewal_state = 'pending', renewal_version = ?, renewal_key_type = ?, \
                 renewal_csr_pem = ?, renewal_chain_pem = NULL, renewal_activate_at = NULL, renewal_created_at = ?, \
                 updated_at = ? \
                 WHERE account_id = ? AND id = ? AND version = ? AND deleted = 0 AND pending = 0 \
                 AND renewal_version IS NULL",
            )
            .bind(renewal.secret_version)
            .bind(&renewal.key_type)
            .bind(&renewal.csr_pem)
            .bind(now)
            .bind(now)
            .bind(account)
            .bind(id)
            .bind(expected_version);
            self.changed_one(query).await
        })
        .await
    }

    /// The renewal in progress of a live certificate, with its request and (once scheduled)
    /// its chain.
    pub async fn renewal(
        &self,
        account: &str,
        id: i64,
    ) -> Result<Option<RenewalDetail>, StoreError> {
        mtls_metrics::timed("database", "renewal", async move {
            let found = sqlx::query(
                "SELECT renewal_state, renewal_version, renewal_key_type, renewal_activate_at, renewal_created_at, \
                 renewal_csr_pem, renewal_chain_pem FROM certificates WHERE account_id = ? AND id = ? AND deleted = 0",
            )
            .bind(account)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            let Some(found) = found else {
                return Ok(None);
            };
            let Some(row) = renewal_row(&found)? else {
                return Ok(None);
            };
            Ok(Some(RenewalDetail {
                row,
                csr_pem: found
                    .try_get::<Option<String>, _>("renewal_csr_pem")?
                    .unwrap_or_default(),
                chain_pem: found.try_get("renewal_chain_pem")?,
            }))
        })
        .await
    }

    /// The renewal's chain arrived with a later `activate_at`: kept (public PEM) until then.
    /// `false` when that renewal (`secret_version`) is not pending on a live row.
    pub async fn schedule_renewal(
        &self,
        account: &str,
        id: i64,
        secret_version: i64,
        chain_pem: &str,
        activate_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "schedule_renewal", async move {
            let query = sqlx::query(
                "UPDATE certificates SET renewal_state = 'scheduled', renewal_chain_pem = ?, renewal_activate_at = ?, \
                 updated_at = ? \
                 WHERE account_id = ? AND id = ? AND renewal_version = ? AND renewal_state = 'pending' AND deleted = 0",
            )
            .bind(chain_pem)
            .bind(activate_at)
            .bind(now)
            .bind(account)
            .bind(id)
            .bind(secret_version);
            self.changed_one(query).await
        })
        .await
    }

    /// Forgets the renewal `secret_version` (pending or scheduled). `false` when it is not the
    /// row's renewal any more (completed or cancelled meanwhile). The caller then removes that
    /// secret version.
    pub async fn cancel_renewal(
        &self,
        account: &str,
        id: i64,
        secret_version: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "cancel_renewal", async move {
            let query = sqlx::query(concat!(
                "UPDATE certificates SET ",
                clear_renewal!(),
                ", updated_at = ? WHERE account_id = ? AND id = ? AND renewal_version = ? AND deleted = 0"
            ));
            self.changed_one(
                query
                    .bind(now)
                    .bind(account)
                    .bind(id)
                    .bind(secret_version),
            )
            .await
        })
        .await
    }

    /// The switch to the renewal's key (SPEC 4.6): the row takes the new leaf's facts, the next
    /// version (whose secret holds the renewal's key and its chain) and the renewal's request,
    /// and has no renewal any more. Conditional on the row being at `expected_version` with
    /// the renewal `secret_version`: `false` otherwise (the caller releases the version it
    /// claimed, as for a replacement).
    pub async fn complete_renewal(
        &self,
        account: &str,
        id: i64,
        expected_version: i64,
        secret_version: i64,
        facts: &Replacement,
        now: i64,
    ) -> Result<bool, StoreError> {
        mtls_metrics::timed("database", "complete_renewal", async move {
            // `csr_pem` first: MySQL assigns left to right, seeing the columns already set.
            let query = sqlx::query(concat!(
                "UPDATE certificates SET csr_pem = renewal_csr_pem, ",
                set_facts!(),
                ", ",
                clear_renewal!(),
                " WHERE account_id = ? AND id = ? AND version = ? AND renewal_version = ? AND deleted = 0"
            ));
            self.changed_one(
                bind_facts(query, facts, now)
                    .bind(account)
                    .bind(id)
                    .bind(expected_version)
                    .bind(secret_version),
            )
            .await
        })
        .await
    }

    /// Live certificates whose scheduled renewal is due at `now` (for the activation timer).
    pub async fn due_renewals(&self, now: i64) -> Result<Vec<CertificateRow>, StoreError> {
        mtls_metrics::timed("database", "due_renewals", async move {
            let rows = sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM certificates WHERE deleted = 0 AND renewal_state = 'scheduled' AND renewal_activate_at <= ? \
                 ORDER BY renewal_activate_at, id"
            ))
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Over every live certificate: the requests still pending and the renewals in progress
    /// (pending or scheduled), for `/metrics`.
    pub async fn pending_counts(&self) -> Result<(i64, i64), StoreError> {
        mtls_metrics::timed("database", "pending_counts", async move {
            let requests = sqlx::query(
                "SELECT COUNT(*) AS n FROM certificates WHERE deleted = 0 AND pending = 1",
            )
            .fetch_one(&self.pool)
            .await?
            .try_get::<i64, _>("n")?;
            let renewals = sqlx::query(
                "SELECT COUNT(*) AS n FROM certificates WHERE deleted = 0 AND renewal_version IS NOT NULL",
            )
            .fetch_one(&self.pool)
            .await?
            .try_get::<i64, _>("n")?;
            Ok((requests, renewals))
        })
        .await
    }
}
