//! Reading multipart bodies with per-part limits: part names matched case-insensitively,
//! values wiped from memory when dropped, 415 for another content type, 413 past the limits.

use std::collections::HashMap;

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use zeroize::Zeroizing;

use crate::AppState;
use crate::error::ApiError;

/// The parts of a multipart body, by lower-cased name.
pub(crate) struct Parts(HashMap<String, Zeroizing<Vec<u8>>>);

impl Parts {
    pub(crate) fn take(&mut self, name: &str) -> Option<Zeroizing<Vec<u8>>> {
        self.0.remove(name)
    }

    /// A part as UTF-8 text.
    pub(crate) fn text(
        &mut self,
        name: &str,
        code: &'static str,
    ) -> Result<Option<Zeroizing<String>>, ApiError> {
        match self.0.remove(name) {
            None => Ok(None),
            Some(bytes) => {
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    ApiError::bad_request(code, format!("the '{name}' part must be UTF-8 text"))
                })?;
                Ok(Some(Zeroizing::new(text.to_owned())))
            }
        }
    }
}

/// Reads every part of `request`; `file` may hold up to the PKCS#12 limit, other parts
/// `small_limit` bytes (past it: 400 with `small_code`).
pub(crate) async fn read(
    request: Request,
    state: &AppState,
    small_code: &'static str,
) -> Result<Parts, ApiError> {
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
            "send multipart/form-data",
        ));
    }
    let mut multipart = Multipart::from_request(request, state).await.map_err(|_| {
        ApiError::bad_request("invalid_multipart", "the multipart body cannot be read")
    })?;
    let limits = *state.control().limits();
    let mut parts = HashMap::new();
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_ascii_lowercase();
        let limit = if name == "file" || name == "body" {
            limits.p12_max_bytes
        } else {
            limits.password_max_bytes
        };
        let mut bytes = Zeroizing::new(Vec::new());
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if bytes.len() + chunk.len() > limit {
                return Err(if limit == limits.p12_max_bytes {
                    ApiError::too_large(format!("the '{name}' part is larger than {limit} bytes"))
                } else {
                    ApiError::bad_request(
                        small_code,
                        format!("the '{name}' part is longer than {limit} bytes"),
                    )
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if parts.insert(name.clone(), bytes).is_some() {
            return Err(ApiError::bad_request(
                "invalid_multipart",
                format!("more than one '{name}' part"),
            ));
        }
    }
    Ok(Parts(parts))
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("the request body is larger than allowed")
    } else {
        ApiError::bad_request("invalid_multipart", "the multipart body cannot be read")
    }
}
