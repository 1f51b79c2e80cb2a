//! The listeners: worker threads, each with its own single-threaded runtime, accepting from
//! every listening socket and serving the connections they accept from start to end, nginx
//! style. A request, the handler, and the upstream connection it uses all live on one thread,
//! so the forward path pays no cross-thread wake-up (see `runtime::forward`: clients are per
//! thread). Idle workers win the race to `accept`, which spreads connections by load.
//!
//! HTTP/1.1 and HTTP/2 (by ALPN over TLS, by preface over plain TCP) through hyper-util's
//! `auto` server; TLS by [`crate::tls::ServerTls`], whose certificate can be swapped while
//! connections stay open. Shutdown: stop accepting at once, let connections finish their
//! requests within the grace period, then drop what is left.
//!
//! Hostile peers: a connection past a cap ([`limits`]) is closed at once; a connection with no
//! complete request head `request_head_timeout` after accept (silent TCP, a TLS handshake and
//! then silence, an HTTP/2 preface and then silence) is dropped; one with no request in flight
//! for `idle_timeout` is closed gracefully (HTTP/2: GOAWAY) ([`activity`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use mtls_api::extract::PeerCertificate;
use mtls_api::{App, RefusedHead};

use crate::tls::ServerTls;

pub mod activity;
pub mod head;
pub mod limits;

use activity::{Activity, Expired, Tracked};
use head::{HeadCheck, Refusal};
use limits::{Admitted, ConnectionLimits};

/// One listening socket and what it serves.
#[derive(Debug)]
pub struct Endpoint {
    pub listener: std::net::TcpListener,
    pub app: App,
    pub tls: Option<Arc<ServerTls>>,
}

/// How connections are served and bounded (`server.*` of the configuration).
#[derive(Clone, Debug)]
pub struct Settings {
    /// From accept to the first complete request head, TLS handshake included; on HTTP/1.1
    /// also from the end of one answer to the end of the next request head (hyper's timer).
    pub request_head_timeout: Duration,
    /// No request in flight for this long: the connection is closed gracefully.
    pub idle_timeout: Duration,
    /// On shutdown, and after an idle close, time left to requests in flight.
    pub grace: Duration,
    /// Largest request head: HTTP/1.1 request line and fields, HTTP/2 header list.
    pub max_request_head_bytes: usize,
    /// The caps on open connections, shared by every worker.
    pub limits: Arc<ConnectionLimits>,
}

/// The worker threads; dropping this (or [`Workers::stop`]) begins the shutdown.
#[derive(Debug)]
pub struct Workers {
    stop: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers serving every endpoint.
    ///
    /// Each worker gets its own handles on the listening sockets and the originals are closed
    /// here: once every accept loop has ended, no descriptor of a socket is left, so the kernel
    /// refuses new connections at once instead of queueing them for nobody.
    pub fn start(
        endpoints: Vec<Endpoint>,
        count: usize,
        settings: &Settings,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let mut threads = Vec::new();
        for index in 0..count.max(1) {
            let mine = endpoints
                .iter()
                .map(|endpoint| {
                    Ok(Endpoint {
                        listener: endpoint.listener.try_clone()?,
                        app: endpoint.app.clone(),
                        tls: endpoint.tls.clone(),
                    })
                })
                .collect::<std::io::Result<Vec<_>>>()?;
            let stopped = stopped.clone();
            let settings = settings.clone();
            let thread = std::thread::Builder::new()
                .name(format!("mtls-worker-{index}"))
                .spawn(move || worker(mine, stopped, settings))?;
            threads.push(thread);
        }
        drop(endpoints);
        Ok(Self { stop, threads })
    }

    /// Stops accepting; connections finish within the grace period. Blocks until done.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn worker(endpoints: Vec<Endpoint>, stopped: watch::Receiver<bool>, settings: Settings) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start a worker runtime");
            return;
        }
    };
    let grace = settings.grace;
    let settings = Arc::new(settings);
    runtime.block_on(async move {
        // Every connection task holds a sender; `recv` ends when the last one has ended.
        let (alive, mut all_closed) = mpsc::channel::<()>(1);
        let mut accepting = Vec::new();
        for endpoint in endpoints {
            let listener = match TcpListener::from_std(endpoint.listener) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(%error, "a worker cannot use a listening socket");
                    continue;
                }
            };
            accepting.push(tokio::spawn(accept_loop(
                listener,
                endpoint.app,
                endpoint.tls,
                Arc::clone(&settings),
                alive.clone(),
                stopped.clone(),
            )));
        }
        drop(alive);
        for task in accepting {
            let _ = task.await;
        }
        if tokio::time::timeout(grace, all_closed.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_seconds = grace.as_secs_f64(),
                "connections still open after the grace period are closed"
            );
        }
    });
}

fn http_builder(settings: &Settings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Each HTTP/1.1 response leaves as one buffer (head and body copied together) instead of a
    // list of slices: rustls then encrypts one slice without building a list, and a plain
    // socket gets one write. About 750 fewer instructions per forwarded request, for TLS and
    // plain listeners alike (`CALLGRIND=1 bench/forward.sh`, docs/forward.md).
    builder
        .http1()
        .writev(false)
        .timer(TokioTimer::new())
        .header_read_timeout(settings.request_head_timeout)
        // Above the limit [`HeadCheck`] enforces, so that hyper's own bodiless 431 never
        // answers: every head it reads was checked already.
        .max_buf_size(settings.max_request_head_bytes.saturating_add(16 * 1024));
    // The same for HTTP/2's header list, which the service measures (a JSON 431).
    let list = settings.max_request_head_bytes.saturating_mul(2);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(list).unwrap_or(u32::MAX));
    builder
}

async fn accept_loop(
    listener: TcpListener,
    app: App,
    tls: Option<Arc<ServerTls>>,
    settings: Arc<Settings>,
    alive: mpsc::Sender<()>,
    mut stopped: watch::Receiver<bool>,
) {
    let builder = http_builder(&settings);
    loop {
        if *stopped.borrow() {
            return;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    return;
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = &app.metrics().connections;
        let admitted = match settings.limits.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(cap) => {
                // Closed at once: no handshake, no buffer, nothing read.
                metrics.refused(cap.label());
                tracing::debug!(%peer, cap = cap.label(), "connection refused by a cap");
                drop(stream);
                continue;
            }
        };
        metrics.opened();
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            open: Open {
                app: app.clone(),
                _admitted: admitted,
                _alive: alive.clone(),
            },
            builder: builder.clone(),
            settings: Arc::clone(&settings),
            stopped: stopped.clone(),
            peer,
            accepted: Instant::now(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream, None, false).await,
                Some(tls) => connection.serve_tls(stream, &tls).await,
            }
        });
    }
}

/// An open connection's places: under the caps, in the open-connections gauge, and among the
/// connections the worker waits for at shutdown. All given back on drop.
struct Open {
    app: App,
    _admitted: Admitted,
    _alive: mpsc::Sender<()>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.app.metrics().connections.closed();
    }
}

struct Connection {
    open: Open,
    builder: auto::Builder<TokioExecutor>,
    settings: Arc<Settings>,
    stopped: watch::Receiver<bool>,
    peer: SocketAddr,
    accepted: Instant,
}

impl Connection {
    async fn serve_tls(self, stream: TcpStream, tls: &ServerTls) {
        // The handshake is part of the time to the first request head.
        let deadline = self.accepted + self.settings.request_head_timeout;
        let accepted = tokio::time::timeout_at(deadline, tls.acceptor().accept(stream)).await;
        let stream = match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(peer = %self.peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                self.timed_out(Expired::RequestHead);
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                return;
            }
        };
        let certificate = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| PeerCertificate(Arc::from(leaf.as_ref())));
        let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        self.serve(stream, certificate, http2).await;
    }

    fn timed_out(&self, why: Expired) {
        self.open.app.metrics().connections.timed_out(why.label());
    }

    /// Serves HTTP/1.1 or HTTP/2 (`http2`: chosen by ALPN) on `io`.
    async fn serve<I>(self, io: I, certificate: Option<PeerCertificate>, http2: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new(self.accepted));
        let refusal = Refusal::default();
        let limit = self.settings.max_request_head_bytes;
        let io = HeadCheck::new(io, limit, http2, refusal.clone());
        let service = {
            let app = self.open.app.clone();
            let activity = Arc::clone(&activity);
            let peer = self.peer;
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                if let Some(certificate) = &certificate {
                    request.extensions_mut().insert(certificate.clone());
                }
                if let Some(refused) = refusal.next_request() {
                    request.extensions_mut().insert(refused);
                } else if request.version() == hyper::Version::HTTP_2
                    && header_list_size(&request) > limit
                {
                    request.extensions_mut().insert(RefusedHead::TooLarge);
                }
                let in_flight = activity.begin();
                let app = app.clone();
                async move {
                    let response = app.call(request.map(axum::body::Body::new), peer).await;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| Tracked::new(body, in_flight)),
                    )
                }
            })
        };
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let settings = &self.settings;
        let expired = activity.expired(settings.request_head_timeout, settings.idle_timeout);
        tokio::pin!(expired);
        let mut stopped = self.stopped.clone();
        let mut stopping = false;
        // Set once the connection was asked to close: a peer that ignores GOAWAY (or never
        // answers its PING) is dropped when this passes.
        let mut closing: Option<Instant> = None;
        loop {
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(error) = ended {
                        if error
                            .downcast_ref::<hyper::Error>()
                            .is_some_and(hyper::Error::is_timeout)
                        {
                            self.timed_out(Expired::RequestHead);
                        }
                        tracing::debug!(peer = %self.peer, %error, "connection ended with an error");
                    }
                    return;
                }
                why = &mut expired, if closing.is_none() => {
                    self.timed_out(why);
                    tracing::debug!(peer = %self.peer, reason = why.label(), "connection timed out");
                    if why == Expired::RequestHead {
                        return;
                    }
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + settings.grace);
                }
                () = until_stopped(&mut stopped), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = sleep_until(closing) => return,
            }
        }
    }
}

/// An HTTP/2 request's header list size as RFC 9113 6.5.2 counts it (32 bytes per field
/// beside its name and value), with the target and method for the pseudo-fields.
fn header_list_size<B>(request: &hyper::Request<B>) -> usize {
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    let uri = request.uri();
    let target = uri.path_and_query().map_or(0, |path| path.as_str().len())
        + uri
            .authority()
            .map_or(0, |authority| authority.as_str().len())
        + uri.scheme_str().map_or(0, str::len);
    fields + target + request.method().as_str().len() + 4 * 32
}

/// Resolves once the workers are told to stop (or their sender is gone).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    while !*stopped.borrow_and_update() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
