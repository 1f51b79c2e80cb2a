//! Keys the gateway makes (SPEC 4.6): the key pair generated in this process, a PKCS#10
//! request signed by it, and the check of the signed chain a tenant uploads for it.
//!
//! The request is built from x509-cert's typed structures (its DER encoder writes the bytes)
//! and signed with aws-lc-rs, the library that signs TLS handshakes. The subject is read from
//! RFC 4514 text by a parser that accepts a fixed set of attribute types, so that a typo is an
//! error rather than an unknown OID in a certificate.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::SystemTime;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use der::asn1::{
    Any, BitString, Ia5String, Ia5StringRef, ObjectIdentifier, OctetString, PrintableStringRef,
    SetOfVec, Utf8StringRef,
};
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_cert::attr::{Attribute, AttributeTypeAndValue};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ID_CE_SUBJECT_ALT_NAME, SubjectAltName};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};
use zeroize::Zeroizing;

use crate::cert::{self, CertificateInfo};
use crate::key::{self, KeyType, PrivateKey};
use crate::parse::Protection;
use crate::report::{self, Identity, Report};
use crate::{Inspection, IntakeError, IntakePolicy, oids, unix_seconds};

/// Largest PEM text [`accept_chain`] reads (a leaf and nine 8192-bit RSA issuers fit).
pub const MAX_CHAIN_PEM_BYTES: usize = 64 * 1024;
/// Most certificates (leaf included) [`accept_chain`] accepts.
pub const MAX_CHAIN_CERTIFICATES: usize = 10;
/// Most subject alternative names in one request.
pub const MAX_ALT_NAMES: usize = 64;
/// Longest subject text.
pub const MAX_SUBJECT_CHARS: usize = 1024;

/// The key types the gateway makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKeyType {
    P256,
    P384,
    Rsa2048,
    Rsa3072,
}

impl RequestKeyType {
    /// Every type, in the order the documentation lists them.
    pub const ALL: [RequestKeyType; 4] = [
        RequestKeyType::P256,
        RequestKeyType::P384,
        RequestKeyType::Rsa2048,
        RequestKeyType::Rsa3072,
    ];

    /// From the API's `keyType` (`P-256`, `P-384`, `RSA-2048`, `RSA-3072`; case-insensitive),
    /// or [`IntakeError::UnsupportedKeyType`].
    pub fn parse(label: &str) -> Result<Self, IntakeError> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.label().eq_ignore_ascii_case(label.trim()))
            .ok_or_else(|| IntakeError::UnsupportedKeyType(label.chars().take(32).collect()))
    }

    /// The API's spelling.
    pub fn label(self) -> &'static str {
        match self {
            RequestKeyType::P256 => "P-256",
            RequestKeyType::P384 => "P-384",
            RequestKeyType::Rsa2048 => "RSA-2048",
            RequestKeyType::Rsa3072 => "RSA-3072",
        }
    }

    /// The type the gateway makes that is `key_type`, if it makes that one (a renewal keeps the
    /// current key's type by default).
    pub fn from_key_type(key_type: KeyType) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.key_type() == key_type)
    }

    /// The key type as the certificate entity names it (`ECDSA-P256`, `RSA-2048`, ...).
    pub fn key_type(self) -> KeyType {
        match self {
            RequestKeyType::P256 => KeyType::EcdsaP256,
            RequestKeyType::P384 => KeyType::EcdsaP384,
            RequestKeyType::Rsa2048 => KeyType::Rsa { bits: 2048 },
            RequestKeyType::Rsa3072 => KeyType::Rsa { bits: 3072 },
        }
    }
}

/// A key made by the gateway and its signed request.
#[derive(Debug)]
pub struct CertificateRequest {
    /// The new key (PKCS#8): for the secret store only.
    pub key: PrivateKey,
    pub key_type: KeyType,
    /// The subject as the request carries it, in RFC 4514 text.
    pub subject: String,
    /// The PKCS#10 request, PEM (`CERTIFICATE REQUEST`).
    pub csr_pem: String,
}

/// Checks what a request asks for without making a key: the subject and the alternative names.
/// Answers the subject as the request will carry it (RFC 4514 text).
pub fn check_request(subject: &str, alt_names: &[String]) -> Result<String, IntakeError> {
    let name = parse_subject(subject)?;
    parse_alt_names(alt_names)?;
    Ok(name.to_string())
}

/// Makes a key of `key_type` and a PKCS#10 request for `subject` (RFC 4514) with the
/// subject alternative names `alt_names` (see `parse_alt_name`), signed by that key. The
/// request is checked before any key is made. RSA keys take a moment: call it off the async
/// threads.
pub fn request(
    key_type: RequestKeyType,
    subject: &str,
    alt_names: &[String],
) -> Result<CertificateRequest, IntakeError> {
    let name = parse_subject(subject)?;
    let names = parse_alt_names(alt_names)?;
    let key = generate(key_type)?;
    let csr_pem = sign_request(&key, key_type, name.clone(), names)?;
    Ok(CertificateRequest {
        key,
        key_type: key_type.key_type(),
        subject: name.to_string(),
        csr_pem,
    })
}

/// Makes a key of `key_type` and a request for a renewal of the certificate `current_leaf`
/// (DER), whatever made it (a PKCS#12 file or an earlier request): the subject is `subject`
/// (RFC 4514, as for [`request`]) or, when `None`, the current certificate's subject exactly as
/// encoded there; the subject alternative names are the current certificate's.
pub fn renewal_request(
    key_type: RequestKeyType,
    current_leaf: &[u8],
    subject: Option<&str>,
) -> Result<CertificateRequest, IntakeError> {
    use x509_cert::ext::pkix::SubjectAltName as Names;
    let current = Certificate::from_der(current_leaf)
        .map_err(|_| IntakeError::Malformed("the current certificate does not decode"))?;
    let tbs = current.tbs_certificate();
    let name = match subject {
        Some(text) => parse_subject(text)?,
        None => tbs.subject().clone(),
    };
    let names = match tbs.get_extension::<Names>() {
        Ok(Some((_, names))) => names.0,
        Ok(None) => Vec::new(),
        Err(_) => {
            return Err(IntakeError::Malformed(
                "the current certificate's alternative names do not decode",
            ));
        }
    };
    if names.len() > MAX_ALT_NAMES {
        return Err(IntakeError::InvalidSubjectAltName(format!(
            "the current certificate has more than {MAX_ALT_NAMES}"
        )));
    }
    let key = generate(key_type)?;
    let csr_pem = sign_request(&key, key_type, name.clone(), names)?;
    Ok(CertificateRequest {
        key,
        key_type: key_type.key_type(),
        subject: name.to_string(),
        csr_pem,
    })
}

/// Makes a key pair of `key_type` in this process; the PKCS#8 DER never leaves the returned
/// [`PrivateKey`] but for the secret store.
pub fn generate(key_type: RequestKeyType) -> Result<PrivateKey, IntakeError> {
    let der = match key_type {
        RequestKeyType::P256 | RequestKeyType::P384 => {
            let pair = EcdsaKeyPair::generate(ecdsa_signing(key_type)).map_err(failed)?;
            let document = pair.to_pkcs8v1().map_err(failed)?;
            Zeroizing::new(document.as_ref().to_vec())
        }
        RequestKeyType::Rsa2048 | RequestKeyType::Rsa3072 => {
            let size = if key_type == RequestKeyType::Rsa2048 {
                KeySize::Rsa2048
            } else {
                KeySize::Rsa3072
            };
            let pair = RsaKeyPair::generate(size).map_err(failed)?;
            let document: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair.as_der().map_err(failed)?;
            Zeroizing::new(document.as_ref().to_vec())
        }
    };
    Ok(PrivateKey::new(der))
}

/// Any failure of the crypto library while making or using a new key.
fn failed<E>(_: E) -> IntakeError {
    IntakeError::KeyGeneration
}

fn ecdsa_signing(key_type: RequestKeyType) -> &'static signature::EcdsaSigningAlgorithm {
    if key_type == RequestKeyType::P384 {
        &signature::ECDSA_P384_SHA384_ASN1_SIGNING
    } else {
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING
    }
}

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const SHA1_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// Signs a request for `subject` and `names` with `key`, answers its PEM.
fn sign_request(
    key: &PrivateKey,
    key_type: RequestKeyType,
    subject: Name,
    names: Vec<GeneralName>,
) -> Result<String, IntakeError> {
    let rng = SystemRandom::new();
    let pkcs8 = key.pkcs8_der();
    let (public_key_der, algorithm) = match key_type {
        RequestKeyType::P256 | RequestKeyType::P384 => {
            let pair = EcdsaKeyPair::from_pkcs8(ecdsa_signing(key_type), pkcs8).map_err(failed)?;
            let spki: aws_lc_rs::encoding::PublicKeyX509Der<'_> =
                pair.public_key().as_der().map_err(failed)?;
            let oid = if key_type == RequestKeyType::P384 {
                ECDSA_WITH_SHA384
            } else {
                ECDSA_WITH_SHA256
            };
            (spki.as_ref().to_vec(), (oid, None))
        }
        RequestKeyType::Rsa2048 | RequestKeyType::Rsa3072 => {
            let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(failed)?;
            let spki: aws_lc_rs::encoding::PublicKeyX509Der<'_> =
                pair.public_key().as_der().map_err(failed)?;
            (spki.as_ref().to_vec(), (SHA256_WITH_RSA, Some(Any::null())))
        }
    };
    let public_key = SubjectPublicKeyInfoOwned::from_der(&public_key_der)
        .map_err(|_| IntakeError::KeyGeneration)?;
    let mut attributes = SetOfVec::new();
    if !names.is_empty() {
        let value = SubjectAltName(names)
            .to_der()
            .map_err(|_| IntakeError::InvalidSubjectAltName("does not encode".to_owned()))?;
        let extension = Extension {
            extn_id: ID_CE_SUBJECT_ALT_NAME,
            // RFC 5280 4.2.1.6: critical when the subject is empty.
            critical: subject.as_ref().is_empty(),
            extn_value: OctetString::new(value)
                .map_err(|_| IntakeError::InvalidSubjectAltName("too long".to_owned()))?,
        };
        let attribute = Attribute::try_from(ExtensionReq(vec![extension]))
            .map_err(|_| IntakeError::InvalidSubjectAltName("does not encode".to_owned()))?;
        attributes
            .insert(attribute)
            .map_err(|_| IntakeError::InvalidSubjectAltName("does not encode".to_owned()))?;
    }
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key,
        attributes,
    };
    let to_be_signed = info
        .to_der()
        .map_err(|_| IntakeError::InvalidSubject("does not encode".to_owned()))?;
    let signature = match key_type {
        RequestKeyType::P256 | RequestKeyType::P384 => {
            let pair = EcdsaKeyPair::from_pkcs8(ecdsa_signing(key_type), pkcs8).map_err(failed)?;
            pair.sign(&rng, &to_be_signed)
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        RequestKeyType::Rsa2048 | RequestKeyType::Rsa3072 => {
            let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(failed)?;
            let mut signature = vec![0u8; pair.public_modulus_len()];
            pair.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                &to_be_signed,
                &mut signature,
            )
            .map_err(failed)?;
            signature
        }
    };
    let request = CertReq {
        info,
        algorithm: AlgorithmIdentifierOwned {
            oid: algorithm.0,
            parameters: algorithm.1,
        },
        signature: BitString::from_bytes(&signature).map_err(|_| IntakeError::KeyGeneration)?,
    };
    let der = request
        .to_der()
        .map_err(|_| IntakeError::InvalidSubject("does not encode".to_owned()))?;
    Ok(pem("CERTIFICATE REQUEST", &der))
}

/// PEM text (RFC 7468) of `der` under `label`: base64 in lines of 64 characters.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// The PEM text of a chain of DER certificates, in the order given.
pub fn chain_pem(chain: &[Vec<u8>]) -> String {
    chain.iter().map(|der| pem("CERTIFICATE", der)).collect()
}

/// The attribute types a subject may name: RFC 4514's short names and a few more from RFC 5280
/// (matched case-insensitively), with their OIDs, string types and upper bounds (RFC 5280's
/// `ub-*` values; 128 where it sets none).
const ATTRIBUTES: &[(&str, &str, StringKind, usize)] = &[
    ("CN", "2.5.4.3", StringKind::Utf8, 64),
    ("O", "2.5.4.10", StringKind::Utf8, 64),
    ("OU", "2.5.4.11", StringKind::Utf8, 64),
    ("C", "2.5.4.6", StringKind::Country, 2),
    ("ST", "2.5.4.8", StringKind::Utf8, 128),
    ("L", "2.5.4.7", StringKind::Utf8, 128),
    ("STREET", "2.5.4.9", StringKind::Utf8, 128),
    ("DC", "0.9.2342.19200300.100.1.25", StringKind::Ia5, 63),
    ("UID", "0.9.2342.19200300.100.1.1", StringKind::Utf8, 128),
    ("serialNumber", "2.5.4.5", StringKind::Printable, 64),
    ("emailAddress", "1.2.840.113549.1.9.1", StringKind::Ia5, 255),
    ("title", "2.5.4.12", StringKind::Utf8, 64),
    ("GN", "2.5.4.42", StringKind::Utf8, 64),
    ("givenName", "2.5.4.42", StringKind::Utf8, 64),
    ("SN", "2.5.4.4", StringKind::Utf8, 64),
    ("surname", "2.5.4.4", StringKind::Utf8, 64),
    ("postalCode", "2.5.4.17", StringKind::Utf8, 40),
    ("organizationIdentifier", "2.5.4.97", StringKind::Utf8, 64),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StringKind {
    Utf8,
    Printable,
    Ia5,
    Country,
}

/// Reads an RFC 4514 distinguished name: `type=value` pairs separated by `,` (most specific
/// first, as OpenSSL's `-nameopt RFC2253` prints them), `+` joining pairs of one RDN, `\`
/// escaping a special character (`\,`) or giving a byte in hex (`\C3\A9`). Spaces around
/// separators are ignored (an escaped space `\ ` is kept). Hex-encoded values (`CN=#04...`),
/// numeric OIDs and attribute types outside [`ATTRIBUTES`] are refused.
fn parse_subject(text: &str) -> Result<Name, IntakeError> {
    let bad = |why: String| IntakeError::InvalidSubject(why);
    if text.chars().count() > MAX_SUBJECT_CHARS {
        return Err(bad(format!("longer than {MAX_SUBJECT_CHARS} characters")));
    }
    if text.trim().is_empty() {
        return Err(bad("the subject is empty".to_owned()));
    }
    let mut rdns: Vec<Vec<AttributeTypeAndValue>> = vec![Vec::new()];
    let mut chars = text.chars().peekable();
    loop {
        // The attribute type, up to '='.
        let mut kind = String::new();
        loop {
            match chars.next() {
                Some('=') => break,
                Some(c) if c == ',' || c == '+' || c == '\\' => {
                    return Err(bad(format!(
                        "expected type=value, found '{c}' in the attribute type \"{}\"",
                        kind.trim()
                    )));
                }
                Some(c) => kind.push(c),
                None => {
                    return Err(bad(if kind.trim().is_empty() {
                        "an empty attribute (a separator at the end?)".to_owned()
                    } else {
                        format!("\"{}\" has no '=' and value", kind.trim())
                    }));
                }
            }
        }
        let kind = kind.trim();
        let &(_, oid, string, bound) = ATTRIBUTES
            .iter()
            .find(|(name, ..)| name.eq_ignore_ascii_case(kind))
            .ok_or_else(|| {
                bad(if kind.is_empty() {
                    "an attribute without a type".to_owned()
                } else {
                    format!(
                        "unknown attribute type \"{}\" (accepted: CN, O, OU, C, ST, L, STREET, DC, UID, serialNumber, emailAddress, title, GN, SN, postalCode, organizationIdentifier)",
                        kind.chars().take(40).collect::<String>()
                    )
                })
            })?;
        // The value, up to an unescaped ',' or '+'.
        let mut bytes: Vec<u8> = Vec::new();
        let mut keep = 0; // bytes up to the last significant one (trailing spaces dropped)
        let mut separator = None;
        while let Some(c) = chars.next() {
            match c {
                ',' | '+' => {
                    separator = Some(c);
                    break;
                }
                '\\' => {
                    let first = chars
                        .next()
                        .ok_or_else(|| bad("a '\\' at the end".to_owned()))?;
                    if first.is_ascii_hexdigit() {
                        let second = chars
                            .next()
                            .filter(char::is_ascii_hexdigit)
                            .ok_or_else(|| bad("'\\' must be followed by a special character or two hex digits".to_owned()))?;
                        let byte = u8::from_str_radix(&format!("{first}{second}"), 16)
                            .map_err(|_| bad("bad hex escape".to_owned()))?;
                        bytes.push(byte);
                    } else if " \"#+,;<=>\\".contains(first) {
                        let mut buffer = [0u8; 4];
                        bytes.extend_from_slice(first.encode_utf8(&mut buffer).as_bytes());
                    } else {
                        return Err(bad(format!("'\\{first}' is not an escape of RFC 4514")));
                    }
                    keep = bytes.len();
                }
                ' ' if bytes.is_empty() => {}
                '#' if bytes.is_empty() => {
                    return Err(bad(format!(
                        "{kind}: hex-encoded values are not accepted; write the text (escape a leading '#' as '\\#')"
                    )));
                }
                '"' | ';' | '<' | '>' => {
                    return Err(bad(format!("{kind}: '{c}' must be escaped as '\\{c}'")));
                }
                other => {
                    let mut buffer = [0u8; 4];
                    bytes.extend_from_slice(other.encode_utf8(&mut buffer).as_bytes());
                    if other != ' ' {
                        keep = bytes.len();
                    }
                }
            }
        }
        bytes.truncate(keep);
        let value = String::from_utf8(bytes)
            .map_err(|_| bad(format!("{kind}: the escaped bytes are not UTF-8")))?;
        let attribute = attribute(kind, oid, string, bound, &value)?;
        rdns.last_mut()
            .ok_or_else(|| bad("empty".to_owned()))?
            .push(attribute);
        match separator {
            Some(',') => rdns.push(Vec::new()),
            Some(_) => {}
            None => break,
        }
    }
    let mut sequence = RdnSequence::default();
    // RFC 4514 text is most specific first; the DER sequence is the other way round.
    for rdn in rdns.into_iter().rev() {
        let rdn = RelativeDistinguishedName::try_from(rdn)
            .map_err(|_| bad("an attribute repeats within one '+' group".to_owned()))?;
        sequence.push(rdn);
    }
    let der = sequence
        .to_der()
        .map_err(|_| bad("does not encode".to_owned()))?;
    Name::from_der(&der).map_err(|_| bad("does not encode".to_owned()))
}

fn attribute(
    kind: &str,
    oid: &str,
    string: StringKind,
    bound: usize,
    value: &str,
) -> Result<AttributeTypeAndValue, IntakeError> {
    let bad = |why: &str| IntakeError::InvalidSubject(format!("{kind}: {why}"));
    if value.is_empty() {
        return Err(bad("the value is empty"));
    }
    if value.chars().count() > bound {
        return Err(bad(&format!("longer than {bound} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad("control characters are not accepted"));
    }
    let oid = ObjectIdentifier::new(oid).map_err(|_| bad("unknown type"))?;
    let encoded = match string {
        StringKind::Utf8 => {
            Any::encode_from(&Utf8StringRef::new(value).map_err(|_| bad("not a UTF-8 string"))?)
        }
        StringKind::Printable => Any::encode_from(
            &PrintableStringRef::new(value)
                .map_err(|_| bad("only letters, digits, spaces and '()+,-./:=? are accepted"))?,
        ),
        StringKind::Country => {
            if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(bad("a country is two upper-case letters (ISO 3166)"));
            }
            Any::encode_from(&PrintableStringRef::new(value).map_err(|_| bad("not printable"))?)
        }
        StringKind::Ia5 => {
            Any::encode_from(&Ia5StringRef::new(value).map_err(|_| bad("only ASCII is accepted"))?)
        }
    }
    .map_err(|_| bad("does not encode"))?;
    Ok(AttributeTypeAndValue {
        oid,
        value: encoded,
    })
}

fn parse_alt_names(alt_names: &[String]) -> Result<Vec<GeneralName>, IntakeError> {
    if alt_names.len() > MAX_ALT_NAMES {
        return Err(IntakeError::InvalidSubjectAltName(format!(
            "at most {MAX_ALT_NAMES} names"
        )));
    }
    let mut names: Vec<GeneralName> = Vec::with_capacity(alt_names.len());
    for text in alt_names {
        let name = parse_alt_name(text)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// One subject alternative name: `DNS:`, `IP:`, `URI:` or `email:` followed by the name
/// (OpenSSL's spelling, case-insensitive), or the bare name, read as an IP address when it is
/// one, a URI when it holds `://`, an e-mail address when it holds `@`, a DNS name otherwise.
/// DNS names are letters, digits and hyphens in labels of 1 to 63 characters (a leading `*.`
/// allowed), 253 characters at most; internationalized names go in their `xn--` form.
pub(crate) fn parse_alt_name(text: &str) -> Result<GeneralName, IntakeError> {
    let bad = |why: &str| {
        IntakeError::InvalidSubjectAltName(format!(
            "\"{}\": {why}",
            text.chars().take(80).collect::<String>()
        ))
    };
    let trimmed = text.trim();
    let (kind, value) = match trimmed.split_once(':') {
        Some((prefix, rest))
            if ["DNS", "IP", "URI", "email"]
                .iter()
                .any(|known| known.eq_ignore_ascii_case(prefix)) =>
        {
            (prefix.to_ascii_lowercase(), rest.trim())
        }
        _ => {
            let kind = if IpAddr::from_str(trimmed).is_ok() {
                "ip"
            } else if trimmed.contains("://") {
                "uri"
            } else if trimmed.contains('@') {
                "email"
            } else {
                "dns"
            };
            (kind.to_owned(), trimmed)
        }
    };
    if value.is_empty() {
        return Err(bad("empty"));
    }
    let ia5 = |value: &str| Ia5String::new(value).map_err(|_| bad("only ASCII is accepted"));
    match kind.as_str() {
        "ip" => IpAddr::from_str(value)
            .map(GeneralName::from)
            .map_err(|_| bad("not an IPv4 or IPv6 address")),
        "uri" => {
            let scheme = value.split_once(':').map(|(scheme, _)| scheme);
            let scheme_ok = scheme.is_some_and(|scheme| {
                scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            });
            if !scheme_ok {
                return Err(bad(
                    "a URI starts with its scheme (spiffe://, https://, ...)",
                ));
            }
            if value.len() > 2048 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad("a URI has no spaces and at most 2048 characters"));
            }
            Ok(GeneralName::UniformResourceIdentifier(ia5(value)?))
        }
        "email" => {
            let (local, domain) = value
                .rsplit_once('@')
                .ok_or_else(|| bad("an e-mail address is local@domain"))?;
            if local.is_empty()
                || value.len() > 254
                || local
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '@')
                || !dns_name(domain, false)
            {
                return Err(bad("not an e-mail address (local@domain, ASCII)"));
            }
            Ok(GeneralName::Rfc822Name(ia5(value)?))
        }
        _ => {
            if !dns_name(value, true) {
                return Err(bad(
                    "not a DNS name (letters, digits, hyphens; labels of 1 to 63; a leading *. allowed)",
                ));
            }
            Ok(GeneralName::DnsName(ia5(value)?))
        }
    }
}

fn dns_name(name: &str, wildcard: bool) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let body = match name.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        _ => name,
    };
    !body.is_empty()
        && name.len() <= 253
        && body.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Checks an uploaded chain against the pending key and, when it passes, answers the same
/// [`Inspection`] a PKCS#12 file gives (identity and report: leaf, chain, key type, warnings),
/// so that the certificate entity is filled the same way. Also what turns a stored key and
/// chain into the identity a forward presents (the PKCS#12 path runs [`crate::inspect`]).
///
/// `pem` is the signed leaf followed by its issuers, as PEM `CERTIFICATE` sections; text
/// around the sections is ignored. Refused, in this order: larger than
/// [`MAX_CHAIN_PEM_BYTES`] (`chain_too_large`); not PEM, or a section other than a
/// certificate (`invalid_pem`); no certificate (`chain_empty`); more than
/// [`MAX_CHAIN_CERTIFICATES`] (`chain_too_long`); no certificate carries the pending key
/// (`chain_key_mismatch`); the leaf not first, a certificate not issued by the next one (by
/// name and by signature) or anything after a self-issued one (`chain_order`); the leaf not
/// valid at `now` (`certificate_not_yet_valid`, `certificate_expired`); the leaf states
/// extended key usages without TLS client authentication (`certificate_usage`).
pub fn accept_chain(
    pem: &[u8],
    pkcs8: &[u8],
    policy: &IntakePolicy,
    now: SystemTime,
) -> Result<Inspection, IntakeError> {
    if pem.len() > MAX_CHAIN_PEM_BYTES {
        return Err(IntakeError::ChainTooLarge {
            bytes: pem.len(),
            cap: MAX_CHAIN_PEM_BYTES,
        });
    }
    let ders = read_pem_certificates(pem)?;
    let checked = key::check(pkcs8)?;
    let mut infos = Vec::with_capacity(ders.len());
    let mut parsed = Vec::with_capacity(ders.len());
    for der in &ders {
        let info =
            cert::read(der).ok_or(IntakeError::InvalidPem("a certificate does not decode"))?;
        let certificate = Certificate::from_der(der)
            .map_err(|_| IntakeError::InvalidPem("a certificate does not decode"))?;
        infos.push(info);
        parsed.push(certificate);
    }
    let leaf_matches = infos
        .first()
        .is_some_and(|leaf| leaf.public_key == checked.public_key);
    if !leaf_matches {
        return Err(
            if infos
                .iter()
                .any(|info| info.public_key == checked.public_key)
            {
                IntakeError::ChainOrder(
                    "the certificate of the pending key must come first, followed by its issuers"
                        .to_owned(),
                )
            } else {
                IntakeError::ChainKeyMismatch
            },
        );
    }
    for (position, (pair, certificates)) in infos.windows(2).zip(parsed.windows(2)).enumerate() {
        let (Some(child), Some(parent)) = (pair.first(), pair.get(1)) else {
            continue;
        };
        let (Some(child_cert), Some(parent_cert)) = (certificates.first(), certificates.get(1))
        else {
            continue;
        };
        let number = position + 1;
        if child.self_issued {
            return Err(IntakeError::ChainOrder(format!(
                "certificate {number} (\"{}\") is self-issued: nothing may follow it",
                child.subject
            )));
        }
        if child.issuer_der != parent.subject_der {
            return Err(IntakeError::ChainOrder(format!(
                "certificate {number} was issued by \"{}\", but the next one is \"{}\"",
                child.issuer, parent.subject
            )));
        }
        verify_signature(child_cert, parent_cert).map_err(|why| {
            IntakeError::ChainOrder(format!(
                "the signature of certificate {number} does not verify with the key of the next one: {why}"
            ))
        })?;
    }
    let mut infos = infos.into_iter();
    let leaf = infos.next().ok_or(IntakeError::ChainEmpty)?;
    let chain: Vec<CertificateInfo> = infos.collect();
    let now = unix_seconds(now);
    if leaf.not_after < now {
        return Err(IntakeError::CertificateExpired);
    }
    if leaf.not_before > now {
        return Err(IntakeError::CertificateNotYetValid);
    }
    if leaf.client_auth == Some(false) {
        return Err(IntakeError::CertificateUsage);
    }
    let warnings =
        report::certificate_warnings(&leaf, &chain, &[], now, policy.expiry_warning_seconds);
    Ok(Inspection {
        identity: Identity {
            key: PrivateKey::new(Zeroizing::new(pkcs8.to_vec())),
            certificate_chain: ders,
        },
        report: Report {
            leaf,
            chain,
            key_type: checked.key_type,
            protection: Protection::default(),
            warnings,
        },
    })
}

/// The identity of a key the gateway made, as stored (the PKCS#8 key and the chain PEM the
/// upload was turned into): the same [`Inspection`] that [`crate::inspect`] gives for a
/// PKCS#12 file, checked the same way as [`accept_chain`] at `now`. A key whose certificate
/// has not been uploaded (`chain_pem` `None`) has no identity: [`IntakeError::ChainEmpty`].
pub fn inspect_key(
    pkcs8: &[u8],
    chain_pem: Option<&str>,
    policy: &IntakePolicy,
    now: SystemTime,
) -> Result<Inspection, IntakeError> {
    let chain_pem = chain_pem.ok_or(IntakeError::ChainEmpty)?;
    accept_chain(chain_pem.as_bytes(), pkcs8, policy, now)
}

/// The DER of each `CERTIFICATE` section, at most [`MAX_CHAIN_CERTIFICATES`] (counted while
/// reading).
fn read_pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, IntakeError> {
    use rustls_pki_types::pem::{PemObject, SectionKind};
    let mut ders = Vec::new();
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|_| IntakeError::InvalidPem("not valid PEM text"))?;
        if kind != SectionKind::Certificate {
            return Err(IntakeError::InvalidPem(
                "a section is not a CERTIFICATE (never send a private key)",
            ));
        }
        if ders.len() == MAX_CHAIN_CERTIFICATES {
            return Err(IntakeError::ChainTooLong {
                cap: MAX_CHAIN_CERTIFICATES,
            });
        }
        ders.push(der);
    }
    if ders.is_empty() {
        let blank = pem.iter().all(u8::is_ascii_whitespace);
        return Err(if blank {
            IntakeError::ChainEmpty
        } else {
            IntakeError::InvalidPem("no PEM CERTIFICATE section")
        });
    }
    Ok(ders)
}

/// Whether `issuer`'s key signed `child`.
fn verify_signature(child: &Certificate, issuer: &Certificate) -> Result<(), String> {
    let issuer_key = issuer.tbs_certificate().subject_public_key_info();
    let key_bytes = issuer_key.subject_public_key.raw_bytes();
    let curve = issuer_key
        .algorithm
        .parameters
        .as_ref()
        .and_then(|any| any.decode_as::<ObjectIdentifier>().ok());
    let algorithm = child.signature_algorithm().oid;
    let verification: &dyn signature::VerificationAlgorithm = match (algorithm, curve) {
        (SHA256_WITH_RSA, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (SHA384_WITH_RSA, _) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (SHA512_WITH_RSA, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (SHA1_WITH_RSA, _) => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        (ECDSA_WITH_SHA256, Some(oids::P256)) => &signature::ECDSA_P256_SHA256_ASN1,
        (ECDSA_WITH_SHA384, Some(oids::P256)) => &signature::ECDSA_P256_SHA384_ASN1,
        (ECDSA_WITH_SHA512, Some(oids::P256)) => &signature::ECDSA_P256_SHA512_ASN1,
        (ECDSA_WITH_SHA256, Some(oids::P384)) => &signature::ECDSA_P384_SHA256_ASN1,
        (ECDSA_WITH_SHA384, Some(oids::P384)) => &signature::ECDSA_P384_SHA384_ASN1,
        (ECDSA_WITH_SHA512, Some(oids::P384)) => &signature::ECDSA_P384_SHA512_ASN1,
        (ECDSA_WITH_SHA256, Some(oids::P521)) => &signature::ECDSA_P521_SHA256_ASN1,
        (ECDSA_WITH_SHA384, Some(oids::P521)) => &signature::ECDSA_P521_SHA384_ASN1,
        (ECDSA_WITH_SHA512, Some(oids::P521)) => &signature::ECDSA_P521_SHA512_ASN1,
        (oids::ED25519, _) => &signature::ED25519,
        (other, _) => {
            return Err(format!(
                "the signature algorithm {other} is not one the gateway verifies"
            ));
        }
    };
    let signed = child
        .tbs_certificate()
        .to_der()
        .map_err(|_| "the certificate does not encode".to_owned())?;
    let value = child
        .signature()
        .as_bytes()
        .ok_or_else(|| "the signature is not whole bytes".to_owned())?;
    signature::UnparsedPublicKey::new(verification, key_bytes)
        .verify(&signed, value)
        .map_err(|_| "wrong signature".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    #![allow(clippy::disallowed_methods)] // tests make certificates valid from now and check them now

    use super::*;

    fn subject(text: &str) -> Result<String, String> {
        parse_subject(text)
            .map(|name| name.to_string())
            .map_err(|error| error.to_string())
    }

    #[test]
    fn subjects_read_as_rfc_4514_text() {
        assert_eq!(
            subject("CN=brand-a,O=Brand A").unwrap(),
            "CN=brand-a,O=Brand A"
        );
        assert_eq!(
            subject(" cn = brand-a , o=Brand A,c=FR").unwrap(),
            "CN=brand-a,O=Brand A,C=FR"
        );
        assert_eq!(
            subject(r"CN=Smith\, John\2C Jr.,O=A\+B").unwrap(),
            r"CN=Smith\, John\, Jr.,O=A\+B"
        );
        assert_eq!(subject(r"CN=caf\C3\A9").unwrap(), "CN=café");
        assert_eq!(subject(r"CN=\ padded\ ").unwrap(), r"CN=\ padded\ ");
        assert_eq!(
            subject("CN=a+UID=b,DC=example").unwrap().len(),
            "CN=a+UID=b,DC=example".len()
        );
        // DER order is the reverse of the text's.
        let name = parse_subject("CN=leaf,O=org").unwrap();
        let der = name.to_der().unwrap();
        let org = der.windows(3).position(|w| w == b"org").unwrap();
        let leaf = der.windows(4).position(|w| w == b"leaf").unwrap();
        assert!(org < leaf);
    }

    #[test]
    fn bad_subjects_are_refused_with_a_reason() {
        for (text, why) in [
            ("", "empty"),
            ("   ", "empty"),
            ("CN=", "value is empty"),
            ("CN=a,", "separator at the end"),
            ("FOO=bar", "unknown attribute type \"FOO\""),
            ("1.2.3.4=x", "unknown attribute type"),
            ("CN=#0403616263", "hex-encoded"),
            ("CN=a;O=b", "must be escaped"),
            ("brand-a", "no '='"),
            ("C=France", "longer than 2"),
            ("C=fr", "two upper-case letters"),
            (r"CN=\q", "not an escape"),
            (r"CN=\C3", "not UTF-8"),
            ("CN=a\u{7}", "control"),
            ("emailAddress=é@x", "ASCII"),
        ] {
            let error = subject(text).unwrap_err();
            assert!(error.contains(why), "{text:?}: {error}");
        }
        assert_eq!(
            parse_subject("CN=x").map(|_| ()).map_err(|e| e.code()),
            Ok(())
        );
        assert_eq!(parse_subject("X=y").unwrap_err().code(), "invalid_subject");
        let long = format!("CN={}", "a".repeat(65));
        assert!(subject(&long).unwrap_err().contains("longer than 64"));
    }

    #[test]
    fn alternative_names_by_prefix_or_by_shape() {
        let cases = [
            (
                "DNS:api.example",
                GeneralName::DnsName(Ia5String::new("api.example").unwrap()),
            ),
            (
                "*.example.com",
                GeneralName::DnsName(Ia5String::new("*.example.com").unwrap()),
            ),
            (
                "192.0.2.1",
                GeneralName::from(IpAddr::from_str("192.0.2.1").unwrap()),
            ),
            (
                "IP:2001:db8::1",
                GeneralName::from(IpAddr::from_str("2001:db8::1").unwrap()),
            ),
            (
                "spiffe://brand-a/gateway",
                GeneralName::UniformResourceIdentifier(
                    Ia5String::new("spiffe://brand-a/gateway").unwrap(),
                ),
            ),
            (
                "email:ops@brand-a.example",
                GeneralName::Rfc822Name(Ia5String::new("ops@brand-a.example").unwrap()),
            ),
            (
                "ops@brand-a.example",
                GeneralName::Rfc822Name(Ia5String::new("ops@brand-a.example").unwrap()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_alt_name(text).unwrap(), expected, "{text}");
        }
        for text in [
            "",
            "DNS:",
            "bad_label.example",
            "-a.example",
            "a..b",
            "IP:300.1.1.1",
            "URI:no scheme",
            "email:nobody",
            "café.example",
        ] {
            assert_eq!(
                parse_alt_name(text).unwrap_err().code(),
                "invalid_subject_alt_name",
                "{text}"
            );
        }
        let many: Vec<String> = (0..=MAX_ALT_NAMES)
            .map(|i| format!("h{i}.example"))
            .collect();
        assert!(parse_alt_names(&many).is_err());
        assert_eq!(
            parse_alt_names(&["a.example".to_owned(), "DNS:a.example".to_owned()])
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn key_types_by_label() {
        for kind in RequestKeyType::ALL {
            assert_eq!(RequestKeyType::parse(kind.label()).unwrap(), kind);
        }
        assert_eq!(
            RequestKeyType::parse("p-256").unwrap(),
            RequestKeyType::P256
        );
        assert_eq!(
            RequestKeyType::parse("Ed25519").unwrap_err().code(),
            "unsupported_key_type"
        );
        assert_eq!(RequestKeyType::Rsa3072.key_type().label(), "RSA-3072");
        assert_eq!(RequestKeyType::P384.key_type().label(), "ECDSA-P384");
    }

    #[test]
    fn a_request_carries_the_key_it_is_signed_with() {
        let made = request(
            RequestKeyType::P256,
            "CN=brand-a,O=Brand A",
            &["brand-a.example".to_owned()],
        )
        .unwrap();
        assert_eq!(made.subject, "CN=brand-a,O=Brand A");
        assert!(
            made.csr_pem
                .starts_with("-----BEGIN CERTIFICATE REQUEST-----\n")
        );
        assert!(format!("{:?}", made.key).contains("redacted"));
        let checked = key::check(made.key.pkcs8_der()).unwrap();
        assert_eq!(checked.key_type, KeyType::EcdsaP256);
        // The request's public key is the key's, and its signature verifies with it.
        let body: String = made
            .csr_pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let parsed = CertReq::from_der(&der).unwrap();
        assert_eq!(
            parsed.info.public_key.subject_public_key.raw_bytes(),
            checked.public_key.as_slice()
        );
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &checked.public_key)
            .verify(&parsed.info.to_der().unwrap(), parsed.signature.raw_bytes())
            .unwrap();
        // A bad subject is refused before any key is made.
        assert_eq!(
            request(RequestKeyType::Rsa3072, "nope", &[])
                .unwrap_err()
                .code(),
            "invalid_subject"
        );
    }

    #[test]
    fn pem_lines_are_64_characters() {
        let text = pem("CERTIFICATE", &[7u8; 100]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last().copied(), Some("-----END CERTIFICATE-----"));
    }

    #[test]
    fn chain_text_that_is_not_certificates_is_refused() {
        let key = generate(RequestKeyType::P256).unwrap();
        let policy = IntakePolicy::default();
        let check = |pem: &[u8]| {
            accept_chain(pem, key.pkcs8_der(), &policy, SystemTime::now())
                .map(|_| ())
                .unwrap_err()
                .code()
        };
        assert_eq!(check(b""), "chain_empty");
        assert_eq!(check(b"  \n"), "chain_empty");
        assert_eq!(check(b"hello"), "invalid_pem");
        assert_eq!(
            check(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            "invalid_pem"
        );
        assert_eq!(
            check(pem("PRIVATE KEY", key.pkcs8_der()).as_bytes()),
            "invalid_pem"
        );
        assert_eq!(
            check(pem("CERTIFICATE", b"not der").as_bytes()),
            "invalid_pem"
        );
        assert_eq!(
            check(&vec![b'a'; MAX_CHAIN_PEM_BYTES + 1]),
            "chain_too_large"
        );
        let many = pem("CERTIFICATE", b"x").repeat(MAX_CHAIN_CERTIFICATES + 1);
        assert_eq!(check(many.as_bytes()), "chain_too_long");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn subject_and_name_text_never_panics(text in "\\PC{0,80}") {
            let _ = parse_subject(&text);
            let _ = parse_alt_name(&text);
        }

        #[test]
        fn chain_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let key = [0x30u8, 0x00];
            let _ = accept_chain(&bytes, &key, &IntakePolicy::default(), SystemTime::now());
            let mut pem_text = b"-----BEGIN CERTIFICATE-----\n".to_vec();
            pem_text.extend_from_slice(&bytes);
            let _ = accept_chain(&pem_text, &key, &IntakePolicy::default(), SystemTime::now());
        }
    }
}
