//! The egress policy (SPEC 6.3): every upstream connection passes here first. The target host
//! is resolved once; the call is refused (`egress_denied`) when any resolved address is
//! loopback, private, unique-local, link-local (cloud metadata included), carrier-grade NAT,
//! multicast, unspecified, reserved, documentation or benchmarking space, or an IPv4-mapped,
//! -compatible, 6to4 or NAT64 form of those, unless the address is in `egress.allow_cidrs`.
//! IPv4-compatible (`::a.b.c.d`) and IPv4-translated (`::ffff:0:a.b.c.d`, RFC 2765) addresses
//! are refused whatever they embed: neither is routed on the Internet, and a translator on the
//! gateway's network would deliver them to the IPv4 address inside.
//! The caller connects to the vetted addresses, never to a second resolution.
//!
//! A refusal names the host the caller gave, never the address a name resolved to: that
//! address is the operator's network, not the tenant's to map (it is logged at debug level).
//!
//! Hosts written as legacy IPv4 numbers (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`),
//! which the system resolver would turn into addresses, are read the same way here first.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Cidr;
use crate::url::Scheme;

/// Why a target may not be called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EgressError {
    /// An address of the target is in a forbidden range. `address` and `range` are for the
    /// operator's log; the message shows the range only when the caller wrote the address.
    Denied {
        host: Box<str>,
        /// The host is an IP literal (the caller gave the address itself).
        literal: bool,
        address: IpAddr,
        range: &'static str,
    },
    /// `http` targets are not allowed by the configuration.
    PlainHttp,
    /// The name does not resolve (or to nothing).
    Resolution(String),
}

impl fmt::Display for EgressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressError::Denied {
                host,
                literal: true,
                range,
                ..
            } => write!(
                f,
                "the target {host} is in a range the egress policy forbids ({range})"
            ),
            EgressError::Denied { host, .. } => write!(
                f,
                "the target host {host} resolves to an address the egress policy forbids"
            ),
            EgressError::PlainHttp => {
                f.write_str("plain http targets are not allowed (egress.allow_http)")
            }
            EgressError::Resolution(detail) => {
                write!(f, "the target host does not resolve: {detail}")
            }
        }
    }
}

impl std::error::Error for EgressError {}

/// Resolves host names; the system resolver in production, a fixed table in tests.
pub trait Resolve: Send + Sync {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;
}

/// The operating system's resolver (getaddrinfo through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// What the operator configures.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    /// Networks allowed even though they are in a forbidden range.
    pub allow: Vec<Cidr>,
    pub allow_http: bool,
}

impl EgressPolicy {
    /// Resolves `host` and returns the addresses to connect to, all of them allowed.
    pub async fn vet(
        &self,
        scheme: Scheme,
        host: &str,
        port: u16,
        resolver: &impl Resolve,
    ) -> Result<Vec<SocketAddr>, EgressError> {
        if scheme == Scheme::Http && !self.allow_http {
            return Err(EgressError::PlainHttp);
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let given = literal(bare);
        let addresses = match given {
            Some(address) => vec![SocketAddr::new(address, port)],
            None => resolver
                .resolve(bare, port)
                .await
                .map_err(|error| EgressError::Resolution(error.kind().to_string()))?,
        };
        if addresses.is_empty() {
            return Err(EgressError::Resolution("no address".to_owned()));
        }
        for address in &addresses {
            if let Some(range) = self.refused(address.ip()) {
                tracing::debug!(host, address = %address.ip(), range, "egress policy refused a target");
                return Err(EgressError::Denied {
                    host: Box::from(host),
                    literal: given.is_some(),
                    address: address.ip(),
                    range,
                });
            }
        }
        Ok(addresses)
    }

    /// The forbidden range `address` is in, unless the allow list covers it.
    pub fn refused(&self, address: IpAddr) -> Option<&'static str> {
        if self.allow.iter().any(|cidr| cidr.contains(address)) {
            return None;
        }
        forbidden(address)
    }
}

/// An IP literal, including the legacy IPv4 numbers `inet_aton` accepts.
fn literal(host: &str) -> Option<IpAddr> {
    if let Ok(address) = host.parse::<IpAddr>() {
        return Some(address);
    }
    legacy_ipv4(host).map(IpAddr::V4)
}

/// `inet_aton` forms: 1 to 4 parts, each decimal, `0x` hex or `0` octal; the last part fills
/// the remaining bytes.
fn legacy_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in &parts {
        let value = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            if hex.is_empty() {
                0
            } else {
                u64::from_str_radix(hex, 16).ok()?
            }
        } else if part.len() > 1 && part.starts_with('0') {
            u64::from_str_radix(part.get(1..)?, 8).ok()?
        } else {
            part.parse::<u64>().ok()?
        };
        numbers.push(value);
    }
    let (last, leading) = numbers.split_last()?;
    let mut address: u64 = 0;
    for (index, value) in leading.iter().enumerate() {
        if *value > 255 {
            return None;
        }
        address |= value << (24 - 8 * index);
    }
    let remaining_bits = 32 - 8 * leading.len();
    if *last >= 1u64 << remaining_bits {
        return None;
    }
    address |= last;
    u32::try_from(address).ok().map(Ipv4Addr::from)
}

/// The forbidden range `address` is in, if any.
pub fn forbidden(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(address: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = address.octets();
    let range = match (a, b, c) {
        (0, _, _) => "unspecified / this network",
        (10, _, _) => "private (RFC 1918)",
        (100, 64..=127, _) => "carrier-grade NAT",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local (cloud metadata)",
        (172, 16..=31, _) => "private (RFC 1918)",
        (192, 0, 0) => "IETF protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast",
        (192, 168, _) => "private (RFC 1918)",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved / broadcast",
        _ => return None,
    };
    Some(range)
}

fn forbidden_v6(address: Ipv6Addr) -> Option<&'static str> {
    let segments = address.segments();
    if address.is_unspecified() {
        return Some("unspecified");
    }
    if address.is_loopback() {
        return Some("loopback");
    }
    // Forms that embed an IPv4 address are judged by it.
    if let Some(v4) = address.to_ipv4_mapped() {
        return forbidden_v4(v4).map(|_| "IPv4-mapped form of a forbidden address");
    }
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match segments {
        // IPv4-compatible (deprecated): ::a.b.c.d
        [0, 0, 0, 0, 0, 0, high, low] => {
            return Some(forbidden_v4(embedded(high, low)).map_or(
                "IPv4-compatible address",
                |_| "IPv4-compatible form of a forbidden address",
            ));
        }
        // IPv4-translated (RFC 2765, SIIT): ::ffff:0:a.b.c.d
        [0, 0, 0, 0, 0xffff, 0, high, low] => {
            return Some(forbidden_v4(embedded(high, low)).map_or(
                "IPv4-translated address",
                |_| "IPv4-translated form of a forbidden address",
            ));
        }
        // NAT64 well-known prefix 64:ff9b::/96
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => {
            return forbidden_v4(embedded(high, low)).map(|_| "NAT64 form of a forbidden address");
        }
        _ => {}
    }
    let first = segments.first().copied().unwrap_or(0);
    let second = segments.get(1).copied().unwrap_or(0);
    let range = match (first, second) {
        (0x64, 0xff9b) if segments.get(2) == Some(&1) => "local-use NAT64",
        (0x0100, 0) if segments.get(2..4) == Some(&[0, 0]) => "discard-only",
        (0x2001, 0x0db8) => "documentation",
        (0x2001, 0) => "Teredo",
        (0x2002, high) => {
            let low = segments.get(2).copied().unwrap_or(0);
            return forbidden_v4(embedded(high, low)).map(|_| "6to4 form of a forbidden address");
        }
        (0xfc00..=0xfdff, _) => "unique-local",
        (0xfe80..=0xfebf, _) => "link-local",
        (0xfec0..=0xfeff, _) => "site-local (deprecated)",
        (0xff00..=0xffff, _) => "multicast",
        _ => return None,
    };
    Some(range)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Fixed(HashMap<&'static str, Vec<IpAddr>>);

    impl Resolve for Fixed {
        async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
            match self.0.get(host) {
                Some(addresses) => Ok(addresses
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, port))
                    .collect()),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
            }
        }
    }

    fn resolver() -> Fixed {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        Fixed(HashMap::from([
            ("public.example", vec![ip("93.184.215.14")]),
            ("private.example", vec![ip("10.1.2.3")]),
            ("metadata.example", vec![ip("169.254.169.254")]),
            (
                "mixed.example",
                vec![ip("93.184.215.14"), ip("192.168.1.10")],
            ),
            ("v6-ula.example", vec![ip("fd00::1")]),
            ("empty.example", vec![]),
        ]))
    }

    async fn vet(policy: &EgressPolicy, host: &str) -> Result<Vec<SocketAddr>, EgressError> {
        policy.vet(Scheme::Https, host, 443, &resolver()).await
    }

    fn denied(result: Result<Vec<SocketAddr>, EgressError>) -> bool {
        matches!(result, Err(EgressError::Denied { .. }))
    }

    #[tokio::test]
    async fn every_address_trick_is_refused() {
        let policy = EgressPolicy::default();
        let tricks = [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0x7F.0.0.1",
            "0177.0.0.1",
            "0177.1",
            "127.1",
            "017700000001",
            "0",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.0.1",
            "100.64.0.1",
            "169.254.169.254",
            "0xa9fea9fe",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "[::1]",
            "[::]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[::ffff:169.254.169.254]",
            "[::127.0.0.1]",
            "[::ffff:0:127.0.0.1]",
            "[::ffff:0:7f00:1]",
            "[::ffff:0:169.254.169.254]",
            "[::ffff:0:10.0.0.1]",
            "[::ffff:0:8.8.8.8]",
            "[64:ff9b::7f00:1]",
            "[64:ff9b::a9fe:a9fe]",
            "[64:ff9b:1::1]",
            "[2002:7f00:1::]",
            "[fd00::1]",
            "[fe80::1]",
            "[ff02::1]",
            "[2001:db8::1]",
            "[2001::1]",
            "private.example",
            "metadata.example",
            "mixed.example",
            "v6-ula.example",
        ];
        for host in tricks {
            assert!(denied(vet(&policy, host).await), "{host} must be refused");
        }
    }

    #[tokio::test]
    async fn public_targets_pass_and_the_allow_list_opens_ranges() {
        let policy = EgressPolicy::default();
        assert_eq!(
            vet(&policy, "public.example").await.unwrap(),
            vec!["93.184.215.14:443".parse().unwrap()]
        );
        assert!(vet(&policy, "8.8.8.8").await.is_ok());
        assert!(vet(&policy, "[2606:4700::1111]").await.is_ok());
        assert!(
            vet(&policy, "[64:ff9b::808:808]").await.is_ok(),
            "NAT64 of a public address"
        );
        assert!(matches!(
            vet(&policy, "nowhere.example").await,
            Err(EgressError::Resolution(_))
        ));
        assert!(matches!(
            vet(&policy, "empty.example").await,
            Err(EgressError::Resolution(_))
        ));
        let open = EgressPolicy {
            allow: vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1".parse().unwrap()],
            allow_http: false,
        };
        assert!(vet(&open, "private.example").await.is_ok());
        assert!(vet(&open, "127.0.0.1").await.is_ok());
        assert!(denied(vet(&open, "127.0.0.2").await));
        assert!(
            denied(vet(&open, "mixed.example").await),
            "every address must be allowed"
        );
        assert_eq!(
            open.vet(Scheme::Http, "public.example", 80, &resolver())
                .await,
            Err(EgressError::PlainHttp)
        );
        let http = EgressPolicy {
            allow_http: true,
            ..EgressPolicy::default()
        };
        assert!(
            http.vet(Scheme::Http, "public.example", 80, &resolver())
                .await
                .is_ok()
        );
    }

    #[test]
    fn ipv4_translated_addresses_are_refused_whatever_they_embed() {
        let range = |text: &str| forbidden(text.parse().unwrap());
        assert_eq!(
            range("::ffff:0:127.0.0.1"),
            Some("IPv4-translated form of a forbidden address")
        );
        assert_eq!(
            range("::ffff:0:a9fe:a9fe"),
            Some("IPv4-translated form of a forbidden address")
        );
        assert_eq!(range("::ffff:0:8.8.8.8"), Some("IPv4-translated address"));
        // Its neighbours keep their own judgement: IPv4-mapped is judged by the address inside.
        assert_eq!(range("::ffff:8.8.8.8"), None);
        assert_eq!(
            range("::ffff:127.0.0.1"),
            Some("IPv4-mapped form of a forbidden address")
        );
        assert_eq!(range("::1:ffff:0:808:808"), None);
        // The allow list opens it like any other range.
        let open = EgressPolicy {
            allow: vec!["::ffff:0:0:0/96".parse().unwrap()],
            allow_http: false,
        };
        assert_eq!(open.refused("::ffff:0:8.8.8.8".parse().unwrap()), None);
    }

    #[tokio::test]
    async fn a_refusal_names_the_host_given_never_the_address_it_resolves_to() {
        let policy = EgressPolicy::default();
        for (host, hidden) in [
            ("private.example", "10.1.2.3"),
            ("metadata.example", "169.254.169.254"),
            ("mixed.example", "192.168.1.10"),
            ("v6-ula.example", "fd00::1"),
        ] {
            let error = vet(&policy, host).await.unwrap_err();
            assert!(
                matches!(&error, EgressError::Denied { address, .. } if address.to_string() == hidden),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(message.contains(host), "{message}");
            assert!(!message.contains(hidden), "{message}");
            for range in ["RFC 1918", "link-local", "unique-local", "("] {
                assert!(!message.contains(range), "{message}");
            }
        }
        // An address the caller wrote is theirs: its range is named.
        let message = vet(&policy, "10.0.0.1").await.unwrap_err().to_string();
        assert!(
            message.contains("10.0.0.1") && message.contains("private (RFC 1918)"),
            "{message}"
        );
        let message = vet(&policy, "0x7f000001").await.unwrap_err().to_string();
        assert!(
            message.contains("0x7f000001") && message.contains("loopback"),
            "{message}"
        );
    }

    #[test]
    fn legacy_numbers_read_like_inet_aton() {
        let v4 = |text: &str| legacy_ipv4(text).map(|ip| ip.to_string());
        assert_eq!(v4("2130706433").as_deref(), Some("127.0.0.1"));
        assert_eq!(v4("0x7f.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(v4("10.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(v4("192.168.257").as_deref(), Some("192.168.1.1"));
        assert_eq!(v4("4294967296"), None);
        assert_eq!(v4("256.1.1.1"), None);
        assert_eq!(v4("08.1.1.1"), None, "8 is not an octal digit");
        assert_eq!(v4("example"), None);
        assert_eq!(v4("1.2.3.4.5"), None);
    }
}
