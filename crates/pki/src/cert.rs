//! What a certificate says about itself: names, serial, validity, key, extended key usage.

use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::ext::pkix::ExtendedKeyUsage;

use crate::oids;

/// One certificate as read from the file, with the facts the report and the chain need.
#[derive(Clone, Debug)]
pub struct CertificateInfo {
    /// The DER bytes as stored in the file.
    pub der: Vec<u8>,
    /// RFC 4514 rendering of the subject.
    pub subject: String,
    /// RFC 4514 rendering of the issuer.
    pub issuer: String,
    /// Serial number, upper-case hex.
    pub serial_hex: String,
    /// `notBefore` and `notAfter`, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint_sha256: String,
    /// `RSA-2048`, `ECDSA-P256`, ... or the algorithm's name when it is not one of those.
    pub key_type: String,
    /// Whether the extended key usage allows TLS client authentication: `None` when the
    /// certificate has no such extension (which allows every usage).
    pub client_auth: Option<bool>,
    /// Subject and issuer are the same name.
    pub self_issued: bool,
    pub(crate) subject_der: Vec<u8>,
    pub(crate) issuer_der: Vec<u8>,
    pub(crate) public_key: Vec<u8>,
}

/// The names a certificate is known by: the subject (RFC 4514 text, most specific first, as
/// `openssl x509 -noout -subject -nameopt RFC2253` prints it) and the DNS, URI and e-mail
/// subject alternative names. `None` when it does not decode.
pub fn names(der: &[u8]) -> Option<(String, Vec<String>)> {
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let cert = Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    let mut alternative = Vec::new();
    if let Ok(Some((_, names))) = tbs.get_extension::<SubjectAltName>() {
        for name in names.0 {
            match name {
                GeneralName::DnsName(text) | GeneralName::Rfc822Name(text) => {
                    alternative.push(text.to_string());
                }
                GeneralName::UniformResourceIdentifier(text) => alternative.push(text.to_string()),
                _ => {}
            }
        }
    }
    Some((tbs.subject().to_string(), alternative))
}

/// RFC 4514 text of a distinguished name as TLS carries it in a CertificateRequest (the DER of
/// the Name; some stacks send its contents without the SEQUENCE header: both are read).
/// `None` when it does not decode.
pub fn name_text(contents: &[u8]) -> Option<String> {
    if let Ok(name) = x509_cert::name::Name::from_der(contents) {
        return Some(name.to_string());
    }
    let length = contents.len();
    let mut der = Vec::with_capacity(length + 6);
    der.push(0x30);
    if length < 0x80 {
        der.push(u8::try_from(length).ok()?);
    } else {
        let bytes = length.to_be_bytes();
        let significant: Vec<u8> = bytes
            .iter()
            .copied()
            .skip_while(|byte| *byte == 0)
            .collect();
        der.push(0x80 | u8::try_from(significant.len()).ok()?);
        der.extend(significant);
    }
    der.extend_from_slice(contents);
    x509_cert::name::Name::from_der(&der)
        .ok()
        .map(|name| name.to_string())
}

/// A certificate's issuer and subject (DER of each Name), to tell whether a server's
/// acceptable issuer names include it (see [`same_name`]).
pub fn issuer_and_subject(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let cert = Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    Some((tbs.issuer().to_der().ok()?, tbs.subject().to_der().ok()?))
}

/// Whether a name from a CertificateRequest (`hint`: the Name's DER, or its contents) is the
/// Name `full` (DER).
pub fn same_name(hint: &[u8], full: &[u8]) -> bool {
    hint == full
        || (full.ends_with(hint) && full.len() > hint.len() && full.len() - hint.len() <= 5)
}

/// Reads one DER certificate; `None` when it does not decode.
pub fn read(der: &[u8]) -> Option<CertificateInfo> {
    let cert = Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    let subject_der = tbs.subject().to_der().ok()?;
    let issuer_der = tbs.issuer().to_der().ok()?;
    let spki = tbs.subject_public_key_info();
    let public_key = spki.subject_public_key.raw_bytes().to_vec();
    let client_auth =
        match tbs.get_extension::<ExtendedKeyUsage>() {
            Ok(Some((_, usage))) => Some(usage.0.iter().any(|oid| {
                *oid == oids::EXT_KEY_USAGE_CLIENT_AUTH || *oid == oids::EXT_KEY_USAGE_ANY
            })),
            Ok(None) => None,
            Err(_) => Some(false),
        };
    let validity = tbs.validity();
    Some(CertificateInfo {
        der: der.to_vec(),
        subject: tbs.subject().to_string(),
        issuer: tbs.issuer().to_string(),
        serial_hex: hex_upper(tbs.serial_number().as_bytes()),
        not_before: unix_seconds(validity.not_before.to_unix_duration()),
        not_after: unix_seconds(validity.not_after.to_unix_duration()),
        fingerprint_sha256: hex_lower(&Sha256::digest(der)),
        key_type: key_type_label(
            &spki.algorithm.oid,
            spki.algorithm.parameters.as_ref(),
            &public_key,
        ),
        client_auth,
        self_issued: subject_der == issuer_der,
        subject_der,
        issuer_der,
        public_key,
    })
}

fn unix_seconds(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn key_type_label(
    algorithm: &der::asn1::ObjectIdentifier,
    parameters: Option<&der::asn1::Any>,
    public_key: &[u8],
) -> String {
    match *algorithm {
        oids::RSA_ENCRYPTION => rsa_modulus_bits(public_key)
            .map_or_else(|| "RSA".to_owned(), |bits| format!("RSA-{bits}")),
        oids::EC_PUBLIC_KEY => {
            match parameters.and_then(|any| any.decode_as::<der::asn1::ObjectIdentifier>().ok()) {
                Some(oids::P256) => "ECDSA-P256".to_owned(),
                Some(oids::P384) => "ECDSA-P384".to_owned(),
                Some(oids::P521) => "ECDSA-P521".to_owned(),
                Some(other) => format!("EC-{}", oids::name(&other)),
                None => "EC".to_owned(),
            }
        }
        other => oids::name(&other),
    }
}

/// Bit length of the modulus of a DER `RSAPublicKey`.
fn rsa_modulus_bits(public_key: &[u8]) -> Option<u32> {
    #[derive(der::Sequence)]
    struct RsaPublicKey<'a> {
        modulus: der::asn1::UintRef<'a>,
        _exponent: der::asn1::UintRef<'a>,
    }
    let key = RsaPublicKey::from_der(public_key).ok()?;
    let bytes = key.modulus.as_bytes();
    let first = *bytes.first()?;
    let bits = bytes.len() * 8 - first.leading_zeros() as usize;
    u32::try_from(bits).ok()
}

pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect()
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
