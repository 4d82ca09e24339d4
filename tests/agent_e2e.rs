//! The agent as an operator runs it: the simulated stick on a real pseudo-terminal, `enocean-agent
//! run` as a child process, and a receiver on 127.0.0.1 that verifies every HMAC signature itself.
//! All waits are bounded; nothing here asserts wall-clock times.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enocean_agent::sim::building::{Chunk, DEVICES, Emission, Script, ScriptOptions, TrueValue};
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

/// The scenarios here run one at a time. The simulator's pty master is inherited by every child
/// this process starts while it is open (tokio-serial does not set close-on-exec), so an agent
/// started by one scenario would keep another scenario's stick "plugged in" across its replug.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SCENARIO: Mutex<()> = Mutex::new(());
    SCENARIO.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Telegram limits at which the stream of `seed` ends cleanly, the first at or after each of
/// `at_least`: the last original telegram is no teach-in, nothing follows it (no copy, noise or
/// bad frame), and its sender never sent that payload before, so the agent cannot take it for a
/// copy. Its delivery then proves that the agent has read everything the stick sent up to there:
/// the condition to wait for, whatever the speed of the machine.
fn clean_ends(seed: u64, at_least: &[u64]) -> Vec<(u64, Emission)> {
    let mut script = Script::new(ScriptOptions {
        seed,
        ..ScriptOptions::default()
    });
    let mut heard = HashSet::new();
    let mut ends = Vec::new();
    while ends.len() < at_least.len() {
        let Chunk::Telegram(e) = script.next_chunk() else {
            continue;
        };
        let fresh = heard.insert((e.sender, e.rorg, e.payload.clone()));
        let limit = e.seq + 1;
        if !e.repeated
            && !e.teach_in
            && fresh
            && !script.has_pending()
            && limit >= at_least[ends.len()]
        {
            ends.push((limit, e));
        }
    }
    ends
}

/// True when the receiver has the reading of telegram `e`.
fn delivered(inbox: &Inbox, e: &Emission) -> bool {
    let (id, payload) = (format!("{:08X}", e.sender), hex::encode_upper(&e.payload));
    inbox.records().iter().any(|(r, _)| {
        r["sensor"]["id"].as_str() == Some(id.as_str())
            && r["raw"]["payload"].as_str() == Some(payload.as_str())
    })
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
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (port, inbox, _server) = receiver();
    let config = write_config(dir.path(), &link, port);
    let log = dir.path().join("agent.log");
    runtime().block_on(async {
        // The stick sends the first part of the stream and pauses at a clean end; once the agent
        // has delivered that last reading (so nothing is in flight), the stick is unplugged for
        // half a second and plugged back at the same path, and the rest follows.
        let ends = clean_ends(7, &[30, 80]);
        let (pause, last_before) = &ends[0];
        let (end, last) = &ends[1];
        // The agent starts first and waits for the stick to appear. Started after the sim, it
        // would inherit the pty master's descriptor from this process, and closing the master
        // in `replug` would not hang up its side.
        let mut agent = start_agent(&config, &log);
        let mut sim = SimStick::start(sim_config(&link, *pause, 7)).unwrap();
        wait_until("the reading before the pause", common::WAIT, || {
            delivered(&inbox, last_before)
        })
        .await;
        assert_eq!(sim.stats().telegrams, *pause);
        sim.replug(Duration::from_millis(500));
        sim.set_max_telegrams(Some(*end));
        if tokio::time::timeout(common::WAIT, sim.wait_finished())
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
        assert_eq!(sim.stats().telegrams, *end);
        // The last reading delivered: the agent has read every telegram; stop it and compare
        // with what it says it committed.
        wait_until("the last reading", common::WAIT, || delivered(&inbox, last)).await;
        common::signal(&agent, "-TERM");
        assert_eq!(wait_exit(&mut agent, common::WAIT).await, Some(0));
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
        // Every reading was stored without its id and boot id (body format 0x03, the boot id
        // as 16 bytes) and delivered with this boot's id as the kernel gives it.
        let db = rusqlite::Connection::open(dir.path().join("outbox.db")).unwrap();
        let formats: Vec<(i64, i64)> = db
            .prepare("SELECT hex(substr(body, 1, 1)), count(*) FROM telemetry GROUP BY 1")
            .unwrap()
            .query_map([], |r| {
                let f: String = r.get(0)?;
                Ok((i64::from_str_radix(&f, 16).unwrap_or(-1), r.get(1)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(formats, vec![(3, records.len() as i64)]);
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        for (r, _) in &records {
            assert_eq!(
                r["received_monotonic"]["boot_id"].as_str(),
                Some(boot.trim()),
                "{r}"
            );
        }

        // The gateway's base ID, from the stick's handshake, is in every reading received after
        // the first answer, across the replug (a later handshake that could not read it keeps
        // it); only readings received before that first answer may lack it.
        let mut by_seq: Vec<&serde_json::Value> = records.iter().map(|(r, _)| r).collect();
        by_seq.sort_by_key(|r| r["seq"].as_u64());
        let known = by_seq
            .iter()
            .position(|r| r["gateway"]["base_id"] == "FF8A1200")
            .expect("no reading carries the stick's base ID");
        assert!(
            by_seq[..known]
                .iter()
                .all(|r| r["gateway"]["base_id"].is_null())
        );
        assert!(
            by_seq[known..]
                .iter()
                .all(|r| r["gateway"]["base_id"] == "FF8A1200"),
            "a reading lost the base ID after it was known"
        );
        assert!(
            known < by_seq.len() / 2,
            "most readings carry the base ID: {known} of {} do not",
            by_seq.len()
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
    let _alone = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (port, inbox, _server) = receiver();
    let config = write_config(dir.path(), &link, port);
    let db = dir.path().join("outbox.db");
    runtime().block_on(async {
        // No telegram limit: every round finds new telegrams to commit, however fast or slow the
        // machine is.
        let sim = SimStick::start(SimConfig {
            max_telegrams: None,
            record: false,
            ..sim_config(&link, 0, 11)
        })
        .unwrap();
        // SIGKILL mid-stream, then SIGTERM mid-stream, then a last run that drains the outbox.
        let mut committed_before_kill = Vec::new();
        for (round, sig) in ["-KILL", "-TERM"].iter().enumerate() {
            let before: HashSet<String> = if round == 0 {
                HashSet::new()
            } else {
                common::committed_ids(&db)
                    .expect("outbox readable")
                    .into_iter()
                    .collect()
            };
            let log = dir.path().join(format!("agent-{round}.log"));
            let mut agent = start_agent(&config, &log);
            // What the round needs: readings committed by *this* run, read from the outbox file.
            // Deliveries would not do: re-sends of the last run's readings count there too.
            let mut fresh = 0;
            wait_until("10 readings committed by this run", common::WAIT, || {
                fresh = common::committed_ids(&db).map_or(0, |ids| {
                    ids.iter().filter(|id| !before.contains(*id)).count()
                });
                fresh >= 10
            })
            .await;
            common::signal(&agent, sig);
            let code = wait_exit(&mut agent, common::WAIT).await;
            if *sig == "-TERM" {
                assert_eq!(code, Some(0));
                let stats = stopped_line(&log);
                assert_eq!(stats["committed"], stats["telegrams"] - stats["teach-ins"]);
            } else {
                committed_before_kill = common::committed_ids(&db).expect("outbox readable");
            }
        }
        let committed = common::committed_ids(&db).expect("outbox readable");
        // Ten or more fresh ones per round, all distinct.
        assert!(committed.len() >= 20, "{} committed", committed.len());
        let now: HashSet<&String> = committed.iter().collect();
        assert!(
            committed_before_kill.iter().all(|id| now.contains(id)),
            "a reading committed before SIGKILL is gone from the outbox"
        );
        let log = dir.path().join("agent-final.log");
        let mut agent = start_agent(&config, &log);
        let delivered = || -> HashSet<String> {
            inbox
                .records()
                .iter()
                .map(|(r, _)| r["id"].as_str().unwrap().to_string())
                .collect()
        };
        // Everything committed before is delivered, and this run is past its start-up (it has
        // committed a reading of its own) before it is told to stop.
        wait_until("every committed telemetry delivered", common::WAIT, || {
            let d = delivered();
            committed.iter().all(|id| d.contains(id))
                && common::committed_ids(&db).is_some_and(|ids| ids.len() > committed.len())
        })
        .await;
        common::signal(&agent, "-TERM");
        assert_eq!(wait_exit(&mut agent, common::WAIT).await, Some(0));
        sim.stop().await;
        assert!(inbox.records().iter().all(|(_, ok)| *ok));
        assert!(!link.exists(), "the simulator removed its link");
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
