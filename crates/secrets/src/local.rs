//! The embedded secret store: AES-256-GCM with a random 96-bit nonce per write, the additional
//! data binding each ciphertext to its account, certificate and version (a blob copied to
//! another row or another version does not open), ciphertext kept in the metadata database
//! through [`SealedBlobs`]. A blob of the legacy layout ([`crate::LEGACY_VERSION`], written
//! before versions existed) was bound to account and certificate only, and opens only as that.
//! A version's re-sealed identity is sealed the same way under its own additional data
//! (`mtls-gateway/identity/v1/...`) and kept apart (`SealedBlobs::insert_identity`): it opens
//! only as the identity of its version, and no version's secret opens as an identity.

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{
    BoxFuture, Claim, KeyMaterial, LEGACY_VERSION, MaterialRef, Secret, SecretError, SecretKey,
    WriteId, Written,
};

/// One sealed secret as the database keeps it.
#[derive(Clone, Debug)]
pub struct SealedBlob {
    /// The certificate version it belongs to ([`LEGACY_VERSION`] for the legacy layout).
    pub version: i64,
    /// Which master key sealed it (for key rotation).
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    /// When it was written, Unix seconds (0 for the legacy layout, which did not record it).
    pub written_at: i64,
}

/// Which versions of a secret a removal means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versions {
    /// Exactly this version.
    One(i64),
    /// Every version below this one, the legacy layout included.
    Below(i64),
    /// Every version and the legacy layout.
    All,
}

/// Where sealed blobs are kept: implemented by the metadata store (the only crate writing SQL).
pub trait SealedBlobs: Send + Sync + fmt::Debug {
    /// Inserts `blob` as its version of `key`; `false` (and nothing written) when that version
    /// exists already. Never overwrites.
    fn insert_blob<'a>(
        &'a self,
        key: SecretKey<'a>,
        blob: SealedBlob,
    ) -> BoxFuture<'a, Result<bool, String>>;
    /// Replaces `blob`'s version of `key` only if the row there still has `expected_nonce`
    /// (nonces are random per write, so that names one write); `false` otherwise.
    fn replace_blob<'a>(
        &'a self,
        key: SecretKey<'a>,
        blob: SealedBlob,
        expected_nonce: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, String>>;
    /// Exactly `version` of `key`.
    fn blob<'a>(
        &'a self,
        key: SecretKey<'a>,
        version: i64,
    ) -> BoxFuture<'a, Result<Option<SealedBlob>, String>>;
    fn delete_blobs<'a>(
        &'a self,
        key: SecretKey<'a>,
        versions: Versions,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Inserts `blob` as the re-sealed identity of its version of `key` (kept apart from the
    /// versions' own blobs); `false` (and nothing written) when that version has one already.
    fn insert_identity<'a>(
        &'a self,
        key: SecretKey<'a>,
        blob: SealedBlob,
    ) -> BoxFuture<'a, Result<bool, String>>;
    /// The re-sealed identity of exactly `version` of `key`.
    fn identity_blob<'a>(
        &'a self,
        key: SecretKey<'a>,
        version: i64,
    ) -> BoxFuture<'a, Result<Option<SealedBlob>, String>>;
    /// Deletes the re-sealed identities of the `versions` of `key`.
    fn delete_identities<'a>(
        &'a self,
        key: SecretKey<'a>,
        versions: Versions,
    ) -> BoxFuture<'a, Result<(), String>>;
    fn ping(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The 256-bit master key. `Debug` prints only its id.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
    id: String,
}

impl MasterKey {
    /// From 32 raw bytes.
    pub fn new(key: Zeroizing<[u8; 32]>) -> Self {
        let digest = Sha256::digest(key.as_slice());
        let id = digest
            .iter()
            .take(8)
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Self { key, id }
    }

    /// From 64 hexadecimal characters (the key file's format).
    pub fn from_hex(text: &[u8]) -> Result<Self, String> {
        let text = text.trim_ascii();
        if text.len() != 64 {
            return Err("the master key must be 64 hexadecimal characters (32 bytes)".to_owned());
        }
        let mut key = Zeroizing::new([0u8; 32]);
        for (slot, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
            let hex = std::str::from_utf8(pair)
                .map_err(|_| "the master key is not hexadecimal".to_owned())?;
            *slot = u8::from_str_radix(hex, 16)
                .map_err(|_| "the master key is not hexadecimal".to_owned())?;
        }
        Ok(Self::new(key))
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id={})", self.id)
    }
}

/// The embedded store.
#[derive(Debug)]
pub struct LocalStore {
    master: MasterKey,
    blobs: Arc<dyn SealedBlobs>,
}

/// The additional data of a blob: what it may be opened as. Version 0 is the legacy layout's
/// text, which did not name a version.
fn additional_data(key: SecretKey<'_>, version: i64) -> Vec<u8> {
    if version == LEGACY_VERSION {
        return format!(
            "mtls-gateway/sealed/v1/{}/{}",
            key.account, key.certificate_id
        )
        .into_bytes();
    }
    format!(
        "mtls-gateway/sealed/v2/{}/{}/{version}",
        key.account, key.certificate_id
    )
    .into_bytes()
}

/// The additional data of a re-sealed identity: its own kind, so that it never opens as a
/// version's secret (nor a version's secret as it), and its version.
fn identity_additional_data(key: SecretKey<'_>, version: i64) -> Vec<u8> {
    format!(
        "mtls-gateway/identity/v1/{}/{}/{version}",
        key.account, key.certificate_id
    )
    .into_bytes()
}

impl LocalStore {
    pub fn new(master: MasterKey, blobs: Arc<dyn SealedBlobs>) -> Self {
        Self { master, blobs }
    }

    fn cipher(&self) -> Result<Aes256Gcm, SecretError> {
        Aes256Gcm::new_from_slice(self.master.key.as_slice())
            .map_err(|_| SecretError::Corrupt("master key length".to_owned()))
    }

    /// Seals `material` as `version` of `key` (no IO).
    fn seal(
        &self,
        key: SecretKey<'_>,
        version: i64,
        material: MaterialRef<'_>,
    ) -> Result<SealedBlob, SecretError> {
        self.seal_with(version, material, &additional_data(key, version))
    }

    /// Seals `material` under the additional data `aad`, as a blob of `version`.
    fn seal_with(
        &self,
        version: i64,
        material: MaterialRef<'_>,
        aad: &[u8],
    ) -> Result<SealedBlob, SecretError> {
        let plaintext = crate::encode(material)?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce)
            .map_err(|error| SecretError::Unavailable(format!("no randomness: {error}")))?;
        let ciphertext = self
            .cipher()?
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plaintext,
                    aad,
                },
            )
            .map_err(|_| SecretError::Corrupt("encryption failed".to_owned()))?;
        Ok(SealedBlob {
            version,
            key_id: self.master.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
            written_at: unix_now(),
        })
    }

    /// Opens `blob` as `version` of `key`: the version asked for, not the one the row claims,
    /// goes into the additional data, so a blob moved to another version does not open.
    fn open(
        &self,
        key: SecretKey<'_>,
        version: i64,
        blob: &SealedBlob,
    ) -> Result<Secret, SecretError> {
        self.open_with(blob, &additional_data(key, version))
    }

    /// Opens `blob` under the additional data `aad`.
    fn open_with(&self, blob: &SealedBlob, aad: &[u8]) -> Result<Secret, SecretError> {
        if blob.key_id != self.master.id {
            return Err(SecretError::Corrupt(format!(
                "sealed with master key {}, but the configured key is {}",
                blob.key_id, self.master.id
            )));
        }
        let nonce: [u8; 12] = blob
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| SecretError::Corrupt("nonce length".to_owned()))?;
        let plaintext = Zeroizing::new(
            self.cipher()?
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &blob.ciphertext,
                        aad,
                    },
                )
                .map_err(|_| SecretError::Corrupt("authentication failed".to_owned()))?,
        );
        crate::decode(&plaintext)
    }

    pub async fn put<'m>(
        &self,
        key: SecretKey<'_>,
        version: i64,
        material: impl Into<MaterialRef<'m>>,
    ) -> Result<Written, SecretError> {
        let blob = self.seal(key, version, material.into())?;
        let inserted = self
            .blobs
            .insert_blob(key, blob)
            .await
            .map_err(SecretError::Unavailable)?;
        Ok(if inserted {
            Written::Stored
        } else {
            Written::Taken
        })
    }

    /// `version`'s blob, or the legacy layout's standing in for it, with the version to open
    /// it as.
    async fn find(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<(i64, SealedBlob)>, SecretError> {
        for candidate in [version, LEGACY_VERSION] {
            if let Some(blob) = self
                .blobs
                .blob(key, candidate)
                .await
                .map_err(SecretError::Unavailable)?
            {
                return Ok(Some((candidate, blob)));
            }
            if !crate::legacy_stands_in(version) {
                break;
            }
        }
        Ok(None)
    }

    pub async fn get(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<Secret>, SecretError> {
        match self.find(key, version).await? {
            Some((opened_as, blob)) => self.open(key, opened_as, &blob).map(Some),
            None => Ok(None),
        }
    }

    pub async fn exists(&self, key: SecretKey<'_>, version: i64) -> Result<bool, SecretError> {
        Ok(self.find(key, version).await?.is_some())
    }

    pub async fn claim(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<Claim>, SecretError> {
        Ok(self
            .blobs
            .blob(key, version)
            .await
            .map_err(SecretError::Unavailable)?
            .map(|blob| Claim {
                written_at: blob.written_at,
                write: WriteId::Nonce(blob.nonce),
            }))
    }

    pub async fn take_over<'m>(
        &self,
        key: SecretKey<'_>,
        version: i64,
        claim: &Claim,
        material: impl Into<MaterialRef<'m>>,
    ) -> Result<Written, SecretError> {
        let WriteId::Nonce(expected) = &claim.write else {
            return Ok(Written::Taken);
        };
        let blob = self.seal(key, version, material.into())?;
        let replaced = self
            .blobs
            .replace_blob(key, blob, expected)
            .await
            .map_err(SecretError::Unavailable)?;
        Ok(if replaced {
            Written::Stored
        } else {
            Written::Taken
        })
    }

    /// Removes the versions and their re-sealed identities (the identities first: a failure
    /// part-way leaves a version's own secret, the source, never an identity without it).
    pub async fn remove(&self, key: SecretKey<'_>, versions: Versions) -> Result<(), SecretError> {
        self.remove_identities(key, versions).await?;
        self.blobs
            .delete_blobs(key, versions)
            .await
            .map_err(SecretError::Unavailable)
    }

    pub async fn put_identity(
        &self,
        key: SecretKey<'_>,
        version: i64,
        identity: &KeyMaterial,
    ) -> Result<Written, SecretError> {
        let blob = self.seal_with(
            version,
            MaterialRef::Key(identity),
            &identity_additional_data(key, version),
        )?;
        let inserted = self
            .blobs
            .insert_identity(key, blob)
            .await
            .map_err(SecretError::Unavailable)?;
        Ok(if inserted {
            Written::Stored
        } else {
            Written::Taken
        })
    }

    /// Opens the identity as `version` of `key`, the version asked for (not the row's column)
    /// in the additional data.
    pub async fn identity(
        &self,
        key: SecretKey<'_>,
        version: i64,
    ) -> Result<Option<KeyMaterial>, SecretError> {
        let Some(blob) = self
            .blobs
            .identity_blob(key, version)
            .await
            .map_err(SecretError::Unavailable)?
        else {
            return Ok(None);
        };
        match self.open_with(&blob, &identity_additional_data(key, version))? {
            Secret::Key(identity) if identity.chain_pem.is_some() => Ok(Some(identity)),
            _ => Err(SecretError::Corrupt(
                "a re-sealed identity without its key and chain".to_owned(),
            )),
        }
    }

    pub async fn remove_identities(
        &self,
        key: SecretKey<'_>,
        versions: Versions,
    ) -> Result<(), SecretError> {
        self.blobs
            .delete_identities(key, versions)
            .await
            .map_err(SecretError::Unavailable)
    }

    pub async fn check(&self) -> Result<(), SecretError> {
        self.blobs.ping().await.map_err(SecretError::Unavailable)
    }
}

/// Unix seconds now (0 if the clock is before 1970, which only makes a claim look old).
// The secret store stamps a version claim with the time it is written, read by every node to
// judge an abandoned claim: the wall clock of the write itself, not a caller's `now`.
#[allow(clippy::disallowed_methods)]
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::{KeyMaterial, SecretMaterial};

    /// Blobs in memory, keyed like the database table: (account, certificate, version).
    #[derive(Debug, Default)]
    struct Memory {
        rows: Mutex<BTreeMap<(String, i64, i64), SealedBlob>>,
        identities: Mutex<BTreeMap<(String, i64, i64), SealedBlob>>,
    }

    /// Inserts `blob` as its version of `key` unless that row exists (`false` then).
    fn insert_new(
        rows: &Mutex<BTreeMap<(String, i64, i64), SealedBlob>>,
        key: SecretKey<'_>,
        blob: SealedBlob,
    ) -> bool {
        let mut rows = rows.lock().unwrap();
        let row = Memory::row(key, blob.version);
        let inserted = !rows.contains_key(&row);
        if inserted {
            rows.insert(row, blob);
        }
        inserted
    }

    /// Keeps the rows of `key` that `versions` does not name.
    fn retain(
        rows: &Mutex<BTreeMap<(String, i64, i64), SealedBlob>>,
        key: SecretKey<'_>,
        versions: Versions,
    ) {
        rows.lock().unwrap().retain(|(account, id, version), _| {
            let ours = account == key.account && *id == key.certificate_id;
            !ours
                || match versions {
                    Versions::One(one) => *version != one,
                    Versions::Below(bound) => *version >= bound,
                    Versions::All => false,
                }
        });
    }

    impl Memory {
        fn row(key: SecretKey<'_>, version: i64) -> (String, i64, i64) {
            (key.account.to_owned(), key.certificate_id, version)
        }

        fn take(&self, key: SecretKey<'_>, version: i64) -> SealedBlob {
            self.rows
                .lock()
                .unwrap()
                .remove(&Self::row(key, version))
                .unwrap()
        }

        fn place(&self, key: SecretKey<'_>, version: i64, blob: SealedBlob) {
            self.rows
                .lock()
                .unwrap()
                .insert(Self::row(key, version), SealedBlob { version, ..blob });
        }

        fn versions(&self, key: SecretKey<'_>) -> Vec<i64> {
            self.rows
                .lock()
                .unwrap()
                .keys()
                .filter(|(account, id, _)| account == key.account && *id == key.certificate_id)
                .map(|(_, _, version)| *version)
                .collect()
        }
    }

    impl SealedBlobs for Memory {
        fn insert_blob<'a>(
            &'a self,
            key: SecretKey<'a>,
            blob: SealedBlob,
        ) -> BoxFuture<'a, Result<bool, String>> {
            let inserted = insert_new(&self.rows, key, blob);
            Box::pin(async move { Ok(inserted) })
        }

        fn replace_blob<'a>(
            &'a self,
            key: SecretKey<'a>,
            blob: SealedBlob,
            expected_nonce: &'a [u8],
        ) -> BoxFuture<'a, Result<bool, String>> {
            let mut rows = self.rows.lock().unwrap();
            let replaced = match rows.get_mut(&Self::row(key, blob.version)) {
                Some(row) if row.nonce == expected_nonce => {
                    *row = blob;
                    true
                }
                _ => false,
            };
            Box::pin(async move { Ok(replaced) })
        }

        fn blob<'a>(
            &'a self,
            key: SecretKey<'a>,
            version: i64,
        ) -> BoxFuture<'a, Result<Option<SealedBlob>, String>> {
            let found = self
                .rows
                .lock()
                .unwrap()
                .get(&Self::row(key, version))
                .cloned();
            Box::pin(async move { Ok(found) })
        }

        fn delete_blobs<'a>(
            &'a self,
            key: SecretKey<'a>,
            versions: Versions,
        ) -> BoxFuture<'a, Result<(), String>> {
            retain(&self.rows, key, versions);
            Box::pin(async { Ok(()) })
        }

        fn insert_identity<'a>(
            &'a self,
            key: SecretKey<'a>,
            blob: SealedBlob,
        ) -> BoxFuture<'a, Result<bool, String>> {
            let inserted = insert_new(&self.identities, key, blob);
            Box::pin(async move { Ok(inserted) })
        }

        fn identity_blob<'a>(
            &'a self,
            key: SecretKey<'a>,
            version: i64,
        ) -> BoxFuture<'a, Result<Option<SealedBlob>, String>> {
            let found = self
                .identities
                .lock()
                .unwrap()
                .get(&Self::row(key, version))
                .cloned();
            Box::pin(async move { Ok(found) })
        }

        fn delete_identities<'a>(
            &'a self,
            key: SecretKey<'a>,
            versions: Versions,
        ) -> BoxFuture<'a, Result<(), String>> {
            retain(&self.identities, key, versions);
            Box::pin(async { Ok(()) })
        }

        fn ping(&self) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
    }

    const KEY: SecretKey<'static> = SecretKey {
        account: "12345678",
        certificate_id: 42,
    };

    fn store() -> (LocalStore, Arc<Memory>) {
        let memory = Arc::new(Memory::default());
        let master = MasterKey::new(Zeroizing::new([7u8; 32]));
        (LocalStore::new(master, memory.clone()), memory)
    }

    fn material(text: &str) -> SecretMaterial {
        SecretMaterial {
            p12: Zeroizing::new(text.as_bytes().to_vec()),
            password: Zeroizing::new(format!("password of {text}")),
        }
    }

    async fn read(store: &LocalStore, key: SecretKey<'_>, version: i64) -> Option<Vec<u8>> {
        match store.get(key, version).await.unwrap() {
            Some(Secret::P12(material)) => Some(material.p12.to_vec()),
            Some(Secret::Key(material)) => Some(material.pkcs8.to_vec()),
            None => None,
        }
    }

    #[tokio::test]
    async fn a_blob_of_one_version_does_not_open_as_another() {
        let (store, memory) = store();
        store.put(KEY, 2, &material("two")).await.unwrap();
        assert_eq!(read(&store, KEY, 2).await.as_deref(), Some(&b"two"[..]));

        // Moved to version 3 (a row whose version column was changed): it does not open.
        let blob = memory.take(KEY, 2);
        memory.place(KEY, 3, blob.clone());
        assert!(matches!(
            store.get(KEY, 3).await,
            Err(SecretError::Corrupt(_))
        ));
        // Nor as the legacy layout, which stands in for any version.
        memory.take(KEY, 3);
        memory.place(KEY, LEGACY_VERSION, blob.clone());
        assert!(matches!(
            store.get(KEY, 2).await,
            Err(SecretError::Corrupt(_))
        ));
        // Nor under another certificate or account, at the same version.
        memory.take(KEY, LEGACY_VERSION);
        for other in [
            SecretKey {
                certificate_id: 43,
                ..KEY
            },
            SecretKey {
                account: "87654321",
                ..KEY
            },
        ] {
            memory.place(other, 2, blob.clone());
            assert!(matches!(
                store.get(other, 2).await,
                Err(SecretError::Corrupt(_))
            ));
        }
    }

    #[tokio::test]
    async fn a_version_is_written_once() {
        let (store, _) = store();
        assert_eq!(
            store.put(KEY, 2, &material("winner")).await.unwrap(),
            Written::Stored
        );
        assert_eq!(
            store.put(KEY, 2, &material("loser")).await.unwrap(),
            Written::Taken
        );
        assert_eq!(read(&store, KEY, 2).await.as_deref(), Some(&b"winner"[..]));
        let claim = store.claim(KEY, 2).await.unwrap().unwrap();
        assert!((unix_now() - claim.written_at).abs() < 60);
        assert_eq!(store.claim(KEY, 3).await.unwrap(), None);
    }

    /// Two writers taking over the same abandoned claim: the first replaces it, the second
    /// finds the write it saw gone and gets `Taken`; the first one's material stays.
    #[tokio::test]
    async fn an_abandoned_claim_is_taken_over_once() {
        let (store, _) = store();
        store.put(KEY, 2, &material("abandoned")).await.unwrap();
        let seen = store.claim(KEY, 2).await.unwrap().unwrap();
        assert_eq!(
            store
                .take_over(KEY, 2, &seen, &material("first"))
                .await
                .unwrap(),
            Written::Stored
        );
        assert_eq!(
            store
                .take_over(KEY, 2, &seen, &material("second"))
                .await
                .unwrap(),
            Written::Taken
        );
        assert_eq!(read(&store, KEY, 2).await.as_deref(), Some(&b"first"[..]));
        // A version that does not exist is not taken over either.
        assert_eq!(
            store
                .take_over(KEY, 3, &seen, &material("third"))
                .await
                .unwrap(),
            Written::Taken
        );
        assert_eq!(read(&store, KEY, 3).await, None);
    }

    /// A blob sealed the way the gateway sealed before versions existed: additional data
    /// naming account and certificate only, kept as version 0 by the migration.
    fn legacy_blob(key: SecretKey<'_>, text: &str) -> SealedBlob {
        let plaintext = crate::encode((&material(text)).into()).unwrap();
        let nonce = [9u8; 12];
        let aad = format!(
            "mtls-gateway/sealed/v1/{}/{}",
            key.account, key.certificate_id
        );
        let cipher = Aes256Gcm::new_from_slice(&[7u8; 32]).unwrap();
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .unwrap();
        SealedBlob {
            version: LEGACY_VERSION,
            key_id: MasterKey::new(Zeroizing::new([7u8; 32])).id().to_owned(),
            nonce: nonce.to_vec(),
            ciphertext,
            written_at: 0,
        }
    }

    #[tokio::test]
    async fn the_legacy_layout_is_read_as_the_current_version_until_replaced() {
        let (store, memory) = store();
        memory.place(KEY, LEGACY_VERSION, legacy_blob(KEY, "before the upgrade"));
        for version in [1, 4] {
            assert_eq!(
                read(&store, KEY, version).await.as_deref(),
                Some(&b"before the upgrade"[..])
            );
            assert!(store.exists(KEY, version).await.unwrap());
        }
        // A replacement writes version 5, then removes what is below it.
        store.put(KEY, 5, &material("five")).await.unwrap();
        assert_eq!(read(&store, KEY, 5).await.as_deref(), Some(&b"five"[..]));
        store.remove(KEY, Versions::Below(5)).await.unwrap();
        assert_eq!(memory.versions(KEY), vec![5]);
        assert_eq!(read(&store, KEY, 4).await, None);
        assert!(!store.exists(KEY, 4).await.unwrap());
        // The legacy layout of another certificate does not open here.
        let other = SecretKey {
            certificate_id: 43,
            ..KEY
        };
        memory.place(other, LEGACY_VERSION, legacy_blob(KEY, "not yours"));
        assert!(store.get(other, 1).await.is_err());
    }

    #[tokio::test]
    async fn removal_takes_one_version_the_older_ones_or_all() {
        let (store, memory) = store();
        memory.place(KEY, LEGACY_VERSION, legacy_blob(KEY, "legacy"));
        for version in [1, 2, 3] {
            store.put(KEY, version, &material("x")).await.unwrap();
        }
        store.remove(KEY, Versions::One(3)).await.unwrap();
        assert_eq!(memory.versions(KEY), vec![0, 1, 2]);
        store.put(KEY, 3, &material("x")).await.unwrap();
        store.remove(KEY, Versions::Below(2)).await.unwrap();
        assert_eq!(memory.versions(KEY), vec![2, 3]);
        store.remove(KEY, Versions::All).await.unwrap();
        assert!(memory.versions(KEY).is_empty());
    }

    fn identity(text: &str) -> KeyMaterial {
        KeyMaterial {
            pkcs8: Zeroizing::new(format!("key of {text}").into_bytes()),
            chain_pem: Some(format!("chain of {text}")),
        }
    }

    fn identities(memory: &Memory, key: SecretKey<'_>) -> Vec<i64> {
        memory
            .identities
            .lock()
            .unwrap()
            .keys()
            .filter(|(account, id, _)| account == key.account && *id == key.certificate_id)
            .map(|(_, _, version)| *version)
            .collect()
    }

    /// A version's re-sealed identity round-trips beside the version's own secret, is written
    /// once, and opens only as the identity of its version: moved to another version,
    /// certificate or account, swapped with the PKCS#12 blob (either way), it does not open.
    #[tokio::test]
    async fn an_identity_opens_only_as_the_identity_of_its_version() {
        let (store, memory) = store();
        store.put(KEY, 2, &material("two")).await.unwrap();
        assert_eq!(store.identity(KEY, 2).await.unwrap().map(|_| ()), None);
        assert_eq!(
            store.put_identity(KEY, 2, &identity("two")).await.unwrap(),
            Written::Stored
        );
        assert_eq!(
            store.put_identity(KEY, 2, &identity("late")).await.unwrap(),
            Written::Taken
        );
        let back = store.identity(KEY, 2).await.unwrap().unwrap();
        assert_eq!(back.pkcs8.as_slice(), b"key of two");
        assert_eq!(back.chain_pem.as_deref(), Some("chain of two"));
        // The version's own secret is unchanged, and the legacy layout never stands in.
        assert_eq!(read(&store, KEY, 2).await.as_deref(), Some(&b"two"[..]));
        memory.place(KEY, LEGACY_VERSION, legacy_blob(KEY, "legacy"));
        assert!(store.identity(KEY, 5).await.unwrap().is_none());

        let sealed = memory
            .identities
            .lock()
            .unwrap()
            .remove(&Memory::row(KEY, 2))
            .unwrap();
        let place_identity = |key: SecretKey<'_>, version: i64, blob: SealedBlob| {
            memory
                .identities
                .lock()
                .unwrap()
                .insert(Memory::row(key, version), SealedBlob { version, ..blob });
        };
        // Another version, certificate or account.
        for (other, version) in [
            (KEY, 3),
            (
                SecretKey {
                    certificate_id: 43,
                    ..KEY
                },
                2,
            ),
            (
                SecretKey {
                    account: "87654321",
                    ..KEY
                },
                2,
            ),
        ] {
            place_identity(other, version, sealed.clone());
            assert!(matches!(
                store.identity(other, version).await,
                Err(SecretError::Corrupt(_))
            ));
        }
        // The identity in the PKCS#12 blob's place does not open as the version's secret...
        let file = memory.take(KEY, 2);
        memory.place(KEY, 2, sealed.clone());
        assert!(matches!(
            store.get(KEY, 2).await,
            Err(SecretError::Corrupt(_))
        ));
        // ...nor the PKCS#12 blob in the identity's place as the identity.
        place_identity(KEY, 2, file);
        assert!(matches!(
            store.identity(KEY, 2).await,
            Err(SecretError::Corrupt(_))
        ));
    }

    /// Identities go with their versions: a replacement's `Below`, a release's `One`, a
    /// delete's `All`; `remove_identities` takes the identity and leaves the version.
    #[tokio::test]
    async fn identities_are_removed_with_their_versions() {
        let (store, memory) = store();
        for version in [1, 2, 3] {
            store.put(KEY, version, &material("x")).await.unwrap();
            store
                .put_identity(KEY, version, &identity("x"))
                .await
                .unwrap();
        }
        let other = SecretKey {
            certificate_id: 43,
            ..KEY
        };
        store.put(other, 1, &material("y")).await.unwrap();
        store.put_identity(other, 1, &identity("y")).await.unwrap();

        store.remove(KEY, Versions::Below(2)).await.unwrap();
        assert_eq!(identities(&memory, KEY), vec![2, 3]);
        store.remove(KEY, Versions::One(3)).await.unwrap();
        assert_eq!(identities(&memory, KEY), vec![2]);
        assert_eq!(memory.versions(KEY), vec![2]);
        store
            .remove_identities(KEY, Versions::One(2))
            .await
            .unwrap();
        assert!(identities(&memory, KEY).is_empty());
        assert_eq!(memory.versions(KEY), vec![2]);
        store.put_identity(KEY, 2, &identity("x")).await.unwrap();
        store.remove(KEY, Versions::All).await.unwrap();
        assert!(identities(&memory, KEY).is_empty());
        assert!(memory.versions(KEY).is_empty());
        assert_eq!(identities(&memory, other), vec![1]);
    }

    /// A gateway-made key is sealed and opened like a PKCS#12 secret, beside the legacy layout
    /// of the same certificate, which keeps opening as before; a renewal's key (its own version
    /// range) is never stood in for by the legacy layout.
    #[tokio::test]
    async fn a_key_form_secret_lives_beside_the_legacy_layout() {
        let (store, memory) = store();
        memory.place(KEY, LEGACY_VERSION, legacy_blob(KEY, "old file"));
        let key = KeyMaterial {
            pkcs8: Zeroizing::new(b"pkcs8 der".to_vec()),
            chain_pem: Some("-----BEGIN CERTIFICATE-----\n".to_owned()),
        };
        let renewal = crate::renewal_version().unwrap();
        assert_eq!(read(&store, KEY, renewal).await, None);
        assert!(!store.exists(KEY, renewal).await.unwrap());
        store.put(KEY, renewal, &key).await.unwrap();
        let Some(Secret::Key(back)) = store.get(KEY, renewal).await.unwrap() else {
            panic!("the key form reads back as a key");
        };
        assert_eq!(back.pkcs8.as_slice(), b"pkcs8 der");
        assert_eq!(back.chain_pem, key.chain_pem);
        assert_eq!(
            read(&store, KEY, 1).await.as_deref(),
            Some(&b"old file"[..])
        );
        // A replacement's removal of the older versions leaves the renewal's key alone.
        store.put(KEY, 2, &material("two")).await.unwrap();
        store.remove(KEY, Versions::Below(2)).await.unwrap();
        assert_eq!(memory.versions(KEY), vec![2, renewal]);
        store.remove(KEY, Versions::All).await.unwrap();
        assert!(memory.versions(KEY).is_empty());
    }
}
