//! Walks a PKCS#12 file: verifies the MAC, decrypts the safes and collects the keys and
//! certificates, trying the password forms OpenSSL tries.

use der::Encode;
use der::asn1::OctetString;
use zeroize::Zeroizing;

use crate::asn1::{
    self, CertBag, ContentInfo, EncryptedData, EncryptedPrivateKeyInfo, Pfx, SafeBag,
};
use crate::cost::Budget;
use crate::crypt::{self, DecryptError};
use crate::kdf::PasswordForm;
use crate::{IntakeError, mac, oids};

/// Bags one file may hold before it is refused as malformed (real files hold a handful).
const MAX_BAGS: usize = 256;
/// Nesting of `safeContentsBag` inside each other.
const MAX_DEPTH: u8 = 4;

/// Everything found in the file, before any certificate is interpreted.
#[derive(Debug, Default)]
pub(crate) struct Contents {
    pub keys: Vec<Zeroizing<Vec<u8>>>,
    pub certificates: Vec<Vec<u8>>,
    pub protection: Protection,
}

/// How the file was protected, as found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Protection {
    /// One entry per private key: its encryption, or `none`.
    pub key_encryption: Vec<String>,
    /// One entry per safe holding certificates: its encryption, or `none`.
    pub certificate_encryption: Vec<String>,
    /// The integrity MAC, when the file has one.
    pub mac: Option<String>,
    /// The password form that opened the file, when one was needed.
    pub password_form: Option<PasswordForm>,
    /// Some part uses a legacy algorithm (PKCS#12 PBE with SHA-1, RC2, 3DES, or a SHA-1 MAC).
    pub legacy: bool,
}

struct Walker<'p> {
    password: &'p str,
    /// The password form that is known to work (from the MAC or a first decryption).
    form: Option<PasswordForm>,
    budget: Budget,
    contents: Contents,
    bags: usize,
}

/// Parses `file` with `password`, charging every derivation to `budget`.
pub(crate) fn walk(file: &[u8], password: &str, budget: Budget) -> Result<Contents, IntakeError> {
    let pfx: Pfx = asn1::decode(file, "outer structure").map_err(IntakeError::Malformed)?;
    if pfx.version != 3 {
        return Err(IntakeError::Malformed("unsupported version"));
    }
    if pfx.auth_safe.content_type != oids::DATA {
        return Err(IntakeError::UnsupportedAlgorithm(format!(
            "public-key integrity mode ({})",
            oids::name(&pfx.auth_safe.content_type)
        )));
    }
    let auth_safe = data_content(&pfx.auth_safe)?;
    let mut walker = Walker {
        password,
        form: None,
        budget,
        contents: Contents::default(),
        bags: 0,
    };
    if let Some(mac_data) = &pfx.mac_data {
        if mac_data.mac.algorithm.oid == oids::PBMAC1 {
            return Err(IntakeError::UnsupportedAlgorithm("MAC PBMAC1".to_owned()));
        }
        walker.contents.protection.mac = Some(mac::describe(mac_data));
        walker.contents.protection.legacy |= mac::is_legacy(mac_data);
        let mut matched = None;
        for form in PasswordForm::candidates(password) {
            if mac::verify(
                mac_data,
                auth_safe.as_bytes(),
                password,
                form,
                &mut walker.budget,
            )? {
                matched = Some(form);
                break;
            }
        }
        walker.form = Some(matched.ok_or(IntakeError::WrongPassword)?);
    }
    let safes: Vec<ContentInfo> =
        asn1::decode(auth_safe.as_bytes(), "authenticated safe").map_err(IntakeError::Malformed)?;
    for safe in &safes {
        walker.safe(safe)?;
    }
    walker.contents.protection.password_form = walker.form;
    Ok(walker.contents)
}

/// The octets of a `data` ContentInfo.
fn data_content(info: &ContentInfo) -> Result<OctetString, IntakeError> {
    let content = info
        .content
        .as_ref()
        .ok_or(IntakeError::Malformed("empty content"))?;
    let der = content
        .to_der()
        .map_err(|_| IntakeError::Malformed("content"))?;
    asn1::decode::<OctetString>(&der, "content").map_err(IntakeError::Malformed)
}

impl Walker<'_> {
    fn safe(&mut self, safe: &ContentInfo) -> Result<(), IntakeError> {
        match safe.content_type {
            oids::DATA => {
                let bytes = data_content(safe)?;
                self.safe_contents(bytes.as_bytes(), "none".to_owned(), 0)
            }
            oids::ENCRYPTED_DATA => {
                let content = safe
                    .content
                    .as_ref()
                    .ok_or(IntakeError::Malformed("empty content"))?;
                let der = content
                    .to_der()
                    .map_err(|_| IntakeError::Malformed("encrypted data"))?;
                let encrypted: EncryptedData =
                    asn1::decode(&der, "encrypted data").map_err(IntakeError::Malformed)?;
                let info = &encrypted.encrypted_content_info;
                let ciphertext = info
                    .encrypted_content
                    .as_ref()
                    .ok_or(IntakeError::Malformed("encrypted data without content"))?;
                let plain = self.decrypt(&info.algorithm, ciphertext.as_bytes(), |plain| {
                    asn1::decode::<Vec<SafeBag>>(plain, "safe contents").is_ok()
                })?;
                self.contents.protection.legacy |= crypt::is_legacy(&info.algorithm);
                self.safe_contents(&plain, crypt::describe(&info.algorithm), 0)
            }
            other => Err(IntakeError::UnsupportedAlgorithm(oids::name(&other))),
        }
    }

    fn safe_contents(
        &mut self,
        bytes: &[u8],
        encryption: String,
        depth: u8,
    ) -> Result<(), IntakeError> {
        if depth > MAX_DEPTH {
            return Err(IntakeError::Malformed("safe contents nested too deeply"));
        }
        let bags: Vec<SafeBag> =
            asn1::decode(bytes, "safe contents").map_err(IntakeError::Malformed)?;
        let mut holds_certificates = false;
        for bag in &bags {
            self.bags += 1;
            if self.bags > MAX_BAGS {
                return Err(IntakeError::Malformed("too many bags"));
            }
            let value = bag
                .bag_value
                .to_der()
                .map_err(|_| IntakeError::Malformed("bag"))?;
            match bag.bag_id {
                oids::KEY_BAG => {
                    self.contents.keys.push(Zeroizing::new(value));
                    self.contents
                        .protection
                        .key_encryption
                        .push(format!("none (inside {encryption})"));
                }
                oids::SHROUDED_KEY_BAG => {
                    let shrouded: EncryptedPrivateKeyInfo =
                        asn1::decode(&value, "shrouded key bag").map_err(IntakeError::Malformed)?;
                    let key = self.decrypt(
                        &shrouded.algorithm,
                        shrouded.encrypted_data.as_bytes(),
                        pkcs8_decodes,
                    )?;
                    self.contents.protection.legacy |= crypt::is_legacy(&shrouded.algorithm);
                    self.contents
                        .protection
                        .key_encryption
                        .push(crypt::describe(&shrouded.algorithm));
                    self.contents.keys.push(key);
                }
                oids::CERT_BAG => {
                    let cert_bag: CertBag =
                        asn1::decode(&value, "certificate bag").map_err(IntakeError::Malformed)?;
                    if cert_bag.cert_id == oids::X509_CERTIFICATE {
                        let der = cert_bag
                            .cert_value
                            .to_der()
                            .map_err(|_| IntakeError::Malformed("certificate bag"))?;
                        let octets: OctetString = asn1::decode(&der, "certificate bag")
                            .map_err(IntakeError::Malformed)?;
                        self.contents.certificates.push(octets.as_bytes().to_vec());
                        holds_certificates = true;
                    }
                }
                oids::SAFE_CONTENTS_BAG => {
                    self.safe_contents(&value, encryption.clone(), depth + 1)?
                }
                // CRL, secret and unknown bags carry nothing a TLS client needs.
                _ => {}
            }
        }
        if holds_certificates && depth == 0 {
            self.contents
                .protection
                .certificate_encryption
                .push(encryption);
        }
        Ok(())
    }

    /// Decrypts with the known password form, or finds one: a form "works" when the padding
    /// checks and `valid` accepts the plaintext.
    fn decrypt(
        &mut self,
        algorithm: &spki::AlgorithmIdentifierOwned,
        ciphertext: &[u8],
        valid: impl Fn(&[u8]) -> bool,
    ) -> Result<Zeroizing<Vec<u8>>, IntakeError> {
        let forms = match self.form {
            Some(form) => vec![form],
            None => PasswordForm::candidates(self.password),
        };
        for form in forms {
            match crypt::decrypt(algorithm, ciphertext, self.password, form, &mut self.budget) {
                Ok(plain) if valid(&plain) => {
                    self.form = Some(form);
                    return Ok(plain);
                }
                Ok(_) | Err(DecryptError::WrongKey) => {}
                Err(DecryptError::Fatal(error)) => return Err(error),
            }
        }
        Err(IntakeError::WrongPassword)
    }
}

fn pkcs8_decodes(plain: &[u8]) -> bool {
    use der::Decode;
    pkcs8::PrivateKeyInfoRef::from_der(plain).is_ok()
}
