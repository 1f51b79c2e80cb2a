//! A real TLS server for the forward tests: certificates made by OpenSSL, client certificates
//! required (or not), and an echo of what it received, the client certificate's fingerprint
//! included.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mtls_test_support::{openssl, temp_dir};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use sha2::{Digest, Sha256};

pub(crate) struct Upstream {
    pub port: u16,
    /// The CA that signed the server's certificate (to trust it on the gateway).
    pub ca_pem: PathBuf,
}

/// A server CA and a certificate for localhost / 127.0.0.1, made by OpenSSL.
pub(crate) fn server_pki() -> Option<PathBuf> {
    let dir = temp_dir("upstream-pki");
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Upstream Test CA",
            "-addext",
            "basicConstraints=critical,CA:true",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    )?;
    server_certificate(&dir, &dir, "/CN=localhost")?;
    Some(dir)
}

/// A P-256 server certificate for localhost / 127.0.0.1 with `subject`, signed by the CA in
/// `ca_dir` (made by [`server_pki`]): `server.key` and `server.pem` in `dir`.
pub(crate) fn server_certificate(ca_dir: &Path, dir: &Path, subject: &str) -> Option<()> {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            subject,
        ],
    )?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    let ca = ca_dir.join("ca.pem");
    let ca_key = ca_dir.join("ca.key");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            ca.to_str()?,
            "-CAkey",
            ca_key.to_str()?,
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "30",
            "-extfile",
            "server.ext",
        ],
    )
    .map(drop)
}

/// Starts the server; `client_roots` (PEM) makes it require client certificates from that CA.
pub(crate) async fn start(pki: &Path, client_roots: Option<&Path>) -> Upstream {
    start_with(pki, client_roots, true, true).await
}

/// The server with options: `required` client certificates (else optional), `h2` offered.
pub(crate) async fn start_with(
    pki: &Path,
    client_roots: Option<&Path>,
    required: bool,
    h2: bool,
) -> Upstream {
    start_versions(pki, client_roots, required, h2, rustls::ALL_VERSIONS).await
}

/// A TLS 1.2-only server requiring client certificates from `client_roots`: it refuses a
/// client's certificate inside the handshake, so the client always sees the alert (TLS 1.3
/// servers judge it after the client's handshake is over, racing the request).
pub(crate) async fn start_tls12(pki: &Path, client_roots: &Path) -> Upstream {
    start_versions(
        pki,
        Some(client_roots),
        true,
        true,
        &[&rustls::version::TLS12],
    )
    .await
}

/// A server requiring client certificates from `client_roots` that accepts only RSA
/// signatures from the client: a P-256 or Ed25519 client key cannot answer its request.
pub(crate) async fn start_rsa_signatures_only(pki: &Path, client_roots: &Path) -> Upstream {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let rsa = |scheme: &rustls::SignatureScheme| {
        matches!(
            scheme,
            rustls::SignatureScheme::RSA_PSS_SHA256
                | rustls::SignatureScheme::RSA_PSS_SHA384
                | rustls::SignatureScheme::RSA_PSS_SHA512
                | rustls::SignatureScheme::RSA_PKCS1_SHA256
                | rustls::SignatureScheme::RSA_PKCS1_SHA384
                | rustls::SignatureScheme::RSA_PKCS1_SHA512
        )
    };
    let mapping: Vec<_> = provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .filter(|(scheme, _)| rsa(scheme))
        .copied()
        .collect();
    let algorithms = rustls::crypto::WebPkiSupportedAlgorithms {
        all: provider.signature_verification_algorithms.all,
        mapping: Box::leak(mapping.into_boxed_slice()),
    };
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        signature_verification_algorithms: algorithms,
        ..provider
    });
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(client_roots).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(pki.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    serve(pki, config).await
}

async fn start_versions(
    pki: &Path,
    client_roots: Option<&Path>,
    required: bool,
    h2: bool,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Upstream {
    serve(pki, config(pki, client_roots, required, h2, versions)).await
}

fn config(
    pki: &Path,
    client_roots: Option<&Path>,
    required: bool,
    h2: bool,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ServerConfig {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(pki.join("server.key")).unwrap();
    let builder = rustls::ServerConfig::builder_with_protocol_versions(versions);
    let mut config = match client_roots {
        Some(roots_pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(roots_pem).unwrap() {
                roots.add(certificate.unwrap()).unwrap();
            }
            let verifier_builder = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots));
            let verifier = if required {
                verifier_builder.build()
            } else {
                verifier_builder.allow_unauthenticated().build()
            }
            .unwrap();
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .unwrap()
        }
        None => builder
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    };
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    config
}

async fn serve(pki: &Path, config: rustls::ServerConfig) -> Upstream {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let (fingerprint, alpn) = seen_by_server(tls.get_ref().1);
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let fingerprint = fingerprint.clone();
                    let alpn = alpn.clone();
                    async move {
                        Ok::<_, Infallible>(echo(request, fingerprint, alpn, peer.port()).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Upstream {
        port,
        ca_pem: pki.join("ca.pem"),
    }
}

async fn echo(
    request: Request<Incoming>,
    fingerprint: Option<String>,
    alpn: Option<String>,
    peer_port: u16,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    if parts.uri.path().starts_with("/slow") {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or("?"))))
        .collect();
    let path = parts
        .uri
        .path_and_query()
        .map(ToString::to_string)
        .unwrap_or_default();
    let answer = json!({
        "fingerprint": fingerprint,
        "alpn": alpn,
        "peerPort": peer_port,
        "version": format!("{:?}", parts.version),
        "method": parts.method.as_str(),
        "path": path,
        "host": parts.headers.get("host").and_then(|value| value.to_str().ok()).or(parts.uri.authority().map(|a| a.as_str())),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    if path.starts_with("/status/201") {
        *response.status_mut() = hyper::StatusCode::CREATED;
        response
            .headers_mut()
            .insert("x-upstream", "yes".parse().unwrap());
    }
    if path.starts_with("/status/404") {
        *response.status_mut() = hyper::StatusCode::NOT_FOUND;
    }
    if path.starts_with("/close") {
        // The server ends the connection after this answer (HTTP/1.1).
        response
            .headers_mut()
            .insert("connection", "close".parse().unwrap());
    }
    if path.starts_with("/redirect") {
        *response.status_mut() = hyper::StatusCode::FOUND;
        response
            .headers_mut()
            .insert("location", "https://elsewhere.example/".parse().unwrap());
    }
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// An HTTP/1.1-only server requiring client certificates from `client_roots`, whose answers
/// are written byte by byte, by path, to try the gateway's own HTTP/1.1 client
/// (`runtime::h1`). Each body is `{"conn":N}`, N numbering the server's connections from 1:
///
/// * `/plain`: `Content-Length`; `/chunked`: chunked, in two chunks, with a trailer;
/// * `/quiet-close`: `Content-Length`, then the connection closed without a word;
/// * `/drop-next`: `Content-Length`, then the next request on the connection is read and the
///   connection closed without an answer;
/// * `/extra`: `Content-Length`, then bytes past it; `/until-close`: no framing, then closed;
/// * `/double-length`: two `Content-Length` values that differ;
/// * `/chunked-with-length`: chunked, with a `Content-Length` (shorter than the body) beside;
/// * `/listed-length`: `Content-Length: N, N`; `/repeated-length`: two equal fields;
/// * `/stall-body`: the head and part of the body, then nothing for 20 s;
/// * `/early`: 413 as soon as the head is in, the body left unread for 3 s, then closed.
pub(crate) async fn start_scripted(pki: &Path, client_roots: &Path) -> Upstream {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let config = config(pki, Some(client_roots), true, false, rustls::ALL_VERSIONS);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let conn = connections.fetch_add(1, Ordering::SeqCst) + 1;
                let body = format!("{{\"conn\":{conn}}}");
                let mut buf = Vec::new();
                let mut drop_next = false;
                loop {
                    // One request: its head, then its Content-Length body.
                    let head_end = loop {
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    if head.split(' ').nth(1) == Some("/stall-body") {
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len() + 5
                        );
                        let _ = tls.write_all(answer.as_bytes()).await;
                        let _ = tls.flush().await;
                        tokio::time::sleep(std::time::Duration::from_secs(20)).await;
                        return;
                    }
                    if head.split(' ').nth(1) == Some("/early") {
                        // Refuses the upload at once and reads none of it, for a while.
                        let refusal = "HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
                        let _ = tls.write_all(refusal.as_bytes()).await;
                        let _ = tls.flush().await;
                        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                        return;
                    }
                    let length: usize = head
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .map_or(0, |value| value.trim().parse().unwrap());
                    while buf.len() < head_end + length {
                        let mut chunk = [0u8; 4096];
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + length);
                    if drop_next {
                        return;
                    }
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let sized = |extra: &str| {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}{extra}",
                            body.len()
                        )
                    };
                    let (answer, close) = match path.as_str() {
                        "/chunked" => {
                            let (a, b) = body.split_at(4);
                            (
                                format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\nx-trailer: t\r\n\r\n",
                                    a.len(),
                                    b.len()
                                ),
                                false,
                            )
                        }
                        "/quiet-close" => (sized(""), true),
                        "/drop-next" => {
                            drop_next = true;
                            (sized(""), false)
                        }
                        "/extra" => (sized("JUNK"), false),
                        "/until-close" => (
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{body}"
                            ),
                            true,
                        ),
                        "/chunked-with-length" => (
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                                body.len()
                            ),
                            false,
                        ),
                        "/listed-length" => (
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {n}, {n}\r\n\r\n{body}",
                                n = body.len()
                            ),
                            false,
                        ),
                        "/repeated-length" => (
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {n}\r\nContent-Length: {n}\r\n\r\n{body}",
                                n = body.len()
                            ),
                            false,
                        ),
                        "/double-length" => (
                            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"
                                .to_owned(),
                            false,
                        ),
                        _ => (sized(""), false),
                    };
                    if tls.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = tls.flush().await;
                    if close {
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    Upstream {
        port,
        ca_pem: pki.join("ca.pem"),
    }
}

/// nginx (Debian's) as an upstream that requires client certificates from `client_ca` and
/// answers with the subject of the certificate it verified. Stopped on drop.
pub(crate) struct Nginx {
    pub port: u16,
    child: std::process::Child,
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers (SIGKILL would orphan them), then waits.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn nginx(pki: &Path, client_ca: &Path) -> Option<Nginx> {
    if std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .is_err()
    {
        mtls_test_support::skip(
            "tests against nginx",
            "nginx is not installed (Debian: apt-get install nginx)",
        );
        return None;
    }
    let dir = temp_dir("nginx");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        r#"daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {pki}/server.pem;
        ssl_certificate_key {pki}/server.key;
        ssl_client_certificate {client_ca};
        ssl_verify_client on;
        ssl_verify_depth 3;
        location / {{
            default_type text/plain;
            return 200 "subject=$ssl_client_s_dn\n";
        }}
    }}
}}
"#,
        dir = dir.display(),
        pki = pki.display(),
        client_ca = client_ca.display(),
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = std::process::Command::new("nginx")
        .args([
            "-c",
            &dir.join("nginx.conf").display().to_string(),
            "-p",
            &dir.display().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let nginx = Nginx { port, child };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(nginx);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "nginx did not start: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
}

/// An HTTP/1.1-only server requiring client certificates from `client_roots` whose answers
/// break after a sound head (200), by path, one request per connection:
///
/// * `/truncated`: `Content-Length: 100`, 9 bytes of body, then closed (with `close_notify`);
/// * `/truncated-chunked`: one chunk, then closed before the last chunk;
/// * `/large`: 4096 bytes of body, under its `Content-Length`;
/// * `/stall`: `Content-Length: 100`, 9 bytes, then nothing for 10 s;
/// * anything else: `{"ok":true}`, whole.
pub(crate) async fn start_broken(pki: &Path, client_roots: &Path) -> Upstream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let config = config(pki, Some(client_roots), true, false, rustls::ALL_VERSIONS);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 4096];
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let path = String::from_utf8_lossy(&head)
                    .split(' ')
                    .nth(1)
                    .unwrap_or("/")
                    .to_owned();
                let answer = match path.as_str() {
                    "/truncated" | "/stall" => {
                        "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part".to_owned()
                    }
                    "/truncated-chunked" => {
                        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
                            .to_owned()
                    }
                    "/large" => format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: 4096\r\n\r\n{}",
                        "x".repeat(4096)
                    ),
                    _ => "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
                        .to_owned(),
                };
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.flush().await;
                if path == "/stall" {
                    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    Upstream {
        port,
        ca_pem: pki.join("ca.pem"),
    }
}

/// A TLS 1.3 server offering `h2` that requires client certificates from `client_roots` and,
/// when it refuses one, sends its alert and then keeps the TCP connection open (reading and
/// dropping what comes) for 5 s: the client always reads the alert, after its own handshake
/// is over, on the connection it has started to use (no reset races it away).
pub(crate) async fn start_refusing_after_handshake(pki: &Path, client_roots: &Path) -> Upstream {
    use tokio::io::AsyncReadExt;

    let config = config(
        pki,
        Some(client_roots),
        true,
        true,
        &[&rustls::version::TLS13],
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Err((_, mut tcp)) = acceptor.accept(stream).into_fallible().await else {
                    return;
                };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                    let mut sink = [0u8; 4096];
                    while let Ok(1..) = tcp.read(&mut sink).await {}
                })
                .await;
            });
        }
    });
    Upstream {
        port,
        ca_pem: pki.join("ca.pem"),
    }
}

/// The echo server of [`start`] (client certificates from `client_roots` required) whose
/// answers carry the target's own `X-Request-Id: target-own-id` on paths starting with
/// `/own-request-id`, and none elsewhere.
pub(crate) async fn start_with_request_id(pki: &Path, client_roots: &Path) -> Upstream {
    let config = config(pki, Some(client_roots), true, true, rustls::ALL_VERSIONS);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let own = request.uri().path().starts_with("/own-request-id");
                    async move {
                        let mut response = echo(request, None, None, peer.port()).await;
                        if own {
                            response
                                .headers_mut()
                                .insert("x-request-id", "target-own-id".parse().unwrap());
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Upstream {
        port,
        ca_pem: pki.join("ca.pem"),
    }
}

/// A server that answers redirects, from [`start_redirecting`], and what it received.
pub(crate) struct Redirecting {
    pub upstream: Upstream,
    /// `METHOD path?query` of every request received, in order.
    pub seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Redirecting {
    pub(crate) fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// The body of every redirect [`start_redirecting`] answers: none of it may reach the caller
/// when the gateway follows.
pub(crate) const REDIRECT_BODY: &str = "REDIRECT-BODY-NEVER-RELAYED";

/// A server like [`start`] (client certificates from `client_roots` required, HTTP/2 and
/// HTTP/1.1 offered) that reads each request body whole and then answers, by path:
///
/// * `/redirect-to/{status}?{location}`: `status` with `Location: {location}` (the query,
///   verbatim) and [`REDIRECT_BODY`];
/// * `/loop/{n}`: 302 to `/loop/{n + 1}` (a relative `Location`);
/// * anything else: the echo of [`start`] (method, path, headers, body, fingerprint).
pub(crate) async fn start_redirecting(pki: &Path, client_roots: &Path) -> Redirecting {
    start_redirecting_with(pki, client_roots, true).await
}

/// [`start_redirecting`], offering HTTP/2 or not (HTTP/1.1 only: the gateway's own client).
pub(crate) async fn start_redirecting_with(
    pki: &Path,
    client_roots: &Path,
    h2: bool,
) -> Redirecting {
    let config = config(pki, Some(client_roots), true, h2, rustls::ALL_VERSIONS);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let recorded = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let recorded = Arc::clone(&recorded);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let (fingerprint, alpn) = seen_by_server(tls.get_ref().1);
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (fingerprint, alpn) = (fingerprint.clone(), alpn.clone());
                    let recorded = Arc::clone(&recorded);
                    async move {
                        let path = request
                            .uri()
                            .path_and_query()
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        recorded
                            .lock()
                            .unwrap()
                            .push(format!("{} {path}", request.method()));
                        let redirect = |status: u16, location: &str| {
                            let mut response = Response::new(Full::new(Bytes::from_static(
                                REDIRECT_BODY.as_bytes(),
                            )));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            response
                                .headers_mut()
                                .insert("location", location.parse().unwrap());
                            response
                        };
                        let answer = if let Some(rest) = path.strip_prefix("/redirect-to/") {
                            let (status, location) = rest.split_once('?').unwrap();
                            // Read the body whole first: the gateway has sent all of it.
                            let _ = request.into_body().collect().await;
                            redirect(status.parse().unwrap(), location)
                        } else if let Some(n) = path.strip_prefix("/loop/") {
                            let _ = request.into_body().collect().await;
                            let next = n.parse::<u32>().unwrap() + 1;
                            redirect(302, &format!("/loop/{next}"))
                        } else {
                            echo(request, fingerprint, alpn, peer.port()).await
                        };
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Redirecting {
        upstream: Upstream {
            port,
            ca_pem: pki.join("ca.pem"),
        },
        seen,
    }
}

/// What the echo reports of a connection: the SHA-256 of the client certificate the server
/// saw (lower-case hex), and the protocol ALPN chose.
fn seen_by_server(connection: &rustls::ServerConnection) -> (Option<String>, Option<String>) {
    let fingerprint = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| {
            Sha256::digest(leaf.as_ref())
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
        });
    let alpn = connection
        .alpn_protocol()
        .map(|protocol| String::from_utf8_lossy(protocol).to_string());
    (fingerprint, alpn)
}
