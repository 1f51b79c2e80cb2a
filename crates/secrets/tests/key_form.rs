//! The gateway-made key form against a real Vault (OpenBao): written, read back, its renewal
//! version kept out of a replacement's removal, and a PKCS#12 secret beside it unchanged.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use mtls_secrets::{
    KeyMaterial, Secret, SecretKey, SecretMaterial, SecretStore, VaultAuth, VaultOptions,
    VaultStore, Versions, Written,
};
use zeroize::Zeroizing;

#[tokio::test]
async fn vault_stores_and_reads_both_forms() {
    let Some((address, token)) = mtls_test_support::vault() else {
        return;
    };
    let store = SecretStore::Vault(Box::new(
        VaultStore::new(VaultOptions {
            address,
            mount: "secret".to_owned(),
            prefix: "mtls".to_owned(),
            namespace: None,
            ca_pem: None,
            auth: VaultAuth::Token(Zeroizing::new(token)),
            timeout: Duration::from_secs(5),
            max_answer_bytes: mtls_secrets::answer_cap(1024 * 1024),
        })
        .unwrap(),
    ));
    let account = mtls_test_support::random_account();
    let key = SecretKey {
        account: &account,
        certificate_id: 9,
    };
    let p12 = SecretMaterial {
        p12: Zeroizing::new(b"p12 bytes".to_vec()),
        password: Zeroizing::new("pw".to_owned()),
    };
    assert_eq!(store.put(key, 1, &p12).await.unwrap(), Written::Stored);
    let pending = KeyMaterial {
        pkcs8: Zeroizing::new(b"pkcs8".to_vec()),
        chain_pem: None,
    };
    let renewal = mtls_secrets::renewal_version().unwrap();
    assert!(!store.exists(key, renewal).await.unwrap());
    assert_eq!(
        store.put(key, renewal, &pending).await.unwrap(),
        Written::Stored
    );
    let Some(Secret::Key(read)) = store.get_secret(key, renewal).await.unwrap() else {
        panic!("the key form reads back as a key");
    };
    assert_eq!(
        (read.pkcs8.as_slice(), read.chain_pem),
        (&b"pkcs8"[..], None)
    );
    // `get`, the PKCS#12 reader, refuses the key form instead of answering an empty file.
    assert!(store.get(key, renewal).await.is_err());
    assert_eq!(
        store.get(key, 1).await.unwrap().unwrap().p12.as_slice(),
        b"p12 bytes"
    );

    let complete = KeyMaterial {
        pkcs8: Zeroizing::new(b"pkcs8".to_vec()),
        chain_pem: Some("-----BEGIN CERTIFICATE-----\n".to_owned()),
    };
    store.put(key, 2, &complete).await.unwrap();
    store.remove(key, Versions::Below(2)).await.unwrap();
    assert!(store.get_secret(key, 1).await.unwrap().is_none());
    assert!(store.exists(key, renewal).await.unwrap());
    let Some(Secret::Key(live)) = store.get_secret(key, 2).await.unwrap() else {
        panic!("version 2 is a key");
    };
    assert_eq!(live.chain_pem, complete.chain_pem);
    store.destroy(key).await.unwrap();
    assert!(!store.exists(key, renewal).await.unwrap());
    assert!(!store.exists(key, 2).await.unwrap());
}
