//! The control plane's error: what went wrong, in terms the HTTP edge turns into a status and
//! a stable code in one place (`mtls_api::error`, `From<ControlError> for ApiError`). Every
//! variant carries the code and message the caller sees; details that must not reach a caller
//! (a database or secret-store failure, a bug) are kept apart and only logged. `Clone`: a cold
//! identity's failed load is given to every request that waited on it.

use serde::Serialize;

/// One bad item of a request that carries several (SPEC 4.3: every bad item, with its index).
#[derive(Clone, Debug, Serialize)]
pub struct ItemError {
    pub index: usize,
    pub code: &'static str,
    pub message: String,
}

/// A control-plane operation's failure.
#[derive(Clone, Debug)]
pub enum ControlError {
    /// The request is not valid (400).
    Invalid { code: &'static str, message: String },
    /// Several items are not valid (400, every bad item listed; nothing was stored).
    Items(Vec<ItemError>),
    /// No such thing in the caller's account (404).
    NotFound(&'static str),
    /// 404 with its own code: the thing exists, but not the state asked for (`no_renewal`).
    Missing { code: &'static str, message: String },
    /// The change conflicts with the state (409: a name or triplet in use, a cap reached, a
    /// concurrent update, a missing secret).
    Conflict { code: &'static str, message: String },
    /// A condition the caller set does not hold (412: `If-Match` names a stale revision).
    Precondition { code: &'static str, message: String },
    /// Larger than a limit (413).
    TooLarge(String),
    /// A dependency is not connected yet (503 `dependency_unavailable`).
    Unavailable(String),
    /// A database call failed (503); the detail is logged, never answered.
    Database(String),
    /// A secret-store call failed (503); the detail is logged, never answered.
    SecretStore(String),
    /// A target refused or failed a call the control plane made for the caller (SPEC 7.4).
    Transport { code: &'static str, message: String },
    /// A certificate request or an uploaded chain was refused (SPEC 4.6): 400 with the pki
    /// code, except `key_generation_failed` (500: the gateway's failure, not the caller's).
    Intake(mtls_pki::IntakeError),
    /// A bug or an unexpected failure (500); the detail is logged, never answered.
    Internal(String),
}

impl ControlError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    /// The stable code the caller sees (docs/errors.md).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { code, .. }
            | Self::Conflict { code, .. }
            | Self::Precondition { code, .. }
            | Self::Missing { code, .. }
            | Self::Transport { code, .. } => code,
            Self::Items(items) => items.first().map_or("invalid_request", |item| item.code),
            Self::Intake(error) => error.code(),
            Self::NotFound(_) => "not_found",
            Self::TooLarge(_) => "payload_too_large",
            Self::Unavailable(_) | Self::Database(_) => "dependency_unavailable",
            Self::SecretStore(_) => "secret_store_unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl std::fmt::Display for ControlError {
    /// The code and what happened; the detail of a dependency failure or a bug included (this
    /// is for logs: the HTTP edge answers without it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = self.code();
        match self {
            Self::Invalid { message, .. }
            | Self::Conflict { message, .. }
            | Self::Precondition { message, .. }
            | Self::Missing { message, .. }
            | Self::Transport { message, .. }
            | Self::TooLarge(message)
            | Self::Unavailable(message) => write!(f, "{code}: {message}"),
            Self::Items(items) => write!(f, "{code}: {} item(s) are not valid", items.len()),
            Self::NotFound(what) => write!(f, "{code}: no such {what}"),
            Self::Intake(error) => write!(f, "{code}: {error}"),
            Self::Database(detail) => write!(f, "{code}: database call failed: {detail}"),
            Self::SecretStore(detail) => write!(f, "{code}: secret store call failed: {detail}"),
            Self::Internal(detail) => write!(f, "{code}: {detail}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// A database failure; a unique-key conflict is the name conflict it always means.
impl From<mtls_store::StoreError> for ControlError {
    fn from(error: mtls_store::StoreError) -> Self {
        match error {
            mtls_store::StoreError::Conflict => Self::conflict(
                "name_conflict",
                "the name is already used by another certificate",
            ),
            other => Self::Database(other.to_string()),
        }
    }
}

impl From<mtls_secrets::SecretError> for ControlError {
    fn from(error: mtls_secrets::SecretError) -> Self {
        Self::SecretStore(error.to_string())
    }
}
