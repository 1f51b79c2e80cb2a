//! A certificate version's re-sealed identity against a real Vault (OpenBao): written once at
//! its own path, read back, bound to its account, certificate, version and kind (a value moved
//! to another path does not load, either way), and removed with its version.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use mtls_secrets::{
    KeyMaterial, SecretError, SecretKey, SecretMaterial, SecretStore, VaultAuth, VaultOptions,
    VaultStore, Versions, Written,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

struct Vault {
    address: String,
    token: String,
    store: SecretStore,
}

impl Vault {
    fn connect() -> Option<Vault> {
        let (address, token) = mtls_test_support::vault()?;
        let store = SecretStore::Vault(Box::new(
            VaultStore::new(VaultOptions {
                address: address.clone(),
                mount: "secret".to_owned(),
                prefix: "mtls".to_owned(),
                namespace: None,
                ca_pem: None,
                auth: VaultAuth::Token(Zeroizing::new(token.clone())),
                timeout: Duration::from_secs(5),
                max_answer_bytes: mtls_secrets::answer_cap(1024 * 1024),
            })
            .unwrap(),
        ));
        Some(Vault {
            address,
            token,
            store,
        })
    }

    fn url(&self, kind: &str, key: SecretKey<'_>, rest: &str) -> String {
        format!(
            "{}/v1/secret/{kind}/mtls/accounts/{}/certificates/{}/{rest}",
            self.address, key.account, key.certificate_id
        )
    }

    /// The raw value at `rest` (`versions/1`, `identities/2`) under `key`.
    async fn raw(&self, key: SecretKey<'_>, rest: &str) -> Value {
        let response = mtls_secrets::vault::client(None, Duration::from_secs(5))
            .unwrap()
            .get(self.url("data", key, rest))
            .header("X-Vault-Token", &self.token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{rest}");
        let body: Value = response.json().await.unwrap();
        body["data"]["data"].clone()
    }

    /// Writes `value` at `rest` under `key`, as someone with write access to the mount could.
    async fn place(&self, key: SecretKey<'_>, rest: &str, value: &Value) {
        let response = mtls_secrets::vault::client(None, Duration::from_secs(5))
            .unwrap()
            .post(self.url("data", key, rest))
            .header("X-Vault-Token", &self.token)
            .json(&json!({ "data": value }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{rest}");
    }

    /// The numbered names under `folder` (`identities`, `versions`) of `key`.
    async fn listed(&self, key: SecretKey<'_>, folder: &str) -> Vec<i64> {
        let response = mtls_secrets::vault::client(None, Duration::from_secs(5))
            .unwrap()
            .get(format!("{}?list=true", self.url("metadata", key, folder)))
            .header("X-Vault-Token", &self.token)
            .send()
            .await
            .unwrap();
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Vec::new();
        }
        let body: Value = response.json().await.unwrap();
        let mut names: Vec<i64> = body["data"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap().parse().unwrap())
            .collect();
        names.sort_unstable();
        names
    }
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

#[tokio::test]
async fn vault_keeps_an_identity_per_version_bound_to_it() {
    let Some(vault) = Vault::connect() else {
        return;
    };
    let store = &vault.store;
    let account = mtls_test_support::random_account();
    let key = SecretKey {
        account: &account,
        certificate_id: 7,
    };
    store.put(key, 1, &file("one")).await.unwrap();
    assert!(store.identity(key, 1).await.unwrap().is_none());
    assert_eq!(
        store.put_identity(key, 1, &identity("one")).await.unwrap(),
        Written::Stored
    );
    assert_eq!(
        store.put_identity(key, 1, &identity("late")).await.unwrap(),
        Written::Taken,
        "written once"
    );
    let back = store.identity(key, 1).await.unwrap().unwrap();
    assert_eq!(back.pkcs8.as_slice(), b"key of one");
    assert_eq!(back.chain_pem.as_deref(), Some("chain of one"));
    // The version's own secret is unchanged: collect still reads the file.
    assert_eq!(
        store.get(key, 1).await.unwrap().unwrap().p12.as_slice(),
        b"one"
    );
    // A key without its chain is no identity.
    let chainless = KeyMaterial {
        pkcs8: Zeroizing::new(b"key".to_vec()),
        chain_pem: None,
    };
    assert!(store.put_identity(key, 2, &chainless).await.is_err());

    // Moved to another version, certificate or account: it does not load.
    let value = vault.raw(key, "identities/1").await;
    let other = SecretKey {
        certificate_id: 8,
        ..key
    };
    vault.place(key, "identities/3", &value).await;
    vault.place(other, "identities/1", &value).await;
    for (at, version) in [(key, 3), (other, 1)] {
        assert!(matches!(
            store.identity(at, version).await,
            Err(SecretError::Corrupt(_))
        ));
    }
    // In a version's place it does not load as that version's secret...
    vault.place(key, "versions/4", &value).await;
    assert!(store.get_secret(key, 4).await.is_err());
    // ...nor a version's file in an identity's place as the identity.
    let p12 = vault.raw(key, "versions/1").await;
    vault.place(key, "identities/5", &p12).await;
    assert!(matches!(
        store.identity(key, 5).await,
        Err(SecretError::Corrupt(_))
    ));

    store.remove(key, Versions::All).await.unwrap();
    store.remove(other, Versions::All).await.unwrap();
    assert!(vault.listed(key, "identities").await.is_empty());
}

#[tokio::test]
async fn vault_removes_identities_with_their_versions() {
    let Some(vault) = Vault::connect() else {
        return;
    };
    let store = &vault.store;
    let account = mtls_test_support::random_account();
    let key = SecretKey {
        account: &account,
        certificate_id: 11,
    };
    for version in [1, 2, 3] {
        store.put(key, version, &file("x")).await.unwrap();
        store
            .put_identity(key, version, &identity("x"))
            .await
            .unwrap();
    }
    // A replacement to version 3 removes what is below it, identities included.
    store.remove(key, Versions::Below(3)).await.unwrap();
    assert_eq!(vault.listed(key, "identities").await, [3]);
    assert_eq!(vault.listed(key, "versions").await, [3]);
    // A take-over drops the identity alone; a release takes both.
    store
        .remove_identities(key, Versions::One(3))
        .await
        .unwrap();
    assert!(vault.listed(key, "identities").await.is_empty());
    assert_eq!(vault.listed(key, "versions").await, [3]);
    store.put_identity(key, 3, &identity("x")).await.unwrap();
    store.remove(key, Versions::One(3)).await.unwrap();
    assert!(vault.listed(key, "identities").await.is_empty());
    // A delete (destroy) takes every identity.
    for version in [4, 5] {
        store.put(key, version, &file("x")).await.unwrap();
        store
            .put_identity(key, version, &identity("x"))
            .await
            .unwrap();
    }
    store.destroy(key).await.unwrap();
    assert!(vault.listed(key, "identities").await.is_empty());
    assert!(vault.listed(key, "versions").await.is_empty());
    assert!(store.identity(key, 5).await.unwrap().is_none());
}
