//! The reader never waits on the disk: with every commit slowed to 1 s on purpose (the test-only
//! `ENOCEAN_AGENT_TEST_COMMIT_DELAY_MS`, an SD card at its worst), the simulated stick at 240
//! telegrams/s — about what 57 600 baud carries — for 30 s loses nothing. The agent runs as a
//! child process on a real pseudo-terminal; every wait is bounded and waits for its condition.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use enocean_agent::sim::building::ScriptOptions;
use enocean_agent::sim::{SimConfig, SimStick};

const RATE: f64 = 240.0;
const TELEGRAMS: u64 = 7_200; // 30 s at RATE

fn committed_rows(db: &Path) -> u64 {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM telemetry", [], |r| r.get::<_, i64>(0))
        .map_or(0, |n| n as u64)
}

#[test]
fn a_commit_that_takes_a_second_loses_no_telegram_at_240_per_second() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let db = dir.path().join("outbox.db");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[serial]\nport = \"{}\"\ndedup_window = \"0s\"\n[storage]\npath = \"{}\"\n",
            link.display(),
            db.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The agent first: started after the sim it would inherit the pty master.
        let mut agent = common::Reaper(
            common::agent_command()
                .args(["run", "--config"])
                .arg(&config)
                .env("RUST_LOG", "info")
                .env("ENOCEAN_AGENT_TEST_COMMIT_DELAY_MS", "1000")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let mut sim = SimStick::start(SimConfig {
            rate: RATE,
            script: ScriptOptions {
                seed: 11,
                ..ScriptOptions::default()
            },
            max_telegrams: Some(TELEGRAMS),
            link: Some(link.clone()),
            record: true,
            ..SimConfig::default()
        })
        .unwrap();
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        if tokio::time::timeout(Duration::from_secs(300), sim.wait_finished())
            .await
            .is_err()
        {
            let _ = agent.0.kill();
            panic!("the sim did not finish: {:?}\n{}", sim.stats(), log_text());
        }
        let stats = sim.stats();
        // With the dedup window off every telegram the stick passed on (repeated copies too)
        // must end up committed, except teach-ins, which are not readings.
        let expected = sim.sent().iter().filter(|s| !s.emission.teach_in).count() as u64;
        let until = Instant::now() + Duration::from_secs(120);
        while committed_rows(&db) < expected {
            assert!(
                Instant::now() < until,
                "{} of {expected} readings committed; sim {stats:?}\n{}",
                committed_rows(&db),
                log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // SIGTERM and a bounded wait (the agent needs nothing from this runtime to stop).
        agent.terminate();
        sim.stop().await;
        assert_eq!(committed_rows(&db), expected, "{}", log_text());
        let text = log_text();
        let stopped = text
            .lines()
            .find(|l| l.contains("stopped: "))
            .unwrap_or_else(|| panic!("no closing line:\n{text}"));
        assert!(
            stopped.contains(", 0 not committed, 0 lost at hand-off"),
            "{stopped}"
        );
        assert!(
            stopped.contains(&format!("{} committed", expected)),
            "{stopped} (expected {expected})"
        );
    });
}
