//! Request extractors: the authenticated caller, the account id of the path (SPEC 2), and
//! [`Authorized`], both checked against a route's privilege before any body is read.

use axum::extract::{FromRequestParts, Path};
use axum::http::header;
use axum::http::request::Parts;
use mtls_auth::oauth::SignedRequest;
use mtls_auth::{AccountId, Credentials, Principal, Privilege};

use crate::AppState;
use crate::error::ApiError;
use crate::ratelimit::Group;

/// The authenticated caller; rejects with 401 before the handler runs.
#[derive(Debug)]
pub struct Caller(pub std::sync::Arc<Principal>);

/// The client certificate (DER leaf) the listener verified on this request's connection.
#[derive(Clone, Debug)]
pub struct PeerCertificate(pub std::sync::Arc<[u8]>);

/// The body of an OAuth-signed `application/x-www-form-urlencoded` request, kept by
/// [`keep_form_body`] because its parameters are part of the signature.
#[derive(Clone, Debug)]
pub struct FormBody(pub axum::body::Bytes);

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
        if authorization.is_none()
            && let Some(certificate) = parts.extensions.get::<PeerCertificate>()
        {
            return by_certificate(state, &certificate.0).map(|principal| Caller(principal.into()));
        }
        // Only an OAuth signature covers the URL: build the origin for those requests alone.
        let oauth = authorization.is_some_and(|value| {
            value
                .trim_start()
                .get(..5)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("oauth"))
        });
        let origin = match (state.public_base_url(), oauth) {
            (_, false) => String::new(),
            (Some(base), true) => base.to_owned(),
            (None, true) => {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|value| value.to_str().ok());
                format!("http://{}", host.unwrap_or("localhost"))
            }
        };
        let form_body = parts
            .extensions
            .get::<FormBody>()
            .map(|body| body.0.clone());
        let request = SignedRequest {
            method: parts.method.as_str(),
            origin: &origin,
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            form_body: form_body.as_deref(),
        };
        let now = state.control().now();
        let verified = state.authenticator().authenticate(
            &Credentials {
                authorization,
                request,
            },
            state.control().app_keys(),
            now,
        )?;
        if let Some(nonce) = verified.nonce {
            // The nonce store is shared by every node: a replay to another node is refused too.
            let backends = state.control().backends().require()?;
            let expires_at = nonce
                .timestamp
                .saturating_add(state.authenticator().oauth_window())
                .saturating_add(1);
            // Boxed, as every rare path of the request: inline, its size would be part of every
            // request's future, which is moved as a whole.
            if !Box::pin(
                backends
                    .store
                    .record_nonce(&nonce.consumer_key, &nonce.nonce, expires_at),
            )
            .await?
            {
                return Err(mtls_auth::AuthError::Invalid("oauth_nonce already used").into());
            }
        }
        Ok(Caller(verified.principal))
    }
}

/// The caller a verified client certificate maps to (403 when no rule names it: a certificate
/// is a claim of identity, never a fallback to anonymous).
fn by_certificate(state: &AppState, der: &[u8]) -> Result<Principal, ApiError> {
    let refused = || {
        ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "certificate_not_mapped",
            "the client certificate is not mapped to a caller",
        )
    };
    let (subject, alternative_names) = mtls_pki::certificate_names(der).ok_or_else(refused)?;
    state
        .certificate_principals()
        .principal(&subject, &alternative_names)
        .map_err(|_| {
            tracing::info!(%subject, "a verified client certificate is not mapped");
            refused()
        })
}

/// Most bytes of a form body kept for signature checking.
const FORM_BODY_LIMIT: usize = 1024 * 1024;

/// Keeps the body of an OAuth-signed form request (see [`FormBody`]) beside an unchanged copy;
/// every other request passes untouched. A form past 1 MiB is the 413 answer.
pub async fn keep_form_body(
    request: axum::extract::Request,
) -> Result<axum::extract::Request, axum::response::Response> {
    use axum::response::IntoResponse;
    let signed = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .get(..5)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("oauth"))
        });
    if !signed {
        return Ok(request);
    }
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form {
        return Ok(request);
    }
    // Refused before a byte is read when the length says it already (the signature is checked
    // after this read, so this is the one body read before authentication).
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > FORM_BODY_LIMIT as u64) {
        return Err(ApiError::too_large("the form body is larger than 1 MiB").into_response());
    }
    let (mut parts, body) = request.into_parts();
    let bytes = match Box::pin(axum::body::to_bytes(body, FORM_BODY_LIMIT)).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return Err(ApiError::too_large("the form body is larger than 1 MiB").into_response());
        }
    };
    parts.extensions.insert(FormBody(bytes.clone()));
    Ok(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
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

/// The `{id}` of a path: anything but a positive integer is simply not found (no 400 that
/// would tell ids and garbage apart).
pub fn path_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found(what))
}

/// A boolean query parameter: `true`/`1` or `false`/`0` (any case); absent is `false`;
/// anything else is 400 `invalid_query`.
pub fn query_flag(value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None => Ok(false),
        Some(value) if value.eq_ignore_ascii_case("true") || value == "1" => Ok(true),
        Some(value) if value.eq_ignore_ascii_case("false") || value == "0" => Ok(false),
        Some(_) => Err(ApiError::bad_request(
            "invalid_query",
            "a boolean query parameter must be true or false",
        )),
    }
}

/// The query string as `T`; a malformed or repeated parameter is 400 `invalid_query` in the
/// JSON error format (axum's own rejection is plain text).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    "the query string has a malformed or repeated parameter",
                )
            })
    }
}

/// What a route asks of its caller: a privilege, and the rate-limit group its account is charged
/// in. Marker types, so that a route's needs are part of its handler's signature.
pub trait Need: Send + Sync + 'static {
    const PRIVILEGE: Privilege;
    const GROUP: Group;
}

/// Changing an account's certificates or mappings.
#[derive(Debug)]
pub struct WriteConfiguration;

impl Need for WriteConfiguration {
    const PRIVILEGE: Privilege = Privilege::WriteInternal;
    const GROUP: Group = Group::Configuration;
}

/// Reading an account's certificates or mappings.
#[derive(Debug)]
pub struct ReadConfiguration;

impl Need for ReadConfiguration {
    const PRIVILEGE: Privilege = Privilege::ReadInternal;
    const GROUP: Group = Group::Configuration;
}

/// The runtime mapping checks.
#[derive(Debug)]
pub struct ReadChecks;

impl Need for ReadChecks {
    const PRIVILEGE: Privilege = Privilege::ReadInternal;
    const GROUP: Group = Group::Checks;
}

/// The PKCS#12 tester (its own rate-limit group: each run may parse for a second).
#[derive(Debug)]
pub struct RunTester;

impl Need for RunTester {
    const PRIVILEGE: Privilege = Privilege::ReadInternal;
    const GROUP: Group = Group::Tester;
}

/// Forwarding a call to a target with the account's certificate.
#[derive(Debug)]
pub struct Forward;

impl Need for Forward {
    const PRIVILEGE: Privilege = Privilege::Forward;
    const GROUP: Group = Group::Forward;
}

/// A caller allowed to act on the path's account with `N`'s privilege, its account's bucket
/// charged. Extractors taking the request's parts run before the one taking its body, so a
/// handler that takes this never reads a byte of the body for a caller it refuses: 401, 400
/// (account id), 403 and 429 answer at once, whatever `Content-Length` announces.
#[derive(Debug)]
pub struct Authorized<N> {
    pub caller: Caller,
    pub account: AccountId,
    need: std::marker::PhantomData<fn() -> N>,
}

impl<N: Need> Authorized<N> {
    /// `caller` on `account`, checked for `N` (the forward shortcut, which matched the path
    /// itself, comes in here; the router's routes through the extractor).
    pub(crate) fn check(
        state: &AppState,
        caller: Caller,
        account: AccountId,
    ) -> Result<Self, ApiError> {
        authorize(state, &caller, &account, N::PRIVILEGE, N::GROUP)?;
        Ok(Authorized {
            caller,
            account,
            need: std::marker::PhantomData,
        })
    }
}

impl<N: Need> FromRequestParts<AppState> for Authorized<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let AccountPath(account) = AccountPath::from_request_parts(parts, state).await?;
        Self::check(state, caller, account)
    }
}

/// A caller holding `N`'s privilege for some account, for routes whose accounts are named in
/// the body (the global mapping check): the privilege is checked before the body is read, each
/// account with `Privileged::on` once the body names it.
#[derive(Debug)]
pub struct Privileged<N> {
    pub caller: Caller,
    need: std::marker::PhantomData<fn() -> N>,
}

impl<N: Need> FromRequestParts<AppState> for Privileged<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.0.privileges.contains(N::PRIVILEGE) {
            return Err(ApiError::denied(caller.0.scheme));
        }
        Ok(Privileged {
            caller,
            need: std::marker::PhantomData,
        })
    }
}

impl<N: Need> Privileged<N> {
    /// Checks the caller on `account` as [`Authorized<N>`] does, once the body named it.
    pub(crate) fn on(&self, state: &AppState, account: &AccountId) -> Result<(), ApiError> {
        authorize(state, &self.caller, account, N::PRIVILEGE, N::GROUP)
    }
}

/// Checks that `caller` may act on `account` with `privilege` (403 otherwise, with a Bearer
/// caller's challenge: [`ApiError::denied`]), then takes a token from the account's bucket of
/// `group` (429 when empty). Only the extractors call it: a handler states its need in its
/// signature ([`Authorized`], [`Privileged`]).
fn authorize(
    state: &AppState,
    caller: &Caller,
    account: &AccountId,
    privilege: Privilege,
    group: Group,
) -> Result<(), ApiError> {
    caller
        .0
        .authorize(account.as_str(), privilege)
        .map_err(|_| ApiError::denied(caller.0.scheme))?;
    state.rate_limiter().check_account(group, account.as_str())
}
