//! Why an upstream call failed, in one place and by type: the stable codes of SPEC 7.4 (and
//! 403 `egress_denied`) from the gateway's own errors ([`ConnectError`], [`ConnectFailed`],
//! [`Malformed`], [`AnswerTooLarge`], tokio's elapsed timer), rustls' ([`rustls::Error`], its
//! [`AlertDescription`] and `CertificateError`), hyper's and the operating system's
//! ([`io::ErrorKind`]). No rustls message text is read.
//!
//! HTTP/2 keeps only the text of an I/O error (h2 clones it to every stream as a string), so a
//! TLS alert that a TLS 1.3 server sends after the handshake would reach the caller as text.
//! The HTTP/2 connection's socket is therefore [`Watched`]: the first TLS error it passes is
//! kept, typed, in a [`TlsWatch`], and [`TlsWatch::explain`] puts it in front of the error the
//! request gets.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::AlertDescription;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::connect::{ConnectError, ConnectFailed};
use crate::egress::EgressError;
use crate::h1::Malformed;

type BoxError = Box<dyn StdError + Send + Sync>;

/// A classified failure of the forward path or the live tester.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// 403 for the egress policy, 424 for the transport.
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    fn transport(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: 424,
            code,
            message: message.into(),
        }
    }
}

/// The target's answer body is larger than the reader keeps (the live tester reads the whole
/// body, within `forward.max_body_bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerTooLarge {
    pub limit: usize,
}

impl fmt::Display for AnswerTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the target's answer body is larger than {} bytes",
            self.limit
        )
    }
}

impl StdError for AnswerTooLarge {}

/// The alerts by which a server says it refuses the client's certificate (RFC 8446 6.2).
const CLIENT_CERTIFICATE_ALERTS: [AlertDescription; 8] = [
    AlertDescription::CertificateRequired,
    AlertDescription::BadCertificate,
    AlertDescription::UnknownCA,
    AlertDescription::CertificateUnknown,
    AlertDescription::CertificateExpired,
    AlertDescription::CertificateRevoked,
    AlertDescription::UnsupportedCertificate,
    AlertDescription::AccessDenied,
];

/// Classifies an error of the upstream call (SPEC 7.4): the first cause of a known type along
/// the chain decides; an error of no known type is a reset, or a connect failure when it came
/// from the connection stage.
pub fn classify(error: &(dyn StdError + 'static)) -> Failure {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    let mut connect_stage = false;
    while let Some(error) = current {
        connect_stage |= error.is::<ConnectFailed>();
        if let Some(failure) = typed(error) {
            return failure;
        }
        current = error.source();
    }
    if connect_stage {
        Failure::transport("connect_failed", "the connection to the target failed")
    } else {
        Failure::transport(
            "connection_reset",
            "the target closed the connection before answering",
        )
    }
}

/// The failure `error` itself says, if its type says one.
fn typed(error: &(dyn StdError + 'static)) -> Option<Failure> {
    if let Some(connect) = error.downcast_ref::<ConnectError>() {
        return Some(connect_failure(connect));
    }
    if let Some(tls) = error.downcast_ref::<TlsFailed>() {
        return Some(tls_failure(&tls.tls));
    }
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls_failure(tls));
    }
    if let Some(malformed) = error.downcast_ref::<Malformed>() {
        return Some(Failure::transport(
            "connection_reset",
            malformed.to_string(),
        ));
    }
    if let Some(large) = error.downcast_ref::<AnswerTooLarge>() {
        return Some(Failure::transport("response_too_large", large.to_string()));
    }
    if error.is::<tokio::time::error::Elapsed>() {
        return Some(Failure::transport(
            "response_timeout",
            "the target did not answer in time",
        ));
    }
    if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
        if hyper.is_incomplete_message() {
            return Some(Failure::transport(
                "connection_reset",
                "the target closed the connection before its answer was complete",
            ));
        }
        if hyper.is_parse() || hyper.is_parse_status() {
            return Some(Failure::transport(
                "connection_reset",
                "the target's answer is not valid HTTP",
            ));
        }
    }
    if let Some(io) = error.downcast_ref::<io::Error>() {
        if let Some(tls) = rustls_inside(io) {
            return Some(tls_failure(tls));
        }
        let innermost = innermost_io(io);
        // `Other` says nothing: the error's source may.
        if innermost.kind() != io::ErrorKind::Other {
            return Some(io_failure(innermost));
        }
    }
    None
}

fn connect_failure(error: &ConnectError) -> Failure {
    match error {
        ConnectError::Egress(EgressError::Resolution(_)) => {
            Failure::transport("dns_failed", "the target host name does not resolve")
        }
        ConnectError::Egress(denied) => Failure {
            status: 403,
            code: "egress_denied",
            message: denied.to_string(),
        },
        ConnectError::Timeout => {
            Failure::transport("connect_timeout", "connecting to the target timed out")
        }
        ConnectError::Io(io) => io_failure(io),
    }
}

/// The first TLS error anywhere in `error`'s chain, through nested I/O errors too.
pub(crate) fn tls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<TlsFailed>() {
            return Some(&tls.tls);
        }
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = error.downcast_ref::<io::Error>().and_then(rustls_inside) {
            return Some(tls);
        }
        current = error.source();
    }
    None
}

/// The TLS error wrapped in (possibly nested) I/O errors: `io::Error::source` skips the
/// wrapped error itself, so the chain has to be walked through `get_ref`.
fn rustls_inside(io: &io::Error) -> Option<&rustls::Error> {
    let mut inner: Option<&(dyn StdError + Send + Sync + 'static)> = io.get_ref();
    for _ in 0..8 {
        let error = inner?;
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        inner = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref);
    }
    None
}

/// The deepest I/O error inside nested I/O errors (see [`rustls_inside`]).
fn innermost_io(io: &io::Error) -> &io::Error {
    let mut current = io;
    for _ in 0..8 {
        match current
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<io::Error>())
        {
            Some(inner) => current = inner,
            None => break,
        }
    }
    current
}

fn io_failure(io: &io::Error) -> Failure {
    use io::ErrorKind;
    let (code, message) = match io.kind() {
        ErrorKind::ConnectionRefused => ("connect_failed", "the target refused the connection"),
        ErrorKind::TimedOut => ("connect_timeout", "connecting to the target timed out"),
        ErrorKind::ConnectionReset
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionAborted => ("connection_reset", "the target closed the connection"),
        // tokio-rustls reports every TLS failure as `InvalidData`; one whose rustls error did
        // not come along (an HTTP/2 connection made without a `TlsWatch`) is still TLS's.
        ErrorKind::InvalidData => ("tls_handshake_failed", "the TLS connection failed"),
        _ => ("connect_failed", "the connection to the target failed"),
    };
    Failure::transport(code, message)
}

fn tls_failure(error: &rustls::Error) -> Failure {
    match error {
        rustls::Error::InvalidCertificate(reason) => Failure::transport(
            "server_certificate_invalid",
            format!("the target's certificate does not verify: {reason:?}"),
        ),
        rustls::Error::AlertReceived(alert) if CLIENT_CERTIFICATE_ALERTS.contains(alert) => {
            Failure::transport(
                "client_certificate_rejected",
                format!("the target rejected the client certificate (alert {alert:?})"),
            )
        }
        rustls::Error::AlertReceived(alert) => Failure::transport(
            "tls_handshake_failed",
            format!("the TLS handshake failed (alert {alert:?})"),
        ),
        other => Failure::transport(
            "tls_handshake_failed",
            format!("the TLS handshake failed: {other}"),
        ),
    }
}

/// A TLS error an HTTP/2 connection saw, in front of the error its request got.
#[derive(Debug)]
pub struct TlsFailed {
    tls: rustls::Error,
    source: BoxError,
}

impl fmt::Display for TlsFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.tls)
    }
}

impl StdError for TlsFailed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.source.as_ref())
    }
}

/// The first TLS error a [`Watched`] socket passed (cheap to clone: shared).
#[derive(Clone, Debug, Default)]
pub struct TlsWatch(Arc<OnceLock<rustls::Error>>);

impl TlsWatch {
    fn saw<T>(&self, polled: &Poll<io::Result<T>>) {
        if let Poll::Ready(Err(error)) = polled
            && let Some(tls) = rustls_inside(error)
        {
            let _ = self.0.set(tls.clone());
        }
    }

    /// `error`, with the TLS error the connection saw in front of it, if it saw one.
    pub fn explain(&self, error: BoxError) -> BoxError {
        match self.0.get() {
            Some(tls) => Box::new(TlsFailed {
                tls: tls.clone(),
                source: error,
            }),
            None => error,
        }
    }
}

/// A socket whose TLS errors are kept in a [`TlsWatch`] on their way up.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    watch: TlsWatch,
}

impl<S> Watched<S> {
    pub fn new(inner: S, watch: TlsWatch) -> Self {
        Self { inner, watch }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.watch.saw(&polled);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch.saw(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch.saw(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch.saw(&polled);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch.saw(&polled);
        polled
    }
}

#[cfg(test)]
mod tests;
