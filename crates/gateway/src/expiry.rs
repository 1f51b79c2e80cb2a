//! The certificate expiry monitor: every `expiry.check_interval_seconds`, the live certificates
//! are read, the expiry metrics refreshed, and each certificate that crossed a threshold
//! (default 30, 14, 7 and 1 days before `notAfter`) is logged and, when `expiry.webhook_url` is
//! set, POSTed as JSON. Each (certificate, `notAfter`, threshold) is claimed in the database
//! first, so a notification goes out once: not again after a restart, not from two nodes; a
//! renewed certificate (new `notAfter`) re-arms its thresholds. A webhook call that fails gives
//! its claims back, and the next round tries again. The log line and the webhook say whether a
//! renewal is under way (`renewalPending`, and `renewal`: its status and `activateAt`).

use std::time::Duration;

use mtls_control::metrics::CertificateExpiry;
use mtls_control::{Backends, Control};
use mtls_store::CertificateRow;
use serde_json::json;

use crate::config::Config;

const DAY: i64 = 86_400;

/// What the monitor needs from the configuration.
#[derive(Clone, Debug)]
struct Settings {
    /// Descending.
    thresholds: Vec<i64>,
    interval: Duration,
    webhook: Option<Webhook>,
}

#[derive(Clone)]
struct Webhook {
    url: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    // The URL may carry a token (chat webhooks do): never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").finish_non_exhaustive()
    }
}

/// Starts the monitor on the current runtime (after the dependencies are installed).
pub fn spawn(config: &Config, control: &Control) {
    let mut thresholds: Vec<i64> = config
        .expiry
        .thresholds_days
        .iter()
        .map(|days| i64::from(*days))
        .collect();
    thresholds.sort_unstable_by(|a, b| b.cmp(a));
    thresholds.dedup();
    let webhook = match &config.expiry.webhook_url {
        None => None,
        Some(url) => {
            match mtls_secrets::vault::client(
                None,
                config
                    .expiry
                    .webhook_timeout_seconds
                    .max(Duration::from_millis(100)),
            ) {
                Ok(client) => Some(Webhook {
                    url: url.expose().to_owned(),
                    client,
                }),
                Err(error) => {
                    tracing::error!(%error, "expiry webhook disabled");
                    None
                }
            }
        }
    };
    let settings = Settings {
        thresholds,
        interval: config
            .expiry
            .check_interval_seconds
            .max(Duration::from_millis(100)),
        webhook,
    };
    let control = control.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(settings.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Some(backends) = control.backends().get() {
                round(&control, &backends, &settings).await;
            }
        }
    });
}

async fn round(control: &Control, backends: &Backends, settings: &Settings) {
    let rows = match backends.store.live_certificates().await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "expiry check: certificates could not be read; next round retries");
            return;
        }
    };
    let now = control.now();
    control.metrics().set_certificates(
        rows.iter()
            .map(|row| CertificateExpiry {
                account: row.account_id.clone(),
                id: row.id,
                name: row.name.clone(),
                status: mtls_control::report::status(row, now),
                not_after: row.not_after,
            })
            .collect(),
    );
    mtls_control::certificates::refresh_pending(control, backends).await;
    for row in &rows {
        if let Err(error) = notify(backends, settings, row, now).await {
            tracing::warn!(account = %row.account_id, certificate_id = row.id, %error, "expiry notification failed; next round retries");
        }
    }
}

/// Claims every threshold `row` crossed and not yet claimed; reports the smallest of them.
async fn notify(
    backends: &Backends,
    settings: &Settings,
    row: &CertificateRow,
    now: i64,
) -> Result<(), String> {
    let left = row.not_after - now;
    let mut claimed = Vec::new();
    for threshold in &settings.thresholds {
        if left > threshold * DAY {
            continue;
        }
        let fresh = backends
            .store
            .claim_expiry_notification(&row.account_id, row.id, row.not_after, *threshold, now)
            .await
            .map_err(|error| error.to_string())?;
        if fresh {
            claimed.push(*threshold);
        }
    }
    let Some(threshold) = claimed.iter().min().copied() else {
        return Ok(());
    };
    let renewal = row.renewal.as_ref().map(|renewal| {
        (
            if renewal.scheduled() {
                "Scheduled"
            } else {
                "Pending"
            },
            renewal.activate_at.map(mtls_control::clock::rfc3339),
        )
    });
    tracing::warn!(
        account = %row.account_id,
        certificate_id = row.id,
        name = %row.name,
        days_left = left as f64 / DAY as f64,
        threshold_days = threshold,
        renewal_pending = renewal.is_some(),
        renewal = renewal.as_ref().map_or("none", |(status, _)| *status),
        "certificate expires soon"
    );
    let Some(webhook) = &settings.webhook else {
        return Ok(());
    };
    let body = json!({
        "event": if left <= 0 { "certificate_expired" } else { "certificate_expiring" },
        "accountId": row.account_id,
        "certificateId": row.id,
        "name": row.name,
        "subject": row.subject,
        "fingerprintSha256": row.fingerprint_sha256,
        "notAfter": row.not_after,
        "secondsLeft": left,
        "thresholdDays": threshold,
        // SPEC 4.6: whether a renewal is under way, and its state.
        "renewalPending": renewal.is_some(),
        "renewal": renewal.map(|(status, activate_at)| json!({ "status": status, "activateAt": activate_at })),
    });
    let sent = webhook.client.post(&webhook.url).json(&body).send().await;
    let failure = match sent {
        Ok(response) if response.status().is_success() => return Ok(()),
        Ok(response) => format!("the webhook answered {}", response.status()),
        Err(error) => format!(
            "the webhook could not be reached ({})",
            if error.is_timeout() {
                "timeout"
            } else {
                "connection"
            }
        ),
    };
    for threshold in claimed {
        let _ = backends
            .store
            .release_expiry_notification(&row.account_id, row.id, row.not_after, threshold)
            .await;
    }
    Err(failure)
}
