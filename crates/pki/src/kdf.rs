//! The PKCS#12 key derivation of RFC 7292 appendix B, and the password encodings it runs on.

use sha1::Digest;
use zeroize::Zeroizing;

/// What the derived bytes are for (RFC 7292 B.3, the "ID" byte).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    Key = 1,
    Iv = 2,
    Mac = 3,
}

/// How a password is turned into the bytes PKCS#12's own KDF hashes. OpenSSL tries these in
/// this order, and so do we.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordForm {
    /// UTF-16BE with a two-byte terminator: what every current writer does.
    Bmp,
    /// Zero bytes: files written with no password at all (`NULL`, not `""`).
    Absent,
    /// Each UTF-8 byte widened to 16 bits: what OpenSSL before 1.1 wrote for non-ASCII passwords.
    LegacyBytes,
}

impl PasswordForm {
    /// The forms worth trying for `password`, most likely first.
    pub fn candidates(password: &str) -> Vec<PasswordForm> {
        let mut forms = vec![PasswordForm::Bmp];
        if password.is_empty() {
            forms.push(PasswordForm::Absent);
        }
        if !password.is_ascii() {
            forms.push(PasswordForm::LegacyBytes);
        }
        forms
    }

    /// The bytes the PKCS#12 KDF hashes for `password` in this form.
    pub fn encode(self, password: &str) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(password.len() * 2 + 2));
        match self {
            PasswordForm::Absent => return out,
            PasswordForm::Bmp => {
                for unit in password.encode_utf16() {
                    out.extend_from_slice(&unit.to_be_bytes());
                }
            }
            PasswordForm::LegacyBytes => {
                for byte in password.bytes() {
                    out.extend_from_slice(&[0, byte]);
                }
            }
        }
        out.extend_from_slice(&[0, 0]);
        out
    }

    /// The bytes PBKDF2 (PBES2) uses for `password` in this form: the UTF-8 text, which is
    /// empty both for `""` and for an absent password.
    pub fn pbkdf2_bytes(self, password: &str) -> &[u8] {
        match self {
            PasswordForm::Absent => &[],
            PasswordForm::Bmp | PasswordForm::LegacyBytes => password.as_bytes(),
        }
    }
}

/// RFC 7292 B.2 with hash `D` (block size `block_len` bytes): `output_len` bytes derived from
/// the encoded password, the salt and `iterations` rounds. The caller has checked the cost.
pub(crate) fn derive<D: Digest>(
    password: &[u8],
    salt: &[u8],
    purpose: Purpose,
    iterations: u32,
    output_len: usize,
    block_len: usize,
) -> Zeroizing<Vec<u8>> {
    let hash_len = <D as Digest>::output_size();
    let diversifier = vec![purpose as u8; block_len];
    let mut input = Zeroizing::new(Vec::new());
    input.extend(stretch(salt, block_len).iter());
    input.extend(stretch(password, block_len).iter());

    let mut output = Zeroizing::new(Vec::with_capacity(output_len + hash_len));
    while output.len() < output_len {
        let mut hasher = D::new();
        hasher.update(&diversifier);
        hasher.update(input.as_slice());
        let mut block = Zeroizing::new(hasher.finalize().to_vec());
        for _ in 1..iterations.max(1) {
            let next = D::digest(block.as_slice());
            block.copy_from_slice(&next);
        }
        output.extend_from_slice(&block);
        if output.len() >= output_len {
            break;
        }
        let filler = stretch(&block, block_len);
        for chunk in input.chunks_mut(block_len) {
            add_one_plus(chunk, &filler);
        }
    }
    output.truncate(output_len);
    output
}

/// `data` repeated to fill whole blocks of `block_len` bytes (empty stays empty).
fn stretch(data: &[u8], block_len: usize) -> Zeroizing<Vec<u8>> {
    if data.is_empty() {
        return Zeroizing::new(Vec::new());
    }
    let len = data.len().div_ceil(block_len) * block_len;
    Zeroizing::new(data.iter().copied().cycle().take(len).collect())
}

/// `chunk = (chunk + addend + 1) mod 2^(8 * len)`, big-endian.
fn add_one_plus(chunk: &mut [u8], addend: &[u8]) {
    let mut carry: u16 = 1;
    for (byte, add) in chunk.iter_mut().rev().zip(addend.iter().rev()) {
        let sum = u16::from(*byte) + u16::from(*add) + carry;
        *byte = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vector from the pkcs12 KDF test suites (password "smeg", as BMPString).
    #[test]
    fn matches_known_sha1_vectors() {
        let password = PasswordForm::Bmp.encode("smeg");
        let salt = [0x0A, 0x58, 0xCF, 0x64, 0x53, 0x0D, 0x82, 0x3F];
        let key = derive::<sha1::Sha1>(&password, &salt, Purpose::Key, 1, 24, 64);
        assert_eq!(
            key.as_slice(),
            [
                0x8A, 0xAA, 0xE6, 0x29, 0x7B, 0x6C, 0xB0, 0x46, 0x42, 0xAB, 0x5B, 0x07, 0x78, 0x51,
                0x28, 0x4E, 0xB7, 0x12, 0x8F, 0x1A, 0x2A, 0x7F, 0xBC, 0xA3
            ]
        );
        let iv = derive::<sha1::Sha1>(&password, &salt, Purpose::Iv, 1, 8, 64);
        assert_eq!(
            iv.as_slice(),
            [0x79, 0x99, 0x3D, 0xFE, 0x04, 0x8D, 0x3B, 0x76]
        );
    }

    #[test]
    fn password_forms() {
        assert_eq!(PasswordForm::Bmp.encode("").as_slice(), [0, 0]);
        assert!(PasswordForm::Absent.encode("").is_empty());
        assert_eq!(PasswordForm::Bmp.encode("é").as_slice(), [0, 0xE9, 0, 0]);
        assert_eq!(
            PasswordForm::LegacyBytes.encode("é").as_slice(),
            [0, 0xC3, 0, 0xA9, 0, 0]
        );
        assert_eq!(
            PasswordForm::candidates(""),
            [PasswordForm::Bmp, PasswordForm::Absent]
        );
        assert_eq!(
            PasswordForm::candidates("é"),
            [PasswordForm::Bmp, PasswordForm::LegacyBytes]
        );
    }
}
