//! The audit entry of an operation, in one place: every audited handler ends with
//! [`audited`], which records who did what to which ids and how it ended (the error code
//! answered, or `success`) under the path's account, then hands the answer back.

use mtls_auth::AccountId;
use mtls_control::audit::{self, Operation};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::request_id;

/// Records `action` on `ids` of `account` by `caller` with the outcome of `result`, and
/// returns `result`.
pub(crate) async fn audited<T>(
    state: &AppState,
    caller: &Caller,
    account: &AccountId,
    action: &'static str,
    ids: Vec<i64>,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    record(
        state,
        caller,
        account.as_str(),
        action,
        ids,
        result.as_ref().err().map(ApiError::code),
    )
    .await;
    result
}

/// Records `action` as [`audited`] does, for an account named otherwise than by the path
/// (the token endpoint audits under each account the token covers).
pub(crate) async fn record(
    state: &AppState,
    caller: &Caller,
    account: &str,
    action: &'static str,
    ids: Vec<i64>,
    error_code: Option<&'static str>,
) {
    audit::record(
        state.control(),
        Operation {
            principal: &caller.0,
            account,
            action,
            ids,
            error_code,
            request_id: request_id::current(),
        },
    )
    .await;
}
