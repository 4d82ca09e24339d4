//! The command line against the same database a running sender uses: list, status, failed,
//! resend, deliveries, test, enable, disable, and the exit codes.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use enocean_agent::config::Config;
use enocean_agent::outbox::Store;
use enocean_agent::webhook::Sender;

fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_enocean-agent"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "off")
        .output()
        .expect("run enocean-agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_commands_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(true));
    let accept_bad = Arc::new(AtomicBool::new(false));
    let (f, a) = (failing.clone(), accept_bad.clone());
    let rx = Receiver::start(move |_, r| {
        if f.load(Ordering::SeqCst) {
            Reply::status(503).body("maintenance")
        } else if String::from_utf8_lossy(&r.body).contains("0BADBAD0") && !a.load(Ordering::SeqCst)
        {
            Reply::status(422).body("unknown sensor")
        } else {
            Reply::ok()
        }
    });
    let cfg_path = dir.path().join("config.toml");
    std::fs::write(
        &cfg_path,
        format!(
            r#"
[gateway]
id = "cli-gw"
[storage]
path = {:?}
commit_window = "10ms"
min_free_bytes = 0
[[webhook]]
name = "main"
url = "{}"
max_retries = 1
backoff_base = "5ms"
backoff_max = "10ms"
deactivate_after = 2
# Long enough that the deactivated state stays put while the commands look at it.
probe_base = "1h"
probe_max = "1h"
signing = {{ type = "hmac", secret = "cli-secret" }}
"#,
            dir.path().join("outbox.db"),
            rx.url
        ),
    )
    .unwrap();
    let cfg = Config::load(&cfg_path).unwrap();
    let mut ob = open_outbox(&cfg.storage, &cfg.webhooks);
    let sender = Sender::spawn(
        &cfg.webhooks,
        &cfg.storage.path,
        fast_options(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    ob.set_waker(sender.waker());
    enqueue_n(&mut ob, "0180A3F2", 2);
    let store = Store::open(&cfg.storage.path).unwrap();
    assert!(wait_for(WAIT, || {
        store
            .webhook("main")
            .unwrap()
            .unwrap()
            .deactivated_at
            .is_some()
    }));
    enqueue_n(&mut ob, "0180A3F2", 3);

    // Health at a glance: state, backlog (the 2 held + 3 queued), failures in a row, next
    // probe, last failure with its reason.
    let (code, out, _) = cli(&cfg_path, &["webhook", "list"]);
    assert_eq!(code, 0);
    let header = out.lines().next().unwrap();
    for col in [
        "STATE",
        "BACKLOG",
        "OLDEST",
        "FAILED",
        "CONSEC",
        "NEXT",
        "LAST-OK",
        "LAST-FAILURE",
    ] {
        assert!(header.contains(col), "{out}");
    }
    let line = out.lines().find(|l| l.starts_with("main")).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[1], "deactivated-probing", "{out}");
    assert_eq!(words[2], "5", "backlog: {out}");
    assert_eq!(words[4], "0", "failed: {out}");
    assert_eq!(words[5], "2", "consecutive: {out}");
    // Next probe within the hour (probe_base "1h" with the default jitter, never beyond).
    assert_eq!(words[6], "in", "{out}");
    assert!(words[7].ends_with('m') || words[7] == "1h", "{out}");
    assert!(line.contains("http_503"), "{out}");

    let (code, out, _) = cli(&cfg_path, &["outbox", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("main"), "{out}");

    let (code, out, _) = cli(&cfg_path, &["deliveries", "--failed", "--limit", "3"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 4, "{out}");
    // Times as RFC 3339 with milliseconds (stored as integers), trigger and outcome by name, in
    // their columns.
    for line in out.lines().skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(w[0].len(), "2026-12-05T10:00:00.123Z".len(), "{out}");
        let at: jiff::Timestamp = w[0].parse().unwrap_or_else(|e| panic!("{e}: {out}"));
        assert!(at <= jiff::Timestamp::now(), "{out}");
        assert_eq!((w[1], w[2], w[3]), ("main", "auto", "failed"), "{out}");
    }

    // Test delivery while deactivated: one attempt, failure → exit 4, health unchanged.
    let (code, out, _) = cli(&cfg_path, &["webhook", "test", "main"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("HTTP 503"), "{out}");
    assert_eq!(
        store.webhook("main").unwrap().unwrap().consecutive_failures,
        2
    );

    failing.store(false, Ordering::SeqCst);
    let (code, out, _) = cli(&cfg_path, &["webhook", "test", "main"]);
    assert_eq!(code, 0, "{out}");
    let test_req = rx.requests().last().unwrap().clone();
    assert_eq!(test_req.json()["event"], "test");
    assert_eq!(test_req.json()["gateway"]["id"], "cli-gw");

    // `webhook enable` does not wait for the next probe (an hour away): the backlog drains now.
    let (code, _, _) = cli(&cfg_path, &["webhook", "enable", "main"]);
    assert_eq!(code, 0);
    let delivered = || {
        rx.requests()
            .iter()
            .filter(|r| r.json()["event"] == "telemetry")
            .flat_map(record_ids)
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    assert!(wait_for(WAIT, || delivered() == 5));
    let (_, out, _) = cli(&cfg_path, &["webhook", "list"]);
    let line = out.lines().find(|l| l.starts_with("main")).unwrap();
    assert!(line.split_whitespace().nth(1) == Some("active"), "{out}");

    // A rejected body: failed, listed, resendable.
    let bad = telemetry("0BADBAD0", 7);
    ob.enqueue(bad).unwrap();
    ob.flush().unwrap();
    assert!(wait_for(WAIT, || store.failed(None, None).unwrap().len() == 1));
    let (code, out, err) = cli(&cfg_path, &["outbox", "failed"]);
    assert_eq!(code, 0);
    assert!(err.contains("1 failed deliveries"), "{err}");
    assert!(out.contains("http_422"), "{out}");
    let created = out
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_default();
    assert!(created.parse::<jiff::Timestamp>().is_ok(), "{out}");
    // `--since` compares creation times: a delivery created before a time is not resent.
    let (code, out, _) = cli(
        &cfg_path,
        &[
            "outbox",
            "resend",
            "--failed",
            "--since",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(store.failed(None, None).unwrap().len(), 1, "{out}");
    let (code, out, _) = cli(&cfg_path, &["webhook", "list"]);
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.starts_with("main")).unwrap();
    assert_eq!(line.split_whitespace().nth(4), Some("1"), "failed: {out}");
    assert!(line.contains("http_422"), "{out}");

    // Resend by id: still refused → exit 4; accepted → exit 0; again → exit 5 (not failed).
    let first = store.failed(None, None).unwrap()[0].row.to_string();
    let (code, out, _) = cli(&cfg_path, &["outbox", "resend", &first]);
    assert_eq!(code, 4, "{out}");
    accept_bad.store(true, Ordering::SeqCst);
    let (code, out, _) = cli(&cfg_path, &["outbox", "resend", &first]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("delivered"), "{out}");
    let (code, out, _) = cli(&cfg_path, &["outbox", "resend", &first]);
    assert_eq!(code, 5, "already delivered: {out}");
    let (code, _, _) = cli(&cfg_path, &["outbox", "resend", "999999"]);
    assert_eq!(code, 3);
    let (code, out, _) = cli(
        &cfg_path,
        &[
            "outbox",
            "resend",
            "--failed",
            "--since",
            "1h",
            "--webhook",
            "main",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(store.failed(None, None).unwrap().is_empty());

    // Disabled: telemetry queues, nothing is sent; enable drains.
    let (code, _, _) = cli(&cfg_path, &["webhook", "disable", "main"]);
    assert_eq!(code, 0);
    let before = rx.count();
    enqueue_n(&mut ob, "0180A3F2", 3);
    let (_, out, _) = cli(&cfg_path, &["webhook", "list"]);
    let line = out.lines().find(|l| l.starts_with("main")).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((words[1], words[2]), ("disabled", "3"), "{out}");
    let (code, _, err) = cli(&cfg_path, &["webhook", "enable", "nope"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(rx.count(), before, "nothing sent while disabled");
    let (code, _, _) = cli(&cfg_path, &["webhook", "enable", "main"]);
    assert_eq!(code, 0);
    assert!(wait_for(WAIT, || rx.count() == before + 3));
    sender.stop();

    // Configuration errors exit 78 with the location.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[storage]\npathh = \"x\"\n").unwrap();
    let (code, _, err) = cli(&bad, &["outbox", "status"]);
    assert_eq!(code, 78);
    assert!(
        err.contains("bad.toml:2:1") && err.contains("pathh"),
        "{err}"
    );
}
