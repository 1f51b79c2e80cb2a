//! Wire shapes (camelCase JSON). Domain types from `mtls-store` are turned into these here; the
//! tester's report, shared with the command line, is `mtls_control::report`'s.

use serde::Serialize;

pub use mtls_control::clock::rfc3339;
pub use mtls_control::report::{
    ChainElement, Protection, TesterReport, Warning, live_report, status,
};

/// The certificate entity of SPEC 4.1 (shared with the command line: `mtls_control::entity`).
pub use mtls_control::entity::{Certificate, Renewal};

/// The answer to a certificate request (SPEC 4.6): the pending entity and its CSR.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CertificateRequested {
    #[serde(flatten)]
    pub certificate: Certificate,
    /// The PKCS#10 request (PEM), signed by the key the gateway made.
    pub csr: String,
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
