//! Wire shapes (camelCase JSON). Domain types from `mtls-store` are turned into these here; the
//! tester's report, shared with the command line, is `mtls_control::report`'s.

use serde::Serialize;

pub use mtls_control::clock::rfc3339;
pub use mtls_control::report::{
    ChainElement, Protection, TesterReport, Warning, live_report, status,
};

/// The certificate entity of SPEC 4.1, with the additive fields.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    pub id: i64,
    pub deleted: bool,
    pub name: String,
    pub display_name: String,
    pub site_id: String,
    /// `Available`, `Expired` or `UnAvailable`, computed when read.
    pub status: &'static str,
    pub expiration_date: String,
    pub subject: String,
    pub issuer: String,
    pub serial_number: String,
    pub not_before: String,
    pub fingerprint_sha256: String,
    pub key_type: String,
    pub chain_length: i64,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    /// The renewal in progress (SPEC 4.6), absent when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal: Option<Renewal>,
}

/// A renewal in progress: `Pending` (waiting for its chain) or `Scheduled` (the switch waits
/// for `activateAt`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Renewal {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activate_at: Option<String>,
}

impl From<&mtls_store::RenewalRow> for Renewal {
    fn from(row: &mtls_store::RenewalRow) -> Self {
        Self {
            status: if row.scheduled {
                "Scheduled"
            } else {
                "Pending"
            },
            activate_at: row.activate_at.map(rfc3339),
        }
    }
}

impl Certificate {
    /// The entity for `row` as of `now` (Unix seconds).
    pub fn from_row(row: &mtls_store::CertificateRow, now: i64) -> Self {
        Self {
            id: row.id,
            deleted: row.deleted,
            name: row.name.clone(),
            display_name: row.name.clone(),
            site_id: row.account_id.clone(),
            status: status(row, now),
            expiration_date: rfc3339(row.not_after),
            subject: row.subject.clone(),
            issuer: row.issuer.clone(),
            serial_number: row.serial_number.clone(),
            not_before: rfc3339(row.not_before),
            fingerprint_sha256: row.fingerprint_sha256.clone(),
            key_type: row.key_type.clone(),
            chain_length: row.chain_length,
            version: row.version,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            renewal: row.renewal.as_ref().map(Renewal::from),
        }
    }
}

/// The save result of SPEC 4.3, key names exactly as the contract spells them.
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct SaveResult {
    #[serde(rename = "successfulySavedCertificates")]
    pub saved: Vec<Certificate>,
    #[serde(rename = "failedSaveToVaultCertificates")]
    pub failed: Vec<Certificate>,
}

/// The mapping entity of SPEC 5.1 (ids as JSON strings where the contract says so).
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mapping {
    pub id: i64,
    pub name: String,
    pub certification_id: String,
    pub service_id: String,
    pub url: String,
    pub site_id: String,
    pub enable: bool,
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ca_pem: Option<String>,
}

impl From<&mtls_store::MappingRow> for Mapping {
    fn from(row: &mtls_store::MappingRow) -> Self {
        Self {
            id: row.id,
            name: row.name.clone(),
            certification_id: row.certificate_id.to_string(),
            service_id: row.service_id.clone(),
            url: row.url.clone(),
            site_id: row.account_id.clone(),
            enable: row.enabled,
            deleted: row.deleted,
            upstream_ca_pem: row.upstream_ca.clone(),
        }
    }
}

impl SaveResult {
    /// The answer for what a create or a replacement stored.
    pub fn from_saved(saved: &mtls_control::certificates::Saved) -> Self {
        Self {
            saved: saved
                .saved
                .iter()
                .map(|row| Certificate::from_row(row, saved.at))
                .collect(),
            failed: saved
                .failed
                .iter()
                .map(|row| Certificate::from_row(row, saved.at))
                .collect(),
        }
    }
}
