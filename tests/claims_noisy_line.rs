//! The README's "rejected input is summarised in the log at most once a minute" attacked with the
//! real binary: the simulated stick on a real pseudo-terminal sends a line full of noise and frames
//! with bad CRCs (a stick on a long, badly shielded cable, or a different device on the port)
//! between good telegrams. The journal must get a summary line, not a line per rejection — at most
//! one per started minute of the run (plus the first) — and the good telegrams among the junk must
//! still be decoded and delivered.

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
fn a_noisy_line_is_summarised_not_logged_per_rejection_and_good_telegrams_get_through() {
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
            "[gateway]\nid = \"noisy\"\n[serial]\nport = \"{}\"\n[storage]\npath = \"{}\"\ncommit_window = \"50ms\"\n\
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
            rate: 100.0,
            script: ScriptOptions {
                seed: 17,
                repeat_probability: 0.0,
                noise_probability: 0.4,
                bad_crc_probability: 0.3,
                teach_in_probability: 0.0,
            },
            link: Some(link.clone()),
            ..SimConfig::default()
        })
        .unwrap();
        let started = Instant::now();
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
        // Enough junk for hundreds of rejections (600), and good readings delivered among it.
        let until = Instant::now() + common::WAIT;
        loop {
            let s = sim.stats();
            let readings = records
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r["kind"] == "telemetry")
                .count();
            if s.noise_chunks + s.bad_crc_frames >= 600 && readings >= 100 {
                break;
            }
            assert!(
                Instant::now() < until,
                "{s:?}, {readings} readings; log:\n{}",
                log_text(&log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status = agent.terminate();
        let elapsed = started.elapsed();
        let junk = sim.stats();
        sim.stop().await;
        let text = log_text(&log);
        assert_eq!(status.code(), Some(0), "{text}");
        let summaries = text
            .lines()
            .filter(|l| l.contains("rejected input on the line"))
            .count();
        // The first summary at once, then at most one per minute (the run's start is before
        // `started` is read at most by the spawn; one more for a minute boundary crossed).
        let allowed = 2 + usize::try_from(elapsed.as_secs() / 60).unwrap();
        assert!(
            (1..=allowed).contains(&summaries),
            "{summaries} summaries in {elapsed:?} for {} noise chunks and {} bad frames:\n{text}",
            junk.noise_chunks,
            junk.bad_crc_frames
        );
        // The log stays small: no line per rejected frame.
        let lines = text.lines().count();
        assert!(
            u64::try_from(lines).unwrap() < (junk.noise_chunks + junk.bad_crc_frames) / 10,
            "{lines} log lines for {} rejections:\n{text}",
            junk.noise_chunks + junk.bad_crc_frames
        );
    });
}
