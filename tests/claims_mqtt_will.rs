//! The README's status-topic promise attacked with the real binary and a real Mosquitto: "`online`
//! (retained) after connecting; `offline` as Last Will and on a clean stop". A clean stop is
//! `mqtt_agent`'s; here the agent is SIGKILLed (a power cut, the OOM killer) so it can say nothing
//! itself: the broker must publish `offline` for it, retained, so a dashboard that subscribes
//! afterwards still sees the gateway is gone. Both protocol versions. Skips with a note where
//! Mosquitto is not installed.

#[path = "mqtt/broker.rs"]
mod broker;
mod common;

use std::process::Stdio;

use broker::{Broker, Subscriber};

fn sigkilled_agent_is_offline_by_its_last_will(protocol: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(b) = Broker::start(d) else {
        return;
    };
    let sub = Subscriber::start(b.port, "enocean/#", None);
    let config = d.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw\"\n[serial]\nport = \"sim\"\n[storage]\npath = \"{}\"\ncommit_window = \"50ms\"\n\n\
             [[mqtt]]\nname = \"home\"\nurl = \"{}\"\n{protocol}keep_alive = \"30s\"\n",
            d.join("outbox.db").display(),
            b.url()
        ),
    )
    .unwrap();
    let log = d.join("agent.log");
    let mut agent = common::Reaper(
        common::agent_command()
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // Connected and delivering: `online`, and readings from the simulated stick.
    sub.wait("online and a reading", |g| {
        g.iter()
            .any(|m| m.topic == "enocean/gw/status" && m.text() == "online")
            && g.iter()
                .any(|m| m.topic.starts_with("enocean/gw/") && m.json()["kind"] == "telemetry")
    });
    agent.0.kill().unwrap();
    let _ = agent.0.wait();
    // The broker notices the dropped connection and publishes the will (well before the 30 s
    // keep-alive would run out: the socket is closed by the kernel).
    sub.wait("offline from the Last Will", |g| {
        let last = g.iter().rev().find(|m| m.topic == "enocean/gw/status");
        last.is_some_and(|m| m.text() == "offline")
    });
    // A subscriber that arrives later sees the retained `offline`.
    let late = Subscriber::start(b.port, "enocean/gw/status", None);
    let got = late.wait("the retained status", |g| !g.is_empty());
    assert_eq!(got[0].text(), "offline", "{protocol}");
    assert!(got[0].retain, "the will is retained ({protocol})");
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("panicked"),
        "the agent panicked"
    );
}

#[test]
fn a_sigkilled_agent_is_offline_by_its_last_will_mqtt_3_1_1() {
    sigkilled_agent_is_offline_by_its_last_will("");
}

#[test]
fn a_sigkilled_agent_is_offline_by_its_last_will_mqtt_5() {
    sigkilled_agent_is_offline_by_its_last_will("protocol = \"5\"\n");
}
