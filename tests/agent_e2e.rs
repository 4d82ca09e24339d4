//! The agent as an operator runs it: the simulated stick on a real pseudo-terminal, `enocean-agent
//! run` as a child process, and a receiver on 127.0.0.1 that verifies every HMAC signature itself.
//! All waits are bounded; nothing here asserts wall-clock times.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enocean_agent::sim::building::{DEVICES, ScriptOptions, TrueValue};
use enocean_agent::sim::{SimConfig, SimStick};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "e2e-secret-2f9c";

/// Every record the receiver got, with whether its delivery's signature verified.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<(Value, bool)>>>);

impl Inbox {
    fn records(&self) -> Vec<(Value, bool)> {
        self.0.lock().unwrap().clone()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A receiver on 127.0.0.1 that checks `Signature` (hex HMAC-SHA256 of the body) independently.
fn receiver() -> (u16, Inbox, Arc<tiny_http::Server>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let inbox = Inbox::default();
    let (s, inb) = (server.clone(), inbox.clone());
    std::thread::spawn(move || {
        for mut req in s.incoming_requests() {
            let mut body = Vec::new();
            req.as_reader().read_to_end(&mut body).unwrap();
            let sig = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Signature"))
                .map(|h| h.value.as_str().to_string())
                .unwrap_or_default();
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(&body);
            let ok = hex::decode(&sig).is_ok_and(|s| mac.verify_slice(&s).is_ok());
            let v: Value = serde_json::from_slice(&body).unwrap();
            for r in v["records"].as_array().unwrap() {
                inb.0.lock().unwrap().push((r.clone(), ok));
            }
            let _ = req.respond(tiny_http::Response::empty(if ok { 200 } else { 401 }));
        }
    });
    (port, inbox, server)
}

fn write_config(dir: &Path, port_path: &Path, receiver_port: u16) -> PathBuf {
    let mut text = format!(
        "[gateway]\nid = \"e2e\"\n\n[serial]\nport = \"{}\"\n\n[storage]\npath = \"{}\"\ncommit_window = \"100ms\"\n\n[learn]\nenabled = true\n",
        port_path.display(),
        dir.join("outbox.db").display()
    );
    for d in &DEVICES[..DEVICES.len() - 1] {
        text += &format!(
            "\n[[device]]\nid = \"{:08X}\"\neep = \"{}\"\nname = \"{}\"\n",
            d.id, d.eep, d.name
        );
    }
    text += &format!(
        "\n[[webhook]]\nname = \"receiver\"\nurl = \"http://127.0.0.1:{receiver_port}/in\"\ntimeout = \"2s\"\nbackoff_base = \"50ms\"\nsigning = {{ type = \"hmac\", secret = \"{SECRET}\" }}\n"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start_agent(config: &Path, log: &Path) -> Child {
    common::agent_command()
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("agent starts")
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits (bounded) for the child to exit and returns its exit code.
async fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    panic!("agent did not exit within {limit:?}");
}

/// Waits (bounded) until `done` holds.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The numbers of the agent's closing log line ("stopped: N telegrams, N duplicates dropped, …").
fn stopped_line(log: &Path) -> HashMap<String, u64> {
    let text = std::fs::read_to_string(log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("stopped: "))
        .unwrap_or_else(|| panic!("no closing line in the log:\n{text}"));
    let tail = &line[line.find("stopped: ").unwrap() + 9..];
    tail.split(", ")
        .filter_map(|part| {
            let (n, what) = part.split_once(' ')?;
            Some((what.to_string(), n.parse().ok()?))
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn sim_config(link: &Path, count: u64, seed: u64) -> SimConfig {
    SimConfig {
        rate: 40.0,
        script: ScriptOptions {
            seed,
            ..ScriptOptions::default()
        },
        max_telegrams: Some(count),
        link: Some(link.to_path_buf()),
        record: true,
        ..SimConfig::default()
    }
}

#[test]
fn every_telegram_arrives_signed_and_decoded_across_a_replug() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (port, inbox, _server) = receiver();
    let config = write_config(dir.path(), &link, port);
    let log = dir.path().join("agent.log");
    runtime().block_on(async {
        // The agent starts first and waits for the stick to appear. Started after the sim, it
        // would inherit the pty master's descriptor from this process, and closing the master
        // in `replug` would not hang up its side.
        let mut agent = start_agent(&config, &log);
        let mut sim = SimStick::start(sim_config(&link, 80, 7)).unwrap();
        wait_until("the first deliveries", Duration::from_secs(30), || {
            inbox.len() >= 15
        })
        .await;
        // Unplug the stick for half a second and plug it back at the same path.
        sim.replug(Duration::from_millis(500));
        if tokio::time::timeout(Duration::from_secs(60), sim.wait_finished())
            .await
            .is_err()
        {
            let _ = agent.kill();
            panic!(
                "the simulated stick did not finish ({:?}); agent log:\n{}",
                sim.stats(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let sent = sim.sent();
        // Every telegram is now with the agent; wait until deliveries have been quiet for 3 s
        // (bounded), then stop it and compare with what it says it committed.
        let mut last = (inbox.len(), Instant::now());
        wait_until("deliveries to settle", Duration::from_secs(60), || {
            if inbox.len() != last.0 {
                last = (inbox.len(), Instant::now());
            }
            last.1.elapsed() > Duration::from_secs(3)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        signal(&agent, "-TERM");
        assert_eq!(
            wait_exit(&mut agent, Duration::from_secs(20)).await,
            Some(0)
        );
        sim.stop().await;

        let stats = stopped_line(&log);
        let records = inbox.records();
        // Nothing lost on the way: every telegram the stick sent reached the agent, across the
        // replug, and every one that is not a teach-in or a dropped copy was delivered.
        assert_eq!(
            stats["telegrams"] + stats["duplicates dropped"],
            sent.len() as u64
        );
        assert_eq!(stats["committed"], stats["telegrams"] - stats["teach-ins"]);
        assert_eq!(records.len() as u64, stats["committed"]);
        assert!(stats["connects"] >= 2, "the replug was not seen: {stats:?}");
        assert!(
            sent.iter().any(|s| s.pty == 2),
            "nothing was sent after the replug"
        );
        assert!(
            records.iter().all(|(_, ok)| *ok),
            "a signature did not verify"
        );
        let ids: HashSet<&str> = records
            .iter()
            .map(|(r, _)| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids.len(),
            records.len(),
            "a telemetry id was delivered twice"
        );

        // Each delivery is one the stick sent, with the right values.
        let by_telegram: HashMap<(String, String), &enocean_agent::sim::Sent> = sent
            .iter()
            .map(|s| {
                let key = (
                    format!("{:08X}", s.emission.sender),
                    hex::encode_upper(&s.emission.payload),
                );
                (key, s)
            })
            .collect();
        let (mut checked_values, mut checked_states) = (0, 0);
        for (r, _) in &records {
            let key = (
                r["sensor"]["id"].as_str().unwrap().to_string(),
                r["raw"]["payload"].as_str().unwrap().to_string(),
            );
            let s = by_telegram
                .get(&key)
                .unwrap_or_else(|| panic!("not sent: {key:?}"));
            assert!(
                !s.emission.teach_in,
                "a teach-in was delivered as a reading"
            );
            assert_eq!(r["sensor"]["eep"], s.emission.eep);
            assert_eq!(r["gateway"]["base_id"], "FF8A1200");
            for (k, truth) in &s.emission.values {
                let got = &r["values"][*k]["value"];
                match truth {
                    TrueValue::Number(x) => {
                        let g = got.as_f64().unwrap_or_else(|| panic!("{k} missing in {r}"));
                        // The telegram carries a quantised value: one raw step at most.
                        assert!((g - x).abs() <= 0.5, "{k}: delivered {g}, true {x}");
                        checked_values += 1;
                    }
                    // States are compared where both sides use the semantic vocabulary (the
                    // simulator's rocker labels are its own: `AI` where the profile says `a1`).
                    TrueValue::Text(t) if *k == "contact" || *k == "window" => {
                        let key = if *k == "window" {
                            "window_handle"
                        } else {
                            "contact"
                        };
                        assert_eq!(r["values"][key]["value"].as_str(), Some(*t), "{k} in {r}");
                        checked_states += 1;
                    }
                    TrueValue::Text(_) => {}
                }
            }
        }
        // The device that announced itself with a teach-in was learned, and `devices` lists it
        // next to the configured ones with when it was last heard.
        let out = common::agent_command()
            .args(["devices", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8_lossy(&out.stdout);
        let learned = DEVICES.last().unwrap();
        let line = listing
            .lines()
            .find(|l| l.starts_with(&format!("{:08X}", learned.id)))
            .unwrap_or_else(|| panic!("learned device missing:\n{listing}"));
        assert!(
            line.contains("learned") && line.contains(learned.eep),
            "{line}"
        );
        assert_eq!(
            listing.lines().filter(|l| l.contains("configured")).count(),
            DEVICES.len() - 1
        );
        assert!(
            checked_values > 20,
            "only {checked_values} numeric values checked"
        );
        assert!(
            checked_states > 0,
            "no state (contact, window handle) checked"
        );
    });
}

#[test]
fn killed_or_stopped_agent_loses_nothing_it_committed() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (port, inbox, _server) = receiver();
    let config = write_config(dir.path(), &link, port);
    let db = dir.path().join("outbox.db");
    runtime().block_on(async {
        let sim = SimStick::start(sim_config(&link, 150, 11)).unwrap();
        // SIGKILL mid-stream, then SIGTERM mid-stream, then a last run that drains the outbox.
        for (round, sig) in ["-KILL", "-TERM"].iter().enumerate() {
            let log = dir.path().join(format!("agent-{round}.log"));
            let mut agent = start_agent(&config, &log);
            let before = inbox.len();
            wait_until("deliveries", Duration::from_secs(30), || {
                inbox.len() >= before + 10
            })
            .await;
            signal(&agent, sig);
            let code = wait_exit(&mut agent, Duration::from_secs(20)).await;
            if *sig == "-TERM" {
                assert_eq!(code, Some(0));
                let stats = stopped_line(&log);
                assert_eq!(stats["committed"], stats["telegrams"] - stats["teach-ins"]);
            }
        }
        let committed: Vec<String> = {
            let conn = rusqlite::Connection::open(&db).unwrap();
            let mut stmt = conn.prepare("SELECT id FROM telemetry").unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert!(committed.len() >= 20);
        let log = dir.path().join("agent-final.log");
        let mut agent = start_agent(&config, &log);
        let delivered = || -> HashSet<String> {
            inbox
                .records()
                .iter()
                .map(|(r, _)| r["id"].as_str().unwrap().to_string())
                .collect()
        };
        wait_until(
            "every committed telemetry delivered",
            Duration::from_secs(30),
            || {
                let d = delivered();
                committed.iter().all(|id| d.contains(id))
            },
        )
        .await;
        signal(&agent, "-TERM");
        assert_eq!(
            wait_exit(&mut agent, Duration::from_secs(20)).await,
            Some(0)
        );
        sim.stop().await;
        assert!(inbox.records().iter().all(|(_, ok)| *ok));
    });
}

#[test]
fn bad_configurations_exit_78_with_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[serial]\nprot = \"/dev/x\"\n", "prot"),
        ("[storage]\ncommit_batch = \"many\"\n", "commit_batch"),
        (
            "[[webhook]]\nname = \"a\"\nurl = \"https://example.invalid/x\"\nauth = { type = \"bearer\", token_file = \"/nonexistent/token\" }\n",
            "token_file",
        ),
        ("[[webhook]]\nname = \"a\"\nurl = \"not a url\"\n", "url"),
        (
            "[[device]]\nid = \"0180A3F2\"\neep = \"A5-4-1\"\n",
            "device[0].eep",
        ),
        (
            "[[device]]\nid = \"0180A3F2\"\neep = \"X5-04-01\"\n",
            "device[0].eep",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        for cmd in ["check-config", "run"] {
            let out = common::agent_command()
                .args([cmd, "--config"])
                .arg(&path)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{cmd} {text}: {err}");
            assert!(
                err.contains(&format!("bad{i}.toml")),
                "{cmd}: no file in {err}"
            );
            assert!(err.contains(key), "{cmd}: key {key} not named in {err}");
            assert!(
                err.contains(&format!("bad{i}.toml:")),
                "{cmd}: no line number in {err}"
            );
        }
    }
}
