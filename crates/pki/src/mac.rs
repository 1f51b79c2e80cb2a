//! Verification of the PKCS#12 integrity MAC (RFC 7292 section 5 and appendix B).

use hmac::{Hmac, KeyInit, Mac};

use crate::asn1::MacData;
use crate::cost::Budget;
use crate::kdf::{self, PasswordForm, Purpose};
use crate::{IntakeError, oids};

/// A human description of the MAC, for the report.
pub(crate) fn describe(mac: &MacData) -> String {
    format!(
        "HMAC-{} ({} iterations)",
        oids::name(&mac.mac.algorithm.oid),
        mac.iterations
    )
}

/// Whether the MAC's hash is SHA-1.
pub(crate) fn is_legacy(mac: &MacData) -> bool {
    mac.mac.algorithm.oid == oids::SHA1
}

/// Checks `mac` over `content` with `password` in `form`: `Ok(true)` when it matches.
pub(crate) fn verify(
    mac: &MacData,
    content: &[u8],
    password: &str,
    form: PasswordForm,
    budget: &mut Budget,
) -> Result<bool, IntakeError> {
    let oid = mac.mac.algorithm.oid;
    if !([
        oids::SHA1,
        oids::SHA224,
        oids::SHA256,
        oids::SHA384,
        oids::SHA512,
    ]
    .contains(&oid))
    {
        return Err(IntakeError::UnsupportedAlgorithm(format!(
            "MAC {}",
            oids::name(&oid)
        )));
    }
    budget.charge(u64::from(mac.iterations))?;
    let encoded = form.encode(password);
    let salt = mac.mac_salt.as_bytes();
    let expected = mac.mac.digest.as_bytes();
    let rounds = mac.iterations;
    Ok(match oid {
        oids::SHA1 => check::<sha1::Sha1>(&encoded, salt, rounds, 64, content, expected),
        oids::SHA224 => check::<sha2::Sha224>(&encoded, salt, rounds, 64, content, expected),
        oids::SHA256 => check::<sha2::Sha256>(&encoded, salt, rounds, 64, content, expected),
        oids::SHA384 => check::<sha2::Sha384>(&encoded, salt, rounds, 128, content, expected),
        _ => check::<sha2::Sha512>(&encoded, salt, rounds, 128, content, expected),
    })
}

fn check<D>(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    block_len: usize,
    content: &[u8],
    expected: &[u8],
) -> bool
where
    D: sha1::Digest + hmac::EagerHash,
    Hmac<D>: KeyInit + Mac,
{
    let key_len = <D as sha1::Digest>::output_size();
    let key = kdf::derive::<D>(password, salt, Purpose::Mac, iterations, key_len, block_len);
    let Ok(mut hmac) = <Hmac<D> as KeyInit>::new_from_slice(&key) else {
        return false;
    };
    hmac.update(content);
    hmac.verify_slice(expected).is_ok()
}
