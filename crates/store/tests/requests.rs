//! Request rows and renewals (SPEC 4.6) on SQLite and MariaDB: every change conditional on the
//! version (and the renewal) the caller read, as replacements are.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::future::Future;
use std::time::Duration;

use mtls_store::{
    CertificateRow, NewRenewal, NewRequest, Replacement, SecretState, Store, StoreError,
    StoreOptions,
};
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

fn request(account: &str, name: &str) -> NewRequest {
    NewRequest {
        id: mtls_store::new_id().unwrap(),
        account_id: account.to_owned(),
        name: name.to_owned(),
        secret_state: SecretState::Stored,
        subject: format!("CN={name},O=Brand A"),
        key_type: "ECDSA-P256".to_owned(),
        csr_pem: format!("-----BEGIN CERTIFICATE REQUEST-----\n{name}\n"),
    }
}

/// Runs `attempts` one after the other and checks each answer against `expected`: a change is
/// made at the version (and renewal) the caller read, once; a stale or repeated one is refused.
async fn answers<F>(attempts: impl IntoIterator<Item = F>, expected: &[bool], what: &str)
where
    F: Future<Output = Result<bool, StoreError>>,
{
    let mut got = Vec::new();
    for attempt in attempts {
        got.push(attempt.await.unwrap());
    }
    assert_eq!(got, expected, "{what}");
}

async fn row(store: &Store, account: &str, id: i64) -> CertificateRow {
    store.certificate(account, id).await.unwrap().unwrap()
}

fn lists(rows: Result<Vec<CertificateRow>, StoreError>, id: i64) -> bool {
    rows.unwrap().iter().any(|row| row.id == id)
}

#[tokio::test]
async fn a_request_goes_pending_then_available_then_renews() {
    for store in stores().await {
        let backend = format!("{:?}", store.backend());
        let account = random_account();
        let (requests_before, renewals_before) = store.pending_counts().await.unwrap();
        let new = request(&account, "brand-a");
        let id = new.id;
        store
            .insert_request_within(&account, &new, 10, 5)
            .await
            .unwrap()
            .unwrap();
        let pending = row(&store, &account, id).await;
        assert!(pending.pending, "{backend}");
        assert_eq!(
            (pending.version, pending.not_after, pending.chain_length),
            (1, 0, 0)
        );
        assert_eq!(
            (pending.subject.as_str(), pending.key_type.as_str()),
            (new.subject.as_str(), "ECDSA-P256")
        );
        assert_eq!(pending.renewal, None);
        assert_eq!(
            store.certificate_csr(&account, id).await.unwrap(),
            Some(new.csr_pem.clone())
        );
        assert_eq!(store.pending_counts().await.unwrap().0, requests_before + 1);
        // A pending request has no validity to watch.
        assert!(!lists(store.live_certificates().await, id));
        // The name is taken, and the cap counts it.
        assert!(store.name_taken(&account, "brand-a", None).await.unwrap());
        assert!(
            store
                .insert_request_within(&account, &request(&account, "other"), 10, 1)
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
        answers(
            [store.create_renewal(&account, id, 1, &renewal, 20)],
            &[false],
            "renewal of a request",
        )
        .await;
        // The certificate arrives: only at the version read, only once.
        let first = facts("brand-a", "01");
        answers(
            [
                store.complete_request(&account, id, 2, &first, 20),
                store.complete_request(&account, id, 1, &first, 20),
                store.complete_request(&account, id, 1, &first, 21),
            ],
            &[false, true, false],
            "complete_request",
        )
        .await;
        let issued = row(&store, &account, id).await;
        assert!(!issued.pending);
        assert_eq!(
            (
                issued.version,
                issued.serial_number.as_str(),
                issued.not_after
            ),
            (2, "01", 2_000_000_000)
        );
        assert!(lists(store.live_certificates().await, id));
        assert_eq!(
            store.certificate_csr(&account, id).await.unwrap(),
            Some(new.csr_pem.clone())
        );

        // A renewal: at the version read, one at a time.
        answers(
            [
                store.create_renewal(&account, id, 1, &renewal, 30),
                store.create_renewal(&account, id, 2, &renewal, 30),
                store.create_renewal(&account, id, 2, &renewal, 31),
            ],
            &[false, true, false],
            "create_renewal",
        )
        .await;
        assert_eq!(
            store.pending_counts().await.unwrap().1,
            renewals_before + 1,
            "{backend}"
        );
        let shown = row(&store, &account, id).await.renewal.unwrap();
        assert_eq!(
            (
                shown.secret_version,
                shown.scheduled(),
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
        let version = renewal.secret_version;
        answers(
            [
                store.schedule_renewal(&account, id, version + 1, "PEM", 500, 40),
                store.schedule_renewal(&account, id, version, "PEM", 500, 40),
                store.schedule_renewal(&account, id, version, "PEM", 600, 41),
            ],
            &[false, true, false],
            "schedule_renewal",
        )
        .await;
        let detail = store.renewal(&account, id).await.unwrap().unwrap();
        assert_eq!(
            (
                detail.row.scheduled(),
                detail.row.activate_at,
                detail.chain_pem.as_deref()
            ),
            (true, Some(500), Some("PEM"))
        );
        assert!(!lists(store.due_renewals(499).await, id));
        assert!(lists(store.due_renewals(500).await, id));

        // Cancelled: only that renewal, once.
        answers(
            [
                store.cancel_renewal(&account, id, version + 1, 50),
                store.cancel_renewal(&account, id, version, 50),
                store.cancel_renewal(&account, id, version, 51),
            ],
            &[false, true, false],
            "cancel_renewal",
        )
        .await;
        assert_eq!(store.renewal(&account, id).await.unwrap(), None);
        assert_eq!(row(&store, &account, id).await.renewal, None);

        // Another renewal, completed: next version, the new request, no renewal left.
        let again = NewRenewal {
            secret_version: (1 << 40) + 9,
            ..renewal.clone()
        };
        let second = facts("brand-a", "02");
        answers(
            [store.create_renewal(&account, id, 2, &again, 60)],
            &[true],
            "create_renewal again",
        )
        .await;
        answers(
            [
                store.complete_renewal(&account, id, 2, version, &second, 70),
                store.complete_renewal(&account, id, 1, again.secret_version, &second, 70),
                store.complete_renewal(&account, id, 2, again.secret_version, &second, 70),
            ],
            &[false, false, true],
            "complete_renewal",
        )
        .await;
        let renewed = row(&store, &account, id).await;
        assert_eq!(
            (
                renewed.version,
                renewed.serial_number.as_str(),
                renewed.renewal.clone()
            ),
            (3, "02", None)
        );
        assert_eq!(
            store.certificate_csr(&account, id).await.unwrap(),
            Some(again.csr_pem.clone()),
            "{backend}"
        );

        // A renewal in progress stays through a PKCS#12 replacement; a delete forgets it.
        let third = facts("brand-a", "03");
        answers(
            [store.create_renewal(&account, id, 3, &renewal, 80)],
            &[true],
            "create_renewal on the renewed row",
        )
        .await;
        answers(
            [store.replace_certificate(&account, id, 3, &third, 90)],
            &[true],
            "replace_certificate",
        )
        .await;
        let replaced = row(&store, &account, id).await;
        assert_eq!(replaced.version, 4);
        assert!(replaced.renewal.is_some());
        assert_eq!(store.certificate_csr(&account, id).await.unwrap(), None);
        assert!(store.mark_deleted(&account, id, 100).await.unwrap());
        assert_eq!(row(&store, &account, id).await.renewal, None);
    }
}

#[tokio::test]
async fn a_pkcs12_file_fulfils_a_pending_request() {
    for store in stores().await {
        let account = random_account();
        let new = request(&account, "r");
        let id = new.id;
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
        let replaced = row(&store, &account, id).await;
        assert!(!replaced.pending);
        assert_eq!(replaced.version, 2);
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
