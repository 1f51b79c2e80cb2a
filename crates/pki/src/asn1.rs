//! The ASN.1 shapes of RFC 7292 (PKCS#12) that the parser walks, decoded with BER rules
//! because Windows and Java write indefinite lengths.

use der::asn1::{Any, ObjectIdentifier, OctetString, SetOfVec};
use der::{Decode, Sequence};
use spki::AlgorithmIdentifierOwned;

/// `PFX ::= SEQUENCE { version, authSafe ContentInfo, macData MacData OPTIONAL }`
#[derive(Clone, Debug, Sequence)]
pub(crate) struct Pfx {
    pub version: u8,
    pub auth_safe: ContentInfo,
    pub mac_data: Option<MacData>,
}

/// `MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING, iterations INTEGER DEFAULT 1 }`
#[derive(Clone, Debug, Sequence)]
pub(crate) struct MacData {
    pub mac: DigestInfo,
    pub mac_salt: OctetString,
    #[asn1(default = "one")]
    pub iterations: u32,
}

fn one() -> u32 {
    1
}

/// `DigestInfo ::= SEQUENCE { digestAlgorithm AlgorithmIdentifier, digest OCTET STRING }`
#[derive(Clone, Debug, Sequence)]
pub(crate) struct DigestInfo {
    pub algorithm: AlgorithmIdentifierOwned,
    pub digest: OctetString,
}

/// `ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY OPTIONAL }`
#[derive(Clone, Debug, Sequence)]
pub(crate) struct ContentInfo {
    pub content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub content: Option<Any>,
}

/// `EncryptedData ::= SEQUENCE { version, encryptedContentInfo, unprotectedAttrs [1] OPTIONAL }`
#[derive(Clone, Debug, Sequence)]
pub(crate) struct EncryptedData {
    pub version: u8,
    pub encrypted_content_info: EncryptedContentInfo,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub unprotected_attributes: Option<SetOfVec<Any>>,
}

/// `EncryptedContentInfo ::= SEQUENCE { contentType, contentEncryptionAlgorithm,
/// encryptedContent [0] IMPLICIT OCTET STRING OPTIONAL }`
#[derive(Clone, Debug, Sequence)]
pub(crate) struct EncryptedContentInfo {
    pub content_type: ObjectIdentifier,
    pub algorithm: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub encrypted_content: Option<OctetString>,
}

/// `SafeBag ::= SEQUENCE { bagId OID, bagValue [0] EXPLICIT ANY, bagAttributes SET OF OPTIONAL }`
#[derive(Clone, Debug, Sequence)]
pub(crate) struct SafeBag {
    pub bag_id: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub bag_value: Any,
    pub bag_attributes: Option<SetOfVec<Any>>,
}

/// `CertBag ::= SEQUENCE { certId OID, certValue [0] EXPLICIT ANY }`
#[derive(Clone, Debug, Sequence)]
pub(crate) struct CertBag {
    pub cert_id: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub cert_value: Any,
}

/// `EncryptedPrivateKeyInfo ::= SEQUENCE { encryptionAlgorithm, encryptedData OCTET STRING }`,
/// decoded with an open algorithm so that PKCS#12 PBE identifiers are accepted too.
#[derive(Clone, Debug, Sequence)]
pub(crate) struct EncryptedPrivateKeyInfo {
    pub algorithm: AlgorithmIdentifierOwned,
    pub encrypted_data: OctetString,
}

/// `pkcs-12PbeParams ::= SEQUENCE { salt OCTET STRING, iterations INTEGER }`
#[derive(Clone, Debug, Sequence)]
pub(crate) struct Pkcs12PbeParams {
    pub salt: OctetString,
    pub iterations: u32,
}

/// `PBES2-params ::= SEQUENCE { keyDerivationFunc, encryptionScheme }`, both left open so the
/// parser can name an unsupported algorithm before handing the parameters to `pkcs5`.
#[derive(Clone, Debug, Sequence)]
pub(crate) struct Pbes2ParamsOpen {
    pub kdf: AlgorithmIdentifierOwned,
    pub encryption: AlgorithmIdentifierOwned,
}

/// `PBKDF2-params ::= SEQUENCE { salt, iterationCount, keyLength OPTIONAL, prf DEFAULT hmacWithSHA1 }`
/// with an open `prf`, read only to check the cost and the algorithms.
#[derive(Clone, Debug, Sequence)]
pub(crate) struct Pbkdf2ParamsOpen {
    pub salt: Any,
    pub iteration_count: u64,
    pub key_length: Option<u32>,
    pub prf: Option<AlgorithmIdentifierOwned>,
}

/// Decodes `T` from BER (a superset of DER), naming `part` when it does not decode.
pub(crate) fn decode<'a, T: Decode<'a>>(
    bytes: &'a [u8],
    part: &'static str,
) -> Result<T, &'static str> {
    T::from_ber(bytes).map_err(|_| part)
}
