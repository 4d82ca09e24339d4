//! TLS for private CAs: a rustls receiver on 127.0.0.1 with a CA, server and client certificates
//! generated here (rcgen). A webhook's `ca_file` is trusted, a wrong CA and a missing client
//! certificate are endpoint failures with a clear class in the delivery log (counted like any
//! other), client certificates are presented for mutual TLS and checked at load, and the
//! operating system's store (`SSL_CERT_FILE`) is trusted by the real binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use common::{WAIT, enqueue_n, fast_options, open_outbox, storage, wait_for};
use enocean_agent::config::{Config, ConfigError};
use enocean_agent::outbox::{Phase, Store};
use enocean_agent::webhook::http::{self, Outcome};
use enocean_agent::webhook::{Sender, WebhookConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const DEV: &str = "0180A3F2";

/// A CA: its certificate (PEM) and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate signed by `ca`: (certificate PEM, key PEM).
fn leaf(ca: &Ca, names: &[&str], cn: &str) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Every file the tests use, in one directory.
struct Pki {
    dir: PathBuf,
    server_cert: String,
    server_key: String,
    client_ca: String,
    client_cert: String,
}

fn pki(dir: &Path) -> Pki {
    let server_ca = ca("Building Owner CA");
    let wrong_ca = ca("Someone Else CA");
    let client_ca = ca("Gateway Client CA");
    let (server_cert, server_key) = leaf(&server_ca, &["127.0.0.1", "localhost"], "receiver");
    let (client_cert, client_key) = leaf(&client_ca, &["lobby-pi"], "lobby-pi");
    let (_, other_key) = leaf(&client_ca, &["other"], "other");
    for (name, text) in [
        ("ca.pem", server_ca.pem.as_str()),
        ("wrong-ca.pem", wrong_ca.pem.as_str()),
        ("client.pem", client_cert.as_str()),
        ("client.key", client_key.as_str()),
        ("other.key", other_key.as_str()),
        ("not-pem.txt", "hello\n"),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    Pki {
        dir: dir.to_path_buf(),
        server_cert,
        server_key,
        client_ca: client_ca.pem,
        client_cert,
    }
}

/// What the receiver saw on one connection.
#[derive(Debug, Clone, Default)]
struct Conn {
    /// The request body, when a request arrived.
    body: Option<Vec<u8>>,
    /// The client's certificate (DER), when it presented one.
    client_cert: Option<Vec<u8>>,
    /// Why the connection ended without a request.
    error: Option<String>,
}

/// A TLS receiver on 127.0.0.1 that answers 200 to every request; with `client_ca` it requires a
/// client certificate signed by it.
struct TlsReceiver {
    url: String,
    conns: Arc<Mutex<Vec<Conn>>>,
}

impl TlsReceiver {
    fn start(pki: &Pki, client_ca: Option<&str>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let chain = CertificateDer::pem_slice_iter(pki.server_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).unwrap();
        let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://127.0.0.1:{}/in",
            listener.local_addr().unwrap().port()
        );
        let conns = Arc::new(Mutex::new(Vec::new()));
        let seen = conns.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (config, seen) = (config.clone(), seen.clone());
                std::thread::spawn(move || {
                    serve(config, tcp, &|conn| seen.lock().unwrap().push(conn));
                });
            }
        });
        Self { url, conns }
    }

    fn conns(&self) -> Vec<Conn> {
        self.conns.lock().unwrap().clone()
    }

    fn bodies(&self) -> usize {
        self.conns().iter().filter(|c| c.body.is_some()).count()
    }
}

/// After a failed handshake: the alert rustls queued is written, then the connection is closed
/// as a careful server does (no more writing, reading what the client still sends until it
/// closes), so the client reads the alert instead of a reset that would discard it.
fn close_gracefully(mut tls: rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>) {
    let _ = tls.conn.write_tls(&mut tls.sock);
    let _ = tls.sock.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    while matches!(tls.sock.read(&mut sink), Ok(n) if n > 0) {}
}

/// One connection: handshake, one request (headers and a Content-Length body), a 200. What it
/// saw is recorded before the answer goes out, so a client that has its answer finds it there.
fn serve(config: Arc<rustls::ServerConfig>, tcp: std::net::TcpStream, record: &dyn Fn(Conn)) {
    let mut out = Conn::default();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let server = match rustls::ServerConnection::new(config) {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(e.to_string());
            return record(out);
        }
    };
    let mut tls = rustls::StreamOwned::new(server, tcp);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let body = loop {
        match tls.read(&mut chunk) {
            Ok(0) => {
                out.error = Some("closed before a request".into());
                return record(out);
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                out.error = Some(e.to_string());
                record(out);
                return close_gracefully(tls);
            }
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                match tls.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            break buf[end + 4..].to_vec();
        }
    };
    out.client_cert = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    out.body = Some(body);
    record(out);
    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// The first webhook of a configuration file with `extra` keys, loaded as the agent loads it.
fn load(dir: &Path, url: &str, extra: &str) -> Result<WebhookConfig, ConfigError> {
    let text = format!(
        "[[webhook]]\nname = \"tls\"\nurl = \"{url}\"\nbackoff_base = \"5ms\"\nbackoff_max = \"20ms\"\n\
         probe_base = \"50ms\"\nprobe_max = \"200ms\"\njitter = 0.0\ntimeout = \"10s\"\n{extra}"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, &text).unwrap();
    Config::load(&path).map(|mut c| c.webhooks.remove(0))
}

fn post_once(hook: &WebhookConfig) -> enocean_agent::webhook::AttemptResult {
    http::post(&http::agent(hook), hook, &[], b"{\"hello\":1}")
}

#[test]
fn a_private_ca_in_ca_file_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rx = TlsReceiver::start(&pki, None);
    let hook = load(dir.path(), &rx.url, "ca_file = \"ca.pem\"\n").unwrap();
    let r = post_once(&hook);
    assert_eq!(
        (r.outcome, r.status),
        (Outcome::Delivered, Some(200)),
        "{r:?}"
    );
    assert_eq!(
        rx.conns().iter().find_map(|c| c.body.clone()).as_deref(),
        Some(&b"{\"hello\":1}"[..])
    );
    // Without `ca_file` neither the built-in roots nor the OS store know this CA.
    let hook = load(dir.path(), &rx.url, "").unwrap();
    let r = post_once(&hook);
    assert_eq!(
        (r.outcome, r.error.as_deref()),
        (Outcome::Failed, Some("tls_unknown_ca")),
        "{r:?}"
    );
}

/// A wrong CA goes through the real sender: every attempt is a failure with its class in the
/// delivery log, failed deliveries count toward deactivation like any endpoint failure, and
/// nothing reaches the receiver.
#[test]
fn a_wrong_ca_is_an_endpoint_failure_in_the_delivery_log() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rx = TlsReceiver::start(&pki, None);
    let mut hook = load(
        dir.path(),
        &rx.url,
        "ca_file = \"wrong-ca.pem\"\ndeactivate_after = 2\n",
    )
    .unwrap();
    hook.connect_timeout = std::time::Duration::from_secs(10);
    let hooks = vec![hook];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = Sender::spawn(
        &hooks,
        &s.path,
        fast_options(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    ob.set_waker(sender.waker());
    enqueue_n(&mut ob, DEV, 2);
    let store = Store::open(&s.path).unwrap();
    assert!(
        wait_for(WAIT, || store.webhook("tls").unwrap().unwrap().phase
            == Phase::Probing),
        "not deactivated: {:?}",
        store.webhook("tls").unwrap()
    );
    sender.stop();
    let w = store.webhook("tls").unwrap().unwrap();
    assert_eq!(w.consecutive_failures, 2);
    assert_eq!(w.last_failure_reason.as_deref(), Some("tls_unknown_ca"));
    let log = store.attempts(Some("tls"), false, 100).unwrap();
    // Two failed deliveries of three attempts each, probes maybe after them.
    assert!(log.len() >= 6, "{log:?}");
    for l in &log {
        assert_eq!(
            (l.outcome.as_str(), l.status, l.error.as_deref()),
            ("failed", None, Some("tls_unknown_ca")),
            "{l:?}"
        );
    }
    assert_eq!(rx.bodies(), 0, "a request got through: {:?}", rx.conns());
    assert!(
        wait_for(WAIT, || !rx.conns().is_empty()),
        "no handshake reached the receiver"
    );
}

#[test]
fn mutual_tls_presents_the_client_certificate_and_a_missing_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rx = TlsReceiver::start(&pki, Some(&pki.client_ca));
    let with = load(
        dir.path(),
        &rx.url,
        "ca_file = \"ca.pem\"\nclient_cert_file = \"client.pem\"\nclient_key_file = \"client.key\"\n",
    )
    .unwrap();
    let r = post_once(&with);
    assert_eq!(
        (r.outcome, r.status),
        (Outcome::Delivered, Some(200)),
        "{r:?}"
    );
    let expected = CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).unwrap();
    let presented = rx.conns().iter().find_map(|c| c.client_cert.clone());
    assert_eq!(presented.as_deref(), Some(expected.as_ref()));

    let without = load(dir.path(), &rx.url, "ca_file = \"ca.pem\"\n").unwrap();
    let r = post_once(&without);
    assert_eq!(
        (r.outcome, r.error.as_deref()),
        (Outcome::Failed, Some("tls_client_cert_refused")),
        "{r:?}"
    );
    assert_eq!(rx.bodies(), 1, "{:?}", rx.conns());
}

#[test]
fn tls_files_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let url = "https://127.0.0.1:9/in";
    let key_pem = std::fs::read_to_string(pki.dir.join("client.key")).unwrap();
    // The base64 body of the key: it must never be part of a message.
    let key_body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let cases = [
        (
            "client_cert_file = \"client.pem\"\n",
            "client_key_file",
            "needs its key",
        ),
        (
            "client_key_file = \"client.key\"\n",
            "client_cert_file",
            "needs its certificate",
        ),
        (
            "client_cert_file = \"client.pem\"\nclient_key_file = \"other.key\"\n",
            "client_key_file",
            "does not belong",
        ),
        (
            "client_cert_file = \"client.pem\"\nclient_key_file = \"missing.key\"\n",
            "client_key_file",
            "cannot read",
        ),
        (
            "client_cert_file = \"client.key\"\nclient_key_file = \"client.key\"\n",
            "client_cert_file",
            "no PEM certificate",
        ),
        (
            "client_cert_file = \"client.pem\"\nclient_key_file = \"client.pem\"\n",
            "client_key_file",
            "no PEM private key",
        ),
        (
            "ca_file = \"not-pem.txt\"\n",
            "ca_file",
            "no PEM certificate",
        ),
        ("ca_file = \"missing.pem\"\n", "ca_file", "cannot read"),
    ];
    for (extra, key, what) in cases {
        let e = load(dir.path(), url, extra).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(key) && text.contains(what), "{extra}: {text}");
        assert!(e.line > 0, "{extra}: no line in {text}");
        assert!(!text.contains(&key_body[..40]), "key material in {text}");
    }
    // TLS settings on a plain http:// URL would encrypt nothing.
    let e = load(
        dir.path(),
        "http://127.0.0.1:9/in",
        "ca_file = \"ca.pem\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("not https"), "{e}");
    // The key's place is shown, never its bytes, also in Debug.
    let ok = load(
        dir.path(),
        url,
        "client_cert_file = \"client.pem\"\nclient_key_file = \"client.key\"\n",
    )
    .unwrap();
    assert!(!format!("{ok:?}").contains(&key_body[..40]));
}

/// The operating system's trust store: the real binary's `webhook test` trusts a CA given as
/// `SSL_CERT_FILE` (as rustls-native-certs reads it on Linux), and fails without it.
#[test]
fn the_operating_system_store_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rx = TlsReceiver::start(&pki, None);
    let db = dir.path().join("outbox.db");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = \"{}\"\n[[webhook]]\nname = \"os\"\nurl = \"{}\"\n",
            db.display(),
            rx.url
        ),
    )
    .unwrap();
    let cfg = Config::load(&config).unwrap();
    drop(open_outbox(&storage(dir.path()), &cfg.webhooks));
    let run = |cert_file: Option<&Path>| {
        let mut cmd = common::agent_command();
        cmd.args(["webhook", "test", "os", "--config"])
            .arg(&config)
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        if let Some(f) = cert_file {
            cmd.env("SSL_CERT_FILE", f);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = run(None);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("tls_unknown_ca"), "{text}");
    assert_eq!(rx.bodies(), 0);
    let (code, text) = run(Some(&dir.path().join("ca.pem")));
    assert_eq!(code, 0, "{text}");
    assert_eq!(rx.bodies(), 1, "{:?}", rx.conns());
}
