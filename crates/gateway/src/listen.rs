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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use mtls_api::App;
use mtls_api::extract::PeerCertificate;

use crate::tls::ServerTls;

/// Time a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's headers (slow clients hold no worker).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// One listening socket and what it serves.
#[derive(Debug)]
pub struct Endpoint {
    pub listener: std::net::TcpListener,
    pub app: App,
    pub tls: Option<Arc<ServerTls>>,
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
    pub fn start(endpoints: Vec<Endpoint>, count: usize, grace: Duration) -> std::io::Result<Self> {
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
            let thread = std::thread::Builder::new()
                .name(format!("mtls-worker-{index}"))
                .spawn(move || worker(mine, stopped, grace))?;
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

fn worker(endpoints: Vec<Endpoint>, stopped: watch::Receiver<bool>, grace: Duration) {
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
    runtime.block_on(async move {
        let graceful = Arc::new(GracefulShutdown::new());
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
                Arc::clone(&graceful),
                stopped.clone(),
            )));
        }
        for task in accepting {
            let _ = task.await;
        }
        // Every accept loop has ended, so this is the last reference.
        if let Ok(graceful) = Arc::try_unwrap(graceful)
            && tokio::time::timeout(grace, graceful.shutdown())
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

async fn accept_loop(
    listener: TcpListener,
    app: App,
    tls: Option<Arc<ServerTls>>,
    graceful: Arc<GracefulShutdown>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Each HTTP/1.1 response leaves as one buffer (head and body copied together) instead of a
    // list of slices: rustls then encrypts one slice without building a list, and a plain
    // socket gets one write. About 750 fewer instructions per forwarded request, for TLS and
    // plain listeners alike (`CALLGRIND=1 bench/forward.sh`, docs/forward.md).
    builder
        .http1()
        .writev(false)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
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
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            peer,
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream, None).await,
                Some(tls) => connection.serve_tls(stream, &tls).await,
            }
        });
    }
}

struct Connection {
    app: App,
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
}

impl Connection {
    async fn serve_tls(self, stream: TcpStream, tls: &ServerTls) {
        let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await;
        let stream = match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(peer = %self.peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
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
        self.serve(stream, certificate).await;
    }

    async fn serve<I>(self, io: I, certificate: Option<PeerCertificate>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            app,
            builder,
            watcher,
            peer,
        } = self;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            if let Some(certificate) = &certificate {
                request.extensions_mut().insert(certificate.clone());
            }
            let app = app.clone();
            async move {
                Ok::<_, std::convert::Infallible>(
                    app.call(request.map(axum::body::Body::new), peer).await,
                )
            }
        });
        let connection = builder.serve_connection(TokioIo::new(io), service);
        if let Err(error) = watcher.watch(connection.into_owned()).await {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}
