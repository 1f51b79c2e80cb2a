//! HTTPS on a listener: the server certificate and key from PEM files (TLS 1.2 and 1.3, ALPN
//! `h2` and `http/1.1`), optionally client certificates verified against `client_ca_file`.
//!
//! The configuration in force sits in an `ArcSwap`: each handshake takes the current one, so a
//! replaced certificate reaches new connections at once and open connections keep theirs.
//! [`ServerTls::reload_if_changed`] (polled) and [`ServerTls::reload`] (SIGHUP) read the files
//! again; a file that does not load is logged and the last good configuration stays.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, ListenerTlsConfig};

/// What identifies a version of the files on disk.
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// One listener's TLS.
pub struct ServerTls {
    settings: ListenerTlsConfig,
    current: ArcSwap<ServerConfig>,
    stamp: Mutex<Stamp>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_file", &self.settings.cert_file)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files now; any problem is an error (the listener does not start).
    pub fn load(settings: &ListenerTlsConfig) -> Result<Self, String> {
        let stamp = stamp(settings);
        let config = build(settings)?;
        Ok(Self {
            settings: settings.clone(),
            current: ArcSwap::from_pointee(config),
            stamp: Mutex::new(stamp),
        })
    }

    /// An acceptor with the configuration in force.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Reads the files again. `true` when the new configuration is in force; on failure the
    /// last good one stays and the reason is logged.
    pub fn reload(&self) -> bool {
        let stamp = stamp(&self.settings);
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        match build(&self.settings) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                tracing::info!(cert_file = %self.settings.cert_file.display(), "listener certificate reloaded");
                true
            }
            Err(error) => {
                tracing::error!(%error, "the listener's new TLS files do not load; the previous certificate stays in use");
                false
            }
        }
    }

    /// Reloads when a file's modification time or size changed since the last load.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.settings);
        let changed = *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) != now;
        changed && self.reload()
    }
}

fn files(settings: &ListenerTlsConfig) -> Vec<&Path> {
    let mut files = vec![settings.cert_file.as_path(), settings.key_file.as_path()];
    if let Some(ca) = &settings.client_ca_file {
        files.push(ca);
    }
    files
}

fn stamp(settings: &ListenerTlsConfig) -> Stamp {
    files(settings)
        .into_iter()
        .map(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        })
        .collect()
}

fn build(settings: &ListenerTlsConfig) -> Result<ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert_file)
        .and_then(Iterator::collect)
        .map_err(|error| format!("{}: {error}", settings.cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no certificate in the file",
            settings.cert_file.display()
        ));
    }
    // The key file's contents never reach an error message: only its path and the kind of
    // problem.
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|_| {
        format!(
            "{}: no readable PEM private key",
            settings.key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    let builder = match &settings.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(path)
                .map_err(|error| format!("{}: {error}", path.display()))?
            {
                let certificate =
                    certificate.map_err(|error| format!("{}: {error}", path.display()))?;
                roots
                    .add(certificate)
                    .map_err(|error| format!("{}: {error}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match settings.client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            }
            .build()
            .map_err(|error| format!("{}: {error}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|error| format!("{}: {error}", settings.cert_file.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
