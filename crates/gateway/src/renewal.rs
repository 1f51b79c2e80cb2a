//! The scheduled renewals' timer (SPEC 4.6): every sync interval, the renewals whose
//! `activateAt` has come are switched (`mtls_control::renewal::activate_due`). Every node runs
//! it; the version claim and the conditional row update let exactly one switch each renewal.

use std::time::Duration;

use mtls_control::Control;

/// Starts the timer on the current runtime (after the dependencies are installed).
pub(crate) fn spawn(control: &Control, interval: Duration) {
    let control = control.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(backends) = control.backends().get() else {
                continue;
            };
            for activation in mtls_control::renewal::activate_due(&control, &backends).await {
                mtls_control::renewal::audit_activation(&control, &backends, &activation).await;
            }
        }
    });
}
