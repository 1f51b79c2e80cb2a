//! The secret store: where a certificate's PKCS#12 bytes and password live at rest. Two
//! backends behind one type ([`SecretStore`]): the embedded store ([`local`], AES-256-GCM,
//! ciphertext kept in the metadata database) and HashiCorp Vault KV v2 ([`vault`]).
//!
//! This is the only crate that touches key bytes at rest. Material in memory is
//! [`SecretMaterial`]: not `Serialize`, `Debug` prints nothing of it, zeroized on drop.
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
pub use vault::{VaultAuth, VaultOptions, VaultStore};

/// A boxed future, for the object-safe [`SealedBlobs`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the store keeps for one certificate: the original PKCS#12 file and its password.
pub struct SecretMaterial {
    pub p12: Zeroizing<Vec<u8>>,
    pub password: Zeroizing<String>,
}

impl fmt::Debug for SecretMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretMaterial(<redacted>)")
    }
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
    pub async fn put(
        &self,
        key: SecretKey<'_>,
        version: i64,
        material: &SecretMaterial,
    ) -> Result<Written, SecretError> {
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

    /// The material of `version` of `key`; the legacy layout stands in for a version never
    /// written as such. `None` when there is neither.
    pub async fn get(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<SecretMaterial>, SecretError> {
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
    pub async fn take_over(
        &self,
        key: SecretKey<'_>,
        version: i64,
        claim: &Claim,
        material: &SecretMaterial,
    ) -> Result<Written, SecretError> {
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

    /// Removes the `versions` of `key` (with [`Versions::Below`], the legacy layout too).
    /// Removing nothing is not an error.
    pub async fn remove(&self, key: SecretKey<'_>, versions: Versions) -> Result<(), SecretError> {
        mtls_metrics::timed("secret_store", "remove", async move {
            match self {
                SecretStore::Local(store) => store.remove(key, versions).await,
                SecretStore::Vault(store) => store.remove(key, versions).await,
            }
        })
        .await
    }

    /// Destroys every version of `key`, the legacy layout and the metadata. Destroying nothing
    /// is not an error.
    pub async fn destroy(&self, key: SecretKey<'_>) -> Result<(), SecretError> {
        mtls_metrics::timed("secret_store", "destroy", async move {
            match self {
                SecretStore::Local(store) => store.remove(key, Versions::All).await,
                SecretStore::Vault(store) => store.remove(key, Versions::All).await,
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

/// The byte layout both backends agree on for the plaintext: password length (u32, big-endian),
/// password (UTF-8), then the PKCS#12 bytes.
pub(crate) fn encode(material: &SecretMaterial) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let password = material.password.as_bytes();
    let length = u32::try_from(password.len())
        .map_err(|_| SecretError::Corrupt("password too long".to_owned()))?;
    let mut out = Zeroizing::new(Vec::with_capacity(4 + password.len() + material.p12.len()));
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(password);
    out.extend_from_slice(&material.p12);
    Ok(out)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<SecretMaterial, SecretError> {
    let corrupt = || SecretError::Corrupt("bad layout".to_owned());
    let (length, rest) = bytes.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let length = usize::try_from(u32::from_be_bytes(*length)).map_err(|_| corrupt())?;
    let (password, p12) = rest.split_at_checked(length).ok_or_else(corrupt)?;
    let password = std::str::from_utf8(password).map_err(|_| corrupt())?;
    Ok(SecretMaterial {
        p12: Zeroizing::new(p12.to_vec()),
        password: Zeroizing::new(password.to_owned()),
    })
}
