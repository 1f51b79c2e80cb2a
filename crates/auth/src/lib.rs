//! Who is calling and what they may do: credentials in, [`Principal`] out, and the account and
//! privilege checks of SPEC 3. Pure: keys arrive as bytes, nothing here reads files or sockets.
//!
//! Schemes: Bearer JWT ([`bearer`], with an identity provider's claims read through
//! [`claims`]), OAuth 1.0a ([`oauth`]), and client certificates verified
//! by the listener ([`certificate`], used when a request carries no `Authorization` header).

mod account;
pub mod bearer;
pub mod certificate;
pub mod claims;
pub mod client_credentials;
pub mod oauth;
mod principal;

pub use account::{AccountId, InvalidAccountId};
pub use bearer::{BearerConfig, BearerVerifier, TokenIssuer};
pub use claims::ClaimMapping;
pub use principal::{AccountScope, Denied, Principal, Privilege, Privileges, Scheme};

use std::fmt;

/// What the HTTP layer hands over from a request: enough for every scheme to verify it.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    /// The `Authorization` header, when present and valid UTF-8.
    pub authorization: Option<&'a str>,
    /// The request as the client signed it (OAuth 1.0a).
    pub request: oauth::SignedRequest<'a>,
}

/// A verified caller, and the OAuth nonce to record once (OAuth requests only).
#[derive(Debug)]
pub struct Verified {
    /// Shared: the Bearer cache hands out the same principal to every request of a token.
    pub principal: std::sync::Arc<Principal>,
    pub nonce: Option<oauth::Nonce>,
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
    /// Accepted distance between an OAuth timestamp and now, in seconds.
    oauth_window: i64,
}

impl Authenticator {
    pub fn new(bearer: BearerVerifier, oauth_window: i64) -> Self {
        Self {
            bearer,
            oauth_window,
        }
    }

    /// The accepted distance between an OAuth timestamp and now, in seconds.
    pub fn oauth_window(&self) -> i64 {
        self.oauth_window
    }

    /// Verifies the request's credential and returns who it is. `now` is Unix seconds.
    pub fn authenticate(
        &self,
        credentials: &Credentials<'_>,
        app_keys: &dyn oauth::AppKeys,
        now: i64,
    ) -> Result<Verified, AuthError> {
        let header = credentials.authorization.ok_or(AuthError::Missing)?;
        let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            Ok(Verified {
                principal: self
                    .bearer
                    .verify(value.trim(), u64::try_from(now).unwrap_or(0))?,
                nonce: None,
            })
        } else if scheme.eq_ignore_ascii_case("oauth") {
            let (principal, nonce) = oauth::verify(
                header,
                &credentials.request,
                app_keys,
                now,
                self.oauth_window,
            )?;
            Ok(Verified {
                principal: std::sync::Arc::new(principal),
                nonce: Some(nonce),
            })
        } else {
            Err(AuthError::UnsupportedScheme)
        }
    }
}
