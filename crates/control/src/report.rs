//! The PKCS#12 tester's report (SPEC 8), shared by the HTTP tester and `mtls-gateway p12`:
//! the file's facts (validate-only form) and the live form's stage-by-stage report with its
//! advice, built from `pki` and `runtime::probe`. Also a certificate row's status.

use mtls_pki::{CertificateInfo, PasswordForm, Report};
use serde::Serialize;

use crate::clock::rfc3339;

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

/// SPEC 4.1: `Pending` while a key the gateway made waits for its signed certificate (4.6);
/// `Available` when not deleted, the secret is stored and now is within the leaf's validity;
/// `Expired` when now is past `notAfter`; `UnAvailable` otherwise.
pub fn status(row: &mtls_store::CertificateRow, now: i64) -> &'static str {
    if row.pending && !row.deleted {
        return "Pending";
    }
    let valid_now = row.not_before <= now && now <= row.not_after;
    if !row.deleted && row.secret_state == mtls_store::SecretState::Stored && valid_now {
        "Available"
    } else if now > row.not_after {
        "Expired"
    } else {
        "UnAvailable"
    }
}

/// The live tester's report (SPEC 8, additive `?report=true`): each stage with its duration
/// and outcome, and advice in plain words. Built from `runtime::probe`.
pub fn live_report(
    file: TesterReport,
    probe: &mtls_runtime::probe::Probe,
    client_chain: &[Vec<u8>],
    target_host: &str,
) -> serde_json::Value {
    use serde_json::json;
    let millis =
        |duration: std::time::Duration| (duration.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    let mut stages = Vec::new();
    let mut advice: Vec<String> = Vec::new();
    let failed_stage = probe.failed_stage();

    let dns_ok = probe.dns.error.is_none();
    stages.push(json!({
        "stage": "dns",
        "ok": dns_ok,
        "durationMs": millis(probe.dns.duration),
        "addresses": probe.dns.addresses.iter().map(|address| address.ip().to_string()).collect::<Vec<_>>(),
        "error": probe.dns.error,
    }));
    if let Some(error) = &probe.dns.error {
        advice.push(if probe.failure.as_ref().is_some_and(|failure| failure.code == "egress_denied") {
            format!("The gateway's egress policy refuses this target: {error}. Private, loopback and link-local addresses are refused unless egress.allow_cidrs covers them.")
        } else {
            format!("The host name {target_host} does not resolve from the gateway; check the spelling and the gateway's DNS.")
        });
    }
    if let Some(connect) = &probe.connect {
        stages.push(json!({
            "stage": "connect",
            "ok": connect.address.is_some(),
            "durationMs": millis(connect.duration),
            "address": connect.address.map(|address| address.to_string()),
            "error": if connect.address.is_some() { None } else { connect.error.clone() },
        }));
        if connect.address.is_none() {
            advice.push(format!(
                "Nothing accepted a TCP connection to {target_host} ({}); check the port, and that the target is up and reachable from the gateway.",
                connect.error.as_deref().unwrap_or("no address")
            ));
        }
    }
    if let Some(tls) = &probe.tls {
        let issuers: Vec<String> = tls
            .acceptable_issuers
            .iter()
            .map(|name| mtls_pki::name_text(name).unwrap_or_else(|| "<unreadable name>".to_owned()))
            .collect();
        let ours: Vec<(Vec<u8>, Vec<u8>)> = client_chain
            .iter()
            .filter_map(|der| mtls_pki::issuer_and_subject(der))
            .collect();
        // Accepted when the server names no issuer at all, or one of our chain's issuers or
        // subjects (a server may list an intermediate).
        let issuer_accepted = tls.client_certificate_requested.then(|| {
            tls.acceptable_issuers.is_empty()
                || ours.iter().any(|(issuer, subject)| {
                    tls.acceptable_issuers.iter().any(|name| {
                        mtls_pki::same_name(name, issuer) || mtls_pki::same_name(name, subject)
                    })
                })
        });
        let server_chain: Vec<serde_json::Value> = tls
            .server_chain
            .iter()
            .map(|der| match mtls_pki::read_certificate(der) {
                Some(info) => json!({ "subject": info.subject, "issuer": info.issuer, "notAfter": rfc3339(info.not_after) }),
                None => json!({ "subject": null, "issuer": null, "notAfter": null }),
            })
            .collect();
        let ok = tls.completed && tls.alert.is_none() && tls.error.is_none();
        stages.push(json!({
            "stage": "tls",
            "ok": ok,
            "durationMs": millis(tls.duration),
            "version": tls.version,
            "cipherSuite": tls.cipher_suite,
            "alpn": tls.alpn,
            "serverChain": server_chain,
            "serverCertificateVerified": tls.server_verified,
            "serverCertificateError": tls.server_error,
            "clientCertificateRequested": tls.client_certificate_requested,
            "acceptableIssuers": issuers,
            "serverSignatureSchemes": tls.server_signature_schemes,
            "clientCertificateOffered": tls.client_certificate_offered,
            "clientCertificateIssuerAccepted": issuer_accepted,
            "alert": tls.alert,
            "error": tls.error,
        }));
        if tls.server_verified == Some(false) {
            advice.push(format!(
                "The target's server certificate does not verify ({}). If the target uses a private CA, add that CA to tls.trust_roots or to the mapping's upstreamCaPem; the gateway never skips this check.",
                tls.server_error.as_deref().unwrap_or("unknown reason")
            ));
        }
        if tls.client_certificate_requested && !tls.client_certificate_offered {
            advice.push(format!(
                "The server asked for a client certificate, but none was sent: your {} key cannot sign with any signature scheme the server accepts ({}).",
                file.key_type,
                tls.server_signature_schemes.join(", ")
            ));
        } else if issuer_accepted == Some(false) {
            advice.push(format!(
                "The server does not trust your certificate's issuer ({}); it accepts certificates from: {}.",
                file.issuer,
                issuers.join("; ")
            ));
        }
        if !tls.client_certificate_requested && tls.completed {
            advice.push("The server did not ask for a client certificate: it will not see yours. Mutual TLS may not be enabled on this endpoint.".to_owned());
        }
        if let Some(alert) = &tls.alert {
            advice.push(format!(
                "The server ended the connection with the TLS alert {alert}."
            ));
        }
    }
    if let Some(http) = &probe.http {
        // A head followed by a body that broke (cut short, over the limit, stalled) is a failure.
        let ok = http.status.is_some() && http.error.is_none();
        let headers: serde_json::Map<String, serde_json::Value> = http
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        stages.push(json!({
            "stage": "http",
            "ok": ok,
            "durationMs": millis(http.duration),
            "status": http.status,
            "headers": headers,
            "error": http.error,
        }));
        match http.status {
            Some(status) if http.error.is_some() => advice.push(format!(
                "The target answered HTTP {status}, but its answer could not be read whole ({}).",
                http.error.as_deref().unwrap_or_default()
            )),
            Some(status) if status >= 400 => advice.push(format!(
                "The target accepted the connection and answered HTTP {status}: the TLS part works; the request itself (path, method, credentials) did not."
            )),
            Some(status) => advice.push(format!(
                "The target accepted the connection with your certificate and answered HTTP {status}."
            )),
            None => {
                if failed_stage == Some("http") {
                    advice.push("The connection was established, but the target did not answer the request.".to_owned());
                }
            }
        }
    }
    json!({
        "outcome": if failed_stage.is_none() { "ok" } else { "failed" },
        "failedStage": failed_stage,
        "failure": probe.failure.as_ref().map(|failure| json!({ "code": failure.code, "message": failure.message })),
        "advice": advice,
        "file": file,
        "stages": stages,
    })
}
