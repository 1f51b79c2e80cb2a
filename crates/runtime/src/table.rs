//! The routing table: an immutable snapshot of every enabled, live mapping and what the
//! runtime needs of its certificate, swapped atomically when anything changes. Lookups are one
//! hash probe with borrowed keys: no allocation, no lock.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hashbrown::{Equivalent, HashMap};

use crate::url::normalize;

/// What a lookup finds: the mapping and the state of its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub mapping_id: i64,
    pub certificate_id: i64,
    pub certificate_version: i64,
    /// The certificate is not deleted and its secret is stored.
    pub secret_stored: bool,
    /// The leaf's validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The mapping's extra trust bundle for the target's server certificate.
    pub upstream_ca: Option<crate::forward::TrustBundle>,
}

impl Route {
    /// SPEC 6.1: the certificate is `Available` now.
    pub fn available(&self, now: i64) -> bool {
        self.secret_stored && self.not_before <= now && now <= self.not_after
    }
}

/// An owned key: (account, service name, normalized URL).
#[derive(Debug, PartialEq, Eq)]
struct Key {
    account: Box<str>,
    service: Box<str>,
    url: Box<str>,
}

/// A borrowed key for lookups.
struct Probe<'a> {
    account: &'a str,
    service: &'a str,
    url: &'a str,
}

fn hash_parts<H: Hasher>(state: &mut H, account: &str, service: &str, url: &str) {
    // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    for part in [account, service, url] {
        state.write_usize(part.len());
        state.write(part.as_bytes());
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(state, &self.account, &self.service, &self.url);
    }
}

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(state, self.account, self.service, self.url);
    }
}

impl Equivalent<Key> for Probe<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *key.account == *self.account && *key.service == *self.service && *key.url == *self.url
    }
}

/// One snapshot.
#[derive(Debug, Default)]
pub struct Table {
    routes: HashMap<Key, Route>,
    /// The same routes by (account, URL) alone, for forwards without `LP-service-name`.
    by_url: HashMap<Key, Vec<Route>>,
    /// The global revision this snapshot was built from.
    revision: i64,
}

/// One mapping as the builder receives it (the URL already normalized at write time).
#[derive(Clone, Debug)]
pub struct Entry {
    pub account: String,
    pub service: String,
    pub url: String,
    pub route: Route,
}

impl Table {
    pub fn new(entries: impl IntoIterator<Item = Entry>, revision: i64) -> Self {
        let entries = entries.into_iter();
        let mut routes = HashMap::with_capacity(entries.size_hint().0);
        let mut by_url: HashMap<Key, Vec<Route>> = HashMap::new();
        for entry in entries {
            let any = Key {
                account: entry.account.as_str().into(),
                service: "".into(),
                url: entry.url.as_str().into(),
            };
            by_url.entry(any).or_default().push(entry.route.clone());
            let key = Key {
                account: entry.account.into(),
                service: entry.service.into(),
                url: entry.url.into(),
            };
            routes.insert(key, entry.route);
        }
        Self {
            routes,
            by_url,
            revision,
        }
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every route with its account.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Route)> {
        self.routes
            .iter()
            .map(|(key, route)| (&*key.account, route))
    }

    /// The route for an already normalized URL.
    pub fn route(&self, account: &str, service: &str, normalized_url: &str) -> Option<&Route> {
        self.routes.get(&Probe {
            account,
            service,
            url: normalized_url,
        })
    }

    /// Every route of (account, normalized URL), whatever the service.
    pub fn routes_for_url(&self, account: &str, normalized_url: &str) -> &[Route] {
        self.by_url
            .get(&Probe {
                account,
                service: "",
                url: normalized_url,
            })
            .map_or(&[], Vec::as_slice)
    }

    /// SPEC 6.1: an enabled, live mapping matches and its certificate is Available at `now`.
    /// A URL that does not parse matches nothing.
    pub fn exists(&self, account: &str, service: &str, url: &str, now: i64) -> bool {
        let Ok((_, normalized)) = normalize(url) else {
            return false;
        };
        self.route(account, service, &normalized)
            .is_some_and(|route| route.available(now))
    }
}

/// The current snapshot, readable without locks, replaced whole.
#[derive(Debug)]
pub struct RoutingTable {
    current: ArcSwap<Table>,
}

impl Default for RoutingTable {
    fn default() -> Self {
        Self {
            current: ArcSwap::from_pointee(Table::default()),
        }
    }
}

impl RoutingTable {
    /// The snapshot in force (cheap: an atomic load).
    pub fn snapshot(&self) -> Arc<Table> {
        self.current.load_full()
    }

    /// Runs `read` on the snapshot in force without touching the reference count.
    pub fn with<T>(&self, read: impl FnOnce(&Table) -> T) -> T {
        read(&self.current.load())
    }

    /// Installs `table` unless a newer revision is already in force.
    pub fn replace(&self, table: Table) {
        let table = Arc::new(table);
        self.current.rcu(|current| {
            if current.revision > table.revision {
                Arc::clone(current)
            } else {
                Arc::clone(&table)
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: i64, stored: bool) -> Route {
        Route {
            mapping_id: id,
            certificate_id: 7,
            certificate_version: 1,
            secret_stored: stored,
            not_before: 0,
            not_after: 100,
            upstream_ca: None,
        }
    }

    fn entry(account: &str, service: &str, url: &str, route: Route) -> Entry {
        Entry {
            account: account.into(),
            service: service.into(),
            url: url.into(),
            route,
        }
    }

    #[test]
    fn lookups_match_the_whole_triplet_after_normalization() {
        let table = Table::new(
            [
                entry("1", "IDP", "https://idp.example/token", route(1, true)),
                entry("1", "IDP", "https://idp.example/off", route(2, false)),
                entry("2", "IDP", "https://idp.example/token", route(3, true)),
            ],
            5,
        );
        assert!(table.exists("1", "IDP", "HTTPS://IDP.example:443/token", 50));
        assert!(!table.exists("1", "WEBHOOKS", "https://idp.example/token", 50));
        assert!(!table.exists("1", "IDP", "https://idp.example/token/", 50));
        assert!(
            !table.exists("1", "IDP", "https://idp.example/off", 50),
            "secret not stored"
        );
        assert!(
            !table.exists("1", "IDP", "https://idp.example/token", 101),
            "expired"
        );
        assert!(!table.exists("3", "IDP", "https://idp.example/token", 50));
        assert!(!table.exists("1", "IDP", "not a url", 50));
        assert_eq!(
            table
                .route("2", "IDP", "https://idp.example/token")
                .map(|r| r.mapping_id),
            Some(3)
        );
        // Parts cannot bleed into each other.
        let tricky = Table::new([entry("ab", "c", "https://x/", route(9, true))], 1);
        assert!(tricky.route("a", "bc", "https://x/").is_none());
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let routing = RoutingTable::default();
        routing.replace(Table::new([], 3));
        routing.replace(Table::new(
            [entry("1", "IDP", "https://x/", route(1, true))],
            2,
        ));
        assert_eq!(routing.snapshot().revision(), 3);
        assert!(routing.snapshot().is_empty());
    }
}
