//! Wire shapes (camelCase JSON). Domain types from `mtls-pki` are turned into these here and
//! nowhere else, so that the wire contract is visible in one file.

use mtls_pki::{CertificateInfo, PasswordForm, Report};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 UTC (`2027-06-30T12:00:00Z`) for Unix seconds.
pub fn rfc3339(unix_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_seconds.to_string())
}

/// The tester report of SPEC 8 (validate-only form).
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TesterReport {
    /// Always `true` in a 200 answer: the file can be uploaded and used.
    pub usable: bool,
    pub subject: String,
    pub issuer: String,
    pub serial_number: String,
    pub not_before: String,
    pub not_after: String,
    /// Same as `notAfter`, under the name the certificate entity uses.
    pub expiration_date: String,
    pub key_type: String,
    pub key_size: u32,
    pub fingerprint_sha256: String,
    /// The leaf's extended key usage includes TLS client authentication (or any usage).
    pub has_client_auth_usage: bool,
    /// The leaf has an extended key usage extension at all (without one, every usage is allowed).
    pub has_extended_key_usage: bool,
    /// Certificates sent in the handshake, the leaf included.
    pub chain_length: usize,
    /// The certificates after the leaf, in issuer order.
    pub chain: Vec<ChainElement>,
    pub protection: Protection,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainElement {
    pub subject: String,
    pub issuer: String,
    pub serial_number: String,
    pub not_before: String,
    pub not_after: String,
    pub key_type: String,
    pub fingerprint_sha256: String,
    pub self_signed: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Protection {
    /// How each private key was encrypted in the file.
    pub key_encryption: Vec<String>,
    /// How each safe holding certificates was encrypted (`none` when it was not).
    pub certificate_encryption: Vec<String>,
    /// The integrity MAC, `null` when the file has none.
    pub mac: Option<String>,
    /// How the password was applied: `utf16` (the standard), `absent` (a file written with no
    /// password at all), `legacy-bytes` (old OpenSSL non-ASCII form); `null` when none was needed.
    pub password_form: Option<&'static str>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
}

impl From<&Report> for TesterReport {
    fn from(report: &Report) -> Self {
        let leaf = &report.leaf;
        Self {
            usable: true,
            subject: leaf.subject.clone(),
            issuer: leaf.issuer.clone(),
            serial_number: leaf.serial_hex.clone(),
            not_before: rfc3339(leaf.not_before),
            not_after: rfc3339(leaf.not_after),
            expiration_date: rfc3339(leaf.not_after),
            key_type: report.key_type.label(),
            key_size: report.key_type.bits(),
            fingerprint_sha256: leaf.fingerprint_sha256.clone(),
            has_client_auth_usage: leaf.client_auth.unwrap_or(false),
            has_extended_key_usage: leaf.client_auth.is_some(),
            chain_length: report.chain.len() + 1,
            chain: report.chain.iter().map(ChainElement::from).collect(),
            protection: Protection {
                key_encryption: report.protection.key_encryption.clone(),
                certificate_encryption: report.protection.certificate_encryption.clone(),
                mac: report.protection.mac.clone(),
                password_form: report.protection.password_form.map(|form| match form {
                    PasswordForm::Bmp => "utf16",
                    PasswordForm::Absent => "absent",
                    PasswordForm::LegacyBytes => "legacy-bytes",
                }),
            },
            warnings: report
                .warnings
                .iter()
                .map(|warning| Warning {
                    code: warning.code,
                    message: warning.message.clone(),
                })
                .collect(),
        }
    }
}

impl From<&CertificateInfo> for ChainElement {
    fn from(certificate: &CertificateInfo) -> Self {
        Self {
            subject: certificate.subject.clone(),
            issuer: certificate.issuer.clone(),
            serial_number: certificate.serial_hex.clone(),
            not_before: rfc3339(certificate.not_before),
            not_after: rfc3339(certificate.not_after),
            key_type: certificate.key_type.clone(),
            fingerprint_sha256: certificate.fingerprint_sha256.clone(),
            self_signed: certificate.self_issued,
        }
    }
}

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
        }
    }
}

/// SPEC 4.1: `Available` when not deleted, the secret is stored and now is within the leaf's
/// validity; `Expired` when now is past `notAfter`; `UnAvailable` otherwise.
pub fn status(row: &mtls_store::CertificateRow, now: i64) -> &'static str {
    let valid_now = row.not_before <= now && now <= row.not_after;
    if !row.deleted && row.secret_state == mtls_store::SecretState::Stored && valid_now {
        "Available"
    } else if now > row.not_after {
        "Expired"
    } else {
        "UnAvailable"
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
