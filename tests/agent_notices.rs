//! What the agent tells systemd, with `[serial] port = "sim"` (the built-in simulated stick) and
//! the agent run in-process: READY first, STATUS naming the stick, WATCHDOG no more often than
//! asked, STOPPING at shutdown; and everything received is committed.

mod common;

use std::time::Duration;

use enocean_agent::agent::{self, Notice, Options};
use enocean_agent::config::Config;
use enocean_agent::eep::Library;
use enocean_agent::sim::SimConfig;

#[test]
fn ready_status_watchdog_stopping() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[serial]\nport = \"sim\"\n[storage]\npath = \"{}\"\ncommit_window = \"100ms\"\n[[device]]\nid = \"0180A3F2\"\neep = \"A5-04-01\"\n",
            dir.path().join("outbox.db").display()
        ),
    )
    .unwrap();
    let cfg = Config::load(&path).unwrap();
    let library = Library::builtin().unwrap();
    let options = Options {
        sim: SimConfig {
            rate: 50.0,
            ..SimConfig::default()
        },
        watchdog: Some(Duration::from_millis(200)),
        status_interval: Duration::from_millis(300),
        ..Options::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut notices = Vec::new();
    let report = rt
        .block_on(agent::run(
            &cfg,
            &library,
            options,
            async { tokio::time::sleep(Duration::from_millis(2000)).await },
            &mut |n| notices.push(n),
        ))
        .unwrap();
    assert!(
        matches!(notices.first(), Some(Notice::Ready(_))),
        "{notices:?}"
    );
    assert_eq!(notices.last(), Some(&Notice::Stopping));
    let watchdogs = notices.iter().filter(|n| **n == Notice::Watchdog).count();
    // 2 s with a 200 ms interval: about ten, however many telegrams woke the loop.
    assert!(
        (3..=11).contains(&watchdogs),
        "{watchdogs} watchdog notices"
    );
    let statuses: Vec<&String> = notices
        .iter()
        .filter_map(|n| match n {
            Notice::Status(s) => Some(s),
            _ => None,
        })
        .collect();
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().any(|s| s.contains("stick FF8A1200")),
        "{statuses:?}"
    );
    assert!(report.telegrams > 10, "{report:?}");
    assert_eq!(
        report.committed,
        report.telegrams - report.teach_ins,
        "{report:?}"
    );
    assert!(report.decoded > 0, "{report:?}");
}
