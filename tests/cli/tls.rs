//! `serve --tls-cert/--tls-key` and the CLI over HTTPS, with a CA and certificates the test makes
//! (rcgen): the CLI trusts the server with `--ca-file` and refuses it clearly without; plain HTTP
//! on the TLS port is answered a 400 that says so; a client that opens a connection and sends
//! nothing, or trickles its ClientHello, is dropped at the handshake timeout and gives its place
//! back; SIGHUP serves a new certificate, and a bad new file keeps the old one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::serve::{self, PROJECT, ServerProcess, bin};
use super::{MASTER_KEY, run};

/// A CA the test makes, which signs server certificates for 127.0.0.1 and localhost.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate: its PEM files' contents and its DER (what a client sees).
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "kafka-tasks test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA cert");
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, serial: u64) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("leaf params");
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name.push(DnType::CommonName, "kafka-tasks test server");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }
}

/// A TLS server on a fresh database, with its certificate files (rewritable for reloads).
struct TlsServer {
    dir: tempfile::TempDir,
    server: ServerProcess,
    cert: PathBuf,
    key: PathBuf,
    ca_file: PathBuf,
    cred: kafka_tasks::auth::IssuedCredential,
}

impl TlsServer {
    fn start(ca: &Ca, leaf: &Leaf, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key, ca_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"), dir.path().join("ca.pem"));
        write_leaf(&cert, &key, leaf);
        std::fs::write(&ca_file, ca.pem()).expect("CA file");
        let db = format!("sqlite:{}", dir.path().join("tls.db").display());
        let key_file = dir.path().join("master.key").display().to_string();
        let cred = serve::cli_credential(&db, MASTER_KEY, "tls-user", "admin");
        let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
        let mut args =
            vec!["--database", &db, "--master-key-file", &key_file, "--tls-cert", &cert_arg, "--tls-key", &key_arg];
        args.extend(extra);
        let server =
            ServerProcess::start(&args, &[("KAFKA_TASKS_MASTER_KEY", MASTER_KEY)], &dir.path().join("server.log"));
        TlsServer { dir, server, cert, key, ca_file, cred }
    }

    fn https(&self) -> String {
        format!("https://{}", self.server.addr)
    }

    /// The CLI as a user runs it, against the https endpoint.
    fn cli(&self, args: &[&str]) -> super::Out {
        let mut c = std::process::Command::new(bin());
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("KAFKA_TASKS_ENDPOINT", self.https())
            .env("HUAWEICLOUD_SDK_AK", &self.cred.access_key)
            .env("HUAWEICLOUD_SDK_SK", &self.cred.secret_key)
            .env("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT);
        run(c)
    }

    fn sighup(&self) {
        let pid = self.server.pid().expect("the server runs");
        let status = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("kill runs");
        assert!(status.success());
    }
}

fn write_leaf(cert: &Path, key: &Path, leaf: &Leaf) {
    std::fs::write(cert, &leaf.cert_pem).expect("cert file");
    std::fs::write(key, &leaf.key_pem).expect("key file");
}

/// A TLS client that trusts only `ca` and offers HTTP/1.1.
fn connector(ca: &Ca) -> tokio_rustls::TlsConnector {
    kafka_tasks::tls::install_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).expect("CA into the root store");
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The certificate the server presents now, as a client sees it.
async fn served_certificate(addr: &str, ca: &Ca) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let tls = connector(ca).connect(name, tcp).await.expect("TLS handshake");
    let (_, conn) = tls.get_ref();
    conn.peer_certificates().and_then(|c| c.first()).expect("a peer certificate").clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_speaks_https_with_a_ca_file_and_refuses_an_untrusted_certificate_clearly() {
    let ca = Ca::new();
    let s = TlsServer::start(&ca, &ca.leaf(1), &[]);
    let ca_file = s.ca_file.display().to_string();

    let listed = s.cli(&["instances", "list", "--ca-file", &ca_file, "--output", "json"]).ok();
    assert!(listed.json()["instances"].is_array(), "{listed:?}");

    // The CA file from the environment, as a script would set it.
    let mut c = std::process::Command::new(bin());
    c.args(["instances", "list"])
        .env_clear()
        .env("HOME", s.dir.path())
        .env("KAFKA_TASKS_ENDPOINT", s.https())
        .env("KAFKA_TASKS_CA_FILE", &ca_file)
        .env("HUAWEICLOUD_SDK_AK", &s.cred.access_key)
        .env("HUAWEICLOUD_SDK_SK", &s.cred.secret_key)
        .env("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT);
    run(c).ok();

    // Without the CA the certificate is not trusted: a transport failure (exit 4) that says why
    // and what to do.
    let refused = s.cli(&["instances", "list"]);
    assert_eq!(refused.code, 4, "{refused:?}");
    assert!(refused.stderr.contains("certificate is not trusted"), "{refused:?}");
    assert!(refused.stderr.contains("--ca-file"), "{refused:?}");

    // A CA file that is not one is a usage error (exit 2), before any request.
    let junk = s.dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("junk");
    let bad = s.cli(&["instances", "list", "--ca-file", &junk.display().to_string()]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("CA file"), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_on_the_tls_port_is_answered_a_400_that_says_https() {
    let ca = Ca::new();
    let leaf = ca.leaf(1);
    let s = TlsServer::start(&ca, &leaf, &[]);
    let mut tcp = TcpStream::connect(&s.server.addr).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("write");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .expect("read");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(text.contains("this port speaks HTTPS") && text.contains("DMS.00400800"), "{text}");
    // The server is still well.
    assert_eq!(served_certificate(&s.server.addr, &ca).await, leaf.der);
}

/// How long until the server closes a connection that sends `trickle` (one byte a tick) or
/// nothing; `None` if it is still open after `within`.
async fn closed_after(addr: &str, trickle: Option<&[u8]>, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let mut next = 0;
    let mut buf = [0u8; 64];
    while started.elapsed() < within {
        if let Some(bytes) = trickle
            && next < bytes.len()
        {
            if tcp.write_all(&bytes[next..next + 1]).await.is_err() {
                return Some(started.elapsed());
            }
            next += 1;
        }
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await {
            return Some(started.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_or_trickling_handshake_is_dropped_at_its_timeout_and_gives_its_place_back() {
    let ca = Ca::new();
    // Two places per address: the two attackers take both.
    let s = TlsServer::start(
        &ca,
        &ca.leaf(1),
        &["--tls-handshake-timeout-ms", "1000", "--max-connections-per-address", "2"],
    );
    let addr = s.server.addr.clone();
    // A TLS handshake record header announcing 512 bytes, then zeros: a ClientHello that never ends.
    let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00];
    hello.extend([0u8; 100]);
    let silent = tokio::spawn({
        let addr = addr.clone();
        async move { closed_after(&addr, None, Duration::from_secs(10)).await }
    });
    let trickling = tokio::spawn({
        let addr = addr.clone();
        async move { closed_after(&addr, Some(&hello), Duration::from_secs(10)).await }
    });
    // While both are held, the address has no place left: a third connection is closed at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = closed_after(&addr, None, Duration::from_millis(800)).await;
    assert!(third.is_some_and(|d| d < Duration::from_millis(500)), "the cap covers handshakes: {third:?}");

    for (what, t) in [("silent", silent.await.expect("task")), ("trickling", trickling.await.expect("task"))] {
        let t = t.unwrap_or_else(|| panic!("the {what} connection is still open after 10 s"));
        assert!(t >= Duration::from_millis(900) && t < Duration::from_secs(4), "{what} closed after {t:?}");
    }
    // Their places are back: a real client gets through.
    served_certificate(&addr, &ca).await;
    let log = std::fs::read_to_string(&s.server.log).expect("log");
    assert!(log.contains("TLS handshake not done in time"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_serves_a_new_certificate_and_a_bad_one_keeps_the_old() {
    let ca = Ca::new();
    let (first, second) = (ca.leaf(1001), ca.leaf(2002));
    let s = TlsServer::start(&ca, &first, &[]);
    assert_eq!(served_certificate(&s.server.addr, &ca).await, first.der);

    write_leaf(&s.cert, &s.key, &second);
    s.sighup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(&s.server.addr, &ca).await != second.der {
        assert!(Instant::now() < deadline, "the new certificate is not served 10 s after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A key that does not match the certificate, then a certificate file that is no PEM: each
    // keeps the certificate in use, and the log says why.
    std::fs::write(&s.key, first.key_pem.as_bytes()).expect("mismatched key");
    s.sighup();
    std::fs::write(&s.cert, "garbage").expect("garbage cert");
    s.sighup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&s.server.log).expect("log");
        if log.matches("TLS certificate not reloaded").count() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no reload failure logged: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_certificate(&s.server.addr, &ca).await, second.der);
    let out = s.cli(&["instances", "list", "--ca-file", &s.ca_file.display().to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
}
