//! The TCP connector of every upstream connection: the egress policy vets the target, then the
//! connection goes to a vetted address (never to a second resolution), within the connect
//! timeout. TLS is layered on top by [`crate::pool`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use tokio::net::TcpStream;

use crate::egress::{EgressError, EgressPolicy, SystemResolver};
use crate::url::Scheme;

/// Connects through the egress policy.
#[derive(Clone, Debug)]
pub struct VettedConnector {
    pub policy: Arc<EgressPolicy>,
    pub connect_timeout: Duration,
}

/// A connect failure, classified for the 424 answer.
#[derive(Debug)]
pub enum ConnectError {
    Egress(EgressError),
    Timeout,
    Io(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Egress(error) => write!(f, "{error}"),
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Io(error) => write!(f, "connect failed: {error}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl VettedConnector {
    /// A TCP connection to `uri`'s host, through the egress policy.
    pub async fn connect(&self, uri: &Uri) -> Result<TcpStream, ConnectError> {
        let vetted = self.vet(uri).await?;
        self.connect_vetted(&vetted).await.map(|(stream, _)| stream)
    }

    /// The first stage alone (for the live tester, which reports each): `uri`'s host resolved
    /// once and every address allowed by the egress policy.
    pub async fn vet(&self, uri: &Uri) -> Result<Vec<SocketAddr>, ConnectError> {
        let scheme = if uri.scheme_str() == Some("http") {
            Scheme::Http
        } else {
            Scheme::Https
        };
        let host = uri
            .host()
            .ok_or_else(|| ConnectError::Io(io::Error::other("no host")))?;
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == Scheme::Http { 80 } else { 443 });
        self.policy
            .vet(scheme, host, port, &SystemResolver)
            .await
            .map_err(ConnectError::Egress)
    }

    /// The second stage: a TCP connection to the first of the vetted `addresses` that takes
    /// one, each within the connect timeout; the address it went to.
    pub async fn connect_vetted(
        &self,
        addresses: &[SocketAddr],
    ) -> Result<(TcpStream, SocketAddr), ConnectError> {
        let mut last = io::Error::other("no address");
        for address in addresses {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, *address));
                }
                Ok(Err(error)) => last = error,
                Err(_) => return Err(ConnectError::Timeout),
            }
        }
        Err(ConnectError::Io(last))
    }
}

/// The connection stage failed (egress, TCP, TLS or the HTTP handshake): nothing was sent.
#[derive(Debug)]
pub struct ConnectFailed(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connecting to the target failed: {}", self.0)
    }
}

impl std::error::Error for ConnectFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}
