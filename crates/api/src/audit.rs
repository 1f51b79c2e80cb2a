//! Recording the audit trail: every configuration change, collect download and tester run,
//! with who, what, which ids, the outcome and the request id. Never a secret value: only ids,
//! action names and error codes are written. A failure to record is logged, not fatal.

use mtls_auth::Scheme;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::request_id;

/// Who, as the audit trail names them.
pub fn actor(caller: &Caller) -> String {
    let scheme = match caller.0.scheme {
        Scheme::Bearer => "bearer",
        Scheme::OAuth => "oauth",
        Scheme::ClientCertificate => "certificate",
    };
    format!("{scheme}:{}", caller.0.subject)
}

/// `success`, or the error code of `result`.
pub fn outcome<T>(result: &Result<T, ApiError>) -> String {
    match result {
        Ok(_) => "success".to_owned(),
        Err(error) => error.code().to_owned(),
    }
}

/// Records `action` on `ids` of `account` with `outcome` (see [`outcome`]).
pub async fn record(
    state: &AppState,
    caller: &Caller,
    account: &str,
    action: &'static str,
    ids: Vec<i64>,
    outcome: String,
) {
    let Some(backends) = state.inner.backends.get() else {
        tracing::warn!(
            action,
            "audit entry not recorded: the database is not connected"
        );
        return;
    };
    let entry = mtls_store::AuditEntry {
        id: match mtls_store::new_id() {
            Ok(id) => id,
            Err(_) => return,
        },
        account_id: account.to_owned(),
        at: crate::certificates::now(),
        actor: actor(caller),
        action: action.to_owned(),
        target_ids: ids,
        outcome,
        request_id: request_id::current(),
    };
    if let Err(error) = backends.store.insert_audit(&entry).await {
        tracing::warn!(action, %error, "audit entry not recorded");
    }
}
