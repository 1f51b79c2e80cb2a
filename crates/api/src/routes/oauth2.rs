//! `POST /oauth2/token` (SPEC 3): RFC 6749 section 4.4 client credentials for app keys. The
//! consumer key and secret (`client_secret_basic` or `client_secret_post`, never both) buy a
//! short-lived HS256 Bearer token with the key's accounts and privileges, or the subset of the
//! privileges a `scope` names. Errors are RFC 6749 5.2 JSON, not the gateway's error body: the
//! callers are OAuth client libraries. No credential is needed to call it (the client
//! credentials are the credential); the per-IP bucket of the configuration group guards it.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mtls_auth::client_credentials::{self, ClientGrant};
use mtls_auth::{Principal, Scheme};
use serde_json::json;
use zeroize::Zeroizing;

use crate::AppState;
use crate::audit;
use crate::extract::Caller;

/// Largest form accepted, in bytes: a client id, a secret, a grant type and a scope fit many
/// times over. Enforced while reading.
pub(super) const MAX_FORM_BYTES: usize = 8 * 1024;

/// An RFC 6749 5.2 error answer.
#[derive(Clone, Copy, Debug)]
struct OAuthError {
    error: &'static str,
    description: &'static str,
    /// `invalid_client` after `client_secret_basic` (or no client authentication at all): 401
    /// with a `Basic` challenge (RFC 6749 5.2); `server_error` is 500, every other error 400.
    challenge: bool,
}

fn invalid_request(description: &'static str) -> OAuthError {
    OAuthError {
        error: "invalid_request",
        description,
        challenge: false,
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = if self.challenge {
            StatusCode::UNAUTHORIZED
        } else if self.error == "server_error" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        no_store(headers);
        if self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="mtls-gateway", charset="UTF-8""#),
            );
        }
        response
    }
}

/// RFC 6749 5.1: token answers (and their errors) are never cached.
fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// How the client authenticated.
enum ClientAuth {
    Basic,
    Post,
}

pub(super) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match issue(&state, &headers, body).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(
                error = error.error,
                reason = error.description,
                "token request refused"
            );
            error.into_response()
        }
    }
}

async fn issue(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, OAuthError> {
    let Some(endpoint) = state.token_endpoint().cloned() else {
        return Err(OAuthError {
            error: "unsupported_grant_type",
            description: "the token endpoint is disabled",
            challenge: false,
        });
    };
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| {
            value
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let too_large = || invalid_request("the form is larger than 8192 bytes");
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_FORM_BYTES as u64) {
        return Err(too_large());
    }
    // Capped while it streams in: a body without a length stops at the cap too.
    let bytes = Zeroizing::new(
        Box::pin(axum::body::to_bytes(body, MAX_FORM_BYTES))
            .await
            .map_err(|_| too_large())?
            .to_vec(),
    );
    let form = client_credentials::form(&bytes)
        .ok_or_else(|| invalid_request("the form does not decode as UTF-8 form encoding"))?;
    // RFC 6749 3.2: no parameter twice; one sent without a value counts as omitted.
    let mut seen: Vec<&str> = Vec::with_capacity(form.len());
    for (name, _) in &form {
        if seen.contains(&name.as_str()) {
            return Err(invalid_request("a parameter is repeated"));
        }
        seen.push(name);
    }
    let parameter = |wanted: &str| {
        form.iter()
            .find(|(name, value)| name == wanted && !value.is_empty())
            .map(|(_, value)| value.as_str())
    };
    match parameter("grant_type") {
        None => return Err(invalid_request("grant_type is missing")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError {
                error: "unsupported_grant_type",
                description: "only grant_type=client_credentials is supported",
                challenge: false,
            });
        }
    }
    let (method, client_id, secret) = client(headers, &parameter)?;
    let invalid_client = OAuthError {
        error: "invalid_client",
        description: "client authentication failed",
        challenge: matches!(method, ClientAuth::Basic),
    };
    let Some(key) = client_credentials::authenticate(state.app_keys(), &client_id, &secret) else {
        tracing::info!(client_id = %client_id, "token request: client authentication failed");
        return Err(invalid_client);
    };
    let privileges =
        client_credentials::privileges(&key, parameter("scope")).ok_or(OAuthError {
            error: "invalid_scope",
            description: "the scope names a privilege this client does not hold",
            challenge: false,
        })?;
    let accounts = client_credentials::accounts(&key);
    let token_id = uuid::Uuid::new_v4().simple().to_string();
    let token = endpoint
        .issuer
        .issue(
            &ClientGrant {
                client_id: &key.consumer_key,
                accounts: &accounts,
                privileges: &privileges,
                ttl_seconds: endpoint.lifetime_seconds,
                token_id: &token_id,
            },
            u64::try_from(state.control().now()).unwrap_or(0),
        )
        .map_err(|_| OAuthError {
            error: "server_error",
            description: "the token could not be signed",
            challenge: false,
        })?;
    let scope: Vec<&str> = privileges
        .iter()
        .map(|privilege| privilege.name())
        .collect();
    // Audited under each account the token covers (`*` for a platform key), naming the key.
    let caller = Caller(Arc::new(Principal {
        subject: key.consumer_key.clone(),
        scheme: Scheme::OAuth,
        accounts: key.accounts.clone(),
        privileges: privileges.iter().copied().collect(),
    }));
    for account in &accounts {
        audit::record(state, &caller, account, "oauth2.token", Vec::new(), None).await;
    }
    tracing::info!(client_id = %key.consumer_key, token_id = %token_id, "token issued");
    let body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": endpoint.lifetime_seconds,
        "scope": scope.join(" "),
    });
    let mut response = (StatusCode::OK, Json(body)).into_response();
    no_store(response.headers_mut());
    Ok(response)
}

/// The client's id and secret, by HTTP Basic or in the form (never both: RFC 6749 2.3).
fn client<'a>(
    headers: &HeaderMap,
    parameter: &impl Fn(&str) -> Option<&'a str>,
) -> Result<(ClientAuth, String, Zeroizing<String>), OAuthError> {
    let basic_failed = OAuthError {
        error: "invalid_client",
        description: "client authentication failed",
        challenge: true,
    };
    let form_secret = parameter("client_secret");
    let form_id = parameter("client_id");
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        return match (form_id, form_secret) {
            (Some(id), Some(secret)) => Ok((
                ClientAuth::Post,
                id.to_owned(),
                Zeroizing::new(secret.to_owned()),
            )),
            // No client authentication at all: invite Basic (RFC 6749 5.2, invalid_client).
            (None, None) => Err(OAuthError {
                description: "no client authentication: use HTTP Basic or client_id and client_secret in the form",
                ..basic_failed
            }),
            _ => Err(invalid_request(
                "client_id and client_secret go together in the form",
            )),
        };
    };
    let value = authorization.to_str().map_err(|_| OAuthError {
        description: "the Authorization header is not text",
        ..basic_failed
    })?;
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_request(
            "only HTTP Basic client authentication is accepted in the Authorization header",
        ));
    }
    if form_secret.is_some() {
        return Err(invalid_request(
            "use one client authentication method: HTTP Basic or client_secret in the form, not both",
        ));
    }
    let (id, secret) = client_credentials::basic(credentials).ok_or(OAuthError {
        description: "the Basic credentials are malformed",
        ..basic_failed
    })?;
    if form_id.is_some_and(|form_id| form_id != id) {
        return Err(invalid_request(
            "the form's client_id is not the one of the Basic credentials",
        ));
    }
    Ok((ClientAuth::Basic, id, secret))
}
