//! What the agent tells systemd, with `[serial] port = "sim"` (the built-in simulated stick) and
//! the agent run in-process: READY first, STATUS naming the stick, WATCHDOG no more often than
//! asked, STOPPING at shutdown; and everything received is committed. The run lasts until what
//! is checked has happened, not a fixed time.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

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
    let seen: Rc<RefCell<Vec<Notice>>> = Rc::default();
    let db = dir.path().join("outbox.db");
    let watched = seen.clone();
    // Stops once there are a STATUS naming the stick, three WATCHDOGs and 40 readings committed
    // to the outbox file (or, on a machine that never gets there, at the bound, and the
    // assertions below say what is missing).
    let shutdown = async move {
        let until = Instant::now() + common::WAIT;
        while Instant::now() < until {
            let notices = watched.borrow().clone();
            let enough = watchdogs(&notices) >= 3
                && statuses(&notices)
                    .iter()
                    .any(|s| s.contains("stick FF8A1200"))
                && common::committed_ids(&db).is_some_and(|ids| ids.len() >= 40);
            if enough {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let started = Instant::now();
    let report = rt
        .block_on(agent::run(&cfg, &library, options, shutdown, &mut |n| {
            seen.borrow_mut().push(n)
        }))
        .unwrap();
    let elapsed = started.elapsed();
    let notices = seen.borrow().clone();
    assert!(
        matches!(notices.first(), Some(Notice::Ready(_))),
        "{notices:?}"
    );
    // STOPPING once, at shutdown. The loop keeps its STATUS and WATCHDOG rhythm while it commits
    // the last readings, so either may follow it (on a loaded machine that takes a while).
    let stopping: Vec<usize> = notices
        .iter()
        .enumerate()
        .filter(|(_, n)| **n == Notice::Stopping)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stopping.len(), 1, "{notices:?}");
    assert!(
        notices[stopping[0]..]
            .iter()
            .skip(1)
            .all(|n| matches!(n, Notice::Status(_) | Notice::Watchdog)),
        "{notices:?}"
    );
    // At least three, and no more than one per 200 ms of the run, however many telegrams woke
    // the loop (a slower machine only makes the run, and so the bound, longer).
    let watchdogs = watchdogs(&notices);
    let most = elapsed.as_millis() / 200 + 1;
    assert!(
        watchdogs >= 3 && watchdogs as u128 <= most,
        "{watchdogs} watchdog notices in {elapsed:?}"
    );
    let statuses = statuses(&notices);
    assert!(
        statuses.iter().any(|s| s.contains("stick FF8A1200")),
        "{statuses:?}"
    );
    assert!(report.telegrams >= 40, "{report:?}");
    assert_eq!(
        report.committed,
        report.telegrams - report.teach_ins,
        "{report:?}"
    );
    assert!(report.decoded > 0, "{report:?}");
}

fn watchdogs(notices: &[Notice]) -> usize {
    notices.iter().filter(|n| **n == Notice::Watchdog).count()
}

fn statuses(notices: &[Notice]) -> Vec<String> {
    notices
        .iter()
        .filter_map(|n| match n {
            Notice::Status(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}
