//! Recording the audit trail: every configuration change, collect download and tester run,
//! with who, what, which ids, the outcome and the request id. Never a secret value: only ids,
//! action names and error codes are written. A failure to record is logged, not fatal.

use mtls_auth::{Principal, Scheme};

use crate::Control;

/// Who, as the audit trail names them.
pub fn actor(principal: &Principal) -> String {
    let scheme = match principal.scheme {
        Scheme::Bearer => "bearer",
        Scheme::OAuth => "oauth",
        Scheme::ClientCertificate => "certificate",
    };
    format!("{scheme}:{}", principal.subject)
}

/// `success`, or the error code of a failed operation.
pub fn outcome(error_code: Option<&str>) -> String {
    error_code.unwrap_or("success").to_owned()
}

/// One audited operation: who did what to which ids of which account, and how it ended.
#[derive(Debug)]
pub struct Operation<'a> {
    pub principal: &'a Principal,
    pub account: &'a str,
    pub action: &'static str,
    pub ids: Vec<i64>,
    /// `None`: success; else the error code answered.
    pub error_code: Option<&'static str>,
    /// The request's id (`-` outside a request).
    pub request_id: String,
}

/// Records `operation` in the audit trail, as of the control plane's clock.
pub async fn record(control: &Control, operation: Operation<'_>) {
    let Some(backends) = control.backends().get() else {
        tracing::warn!(
            action = operation.action,
            "audit entry not recorded: the database is not connected"
        );
        return;
    };
    let entry = mtls_store::AuditEntry {
        id: match mtls_store::new_id() {
            Ok(id) => id,
            Err(_) => return,
        },
        account_id: operation.account.to_owned(),
        at: control.now(),
        actor: actor(operation.principal),
        action: operation.action.to_owned(),
        target_ids: operation.ids,
        outcome: outcome(operation.error_code),
        request_id: operation.request_id,
    };
    if let Err(error) = backends.store.insert_audit(&entry).await {
        tracing::warn!(action = operation.action, %error, "audit entry not recorded");
    }
}
