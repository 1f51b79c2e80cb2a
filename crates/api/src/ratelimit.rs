//! Rate limits (SPEC 7.3): token buckets per client IP (before authentication, against floods)
//! and per account (after authorization, so that nobody can drain another account's bucket),
//! per endpoint group; 429 with `Retry-After`.
//!
//! The client IP is the socket's peer, unless the peer is a trusted proxy: then the rightmost
//! `X-Forwarded-For` address that is not itself a trusted proxy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[cfg(test)]
use axum::http::HeaderValue;
use axum::http::{HeaderMap, StatusCode};
use mtls_runtime::Cidr;

use crate::error::ApiError;

/// Endpoint groups with their own limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// Certificates, mappings, collect, audit.
    Configuration,
    /// The runtime mapping checks.
    Checks,
    /// The forward method.
    Forward,
    /// The PKCS#12 tester (CPU-heavy).
    Tester,
}

impl Group {
    const COUNT: usize = 4;
    const ALL: [Group; Group::COUNT] = [
        Group::Configuration,
        Group::Checks,
        Group::Forward,
        Group::Tester,
    ];

    /// The group's place in [`Group::ALL`].
    fn index(self) -> usize {
        self as usize
    }

    /// The group of a request path; `None` for health, readiness and unknown paths.
    pub fn of(path: &str) -> Option<Group> {
        // The first five segments decide; a fixed array keeps this allocation-free per request.
        let mut segments = [""; 5];
        let mut count = 0;
        for (slot, segment) in segments
            .iter_mut()
            .zip(path.trim_start_matches('/').split('/'))
        {
            *slot = segment;
            count += 1;
        }
        match segments.get(..count).unwrap_or_default() {
            ["mtls", "mapping"] => Some(Group::Checks),
            ["api", "account", _, "checks", ..] => Some(Group::Checks),
            ["mtls", "account", _, "p12-test", ..] => Some(Group::Tester),
            ["mtls", "account", _] => Some(Group::Forward),
            ["mtls", "account", ..] | ["api", "account", ..] => Some(Group::Configuration),
            // The token endpoint: per IP before the client is authenticated, like configuration.
            ["oauth2", "token"] => Some(Group::Configuration),
            _ => None,
        }
    }
}

/// One bucket's refill rate and size; a rate of 0 means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: f64,
}

/// The limits of every group.
#[derive(Clone, Debug, Default)]
pub struct RateLimits {
    pub per_ip: HashMap<Group, Limit>,
    pub per_account: HashMap<Group, Limit>,
    pub trusted_proxies: Vec<Cidr>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Ip(IpAddr),
    Account(String),
}

/// The buckets.
#[derive(Debug, Default)]
pub struct RateLimiter {
    trusted_proxies: Vec<Cidr>,
    /// The per-IP and per-account limits by [`Group::index`] (every request asks, and a
    /// `HashMap` lookup hashed the group with SipHash each time); `None` is off, which is also
    /// what a rate of 0 becomes here, so nothing past this point tests the rate.
    per_ip: [Option<Limit>; Group::COUNT],
    per_account: [Option<Limit>; Group::COUNT],
    buckets: Mutex<HashMap<(Group, Subject), Bucket>>,
}

/// Buckets kept before idle (full) ones are dropped.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        let by_group = |map: &HashMap<Group, Limit>| {
            Group::ALL.map(|group| {
                map.get(&group)
                    .copied()
                    .filter(|limit| limit.per_second > 0.0)
            })
        };
        Self {
            per_ip: by_group(&limits.per_ip),
            per_account: by_group(&limits.per_account),
            trusted_proxies: limits.trusted_proxies,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `limit` has a positive rate: [`RateLimiter::new`] turns the others off.
    fn take(&self, group: Group, subject: Subject, limit: Limit) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > MAX_BUCKETS {
            buckets.retain(|_, bucket| {
                bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * limit.per_second
                    < limit.burst
            });
        }
        let bucket = buckets.entry((group, subject)).or_insert(Bucket {
            tokens: limit.burst,
            updated: now,
        });
        let refilled = now.duration_since(bucket.updated).as_secs_f64() * limit.per_second;
        bucket.tokens = (bucket.tokens + refilled).min(limit.burst.max(1.0));
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / limit.per_second,
            ))
        }
    }

    /// Takes a token from the client IP's bucket of `group`.
    /// Whether `group` has a per-IP bucket at all.
    pub fn limits_ip(&self, group: Group) -> bool {
        self.ip_limit(group).is_some()
    }

    fn ip_limit(&self, group: Group) -> Option<Limit> {
        self.per_ip.get(group.index()).copied().flatten()
    }

    pub fn check_ip(&self, group: Group, ip: IpAddr) -> Result<(), ApiError> {
        match self.ip_limit(group) {
            Some(limit) => self.take(group, Subject::Ip(ip), limit).map_err(limited),
            None => Ok(()),
        }
    }

    /// Takes a token from the account's bucket of `group` (after authorization).
    pub fn check_account(&self, group: Group, account: &str) -> Result<(), ApiError> {
        match self.per_account.get(group.index()).copied().flatten() {
            Some(limit) => self
                .take(group, Subject::Account(account.to_owned()), limit)
                .map_err(limited),
            None => Ok(()),
        }
    }

    /// The client's address: the peer, or the forwarded address when the peer is a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: IpAddr| self.trusted_proxies.iter().any(|cidr| cidr.contains(ip));
        if !trusted(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|part| part.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted(*ip))
            .unwrap_or(peer)
    }
}

fn limited(retry_after: Duration) -> ApiError {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests; retry later",
    )
    .with_retry_after(seconds.max(1))
}

/// The per-IP layer.
/// The per-IP bucket of the request's group, before authentication: `Err` is the 429.
pub fn admit(
    limiter: &RateLimiter,
    group: Option<Group>,
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    let Some(group) = group else {
        return Ok(());
    };
    if !limiter.limits_ip(group) {
        return Ok(());
    }
    let ip = limiter.client_ip(peer, headers);
    limiter.check_ip(group, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_of_zero_is_off() {
        let off = Limit {
            per_second: 0.0,
            burst: 5.0,
        };
        let limiter = RateLimiter::new(RateLimits {
            per_ip: HashMap::from([(Group::Tester, off)]),
            per_account: HashMap::from([(Group::Tester, off)]),
            ..RateLimits::default()
        });
        assert!(!limiter.limits_ip(Group::Tester));
        for _ in 0..20 {
            assert!(
                limiter
                    .check_ip(Group::Tester, IpAddr::from([1, 2, 3, 4]))
                    .is_ok()
            );
            assert!(limiter.check_account(Group::Tester, "acme").is_ok());
        }
    }

    #[test]
    fn every_group_sits_at_its_index() {
        for (index, group) in Group::ALL.into_iter().enumerate() {
            assert_eq!(group.index(), index);
        }
    }

    #[test]
    fn groups_by_path() {
        assert_eq!(Group::of("/mtls/mapping"), Some(Group::Checks));
        assert_eq!(
            Group::of("/api/account/1/checks/serviceUrlMappings"),
            Some(Group::Checks)
        );
        assert_eq!(
            Group::of("/mtls/account/1/p12-test/multipart"),
            Some(Group::Tester)
        );
        assert_eq!(Group::of("/mtls/account/1"), Some(Group::Forward));
        assert_eq!(
            Group::of("/mtls/account/1/certificates"),
            Some(Group::Configuration)
        );
        assert_eq!(
            Group::of("/api/account/1/configuration/ac-common/mtls"),
            Some(Group::Configuration)
        );
        assert_eq!(Group::of("/oauth2/token"), Some(Group::Configuration));
        assert_eq!(Group::of("/healthz"), None);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let limiter = RateLimiter::new(RateLimits {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..RateLimits::default()
        });
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.1, 10.0.0.2"),
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            limiter.client_ip(proxy, &headers),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(limiter.client_ip(stranger, &headers), stranger);
        assert_eq!(limiter.client_ip(proxy, &HeaderMap::new()), proxy);
    }

    #[test]
    fn buckets_refill() {
        let limit = Limit {
            per_second: 1000.0,
            burst: 2.0,
        };
        let limiter = RateLimiter::default();
        let ip = Subject::Ip(IpAddr::from([1, 2, 3, 4]));
        assert!(limiter.take(Group::Tester, ip.clone(), limit).is_ok());
        assert!(limiter.take(Group::Tester, ip.clone(), limit).is_ok());
        assert!(limiter.take(Group::Tester, ip.clone(), limit).is_err());
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.take(Group::Tester, ip, limit).is_ok());
    }
}
