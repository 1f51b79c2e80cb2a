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
                status: if renewal.scheduled() {
                    "Scheduled"
                } else {
                    "Pending"
                },
                activate_at: renewal.activate_at.map(rfc3339),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtls_store::{CertificateRow, RenewalRow, SecretState};

    fn row(pending: bool, renewal: Option<RenewalRow>) -> CertificateRow {
        CertificateRow {
            id: 1,
            account_id: "acme".to_owned(),
            name: "brand-a".to_owned(),
            deleted: false,
            version: 1,
            secret_state: SecretState::Stored,
            subject: "CN=brand-a".to_owned(),
            issuer: if pending { "" } else { "CN=CA" }.to_owned(),
            serial_number: String::new(),
            not_before: if pending { 0 } else { 100 },
            not_after: if pending { 0 } else { 1_000 },
            fingerprint_sha256: String::new(),
            key_type: "ECDSA-P256".to_owned(),
            chain_length: if pending { 0 } else { 2 },
            created_at: 0,
            updated_at: 0,
            pending,
            renewal,
        }
    }

    #[test]
    fn a_pending_request_has_no_leaf_fields_and_a_renewal_shows_its_state() {
        let pending = serde_json::to_value(Certificate::from_row(&row(true, None), 500)).unwrap();
        assert_eq!(pending["status"], "Pending");
        assert_eq!(pending["subject"], "CN=brand-a");
        for absent in [
            "expirationDate",
            "issuer",
            "serialNumber",
            "notBefore",
            "fingerprintSha256",
            "chainLength",
            "renewal",
        ] {
            assert!(pending.get(absent).is_none(), "{absent}: {pending}");
        }
        let renewal = |scheduled: bool| RenewalRow {
            secret_version: mtls_secrets::RENEWAL_VERSIONS,
            key_type: "ECDSA-P256".to_owned(),
            activate_at: scheduled.then_some(900),
            created_at: 0,
        };
        let renewing = serde_json::to_value(Certificate::from_row(
            &row(false, Some(renewal(false))),
            500,
        ))
        .unwrap();
        assert_eq!(renewing["status"], "Available");
        assert_eq!(renewing["chainLength"], 2);
        assert_eq!(renewing["expirationDate"], "1970-01-01T00:16:40Z");
        assert_eq!(
            renewing["renewal"],
            serde_json::json!({ "status": "Pending" })
        );
        let scheduled =
            serde_json::to_value(Certificate::from_row(&row(false, Some(renewal(true))), 500))
                .unwrap();
        assert_eq!(
            scheduled["renewal"],
            serde_json::json!({ "status": "Scheduled", "activateAt": "1970-01-01T00:15:00Z" })
        );
    }
}
