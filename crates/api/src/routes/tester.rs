//! The PKCS#12 tester, validate-only form (SPEC 8): `POST
//! /mtls/account/{accountId}/p12-test/multipart` with parts `file` and `password`. Nothing of
//! the file or the password is stored or logged; both are wiped from memory after the check.

use axum::Json;
use axum::extract::{Request, State};
use mtls_auth::Privilege;

use crate::AppState;
use crate::audit;
use crate::dto::TesterReport;
use crate::error::ApiError;
use crate::extract::{AccountPath, Caller, authorize};
use crate::multipart;
use crate::ratelimit::Group;

pub async fn test_multipart(
    State(state): State<AppState>,
    caller: Caller,
    AccountPath(account): AccountPath,
    request: Request,
) -> Result<Json<TesterReport>, ApiError> {
    authorize(
        &state,
        &caller,
        &account,
        Privilege::ReadInternal,
        Group::Tester,
    )?;
    let ids: Vec<i64> = Vec::new();
    let result: Result<Json<TesterReport>, ApiError> = async {
        if request.headers().contains_key("lp-forward-url") {
            return Err(ApiError::bad_request(
                "live_test_unavailable",
                "the live test (LP-forward-url) needs the forward runtime, which this gateway version does not have yet; send the request without LP-forward-url to validate the file",
            ));
        }
        let mut parts = multipart::read(request, &state, "invalid_password").await?;
        let file = parts.take("file").ok_or_else(|| {
            ApiError::bad_request("missing_file", "the multipart part 'file' is missing")
        })?;
        // No password part is the empty password, as a file written without one expects.
        let password = parts
            .text("password", "invalid_password")?
            .unwrap_or_default();

        let _permit = state
            .inner
            .intake_permits
            .acquire()
            .await
            .map_err(|error| ApiError::internal(&error))?;
        let policy = state.inner.intake;
        let now = (state.inner.clock)();
        let inspection =
            tokio::task::spawn_blocking(move || mtls_pki::inspect(&file, &password, &policy, now))
                .await
                .map_err(|error| ApiError::internal(&error))??;
        Ok(Json(TesterReport::from(&inspection.report)))
    }
    .await;
    audit::record(
        &state,
        &caller,
        account.as_str(),
        "tester.run",
        ids,
        audit::outcome(&result),
    )
    .await;
    result
}
