//! Password-based decryption of PKCS#12 contents: PBES2 (via `pkcs5`) and the PKCS#12 PBE
//! schemes of RFC 7292 appendix C, each derivation charged to the budget first.

use cbc::cipher::{BlockModeDecrypt, InnerIvInit, KeyIvInit, block_padding::Pkcs7};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

use crate::asn1::{self, Pbes2ParamsOpen, Pbkdf2ParamsOpen, Pkcs12PbeParams};
use crate::cost::Budget;
use crate::kdf::{self, PasswordForm, Purpose};
use crate::{IntakeError, oids};

/// Why one decryption attempt failed: the caller tries another password form on `WrongKey`.
#[derive(Debug)]
pub(crate) enum DecryptError {
    WrongKey,
    Fatal(IntakeError),
}

impl From<IntakeError> for DecryptError {
    fn from(error: IntakeError) -> Self {
        DecryptError::Fatal(error)
    }
}

/// A human description of an encryption algorithm identifier, for the report.
pub(crate) fn describe(algorithm: &AlgorithmIdentifierOwned) -> String {
    if algorithm.oid == oids::PBES2
        && let Some(open) = pbes2_open(algorithm)
    {
        let (prf, iterations) = match pbkdf2_open(&open.kdf) {
            Some(params) => (
                params.prf.map_or(oids::HMAC_SHA1, |prf| prf.oid),
                params.iteration_count,
            ),
            None => (oids::HMAC_SHA1, 0),
        };
        return format!(
            "PBES2 ({}-{}, {}, {iterations} iterations)",
            oids::name(&open.kdf.oid),
            oids::name(&prf),
            oids::name(&open.encryption.oid)
        );
    }
    match pkcs12_pbe_params(algorithm) {
        Some(params) => format!(
            "{} ({} iterations)",
            oids::name(&algorithm.oid),
            params.iterations
        ),
        None => oids::name(&algorithm.oid),
    }
}

/// Whether the algorithm is one of the legacy (weak) PKCS#12 PBE schemes.
pub(crate) fn is_legacy(algorithm: &AlgorithmIdentifierOwned) -> bool {
    algorithm.oid != oids::PBES2
}

/// Decrypts `ciphertext` protected by `algorithm` with `password` encoded in `form`.
pub(crate) fn decrypt(
    algorithm: &AlgorithmIdentifierOwned,
    ciphertext: &[u8],
    password: &str,
    form: PasswordForm,
    budget: &mut Budget,
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    if algorithm.oid == oids::PBES2 {
        return decrypt_pbes2(algorithm, ciphertext, form.pbkdf2_bytes(password), budget);
    }
    let scheme = Pkcs12Scheme::from_oid(&algorithm.oid)
        .ok_or_else(|| IntakeError::UnsupportedAlgorithm(oids::name(&algorithm.oid)))?;
    let params =
        pkcs12_pbe_params(algorithm).ok_or(IntakeError::Malformed("PKCS#12 PBE parameters"))?;
    // Key and IV are two derivations over the same iteration count.
    budget.charge(u64::from(params.iterations))?;
    budget.charge(u64::from(params.iterations))?;
    let encoded = form.encode(password);
    let salt = params.salt.as_bytes();
    let key = kdf::derive::<sha1::Sha1>(
        &encoded,
        salt,
        Purpose::Key,
        params.iterations,
        scheme.key_len(),
        64,
    );
    let iv = kdf::derive::<sha1::Sha1>(&encoded, salt, Purpose::Iv, params.iterations, 8, 64);
    scheme.decrypt(&key, &iv, ciphertext)
}

fn decrypt_pbes2(
    algorithm: &AlgorithmIdentifierOwned,
    ciphertext: &[u8],
    password: &[u8],
    budget: &mut Budget,
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    let open = pbes2_open(algorithm).ok_or(IntakeError::Malformed("PBES2 parameters"))?;
    if open.kdf.oid != oids::PBKDF2 {
        return Err(IntakeError::UnsupportedAlgorithm(format!(
            "PBES2 key derivation {}",
            oids::name(&open.kdf.oid)
        ))
        .into());
    }
    let kdf = pbkdf2_open(&open.kdf).ok_or(IntakeError::Malformed("PBKDF2 parameters"))?;
    let prf = kdf.prf.as_ref().map_or(oids::HMAC_SHA1, |prf| prf.oid);
    if ![
        oids::HMAC_SHA1,
        oids::HMAC_SHA224,
        oids::HMAC_SHA256,
        oids::HMAC_SHA384,
        oids::HMAC_SHA512,
    ]
    .contains(&prf)
    {
        return Err(
            IntakeError::UnsupportedAlgorithm(format!("PBKDF2 with {}", oids::name(&prf))).into(),
        );
    }
    let supported_ciphers = [
        oids::AES_128_CBC,
        oids::AES_192_CBC,
        oids::AES_256_CBC,
        oids::AES_128_GCM,
        oids::AES_256_GCM,
        oids::DES_EDE3_CBC,
    ];
    if !supported_ciphers.contains(&open.encryption.oid) {
        return Err(IntakeError::UnsupportedAlgorithm(format!(
            "PBES2 encryption {}",
            oids::name(&open.encryption.oid)
        ))
        .into());
    }
    budget.charge(kdf.iteration_count)?;
    let params = algorithm
        .parameters
        .as_ref()
        .and_then(|any| any.to_der().ok())
        .and_then(|der| pkcs5::pbes2::Parameters::from_der(&der).ok())
        .ok_or(IntakeError::Malformed("PBES2 parameters"))?;
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    match params.decrypt_in_place(password, buffer.as_mut_slice()) {
        Ok(plain) => {
            let len = plain.len();
            buffer.truncate(len);
            Ok(buffer)
        }
        Err(pkcs5::Error::EncryptFailed | pkcs5::Error::DecryptFailed) => {
            Err(DecryptError::WrongKey)
        }
        Err(_) => Err(IntakeError::Malformed("PBES2 parameters").into()),
    }
}

fn pbes2_open(algorithm: &AlgorithmIdentifierOwned) -> Option<Pbes2ParamsOpen> {
    let der = algorithm.parameters.as_ref()?.to_der().ok()?;
    asn1::decode::<Pbes2ParamsOpen>(&der, "PBES2").ok()
}

fn pbkdf2_open(kdf: &AlgorithmIdentifierOwned) -> Option<Pbkdf2ParamsOpen> {
    let der = kdf.parameters.as_ref()?.to_der().ok()?;
    asn1::decode::<Pbkdf2ParamsOpen>(&der, "PBKDF2").ok()
}

fn pkcs12_pbe_params(algorithm: &AlgorithmIdentifierOwned) -> Option<Pkcs12PbeParams> {
    let der = algorithm.parameters.as_ref()?.to_der().ok()?;
    asn1::decode::<Pkcs12PbeParams>(&der, "PBE").ok()
}

/// The PKCS#12 PBE schemes this parser implements (RC4 ones are refused as unsupported).
#[derive(Clone, Copy, Debug)]
enum Pkcs12Scheme {
    TripleDes3Key,
    TripleDes2Key,
    Rc2_128,
    Rc2_40,
}

impl Pkcs12Scheme {
    fn from_oid(oid: &der::asn1::ObjectIdentifier) -> Option<Self> {
        match *oid {
            oids::PBE_SHA1_3DES => Some(Self::TripleDes3Key),
            oids::PBE_SHA1_2DES => Some(Self::TripleDes2Key),
            oids::PBE_SHA1_RC2_128 => Some(Self::Rc2_128),
            oids::PBE_SHA1_RC2_40 => Some(Self::Rc2_40),
            _ => None,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Self::TripleDes3Key => 24,
            Self::TripleDes2Key | Self::Rc2_128 => 16,
            Self::Rc2_40 => 5,
        }
    }

    fn decrypt(
        self,
        key: &[u8],
        iv: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let malformed = || DecryptError::Fatal(IntakeError::Malformed("PBE key or IV length"));
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plain_len = match self {
            Self::TripleDes3Key => cbc::Decryptor::<des::TdesEde3>::new_from_slices(key, iv)
                .map_err(|_| malformed())?
                .decrypt_padded::<Pkcs7>(buffer.as_mut_slice())
                .map(<[u8]>::len),
            Self::TripleDes2Key => cbc::Decryptor::<des::TdesEde2>::new_from_slices(key, iv)
                .map_err(|_| malformed())?
                .decrypt_padded::<Pkcs7>(buffer.as_mut_slice())
                .map(<[u8]>::len),
            Self::Rc2_128 | Self::Rc2_40 => {
                let bits = key.len() * 8;
                let cipher = rc2::Rc2::new_with_eff_key_len(key, bits);
                let iv = iv.try_into().map_err(|_| malformed())?;
                cbc::Decryptor::<rc2::Rc2>::inner_iv_init(cipher, iv)
                    .decrypt_padded::<Pkcs7>(buffer.as_mut_slice())
                    .map(<[u8]>::len)
            }
        }
        .map_err(|_| DecryptError::WrongKey)?;
        buffer.truncate(plain_len);
        Ok(buffer)
    }
}
