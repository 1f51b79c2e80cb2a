//! Upstream HTTP clients, one per (client identity, trust settings) and worker thread: a
//! connection or TLS session made with one tenant's certificate is never used for another
//! tenant's request or for an unmapped one, because each identity has its own client and so its
//! own pool.
//!
//! Two levels: the *identity* (the TLS client configuration with the certificate, chain and key,
//! parsed once, shared by every worker thread so that TLS sessions resume across them) and the
//! *client* ([`crate::pool::Client`], with its keep-alive pool, one per identity on each worker
//! thread, so that a request and its upstream connection stay on one thread and no request
//! waits on another thread's wake-up). Rotation installs a new identity key (the certificate
//! version is part of it) and retires the old one; each thread drops its clients of retired
//! identities at its next request, which closes their idle connections, while requests in
//! flight finish on the connection they hold.
//!
//! Failures are classified in [`crate::failure`], once, into the stable codes of SPEC 7.4.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hashbrown::HashMap;
use rustls::{ClientConfig, RootCertStore};

use crate::connect::VettedConnector;
use crate::egress::EgressPolicy;
pub use crate::failure::{Failure, classify};
use crate::identity::{ClientIdentity, client_config};

pub use crate::pool::{ConnectionCounters, ForwardBody};

/// One identity's client on one worker thread.
pub type UpstreamClient = crate::pool::Client;

/// A mapping's extra trust bundle (PEM), compared by its SHA-256 so that keys stay small and
/// the same bundle from two snapshots is the same key.
#[derive(Clone)]
pub struct TrustBundle {
    digest: [u8; 32],
    pem: Arc<str>,
}

impl TrustBundle {
    pub fn new(pem: &str) -> Self {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pem.as_bytes()).as_ref(),
        );
        Self {
            digest,
            pem: Arc::from(pem),
        }
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }
}

impl PartialEq for TrustBundle {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for TrustBundle {}

impl Hash for TrustBundle {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundle").finish_non_exhaustive()
    }
}

/// Which identity: the certificate (id and version) or none, and the extra trust bundle.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub certificate: Option<(i64, i64)>,
    pub upstream_ca: Option<TrustBundle>,
}

/// Timeouts of the forward path (docs/forward.md, "Timeouts").
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP connect to the target.
    pub connect: Duration,
    /// The target's answer (its response head), counted from the end of the request body;
    /// for a request without a body, from the start of the call (set-up included).
    pub response_headers: Duration,
    /// A body in either direction with nothing moving while more is asked for: the caller's
    /// upload (the caller's fault), the target taking none of it, the target's response body.
    pub body_idle: Duration,
    /// Idle pooled connections are closed after this.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response_headers: Duration::from_secs(30),
            body_idle: Duration::from_secs(30),
            idle: Duration::from_secs(90),
        }
    }
}

/// Distinguishes the forwarders of one process (tests run several gateways) in the
/// thread-local client caches.
static NEXT_FORWARDER: AtomicU64 = AtomicU64::new(1);

/// The identities in force: the shared half of the cache.
#[derive(Default)]
struct Identities {
    configs: HashMap<ClientKey, Arc<ClientConfig>>,
    /// Bumped whenever an identity is retired, so that threads prune their clients.
    generation: u64,
}

/// One thread's clients of one forwarder.
struct LocalClients {
    forwarder: u64,
    generation: u64,
    clients: HashMap<ClientKey, UpstreamClient>,
}

thread_local! {
    static LOCAL: RefCell<Vec<LocalClients>> = const { RefCell::new(Vec::new()) };
}

/// The identities and clients, and what they are built from.
pub struct Forwarder {
    id: u64,
    policy: Arc<EgressPolicy>,
    roots: RootCertStore,
    pub timeouts: Timeouts,
    identities: Mutex<Identities>,
    generation: AtomicU64,
    /// Connections made, by handshake kind.
    pub connections: Arc<ConnectionCounters>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("policy", &self.policy)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    pub fn new(policy: EgressPolicy, roots: RootCertStore, timeouts: Timeouts) -> Self {
        Self {
            id: NEXT_FORWARDER.fetch_add(1, Ordering::Relaxed),
            policy: Arc::new(policy),
            roots,
            timeouts,
            identities: Mutex::new(Identities::default()),
            generation: AtomicU64::new(0),
            connections: Arc::default(),
        }
    }

    fn identities(&self) -> std::sync::MutexGuard<'_, Identities> {
        self.identities
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The client for `key` on this thread, if its identity is loaded (the warm path: no
    /// lock unless this thread has not used the identity yet or an identity was retired).
    pub fn client(&self, key: &ClientKey) -> Option<UpstreamClient> {
        let generation = self.generation.load(Ordering::Acquire);
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let position = match local.iter().position(|entry| entry.forwarder == self.id) {
                Some(position) => position,
                None => {
                    local.push(LocalClients {
                        forwarder: self.id,
                        generation,
                        clients: HashMap::new(),
                    });
                    local.len() - 1
                }
            };
            let mine = local.get_mut(position)?;
            if mine.generation != generation {
                let identities = self.identities();
                mine.clients
                    .retain(|key, _| identities.configs.contains_key(key));
                mine.generation = generation;
            }
            if let Some(client) = mine.clients.get(key) {
                return Some(client.clone());
            }
            let config = self.identities().configs.get(key).cloned()?;
            let client = self.client_with(config);
            mine.clients.insert(key.clone(), client.clone());
            Some(client)
        })
    }

    /// The egress policy every upstream connection passes.
    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// The roots trusted for upstream server certificates (system + `tls.trust_roots`).
    pub fn roots(&self) -> &RootCertStore {
        &self.roots
    }

    /// Whether the identity for `key` is loaded.
    pub fn loaded(&self, key: &ClientKey) -> bool {
        self.identities().configs.contains_key(key)
    }

    /// The number of identities loaded.
    pub fn identity_count(&self) -> usize {
        self.identities().configs.len()
    }

    /// Loads the identity for `key` (the first one in wins when several threads load it at
    /// once) and retires older versions of the same certificate; then the client on this thread.
    pub fn install(
        &self,
        key: ClientKey,
        identity: Option<&ClientIdentity>,
    ) -> Result<UpstreamClient, String> {
        let config = client_config(
            &self.roots,
            key.upstream_ca.as_ref().map(TrustBundle::pem),
            identity,
        )?;
        {
            let mut identities = self.identities();
            if !identities.configs.contains_key(&key) {
                if let Some((id, version)) = key.certificate {
                    let before = identities.configs.len();
                    identities.configs.retain(|other, _| {
                        other.certificate.is_none_or(|(other_id, other_version)| {
                            other_id != id || other_version >= version
                        })
                    });
                    if identities.configs.len() != before {
                        self.retired(&mut identities);
                    }
                }
                identities.configs.insert(key.clone(), config);
            }
        }
        self.client(&key)
            .ok_or_else(|| "the identity was retired while it was being loaded".to_owned())
    }

    /// Retires every identity `keep` refuses (certificates deleted, replaced or no longer
    /// mapped); their clients close on each thread at its next request.
    pub fn retain(&self, keep: impl Fn(&ClientKey) -> bool) {
        let mut identities = self.identities();
        let before = identities.configs.len();
        identities.configs.retain(|key, _| keep(key));
        if identities.configs.len() != before {
            self.retired(&mut identities);
        }
    }

    fn retired(&self, identities: &mut Identities) {
        identities.generation += 1;
        self.generation
            .store(identities.generation, Ordering::Release);
    }

    fn client_with(&self, config: Arc<ClientConfig>) -> UpstreamClient {
        let connector = VettedConnector {
            policy: Arc::clone(&self.policy),
            connect_timeout: self.timeouts.connect,
        };
        crate::pool::Client::new(
            (*config).clone(),
            connector,
            Arc::clone(&self.connections),
            self.timeouts.idle,
        )
    }
}
