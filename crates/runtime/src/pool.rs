//! One identity's upstream client on one worker thread: its own keep-alive pool, of HTTP/1.1
//! connections driven by the request's own task ([`crate::h1`]) and of HTTP/2 connections over
//! the `h2` crate (`http2.rs`: the request's task opens its stream, only the connection has a
//! task), in place of hyper-util's general-purpose client.
//!
//! What it keeps of that client's behavior: HTTP/1.1 or HTTP/2 as the target's ALPN answer
//! says, an HTTP/2 connection shared by the requests to a target (requests that find none
//! open each make one, and all stay in the pool), HTTP/1.1 connections reused
//! one request at a time, `Host` set and the URI sent in origin form over HTTP/1.1, a request
//! that a reused connection closed before answering sent again on another connection (for
//! HTTP/1.1, only an idempotent request with no body), idle connections closed after the idle
//! timeout. What it drops: the race between a checkout and
//! a new connection, the waiters, the task spawned per request to watch for the connection to
//! become idle (the response body hands the connection back when it ends), and the hashing of
//! the pool key byte by byte: a forward request pays for none of them (bench/forward.sh).
//!
//! Every connection passes the egress policy ([`VettedConnector`]) and verifies the server with
//! the identity's rustls configuration.
//!
//! The request body type and the connection counters are defined here (and re-exported by
//! `crate::forward`), so that the pool depends on `h1`, `connect`, `clock` and `failure`'s TLS
//! watch only, and nothing below it depends on `forward` or on the pool.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::{Request, Response, Uri};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::clock::UploadClock;
pub use crate::connect::ConnectFailed;
use crate::connect::{ConnectError, VettedConnector};
use crate::failure::{TlsWatch, Watched};
use crate::h1::{self, Conn, Stream};
use crate::http2::{self, H2Body};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The request body type the forward path sends.
pub type ForwardBody = http_body_util::combinators::UnsyncBoxBody<hyper::body::Bytes, BoxError>;

/// Upstream connections made, by how their TLS handshake went (for `/metrics`: requests minus
/// connections is connection reuse).
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    /// Full TLS handshakes.
    pub full: AtomicU64,
    /// TLS sessions resumed.
    pub resumed: AtomicU64,
    /// Plain `http` targets (only with `egress.allow_http`).
    pub plain: AtomicU64,
}

/// The caps on idle connections and what they count, shared by every client of one
/// forwarder (docs/forward.md, "Upstream connections").
#[derive(Debug)]
pub struct IdleLimits {
    /// Idle connections one identity keeps, over every worker thread.
    pub per_identity: usize,
    /// Idle connections every identity keeps together.
    pub total: usize,
    /// Idle connections in the pools now.
    pub idle: AtomicUsize,
    /// Idle connections closed to stay within a cap.
    pub evicted: AtomicU64,
    /// Every client, for the eviction across identities (pruned of ended ones as it grows).
    clients: Mutex<Vec<std::sync::Weak<Inner>>>,
    /// Wakes the task that brings the total back under its cap, off the request path.
    over: Arc<tokio::sync::Notify>,
    evicting: AtomicBool,
}

impl IdleLimits {
    pub fn new(per_identity: usize, total: usize) -> Self {
        Self {
            per_identity: per_identity.max(1),
            total: total.max(1),
            idle: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            clients: Mutex::new(Vec::new()),
            over: Arc::default(),
            evicting: AtomicBool::new(false),
        }
    }

    fn register(&self, client: &Arc<Inner>) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        // Amortized: the list is pruned when it has doubled since the last pruning.
        if clients.len() >= 64 && clients.len().is_power_of_two() {
            clients.retain(|weak| weak.strong_count() > 0);
        }
        clients.push(Arc::downgrade(client));
    }

    /// Closes the idle connections that have waited longest, over every identity, until the
    /// total is an eighth under its cap (so that a pool at its cap does not scan at every
    /// release).
    fn evict_total(&self) {
        let target = self.total - self.total / 8;
        let idle = self.idle.load(Ordering::Relaxed);
        if idle <= self.total {
            return;
        }
        let excess = idle - target;
        let clients: Vec<Arc<Inner>> = {
            let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
            clients.retain(|weak| weak.strong_count() > 0);
            clients
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                .collect()
        };
        let mut ages: Vec<Instant> = Vec::new();
        for client in &clients {
            let idles = client.idle.lock().unwrap_or_else(PoisonError::into_inner);
            for map in [&idles.https, &idles.http] {
                ages.extend(map.values().flatten().map(|idle| idle.since));
            }
        }
        ages.sort_unstable();
        // Everything idle since this instant or before goes.
        let Some(cutoff) = ages.get(excess.min(ages.len()).saturating_sub(1)).copied() else {
            return;
        };
        let mut left = excess;
        for client in &clients {
            let mut idles = client.idle.lock().unwrap_or_else(PoisonError::into_inner);
            left -= idles.evict_since(cutoff, left);
            client.settle(&mut idles);
            if left == 0 {
                break;
            }
        }
        self.evicted.fetch_add(
            u64::try_from(excess - left).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Ends when the limits do (the forwarder is dropped).
async fn evict_over_total(limits: std::sync::Weak<IdleLimits>, over: Arc<tokio::sync::Notify>) {
    loop {
        let notified = over.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Some(strong) = limits.upgrade() else {
            return;
        };
        strong.evict_total();
        drop(strong);
        // Woken by a release past the cap, or every few seconds to notice the forwarder ended.
        let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
    }
}

/// Stage timings of one upstream call (for its trace span), filled only when the request
/// carries an `Arc<Stages>` in its extensions: without one nothing is measured, and the pool
/// pays one look-up in an empty extension map. Times in microseconds; a reused connection
/// has no connect or TLS stage.
#[derive(Debug, Default)]
pub struct Stages {
    /// TCP connect (the egress policy's resolution included) of the last connection made.
    pub connect_micros: AtomicU64,
    /// TLS handshake of that connection (and, for HTTP/2, its preface).
    pub tls_micros: AtomicU64,
    /// Whether the request went out on a pooled connection.
    pub reused: std::sync::atomic::AtomicBool,
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// Sends of one request: a reused connection that closed before taking it is replaced this
/// many times (each time by a connection of the pool, or a new one).
const ATTEMPTS: usize = 3;

/// The request cannot be sent (no scheme or host).
#[derive(Debug)]
struct Unusable(&'static str);

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Unusable {}

enum Sender {
    Http1(Box<Conn>),
    /// With the TLS error its connection saw, which h2 would hand on as text only.
    Http2(http2::Sender, TlsWatch),
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle connections by target authority, for each scheme.
#[derive(Default)]
struct Idles {
    https: HashMap<Box<str>, Vec<Idle>>,
    http: HashMap<Box<str>, Vec<Idle>>,
    /// Whether the task closing idle connections runs.
    reaping: bool,
    /// Connections in the lists.
    count: usize,
    /// What the shared counters have been told of `count`.
    reported: usize,
}

impl Idles {
    fn of(&mut self, https: bool) -> &mut HashMap<Box<str>, Vec<Idle>> {
        if https {
            &mut self.https
        } else {
            &mut self.http
        }
    }

    /// Drops (so closes) up to `most` connections idle since `cutoff` or before; how many.
    fn evict_since(&mut self, cutoff: Instant, most: usize) -> usize {
        let mut evicted = 0;
        for map in [&mut self.https, &mut self.http] {
            map.retain(|_, list| {
                list.retain(|idle| {
                    let evict = evicted < most && idle.since <= cutoff;
                    evicted += usize::from(evict);
                    !evict
                });
                !list.is_empty()
            });
        }
        self.count -= evicted;
        evicted
    }

    /// Drops the connection of this client that has waited longest (lists are oldest first).
    fn evict_oldest(&mut self) -> bool {
        let oldest = [&self.https, &self.http]
            .into_iter()
            .flat_map(|map| map.values())
            .filter_map(|list| list.first().map(|idle| idle.since))
            .min();
        oldest.is_some_and(|cutoff| self.evict_since(cutoff, 1) == 1)
    }

    /// Drops (so closes) connections idle past `timeout` or already closed.
    fn sweep(&mut self, now: Instant, timeout: Duration) {
        let mut count = 0;
        for map in [&mut self.https, &mut self.http] {
            map.retain(|_, list| {
                list.retain_mut(|idle| {
                    now.saturating_duration_since(idle.since) <= timeout
                        && match &mut idle.sender {
                            Sender::Http1(conn) => conn.reusable(),
                            Sender::Http2(sender, _) => !sender.is_closed(),
                        }
                });
                count += list.len();
                !list.is_empty()
            });
        }
        self.count = count;
    }
}

struct Inner {
    tls: tokio_rustls::TlsConnector,
    connector: VettedConnector,
    counters: Arc<ConnectionCounters>,
    idle_timeout: Duration,
    idle: Mutex<Idles>,
    limits: Arc<IdleLimits>,
    /// This identity's idle connections over every worker thread.
    identity_idle: Arc<AtomicUsize>,
}

impl Inner {
    /// Tells the shared counters what changed in `idles.count` since they were last told.
    fn settle(&self, idles: &mut Idles) {
        let (now, before) = (idles.count, idles.reported);
        if now > before {
            self.limits.idle.fetch_add(now - before, Ordering::Relaxed);
            self.identity_idle
                .fetch_add(now - before, Ordering::Relaxed);
        } else if now < before {
            self.limits.idle.fetch_sub(before - now, Ordering::Relaxed);
            self.identity_idle
                .fetch_sub(before - now, Ordering::Relaxed);
        }
        idles.reported = now;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let idles = self.idle.get_mut().unwrap_or_else(PoisonError::into_inner);
        idles.count = 0;
        let mut idles = std::mem::take(idles);
        self.settle(&mut idles);
    }
}

/// HTTP/2 connections a client keeps to one target (on its worker thread), and alternates its
/// requests between. A connection is opened only by a request that finds none pooled, so a
/// second one exists when concurrent first requests (a burst) opened several; the others serve
/// the request that opened them and close. With one, every request of the thread to the target
/// would go to whichever server process or backend accepted that connection; with two, the
/// server can spread them, and each connection still carries about half of them, so most of
/// HTTP/2's batching (several streams per TLS record and system call) stays (docs/forward.md,
/// "Upstream connections").
const HTTP2_PER_TARGET: usize = 2;

/// Which protocols a client offers the target by ALPN (`forward.upstream_http2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamHttp2 {
    /// `h2` and `http/1.1`: the target's answer decides (HTTP/2 when it offers it).
    #[default]
    WhenOffered,
    /// `http/1.1` only: every target is spoken to over HTTP/1.1, one request per connection
    /// at a time (docs/forward.md, "Many tenants": cheaper when each identity's connections
    /// carry one request at a time, as with many tenants).
    Never,
}

/// One identity's client (cheap to clone: the pool is shared by the clones).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client presenting what `config` holds, offering by ALPN what `http2` allows: HTTP/2
    /// and HTTP/1.1, or HTTP/1.1 only.
    pub fn new(
        mut config: ClientConfig,
        connector: VettedConnector,
        counters: Arc<ConnectionCounters>,
        idle_timeout: Duration,
        limits: Arc<IdleLimits>,
        identity_idle: Arc<AtomicUsize>,
        http2: UpstreamHttp2,
    ) -> Self {
        config.alpn_protocols = match http2 {
            UpstreamHttp2::WhenOffered => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            UpstreamHttp2::Never => vec![b"http/1.1".to_vec()],
        };
        let inner = Arc::new(Inner {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            connector,
            counters,
            idle_timeout,
            idle: Mutex::new(Idles::default()),
            limits: Arc::clone(&limits),
            identity_idle,
        });
        limits.register(&inner);
        Self { inner }
    }

    /// Sends `request` (absolute URI) and returns the response once its head has arrived;
    /// the body streams from the connection, which goes back to the pool when the body ends.
    /// `clock` (the request body's) learns when an HTTP/1.1 answer starts.
    pub async fn request(
        &self,
        mut request: Request<ForwardBody>,
        clock: &UploadClock,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        let uri = request.uri().clone();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(Box::new(Unusable("the URL has no http or https scheme"))),
        };
        let Some(authority) = uri.authority().map(|authority| authority.as_str()) else {
            return Err(Box::new(Unusable("the URL has no host")));
        };
        // The HTTP/1.1 head, encoded at the first HTTP/1.1 attempt and kept for another.
        let mut encoded: Option<h1::Encoded> = None;
        let stages = request.extensions().get::<Arc<Stages>>().cloned();
        for _ in 0..ATTEMPTS {
            let (sender, reused) = match self.checkout(https, authority) {
                Some(sender) => (sender, true),
                // Boxed: the connect future is large and rare; inline, every request's
                // future would carry (and move) its size.
                None => {
                    let sender = Box::pin(self.connect(&uri, https, stages.as_deref())).await?;
                    if let Sender::Http2(shared, watch) = &sender {
                        // Shared from the start: the next requests multiplex on it.
                        Client::release(
                            &self.inner,
                            https,
                            Box::from(authority),
                            Sender::Http2(shared.clone(), watch.clone()),
                        );
                    }
                    (sender, false)
                }
            };
            if let Some(stages) = &stages {
                stages.reused.store(reused, Ordering::Relaxed);
            }
            match sender {
                Sender::Http2(mut sender, watch) => {
                    // Not ready: the connection is gone before it took the request, which may
                    // go on another.
                    if sender.ready().await.is_err() {
                        continue;
                    }
                    return match sender.send(request).await {
                        Ok(response) => Ok(response.map(|body| UpstreamBody {
                            body: Source::Http2(body),
                        })),
                        Err(error) => Err(watch.explain(error)),
                    };
                }
                Sender::Http1(mut conn) => {
                    let encoded = match &mut encoded {
                        Some(encoded) => encoded,
                        None => encoded.insert(h1::Encoded::new(&request, host_text(&uri, https))?),
                    };
                    match h1::exchange(&mut conn, &mut request, encoded, reused, || {
                        clock.answering();
                    })
                    .await
                    {
                        Ok(head) => {
                            let body = h1::Body::new(conn, &head);
                            let release = Release {
                                client: Arc::clone(&self.inner),
                                https,
                                authority: Box::from(authority),
                            };
                            let mut response = Response::new(UpstreamBody {
                                body: Source::Http1(body, Some(release)),
                            });
                            *response.status_mut() = head.status;
                            *response.version_mut() = head.version;
                            *response.headers_mut() = head.headers;
                            return Ok(response);
                        }
                        // Another connection, if attempts are left.
                        Err(h1::Failed::Retry) => {}
                        Err(h1::Failed::Error(error)) => return Err(error),
                    }
                }
            }
        }
        Err(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the target closed every connection the request was sent on",
        )))
    }

    /// An idle connection to the target, if one is alive and not past the idle timeout.
    fn checkout(&self, https: bool, authority: &str) -> Option<Sender> {
        let mut idles = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let list = idles.of(https).get_mut(authority)?;
        let before = list.len();
        let found = Client::take(list, self.inner.idle_timeout);
        let taken = before - list.len();
        idles.count -= taken;
        self.inner.settle(&mut idles);
        found
    }

    /// A live connection of `list`, which is oldest first. HTTP/2: of the (at most
    /// [`HTTP2_PER_TARGET`]) shared connections, the one used least recently, which stays in
    /// the list as the newest, so that a thread's requests alternate between them. HTTP/1.1:
    /// the newest, taken out. Connections past the idle timeout, or closed, are dropped.
    fn take(list: &mut Vec<Idle>, timeout: Duration) -> Option<Sender> {
        let now = Instant::now();
        if matches!(
            list.last(),
            Some(Idle {
                sender: Sender::Http2(..),
                ..
            })
        ) {
            while let Some(index) = list
                .iter()
                .position(|idle| matches!(idle.sender, Sender::Http2(..)))
            {
                let mut idle = list.remove(index);
                if now.saturating_duration_since(idle.since) > timeout {
                    continue;
                }
                if let Sender::Http2(sender, watch) = &mut idle.sender {
                    if sender.is_closed() {
                        continue;
                    }
                    let shared = Sender::Http2(sender.clone(), watch.clone());
                    idle.since = now;
                    list.push(idle);
                    return Some(shared);
                }
            }
        }
        while let Some(idle) = list.pop() {
            if now.saturating_duration_since(idle.since) > timeout {
                continue;
            }
            match idle.sender {
                Sender::Http1(conn) => {
                    if let Some(conn) = conn.checked() {
                        return Some(Sender::Http1(conn));
                    }
                }
                Sender::Http2(mut sender, watch) => {
                    if sender.is_closed() {
                        continue;
                    }
                    let shared = Sender::Http2(sender.clone(), watch.clone());
                    list.push(Idle {
                        sender: Sender::Http2(sender, watch),
                        since: now,
                    });
                    return Some(shared);
                }
            }
        }
        None
    }

    /// Puts `sender`'s connection in the pool (HTTP/1.1 after its response body ended); the
    /// first one starts the task that closes idle connections. At the identity's cap, this
    /// client's connection that has waited longest is closed to make room; past the total cap,
    /// the task evicting across identities is woken (neither grows with the identities).
    fn release(inner: &Arc<Inner>, https: bool, authority: Box<str>, sender: Sender) {
        let mut idles = inner.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if !idles.reaping {
            idles.reaping = true;
            tokio::spawn(reap(Arc::downgrade(inner)));
        }
        if let Sender::Http2(..) = &sender {
            let pooled = idles.of(https).get(&authority).map_or(0, |list| {
                list.iter()
                    .filter(|idle| matches!(idle.sender, Sender::Http2(..)))
                    .count()
            });
            if pooled >= HTTP2_PER_TARGET {
                // One more of a burst's connections: it serves the request that made it, and
                // closes when that request ends.
                return;
            }
        }
        let limits = &inner.limits;
        // When this client holds no other, the connection is kept all the same: the identity's
        // others are on other threads, and dropping it would make this thread open a connection
        // per request (so the cap may be passed by one per other worker thread).
        if inner.identity_idle.load(Ordering::Relaxed) >= limits.per_identity
            && idles.evict_oldest()
        {
            limits.evicted.fetch_add(1, Ordering::Relaxed);
        }
        idles.of(https).entry(authority).or_default().push(Idle {
            sender,
            since: Instant::now(),
        });
        idles.count += 1;
        inner.settle(&mut idles);
        drop(idles);
        if limits.idle.load(Ordering::Relaxed) > limits.total {
            if !limits.evicting.swap(true, Ordering::Relaxed) {
                tokio::spawn(evict_over_total(
                    Arc::downgrade(limits),
                    Arc::clone(&limits.over),
                ));
            }
            limits.over.notify_one();
        }
    }

    async fn connect(
        &self,
        uri: &Uri,
        https: bool,
        stages: Option<&Stages>,
    ) -> Result<Sender, ConnectFailed> {
        let failed = |error: BoxError| ConnectFailed(error);
        let started = stages.map(|_| Instant::now());
        let tcp = self
            .inner
            .connector
            .connect(uri)
            .await
            .map_err(|error: ConnectError| failed(Box::new(error)))?;
        let connected = stages.zip(started).map(|(stages, started)| {
            stages
                .connect_micros
                .store(micros(started.elapsed()), Ordering::Relaxed);
            (stages, Instant::now())
        });
        let handshaken = || {
            if let Some((stages, connected)) = connected {
                stages
                    .tls_micros
                    .store(micros(connected.elapsed()), Ordering::Relaxed);
            }
        };
        if !https {
            self.inner.counters.plain.fetch_add(1, Ordering::Relaxed);
            return Ok(Sender::Http1(Conn::new(Stream::Plain(tcp))));
        }
        let host = uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            failed(Box::new(Unusable(
                "the URL's host is not a valid TLS server name",
            )))
        })?;
        let tls = self
            .inner
            .tls
            .connect(name, tcp)
            .await
            .map_err(|error| failed(Box::new(error)))?;
        let (_, session) = tls.get_ref();
        let counter = match session.handshake_kind() {
            Some(rustls::HandshakeKind::Resumed) => &self.inner.counters.resumed,
            _ => &self.inner.counters.full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if session.alpn_protocol() == Some(b"h2") {
            let watch = TlsWatch::default();
            let io = Watched::new(tls, watch.clone());
            let sender = http2::handshake(io)
                .await
                .map_err(|error| failed(Box::new(error)))?;
            handshaken();
            Ok(Sender::Http2(sender, watch))
        } else {
            handshaken();
            Ok(Sender::Http1(Conn::new(Stream::Tls(Box::new(tls)))))
        }
    }
}

/// Every half idle timeout, closes the connections idle past it; ends with the client.
async fn reap(client: std::sync::Weak<Inner>) {
    let period = client
        .upgrade()
        .map_or(Duration::from_secs(1), |inner| inner.idle_timeout / 2)
        .max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = client.upgrade() else {
            return;
        };
        let mut idles = inner.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idles.sweep(Instant::now(), inner.idle_timeout);
        inner.settle(&mut idles);
    }
}

/// `Host` for HTTP/1.1: the authority without the scheme's default port, borrowed from the
/// URI (which has checked its characters).
fn host_text(uri: &Uri, https: bool) -> Option<&str> {
    let authority = uri.authority()?;
    let default_port = if https { 443 } else { 80 };
    if authority.port_u16() == Some(default_port) {
        Some(authority.host())
    } else {
        Some(authority.as_str())
    }
}

/// Where an HTTP/1.1 connection goes back when its response body ends.
struct Release {
    client: Arc<Inner>,
    https: bool,
    authority: Box<str>,
}

enum Source {
    /// The body, and where its connection goes back (taken when it has).
    Http1(h1::Body, Option<Release>),
    Http2(H2Body),
}

/// A response body from the target; its end hands an HTTP/1.1 connection back to the pool.
/// Dropped before its end, the connection is dropped with it (closed, never reused).
pub struct UpstreamBody {
    body: Source,
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody").finish_non_exhaustive()
    }
}

impl UpstreamBody {
    /// Hands the connection back once the body has ended where its framing said
    /// ([`h1::Body::reusable`]; a failed body has dropped its connection).
    fn ended(&mut self) {
        if let Source::Http1(body, release) = &mut self.body
            && let Some(conn) = body.reusable()
            && let Some(release) = release.take()
        {
            Client::release(
                &release.client,
                release.https,
                release.authority,
                Sender::Http1(conn),
            );
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match &mut self.body {
            Source::Http1(body, _) => Pin::new(body).poll_frame(cx),
            Source::Http2(body) => {
                return Pin::new(body).poll_frame(cx);
            }
        };
        if polled.is_ready() {
            self.ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Source::Http1(body, _) => body.is_end_stream(),
            Source::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Source::Http1(body, _) => body.size_hint(),
            Source::Http2(body) => body.size_hint(),
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        self.ended();
    }
}
