//! TLS trust and identity for the platform and the broker, built the way operators of the
//! Python connector already configure them.
//!
//! Trusted, always: the public web roots bundled in the binary (images without an OS store
//! still reach public hosts) and the OS store (`rustls-native-certs`, which reads
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` instead when they are set, as OpenSSL does); plus, per
//! peer, the CA files the settings name. Certificates and keys are given as pycti takes them:
//! a PEM file's path, or the PEM text itself.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// A client certificate chain and its key (`MQ_USE_SSL_CERT` / `_KEY`).
pub struct Identity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    pub fn new(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Identity {
        Identity { certs, key }
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// The key is never shown.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("certs", &self.certs.len())
            .field("key", &"[hidden]")
            .finish()
    }
}

/// The text of a PEM setting: the value itself when it is PEM (pycti's "memory certificate"),
/// else the file it names. Errors name the file, never the content: a value that does not
/// look like a path (a key pasted without its `-----BEGIN` line, say) is not quoted.
fn pem_text(value: &str) -> Result<Vec<u8>, String> {
    let v = value.trim();
    if v.starts_with("-----BEGIN") {
        return Ok(v.as_bytes().to_vec());
    }
    std::fs::read(Path::new(v)).map_err(|e| {
        if looks_like_path(v) {
            format!("cannot read {v}: {}", e.kind())
        } else {
            format!(
                "is neither PEM text (starting with -----BEGIN) nor the path of a readable file ({})",
                e.kind()
            )
        }
    })
}

/// An absolute or explicitly relative path of one line. Key material in base64 starts with
/// `M` (DER's SEQUENCE tag), never with `/` or `.`.
fn looks_like_path(v: &str) -> bool {
    (v.starts_with('/') || v.starts_with("./") || v.starts_with("../"))
        && v.len() <= 4096
        && !v.contains(['\n', '\r'])
}

/// Every certificate in a PEM setting (path or text); at least one.
pub fn certificates_from(value: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = pem_text(value)?;
    certificates_in(&pem)
}

/// Every certificate in PEM bytes; at least one.
pub(crate) fn certificates_in(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "holds an invalid PEM certificate".to_owned())?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// The private key of a PEM setting (path or text): PKCS#8, PKCS#1 or SEC1, or an encrypted
/// PKCS#8 key (`ENCRYPTED PRIVATE KEY`, PBES2) with its passphrase, as Python's
/// `load_cert_chain(..., password)` takes them. Errors never quote the key.
pub fn private_key_from(
    value: &str,
    passphrase: Option<&str>,
) -> Result<PrivateKeyDer<'static>, String> {
    let pem = pem_text(value)?;
    let text = String::from_utf8_lossy(&pem);
    const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
    if let Some(start) = text.find(BEGIN) {
        let Some(pass) = passphrase else {
            return Err("is an encrypted key: set MQ_USE_SSL_PASSPHRASE".into());
        };
        let body = &text[start + BEGIN.len()..];
        let body = &body[..body.find(END).ok_or("holds an invalid PEM key")?];
        let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "holds an invalid PEM key".to_owned())?;
        let plain = decrypt_pkcs8(&der, pass)?;
        return Ok(PrivateKeyDer::Pkcs8(plain.into()));
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(
            "is encrypted in the legacy OpenSSL format; convert it to PKCS#8 \
             (openssl pkcs8 -topk8 -v2 aes-256-cbc)"
                .into(),
        );
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| "holds no valid PEM private key".into())
}

/// An `EncryptedPrivateKeyInfo` (RFC 5958) decrypted with `pass`.
fn decrypt_pkcs8(der_bytes: &[u8], pass: &str) -> Result<Vec<u8>, String> {
    use der::{Decode, Reader, SliceReader, asn1::OctetStringRef};
    let invalid = |_| "holds an invalid encrypted key".to_owned();
    let mut reader = SliceReader::new(der_bytes).map_err(invalid)?;
    let (scheme, data) = reader
        .sequence(|r| {
            let scheme = pkcs5::EncryptionScheme::decode(r)?;
            let data = OctetStringRef::decode(r)?;
            Ok((scheme, data))
        })
        .map_err(invalid)?;
    scheme
        .decrypt(pass, data.as_bytes())
        .map_err(|_| "does not decrypt with MQ_USE_SSL_PASSPHRASE".to_owned())
}

/// The bundled public roots and the OS store (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
pub(crate) fn default_roots() -> RootCertStore {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // A missing or partly unreadable store is normal (a minimal image): what loads is used.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    roots
}

/// A rustls client configuration: `roots` plus `extra` trusted when `verify`, no verification
/// at all otherwise, and a client certificate when `identity` is given.
pub fn client_config(
    extra: &[CertificateDer<'static>],
    verify: bool,
    identity: Option<&Identity>,
) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if verify {
        let mut roots = default_roots();
        for c in extra {
            roots
                .add(c.clone())
                .map_err(|e| format!("a CA certificate is not usable: {e}"))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(
                provider.signature_verification_algorithms,
            )))
    };
    match identity {
        Some(id) => builder
            .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
            .map_err(|e| format!("the client certificate and key do not go together: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Every PEM certificate of `paths`, read now (a CA file given in the settings).
pub fn certificates_of_files(
    paths: &[std::path::PathBuf],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for p in paths {
        let pem =
            std::fs::read(p).map_err(|e| format!("cannot read {}: {}", p.display(), e.kind()))?;
        out.extend(certificates_in(&pem).map_err(|e| format!("{} {e}", p.display()))?);
    }
    Ok(out)
}

/// Accepts any certificate (the operator turned verification off), but still checks that the
/// handshake is signed by the key of the certificate presented.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_but_key_material_is_never_quoted() {
        let err = certificates_from("/nonexistent/ca.pem").unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        // A key pasted without its BEGIN line: base64 of DER, which starts with `M`.
        let body = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgsecretsecretsecret";
        for value in [body.to_owned(), format!("{body}\n{body}")] {
            let err = private_key_from(&value, None).unwrap_err();
            assert!(!err.contains("MIGHAgEA"), "{err}");
            assert!(err.contains("neither PEM text"), "{err}");
        }
    }
}
