//! The tester's live call (SPEC 8), one stage at a time so that each can be reported: name
//! resolution through the egress policy, the TCP connection, the TLS handshake (the server's
//! chain and whether it verified, whether the server asked for a client certificate and which
//! issuers it accepts, whether ours was offered, the alert it sent), then the HTTP exchange.
//!
//! Nothing is cached: the TLS configuration is built for this one call (no session resumption),
//! and dropped with the key when the call ends. Upstream verification is the forward path's:
//! the same roots, the hostname, TLS 1.2 and newer; the recording verifier only watches the
//! standard one.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use crate::connect::{ConnectError, VettedConnector};
use crate::egress::EgressPolicy;
use crate::failure::{AnswerTooLarge, Failure, classify, tls_error};
use crate::forward::Timeouts;
use crate::identity::ClientIdentity;
use crate::url::Scheme;

/// The call to make.
#[derive(Debug)]
pub struct Call {
    pub url: hyper::Uri,
    pub method: Method,
    /// Sent as they are (the caller has applied the overrides).
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the probe needs from the gateway.
#[derive(Debug)]
pub struct Settings<'a> {
    pub policy: &'a EgressPolicy,
    pub roots: &'a RootCertStore,
    pub timeouts: Timeouts,
    /// Largest response body kept (the rest is not read).
    pub max_response_bytes: usize,
}

#[derive(Debug, Default)]
pub struct DnsStage {
    pub duration: Duration,
    pub addresses: Vec<SocketAddr>,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct ConnectStage {
    pub duration: Duration,
    pub address: Option<SocketAddr>,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct TlsStage {
    pub duration: Duration,
    pub completed: bool,
    pub version: Option<String>,
    pub cipher_suite: Option<String>,
    pub alpn: Option<String>,
    /// The server's chain as sent (DER, leaf first).
    pub server_chain: Vec<Vec<u8>>,
    /// `None` when the handshake ended before the server's certificate was checked.
    pub server_verified: Option<bool>,
    pub server_error: Option<String>,
    /// The server sent a CertificateRequest.
    pub client_certificate_requested: bool,
    /// The issuer names the server accepts (DER contents of each Name, without the outer
    /// SEQUENCE, as TLS carries them).
    pub acceptable_issuers: Vec<Vec<u8>>,
    /// The signature schemes the server accepts for the client's signature.
    pub server_signature_schemes: Vec<String>,
    /// Our certificate went out (the key can sign with a scheme the server accepts).
    pub client_certificate_offered: bool,
    /// The alert the server sent, during the handshake or right after it (TLS 1.3 servers
    /// judge the client certificate after the client's handshake is over).
    pub alert: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct HttpStage {
    pub duration: Duration,
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub error: Option<String>,
}

/// The target's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Everything the probe saw; `failure` is the SPEC 7.4 classification of what stopped it.
#[derive(Debug, Default)]
pub struct Probe {
    pub dns: DnsStage,
    pub connect: Option<ConnectStage>,
    pub tls: Option<TlsStage>,
    pub http: Option<HttpStage>,
    pub failure: Option<Failure>,
    pub answer: Option<Answer>,
}

/// The server's chain (DER, leaf first) and the standard verifier's verdict on it.
type Verdict = (Vec<Vec<u8>>, Result<(), String>);

/// Watches the standard verifier's verdict on the server's chain.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Verdict>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|certificate| certificate.as_ref().to_vec())
            .collect();
        let outcome = match &verdict {
            Ok(_) => Ok(()),
            Err(rustls::Error::InvalidCertificate(reason)) => Err(format!("{reason:?}")),
            Err(other) => Err(other.to_string()),
        };
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some((chain, outcome));
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What the server asked of the client.
#[derive(Debug, Default)]
struct Asked {
    requested: bool,
    issuers: Vec<Vec<u8>>,
    schemes: Vec<SignatureScheme>,
    offered: bool,
}

/// Offers the tested certificate, and notes what the server asked for.
#[derive(Debug)]
struct RecordingResolver {
    key: Arc<CertifiedKey>,
    asked: Mutex<Asked>,
}

impl ResolvesClientCert for RecordingResolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let offered = self.key.key.choose_scheme(sigschemes).is_some();
        *self.asked.lock().unwrap_or_else(PoisonError::into_inner) = Asked {
            requested: true,
            issuers: root_hint_subjects
                .iter()
                .map(|name| name.to_vec())
                .collect(),
            schemes: sigschemes.to_vec(),
            offered,
        };
        // rustls sends an empty Certificate when the key cannot sign with any offered scheme.
        Some(Arc::clone(&self.key))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn alert_of(error: &(dyn StdError + 'static)) -> Option<String> {
    match tls_error(error)? {
        rustls::Error::AlertReceived(alert) => Some(format!("{alert:?}")),
        _ => None,
    }
}

impl Probe {
    /// The stage that stopped the call, if one did: `dns`, `connect`, `tls` (also for an alert
    /// a TLS 1.3 server sends after the handshake) or `http`.
    pub fn failed_stage(&self) -> Option<&'static str> {
        if self.dns.error.is_some() {
            return Some("dns");
        }
        match (&self.connect, &self.tls, &self.http) {
            (Some(connect), _, _) if connect.address.is_none() => Some("connect"),
            (_, Some(tls), _) if !tls.completed || tls.alert.is_some() => Some("tls"),
            (_, _, Some(http)) if http.status.is_none() || http.error.is_some() => Some("http"),
            _ if self.failure.is_some() => Some("http"),
            _ => None,
        }
    }
}

/// Runs the call in stages; never panics, never caches.
pub async fn probe(settings: &Settings<'_>, identity: &ClientIdentity, call: Call) -> Probe {
    let mut probe = Probe::default();
    let scheme = if call.url.scheme_str() == Some("http") {
        Scheme::Http
    } else {
        Scheme::Https
    };
    let host = call
        .url
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    // The forward path's connector, with the gateway's policy and connect timeout: the two
    // stages are awaited one by one so that each is timed and reported.
    let connector = VettedConnector {
        policy: Arc::new(settings.policy.clone()),
        connect_timeout: settings.timeouts.connect,
    };

    // Name resolution, through the egress policy.
    let started = Instant::now();
    let vetted = connector.vet(&call.url).await;
    probe.dns.duration = started.elapsed();
    let addresses = match vetted {
        Ok(addresses) => addresses,
        Err(error) => {
            probe.dns.error = Some(error.to_string());
            probe.failure = Some(classify(&error));
            return probe;
        }
    };
    probe.dns.addresses.clone_from(&addresses);

    // TCP, to a vetted address.
    let started = Instant::now();
    let connected = connector.connect_vetted(&addresses).await;
    let mut connect = ConnectStage {
        duration: started.elapsed(),
        ..ConnectStage::default()
    };
    let stream = match connected {
        Ok((stream, address)) => {
            connect.address = Some(address);
            probe.connect = Some(connect);
            stream
        }
        Err(error) => {
            connect.error = Some(match &error {
                ConnectError::Timeout => "timed out".to_owned(),
                ConnectError::Io(io) => io.to_string(),
                other => other.to_string(),
            });
            probe.connect = Some(connect);
            probe.failure = Some(classify(&error));
            return probe;
        }
    };

    if scheme == Scheme::Http {
        http_stage(&mut probe, settings, TokioIo::new(stream), call).await;
        return probe;
    }

    // TLS, recorded.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = match provider.key_provider.load_private_key(PrivateKeyDer::Pkcs8(
        PrivatePkcs8KeyDer::from(identity.pkcs8_key.to_vec()),
    )) {
        Ok(key) => key,
        Err(error) => {
            probe.failure = Some(Failure {
                status: 424,
                code: "tls_handshake_failed",
                message: format!("the client key cannot be used: {error}"),
            });
            return probe;
        }
    };
    let chain: Vec<CertificateDer<'static>> = identity
        .chain
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    let resolver = Arc::new(RecordingResolver {
        key: Arc::new(CertifiedKey::new(chain, key)),
        asked: Mutex::default(),
    });
    let verifier = match WebPkiServerVerifier::builder_with_provider(
        Arc::new(settings.roots.clone()),
        Arc::clone(&provider),
    )
    .build()
    {
        Ok(inner) => Arc::new(RecordingVerifier {
            inner,
            seen: Mutex::default(),
        }),
        Err(error) => {
            probe.failure = Some(Failure {
                status: 424,
                code: "tls_handshake_failed",
                message: format!("no trust roots: {error}"),
            });
            return probe;
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| {
            builder
                .dangerous()
                .with_custom_certificate_verifier(
                    Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>
                )
                .with_client_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesClientCert>)
        });
    let mut config = match config {
        Ok(config) => config,
        Err(error) => {
            probe.failure = Some(Failure {
                status: 424,
                code: "tls_handshake_failed",
                message: error.to_string(),
            });
            return probe;
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    let server_name = match ServerName::try_from(host.clone()) {
        Ok(name) => name,
        Err(_) => {
            probe.failure = Some(Failure {
                status: 424,
                code: "tls_handshake_failed",
                message: "the target host is not a valid TLS server name".to_owned(),
            });
            return probe;
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let started = Instant::now();
    let handshake = tokio::time::timeout(
        settings.timeouts.response_headers,
        connector.connect(server_name, stream),
    )
    .await;
    let mut tls = TlsStage {
        duration: started.elapsed(),
        ..TlsStage::default()
    };
    let record = |tls: &mut TlsStage| {
        if let Some((chain, outcome)) = verifier
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            tls.server_chain = chain;
            tls.server_verified = Some(outcome.is_ok());
            tls.server_error = outcome.err();
        }
        let asked = std::mem::take(
            &mut *resolver
                .asked
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        tls.client_certificate_requested = asked.requested;
        tls.acceptable_issuers = asked.issuers;
        tls.server_signature_schemes = asked
            .schemes
            .iter()
            .map(|scheme| format!("{scheme:?}"))
            .collect();
        tls.client_certificate_offered = asked.offered;
    };
    let stream = match handshake {
        Err(_) => {
            record(&mut tls);
            tls.error = Some("the TLS handshake timed out".to_owned());
            probe.tls = Some(tls);
            probe.failure = Some(Failure {
                status: 424,
                code: "response_timeout",
                message: "the target did not complete the TLS handshake in time".to_owned(),
            });
            return probe;
        }
        Ok(Err(error)) => {
            record(&mut tls);
            tls.alert = alert_of(&error);
            tls.error = Some(error.to_string());
            probe.tls = Some(tls);
            probe.failure = Some(classify(&error));
            return probe;
        }
        Ok(Ok(stream)) => stream,
    };
    record(&mut tls);
    tls.completed = true;
    {
        let (_, connection) = stream.get_ref();
        tls.version = connection
            .protocol_version()
            .map(|version| format!("{version:?}"));
        tls.cipher_suite = connection
            .negotiated_cipher_suite()
            .map(|suite| format!("{:?}", suite.suite()));
        tls.alpn = connection
            .alpn_protocol()
            .map(|protocol| String::from_utf8_lossy(protocol).into_owned());
    }
    probe.tls = Some(tls);
    http_stage(&mut probe, settings, TokioIo::new(stream), call).await;
    probe
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// Aborts the HTTP/1.1 connection's task when the stage ends, whichever way it ends.
struct Driver(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The HTTP stage: the request, the answer's head, then its whole body (within
/// `max_response_bytes`), all within the response timeout. An answer whose body breaks (cut
/// short, over the limit, stalled) fails the stage, with the status the head gave.
async fn http_stage<I>(probe: &mut Probe, settings: &Settings<'_>, io: I, call: Call)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + settings.timeouts.response_headers;
    let mut stage = HttpStage::default();
    let head = tokio::time::timeout_at(deadline, async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        let driver = Driver(tokio::spawn(connection));
        let target = call
            .url
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_owned();
        let mut request = hyper::Request::builder()
            .method(call.method)
            .uri(target)
            .body(Full::new(call.body))
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        *request.headers_mut() = call.headers;
        if let Some(authority) = call.url.authority()
            && let Ok(value) = hyper::header::HeaderValue::from_str(authority.as_str())
        {
            request.headers_mut().insert(hyper::header::HOST, value);
        }
        let response = sender.send_request(request).await?;
        Ok::<_, BoxError>((response, driver))
    })
    .await;
    let (response, driver) = match head {
        Err(elapsed) => {
            stage.error = Some("the target did not answer in time".to_owned());
            probe.failure = Some(classify(&elapsed));
            stage.duration = started.elapsed();
            probe.http = Some(stage);
            return;
        }
        Ok(Err(error)) => {
            let error: &(dyn StdError + 'static) = &*error;
            stage.error = Some(error.to_string());
            // A TLS 1.3 server refuses the client certificate after the handshake: the alert
            // arrives here and belongs to the TLS stage.
            if let Some(alert) = alert_of(error)
                && let Some(tls) = probe.tls.as_mut()
            {
                tls.alert = Some(alert);
                tls.error = Some(error.to_string());
            }
            probe.failure = Some(classify(error));
            stage.duration = started.elapsed();
            probe.http = Some(stage);
            return;
        }
        Ok(Ok(answered)) => answered,
    };
    let (parts, body) = response.into_parts();
    stage.status = Some(parts.status.as_u16());
    stage.headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                value.to_str().unwrap_or("<not text>").to_owned(),
            )
        })
        .collect();
    let limit = settings.max_response_bytes;
    let body = tokio::time::timeout_at(deadline, async {
        Limited::new(body, limit)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|error| -> BoxError {
                if error.is::<LengthLimitError>() {
                    Box::new(AnswerTooLarge { limit })
                } else {
                    error
                }
            })
    })
    .await;
    drop(driver);
    match body {
        Err(elapsed) => {
            stage.error = Some("the answer's body did not complete in time".to_owned());
            let mut failure = classify(&elapsed);
            failure.message = "the target did not complete its answer in time".to_owned();
            probe.failure = Some(failure);
        }
        Ok(Err(error)) => {
            let error: &(dyn StdError + 'static) = &*error;
            stage.error = Some(error.to_string());
            probe.failure = Some(classify(error));
        }
        Ok(Ok(body)) => {
            probe.answer = Some(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            });
        }
    }
    stage.duration = started.elapsed();
    probe.http = Some(stage);
}
