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
//! flight finish on the connection they hold. Identities idle for `forward.identity_idle_seconds`
//! are unloaded by [`Forwarder::unload_idle`] (a timer): out of the cache and out of every
//! thread's map at once, so that no client keeps their key (docs/forward.md, "Memory follows
//! the active set").
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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use hashbrown::HashMap;
use rustls::{ClientConfig, RootCertStore};

use crate::connect::VettedConnector;
use crate::egress::EgressPolicy;
pub use crate::failure::{Failure, classify};
use crate::identity::{ClientIdentity, client_config};

pub use crate::pool::{ConnectionCounters, ForwardBody, IdleLimits, UpstreamHttp2};

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

/// What the threads share of one loaded identity.
struct Usage {
    /// The forwarder's tick at its last request (see [`Forwarder::unload_idle`]).
    tick: AtomicU64,
    /// Its idle connections over every worker thread (for `forward.max_idle_per_identity`).
    idle: Arc<AtomicUsize>,
}

/// One loaded identity.
#[derive(Clone)]
struct Loaded {
    config: Arc<ClientConfig>,
    usage: Arc<Usage>,
}

/// The identities in force: the shared half of the cache.
#[derive(Default)]
struct Identities {
    configs: HashMap<ClientKey, Loaded>,
    /// Bumped whenever an identity is retired, so that threads prune their clients.
    generation: u64,
    /// Identities being loaded, each by the first request that asked (single flight).
    loading: HashMap<ClientKey, Flight>,
}

/// One thread's client of one identity.
struct Local {
    client: UpstreamClient,
    usage: Arc<Usage>,
}

/// One thread's clients of one forwarder, behind a lock that only the unloading timer takes
/// from another thread (so the thread's own lock is uncontended on the request path), so that
/// an unloaded identity leaves every thread's map at once, used or not.
type ThreadClients = Arc<Mutex<ClientMap>>;

type ClientMap = HashMap<ClientKey, Local>;

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
    clients: ThreadClients,
}

thread_local! {
    static LOCAL: RefCell<Vec<LocalClients>> = const { RefCell::new(Vec::new()) };
}

/// Idle identities are unloaded after this many ticks without a request (a tick is a quarter
/// of `forward.identity_idle_seconds`, so an identity goes between 1 and 1.25 times that).
const IDLE_TICKS: u64 = 4;

/// The identities and clients, and what they are built from.
pub struct Forwarder {
    id: u64,
    policy: Arc<EgressPolicy>,
    roots: Arc<RootCertStore>,
    pub timeouts: Timeouts,
    identities: Mutex<Identities>,
    generation: AtomicU64,
    /// Connections made, by handshake kind.
    pub connections: Arc<ConnectionCounters>,
    /// Caps on idle connections, and the idle and evicted counts.
    pub idle_limits: Arc<IdleLimits>,
    /// Identities idle this long are unloaded (`forward.identity_idle_seconds`).
    identity_idle: Duration,
    /// Advanced by [`Forwarder::unload_idle`]; each request stamps its identity with it.
    tick: AtomicU64,
    /// Identities unloaded for being idle.
    pub unloaded: AtomicU64,
    /// Every thread's clients (pruned of ended threads at each unloading).
    threads: Mutex<Vec<Weak<Mutex<ClientMap>>>>,
    /// What the clients offer by ALPN (`forward.upstream_http2`).
    http2: UpstreamHttp2,
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
            roots: Arc::new(roots),
            timeouts,
            identities: Mutex::new(Identities::default()),
            generation: AtomicU64::new(0),
            connections: Arc::default(),
            idle_limits: Arc::new(IdleLimits::new(256, 4096)),
            identity_idle: Duration::from_secs(600),
            tick: AtomicU64::new(0),
            unloaded: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            http2: UpstreamHttp2::WhenOffered,
        }
    }

    /// Whether the clients offer HTTP/2 by ALPN (`forward.upstream_http2`; by default they do).
    pub fn with_http2(mut self, http2: UpstreamHttp2) -> Self {
        self.http2 = http2;
        self
    }

    /// The caps on idle connections, and the idle time after which an identity is unloaded.
    pub fn with_limits(mut self, limits: IdleLimits, identity_idle: Duration) -> Self {
        self.idle_limits = Arc::new(limits);
        self.identity_idle = identity_idle;
        self
    }

    /// How often [`Forwarder::unload_idle`] is to be called.
    pub fn unload_period(&self) -> Duration {
        (self.identity_idle / u32::try_from(IDLE_TICKS).unwrap_or(4)).max(Duration::from_millis(50))
    }

    /// One tick of the unloading timer: identities with no request for `IDLE_TICKS` ticks
    /// leave the identity cache and every thread's client map (their idle connections close;
    /// requests in flight finish on theirs). A scan of every identity, on the timer only.
    pub fn unload_idle(&self) {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        let mut gone: Vec<(ClientKey, Arc<Usage>)> = Vec::new();
        {
            let mut identities = self.identities();
            identities.configs.retain(|key, loaded| {
                let idle = tick.saturating_sub(loaded.usage.tick.load(Ordering::Relaxed));
                let keep = idle < IDLE_TICKS;
                if !keep {
                    gone.push((key.clone(), Arc::clone(&loaded.usage)));
                }
                keep
            });
        }
        if gone.is_empty() {
            return;
        }
        // After the identities (a thread that fetched one before holds its own lock while it
        // inserts the client, so the pass below sees and removes it).
        let threads: Vec<ThreadClients> = {
            let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
            threads.retain(|weak| weak.strong_count() > 0);
            threads.iter().filter_map(Weak::upgrade).collect()
        };
        for clients in threads {
            let mut clients = clients.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, usage) in &gone {
                if clients
                    .get(key)
                    .is_some_and(|local| Arc::ptr_eq(&local.usage, usage))
                {
                    clients.remove(key);
                }
            }
        }
        self.unloaded.fetch_add(
            u64::try_from(gone.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
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
        let tick = self.tick.load(Ordering::Relaxed);
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let position = match local.iter().position(|entry| entry.forwarder == self.id) {
                Some(position) => position,
                None => {
                    let clients = ThreadClients::default();
                    self.threads
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Arc::downgrade(&clients));
                    local.push(LocalClients {
                        forwarder: self.id,
                        generation,
                        clients,
                    });
                    local.len() - 1
                }
            };
            let mine = local.get_mut(position)?;
            let mut clients = mine.clients.lock().unwrap_or_else(PoisonError::into_inner);
            if mine.generation != generation {
                let identities = self.identities();
                clients.retain(|key, _| identities.configs.contains_key(key));
                mine.generation = generation;
            }
            if let Some(local) = clients.get(key) {
                // A store only when the tick has moved on: the line stays shared otherwise.
                if local.usage.tick.load(Ordering::Relaxed) != tick {
                    local.usage.tick.store(tick, Ordering::Relaxed);
                }
                return Some(local.client.clone());
            }
            let loaded = self.identities().configs.get(key).cloned()?;
            loaded.usage.tick.store(tick, Ordering::Relaxed);
            let client = self.client_with(loaded.config, Arc::clone(&loaded.usage.idle));
            clients.insert(
                key.clone(),
                Local {
                    client: client.clone(),
                    usage: loaded.usage,
                },
            );
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
        let usage = Arc::new(Usage {
            tick: AtomicU64::new(self.tick.load(Ordering::Relaxed)),
            idle: Arc::default(),
        });
        identities
            .configs
            .insert(key.clone(), Loaded { config, usage });
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

    fn client_with(
        &self,
        config: Arc<ClientConfig>,
        identity_idle: Arc<AtomicUsize>,
    ) -> UpstreamClient {
        let connector = VettedConnector {
            policy: Arc::clone(&self.policy),
            connect_timeout: self.timeouts.connect,
        };
        crate::pool::Client::new(
            (*config).clone(),
            connector,
            Arc::clone(&self.connections),
            self.timeouts.idle,
            Arc::clone(&self.idle_limits),
            identity_idle,
            self.http2,
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
