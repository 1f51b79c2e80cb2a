//! The embedded secret store: AES-256-GCM with a random 96-bit nonce per write, the additional
//! data binding each ciphertext to its account and certificate (a blob copied to another row
//! does not open), ciphertext kept in the metadata database through [`SealedBlobs`].

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{BoxFuture, SecretError, SecretKey, SecretMaterial};

/// One sealed secret as the database keeps it.
#[derive(Clone, Debug)]
pub struct SealedBlob {
    pub version: i64,
    /// Which master key sealed it (for key rotation).
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Where sealed blobs are kept: implemented by the metadata store (the only crate writing SQL).
pub trait SealedBlobs: Send + Sync + fmt::Debug {
    fn put_blob<'a>(
        &'a self,
        key: SecretKey<'a>,
        blob: SealedBlob,
    ) -> BoxFuture<'a, Result<(), String>>;
    fn blob<'a>(&'a self, key: SecretKey<'a>) -> BoxFuture<'a, Result<Option<SealedBlob>, String>>;
    fn delete_blob<'a>(&'a self, key: SecretKey<'a>) -> BoxFuture<'a, Result<(), String>>;
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

fn additional_data(key: SecretKey<'_>) -> Vec<u8> {
    format!(
        "mtls-gateway/sealed/v1/{}/{}",
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

    pub async fn put(
        &self,
        key: SecretKey<'_>,
        version: i64,
        material: &SecretMaterial,
    ) -> Result<(), SecretError> {
        let plaintext = crate::encode(material)?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce)
            .map_err(|error| SecretError::Unavailable(format!("no randomness: {error}")))?;
        let aad = additional_data(key);
        let ciphertext = self
            .cipher()?
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Corrupt("encryption failed".to_owned()))?;
        let blob = SealedBlob {
            version,
            key_id: self.master.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        };
        self.blobs
            .put_blob(key, blob)
            .await
            .map_err(SecretError::Unavailable)
    }

    pub async fn get(&self, key: SecretKey<'_>) -> Result<Option<SecretMaterial>, SecretError> {
        let Some(blob) = self
            .blobs
            .blob(key)
            .await
            .map_err(SecretError::Unavailable)?
        else {
            return Ok(None);
        };
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
        let aad = additional_data(key);
        let plaintext = Zeroizing::new(
            self.cipher()?
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &blob.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| SecretError::Corrupt("authentication failed".to_owned()))?,
        );
        crate::decode(&plaintext).map(Some)
    }

    pub async fn exists(&self, key: SecretKey<'_>) -> Result<bool, SecretError> {
        Ok(self
            .blobs
            .blob(key)
            .await
            .map_err(SecretError::Unavailable)?
            .is_some())
    }

    pub async fn destroy(&self, key: SecretKey<'_>) -> Result<(), SecretError> {
        self.blobs
            .delete_blob(key)
            .await
            .map_err(SecretError::Unavailable)
    }

    pub async fn check(&self) -> Result<(), SecretError> {
        self.blobs.ping().await.map_err(SecretError::Unavailable)
    }
}
