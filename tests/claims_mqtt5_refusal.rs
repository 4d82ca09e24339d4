//! The README's MQTT 5 promise attacked with a real Mosquitto on 127.0.0.1: "a PUBACK reason code
//! ≥ 0x80 then counts as a failure and the reading is published again". The broker's ACL first
//! forbids the readings' topic, so Mosquitto answers every QoS 1 PUBLISH with PUBACK 0x87 (not
//! authorized) instead of dropping the connection; the output must record the refusal, keep its
//! cursor before the readings and, once the ACL allows the topic (reloaded with SIGHUP, the way an
//! operator fixes a broker), publish every reading, in order, with its id. Skips with a note where
//! Mosquitto is not installed.

#[path = "mqtt/broker.rs"]
mod broker;
mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use broker::{Broker, BrokerOptions, Subscriber, WAIT};
use enocean_agent::mqtt::config::Protocol;
use enocean_agent::mqtt::{MqttConfig, MqttSender};
use enocean_agent::outbox::{Outbox, Store, Waker};

#[test]
fn a_refusing_puback_is_a_failure_and_the_readings_are_published_again_once_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    // The agent may publish its status but not readings; the watcher may read everything.
    std::fs::write(
        &acl,
        "user agent\ntopic readwrite enocean/#\ntopic read readings/#\n\
         user watcher\ntopic read #\n",
    )
    .unwrap();
    let Some(b) = Broker::start_with(
        dir.path(),
        BrokerOptions {
            users: vec![
                ("agent".into(), "agent-pw".into()),
                ("watcher".into(), "w".into()),
            ],
            listener: vec![format!("acl_file {}", acl.display())],
        },
    ) else {
        return;
    };
    let sub = Subscriber::start(b.port, "readings/#", Some(("watcher", "w")));

    let pw = dir.path().join("mqtt-password");
    std::fs::write(&pw, "agent-pw\n").unwrap();
    let mut c = MqttConfig::new("v5", &b.url());
    c.protocol = Protocol::V5;
    c.username = Some("agent".into());
    c.password_file = Some(pw);
    c.topic = "readings/{sensor_id}".into();
    c.backoff_base = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c.probe_base = Duration::from_millis(100);
    c.probe_max = Duration::from_millis(400);
    c.jitter = 0.0;
    c.connect_timeout = Duration::from_secs(5);
    c.ack_timeout = Duration::from_secs(10);
    c.validate(dir.path()).expect("valid output");

    let storage = common::storage(dir.path());
    let mut outbox = Outbox::open(&storage, &[]).expect("outbox");
    let waker = Waker::new();
    outbox.set_waker(waker.clone());
    let handle = MqttSender::spawn(
        &[c],
        "test-gw",
        &storage.path,
        common::fast_options(),
        waker,
        Arc::new(AtomicBool::new(false)),
    )
    .expect("spawn");
    let ids = common::enqueue_n(&mut outbox, "0180A3F2", 20);
    let store = || Store::open(&storage.path).unwrap();

    // Refused: a failure is recorded and the cursor stays before the readings. Mosquitto sends
    // PUBACK 0x87 and then closes the connection; when the close is read first, the refusal is
    // seen as a reset (the PUBACK is lost with the connection). Either way it is a failure.
    assert!(
        common::wait_for(WAIT, || store()
            .webhook("mqtt:v5")
            .unwrap()
            .and_then(|s| s.last_failure_reason)
            .is_some()),
        "no refusal recorded; broker log:\n{}",
        b.log()
    );
    let st = store().webhook("mqtt:v5").unwrap().unwrap();
    assert!(
        matches!(
            st.last_failure_reason.as_deref(),
            Some("puback_not_authorized") | Some("connection_reset")
        ),
        "{:?}; broker log:\n{}",
        st.last_failure_reason,
        b.log()
    );
    assert_eq!(st.cursor, 0, "nothing may move past a refused reading");
    let failed = store().attempts(Some("mqtt:v5"), true, 10).unwrap();
    assert!(
        !failed.is_empty()
            && failed
                .iter()
                .all(|e| e.outcome == enocean_agent::delivery::Outcome::Failed),
        "refusals are failed attempts"
    );

    // The operator fixes the ACL; Mosquitto reloads it on SIGHUP.
    std::fs::write(
        &acl,
        "user agent\ntopic readwrite enocean/#\ntopic readwrite readings/#\n\
         user watcher\ntopic read #\n",
    )
    .unwrap();
    b.signal("HUP");

    // Every reading arrives, first copies in order, and the cursor reaches the last one.
    let got = sub.wait("20 readings after the ACL allows them", |g| {
        let mut seen = HashSet::new();
        g.iter()
            .filter_map(|m| m.json()["id"].as_str().map(str::to_owned))
            .filter(|id| seen.insert(id.clone()))
            .count()
            >= 20
    });
    let mut seen = HashSet::new();
    let first: Vec<String> = got
        .iter()
        .filter_map(|m| m.json()["id"].as_str().map(str::to_owned))
        .filter(|id| seen.insert(id.clone()))
        .collect();
    assert_eq!(first, ids, "every reading, in order, with its id");
    let last: i64 = rusqlite::Connection::open(&storage.path)
        .unwrap()
        .query_row("SELECT max(seq) FROM telemetry", [], |r| r.get(0))
        .unwrap();
    assert!(
        common::wait_for(WAIT, || store()
            .webhook("mqtt:v5")
            .unwrap()
            .is_some_and(|s| i64::try_from(s.cursor).unwrap() == last)),
        "the cursor follows the PUBACKs"
    );
    handle.stop();
}
