//! The certificate entity of SPEC 4.1 as the wire shows it (camelCase JSON), shared by the HTTP
//! edge (`mtls_api::dto` re-exports it; `/openapi.json` derives its schema from it) and the
//! command line (`mtls-gateway cert`). It never holds a key, a file or a password.

use serde::Serialize;

use crate::clock::rfc3339;
use crate::report::status;

/// The certificate entity of SPEC 4.1, with the additive fields. While a request is `Pending`
/// (SPEC 4.6) there is no certificate yet: `expirationDate` and the leaf's fields (`issuer`,
/// `serialNumber`, `notBefore`, `fingerprintSha256`, `chainLength`) are absent; `subject` and
/// `keyType` are the request's.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    pub id: i64,
    pub deleted: bool,
    pub name: String,
    pub display_name: String,
    pub site_id: String,
    /// `Available`, `Expired`, `Pending` or `UnAvailable`, computed when read.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<String>,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint_sha256: Option<String>,
    pub key_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_length: Option<i64>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    /// The renewal in progress (SPEC 4.6), absent when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal: Option<Renewal>,
}

/// A renewal in progress as the entity shows it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Renewal {
    /// `Pending` (waiting for the renewal's chain) or `Scheduled` (the chain is uploaded and
    /// the switch waits for `activateAt`).
    pub status: &'static str,
    /// When a scheduled renewal switches, RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activate_at: Option<String>,
}

impl Certificate {
    /// The entity for `row` as of `now` (Unix seconds).
    pub fn from_row(row: &mtls_store::CertificateRow, now: i64) -> Self {
        let issued = !row.pending;
        let leaf = |value: String| issued.then_some(value);
        Self {
            id: row.id,
            deleted: row.deleted,
            name: row.name.clone(),
            display_name: row.name.clone(),
            site_id: row.account_id.clone(),
            status: status(row, now),
            expiration_date: leaf(rfc3339(row.not_after)),
            subject: row.subject.clone(),
            issuer: leaf(row.issuer.clone()),
            serial_number: leaf(row.serial_number.clone()),
            not_before: leaf(rfc3339(row.not_before)),
            fingerprint_sha256: leaf(row.fingerprint_sha256.clone()),
            key_type: row.key_type.clone(),
            chain_length: issued.then_some(row.chain_length),
            version: row.version,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            renewal: row.renewal.as_ref().map(|renewal| Renewal {
                status: if renewal.scheduled {
                    "Scheduled"
                } else {
                    "Pending"
                },
                activate_at: renewal
                    .activate_at
                    .filter(|_| renewal.scheduled)
                    .map(rfc3339),
            }),
        }
    }
}
