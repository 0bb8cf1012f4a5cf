//! A TLS-terminating proxy in front of a plain TCP service (the local RabbitMQ, the simulated
//! platform), its certificate issued by a fresh private CA for `localhost`; optionally asking
//! clients for a certificate from that CA. What a TLS RabbitMQ or a platform behind a private
//! CA looks like to the connector.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private CA.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key: KeyPair,
}

impl Leaf {
    fn der(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivatePkcs8KeyDer::from(self.key.serialize_der()).into();
        (certs, key)
    }
}

use tokio_rustls::rustls::pki_types::pem::PemObject;

impl Pki {
    pub fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Pki {
            ca: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// The CA's certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A certificate for `names`, issued by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &*self.ca).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key,
        }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        roots
    }
}

/// A running proxy; stops when dropped.
pub struct TlsProxy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on 127.0.0.1 with a `localhost` certificate from `pki` and forwards each
/// connection's plain bytes to `target`. With `client_ca`, a client certificate issued by that
/// CA is required.
pub async fn start(target: SocketAddr, pki: &Pki, client_ca: Option<&Pki>) -> TlsProxy {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key) = pki.leaf(&["localhost", "127.0.0.1"]).der();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(ca.roots()),
                provider,
            )
            .build()
            .unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    TlsProxy { port, task }
}

/// `key` as an encrypted PKCS#8 PEM (`ENCRYPTED PRIVATE KEY`, PBES2 with PBKDF2-SHA256 and
/// AES-256-CBC), as `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes it.
pub fn encrypted_key_pem(key: &KeyPair, passphrase: &str) -> String {
    use base64::Engine;
    use der::Encode;
    let params =
        pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, &[7u8; 16], &[9u8; 16]).unwrap();
    let scheme = pkcs5::EncryptionScheme::from(params);
    let ciphertext = scheme.encrypt(passphrase, &key.serialize_der()).unwrap();
    let mut body = scheme.to_der().unwrap();
    body.extend(
        der::asn1::OctetStringRef::new(&ciphertext)
            .unwrap()
            .to_der()
            .unwrap(),
    );
    // SEQUENCE { scheme, OCTET STRING }
    let mut der_bytes = vec![0x30];
    der_bytes.extend(der::Length::try_from(body.len()).unwrap().to_der().unwrap());
    der_bytes.extend(body);
    let b64 = base64::engine::general_purpose::STANDARD.encode(der_bytes);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n{}\n-----END ENCRYPTED PRIVATE KEY-----\n",
        lines.join("\n")
    )
}
