//! The PKCS#12 tester, validate-only form (SPEC 8): `POST
//! /mtls/account/{accountId}/p12-test/multipart` with parts `file` and `password`. Nothing of
//! the file or the password is stored or logged; both are wiped from memory after the check.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use mtls_auth::Privilege;
use zeroize::Zeroizing;

use crate::AppState;
use crate::dto::TesterReport;
use crate::error::ApiError;
use crate::extract::{AccountPath, Caller, authorize};

/// The parts of a tester request.
struct Upload {
    file: Zeroizing<Vec<u8>>,
    password: Zeroizing<String>,
}

pub async fn test_multipart(
    State(state): State<AppState>,
    caller: Caller,
    AccountPath(account): AccountPath,
    request: Request,
) -> Result<Json<TesterReport>, ApiError> {
    authorize(&caller, &account, Privilege::ReadInternal)?;
    if request.headers().contains_key("lp-forward-url") {
        return Err(ApiError::bad_request(
            "live_test_unavailable",
            "the live test (LP-forward-url) needs the forward runtime, which this gateway version does not have yet; send the request without LP-forward-url to validate the file",
        ));
    }
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    if !is_multipart {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send multipart/form-data with the parts 'file' and 'password'",
        ));
    }
    let multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|_| {
            ApiError::bad_request("invalid_multipart", "the multipart body cannot be read")
        })?;
    let upload = read_upload(multipart, &state).await?;

    let _permit = state
        .inner
        .intake_permits
        .acquire()
        .await
        .map_err(|error| ApiError::internal(&error))?;
    let policy = state.inner.intake;
    let now = (state.inner.clock)();
    let inspection = tokio::task::spawn_blocking(move || {
        mtls_pki::inspect(&upload.file, &upload.password, &policy, now)
    })
    .await
    .map_err(|error| ApiError::internal(&error))??;
    Ok(Json(TesterReport::from(&inspection.report)))
}

async fn read_upload(mut multipart: Multipart, state: &AppState) -> Result<Upload, ApiError> {
    let limits = state.inner.limits;
    let mut file: Option<Zeroizing<Vec<u8>>> = None;
    let mut password: Option<Zeroizing<String>> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_ascii_lowercase();
        let limit = match name.as_str() {
            "file" => limits.p12_max_bytes,
            "password" => limits.password_max_bytes,
            // `body` belongs to the live test; other parts are ignored, but still read.
            _ => limits.p12_max_bytes,
        };
        let mut bytes = Zeroizing::new(Vec::new());
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if bytes.len() + chunk.len() > limit {
                return Err(match name.as_str() {
                    "password" => {
                        ApiError::bad_request("invalid_password", "the password part is too long")
                    }
                    _ => ApiError::too_large(format!(
                        "the '{name}' part is larger than {limit} bytes"
                    )),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "file" if file.is_some() => {
                return Err(ApiError::bad_request(
                    "invalid_multipart",
                    "more than one 'file' part",
                ));
            }
            "file" => file = Some(bytes),
            "password" => {
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    ApiError::bad_request("invalid_password", "the password must be UTF-8 text")
                })?;
                password = Some(Zeroizing::new(text.to_owned()));
            }
            _ => {}
        }
    }
    let file = file.ok_or_else(|| {
        ApiError::bad_request("missing_file", "the multipart part 'file' is missing")
    })?;
    // No password part is the empty password, as a file written without one expects.
    let password = password.unwrap_or_default();
    Ok(Upload { file, password })
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("the request body is larger than allowed")
    } else {
        ApiError::bad_request("invalid_multipart", "the multipart body cannot be read")
    }
}
