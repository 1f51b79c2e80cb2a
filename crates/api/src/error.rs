//! Errors -> HTTP, in one place (SPEC 7). Every error the gateway produces is
//! `{"error": {"code", "message", "requestId"}}` with a stable, documented `code`; internal
//! details are logged, never returned.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mtls_auth::{AuthError, Denied, Scheme};
use mtls_control::ControlError;
use mtls_pki::IntakeError;
use serde::Serialize;

use crate::request_id;

/// An error answer: status, stable code, message for people. `Clone`: a cold identity's
/// failed load is given to every request that waited on it.
#[derive(Clone, Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    challenge: Option<String>,
    items: Vec<ItemError>,
    retry_after: Option<u64>,
    /// A transport failure (SPEC 7.4): the code and message also go into `LP-*` headers.
    transport: bool,
}

pub use mtls_control::ItemError;

impl std::fmt::Display for ApiError {
    /// The code and message, as the caller sees them (never secrets: messages are built so).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            challenge: None,
            items: Vec::new(),
            retry_after: None,
            transport: false,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency_unavailable",
            message,
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// A bug or an unexpected failure: the detail goes to the log, the caller gets the code.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(request_id = %request_id::current(), error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred",
        )
    }

    /// A 400 listing every bad item; the top-level code is the first item's.
    pub fn items(items: Vec<ItemError>) -> Self {
        let code = items.first().map_or("invalid_request", |item| item.code);
        let message = format!(
            "{} item(s) of the request are not valid; nothing was stored",
            items.len()
        );
        Self {
            items,
            ..Self::bad_request(code, message)
        }
    }

    /// A 424: the target could not be reached or did not complete (SPEC 7.4).
    pub fn transport(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            transport: true,
            ..Self::new(StatusCode::FAILED_DEPENDENCY, code, message)
        }
    }

    /// Adds `Retry-After` (seconds) to the answer.
    pub fn with_retry_after(self, seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds),
            ..self
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    request_id: String,
    #[serde(skip_serializing_if = "<[ItemError]>::is_empty")]
    items: &'a [ItemError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: self.code,
                message: &self.message,
                request_id: request_id::current(),
                items: &self.items,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.transport {
            let one_line: String = self
                .message
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            if let Ok(message) = HeaderValue::from_str(&one_line) {
                response
                    .headers_mut()
                    .insert("lp-message-from-transport", message);
            }
            response.headers_mut().insert(
                "lp-error-from-transport",
                HeaderValue::from_static(self.code),
            );
        }
        if let Some(challenge) = self
            .challenge
            .and_then(|value| HeaderValue::from_str(&value).ok())
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// The control plane's errors, each with its status and code (docs/errors.md); the detail of a
/// dependency failure or a bug is logged with the request id, never answered.
impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        match error {
            ControlError::Invalid { code, message } => Self::bad_request(code, message),
            ControlError::Items(items) => Self::items(items),
            ControlError::NotFound(what) => Self::not_found(what),
            ControlError::Missing { code, message } => {
                Self::new(StatusCode::NOT_FOUND, code, message)
            }
            ControlError::Conflict { code, message } => {
                Self::new(StatusCode::CONFLICT, code, message)
            }
            ControlError::Precondition { code, message } => {
                Self::new(StatusCode::PRECONDITION_FAILED, code, message)
            }
            ControlError::TooLarge(message) => Self::too_large(message),
            ControlError::Unavailable(message) => Self::unavailable(message),
            ControlError::Database(detail) => {
                tracing::error!(request_id = %request_id::current(), error = %detail, "database call failed");
                Self::unavailable("the database is unavailable")
            }
            ControlError::SecretStore(detail) => {
                tracing::error!(request_id = %request_id::current(), error = %detail, "secret store call failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "secret_store_unavailable",
                    "the secret store is unavailable",
                )
            }
            ControlError::Transport { code, message } => Self::transport(code, message),
            ControlError::Intake(IntakeError::KeyGeneration) => {
                tracing::error!(request_id = %request_id::current(), "key generation failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    IntakeError::KeyGeneration.code(),
                    IntakeError::KeyGeneration.to_string(),
                )
            }
            ControlError::Intake(error) => Self::from(error),
            ControlError::Internal(detail) => Self::internal(&detail),
        }
    }
}

/// A database failure, as the control plane reports it.
impl From<mtls_store::StoreError> for ApiError {
    fn from(error: mtls_store::StoreError) -> Self {
        ControlError::from(error).into()
    }
}

/// A secret-store failure, as the control plane reports it.
impl From<mtls_secrets::SecretError> for ApiError {
    fn from(error: mtls_secrets::SecretError) -> Self {
        ControlError::from(error).into()
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let challenge = Some(error.challenge());
        Self {
            challenge,
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized", error.to_string())
        }
    }
}

impl ApiError {
    /// The 403 to a caller whose credential does not cover the request (SPEC 3). A Bearer
    /// caller also gets `WWW-Authenticate: Bearer error="insufficient_scope"` (RFC 6750 3.1),
    /// so that a client tells the gateway's refusal from a target's 403. OAuth 1.0a has no
    /// such challenge and a client certificate no challenge at all: those 403s carry none
    /// (docs/errors.md).
    pub fn denied(scheme: Scheme) -> Self {
        let refused = Self::new(StatusCode::FORBIDDEN, "forbidden", Denied.to_string());
        match scheme {
            Scheme::Bearer => Self {
                challenge: Some(r#"Bearer error="insufficient_scope""#.to_owned()),
                ..refused
            },
            Scheme::OAuth | Scheme::ClientCertificate => refused,
        }
    }
}

impl From<IntakeError> for ApiError {
    fn from(error: IntakeError) -> Self {
        Self::bad_request(error.code(), error.to_string())
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed here",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_callers_403_carries_a_challenge() {
        let challenge = |scheme| {
            let response = ApiError::denied(scheme).into_response();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        assert_eq!(
            challenge(Scheme::Bearer).as_deref(),
            Some(r#"Bearer error="insufficient_scope""#)
        );
        assert_eq!(challenge(Scheme::OAuth), None);
        assert_eq!(challenge(Scheme::ClientCertificate), None);
    }
}

#[cfg(test)]
mod control_errors {
    use super::*;
    use mtls_control::ControlError;

    /// Every control-plane error keeps the status and code it had when the services returned
    /// `ApiError` themselves (docs/errors.md).
    #[test]
    fn each_control_error_keeps_its_status_and_code() {
        let item = ItemError {
            index: 1,
            code: "invalid_name",
            message: "bad".to_owned(),
        };
        for (error, status, code) in [
            (
                ControlError::invalid("too_many_items", "x"),
                StatusCode::BAD_REQUEST,
                "too_many_items",
            ),
            (
                ControlError::Items(vec![item]),
                StatusCode::BAD_REQUEST,
                "invalid_name",
            ),
            (
                ControlError::Missing {
                    code: "no_renewal",
                    message: "x".to_owned(),
                },
                StatusCode::NOT_FOUND,
                "no_renewal",
            ),
            (
                ControlError::NotFound("certificate"),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                ControlError::conflict("concurrent_update", "x"),
                StatusCode::CONFLICT,
                "concurrent_update",
            ),
            (
                ControlError::Precondition {
                    code: "revision_mismatch",
                    message: "x".to_owned(),
                },
                StatusCode::PRECONDITION_FAILED,
                "revision_mismatch",
            ),
            (
                ControlError::TooLarge("x".to_owned()),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
            (
                ControlError::Unavailable("x".to_owned()),
                StatusCode::SERVICE_UNAVAILABLE,
                "dependency_unavailable",
            ),
            (
                ControlError::Database("detail".to_owned()),
                StatusCode::SERVICE_UNAVAILABLE,
                "dependency_unavailable",
            ),
            (
                ControlError::SecretStore("detail".to_owned()),
                StatusCode::SERVICE_UNAVAILABLE,
                "secret_store_unavailable",
            ),
            (
                ControlError::Transport {
                    code: "validation_failed",
                    message: "x".to_owned(),
                },
                StatusCode::FAILED_DEPENDENCY,
                "validation_failed",
            ),
            (
                ControlError::Internal("detail".to_owned()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
            (
                ControlError::Intake(IntakeError::ChainKeyMismatch),
                StatusCode::BAD_REQUEST,
                "chain_key_mismatch",
            ),
            (
                ControlError::Intake(IntakeError::KeyGeneration),
                StatusCode::INTERNAL_SERVER_ERROR,
                "key_generation_failed",
            ),
            (
                ControlError::conflict("not_pending", "x"),
                StatusCode::CONFLICT,
                "not_pending",
            ),
        ] {
            assert_eq!(error.code(), code);
            let api = ApiError::from(error);
            assert_eq!((api.status(), api.code()), (status, code));
            // A dependency's or a bug's detail is logged, never answered.
            assert!(!api.to_string().contains("detail"), "{api}");
        }
        let conflict = ApiError::from(mtls_store::StoreError::Conflict);
        assert_eq!(
            (conflict.status(), conflict.code()),
            (StatusCode::CONFLICT, "name_conflict")
        );
    }
}
