//! Who is calling and what they may do: credentials in, [`Principal`] out, and the account and
//! privilege checks of SPEC 3. Pure: keys arrive as bytes, nothing here reads files or sockets.
//!
//! Schemes: Bearer JWT today ([`bearer`]); OAuth 1.0a and client certificates slot in beside it
//! as further arms of [`Authenticator::authenticate`].

mod account;
pub mod bearer;
mod principal;

pub use account::{AccountId, InvalidAccountId};
pub use bearer::{BearerConfig, BearerVerifier, TokenIssuer};
pub use principal::{AccountScope, Denied, Principal, Privilege, Privileges, Scheme};

use std::fmt;

/// What the HTTP layer hands over from a request: enough for every scheme to verify it.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    /// The `Authorization` header, when present and valid UTF-8.
    pub authorization: Option<&'a str>,
}

/// Why a request carries no acceptable credential: always a 401, whose `WWW-Authenticate`
/// challenge is [`AuthError::challenge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header of a scheme this gateway does not accept.
    UnsupportedScheme,
    /// A credential of an accepted scheme that does not verify; the reason is safe to show.
    Invalid(&'static str),
}

impl AuthError {
    /// The `WWW-Authenticate` value for this failure (RFC 6750 section 3).
    pub fn challenge(&self) -> String {
        match self {
            AuthError::Missing | AuthError::UnsupportedScheme => {
                r#"Bearer realm="mtls-gateway""#.to_owned()
            }
            AuthError::Invalid(reason) => {
                format!(
                    r#"Bearer realm="mtls-gateway", error="invalid_token", error_description="{reason}""#
                )
            }
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("this endpoint requires a credential"),
            AuthError::UnsupportedScheme => f.write_str("the Authorization scheme is not accepted"),
            AuthError::Invalid(reason) => write!(f, "the credential is not valid: {reason}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Every scheme the gateway accepts, behind one call.
#[derive(Debug)]
pub struct Authenticator {
    bearer: BearerVerifier,
}

impl Authenticator {
    pub fn new(bearer: BearerVerifier) -> Self {
        Self { bearer }
    }

    /// Verifies the request's credential and returns who it is.
    pub fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Principal, AuthError> {
        let header = credentials.authorization.ok_or(AuthError::Missing)?;
        let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            self.bearer.verify(value.trim())
        } else {
            Err(AuthError::UnsupportedScheme)
        }
    }
}
