//! TLS: the crypto provider every client uses, the CA file of the CLI and the webhook executor,
//! and the server's certificate, reloadable on SIGHUP (see docs/security.md, "TLS", and docs/decisions.md).
//!
//! One provider (rustls on ring) serves the whole process: krafka already builds it, and reqwest
//! is built without one of its own, so [`install_provider`] must run before a client is built
//! ([`client_builder`] does it).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// rustls on ring: the provider krafka already builds. rustls 0.23.48 deprecates it for its lack
/// of post-quantum key exchange (aws-lc-rs has it, at the cost of a C build); classical ECDHE
/// (X25519, P-256, P-384) is what it negotiates (see docs/security.md, "TLS", and docs/decisions.md).
#[allow(deprecated, reason = "ring has no post-quantum key exchange; see the doc comment")]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Installs rustls on ring as the process's provider (reqwest takes it from there). Idempotent.
pub fn install_provider() {
    let _ = provider().install_default();
}

/// A reqwest client builder that speaks HTTPS, trusting the system's roots and, when given, the
/// CA certificates (PEM, one or more) in `ca_file`: a private CA.
pub fn client_builder(ca_file: Option<&Path>) -> anyhow::Result<reqwest::ClientBuilder> {
    install_provider();
    let mut builder = reqwest::Client::builder().tls_backend_rustls();
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

/// The certificates of a CA file; an unreadable file, or one without a certificate, is an error.
fn read_ca_file(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read the CA file {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| anyhow::anyhow!("the CA file {} is not PEM certificates: {e}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "the CA file {} holds no PEM certificate", path.display());
    Ok(certs)
}

/// When a request failed because the server's certificate was refused, why (rustls's reason).
pub fn certificate_refused(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(err);
    while let Some(e) = source {
        // io::Error's source() skips the error it wraps, so look inside it too.
        let inner = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()).map(|i| i as &dyn std::error::Error);
        for candidate in [Some(e), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(why)) = candidate.downcast_ref::<rustls::Error>() {
                return Some(format!("{why:?}"));
            }
        }
        // Some layers between reqwest and rustls keep only the message (rustls's own wording).
        if let Some(why) = e.to_string().strip_prefix("invalid peer certificate: ") {
            return Some(why.to_owned());
        }
        source = e.source();
    }
    None
}

/// The server's certificate chain and key, read from two PEM files, served to every handshake,
/// and replaced by [`ServerCert::reload`] (on SIGHUP) only when the new files are good.
pub struct ServerCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCert").field("cert", &self.cert_path).field("key", &self.key_path).finish()
    }
}

impl ServerCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<ServerCert>> {
        let key = read_certified_key(cert_path, key_path)?;
        Ok(Arc::new(ServerCert {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again; on any error the certificate in use stays, and the error says why.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = read_certified_key(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The acceptor of `serve`'s TLS connections: TLS 1.2 and 1.3, HTTP/1.1 only (the serve
    /// loop speaks nothing else), no client certificates.
    pub fn acceptor(self: &Arc<Self>) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        let provider = Arc::new(provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn read_certified_key(cert_path: &Path, key_path: &Path) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", cert_path.display()))?;
    anyhow::ensure!(!chain.is_empty(), "--tls-cert {}: no PEM certificate in it", cert_path.display());
    let key =
        PrivateKeyDer::from_pem_file(key_path).map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key_path.display()))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| anyhow::anyhow!("--tls-cert {} with --tls-key {}: {e}", cert_path.display(), key_path.display()))
}

/// A client with reqwest's defaults, the provider installed first: reqwest, built without a
/// provider of its own, panics when a client is built before one is installed.
pub fn http_client() -> reqwest::Client {
    install_provider();
    reqwest::Client::new()
}
