//! Health events end to end: the real binary, the simulated stick on a real pty, loopback
//! receivers that verify every body's HMAC signature. `gateway.status` at start, periodically and
//! at a clean stop; `device.silent` / `device.back` with short thresholds; the per-webhook
//! `events` filter; silence across a restart (persisted silence, persisted last-heard times).
//! Every wait is for the event it needs, bounded by 60 s.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use enocean_agent::esp3::{Frame, PacketType};
use enocean_agent::sim::building::ScriptOptions;
use enocean_agent::sim::{SimConfig, SimStick};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;

const SECRET: &str = "health-hmac-5d1e";

/// Envelopes received by one loopback receiver; a body whose signature does not verify is
/// answered 401 and counted as bad.
#[derive(Clone, Default)]
struct Inbox {
    bodies: Arc<Mutex<Vec<Value>>>,
    bad: Arc<Mutex<u32>>,
}

impl Inbox {
    fn envelopes(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
    /// Records of this kind, in arrival order.
    fn kind(&self, kind: &str) -> Vec<Value> {
        self.envelopes()
            .iter()
            .flat_map(|e| e["records"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["kind"] == kind)
            .collect()
    }
    fn bad(&self) -> u32 {
        *self.bad.lock().unwrap()
    }
}

fn receiver() -> (String, Inbox, Arc<tiny_http::Server>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let inbox = Inbox::default();
    let (s, b) = (server.clone(), inbox.clone());
    std::thread::spawn(move || {
        for mut req in s.incoming_requests() {
            let mut body = Vec::new();
            let _ = req.as_reader().read_to_end(&mut body);
            let sig = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Signature"))
                .map(|h| h.value.as_str().to_owned())
                .unwrap_or_default();
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(&body);
            let ok = hex::decode(&sig).is_ok_and(|s| mac.verify_slice(&s).is_ok());
            if ok {
                b.bodies
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                let _ = req.respond(tiny_http::Response::empty(200));
            } else {
                *b.bad.lock().unwrap() += 1;
                let _ = req.respond(tiny_http::Response::empty(401));
            }
        }
    });
    (format!("http://127.0.0.1:{port}/in"), inbox, server)
}

/// Watched: 01D00001 (2 s, default), 01D00005 and 01D00006 (1 h). Not watched: 01D00002
/// (`"0s"`), 01D00003 (a rocker without its own setting).
fn write_config(dir: &Path, link: &Path, all: &str, plain: &str, silence: &str) -> PathBuf {
    std::fs::write(dir.join("hmac.key"), format!("{SECRET}\n")).unwrap();
    let hook = |name: &str, url: &str, extra: &str| {
        format!(
            "\n[[webhook]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"2s\"\nbackoff_base = \"50ms\"\n\
             signing = {{ type = \"hmac\", secret_file = \"hmac.key\" }}\n{extra}"
        )
    };
    let text = format!(
        "[gateway]\nid = \"health\"\nclock_sync = \"floor\"\n\n[serial]\nport = \"{link}\"\n\n\
         [storage]\npath = \"{db}\"\ncommit_window = \"50ms\"\n\n[health]\nstatus_interval = \"1s\"\n\n\
         [learn]\nsilent_after = \"2s\"\n\n\
         [[device]]\nid = \"01D00001\"\neep = \"A5-02-05\"\nname = \"Cellar\"\n\n\
         [[device]]\nid = \"01D00002\"\neep = \"A5-02-05\"\nsilent_after = \"0s\"\n\n\
         [[device]]\nid = \"01D00003\"\neep = \"F6-02-01\"\n\n\
         [[device]]\nid = \"01D00005\"\neep = \"A5-02-05\"\nsilent_after = \"1h\"\n\n\
         [[device]]\nid = \"01D00006\"\neep = \"A5-02-05\"\nsilent_after = \"1h\"\n{}{}{}",
        hook("all", all, "events = [\"all\"]\n"),
        hook("plain", plain, ""),
        hook(
            "silence",
            silence,
            "events = [\"device.silent\", \"device.back\"]\ndevices = [\"01D00001\"]\n"
        ),
        link = link.display(),
        db = dir.join("outbox.db").display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start_agent(config: &Path, log: &Path) -> common::Reaper {
    common::Reaper(
        common::agent_command()
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("agent starts"),
    )
}

fn quiet_sim(link: &Path) -> SimStick {
    SimStick::start(SimConfig {
        rate: 2.0,
        script: ScriptOptions {
            seed: 5,
            repeat_probability: 0.0,
            noise_probability: 0.0,
            bad_crc_probability: 0.0,
            teach_in_probability: 0.0,
        },
        link: Some(link.to_path_buf()),
        ..SimConfig::default()
    })
    .unwrap()
}

/// A 4BS data telegram (A5-02-05, LRN bit set) from `sender`.
fn reading(sender: u32) -> Vec<u8> {
    let mut data = vec![0xA5, 0x00, 0x00, 0x80, 0x08];
    data.extend_from_slice(&sender.to_be_bytes());
    data.push(0);
    Frame::new(
        PacketType::RadioErp1,
        &data,
        &[1, 0xFF, 0xFF, 0xFF, 0xFF, 60, 0],
    )
    .unwrap()
    .encode()
}

use common::wait_until;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn of<'a>(records: &'a [Value], sensor: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["sensor"]["id"] == sensor)
        .collect()
}

#[test]
fn health_events_are_signed_filtered_and_silence_survives_a_restart() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (url_all, all, _s0) = receiver();
    let (url_plain, plain, _s1) = receiver();
    let (url_silence, silence, _s2) = receiver();
    let config = write_config(dir.path(), &link, &url_all, &url_plain, &url_silence);
    let log = dir.path().join("agent.log");
    let db = dir.path().join("outbox.db");
    runtime().block_on(async {
        let mut agent = start_agent(&config, &log);
        let sim = quiet_sim(&link);

        // gateway.status at start (after the handshake: base ID and firmware), then periodically.
        wait_until("a start and a periodic gateway.status", &log, || {
            let s = all.kind("gateway.status");
            s.iter().any(|r| r["status"]["reason"] == "start")
                && s.iter().any(|r| r["status"]["reason"] == "periodic")
        })
        .await;
        let start = all
            .kind("gateway.status")
            .into_iter()
            .find(|r| r["status"]["reason"] == "start")
            .unwrap();
        let st = &start["status"];
        assert_eq!(st["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(st["stick"]["base_id"], start["gateway"]["base_id"]);
        assert!(
            st["stick"]["base_id"]
                .as_str()
                .is_some_and(|b| b.len() == 8),
            "{st}"
        );
        assert!(st["stick"]["firmware"].is_string(), "{st}");
        assert!(
            st["disk_free_bytes"].as_u64().is_some_and(|b| b > 0),
            "{st}"
        );
        let names: Vec<&str> = st["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["all", "plain", "silence"]);
        for key in [
            "decoded",
            "raw",
            "duplicates",
            "crc_errors",
            "dropped",
            "telegrams",
        ] {
            assert!(st["counters"][key].is_u64(), "{key} in {st}");
        }
        assert!(
            start.get("raw").is_none() && start["sensor"]["id"] == "",
            "{start}"
        );

        // 01D00001 is never heard: silent after 2 s. The others are not watched or have 1 h.
        wait_until("device.silent for 01D00001", &log, || {
            !of(&silence.kind("device.silent"), "01D00001").is_empty()
        })
        .await;
        let s = all.kind("device.silent");
        let cellar = of(&s, "01D00001");
        assert_eq!(cellar.len(), 1, "{s:?}");
        assert_eq!(cellar[0]["sensor"]["name"], "Cellar");
        assert_eq!(cellar[0]["sensor"]["eep"], "A5-02-05");
        assert_eq!(cellar[0]["silence"]["silent_after_s"], 2);
        assert!(cellar[0]["silence"]["silent_for_s"].as_u64().unwrap() >= 2);
        for quiet in ["01D00002", "01D00003", "01D00005", "01D00006"] {
            assert!(of(&s, quiet).is_empty(), "{quiet} reported: {s:?}");
        }

        // Heard again: device.back; the last-heard facts of 01D00005/06 get stored.
        sim.inject(&reading(0x01D0_0001));
        sim.inject(&reading(0x01D0_0005));
        sim.inject(&reading(0x01D0_0006));
        wait_until("device.back for 01D00001", &log, || {
            !of(&silence.kind("device.back"), "01D00001").is_empty()
        })
        .await;
        // Silent again 2 s later (reported once per silence).
        wait_until("a second device.silent for 01D00001", &log, || {
            of(&silence.kind("device.silent"), "01D00001").len() == 2
        })
        .await;
        assert_eq!(agent.terminate().code(), Some(0));
        // The clean stop's own status went out before the exit (the senders deliver what is
        // committed at a stop while the webhook answers): no restart has happened yet.
        wait_until("the stop's gateway.status before any restart", &log, || {
            all.kind("gateway.status")
                .iter()
                .any(|r| r["status"]["reason"] == "stop")
        })
        .await;
        // `devices` shows what is watched: silent, a threshold, or not watched.
        let out = common::agent_command()
            .args(["devices", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let watch = |id: &str| {
            text.lines()
                .find(|l| l.starts_with(id))
                .and_then(|l| l.split_whitespace().last())
                .unwrap_or_else(|| panic!("{id} not listed:\n{text}"))
                .to_owned()
        };
        assert_eq!(watch("01D00001"), "silent", "{text}");
        assert_eq!(watch("01D00002"), "-", "{text}");
        assert_eq!(watch("01D00003"), "-", "{text}");
        assert_eq!(watch("01D00005"), "1h", "{text}");

        // Stored last-heard (unix milliseconds): 01D00005 three hours ago (judged silent at once
        // after the restart, its threshold being 1 h), 01D00006 a minute ago (not silent).
        {
            let conn = rusqlite::Connection::open(&db).unwrap();
            let ago = |s: i64| {
                (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s)).as_millisecond()
            };
            for (id, secs) in [("01D00005", 3 * 3600), ("01D00006", 60)] {
                let n = conn
                    .execute(
                        "UPDATE devices SET last_seen = ?1 WHERE id = ?2",
                        rusqlite::params![ago(secs), id],
                    )
                    .unwrap();
                assert_eq!(n, 1, "{id} has a stored last-heard time");
            }
        }
        let restarted = jiff::Timestamp::now();
        let log2 = dir.path().join("agent2.log");
        let mut agent = start_agent(&config, &log2);
        // The first run's stop status (delivered before its exit, checked above).
        wait_until("the stop's gateway.status", &log2, || {
            all.kind("gateway.status")
                .iter()
                .any(|r| r["status"]["reason"] == "stop")
        })
        .await;
        // The first run's totals: it heard the three injected readings, ran through two 2 s
        // silences, and its stick was identified.
        let stop = all
            .kind("gateway.status")
            .into_iter()
            .find(|r| r["status"]["reason"] == "stop")
            .unwrap();
        let st = &stop["status"];
        assert!(st["counters"]["telegrams"].as_u64() >= Some(3), "{st}");
        assert!(st["counters"]["decoded"].as_u64() >= Some(3), "{st}");
        assert!(st["uptime_s"].as_u64() >= Some(4), "{st}");
        assert!(st["stick"]["base_id"].is_string(), "{st}");
        // A status of the new run at least 3 s old: by then an unpersisted 2 s silence would
        // have been reported again.
        wait_until(
            "a gateway.status of the second run after 3 s",
            &log2,
            || {
                // Received after the restart: the first run's last statuses may be delivered
                // by the second.
                all.kind("gateway.status").iter().any(|r| {
                    r["status"]["reason"] == "periodic"
                        && r["status"]["uptime_s"].as_u64() >= Some(3)
                        && r["received_at"]
                            .as_str()
                            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                            .is_some_and(|t| t >= restarted)
                })
            },
        )
        .await;
        let s = all.kind("device.silent");
        assert_eq!(
            of(&s, "01D00001").len(),
            2,
            "a device silent before the restart is not reported again: {s:?}"
        );
        let long_ago = of(&s, "01D00005");
        assert_eq!(
            long_ago.len(),
            1,
            "judged from the stored last-heard time: {s:?}"
        );
        assert!(long_ago[0]["silence"]["silent_for_s"].as_u64().unwrap() >= 3 * 3600);
        assert!(of(&s, "01D00006").is_empty(), "{s:?}");
        // Heard after the restart: back, as it was silent when the first run stopped.
        sim.inject(&reading(0x01D0_0001));
        wait_until("device.back after the restart", &log2, || {
            of(&silence.kind("device.back"), "01D00001").len() == 2
        })
        .await;
        assert_eq!(agent.terminate().code(), Some(0));
        sim.stop().await;
    });

    // Every body verified; each health event came alone, its envelope's event its kind.
    assert_eq!(all.bad() + plain.bad() + silence.bad(), 0);
    for e in all.envelopes() {
        let records = e["records"].as_array().unwrap();
        let kinds: Vec<&str> = records
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        if kinds.iter().any(|k| *k != "telemetry" && *k != "teach_in") {
            assert_eq!(kinds.len(), 1, "{e}");
            assert_eq!(e["event"], kinds[0], "{e}");
        } else {
            assert_eq!(e["event"], "telemetry", "{e}");
        }
    }
    // The default filter: readings only. The silence hook: its device's silence events only.
    assert!(!plain.kind("telemetry").is_empty());
    for e in plain.envelopes() {
        assert_eq!(e["event"], "telemetry", "{e}");
    }
    for e in silence.envelopes() {
        let r = &e["records"][0];
        assert!(
            (r["kind"] == "device.silent" || r["kind"] == "device.back")
                && r["sensor"]["id"] == "01D00001",
            "{e}"
        );
    }
}
