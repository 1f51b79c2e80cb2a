//! The secret store: where a certificate's PKCS#12 bytes and password live at rest. Two
//! backends behind one type ([`SecretStore`]): the embedded store ([`local`], AES-256-GCM,
//! ciphertext kept in the metadata database) and HashiCorp Vault KV v2 ([`vault`]).
//!
//! This is the only crate that touches key bytes at rest. Material in memory is a [`Secret`]:
//! a PKCS#12 file and its password ([`SecretMaterial`]) or a key the gateway made and its chain
//! ([`KeyMaterial`]); not `Serialize`, `Debug` prints nothing of it, zeroized on drop.
//!
//! A PKCS#12 version also has its **re-sealed identity** ([`SecretStore::put_identity`]): the
//! key and chain its intake parsed, in the [`KeyMaterial`] form, under the same protection as
//! the file (whose password is stored beside it), so that a cold load opens it without the
//! file's key derivations. Bound to its version and kind, removed with its version.
//!
//! Secrets are kept per certificate **version**: each version is written once, under its own
//! key, and never overwritten ([`SecretStore::put`] answers [`Written::Taken`] when the version
//! exists), so that the metadata row, whose conditional update names the live version, decides
//! which secret is live. A secret stored before versions existed (the legacy layout, one secret
//! per certificate) is read as the current version until the first replacement removes it.

pub mod local;
pub mod vault;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use zeroize::Zeroizing;

pub use local::{LocalStore, MasterKey, SealedBlob, SealedBlobs, Versions};
pub use vault::{VaultAuth, VaultOptions, VaultStore, answer_cap};

/// A boxed future, for the object-safe [`SealedBlobs`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the store keeps for a certificate uploaded as a PKCS#12 file: the original file and its
/// password (the form every secret had before keys made by the gateway, and still the one
/// [`SecretStore::get`] answers).
pub struct SecretMaterial {
    pub p12: Zeroizing<Vec<u8>>,
    pub password: Zeroizing<String>,
}

impl fmt::Debug for SecretMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretMaterial(<redacted>)")
    }
}

/// What the store keeps for a key the gateway made (SPEC 4.6): the PKCS#8 key, and once the
/// signed certificate is uploaded, the chain (PEM, leaf first). A pending request or renewal
/// has no chain. The key never leaves the gateway: no endpoint returns it.
pub struct KeyMaterial {
    pub pkcs8: Zeroizing<Vec<u8>>,
    pub chain_pem: Option<String>,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyMaterial(key=<redacted>, chain={})",
            if self.chain_pem.is_some() {
                "yes"
            } else {
                "none"
            }
        )
    }
}

/// One stored secret, in either form. A secret written before gateway-made keys existed carries
/// no form tag and reads as [`Secret::P12`].
#[derive(Debug)]
pub enum Secret {
    P12(SecretMaterial),
    Key(KeyMaterial),
}

/// A borrowed [`Secret`]: what [`SecretStore::put`] and [`SecretStore::take_over`] write. Made
/// from `&SecretMaterial`, `&KeyMaterial` or `&Secret`.
#[derive(Clone, Copy, Debug)]
pub enum MaterialRef<'a> {
    P12(&'a SecretMaterial),
    Key(&'a KeyMaterial),
}

impl<'a> From<&'a SecretMaterial> for MaterialRef<'a> {
    fn from(material: &'a SecretMaterial) -> Self {
        MaterialRef::P12(material)
    }
}

impl<'a> From<&'a KeyMaterial> for MaterialRef<'a> {
    fn from(material: &'a KeyMaterial) -> Self {
        MaterialRef::Key(material)
    }
}

impl<'a> From<&'a Secret> for MaterialRef<'a> {
    fn from(secret: &'a Secret) -> Self {
        match secret {
            Secret::P12(material) => MaterialRef::P12(material),
            Secret::Key(material) => MaterialRef::Key(material),
        }
    }
}

/// Where a pending renewal's key waits (SPEC 4.6): versions from here up are never a
/// certificate's live version (those count up from 1), so a replacement's claim of the next
/// version and its removal of the older ones ([`Versions::Below`]) never meet them, and the
/// legacy layout never stands in for them. [`Versions::All`] (delete) removes them too.
pub const RENEWAL_VERSIONS: i64 = 1 << 40;

/// A fresh version number for a renewal's key: [`RENEWAL_VERSIONS`] plus 31 random bits (a
/// [`Written::Taken`] on put means: draw again).
pub fn renewal_version() -> Result<i64, SecretError> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes)
        .map_err(|error| SecretError::Unavailable(format!("no randomness: {error}")))?;
    Ok(RENEWAL_VERSIONS + i64::from(u32::from_be_bytes(bytes) >> 1))
}

/// Whether the legacy layout stands in for `version` when that version was never written.
pub(crate) fn legacy_stands_in(version: i64) -> bool {
    version != LEGACY_VERSION && version < RENEWAL_VERSIONS
}

/// The namespace of OAuth app-key secrets (not a valid account id, so never a tenant's).
pub const APP_KEYS: &str = "~app-keys";

/// The version of an app key's secret: app keys are never replaced, only revoked.
pub const APP_KEY_VERSION: i64 = 1;

/// The version number under which the legacy layout is read: secrets written before secrets
/// were kept per version (one per certificate). Real versions start at 1.
pub const LEGACY_VERSION: i64 = 0;

/// Which secret: the certificate id within its account (or an app key's id in [`APP_KEYS`]).
/// The version is a separate argument: every call names the version it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretKey<'a> {
    pub account: &'a str,
    pub certificate_id: i64,
}

/// What [`SecretStore::put`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The version was new and now holds the material.
    Stored,
    /// The version already exists (another writer claimed it): nothing was written.
    Taken,
}

/// One write of a version, as found: when it happened, and what identifies that very write
/// (the embedded store's nonce, Vault's KV version number of the path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Unix seconds (0 when not recorded).
    pub written_at: i64,
    pub(crate) write: WriteId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WriteId {
    Nonce(Vec<u8>),
    KvVersion(u64),
}

/// A secret-store failure. The message is safe to log: no secret, no token, no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// The store cannot be reached or refused the call (down, sealed, forbidden, timeout).
    Unavailable(String),
    /// The stored value does not decrypt or decode: tampering, a wrong master key, corruption.
    Corrupt(String),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Unavailable(detail) => write!(f, "secret store unavailable: {detail}"),
            SecretError::Corrupt(detail) => write!(f, "stored secret unreadable: {detail}"),
        }
    }
}

impl std::error::Error for SecretError {}

/// The configured secret store.
#[derive(Debug)]
pub enum SecretStore {
    Local(LocalStore),
    Vault(Box<VaultStore>),
}

impl SecretStore {
    /// Writes `material` as `version` of `key`, only if that version does not exist yet: a
    /// version is written once, by the one writer that claimed it, and never overwritten.
    pub async fn put<'m>(
        &self,
        key: SecretKey<'_>,
        version: i64,
        material: impl Into<MaterialRef<'m>>,
    ) -> Result<Written, SecretError> {
        let material = material.into();
        if version <= LEGACY_VERSION {
            return Err(SecretError::Corrupt(format!(
                "version {version} is not writable"
            )));
        }
        mtls_metrics::timed("secret_store", "put", async move {
            match self {
                SecretStore::Local(store) => store.put(key, version, material).await,
                SecretStore::Vault(store) => store.put(key, version, material).await,
            }
        })
        .await
    }

    /// The PKCS#12 material of `version` of `key`; the legacy layout stands in for a version
    /// never written as such. `None` when there is neither. A gateway-made key is not PKCS#12
    /// material: it is an error here ([`SecretError::Corrupt`]); read it with
    /// [`SecretStore::get_secret`].
    pub async fn get(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<SecretMaterial>, SecretError> {
        match self.get_secret(key, version).await? {
            None => Ok(None),
            Some(Secret::P12(material)) => Ok(Some(material)),
            Some(Secret::Key(_)) => Err(SecretError::Corrupt(
                "the secret is a key made by the gateway, not a PKCS#12 file".to_owned(),
            )),
        }
    }

    /// The secret of `version` of `key`, in either form; the legacy layout stands in for a
    /// certificate version never written as such (not for a renewal's, [`RENEWAL_VERSIONS`]).
    /// `None` when there is neither.
    pub async fn get_secret(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<Secret>, SecretError> {
        mtls_metrics::timed("secret_store", "get", async move {
            match self {
                SecretStore::Local(store) => store.get(key, version).await,
                SecretStore::Vault(store) => store.get(key, version).await,
            }
        })
        .await
    }

    /// Whether [`SecretStore::get`] would find material, without reading it.
    pub async fn exists(&self, key: SecretKey<'_>, version: i64) -> Result<bool, SecretError> {
        mtls_metrics::timed("secret_store", "exists", async move {
            match self {
                SecretStore::Local(store) => store.exists(key, version).await,
                SecretStore::Vault(store) => store.exists(key, version).await,
            }
        })
        .await
    }

    /// The write that holds `version` of `key`, `None` when the version does not exist: how a
    /// writer tells a claim in progress from one its writer abandoned.
    pub async fn claim(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<Claim>, SecretError> {
        mtls_metrics::timed("secret_store", "claim", async move {
            match self {
                SecretStore::Local(store) => store.claim(key, version).await,
                SecretStore::Vault(store) => store.claim(key, version).await,
            }
        })
        .await
    }

    /// Replaces the abandoned `claim` of `version` with `material`, only if that very write
    /// still holds the version (compare-and-swap): of two writers taking over the same claim,
    /// one gets [`Written::Stored`], the other [`Written::Taken`].
    pub async fn take_over<'m>(
        &self,
        key: SecretKey<'_>,
        version: i64,
        claim: &Claim,
        material: impl Into<MaterialRef<'m>>,
    ) -> Result<Written, SecretError> {
        let material = material.into();
        if version <= LEGACY_VERSION {
            return Err(SecretError::Corrupt(format!(
                "version {version} is not writable"
            )));
        }
        mtls_metrics::timed("secret_store", "take_over", async move {
            match self {
                SecretStore::Local(store) => store.take_over(key, version, claim, material).await,
                SecretStore::Vault(store) => store.take_over(key, version, claim, material).await,
            }
        })
        .await
    }

    /// Removes the `versions` of `key` (with [`Versions::Below`], the legacy layout too), and
    /// the identities re-sealed from them. Removing nothing is not an error.
    pub async fn remove(&self, key: SecretKey<'_>, versions: Versions) -> Result<(), SecretError> {
        mtls_metrics::timed("secret_store", "remove", async move {
            match self {
                SecretStore::Local(store) => store.remove(key, versions).await,
                SecretStore::Vault(store) => store.remove(key, versions).await,
            }
        })
        .await
    }

    /// Destroys every version of `key`, the legacy layout, every re-sealed identity and the
    /// metadata. Destroying nothing is not an error.
    pub async fn destroy(&self, key: SecretKey<'_>) -> Result<(), SecretError> {
        mtls_metrics::timed("secret_store", "destroy", async move {
            match self {
                SecretStore::Local(store) => store.remove(key, Versions::All).await,
                SecretStore::Vault(store) => store.remove(key, Versions::All).await,
            }
        })
        .await
    }

    /// Writes the identity re-sealed from `version`'s PKCS#12 file (its key and chain as the
    /// intake parsed them), only if that version has none yet: written once, like the version.
    /// Kept apart from the version's own secret (another row, another path) and bound to its
    /// account, certificate, version and kind: it never opens as anything else, and nothing
    /// opens as it. Read only by the forward path's cold load ([`SecretStore::identity`]).
    pub async fn put_identity(
        &self,
        key: SecretKey<'_>,
        version: i64,
        identity: &KeyMaterial,
    ) -> Result<Written, SecretError> {
        if version <= LEGACY_VERSION || identity.chain_pem.is_none() {
            return Err(SecretError::Corrupt(format!(
                "no identity is written for version {version} without a chain"
            )));
        }
        mtls_metrics::timed("secret_store", "put_identity", async move {
            match self {
                SecretStore::Local(store) => store.put_identity(key, version, identity).await,
                SecretStore::Vault(store) => store.put_identity(key, version, identity).await,
            }
        })
        .await
    }

    /// The identity re-sealed from `version`'s PKCS#12 file, `None` when there is none (a
    /// certificate stored before identities were, a gateway-made key, or a version removed).
    /// Exactly that version: the legacy layout never stands in.
    pub async fn identity(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<KeyMaterial>, SecretError> {
        mtls_metrics::timed("secret_store", "get_identity", async move {
            match self {
                SecretStore::Local(store) => store.identity(key, version).await,
                SecretStore::Vault(store) => store.identity(key, version).await,
            }
        })
        .await
    }

    /// Removes the re-sealed identities of the `versions` of `key`, and only those (the
    /// versions' own secrets stay): how a writer drops an identity it cannot trust (an
    /// abandoned claim's, an unreadable one). [`SecretStore::remove`] and
    /// [`SecretStore::destroy`] remove identities with their versions.
    pub async fn remove_identities(
        &self,
        key: SecretKey<'_>,
        versions: Versions,
    ) -> Result<(), SecretError> {
        mtls_metrics::timed("secret_store", "remove_identities", async move {
            match self {
                SecretStore::Local(store) => store.remove_identities(key, versions).await,
                SecretStore::Vault(store) => store.remove_identities(key, versions).await,
            }
        })
        .await
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn check(&self) -> Result<(), SecretError> {
        mtls_metrics::timed("secret_store", "check", async move {
            match self {
                SecretStore::Local(store) => store.check().await,
                SecretStore::Vault(store) => store.check().await,
            }
        })
        .await
    }

    /// `local` or `vault`, for logs and `/readyz`.
    pub fn backend(&self) -> &'static str {
        match self {
            SecretStore::Local(_) => "local",
            SecretStore::Vault(_) => "vault",
        }
    }
}

/// The byte layout both backends agree on for the plaintext. The PKCS#12 form, unchanged since
/// the first release (and so without a tag): password length (u32, big-endian), password
/// (UTF-8), then the PKCS#12 bytes. The gateway-made key form starts with [`KEY_FORM_TAG`]
/// (a password length no stored secret can have: the blob would be 4 GiB), then the key
/// length (u32, big-endian), the PKCS#8 key, and the chain PEM (UTF-8, empty: none yet).
pub(crate) fn encode(material: MaterialRef<'_>) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    match material {
        MaterialRef::P12(material) => {
            let password = material.password.as_bytes();
            let length = u32::try_from(password.len())
                .ok()
                .filter(|length| *length != u32::MAX)
                .ok_or_else(|| SecretError::Corrupt("password too long".to_owned()))?;
            let mut out =
                Zeroizing::new(Vec::with_capacity(4 + password.len() + material.p12.len()));
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(password);
            out.extend_from_slice(&material.p12);
            Ok(out)
        }
        MaterialRef::Key(material) => {
            let length = u32::try_from(material.pkcs8.len())
                .map_err(|_| SecretError::Corrupt("key too long".to_owned()))?;
            let chain = material.chain_pem.as_deref().unwrap_or("").as_bytes();
            let mut out =
                Zeroizing::new(Vec::with_capacity(9 + material.pkcs8.len() + chain.len()));
            out.extend_from_slice(&KEY_FORM_TAG);
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(&material.pkcs8);
            out.extend_from_slice(chain);
            Ok(out)
        }
    }
}

/// The first bytes of a gateway-made key's plaintext (see [`encode`]): `FF FF FF FF` then `K`.
pub(crate) const KEY_FORM_TAG: [u8; 5] = [0xFF, 0xFF, 0xFF, 0xFF, b'K'];

pub(crate) fn decode(bytes: &[u8]) -> Result<Secret, SecretError> {
    let corrupt = || SecretError::Corrupt("bad layout".to_owned());
    if let Some(rest) = bytes.strip_prefix(&KEY_FORM_TAG) {
        let (length, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let length = usize::try_from(u32::from_be_bytes(*length)).map_err(|_| corrupt())?;
        let (pkcs8, chain) = rest.split_at_checked(length).ok_or_else(corrupt)?;
        let chain = std::str::from_utf8(chain).map_err(|_| corrupt())?;
        return Ok(Secret::Key(KeyMaterial {
            pkcs8: Zeroizing::new(pkcs8.to_vec()),
            chain_pem: (!chain.is_empty()).then(|| chain.to_owned()),
        }));
    }
    let (length, rest) = bytes.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let length = usize::try_from(u32::from_be_bytes(*length)).map_err(|_| corrupt())?;
    let (password, p12) = rest.split_at_checked(length).ok_or_else(corrupt)?;
    let password = std::str::from_utf8(password).map_err(|_| corrupt())?;
    Ok(Secret::P12(SecretMaterial {
        p12: Zeroizing::new(p12.to_vec()),
        password: Zeroizing::new(password.to_owned()),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn p12(text: &str) -> SecretMaterial {
        SecretMaterial {
            p12: Zeroizing::new(text.as_bytes().to_vec()),
            password: Zeroizing::new(format!("pw {text}")),
        }
    }

    #[test]
    fn both_forms_round_trip_and_the_untagged_layout_is_pkcs12() {
        // The layout written before the form existed: length, password, file.
        let mut old = 3u32.to_be_bytes().to_vec();
        old.extend_from_slice(b"pwdFILE");
        let Secret::P12(read) = decode(&old).unwrap() else {
            panic!("an untagged secret is PKCS#12")
        };
        assert_eq!(
            (read.password.as_str(), read.p12.as_slice()),
            ("pwd", &b"FILE"[..])
        );
        assert_eq!(encode((&p12("x")).into()).unwrap().as_slice(), {
            let mut expected = 4u32.to_be_bytes().to_vec();
            expected.extend_from_slice(b"pw xx");
            expected
        });

        for chain in [None, Some("-----BEGIN CERTIFICATE-----\n...\n".to_owned())] {
            let key = KeyMaterial {
                pkcs8: Zeroizing::new(vec![0x30, 1, 2, 3]),
                chain_pem: chain.clone(),
            };
            let bytes = encode((&key).into()).unwrap();
            let Secret::Key(back) = decode(&bytes).unwrap() else {
                panic!("a tagged secret is a key")
            };
            assert_eq!(back.pkcs8.as_slice(), &[0x30, 1, 2, 3]);
            assert_eq!(back.chain_pem, chain);
        }
        assert!(decode(&KEY_FORM_TAG).is_err());
        assert!(decode(&[0xFF, 0xFF, 0xFF, 0xFF, b'K', 0, 0, 0, 9, 1]).is_err());
    }

    #[test]
    fn hostile_blobs_are_errors_or_secrets_never_panics() {
        let key = KeyMaterial {
            pkcs8: Zeroizing::new(vec![0x30, 1, 2, 3]),
            chain_pem: Some("PEM".to_owned()),
        };
        for blob in [
            encode((&key).into()).unwrap(),
            encode((&p12("x")).into()).unwrap(),
        ] {
            // Every truncation, and every byte of the lengths and tag set to each edge value.
            for end in 0..=blob.len() {
                let _ = decode(blob.get(..end).unwrap());
            }
            for at in 0..blob.len().min(9) {
                for value in [0x00, 0x7F, 0x80, 0xFF, b'K'] {
                    let mut bad = blob.to_vec();
                    if let Some(byte) = bad.get_mut(at) {
                        *byte = value;
                    }
                    let _ = decode(&bad);
                }
            }
        }
        // A length past the end, and a chain that is not UTF-8, in the key form.
        let mut long = KEY_FORM_TAG.to_vec();
        long.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&long).is_err());
        let mut not_text = KEY_FORM_TAG.to_vec();
        not_text.extend_from_slice(&[0, 0, 0, 1, 0x30, 0xFF]);
        assert!(decode(&not_text).is_err());
    }

    #[test]
    fn debug_prints_no_key() {
        let key = KeyMaterial {
            pkcs8: Zeroizing::new(b"SECRETKEY".to_vec()),
            chain_pem: None,
        };
        let text = format!(
            "{:?} {:?}",
            Secret::Key(key),
            Secret::P12(p12("SECRETFILE"))
        );
        assert!(!text.contains("SECRET"), "{text}");
    }

    #[test]
    fn renewal_versions_are_out_of_the_certificate_range() {
        for _ in 0..32 {
            let version = renewal_version().unwrap();
            assert!((RENEWAL_VERSIONS..RENEWAL_VERSIONS + (1 << 31)).contains(&version));
            assert!(!legacy_stands_in(version));
        }
        assert!(legacy_stands_in(1));
        assert!(!legacy_stands_in(LEGACY_VERSION));
    }
}
