//! TLS client configurations: upstream verification always on (system roots, configured trust
//! roots, the mapping's own CA bundle; hostname checked; TLS 1.2 and newer), and the client
//! certificate of the mapped identity when there is one.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Roots trusted for every upstream: the system's plus the configured bundles.
pub fn base_roots(trust_root_pems: &[Vec<u8>]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    for (index, pem) in trust_root_pems.iter().enumerate() {
        add_pem(&mut roots, pem)
            .map_err(|error| format!("tls.trust_roots #{}: {error}", index + 1))?;
    }
    Ok(roots)
}

fn add_pem(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), String> {
    let mut added = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate.map_err(|_| "not a PEM certificate bundle".to_owned())?;
        roots
            .add(certificate)
            .map_err(|_| "a certificate is not usable as a trust root".to_owned())?;
        added += 1;
    }
    if added == 0 {
        Err("no certificate in the bundle".to_owned())
    } else {
        Ok(())
    }
}

/// A mapping's `upstreamCaPem` checked at write time as [`client_config`] will load it: only
/// `CERTIFICATE` sections, at least one, each one webpki takes as a trust anchor. The DER of
/// each, in order.
pub fn trust_bundle(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::pem::SectionKind;
    let mut roots = RootCertStore::empty();
    let mut certificates = Vec::new();
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem.as_bytes()) {
        let (kind, der) = section.map_err(|_| "not a PEM certificate bundle".to_owned())?;
        if kind != SectionKind::Certificate {
            return Err("the bundle holds something other than certificates".to_owned());
        }
        roots
            .add(CertificateDer::from(der.as_slice()))
            .map_err(|_| "a certificate is not usable as a trust root".to_owned())?;
        certificates.push(der);
    }
    if certificates.is_empty() {
        return Err("no certificate in the bundle".to_owned());
    }
    Ok(certificates)
}

/// The client certificate chain (leaf first) and its PKCS#8 key.
pub struct ClientIdentity {
    pub chain: Vec<Vec<u8>>,
    pub pkcs8_key: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity(<redacted>)")
    }
}

/// A client configuration for one (identity, trust) pair.
/// Without a mapping's own bundle, the roots are `base` itself, shared: a copy of the system's
/// roots per identity was most of an identity's memory (docs/forward.md, "Upstream connections").
pub fn client_config(
    base: &Arc<RootCertStore>,
    upstream_ca_pem: Option<&str>,
    identity: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, String> {
    let roots = match upstream_ca_pem {
        None => Arc::clone(base),
        Some(pem) => {
            let mut roots = RootCertStore::clone(base);
            add_pem(&mut roots, pem.as_bytes())?;
            Arc::new(roots)
        }
    };
    static PROVIDER: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    let provider = Arc::clone(
        PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())),
    );
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let chain: Vec<CertificateDer<'static>> = identity
                .chain
                .iter()
                .map(|der| CertificateDer::from(der.clone()))
                .collect();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.pkcs8_key.to_vec()));
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| format!("client certificate: {error}"))?
        }
    };
    Ok(Arc::new(config))
}
