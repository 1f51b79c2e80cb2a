//! The table of every failure kind and the ways to reach it, and the HTTP/2 TLS watch.

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
