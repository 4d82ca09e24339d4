//! The README's start-of-run promises attacked with a stick that never answers: "`gateway.status`
//! at start (once the stick's handshake answered, at most 10 s after start)" and "a failed
//! handshake never blocks reception". The simulated stick on a real pseudo-terminal ignores
//! CO_RD_VERSION / CO_RD_IDBASE (a USB 300 with a wedged firmware, or another ESP3 device); the real
//! binary must warn, still deliver readings to a loopback receiver, and still send its start
//! status — without the facts the handshake would have given, never with invented ones.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enocean_agent::sim::building::ScriptOptions;
use enocean_agent::sim::{SimConfig, SimStick};
use serde_json::Value;

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

#[test]
fn a_stick_that_never_answers_the_handshake_still_gets_readings_and_a_start_status_through() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
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
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"mute\"\n[serial]\nport = \"{}\"\n[storage]\npath = \"{}\"\ncommit_window = \"50ms\"\n\
             [[webhook]]\nname = \"in\"\nurl = \"{url}\"\nevents = [\"all\"]\n",
            link.display(),
            dir.path().join("outbox.db").display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sim = SimStick::start(SimConfig {
            rate: 5.0,
            script: ScriptOptions {
                seed: 11,
                repeat_probability: 0.0,
                noise_probability: 0.0,
                bad_crc_probability: 0.0,
                teach_in_probability: 0.0,
            },
            link: Some(link.clone()),
            answer_commands: false,
            ..SimConfig::default()
        })
        .unwrap();
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
        // The simulated stick runs on this thread's runtime: wait without blocking it.
        let until = Instant::now() + common::WAIT;
        let start = loop {
            let found = records
                .lock()
                .unwrap()
                .iter()
                .find(|r| r["kind"] == "gateway.status" && r["status"]["reason"] == "start")
                .cloned();
            let readings = records
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r["kind"] == "telemetry")
                .count();
            if let Some(s) = found.filter(|_| readings >= 3) {
                break s;
            }
            assert!(
                Instant::now() < until,
                "no start status and readings from a mute stick ({readings} readings); log:\n{}",
                log_text(&log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let text = log_text(&log);
        assert!(
            text.contains("stick did not answer the handshake"),
            "the failed handshake is not said:\n{text}"
        );
        // The start status says what is known: the port is open, the handshake's facts are
        // absent (null), never guessed.
        let stick = &start["status"]["stick"];
        assert_eq!(stick["connected"], true, "{start}");
        for fact in ["base_id", "firmware", "api", "description"] {
            assert!(stick[fact].is_null(), "{fact} invented: {start}");
        }
        assert!(
            start["status"]["counters"]["telegrams"].is_u64(),
            "counters missing: {start}"
        );
        assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");
        // A clean stop still works with a mute stick.
        let status = agent.terminate();
        assert_eq!(status.code(), Some(0), "{}", log_text(&log));
        sim.stop().await;
    });
}
