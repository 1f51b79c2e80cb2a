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
//! A cold identity is loaded once however many requests ask for it at the same time (single
//! flight, [`Forwarder::load`]): the first asker runs the load, the others wait for its outcome,
//! a failure is given to every waiter and not kept.
//!
//! Failures are classified in [`crate::failure`], once, into the stable codes of SPEC 7.4.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
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
    /// Identities being loaded, each by the first request that asked (single flight).
    loading: HashMap<ClientKey, Flight>,
}

/// The outcome of one load as its waiters see it: `None` while it runs, then `Ok` (the
/// identity is in `configs`) or the [`LoadError`] the loader returned, type-erased because
/// the map holds loads of any error type.
type Outcome = Option<Result<(), Arc<dyn Any + Send + Sync>>>;

/// One identity load under way.
struct Flight {
    /// Tells this flight from a later one for the same key (a cancelled leader removes only
    /// its own).
    id: u64,
    outcome: tokio::sync::watch::Receiver<Outcome>,
}

/// Why [`Forwarder::load`] gave no client.
#[derive(Clone, Debug)]
pub enum LoadError<E> {
    /// The loader's error: the same for every request that waited on that load.
    Loader(E),
    /// The loaded identity makes no client configuration, or was retired while it was loaded.
    Config(String),
}

/// The first asker's part in a load: publishes the outcome, and when dropped before that (its
/// request went away), removes the flight so that the waiters retry (one of them loads).
struct Leader<'a> {
    forwarder: &'a Forwarder,
    key: &'a ClientKey,
    id: u64,
    outcome: Option<tokio::sync::watch::Sender<Outcome>>,
}

impl Leader<'_> {
    /// Ends the flight: on success the configuration enters the cache in the same critical
    /// section that removes the flight, so that no request finds neither and loads again.
    fn finish(mut self, result: Result<Arc<ClientConfig>, Arc<dyn Any + Send + Sync>>) {
        let outcome = {
            let mut identities = self.forwarder.identities();
            if identities
                .loading
                .get(self.key)
                .is_some_and(|flight| flight.id == self.id)
            {
                identities.loading.remove(self.key);
            }
            match result {
                Ok(config) => {
                    self.forwarder.publish(&mut identities, self.key, config);
                    Ok(())
                }
                Err(error) => Err(error),
            }
        };
        if let Some(sender) = self.outcome.take() {
            sender.send_replace(Some(outcome));
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.outcome.is_some() {
            let mut identities = self.forwarder.identities();
            if identities
                .loading
                .get(self.key)
                .is_some_and(|flight| flight.id == self.id)
            {
                identities.loading.remove(self.key);
            }
        }
    }
}

/// Numbers the flights of a process.
static NEXT_FLIGHT: AtomicU64 = AtomicU64::new(1);

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
        let config = self.config_for(&key, identity)?;
        self.publish(&mut self.identities(), &key, config);
        self.client(&key)
            .ok_or_else(|| "the identity was retired while it was being loaded".to_owned())
    }

    /// The client for `key` on this thread: warm, or its identity loaded by `loader` (the
    /// secret read and the PKCS#12 parse) once, however many requests on however many threads
    /// ask for it at the same time. The first asker runs `loader`; the others wait for its
    /// outcome without holding any lock (each worker thread is a single-threaded runtime: a
    /// lock held across an await could stop the thread that holds it); a failure is given to
    /// every waiter and not kept, so the next request loads again. Loads of different keys do
    /// not wait on each other. When the first asker's request goes away before the end, a
    /// waiter takes over. The `bool` says whether this call ran `loader`.
    pub async fn load<E, F, Fut>(
        &self,
        key: &ClientKey,
        loader: F,
    ) -> Result<(UpstreamClient, bool), LoadError<E>>
    where
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<ClientIdentity>, E>>,
    {
        loop {
            if let Some(client) = self.client(key) {
                return Ok((client, false));
            }
            // Decided under the lock, acted on after it (no guard lives across an await).
            let waiting = {
                let mut identities = self.identities();
                if identities.configs.contains_key(key) {
                    // Published between the look-up above and this lock.
                    continue;
                }
                match identities.loading.get(key) {
                    Some(flight) => Err(flight.outcome.clone()),
                    None => {
                        let id = NEXT_FLIGHT.fetch_add(1, Ordering::Relaxed);
                        let (sender, receiver) = tokio::sync::watch::channel(None);
                        identities.loading.insert(
                            key.clone(),
                            Flight {
                                id,
                                outcome: receiver,
                            },
                        );
                        Ok((id, sender))
                    }
                }
            };
            let mut outcome = match waiting {
                Ok((id, sender)) => {
                    let leader = Leader {
                        forwarder: self,
                        key,
                        id,
                        outcome: Some(sender),
                    };
                    return self.lead(leader, loader).await;
                }
                Err(outcome) => outcome,
            };
            // `Err`: the first asker went away without an outcome; ask again (one of the
            // waiters becomes the loader).
            let seen = match outcome.wait_for(Option::is_some).await {
                Ok(seen) => seen.clone(),
                Err(_) => continue,
            };
            match seen {
                Some(Ok(())) => {
                    return self
                        .client(key)
                        .map(|client| (client, false))
                        .ok_or_else(|| {
                            LoadError::Config(
                                "the identity was retired while it was being loaded".to_owned(),
                            )
                        });
                }
                Some(Err(error)) => {
                    if let Some(error) = error.downcast_ref::<LoadError<E>>() {
                        return Err(error.clone());
                    }
                    // A load of the same key with another error type: not this caller's
                    // to interpret; load again.
                }
                None => {}
            }
        }
    }

    /// The first asker's load: `loader`, then the client configuration, then the outcome
    /// published to the waiters.
    async fn lead<E, F, Fut>(
        &self,
        leader: Leader<'_>,
        loader: F,
    ) -> Result<(UpstreamClient, bool), LoadError<E>>
    where
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<ClientIdentity>, E>>,
    {
        let key = leader.key;
        let config = match loader().await {
            Ok(identity) => self
                .config_for(key, identity.as_ref())
                .map_err(LoadError::Config),
            Err(error) => Err(LoadError::Loader(error)),
        };
        match config {
            Ok(config) => leader.finish(Ok(config)),
            Err(error) => {
                leader.finish(Err(Arc::new(error.clone())));
                return Err(error);
            }
        }
        self.client(key)
            .map(|client| (client, true))
            .ok_or_else(|| {
                LoadError::Config("the identity was retired while it was being loaded".to_owned())
            })
    }

    fn config_for(
        &self,
        key: &ClientKey,
        identity: Option<&ClientIdentity>,
    ) -> Result<Arc<ClientConfig>, String> {
        client_config(
            &self.roots,
            key.upstream_ca.as_ref().map(TrustBundle::pem),
            identity,
        )
    }

    /// Puts `config` in force for `key` unless an identity is already (the first one in wins),
    /// retiring older versions of the same certificate.
    fn publish(&self, identities: &mut Identities, key: &ClientKey, config: Arc<ClientConfig>) {
        if identities.configs.contains_key(key) {
            return;
        }
        if let Some((id, version)) = key.certificate {
            let before = identities.configs.len();
            identities.configs.retain(|other, _| {
                other.certificate.is_none_or(|(other_id, other_version)| {
                    other_id != id || other_version >= version
                })
            });
            if identities.configs.len() != before {
                self.retired(identities);
            }
        }
        identities.configs.insert(key.clone(), config);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Semaphore;

    use super::*;

    fn forwarder() -> Arc<Forwarder> {
        Arc::new(Forwarder::new(
            EgressPolicy {
                allow: Vec::new(),
                allow_http: false,
            },
            RootCertStore::empty(),
            Timeouts::default(),
        ))
    }

    fn key(id: i64) -> ClientKey {
        ClientKey {
            certificate: Some((id, 1)),
            upstream_ca: None,
        }
    }

    /// A loader that counts its runs, waits for a permit of `gate`, then answers `result`.
    async fn gated(
        loads: &AtomicUsize,
        gate: &Semaphore,
        result: Result<(), &'static str>,
    ) -> Result<Option<ClientIdentity>, &'static str> {
        loads.fetch_add(1, Ordering::SeqCst);
        gate.acquire().await.unwrap().forget();
        result.map(|()| None)
    }

    /// Lets every spawned task of this current-thread runtime run up to its next wait.
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    type Results = tokio::task::JoinSet<Result<bool, LoadError<&'static str>>>;

    fn ask(
        calls: &mut Results,
        forwarder: &Arc<Forwarder>,
        id: i64,
        loads: &Arc<AtomicUsize>,
        gate: &Arc<Semaphore>,
        result: Result<(), &'static str>,
    ) {
        let (forwarder, loads, gate) = (Arc::clone(forwarder), Arc::clone(loads), Arc::clone(gate));
        calls.spawn(async move {
            forwarder
                .load(&key(id), || async { gated(&loads, &gate, result).await })
                .await
                .map(|(_, loaded)| loaded)
        });
    }

    #[tokio::test]
    async fn concurrent_askers_share_one_load() {
        let (forwarder, loads, gate) = (forwarder(), Arc::default(), Arc::new(Semaphore::new(0)));
        let mut calls = Results::new();
        for _ in 0..20 {
            ask(&mut calls, &forwarder, 1, &loads, &gate, Ok(()));
        }
        settle().await;
        gate.add_permits(20);
        let mut loaders = 0;
        while let Some(result) = calls.join_next().await {
            loaders += usize::from(result.unwrap().unwrap());
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(loaders, 1, "exactly one asker ran the load");
        assert!(forwarder.loaded(&key(1)));
        // Warm now: no load, whoever asks.
        let (_, loaded) = forwarder
            .load(&key(1), || async {
                Err::<Option<ClientIdentity>, _>("not called")
            })
            .await
            .unwrap();
        assert!(!loaded);
    }

    #[tokio::test]
    async fn a_failure_reaches_every_waiter_and_is_not_kept() {
        let (forwarder, loads, gate) = (forwarder(), Arc::default(), Arc::new(Semaphore::new(0)));
        let mut calls = Results::new();
        for _ in 0..20 {
            ask(
                &mut calls,
                &forwarder,
                1,
                &loads,
                &gate,
                Err("secret missing"),
            );
        }
        settle().await;
        gate.add_permits(20);
        while let Some(result) = calls.join_next().await {
            match result.unwrap() {
                Err(LoadError::Loader(error)) => assert_eq!(error, "secret missing"),
                other => panic!("every waiter gets the loader's error, not {other:?}"),
            }
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(!forwarder.loaded(&key(1)));
        // The next request loads again.
        ask(&mut calls, &forwarder, 1, &loads, &gate, Ok(()));
        gate.add_permits(1);
        assert!(calls.join_next().await.unwrap().unwrap().unwrap());
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn loads_of_different_identities_do_not_wait_on_each_other() {
        let (forwarder, loads, gate) = (forwarder(), Arc::default(), Arc::new(Semaphore::new(0)));
        let mut calls = Results::new();
        // Identity 1's load hangs until the gate opens...
        ask(&mut calls, &forwarder, 1, &loads, &gate, Ok(()));
        settle().await;
        // ...and identity 2's completes meanwhile.
        let (_, loaded) = forwarder
            .load(&key(2), || async { Ok::<_, &'static str>(None) })
            .await
            .unwrap();
        assert!(loaded);
        assert!(forwarder.loaded(&key(2)));
        assert!(!forwarder.loaded(&key(1)));
        gate.add_permits(1);
        assert!(calls.join_next().await.unwrap().unwrap().unwrap());
    }

    #[tokio::test]
    async fn a_waiter_takes_over_when_the_loader_goes_away() {
        let (forwarder, loads, gate) = (forwarder(), Arc::default(), Arc::new(Semaphore::new(0)));
        let mut first = Results::new();
        ask(&mut first, &forwarder, 1, &loads, &gate, Ok(()));
        settle().await;
        let mut waiters = Results::new();
        for _ in 0..5 {
            ask(&mut waiters, &forwarder, 1, &loads, &gate, Ok(()));
        }
        settle().await;
        first.abort_all();
        settle().await;
        gate.add_permits(5);
        let mut loaders = 0;
        while let Some(result) = waiters.join_next().await {
            loaders += usize::from(result.unwrap().unwrap());
        }
        assert_eq!(loaders, 1, "one waiter loaded, the others waited for it");
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }
}
