//! Request rows and renewals (SPEC 4.6) on SQLite and MariaDB: every change conditional on the
//! version (and the renewal) the caller read, as replacements are.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use mtls_store::{NewRenewal, NewRequest, Replacement, SecretState, Store, StoreOptions};
use mtls_test_support::{mysql_url, random_account, temp_dir};

async fn stores() -> Vec<Store> {
    let dir = temp_dir("store-requests");
    let mut urls = vec![format!("sqlite://{}", dir.join("requests.db").display())];
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

fn facts(name: &str, serial: &str) -> Replacement {
    Replacement {
        name: name.to_owned(),
        subject: "CN=brand-a,O=Brand A".to_owned(),
        issuer: "CN=Test Intermediate".to_owned(),
        serial_number: serial.to_owned(),
        not_before: 1_000,
        not_after: 2_000_000_000,
        fingerprint_sha256: "ab".repeat(32),
        key_type: "ECDSA-P256".to_owned(),
        chain_length: 2,
    }
}

#[tokio::test]
async fn a_request_goes_pending_then_available_then_renews() {
    for store in stores().await {
        let backend = format!("{:?}", store.backend());
        let account = random_account();
        let id = mtls_store::new_id().unwrap();
        let (requests_before, renewals_before) = store.pending_counts().await.unwrap();
        let new = NewRequest {
            id,
            account_id: account.clone(),
            name: "brand-a".to_owned(),
            secret_state: SecretState::Stored,
            subject: "CN=brand-a,O=Brand A".to_owned(),
            key_type: "ECDSA-P256".to_owned(),
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nA\n".to_owned(),
        };
        store
            .insert_request_within(&account, &new, 10, 5)
            .await
            .unwrap()
            .unwrap();
        let row = store.certificate(&account, id).await.unwrap().unwrap();
        assert!(row.pending, "{backend}");
        assert_eq!((row.version, row.not_after, row.chain_length), (1, 0, 0));
        assert_eq!(
            (row.subject.as_str(), row.key_type.as_str()),
            (new.subject.as_str(), "ECDSA-P256")
        );
        assert_eq!(row.renewal, None);
        assert_eq!(
            store.certificate_csr(&account, id).await.unwrap(),
            Some(new.csr_pem.clone())
        );
        assert_eq!(store.pending_counts().await.unwrap().0, requests_before + 1);
        // A pending request has no validity to watch.
        assert!(
            !store
                .live_certificates()
                .await
                .unwrap()
                .iter()
                .any(|row| row.id == id)
        );
        // The name is taken, and the cap counts it.
        assert!(store.name_taken(&account, "brand-a", None).await.unwrap());
        let mut second = new.clone();
        second.id = mtls_store::new_id().unwrap();
        second.name = "other".to_owned();
        assert!(
            store
                .insert_request_within(&account, &second, 10, 1)
                .await
                .unwrap()
                .is_err()
        );

        // No renewal before the certificate is there.
        let renewal = NewRenewal {
            secret_version: (1 << 40) + 5,
            key_type: "RSA-2048".to_owned(),
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nB\n".to_owned(),
        };
        assert!(
            !store
                .create_renewal(&account, id, 1, &renewal, 20)
                .await
                .unwrap()
        );
        // The certificate arrives: only at the version read, only once.
        assert!(
            !store
                .complete_request(&account, id, 2, &facts("brand-a", "01"), 20)
                .await
                .unwrap()
        );
        assert!(
            store
                .complete_request(&account, id, 1, &facts("brand-a", "01"), 20)
                .await
                .unwrap()
        );
        assert!(
            !store
                .complete_request(&account, id, 1, &facts("brand-a", "01"), 21)
                .await
                .unwrap()
        );
        let row = store.certificate(&account, id).await.unwrap().unwrap();
        assert!(!row.pending);
        assert_eq!(
            (row.version, row.serial_number.as_str(), row.not_after),
            (2, "01", 2_000_000_000)
        );
        assert!(
            store
                .live_certificates()
                .await
                .unwrap()
                .iter()
                .any(|row| row.id == id)
        );
        assert_eq!(
            store.certificate_csr(&account, id).await.unwrap(),
            Some(new.csr_pem.clone())
        );

        // A renewal: at the version read, one at a time.
        assert!(
            !store
                .create_renewal(&account, id, 1, &renewal, 30)
                .await
                .unwrap()
        );
        assert!(
            store
                .create_renewal(&account, id, 2, &renewal, 30)
                .await
                .unwrap()
        );
        assert!(
            !store
                .create_renewal(&account, id, 2, &renewal, 31)
                .await
                .unwrap()
        );
        assert_eq!(
            store.pending_counts().await.unwrap().1,
            renewals_before + 1,
            "{backend}"
        );
        let row = store.certificate(&account, id).await.unwrap().unwrap();
        let shown = row.renewal.clone().unwrap();
        assert_eq!(
            (
                shown.secret_version,
                shown.scheduled,
                shown.activate_at,
                shown.created_at
            ),
            (renewal.secret_version, false, None, 30)
        );
        assert_eq!(shown.key_type, "RSA-2048");
        let detail = store.renewal(&account, id).await.unwrap().unwrap();
        assert_eq!(
            (detail.csr_pem.as_str(), detail.chain_pem.as_deref()),
            (renewal.csr_pem.as_str(), None)
        );

        // Scheduled for later, then due.
        assert!(
            !store
                .schedule_renewal(&account, id, renewal.secret_version + 1, "PEM", 500, 40)
                .await
                .unwrap()
        );
        assert!(
            store
                .schedule_renewal(&account, id, renewal.secret_version, "PEM", 500, 40)
                .await
                .unwrap()
        );
        assert!(
            !store
                .schedule_renewal(&account, id, renewal.secret_version, "PEM", 600, 41)
                .await
                .unwrap()
        );
        let detail = store.renewal(&account, id).await.unwrap().unwrap();
        assert_eq!(
            (
                detail.row.scheduled,
                detail.row.activate_at,
                detail.chain_pem.as_deref()
            ),
            (true, Some(500), Some("PEM"))
        );
        assert!(
            !store
                .due_renewals(499)
                .await
                .unwrap()
                .iter()
                .any(|row| row.id == id)
        );
        assert!(
            store
                .due_renewals(500)
                .await
                .unwrap()
                .iter()
                .any(|row| row.id == id)
        );

        // Cancelled: only that renewal, once.
        assert!(
            !store
                .cancel_renewal(&account, id, renewal.secret_version + 1, 50)
                .await
                .unwrap()
        );
        assert!(
            store
                .cancel_renewal(&account, id, renewal.secret_version, 50)
                .await
                .unwrap()
        );
        assert!(
            !store
                .cancel_renewal(&account, id, renewal.secret_version, 51)
                .await
                .unwrap()
        );
        assert_eq!(store.renewal(&account, id).await.unwrap(), None);
        assert_eq!(
            store
                .certificate(&account, id)
                .await
                .unwrap()
                .unwrap()
                .renewal,
            None
        );

        // Another renewal, completed: next version, the new request, no renewal left.
        let again = NewRenewal {
            secret_version: (1 << 40) + 9,
            ..renewal.clone()
        };
        assert!(
            store
                .create_renewal(&account, id, 2, &again, 60)
                .await
                .unwrap()
        );
        assert!(
            !store
                .complete_renewal(
                    &account,
                    id,
                    2,
                    renewal.secret_version,
                    &facts("brand-a", "02"),
                    70
                )
                .await
                .unwrap()
        );
        assert!(
            !store
                .complete_renewal(
                    &account,
                    id,
                    1,
                    again.secret_version,
                    &facts("brand-a", "02"),
                    70
                )
                .await
                .unwrap()
        );
        assert!(
            store
                .complete_renewal(
                    &account,
                    id,
                    2,
                    again.secret_version,
                    &facts("brand-a", "02"),
                    70
                )
                .await
                .unwrap()
        );
        let row = store.certificate(&account, id).await.unwrap().unwrap();
        assert_eq!(
            (row.version, row.serial_number.as_str(), row.renewal.clone()),
            (3, "02", None)
        );
        assert_eq!(
            store.certificate_csr(&account, id).await.unwrap(),
            Some(again.csr_pem.clone()),
            "{backend}"
        );

        // A renewal in progress stays through a PKCS#12 replacement; a delete forgets it.
        assert!(
            store
                .create_renewal(&account, id, 3, &renewal, 80)
                .await
                .unwrap()
        );
        assert!(
            store
                .replace_certificate(&account, id, 3, &facts("brand-a", "03"), 90)
                .await
                .unwrap()
        );
        let row = store.certificate(&account, id).await.unwrap().unwrap();
        assert_eq!(row.version, 4);
        assert!(row.renewal.is_some());
        assert_eq!(store.certificate_csr(&account, id).await.unwrap(), None);
        assert!(store.mark_deleted(&account, id, 100).await.unwrap());
        assert_eq!(
            store
                .certificate(&account, id)
                .await
                .unwrap()
                .unwrap()
                .renewal,
            None
        );
    }
}

#[tokio::test]
async fn a_pkcs12_file_fulfils_a_pending_request() {
    for store in stores().await {
        let account = random_account();
        let id = mtls_store::new_id().unwrap();
        let new = NewRequest {
            id,
            account_id: account.clone(),
            name: "r".to_owned(),
            secret_state: SecretState::Stored,
            subject: "CN=r".to_owned(),
            key_type: "RSA-3072".to_owned(),
            csr_pem: "CSR".to_owned(),
        };
        store
            .insert_request_within(&account, &new, 10, 5)
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .replace_certificate(&account, id, 1, &facts("r", "0F"), 20)
                .await
                .unwrap()
        );
        let row = store.certificate(&account, id).await.unwrap().unwrap();
        assert!(!row.pending);
        assert_eq!(row.version, 2);
        assert_eq!(store.certificate_csr(&account, id).await.unwrap(), None);
        // It is no longer a request: completing it is refused.
        assert!(
            !store
                .complete_request(&account, id, 2, &facts("r", "10"), 30)
                .await
                .unwrap()
        );
    }
}
