//! The embedded secret store's re-sealed identities in the real tables (SQLite and MariaDB):
//! a version's identity round-trips beside the version's own secret, opens only as the
//! identity of its version (a row moved to another version or table does not open), and goes
//! with its version (`Below`, `One`, `All`).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use mtls_secrets::{
    KeyMaterial, LocalStore, MasterKey, SealedBlob, SealedBlobs, SecretError, SecretKey,
    SecretMaterial, SecretStore, Versions, Written,
};
use mtls_store::{Store, StoreOptions};
use mtls_test_support::{mysql_url, random_account, temp_dir};
use zeroize::Zeroizing;

async fn stores() -> Vec<Store> {
    let dir = temp_dir("store-identities");
    let mut urls = vec![format!("sqlite://{}", dir.join("identities.db").display())];
    urls.extend(mysql_url());
    let mut stores = Vec::new();
    for url in urls {
        let store = Store::connect(&StoreOptions {
            url,
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
        store.migrate().await.unwrap();
        stores.push(store);
    }
    stores
}

fn embedded(store: &Store) -> SecretStore {
    let master = MasterKey::new(Zeroizing::new([3u8; 32]));
    SecretStore::Local(LocalStore::new(master, Arc::new(store.clone())))
}

fn file(text: &str) -> SecretMaterial {
    SecretMaterial {
        p12: Zeroizing::new(text.as_bytes().to_vec()),
        password: Zeroizing::new(format!("password of {text}")),
    }
}

fn identity(text: &str) -> KeyMaterial {
    KeyMaterial {
        pkcs8: Zeroizing::new(format!("key of {text}").into_bytes()),
        chain_pem: Some(format!("chain of {text}")),
    }
}

async fn identity_versions(secrets: &SecretStore, key: SecretKey<'_>) -> Vec<i64> {
    let mut versions = Vec::new();
    for version in 1..=6 {
        if secrets.identity(key, version).await.unwrap().is_some() {
            versions.push(version);
        }
    }
    versions
}

#[tokio::test]
async fn an_identity_round_trips_and_opens_only_as_its_version() {
    for store in stores().await {
        let secrets = embedded(&store);
        let account = random_account();
        let key = SecretKey {
            account: &account,
            certificate_id: 5,
        };
        secrets.put(key, 1, &file("one")).await.unwrap();
        assert_eq!(
            secrets
                .put_identity(key, 1, &identity("one"))
                .await
                .unwrap(),
            Written::Stored
        );
        assert_eq!(
            secrets
                .put_identity(key, 1, &identity("late"))
                .await
                .unwrap(),
            Written::Taken
        );
        let back = secrets.identity(key, 1).await.unwrap().unwrap();
        assert_eq!(back.pkcs8.as_slice(), b"key of one");
        assert_eq!(back.chain_pem.as_deref(), Some("chain of one"));
        assert_eq!(
            secrets.get(key, 1).await.unwrap().unwrap().p12.as_slice(),
            b"one",
            "the file is unchanged"
        );

        // The identity's row moved to version 2, or into the secrets' table; the file's row
        // into the identities' table: none opens.
        let sealed = store.identity_blob(key, 1).await.unwrap().unwrap();
        let moved = SealedBlob {
            version: 2,
            ..sealed.clone()
        };
        assert!(store.insert_identity(key, moved.clone()).await.unwrap());
        assert!(matches!(
            secrets.identity(key, 2).await,
            Err(SecretError::Corrupt(_))
        ));
        // In the file's own place (same version, the secrets' table), it does not open as
        // the version's secret, although its plaintext is in a secret's (key) form.
        let p12 = store.blob(key, 1).await.unwrap().unwrap();
        store.delete_blobs(key, Versions::One(1)).await.unwrap();
        assert!(store.insert_blob(key, sealed).await.unwrap());
        assert!(matches!(
            secrets.get_secret(key, 1).await,
            Err(SecretError::Corrupt(_))
        ));
        assert!(store.insert_blob(key, moved).await.unwrap());
        assert!(matches!(
            secrets.get_secret(key, 2).await,
            Err(SecretError::Corrupt(_))
        ));
        store
            .delete_identities(key, Versions::One(1))
            .await
            .unwrap();
        assert!(store.insert_identity(key, p12).await.unwrap());
        assert!(matches!(
            secrets.identity(key, 1).await,
            Err(SecretError::Corrupt(_))
        ));
        secrets.destroy(key).await.unwrap();
        store.close().await;
    }
}

#[tokio::test]
async fn identities_go_with_their_versions() {
    for store in stores().await {
        let secrets = embedded(&store);
        let account = random_account();
        let key = SecretKey {
            account: &account,
            certificate_id: 6,
        };
        let other = SecretKey {
            certificate_id: 7,
            ..key
        };
        for version in [1, 2, 3] {
            secrets.put(key, version, &file("x")).await.unwrap();
            secrets
                .put_identity(key, version, &identity("x"))
                .await
                .unwrap();
        }
        secrets.put(other, 1, &file("y")).await.unwrap();
        secrets
            .put_identity(other, 1, &identity("y"))
            .await
            .unwrap();

        secrets.remove(key, Versions::Below(3)).await.unwrap();
        assert_eq!(identity_versions(&secrets, key).await, [3]);
        assert!(store.blob(key, 2).await.unwrap().is_none());
        secrets
            .remove_identities(key, Versions::One(3))
            .await
            .unwrap();
        assert!(identity_versions(&secrets, key).await.is_empty());
        assert!(
            store.blob(key, 3).await.unwrap().is_some(),
            "the file stays"
        );
        secrets.put_identity(key, 3, &identity("x")).await.unwrap();
        secrets.remove(key, Versions::One(3)).await.unwrap();
        assert!(identity_versions(&secrets, key).await.is_empty());
        secrets.put(key, 4, &file("x")).await.unwrap();
        secrets.put_identity(key, 4, &identity("x")).await.unwrap();
        secrets.destroy(key).await.unwrap();
        assert!(identity_versions(&secrets, key).await.is_empty());
        assert_eq!(
            identity_versions(&secrets, other).await,
            [1],
            "another's stays"
        );
        secrets.destroy(other).await.unwrap();
        store.close().await;
    }
}
