//! Upstream HTTP clients, one per (client identity, trust settings): a connection or TLS
//! session made with one tenant's certificate is never used for another tenant's request or for
//! an unmapped one, because each identity has its own client and so its own pool. Rotation
//! makes a new identity key (the certificate version is part of it); the old client is dropped
//! from the cache, and its idle connections close once the requests in flight let go of it.
//!
//! Failures are classified here, once, into the stable codes of SPEC 7.4.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;

use crate::connect::{ConnectError, VettedConnector};
use crate::egress::{EgressError, EgressPolicy};
use crate::identity::{ClientIdentity, client_config};

/// The request body type the forward path sends.
pub type ForwardBody =
    http_body_util::combinators::UnsyncBoxBody<hyper::body::Bytes, Box<dyn StdError + Send + Sync>>;

/// One identity's client.
pub type UpstreamClient = Client<HttpsConnector<VettedConnector>, ForwardBody>;

/// Which client: the certificate (id and version) or none, and the extra trust bundle.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub certificate: Option<(i64, i64)>,
    pub upstream_ca: Option<String>,
}

/// Timeouts of the forward path.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub response_headers: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response_headers: Duration::from_secs(30),
            idle: Duration::from_secs(90),
        }
    }
}

/// The clients and what they are built from.
pub struct Forwarder {
    policy: Arc<EgressPolicy>,
    roots: RootCertStore,
    pub timeouts: Timeouts,
    clients: Mutex<HashMap<ClientKey, UpstreamClient>>,
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
            policy: Arc::new(policy),
            roots,
            timeouts,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The cached client for `key`, if warm.
    pub fn cached(&self, key: &ClientKey) -> Option<UpstreamClient> {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Builds (and caches) the client for `key` with `identity`. Older versions of the same
    /// certificate are dropped from the cache.
    pub fn build(
        &self,
        key: ClientKey,
        identity: Option<&ClientIdentity>,
    ) -> Result<UpstreamClient, String> {
        let config = client_config(&self.roots, key.upstream_ca.as_deref(), identity)?;
        let connector = VettedConnector {
            policy: Arc::clone(&self.policy),
            connect_timeout: self.timeouts.connect,
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*config).clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let client: UpstreamClient = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.timeouts.idle)
            .build(https);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        // Concurrent first requests of one identity build in parallel; the first one in wins,
        // so that every request shares one client (one pool) and none is dropped under another.
        if let Some(existing) = clients.get(&key) {
            return Ok(existing.clone());
        }
        if let Some((id, version)) = key.certificate {
            clients.retain(|other, _| {
                other.certificate.is_none_or(|(other_id, other_version)| {
                    other_id != id || other_version >= version
                })
            });
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// A classified failure of the forward path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// 403 for the egress policy, 424 for the transport.
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

/// Classifies an error of the upstream call (SPEC 7.4).
pub fn classify(error: &(dyn StdError + 'static)) -> Failure {
    let transport = |code: &'static str, message: &str| Failure {
        status: 424,
        code,
        message: message.to_owned(),
    };
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    let mut connect_stage = false;
    while let Some(error) = current {
        if let Some(client_error) = error.downcast_ref::<hyper_util::client::legacy::Error>() {
            connect_stage |= client_error.is_connect();
        }
        if let Some(connect) = error.downcast_ref::<ConnectError>() {
            return match connect {
                ConnectError::Egress(EgressError::Resolution(_)) => {
                    transport("dns_failed", "the target host name does not resolve")
                }
                ConnectError::Egress(denied) => Failure {
                    status: 403,
                    code: "egress_denied",
                    message: denied.to_string(),
                },
                ConnectError::Timeout => {
                    transport("connect_timeout", "connecting to the target timed out")
                }
                ConnectError::Io(io) => io_failure(io),
            };
        }
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return tls_failure(tls);
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if let Some(tls) = rustls_inside(io) {
                return tls_failure(tls);
            }
            let innermost = innermost_io(io);
            if innermost.kind() != std::io::ErrorKind::Other {
                return io_failure(innermost);
            }
        }
        current = error.source();
    }
    if connect_stage {
        transport("connect_failed", "the connection to the target failed")
    } else {
        transport(
            "connection_reset",
            "the target closed the connection before answering",
        )
    }
}

/// The TLS error wrapped in (possibly nested) I/O errors: `io::Error::source` skips the
/// wrapped error itself, so the chain has to be walked through `get_ref`.
fn rustls_inside(io: &std::io::Error) -> Option<&rustls::Error> {
    let mut inner: Option<&(dyn StdError + Send + Sync + 'static)> = io.get_ref();
    for _ in 0..8 {
        let error = inner?;
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
    }
    None
}

/// The deepest I/O error inside nested I/O errors (see [`rustls_inside`]).
fn innermost_io(io: &std::io::Error) -> &std::io::Error {
    let mut current = io;
    for _ in 0..8 {
        match current
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<std::io::Error>())
        {
            Some(inner) => current = inner,
            None => break,
        }
    }
    current
}

fn io_failure(io: &std::io::Error) -> Failure {
    use std::io::ErrorKind;
    // HTTP/2 turns the TLS error into text on its way up: read the alert back from it.
    if io.kind() == ErrorKind::InvalidData {
        return tls_text_failure(&io.to_string());
    }
    let (code, message) = match io.kind() {
        ErrorKind::ConnectionRefused => ("connect_failed", "the target refused the connection"),
        ErrorKind::TimedOut => ("connect_timeout", "connecting to the target timed out"),
        ErrorKind::ConnectionReset
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionAborted => ("connection_reset", "the target closed the connection"),
        _ => ("connect_failed", "the connection to the target failed"),
    };
    Failure {
        status: 424,
        code,
        message: message.to_owned(),
    }
}

/// A TLS failure known only by rustls's message text.
fn tls_text_failure(text: &str) -> Failure {
    let certificate_alerts = [
        "CertificateRequired",
        "BadCertificate",
        "UnknownCA",
        "CertificateUnknown",
        "CertificateExpired",
        "CertificateRevoked",
        "UnsupportedCertificate",
        "AccessDenied",
    ];
    let (code, message) = if let Some(alert) = text.strip_prefix("received fatal alert: ") {
        if certificate_alerts.contains(&alert) {
            (
                "client_certificate_rejected",
                format!("the target rejected the client certificate (alert {alert})"),
            )
        } else {
            (
                "tls_handshake_failed",
                format!("the TLS handshake failed (alert {alert})"),
            )
        }
    } else if text.starts_with("invalid peer certificate") {
        (
            "server_certificate_invalid",
            format!("the target's certificate does not verify: {text}"),
        )
    } else {
        (
            "tls_handshake_failed",
            format!("the TLS handshake failed: {text}"),
        )
    };
    Failure {
        status: 424,
        code,
        message,
    }
}

fn tls_failure(error: &rustls::Error) -> Failure {
    use rustls::AlertDescription as Alert;
    let (code, message) = match error {
        rustls::Error::InvalidCertificate(reason) => (
            "server_certificate_invalid",
            format!("the target's certificate does not verify: {reason:?}"),
        ),
        rustls::Error::AlertReceived(
            alert @ (Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::UnsupportedCertificate
            | Alert::AccessDenied),
        ) => (
            "client_certificate_rejected",
            format!("the target rejected the client certificate (alert {alert:?})"),
        ),
        rustls::Error::AlertReceived(alert) => (
            "tls_handshake_failed",
            format!("the TLS handshake failed (alert {alert:?})"),
        ),
        other => (
            "tls_handshake_failed",
            format!("the TLS handshake failed: {other}"),
        ),
    };
    Failure {
        status: 424,
        code,
        message,
    }
}
