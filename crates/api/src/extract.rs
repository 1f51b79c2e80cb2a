//! Request extractors: the authenticated caller, and the account id of the path (SPEC 2).

use axum::extract::{FromRequestParts, Path};
use axum::http::header;
use axum::http::request::Parts;
use mtls_auth::{AccountId, Credentials, Principal, Privilege};

use crate::AppState;
use crate::error::ApiError;
use crate::ratelimit::Group;

/// The authenticated caller; rejects with 401 before the handler runs.
#[derive(Debug)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authorization = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| {
                ApiError::from(mtls_auth::AuthError::Invalid(
                    "the Authorization header is not text",
                ))
            })?),
        };
        let principal = state
            .inner
            .authenticator
            .authenticate(&Credentials { authorization })?;
        Ok(Caller(principal))
    }
}

/// The `{accountId}` path segment, validated.
#[derive(Debug)]
pub struct AccountPath(pub AccountId);

impl<S: Send + Sync> FromRequestParts<S> for AccountPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::bad_request(
                "invalid_account_id",
                "the account id in the path is not valid",
            )
        };
        let Path(params) =
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|_| invalid())?;
        let raw = params.get("account_id").ok_or_else(invalid)?;
        let account = AccountId::parse(raw)
            .map_err(|error| ApiError::bad_request("invalid_account_id", error.to_string()))?;
        Ok(AccountPath(account))
    }
}

/// Checks that `caller` may act on `account` with `privilege` (403 otherwise), then takes a
/// token from the account's bucket of `group` (429 when empty).
pub fn authorize(
    state: &AppState,
    caller: &Caller,
    account: &AccountId,
    privilege: Privilege,
    group: Group,
) -> Result<(), ApiError> {
    caller.0.authorize(account.as_str(), privilege)?;
    state
        .inner
        .rate_limiter
        .check_account(group, account.as_str())
}
