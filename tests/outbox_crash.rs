//! Crash safety: a child process (this test binary re-executed) enqueues and delivers while the
//! test kills it with SIGKILL at random points, 50 times. After every kill each telemetry the child
//! reported committed is in the outbox; in the end every id was delivered at least once.
//!
//! Each kill comes at a random moment *after* the child reported its first commit, so every round
//! exercises a working child however long it takes to start on a loaded machine.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::*;
use enocean_agent::outbox::{Outbox, Store};
use enocean_agent::webhook::Sender;

const CHILD_ENV: &str = "ENOCEAN_AGENT_CRASH_CHILD";

/// The child's body; does nothing unless started by `kill_at_random_points`.
#[test]
fn crash_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let db = std::env::var("CRASH_DB").unwrap();
    let url = std::env::var("CRASH_URL").unwrap();
    let hooks = vec![fast_webhook("crash", &url)];
    let mut s = enocean_agent::outbox::StorageConfig::at(db);
    s.commit_window = Duration::from_millis(5);
    s.min_free_bytes = 0;
    let mut ob = Outbox::open(&s, &["crash"]).unwrap();
    let mut opts = fast_options();
    opts.ack_window = Duration::from_millis(30);
    let sender = Sender::spawn(&hooks, &s.path, opts, Arc::new(AtomicBool::new(false))).unwrap();
    ob.set_waker(sender.waker());
    let mut out = std::io::stdout().lock();
    // The harness has printed "test crash_child ... " without a newline.
    writeln!(out).unwrap();
    let start = Instant::now();
    if mode == "drain" {
        let store = Store::open(&s.path).unwrap();
        while start.elapsed() < WAIT {
            let st = store.status(&s.path).unwrap();
            let w = &st.webhooks[0];
            if w.depth == 0 && w.retrying == 0 {
                writeln!(out, "DRAINED").unwrap();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sender.stop();
        return;
    }
    let mut n = 0u32;
    while start.elapsed() < WAIT {
        ob.enqueue(telemetry("0180A3F2", n)).unwrap();
        n += 1;
        for c in ob.poll(Instant::now()).unwrap() {
            writeln!(out, "C {}", c.id).unwrap();
        }
        out.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn run_child(db: &std::path::Path, url: &str, mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env("CRASH_DB", db)
        .env("CRASH_URL", url)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_at_random_points() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    // Every seventh request fails, so some deliveries are stored and retried across crashes.
    let rx = Receiver::start(|n, _| {
        if n % 7 == 3 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    });
    let mut committed: Vec<String> = Vec::new();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for round in 0..50 {
        let mut child = run_child(&db, &rx.url, "produce");
        let mut lines = Lines::new(child.stdout.take().unwrap());
        let working = lines.wait(WAIT, |l| l.iter().any(|l| l.starts_with("C ")));
        // The random kill point (not a wait for anything): 0 to 100 ms into the child's work.
        std::thread::sleep(Duration::from_millis(rng.u64(0..100)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(working, "round {round}: the child committed nothing");
        let before = committed.len();
        for line in lines.read_to_end(WAIT) {
            if let Some(id) = line.strip_prefix("C ") {
                committed.push(id.to_owned());
            }
        }
        let store = Store::open(&db).unwrap();
        for id in &committed[before..] {
            assert!(
                store.has_telemetry(id).unwrap(),
                "round {round}: committed {id} lost"
            );
        }
    }
    // At least one commit per round.
    assert!(committed.len() >= 50, "only {} committed", committed.len());
    let mut child = run_child(&db, &rx.url, "drain");
    let mut lines = Lines::new(child.stdout.take().unwrap());
    let status = wait_exit(&mut child, 2 * WAIT);
    assert!(status.success());
    let drained = lines
        .read_to_end(WAIT)
        .iter()
        .any(|l| l.trim() == "DRAINED");
    assert!(drained, "backlog did not drain");
    let delivered: HashSet<String> = rx
        .requests()
        .iter()
        .filter(|r| !r.body.is_empty())
        .flat_map(record_ids)
        .collect();
    let missing: Vec<&String> = committed
        .iter()
        .filter(|id| !delivered.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} committed ids never delivered",
        missing.len(),
        committed.len()
    );
    let store = Store::open(&db).unwrap();
    assert!(store.failed(None, None).unwrap().is_empty());
    // Every copy of a delivery (retries, re-sends after a lost acknowledgement) has the same bytes.
    let mut by_id: std::collections::HashMap<String, Vec<u8>> = Default::default();
    let mut copies = 0;
    for r in rx.requests() {
        let id = r.json()["id"].as_str().unwrap().to_owned();
        if let Some(prev) = by_id.get(&id) {
            copies += 1;
            assert_eq!(prev, &r.body, "delivery {id} re-sent with different bytes");
        } else {
            by_id.insert(id, r.body.clone());
        }
    }
    eprintln!(
        "{} committed, {} deliveries, {copies} repeated copies",
        committed.len(),
        by_id.len()
    );
}
