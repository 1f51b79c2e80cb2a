//! RFC 6749 section 4.4 (client credentials) for app keys, the pure part of `POST
//! /oauth2/token`: the form and the HTTP Basic credentials decoded, the client authenticated by
//! its consumer secret in constant time (an unknown client costs the same work), the requested
//! scope narrowed to the key's privileges, and the token signed with the gateway's HS256 key.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::Digest;
use zeroize::Zeroizing;

use crate::bearer::{KeyError, MIN_HS256_SECRET_LEN};
use crate::oauth::{AppKey, AppKeys};
use crate::{AccountScope, Privilege};

/// `application/x-www-form-urlencoded` -> name/value pairs; `None` when it does not decode
/// (bad percent-escape, not UTF-8).
pub fn form(body: &[u8]) -> Option<Vec<(String, Zeroizing<String>)>> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            Some((
                decode(name)?.to_string(),
                Zeroizing::new(decode(value)?.to_string()),
            ))
        })
        .collect()
}

/// Form decoding: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn decode(text: &str) -> Option<Zeroizing<String>> {
    let bytes = text.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            other => {
                out.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8(out.to_vec()).ok().map(Zeroizing::new)
}

/// The `client_id` and `client_secret` of an `Authorization: Basic` value (the part after the
/// scheme): base64 of `id:secret`, each form-urlencoded first (RFC 6749 2.3.1). `None` when
/// malformed.
pub fn basic(value: &str) -> Option<(String, Zeroizing<String>)> {
    let decoded = Zeroizing::new(STANDARD.decode(value.trim()).ok()?);
    let text = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((decode(id)?.to_string(), decode(secret)?))
}

/// A consumer secret to compare with when the client is unknown, so that the work is the same.
const DECOY_SECRET: &str = "decoy-secret-for-unknown-client-ids-000000000000000";

/// The app key `client_id` names, when `secret` is its consumer secret. The comparison runs
/// over SHA-256 digests of both (fixed length), without an early exit, and runs as well for an
/// unknown client: neither the secret's length, nor how much of it matched, nor whether the
/// client exists shows in the time taken.
pub fn authenticate(keys: &dyn AppKeys, client_id: &str, secret: &str) -> Option<Arc<AppKey>> {
    let key = keys.app_key(client_id);
    let expected = key
        .as_ref()
        .map_or(DECOY_SECRET, |key| key.consumer_secret.as_str());
    let matches = equal(expected.as_bytes(), secret.as_bytes());
    key.filter(|_| matches)
}

fn equal(left: &[u8], right: &[u8]) -> bool {
    let left: [u8; 32] = sha2::Sha256::digest(left).into();
    let right: [u8; 32] = sha2::Sha256::digest(right).into();
    let difference = left
        .iter()
        .zip(right.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// The privileges a token gets: the key's, or the subset named by `scope` (space-separated
/// privilege names, RFC 6749 3.3). `None` (`invalid_scope`) when the scope names a privilege
/// the key does not hold or one this gateway does not know.
pub fn privileges(key: &AppKey, scope: Option<&str>) -> Option<Vec<Privilege>> {
    let held: Vec<Privilege> = key.privileges.iter().collect();
    let Some(scope) = scope.filter(|scope| !scope.trim().is_empty()) else {
        return Some(held);
    };
    let mut granted = Vec::new();
    for name in scope.split(' ').filter(|name| !name.is_empty()) {
        let privilege = Privilege::parse(name).filter(|privilege| held.contains(privilege))?;
        if !granted.contains(&privilege) {
            granted.push(privilege);
        }
    }
    Some(granted)
}

/// The account claim of a key's token: its accounts, or `*`.
pub fn accounts(key: &AppKey) -> Vec<String> {
    match &key.accounts {
        AccountScope::All => vec!["*".to_owned()],
        AccountScope::Only(accounts) => accounts.iter().cloned().collect(),
    }
}

/// Mints the endpoint's tokens: HS256 with the gateway's secret, like `token issue`, plus the
/// configured `aud` and `iss` (the first of each), so that the gateway's own verification,
/// which requires them when configured, accepts them.
pub struct ClientTokenIssuer {
    key: EncodingKey,
    audience: Option<String>,
    issuer: Option<String>,
}

impl std::fmt::Debug for ClientTokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTokenIssuer(<redacted>)")
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    jti: &'a str,
    accounts: &'a [String],
    privileges: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    /// RFC 9068: the client the token was issued to.
    client_id: &'a str,
}

/// What one token carries.
#[derive(Debug)]
pub struct ClientGrant<'a> {
    /// The consumer key (the token's `sub` and `client_id`).
    pub client_id: &'a str,
    pub accounts: &'a [String],
    pub privileges: &'a [Privilege],
    pub ttl_seconds: u64,
    /// A unique token id (`jti`).
    pub token_id: &'a str,
}

impl ClientTokenIssuer {
    pub fn new(
        secret: &[u8],
        audience: Option<String>,
        issuer: Option<String>,
    ) -> Result<Self, KeyError> {
        if secret.len() < MIN_HS256_SECRET_LEN {
            return Err(KeyError(format!(
                "the HS256 secret must be at least {MIN_HS256_SECRET_LEN} bytes"
            )));
        }
        let key = EncodingKey::from_secret(secret)
            .map_err(|_| KeyError("the HS256 secret is not usable".to_owned()))?;
        Ok(Self {
            key,
            audience,
            issuer,
        })
    }

    /// A signed token for `grant`, valid from `now` (Unix seconds).
    pub fn issue(&self, grant: &ClientGrant<'_>, now: u64) -> Result<String, KeyError> {
        let claims = Claims {
            sub: grant.client_id,
            exp: now.saturating_add(grant.ttl_seconds),
            iat: now,
            jti: grant.token_id,
            accounts: grant.accounts,
            privileges: Privilege::ALL
                .iter()
                .filter(|privilege| grant.privileges.contains(privilege))
                .map(|privilege| privilege.name())
                .collect(),
            aud: self.audience.as_deref(),
            iss: self.issuer.as_deref(),
            client_id: grant.client_id,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .map_err(|_| KeyError("the token could not be signed".to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::Privileges;

    struct One(Arc<AppKey>);

    impl AppKeys for One {
        fn app_key(&self, consumer_key: &str) -> Option<Arc<AppKey>> {
            (consumer_key == self.0.consumer_key).then(|| Arc::clone(&self.0))
        }
    }

    fn key() -> AppKey {
        AppKey {
            consumer_key: "ck_1".to_owned(),
            access_token: "at".to_owned(),
            consumer_secret: Zeroizing::new("s3cr:t+/".to_owned()),
            token_secret: Zeroizing::new("ts".to_owned()),
            accounts: AccountScope::from_names(["acme"]),
            privileges: Privileges::from_names(["MTLS_READ_INTERNAL", "MTLS_FORWARD"]),
        }
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // RFC 6749 2.3.1: "s3cr:t+/" form-encoded is "s3cr%3At%2B%2F".
        let value = STANDARD.encode("ck_1:s3cr%3At%2B%2F");
        let (id, secret) = basic(&value).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("ck_1", "s3cr:t+/"));
        assert!(basic("not base64!").is_none());
        assert!(basic(&STANDARD.encode("no-colon")).is_none());
        assert!(basic(&STANDARD.encode("a:%zz")).is_none());
    }

    #[test]
    fn the_secret_must_match_exactly() {
        let keys = One(Arc::new(key()));
        assert!(authenticate(&keys, "ck_1", "s3cr:t+/").is_some());
        for wrong in ["", "s3cr:t+", "s3cr:t+/x", "S3CR:T+/"] {
            assert!(authenticate(&keys, "ck_1", wrong).is_none(), "{wrong}");
        }
        assert!(authenticate(&keys, "ck_2", "s3cr:t+/").is_none());
        assert!(authenticate(&keys, "ck_2", DECOY_SECRET).is_none());
    }

    #[test]
    fn scope_narrows_to_held_privileges_only() {
        let key = key();
        assert_eq!(
            privileges(&key, None).unwrap(),
            vec![Privilege::ReadInternal, Privilege::Forward]
        );
        assert_eq!(
            privileges(&key, Some("MTLS_FORWARD")).unwrap(),
            vec![Privilege::Forward]
        );
        assert_eq!(privileges(&key, Some(" ")).unwrap().len(), 2);
        assert!(privileges(&key, Some("MTLS_WRITE_INTERNAL")).is_none());
        assert!(privileges(&key, Some("MTLS_FORWARD openid")).is_none());
    }

    #[test]
    fn forms_decode() {
        let pairs = form(b"grant_type=client_credentials&scope=a+b%20c&empty=&bare").unwrap();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "a b c"),
                ("empty", ""),
                ("bare", "")
            ]
        );
        assert!(form(b"a=%ff").is_none());
        assert!(form(b"a=%4").is_none());
    }
}
