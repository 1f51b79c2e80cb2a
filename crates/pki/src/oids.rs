//! Object identifiers met in PKCS#12 files and certificates, and their human names.

use const_oid::ObjectIdentifier as Oid;

pub(crate) const DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
pub(crate) const ENCRYPTED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.6");
pub(crate) const ENVELOPED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.3");

pub(crate) const KEY_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.1");
pub(crate) const SHROUDED_KEY_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.2");
pub(crate) const CERT_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.3");
pub(crate) const SAFE_CONTENTS_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.6");
pub(crate) const X509_CERTIFICATE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.22.1");

pub(crate) const PBE_SHA1_RC4_128: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.1");
pub(crate) const PBE_SHA1_RC4_40: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.2");
pub(crate) const PBE_SHA1_3DES: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.3");
pub(crate) const PBE_SHA1_2DES: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.4");
pub(crate) const PBE_SHA1_RC2_128: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.5");
pub(crate) const PBE_SHA1_RC2_40: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.6");
pub(crate) const PBES2: Oid = Oid::new_unwrap("1.2.840.113549.1.5.13");
pub(crate) const PBKDF2: Oid = Oid::new_unwrap("1.2.840.113549.1.5.12");
pub(crate) const PBMAC1: Oid = Oid::new_unwrap("1.2.840.113549.1.5.14");

pub(crate) const SHA1: Oid = Oid::new_unwrap("1.3.14.3.2.26");
pub(crate) const SHA224: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.4");
pub(crate) const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
pub(crate) const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
pub(crate) const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");

pub(crate) const HMAC_SHA1: Oid = Oid::new_unwrap("1.2.840.113549.2.7");
pub(crate) const HMAC_SHA224: Oid = Oid::new_unwrap("1.2.840.113549.2.8");
pub(crate) const HMAC_SHA256: Oid = Oid::new_unwrap("1.2.840.113549.2.9");
pub(crate) const HMAC_SHA384: Oid = Oid::new_unwrap("1.2.840.113549.2.10");
pub(crate) const HMAC_SHA512: Oid = Oid::new_unwrap("1.2.840.113549.2.11");

pub(crate) const AES_128_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.2");
pub(crate) const AES_192_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.22");
pub(crate) const AES_256_CBC: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.42");
pub(crate) const AES_128_GCM: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.6");
pub(crate) const AES_256_GCM: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.1.46");
pub(crate) const DES_EDE3_CBC: Oid = Oid::new_unwrap("1.2.840.113549.3.7");

pub(crate) const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
pub(crate) const RSASSA_PSS: Oid = Oid::new_unwrap("1.2.840.113549.1.1.10");
pub(crate) const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
pub(crate) const ED25519: Oid = Oid::new_unwrap("1.3.101.112");
pub(crate) const ED448: Oid = Oid::new_unwrap("1.3.101.113");
pub(crate) const DSA: Oid = Oid::new_unwrap("1.2.840.10040.4.1");
pub(crate) const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
pub(crate) const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
pub(crate) const P521: Oid = Oid::new_unwrap("1.3.132.0.35");

pub(crate) const EXT_KEY_USAGE_CLIENT_AUTH: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.2");
pub(crate) const EXT_KEY_USAGE_ANY: Oid = Oid::new_unwrap("2.5.29.37.0");

/// A readable name for the algorithms a report or an error may mention; the dotted form otherwise.
pub(crate) fn name(oid: &Oid) -> String {
    let known = [
        (PBE_SHA1_RC4_128, "pbeWithSHAAnd128BitRC4"),
        (PBE_SHA1_RC4_40, "pbeWithSHAAnd40BitRC4"),
        (PBE_SHA1_3DES, "pbeWithSHAAnd3-KeyTripleDES-CBC"),
        (PBE_SHA1_2DES, "pbeWithSHAAnd2-KeyTripleDES-CBC"),
        (PBE_SHA1_RC2_128, "pbeWithSHAAnd128BitRC2-CBC"),
        (PBE_SHA1_RC2_40, "pbeWithSHAAnd40BitRC2-CBC"),
        (PBES2, "PBES2"),
        (PBKDF2, "PBKDF2"),
        (PBMAC1, "PBMAC1"),
        (SHA1, "SHA-1"),
        (SHA224, "SHA-224"),
        (SHA256, "SHA-256"),
        (SHA384, "SHA-384"),
        (SHA512, "SHA-512"),
        (HMAC_SHA1, "HMAC-SHA1"),
        (HMAC_SHA224, "HMAC-SHA224"),
        (HMAC_SHA256, "HMAC-SHA256"),
        (HMAC_SHA384, "HMAC-SHA384"),
        (HMAC_SHA512, "HMAC-SHA512"),
        (AES_128_CBC, "AES-128-CBC"),
        (AES_192_CBC, "AES-192-CBC"),
        (AES_256_CBC, "AES-256-CBC"),
        (AES_128_GCM, "AES-128-GCM"),
        (AES_256_GCM, "AES-256-GCM"),
        (DES_EDE3_CBC, "DES-EDE3-CBC"),
        (
            ENVELOPED_DATA,
            "envelopedData (public-key encrypted contents)",
        ),
        (RSA_ENCRYPTION, "RSA"),
        (RSASSA_PSS, "RSASSA-PSS"),
        (EC_PUBLIC_KEY, "EC"),
        (ED25519, "Ed25519"),
        (ED448, "Ed448"),
        (DSA, "DSA"),
        (P256, "P-256"),
        (P384, "P-384"),
        (P521, "P-521"),
    ];
    known
        .iter()
        .find(|(known_oid, _)| known_oid == oid)
        .map_or_else(|| oid.to_string(), |(_, name)| (*name).to_owned())
}
