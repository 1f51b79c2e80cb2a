//! OAuth 1.0a request verification (RFC 5849, SPEC 3): HMAC-SHA1 and HMAC-SHA256 over the
//! signature base string (method, base URL without default port, query, form body and oauth
//! parameters, percent-encoded and sorted), the timestamp window, and the signature compared in
//! constant time. An unknown consumer key costs the same work as a known one. The nonce is
//! returned to the caller, which must record it in the shared store (replays are refused there).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use zeroize::Zeroizing;

use crate::{AccountScope, AuthError, Principal, Privileges, Scheme};

/// What the verifier needs of an app key.
pub struct AppKey {
    pub consumer_key: String,
    pub access_token: String,
    pub consumer_secret: Zeroizing<String>,
    pub token_secret: Zeroizing<String>,
    pub accounts: AccountScope,
    pub privileges: Privileges,
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppKey")
            .field("consumer_key", &self.consumer_key)
            .finish_non_exhaustive()
    }
}

/// Where app keys are looked up (the gateway's in-memory cache).
pub trait AppKeys {
    fn app_key(&self, consumer_key: &str) -> Option<std::sync::Arc<AppKey>>;
}

/// The request as it was signed.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// `scheme://host[:port]` as the client addressed the gateway.
    pub origin: &'a str,
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// The body, when it is `application/x-www-form-urlencoded`.
    pub form_body: Option<&'a [u8]>,
}

/// A verified request's nonce, to be recorded once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nonce {
    pub consumer_key: String,
    pub nonce: String,
    pub timestamp: i64,
}

/// RFC 3986 unreserved characters stay; everything else is `%XX` (upper case).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-decoding; `+` is a space in query and form encoding (`plus_is_space`).
fn decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'%' => {
                let hex = bytes.get(index + 1..index + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                index += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                index += 1;
            }
            other => {
                out.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn pairs(encoded: &str) -> Option<Vec<(String, String)>> {
    encoded
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            Some((decode(name, true)?, decode(value, true)?))
        })
        .collect()
}

/// The `Authorization: OAuth ...` parameters (`realm` dropped).
pub fn header_parameters(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim().get(5..)?;
    if !header.trim().get(..5)?.eq_ignore_ascii_case("oauth") {
        return None;
    }
    let mut out = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, value) = part.split_once('=')?;
        let value = value.trim().strip_prefix('"')?.strip_suffix('"')?;
        let name = decode(name.trim(), false)?;
        if name != "realm" {
            out.push((name, decode(value, false)?));
        }
    }
    Some(out)
}

/// RFC 5849 3.4.1: the signature base string.
pub fn base_string(request: &SignedRequest<'_>, oauth: &[(String, String)]) -> Option<String> {
    let mut parameters: Vec<(String, String)> = pairs(request.query)?;
    if let Some(body) = request.form_body {
        parameters.extend(pairs(std::str::from_utf8(body).ok()?)?);
    }
    parameters.extend(
        oauth
            .iter()
            .filter(|(name, _)| name != "oauth_signature")
            .cloned(),
    );
    let mut encoded: Vec<(String, String)> = parameters
        .iter()
        .map(|(name, value)| (encode(name), encode(value)))
        .collect();
    encoded.sort();
    let normalized: Vec<String> = encoded
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let base_url = format!("{}{}", normalize_origin(request.origin), request.path);
    Some(format!(
        "{}&{}&{}",
        request.method.to_ascii_uppercase(),
        encode(&base_url),
        encode(&normalized.join("&"))
    ))
}

/// Lower-cased scheme and host, default port removed.
fn normalize_origin(origin: &str) -> String {
    let lower = origin.trim_end_matches('/').to_ascii_lowercase();
    lower
        .strip_suffix(":443")
        .filter(|_| lower.starts_with("https://"))
        .or_else(|| {
            lower
                .strip_suffix(":80")
                .filter(|_| lower.starts_with("http://"))
        })
        .map_or(lower.clone(), str::to_owned)
}

/// A consumer secret to sign with when the key is unknown, so that the work is the same.
const DECOY_SECRET: &str = "decoy-secret-for-unknown-consumer-keys-0000000000";

/// Verifies an `OAuth` request at `now` (Unix seconds) within `window` seconds.
pub fn verify(
    header: &str,
    request: &SignedRequest<'_>,
    keys: &dyn AppKeys,
    now: i64,
    window: i64,
) -> Result<(Principal, Nonce), AuthError> {
    let oauth = header_parameters(header).ok_or(AuthError::Invalid("malformed OAuth header"))?;
    let get = |name: &str| {
        oauth
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let consumer_key =
        get("oauth_consumer_key").ok_or(AuthError::Invalid("oauth_consumer_key missing"))?;
    let signature = get("oauth_signature").ok_or(AuthError::Invalid("oauth_signature missing"))?;
    let method = get("oauth_signature_method")
        .ok_or(AuthError::Invalid("oauth_signature_method missing"))?;
    let timestamp: i64 = get("oauth_timestamp")
        .and_then(|value| value.parse().ok())
        .ok_or(AuthError::Invalid("oauth_timestamp missing or malformed"))?;
    let nonce = get("oauth_nonce").filter(|nonce| !nonce.is_empty() && nonce.len() <= 128);
    let nonce = nonce.ok_or(AuthError::Invalid("oauth_nonce missing or malformed"))?;
    if get("oauth_version").is_some_and(|version| version != "1.0") {
        return Err(AuthError::Invalid("oauth_version must be 1.0"));
    }
    // `abs_diff` cannot overflow: a timestamp of i64::MIN against any `now` is simply far. A
    // negative window accepts nothing.
    if !u64::try_from(window).is_ok_and(|window| now.abs_diff(timestamp) <= window) {
        return Err(AuthError::Invalid(
            "oauth_timestamp outside the accepted window",
        ));
    }
    let base = base_string(request, &oauth)
        .ok_or(AuthError::Invalid("the request's parameters do not decode"))?;
    let key = keys.app_key(consumer_key);
    let (consumer_secret, token_secret) = match &key {
        Some(key) => (key.consumer_secret.as_str(), key.token_secret.as_str()),
        None => (DECOY_SECRET, DECOY_SECRET),
    };
    let signing_key = Zeroizing::new(format!(
        "{}&{}",
        encode(consumer_secret),
        encode(token_secret)
    ));
    let expected = STANDARD.decode(signature).unwrap_or_default();
    let matches = match method {
        "HMAC-SHA1" => check::<sha1::Sha1>(&signing_key, &base, &expected),
        "HMAC-SHA256" => check::<sha2::Sha256>(&signing_key, &base, &expected),
        _ => {
            return Err(AuthError::Invalid(
                "oauth_signature_method must be HMAC-SHA1 or HMAC-SHA256",
            ));
        }
    };
    let key = match key {
        Some(key) if matches => key,
        _ => return Err(AuthError::Invalid("signature does not verify")),
    };
    if get("oauth_token").is_some_and(|token| token != key.access_token) {
        return Err(AuthError::Invalid("signature does not verify"));
    }
    let principal = Principal {
        subject: key.consumer_key.clone(),
        scheme: Scheme::OAuth,
        accounts: key.accounts.clone(),
        privileges: key.privileges.clone(),
    };
    Ok((
        principal,
        Nonce {
            consumer_key: key.consumer_key.clone(),
            nonce: nonce.to_owned(),
            timestamp,
        },
    ))
}

fn check<D>(key: &str, base: &str, expected: &[u8]) -> bool
where
    D: sha1::Digest + hmac::EagerHash,
    Hmac<D>: KeyInit + Mac,
{
    let Ok(mut mac) = <Hmac<D> as KeyInit>::new_from_slice(key.as_bytes()) else {
        return false;
    };
    mac.update(base.as_bytes());
    mac.verify_slice(expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoKeys;

    impl AppKeys for NoKeys {
        fn app_key(&self, _: &str) -> Option<std::sync::Arc<AppKey>> {
            None
        }
    }

    fn verify_at(timestamp: &str, now: i64, window: i64) -> String {
        let header = format!(
            r#"OAuth oauth_consumer_key="key", oauth_signature_method="HMAC-SHA1", oauth_timestamp="{timestamp}", oauth_nonce="n", oauth_signature="c2ln""#
        );
        let request = SignedRequest {
            method: "GET",
            origin: "http://example.com",
            path: "/",
            query: "",
            form_body: None,
        };
        match verify(&header, &request, &NoKeys, now, window) {
            Ok(_) => "accepted".to_owned(),
            Err(error) => error.to_string(),
        }
    }

    /// The window check at the extremes of i64 (and past them) neither overflows nor lets a
    /// far timestamp through; inside the window the signature is what decides.
    #[test]
    fn timestamp_window_at_the_extremes() {
        let outside = "oauth_timestamp outside the accepted window";
        let max = i64::MAX.to_string();
        let min = i64::MIN.to_string();
        for (timestamp, now, window) in [
            (min.as_str(), i64::MAX, 300),
            (max.as_str(), i64::MIN, 300),
            (min.as_str(), 1_700_000_000, i64::MAX),
            (max.as_str(), -1, i64::MAX),
            (min.as_str(), 0, i64::MAX),
            ("0", i64::MIN, 300),
            ("1700000000", 1_700_000_301, 300),
            ("1700000000", 1_700_000_000, -1),
            ("1700000000", 1_700_000_000, i64::MIN),
        ] {
            assert!(
                verify_at(timestamp, now, window).contains(outside),
                "{timestamp} at {now} within {window}"
            );
        }
        for (timestamp, now, window) in [
            (max.as_str(), i64::MAX, 0),
            (min.as_str(), i64::MIN, 0),
            (max.as_str(), 0, i64::MAX),
            (min.as_str(), -1, i64::MAX),
            ("1700000000", 1_700_000_300, 300),
        ] {
            assert!(
                verify_at(timestamp, now, window).contains("signature does not verify"),
                "{timestamp} at {now} within {window}"
            );
        }
        // Past u64 and past i64: malformed, not wrapped.
        for timestamp in [
            "18446744073709551616",
            "9223372036854775808",
            "-9223372036854775809",
        ] {
            assert!(verify_at(timestamp, 0, i64::MAX).contains("malformed"));
        }
    }

    /// RFC 5849 section 3.4.1.1's example base string.
    #[test]
    fn rfc5849_base_string() {
        let header = r#"OAuth realm="Example", oauth_consumer_key="9djdj82h48djs9d2", oauth_token="kkk9d7dh3k39sjv7", oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131201", oauth_nonce="7d8f3e4a", oauth_signature="bYT5CMsGcbgUdFHObYMEfcx6bsw%3D""#;
        let oauth = header_parameters(header).unwrap();
        let request = SignedRequest {
            method: "POST",
            origin: "http://example.com",
            path: "/request",
            query: "b5=%3D%253D&a3=a&c%40=&a2=r%20b",
            form_body: Some(b"c2&a3=2+q"),
        };
        assert_eq!(
            base_string(&request, &oauth).unwrap(),
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
        );
        assert_eq!(
            normalize_origin("HTTPS://Example.com:443"),
            "https://example.com"
        );
        assert_eq!(
            normalize_origin("http://example.com:8080"),
            "http://example.com:8080"
        );
    }
}
