//! Target URLs (SPEC 5.3): the match is on the complete URL as the caller sends it, after only
//! this normalization: scheme and host lower-cased, the default port removed, an empty path
//! written as `/`. Nothing else changes (no trailing slash, query order or percent-encoding
//! rewriting). The same function runs at write time and at lookup time.

use std::borrow::Cow;
use std::fmt;

/// Why a URL is not a valid target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlError {
    NotAbsolute,
    UnsupportedScheme,
    UserInfo,
    Fragment,
    BadHost,
    BadPort,
    Whitespace,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::NotAbsolute => "the URL must be absolute (https://host/...)",
            UrlError::UnsupportedScheme => {
                "the URL scheme must be https (or http where the egress policy allows it)"
            }
            UrlError::UserInfo => "the URL must not carry user information",
            UrlError::Fragment => "the URL must not carry a fragment",
            UrlError::BadHost => "the URL's host is not valid",
            UrlError::BadPort => "the URL's port is not valid",
            UrlError::Whitespace => "the URL must not contain spaces or control characters",
        })
    }
}

impl std::error::Error for UrlError {}

/// The scheme of a normalized URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Normalizes `raw`; borrows when it is already normal (the common case at lookup: no
/// allocation). Accepts `http` and `https`; the caller decides whether `http` is allowed.
pub fn normalize(raw: &str) -> Result<(Scheme, Cow<'_, str>), UrlError> {
    if raw.bytes().any(|byte| byte <= b' ' || byte == 0x7f) {
        return Err(UrlError::Whitespace);
    }
    // `split_once("://")` would build a two-way searcher for three bytes on every lookup.
    let separator = raw
        .as_bytes()
        .windows(3)
        .position(|window| window == b"://")
        .ok_or(UrlError::NotAbsolute)?;
    let (scheme_text, rest) = (
        raw.get(..separator).unwrap_or_default(),
        raw.get(separator + 3..).unwrap_or_default(),
    );
    let scheme = if scheme_text.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else if scheme_text.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else {
        return Err(UrlError::UnsupportedScheme);
    };
    if rest.contains('#') {
        return Err(UrlError::Fragment);
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    let (host, port) = split_port(authority)?;
    if !valid_host(host) {
        return Err(UrlError::BadHost);
    }
    let default_port = match scheme {
        Scheme::Https => "443",
        Scheme::Http => "80",
    };
    let keep_port = port.filter(|port| *port != default_port);
    let needs_slash = !tail.starts_with('/');
    let scheme_lower = match scheme {
        Scheme::Https => "https",
        Scheme::Http => "http",
    };
    let unchanged = scheme_text == scheme_lower
        && !host.bytes().any(|byte| byte.is_ascii_uppercase())
        && port == keep_port
        && !authority.ends_with(':')
        && !needs_slash;
    if unchanged {
        return Ok((scheme, Cow::Borrowed(raw)));
    }
    let mut out = String::with_capacity(raw.len() + 1);
    out.push_str(scheme_lower);
    out.push_str("://");
    out.push_str(&host.to_ascii_lowercase());
    if let Some(port) = keep_port {
        out.push(':');
        out.push_str(port);
    }
    if needs_slash {
        out.push('/');
    }
    out.push_str(tail);
    Ok((scheme, Cow::Owned(out)))
}

/// `host[:port]`, with IPv6 literals in brackets. An empty port (`host:`) is the default one.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), UrlError> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(UrlError::BadHost)?;
        let (host, after) = authority.split_at(close + 1);
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(UrlError::BadHost),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    match port {
        Some("") | None => Ok((host, None)),
        Some(port) => {
            let valid = port.len() <= 5
                && port.bytes().all(|byte| byte.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|n| n > 0);
            if valid {
                Ok((host, Some(port)))
            } else {
                Err(UrlError::BadPort)
            }
        }
    }
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b'%'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(raw: &str) -> String {
        normalize(raw).unwrap().1.into_owned()
    }

    #[test]
    fn spec_5_3_normalization_and_nothing_else() {
        assert_eq!(
            n("HTTPS://IdP.Brand-A.Example/oauth/token"),
            "https://idp.brand-a.example/oauth/token"
        );
        assert_eq!(n("https://idp.example:443/x"), "https://idp.example/x");
        assert_eq!(n("http://idp.example:80/x"), "http://idp.example/x");
        assert_eq!(
            n("https://idp.example:8443/x"),
            "https://idp.example:8443/x"
        );
        assert_eq!(n("https://idp.example"), "https://idp.example/");
        assert_eq!(
            n("https://idp.example?b=1&a=2"),
            "https://idp.example/?b=1&a=2"
        );
        assert_eq!(n("https://idp.example:/x"), "https://idp.example/x");
        assert_eq!(n("https://[::1]:443/x"), "https://[::1]/x");
        // Unchanged: path case, trailing slash, query order, percent-encoding.
        for same in [
            "https://h.example/A/b/",
            "https://h.example/a?z=1&a=%2f",
            "https://h.example/%7Euser",
            "https://h.example/a/../b",
        ] {
            assert_eq!(n(same), same);
            assert!(
                matches!(normalize(same).unwrap().1, Cow::Borrowed(_)),
                "no allocation for {same}"
            );
        }
    }

    #[test]
    fn invalid_targets() {
        assert_eq!(normalize("/relative").unwrap_err(), UrlError::NotAbsolute);
        assert_eq!(
            normalize("ftp://h.example/").unwrap_err(),
            UrlError::UnsupportedScheme
        );
        assert_eq!(
            normalize("https://user:pw@h.example/").unwrap_err(),
            UrlError::UserInfo
        );
        assert_eq!(
            normalize("https://h.example/#frag").unwrap_err(),
            UrlError::Fragment
        );
        assert_eq!(
            normalize("https://h.example:99999/").unwrap_err(),
            UrlError::BadPort
        );
        assert_eq!(
            normalize("https://h.example:0/").unwrap_err(),
            UrlError::BadPort
        );
        assert_eq!(normalize("https:///path").unwrap_err(), UrlError::BadHost);
        assert_eq!(
            normalize("https://h ost/").unwrap_err(),
            UrlError::Whitespace
        );
        assert_eq!(normalize("https://[zz]/").unwrap_err(), UrlError::BadHost);
        assert_eq!(
            normalize("https://h.example/a b").unwrap_err(),
            UrlError::Whitespace
        );
    }

    proptest::proptest! {
        #[test]
        fn normalizing_is_idempotent_and_never_panics(raw in "\\PC{0,60}") {
            if let Ok((_, once)) = normalize(&raw) {
                let (_, twice) = normalize(&once).unwrap();
                proptest::prop_assert_eq!(once.as_ref(), twice.as_ref());
            }
        }
    }
}
