//! HTTPS for the simulator: a throwaway CA, a server certificate for the bind address, and an
//! axum listener that completes TLS handshakes off the accept loop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::SimError;

/// A handshake that has not finished by then is dropped, so a silent client cannot pin a task.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server configuration and the PEM of the CA clients must trust.
pub(super) fn server_config(bind: IpAddr) -> Result<(rustls::ServerConfig, String), SimError> {
    let cert_err = |e: rcgen::Error| SimError::Certificate(e.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(cert_err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "arcsight-incidents simulator CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(cert_err)?;

    let leaf_key = rcgen::KeyPair::generate().map_err(cert_err)?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !bind.is_unspecified() && !bind.is_loopback() {
        names.push(bind.to_string());
    }
    let mut leaf_params = rcgen::CertificateParams::new(names).map_err(cert_err)?;
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ESM Manager (simulated)");
    let leaf = leaf_params.signed_by(&leaf_key, &*ca).map_err(cert_err)?;

    let chain = vec![leaf.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    // rustls here has both ring and aws-lc-rs compiled in: name the provider explicitly.
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SimError::Certificate(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| SimError::Certificate(e.to_string()))?;
    Ok((config, ca.pem()))
}

/// Accepted and handshaken connections, fed by a background task.
pub(super) struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts the accept task; abort the returned handle to stop accepting.
    pub(super) fn new(
        tcp: TcpListener,
        config: rustls::ServerConfig,
    ) -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "simulator: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "simulator: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!("simulator: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok((TlsListener { rx, local }, task))
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept task is gone (shutdown): no connection will ever come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
