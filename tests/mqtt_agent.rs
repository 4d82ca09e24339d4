//! The real binary with an `[[mqtt]]` output against a real Mosquitto: killed with SIGKILL in the
//! middle of a backlog and started again, it loses no reading (the cursor only moves after
//! PUBACKs; what was acknowledged but not yet saved is published again, same id), says `online`
//! and, on SIGTERM, `offline` on its status topic, and never logs the broker password.

#[path = "mqtt/broker.rs"]
mod broker;
mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;

use broker::{Broker, BrokerOptions, Got, Subscriber};
use enocean_agent::outbox::{Outbox, Store};

const PASSWORD: &str = "s3cret-broker-password";

fn ids_of(got: &[Got]) -> HashSet<String> {
    got.iter()
        .filter(|g| g.topic.starts_with("enocean/test-gw/0"))
        .filter_map(|g| g.json()["id"].as_str().map(str::to_owned))
        .collect()
}

fn start_agent(config: &Path, log: &Path) -> common::Reaper {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = common::agent_command()
        .args(["run", "-c"])
        .arg(config)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("agent starts");
    common::Reaper(child)
}

fn enqueue(db: &Path, n: u32) -> Vec<String> {
    let mut s = common::storage(db.parent().unwrap());
    s.path = db.to_path_buf();
    let mut outbox = Outbox::open(&s, &[]).unwrap();
    common::enqueue_n(&mut outbox, "0180A3F2", n)
}

#[test]
fn sigkill_mid_backlog_loses_nothing_and_the_password_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(b) = Broker::start_with(
        d,
        BrokerOptions {
            users: vec![
                ("agent".into(), PASSWORD.into()),
                ("watcher".into(), "w".into()),
            ],
            ..Default::default()
        },
    ) else {
        return;
    };
    let sub = Subscriber::start(b.port, "enocean/#", Some(("watcher", "w")));
    std::fs::write(d.join("mqtt-password"), format!("{PASSWORD}\n")).unwrap();
    let db = d.join("outbox.db");
    let config = d.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw\"\n[serial]\nport = \"{}\"\n[storage]\npath = \"{}\"\n\n\
             [[mqtt]]\nname = \"home\"\nurl = \"{}\"\nusername = \"agent\"\n\
             password_file = \"mqtt-password\"\nbackoff_base = \"20ms\"\nprobe_base = \"100ms\"\n",
            d.join("no-stick").display(),
            db.display(),
            b.url()
        ),
    )
    .unwrap();
    // The output exists before the backlog (a new output starts at the end of the outbox).
    Store::open(&db)
        .unwrap()
        .register_outputs("mqtt:", &["mqtt:home".to_owned()])
        .unwrap();
    let mut ids = enqueue(&db, 2000);
    let log = d.join("agent.log");
    let mut agent = start_agent(&config, &log);
    sub.wait("the first readings", |g| !ids_of(g).is_empty());
    agent.0.kill().unwrap();
    let _ = agent.0.wait();
    let cursor_at_kill = Store::open(&db)
        .unwrap()
        .webhook("mqtt:home")
        .unwrap()
        .unwrap()
        .cursor;
    eprintln!(
        "killed with {} of 2000 readings received, cursor at {cursor_at_kill}",
        ids_of(&sub.got()).len()
    );
    ids.extend(enqueue(&db, 100));
    let mut agent = start_agent(&config, &log);
    let got = sub.wait("every reading", |g| {
        let seen = ids_of(g);
        ids.iter().all(|id| seen.contains(id))
    });
    assert!(
        got.iter()
            .any(|m| m.topic == "enocean/gw/status" && m.text() == "online")
    );
    // Health events go to their own topic (every kind by default for MQTT).
    let got = sub.wait("gateway.status", |g| {
        g.iter()
            .any(|m| m.topic == "enocean/gw/events/gateway.status")
    });
    let st = got
        .iter()
        .find(|m| m.topic == "enocean/gw/events/gateway.status")
        .unwrap();
    assert_eq!(st.json()["kind"], "gateway.status");
    // It lists the MQTT output's health beside the webhooks'.
    let outputs = st.json()["status"]["webhooks"].clone();
    assert!(
        outputs
            .as_array()
            .is_some_and(|a| a.iter().any(|w| w["name"] == "mqtt:home")),
        "{outputs}"
    );
    assert!(!st.retain);
    let status = agent.terminate();
    assert!(status.success(), "{status:?}");
    sub.wait("offline", |g| {
        g.iter()
            .any(|m| m.topic == "enocean/gw/status" && m.text() == "offline")
    });
    // A stopping output publishes what was committed before it stopped: the stop's own
    // gateway.status gets out.
    sub.wait("the stop's gateway.status", |g| {
        g.iter().any(|m| {
            m.topic == "enocean/gw/events/gateway.status" && m.json()["status"]["reason"] == "stop"
        })
    });
    let st = Store::open(&db)
        .unwrap()
        .webhook("mqtt:home")
        .unwrap()
        .unwrap();
    let max = Store::open(&db).unwrap().status(&db).unwrap().max_seq;
    // A stopping output drains what was committed for at most a few seconds: on a slow machine
    // the stop's own gateway.status may wait for the next start; everything before it was
    // acknowledged and saved.
    assert!(
        st.cursor == max || st.cursor + 1 == max,
        "the cursor was saved at the clean stop: cursor {}, last seq {max}",
        st.cursor
    );
    // `webhook list` shows the MQTT output with the webhooks' health figures.
    let out = common::agent_command()
        .args(["webhook", "list", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let row = listing
        .lines()
        .find(|l| l.starts_with("mqtt:home"))
        .unwrap_or_else(|| panic!("no mqtt:home in {listing}"));
    assert!(row.contains("active"), "{row}");
    assert!(!listing.contains(PASSWORD));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("mqtt home: connected"), "{text}");
    assert!(!text.contains(PASSWORD), "the password reached the log");
}

#[test]
fn a_wrong_password_is_logged_with_what_to_check_and_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(b) = Broker::start_with(
        d,
        BrokerOptions {
            users: vec![("agent".into(), PASSWORD.into())],
            ..Default::default()
        },
    ) else {
        return;
    };
    let wrong = "wrong-pw-5e1d";
    std::fs::write(d.join("mqtt-password"), format!("{wrong}\n")).unwrap();
    let config = d.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw\"\n[serial]\nport = \"{}\"\n[storage]\npath = \"{}\"\n\n\
             [[mqtt]]\nname = \"home\"\nurl = \"{}\"\nusername = \"agent\"\n\
             password_file = \"mqtt-password\"\n",
            d.join("no-stick").display(),
            d.join("outbox.db").display(),
            b.url()
        ),
    )
    .unwrap();
    let log = d.join("agent.log");
    let mut agent = start_agent(&config, &log);
    assert!(common::wait_for(broker::WAIT, || std::fs::read_to_string(
        &log
    )
    .is_ok_and(|t| t.contains("refused the login"))));
    assert!(agent.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("refused the login"))
        .unwrap();
    assert!(
        line.contains("mqtt home") && line.contains("username"),
        "{line}"
    );
    assert!(!text.contains(wrong) && !text.contains(PASSWORD));
}

#[test]
fn demo_with_mqtt_publishes_readings_and_discovery_to_a_local_broker() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(b) = Broker::start(dir.path()) else {
        return;
    };
    let sub = Subscriber::start(b.port, "#", None);
    let out = common::agent_command()
        .args([
            "demo",
            "--duration",
            "3",
            "--rate",
            "10",
            "--mqtt",
            &b.url(),
        ])
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The summary says how far the broker acknowledged: everything committed.
    let line = text
        .lines()
        .find(|l| l.contains("MQTT: acknowledged"))
        .unwrap_or_else(|| panic!("no MQTT line:\n{text}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        // (At most the stop's own gateway.status may be left for the next start.)
        nums.len() >= 2 && nums[0] > 0 && nums[0] + 1 >= nums[1],
        "{line}"
    );
    let got = sub.wait("readings and discovery", |g| {
        g.iter().any(|m| m.topic == "enocean/demo-gateway/0180A3F2")
            && g.iter()
                .any(|m| m.topic == "homeassistant/sensor/enocean_0180A3F2/temperature/config")
    });
    let cfg = got
        .iter()
        .find(|m| m.topic == "homeassistant/sensor/enocean_0180A3F2/temperature/config")
        .unwrap()
        .json();
    assert_eq!(cfg["device"]["name"], "Office 2.14");
    // The demo's clean stop says offline.
    sub.wait("offline", |g| {
        g.iter()
            .any(|m| m.topic == "enocean/demo-gateway/status" && m.text() == "offline")
    });
}
