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
    let f = failing.clone();
    let rx = Receiver::start(move |_, _| {
        if f.load(Ordering::SeqCst) {
            Reply::status(503).body("maintenance")
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

    let (code, out, _) = cli(&cfg_path, &["webhook", "list"]);
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.starts_with("main")).unwrap();
    assert!(line.contains("deactivated"), "{out}");
    assert!(
        line.split_whitespace().any(|w| w == "3"),
        "backlog 3: {out}"
    );

    let (code, out, _) = cli(&cfg_path, &["outbox", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("main"), "{out}");

    let (code, out, err) = cli(&cfg_path, &["outbox", "failed"]);
    assert_eq!(code, 0);
    assert!(err.contains("2 failed deliveries"), "{err}");
    assert!(out.contains("http_503"), "{out}");

    let (code, out, _) = cli(&cfg_path, &["deliveries", "--failed", "--limit", "3"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 4, "{out}");

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

    // Resend one by id, then the rest with --failed.
    let failed = store.failed(None, None).unwrap();
    let first = failed[0].row.to_string();
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

    // Disable keeps it off even after enable of the deactivation is cleared; enable drains.
    let (code, _, _) = cli(&cfg_path, &["webhook", "disable", "main"]);
    assert_eq!(code, 0);
    let (code, _, err) = cli(&cfg_path, &["webhook", "enable", "nope"]);
    assert_eq!(code, 3, "{err}");
    let before = rx.count();
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
