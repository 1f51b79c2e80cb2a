//! The private key: held in a type that zeroizes, never prints and never serializes; checked
//! to be a key TLS can sign with, and matched to its certificate by public key.

use std::fmt;

use aws_lc_rs::signature::{self, KeyPair};
use der::Decode;
use zeroize::Zeroizing;

use crate::{IntakeError, oids};

/// A PKCS#8 private key (DER). Not `Serialize`, `Debug` prints nothing of it, zeroized on drop.
pub struct PrivateKey(Zeroizing<Vec<u8>>);

impl PrivateKey {
    pub(crate) fn new(pkcs8_der: Zeroizing<Vec<u8>>) -> Self {
        Self(pkcs8_der)
    }

    /// The PKCS#8 DER bytes, for handing to the TLS stack.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// The kinds of key the gateway can present in a TLS handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Rsa { bits: u32 },
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Ed25519,
}

impl KeyType {
    /// The label of SPEC 4.1 (`RSA-2048`, `ECDSA-P256`, ...).
    pub fn label(self) -> String {
        match self {
            KeyType::Rsa { bits } => format!("RSA-{bits}"),
            KeyType::EcdsaP256 => "ECDSA-P256".to_owned(),
            KeyType::EcdsaP384 => "ECDSA-P384".to_owned(),
            KeyType::EcdsaP521 => "ECDSA-P521".to_owned(),
            KeyType::Ed25519 => "Ed25519".to_owned(),
        }
    }

    /// Key size in bits.
    pub fn bits(self) -> u32 {
        match self {
            KeyType::Rsa { bits } => bits,
            KeyType::EcdsaP256 | KeyType::Ed25519 => 256,
            KeyType::EcdsaP384 => 384,
            KeyType::EcdsaP521 => 521,
        }
    }
}

/// A key that loaded into the signing library: its type and its public key bytes as they
/// appear in a certificate's `subjectPublicKey`.
#[derive(Debug)]
pub(crate) struct CheckedKey {
    pub key_type: KeyType,
    pub public_key: Vec<u8>,
}

const RSA_MIN_BITS: u32 = 2048;
const RSA_MAX_BITS: u32 = 8192;

/// Loads `pkcs8` as a signing key, or says why TLS cannot use it.
pub(crate) fn check(pkcs8: &[u8]) -> Result<CheckedKey, IntakeError> {
    let info = pkcs8::PrivateKeyInfoRef::from_der(pkcs8)
        .map_err(|_| IntakeError::Malformed("private key structure"))?;
    let algorithm = info.algorithm.oid;
    let unusable = |what: &str| IntakeError::UnsupportedKey(what.to_owned());
    match algorithm {
        oids::RSA_ENCRYPTION => {
            let pair = signature::RsaKeyPair::from_pkcs8(pkcs8)
                .map_err(|_| unusable("an RSA key the signing library refuses"))?;
            let bits = u32::try_from(pair.public_modulus_len() * 8).unwrap_or(u32::MAX);
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(IntakeError::UnsupportedKey(format!(
                    "RSA-{bits} (accepted: {RSA_MIN_BITS} to {RSA_MAX_BITS} bits)"
                )));
            }
            Ok(CheckedKey {
                key_type: KeyType::Rsa { bits },
                public_key: pair.public_key().as_ref().to_vec(),
            })
        }
        oids::EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters
                .and_then(|any| any.decode_as::<der::asn1::ObjectIdentifier>().ok());
            let (key_type, signing) = match curve {
                Some(oids::P256) => (
                    KeyType::EcdsaP256,
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                ),
                Some(oids::P384) => (
                    KeyType::EcdsaP384,
                    &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                ),
                Some(oids::P521) => (
                    KeyType::EcdsaP521,
                    &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
                ),
                Some(other) => {
                    return Err(IntakeError::UnsupportedKey(format!(
                        "EC key on curve {}",
                        oids::name(&other)
                    )));
                }
                None => return Err(unusable("EC key without a named curve")),
            };
            let pair = signature::EcdsaKeyPair::from_pkcs8(signing, pkcs8)
                .map_err(|_| unusable("an EC key the signing library refuses"))?;
            Ok(CheckedKey {
                key_type,
                public_key: pair.public_key().as_ref().to_vec(),
            })
        }
        oids::ED25519 => {
            let pair = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                .map_err(|_| unusable("an Ed25519 key the signing library refuses"))?;
            Ok(CheckedKey {
                key_type: KeyType::Ed25519,
                public_key: pair.public_key().as_ref().to_vec(),
            })
        }
        other => Err(IntakeError::UnsupportedKey(format!(
            "{} keys",
            oids::name(&other)
        ))),
    }
}
