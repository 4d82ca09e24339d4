//! Two README promises attacked with the real binary, the built-in simulated stick, a real SQLite
//! outbox and a loopback receiver:
//! - "A port that cannot be bound is logged as an error and the agent runs on without the
//!   endpoint": the metrics port is taken by another listener before the agent starts; the agent
//!   must say so and still receive, commit and deliver readings, and still write its textfile.
//! - "SIGTERM/SIGINT stop it cleanly": Ctrl-C (SIGINT) mid-stream must exit 0 with every record
//!   it counted committed really in the outbox file and none lost.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde_json::Value;

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

use common::wait_until_blocking as wait_until;

/// The number after `label` in the agent's `stopped: …` line (`… 12 committed, …`).
fn stop_figure(line: &str, label: &str) -> u64 {
    line.split(", ")
        .find_map(|part| {
            let part = part.trim_start_matches(|c: char| !c.is_ascii_digit());
            let (n, rest) = part.split_once(' ')?;
            (rest == label).then(|| n.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"))
}

#[test]
fn a_taken_metrics_port_is_an_error_line_and_readings_still_flow_then_sigint_loses_nothing() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Something else already listens on the metrics port (a second agent, node-exporter, …).
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().to_string();

    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!(
        "http://127.0.0.1:{}/in",
        server.server_addr().to_ip().unwrap().port()
    );
    let records: Arc<Mutex<Vec<Value>>> = Arc::default();
    {
        let (s, r) = (server.clone(), records.clone());
        std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = Vec::new();
                let _ = req.as_reader().read_to_end(&mut body);
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    r.lock()
                        .unwrap()
                        .extend(v["records"].as_array().cloned().unwrap_or_default());
                }
                let _ = req.respond(tiny_http::Response::empty(200));
            }
        });
    }
    let db = dir.path().join("outbox.db");
    let textfile = dir.path().join("enocean_agent.prom");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"claims\"\n[serial]\nport = \"sim\"\n[storage]\npath = \"{}\"\ncommit_window = \"50ms\"\n\
             [metrics]\nenabled = true\nlisten = \"{taken}\"\ntextfile = \"{}\"\n\
             [[webhook]]\nname = \"in\"\nurl = \"{url}\"\nevents = [\"all\"]\n",
            db.display(),
            textfile.display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let mut agent = common::Reaper(
        common::agent_command()
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );

    // The error names the address and says the agent runs on.
    wait_until("the metrics error line", &log, || {
        log_text(&log).lines().any(|l| {
            l.contains("ERROR")
                && l.contains(&taken)
                && l.contains("running without the metrics endpoint")
        })
    });
    // … and it does: readings from the simulated stick are delivered, the endpoint is not.
    wait_until("five delivered readings", &log, || {
        records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "telemetry")
            .count()
            >= 5
    });
    assert!(
        !log_text(&log).contains("metrics on http://"),
        "no endpoint may be announced on a taken port:\n{}",
        log_text(&log)
    );
    // The textfile does not depend on the port: it is still written.
    wait_until("the metrics textfile", &log, || {
        std::fs::read_to_string(&textfile)
            .is_ok_and(|t| t.contains("enocean_agent_telegrams_total"))
    });
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");

    // Ctrl-C mid-stream: a clean stop.
    common::signal(&agent.0, "-INT");
    let status = common::wait_exit(&mut agent.0, common::WAIT);
    let text = log_text(&log);
    assert_eq!(status.code(), Some(0), "exit after SIGINT:\n{text}");
    let stopped = text
        .lines()
        .find(|l| l.contains("stopped: "))
        .unwrap_or_else(|| panic!("no stop line:\n{text}"));
    assert_eq!(stop_figure(stopped, "not committed"), 0, "{stopped}");
    assert_eq!(stop_figure(stopped, "lost at hand-off"), 0, "{stopped}");
    let committed = stop_figure(stopped, "committed");
    assert!(committed >= 5, "{stopped}");
    // Every record the agent counted committed is in the file another process opens afterwards,
    // and the stop's gateway.status was committed before the exit.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM telemetry", [], |r| r.get(0))
        .unwrap();
    assert!(
        u64::try_from(rows).unwrap() >= committed,
        "{rows} rows in the outbox, {committed} counted committed"
    );
    // Stored compressed (src/outbox/body.rs); the library reads it back as the JSON committed.
    let bodies: Vec<String> = conn
        .prepare("SELECT body, id FROM telemetry ORDER BY seq")
        .unwrap()
        .query_map([], |r| {
            let id = enocean_agent::outbox::id_text(r.get_ref(1)?).expect("stored id");
            Ok(
                enocean_agent::outbox::body::decode_record(r.get_ref(0)?, &id)
                    .expect("stored body"),
            )
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let stop_status = bodies
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .any(|r| r["kind"] == "gateway.status" && r["status"]["reason"] == "stop");
    assert!(stop_status, "no stop gateway.status in the outbox");
    // Every delivered id is one of the committed rows (nothing reached the receiver uncommitted).
    let ids = common::committed_ids(&db).unwrap();
    for r in records.lock().unwrap().iter() {
        let id = r["id"].as_str().unwrap();
        assert!(ids.iter().any(|c| c == id), "delivered {id} not committed");
    }
    drop(squatter);
}

/// "serves Prometheus text on `http://127.0.0.1:9464/metrics` (`listen = "0.0.0.0:9464"` to
/// expose it; nothing is authenticated)": turning metrics on without `listen` must not expose the
/// unauthenticated endpoint beyond this machine. The effective configuration the daemon would run
/// with is read back from `check-config`.
#[test]
fn metrics_switched_on_without_listen_stay_on_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"x\"\n[serial]\nport = \"sim\"\n[storage]\npath = \"{}\"\n[metrics]\nenabled = true\n",
            dir.path().join("outbox.db").display()
        ),
    )
    .unwrap();
    let out = common::agent_command()
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let effective: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}: {text}"));
    let listen = effective["metrics"]["listen"].as_str().unwrap();
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    assert!(addr.ip().is_loopback(), "default listen {listen}");
    assert_eq!(addr.port(), 9464);
}
