//! The caps on open client connections, in total and per client address, shared by every
//! worker thread and listener: a connection past a cap is closed at once, before any byte is
//! read (no TLS handshake, no buffer), so that one peer cannot take the descriptors everyone
//! else needs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use mtls_runtime::Cidr;

/// The two caps and the connections they count.
#[derive(Debug)]
pub struct ConnectionLimits {
    total: usize,
    per_address: usize,
    /// Addresses counted against `total` only (`server.trusted_proxies`: every connection
    /// through a proxy comes from its address).
    exempt: Vec<Cidr>,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// The cap that refused a connection, as the `cap` label of
/// `mtls_connections_refused_total` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    Total,
    PerIp,
}

impl Cap {
    pub fn label(self) -> &'static str {
        match self {
            Cap::Total => "total",
            Cap::PerIp => "per_ip",
        }
    }
}

/// An admitted connection's place under the caps, given back on drop.
#[derive(Debug)]
pub struct Admitted {
    limits: Arc<ConnectionLimits>,
    address: Option<IpAddr>,
}

impl ConnectionLimits {
    pub fn new(total: usize, per_address: usize, exempt: Vec<Cidr>) -> Self {
        Self {
            total,
            per_address,
            exempt,
            open: Mutex::new(Open::default()),
        }
    }

    /// Counts a connection from `peer`, or says which cap refuses it.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Cap> {
        let peer = peer.to_canonical();
        let address = (!self.exempt.iter().any(|cidr| cidr.contains(peer))).then(|| key(peer));
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.total {
            return Err(Cap::Total);
        }
        if let Some(address) = address {
            let count = open.by_address.entry(address).or_insert(0);
            if *count >= self.per_address {
                return Err(Cap::PerIp);
            }
            *count += 1;
        }
        open.total += 1;
        Ok(Admitted {
            limits: Arc::clone(self),
            address,
        })
    }

    /// Connections counted now (for tests and the log).
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(address) = self.address
            && let Some(count) = open.by_address.get_mut(&address)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.by_address.remove(&address);
            }
        }
    }
}

/// What one client is: its IPv4 address, or the /64 of its IPv6 address (one host is usually
/// given a whole /64, so counting single IPv6 addresses would count nothing).
fn key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_per_address_cap_refuses_and_a_closed_connection_frees_its_place() {
        let limits = Arc::new(ConnectionLimits::new(10, 2, Vec::new()));
        let first = limits.admit(ip("192.0.2.1")).unwrap();
        let _second = limits.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(limits.admit(ip("192.0.2.1")).unwrap_err(), Cap::PerIp);
        // The same address written as IPv4-mapped IPv6 is the same client.
        assert_eq!(
            limits.admit(ip("::ffff:192.0.2.1")).unwrap_err(),
            Cap::PerIp
        );
        let _other = limits.admit(ip("192.0.2.2")).unwrap();
        drop(first);
        let _again = limits.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(limits.open(), 3);
    }

    #[test]
    fn the_total_cap_counts_every_address() {
        let limits = Arc::new(ConnectionLimits::new(2, 5, Vec::new()));
        let _a = limits.admit(ip("192.0.2.1")).unwrap();
        let b = limits.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(limits.admit(ip("192.0.2.3")).unwrap_err(), Cap::Total);
        drop(b);
        let _c = limits.admit(ip("192.0.2.3")).unwrap();
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let limits = Arc::new(ConnectionLimits::new(10, 1, Vec::new()));
        let _a = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            limits.admit(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            Cap::PerIp
        );
        let _b = limits.admit(ip("2001:db8:1:3::1")).unwrap();
    }

    #[test]
    fn trusted_proxies_are_counted_against_the_total_only() {
        let limits = Arc::new(ConnectionLimits::new(
            3,
            1,
            vec!["10.0.0.0/8".parse().unwrap()],
        ));
        let _a = limits.admit(ip("10.1.1.1")).unwrap();
        let _b = limits.admit(ip("10.1.1.1")).unwrap();
        let _c = limits.admit(ip("10.1.1.1")).unwrap();
        assert_eq!(limits.admit(ip("10.1.1.1")).unwrap_err(), Cap::Total);
    }
}
