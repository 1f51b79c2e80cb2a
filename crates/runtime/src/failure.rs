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

use crate::connect::ConnectError;
use crate::egress::EgressError;
use crate::h1::Malformed;
use crate::pool::ConnectFailed;

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
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    use rustls::CertificateError;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn io(kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, "test")
    }

    /// What tokio-rustls makes of a rustls error.
    fn tls_io(tls: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, tls)
    }

    fn denied(literal: bool) -> EgressError {
        EgressError::Denied {
            host: Box::from(if literal {
                "10.0.0.1"
            } else {
                "private.example"
            }),
            literal,
            address: IpAddr::from([10, 0, 0, 1]),
            range: "private (RFC 1918)",
        }
    }

    /// A hyper HTTP/1.1 client's error for what a scripted server `answer`s, then closes.
    async fn hyper_error(answer: &'static [u8]) -> BoxError {
        let (client, mut server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = server.read(&mut request).await;
            let _ = server.write_all(answer).await;
        });
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(client))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = hyper::Request::get("/").body(Empty::new()).unwrap();
        match sender.send_request(request).await {
            Err(error) => Box::new(error),
            Ok(response) => response.into_body().collect().await.unwrap_err().into(),
        }
    }

    async fn elapsed() -> tokio::time::error::Elapsed {
        tokio::time::timeout(Duration::ZERO, std::future::pending::<()>())
            .await
            .unwrap_err()
    }

    /// Every failure kind, each way it reaches `classify`: (what, error, status, code, message
    /// or a part of it).
    async fn table() -> Vec<(&'static str, BoxError, u16, &'static str, String)> {
        use io::ErrorKind as Kind;
        let resolution = || ConnectError::Egress(EgressError::Resolution("not found".to_owned()));
        let unknown_issuer = || rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let unknown_ca = || rustls::Error::AlertReceived(AlertDescription::UnknownCA);
        let rejected = "the target rejected the client certificate (alert UnknownCA)".to_owned();
        let untrusted = "the target's certificate does not verify: UnknownIssuer".to_owned();
        let reset = "the target closed the connection".to_owned();
        vec![
            // dns_failed
            (
                "resolution",
                Box::new(resolution()),
                424,
                "dns_failed",
                "the target host name does not resolve".to_owned(),
            ),
            (
                "resolution, connect stage",
                Box::new(ConnectFailed(Box::new(resolution()))),
                424,
                "dns_failed",
                "the target host name does not resolve".to_owned(),
            ),
            // egress_denied
            (
                "a name to a forbidden address",
                Box::new(ConnectError::Egress(denied(false))),
                403,
                "egress_denied",
                "the target host private.example resolves to an address the egress policy forbids"
                    .to_owned(),
            ),
            (
                "a forbidden literal",
                Box::new(ConnectFailed(Box::new(ConnectError::Egress(denied(true))))),
                403,
                "egress_denied",
                "the target 10.0.0.1 is in a range the egress policy forbids (private (RFC 1918))"
                    .to_owned(),
            ),
            (
                "plain http",
                Box::new(ConnectError::Egress(EgressError::PlainHttp)),
                403,
                "egress_denied",
                "plain http targets are not allowed (egress.allow_http)".to_owned(),
            ),
            // connect_timeout
            (
                "connect timer",
                Box::new(ConnectFailed(Box::new(ConnectError::Timeout))),
                424,
                "connect_timeout",
                "connecting to the target timed out".to_owned(),
            ),
            (
                "ETIMEDOUT",
                Box::new(ConnectError::Io(io(Kind::TimedOut))),
                424,
                "connect_timeout",
                "connecting to the target timed out".to_owned(),
            ),
            // connect_failed
            (
                "refused",
                Box::new(ConnectFailed(Box::new(ConnectError::Io(io(
                    Kind::ConnectionRefused,
                ))))),
                424,
                "connect_failed",
                "the target refused the connection".to_owned(),
            ),
            (
                "unreachable",
                Box::new(ConnectError::Io(io(Kind::HostUnreachable))),
                424,
                "connect_failed",
                "the connection to the target failed".to_owned(),
            ),
            (
                "connect stage, no known cause",
                Box::new(ConnectFailed(Box::new(io::Error::other("handshake")))),
                424,
                "connect_failed",
                "the connection to the target failed".to_owned(),
            ),
            // server_certificate_invalid
            (
                "rustls, bare",
                Box::new(unknown_issuer()),
                424,
                "server_certificate_invalid",
                untrusted.clone(),
            ),
            (
                "rustls in tokio-rustls' I/O error",
                Box::new(tls_io(unknown_issuer())),
                424,
                "server_certificate_invalid",
                untrusted.clone(),
            ),
            (
                "rustls in nested I/O errors, connect stage",
                Box::new(ConnectFailed(Box::new(io::Error::other(tls_io(
                    unknown_issuer(),
                ))))),
                424,
                "server_certificate_invalid",
                untrusted,
            ),
            // client_certificate_rejected
            (
                "alert, in the handshake",
                Box::new(ConnectFailed(Box::new(tls_io(unknown_ca())))),
                424,
                "client_certificate_rejected",
                rejected.clone(),
            ),
            (
                "alert, after the handshake (HTTP/1.1)",
                Box::new(tls_io(unknown_ca())),
                424,
                "client_certificate_rejected",
                rejected.clone(),
            ),
            (
                "alert, after the handshake (HTTP/2, watched)",
                {
                    let watch = TlsWatch::default();
                    watch.saw::<()>(&Poll::Ready(Err(tls_io(unknown_ca()))));
                    // What hyper hands on from h2: the I/O error as text.
                    watch.explain(Box::new(io::Error::new(
                        Kind::InvalidData,
                        unknown_ca().to_string(),
                    )))
                },
                424,
                "client_certificate_rejected",
                rejected,
            ),
            // tls_handshake_failed
            (
                "another alert",
                Box::new(tls_io(rustls::Error::AlertReceived(
                    AlertDescription::HandshakeFailure,
                ))),
                424,
                "tls_handshake_failed",
                "the TLS handshake failed (alert HandshakeFailure)".to_owned(),
            ),
            (
                "no common version",
                Box::new(tls_io(rustls::Error::PeerIncompatible(
                    rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13,
                ))),
                424,
                "tls_handshake_failed",
                format!(
                    "the TLS handshake failed: {}",
                    rustls::Error::PeerIncompatible(
                        rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13
                    )
                ),
            ),
            (
                "a TLS error known only as text (HTTP/2, not watched)",
                Box::new(io::Error::new(Kind::InvalidData, unknown_ca().to_string())),
                424,
                "tls_handshake_failed",
                "the TLS connection failed".to_owned(),
            ),
            // response_timeout
            (
                "the response timer",
                Box::new(elapsed().await),
                424,
                "response_timeout",
                "the target did not answer in time".to_owned(),
            ),
            // response_too_large
            (
                "an answer over the limit",
                Box::new(AnswerTooLarge { limit: 16 }),
                424,
                "response_too_large",
                "the target's answer body is larger than 16 bytes".to_owned(),
            ),
            // connection_reset
            (
                "ECONNRESET",
                Box::new(io(Kind::ConnectionReset)),
                424,
                "connection_reset",
                reset.clone(),
            ),
            (
                "EPIPE",
                Box::new(io(Kind::BrokenPipe)),
                424,
                "connection_reset",
                reset.clone(),
            ),
            (
                "ECONNABORTED",
                Box::new(io(Kind::ConnectionAborted)),
                424,
                "connection_reset",
                reset.clone(),
            ),
            (
                "closed without close_notify",
                Box::new(io::Error::other(io(Kind::UnexpectedEof))),
                424,
                "connection_reset",
                reset,
            ),
            (
                "malformed answer",
                Box::new(Malformed("a chunk size")),
                424,
                "connection_reset",
                "the target's answer is not valid HTTP/1.1: a chunk size".to_owned(),
            ),
            (
                "hyper: body cut short",
                hyper_error(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").await,
                424,
                "connection_reset",
                "the target closed the connection".to_owned(),
            ),
            (
                "hyper: head cut short",
                hyper_error(b"HTTP/1.1 200 OK\r\ncontent-le").await,
                424,
                "connection_reset",
                "the target closed the connection before its answer was complete".to_owned(),
            ),
            (
                "hyper: not HTTP",
                hyper_error(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await,
                424,
                "connection_reset",
                "the target's answer is not valid HTTP".to_owned(),
            ),
            (
                "no known cause",
                Box::new(io::Error::other("something")),
                424,
                "connection_reset",
                "the target closed the connection before answering".to_owned(),
            ),
        ]
    }

    #[tokio::test]
    async fn every_failure_kind_has_its_code_and_message() {
        let mut codes = std::collections::BTreeSet::new();
        for (what, error, status, code, message) in table().await {
            let failure = classify(error.as_ref());
            assert_eq!(
                (failure.status, failure.code, failure.message.as_str()),
                (status, code, message.as_str()),
                "{what}: {error:?}"
            );
            codes.insert(code);
        }
        // Every SPEC 7.4 code (and the egress policy's 403, and the tester's body limit).
        let every = [
            "dns_failed",
            "connect_failed",
            "connect_timeout",
            "tls_handshake_failed",
            "client_certificate_rejected",
            "server_certificate_invalid",
            "response_timeout",
            "connection_reset",
            "egress_denied",
            "response_too_large",
        ];
        assert_eq!(codes, every.into_iter().collect());
    }

    #[test]
    fn every_alert_is_a_rejected_certificate_or_a_failed_handshake() {
        for value in 0..=u8::MAX {
            let alert = AlertDescription::from(value);
            let failure = classify(&tls_io(rustls::Error::AlertReceived(alert)));
            let expected = if CLIENT_CERTIFICATE_ALERTS.contains(&alert) {
                "client_certificate_rejected"
            } else {
                "tls_handshake_failed"
            };
            assert_eq!(failure.code, expected, "{alert:?}");
            assert!(
                failure.message.contains(&format!("{alert:?}")),
                "{failure:?}"
            );
        }
    }

    #[test]
    fn every_certificate_error_is_an_invalid_server_certificate() {
        let now = rustls_pki_types::UnixTime::now();
        #[allow(deprecated)]
        let reasons = [
            CertificateError::BadEncoding,
            CertificateError::Expired,
            CertificateError::ExpiredContext {
                time: now,
                not_after: now,
            },
            CertificateError::NotValidYet,
            CertificateError::Revoked,
            CertificateError::UnhandledCriticalExtension,
            CertificateError::UnknownIssuer,
            CertificateError::UnknownRevocationStatus,
            CertificateError::ExpiredRevocationList,
            CertificateError::BadSignature,
            CertificateError::UnsupportedSignatureAlgorithm,
            CertificateError::NotValidForName,
            CertificateError::InvalidPurpose,
            CertificateError::InvalidOcspResponse,
            CertificateError::ApplicationVerificationFailure,
        ];
        for reason in reasons {
            let name = format!("{reason:?}");
            let failure = classify(&tls_io(rustls::Error::InvalidCertificate(reason)));
            assert_eq!(failure.code, "server_certificate_invalid", "{name}");
            assert!(failure.message.contains(&name), "{failure:?}");
        }
    }

    /// A socket that fails every operation with a TLS alert, as tokio-rustls reports it.
    struct Alerting;

    impl AsyncRead for Alerting {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Err(tls_io(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired,
            ))))
        }
    }

    #[tokio::test]
    async fn a_watched_socket_keeps_the_first_tls_error_it_passes() {
        let watch = TlsWatch::default();
        let untouched = watch.explain(Box::new(io(io::ErrorKind::ConnectionReset)));
        assert_eq!(classify(untouched.as_ref()).code, "connection_reset");
        let mut socket = Watched::new(Alerting, watch.clone());
        let mut buf = [0u8; 8];
        assert!(socket.read(&mut buf).await.is_err());
        // Whatever the request then gets (h2: the alert as text, or a reset), the alert decides.
        let explained = watch.explain(Box::new(io(io::ErrorKind::ConnectionReset)));
        let failure = classify(explained.as_ref());
        assert_eq!(failure.code, "client_certificate_rejected");
        assert!(
            failure.message.contains("CertificateRequired"),
            "{failure:?}"
        );
        assert!(matches!(
            tls_error(explained.as_ref()),
            Some(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
            ))
        ));
    }
}
