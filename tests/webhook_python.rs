//! End to end against a receiver written in Python (`tests/receiver.py`): the hex HMAC verified
//! with `hmac.compare_digest`, Standard Webhooks verified by the `standardwebhooks` package.
//!
//! The interpreter is `$ENOCEAN_AGENT_PYTHON`, else `.venv/bin/python` in the crate when present,
//! else `python3`. Without the `standardwebhooks` package the Standard Webhooks part is skipped
//! with a loud message (CI installs it: `pip install standardwebhooks`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::*;
use enocean_agent::outbox::Store;
use enocean_agent::secret::Secret;
use enocean_agent::webhook::Sender;
use enocean_agent::webhook::config::SigningConfig;

const HMAC_SECRET: &str = "py-hmac-secret";
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn python() -> String {
    if let Ok(p) = std::env::var("ENOCEAN_AGENT_PYTHON") {
        return p;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    if std::path::Path::new(venv).exists() {
        return venv.into();
    }
    "python3".into()
}

struct PyReceiver {
    child: Child,
    port: u16,
    sw_available: bool,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Drop for PyReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> PyReceiver {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/receiver.py");
    let mut child = Command::new(python())
        .args([
            script,
            "--hmac-secret",
            HMAC_SECRET,
            "--sw-secret",
            SW_SECRET,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Python receiver (set ENOCEAN_AGENT_PYTHON)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(v) = line.strip_prefix("PORT ") {
                let _ = tx.send(("PORT", v.to_owned()));
            } else if let Some(v) = line.strip_prefix("SW ") {
                let _ = tx.send(("SW", v.to_owned()));
            } else if let Ok(v) = serde_json::from_str(&line) {
                l2.lock().unwrap().push(v);
            }
        }
    });
    let (mut port, mut sw) = (None, None);
    while port.is_none() {
        let (k, v) = rx
            .recv_timeout(WAIT)
            .expect("Python receiver did not start");
        match k {
            "PORT" => port = v.parse().ok(),
            _ => sw = Some(v == "available"),
        }
    }
    PyReceiver {
        child,
        port: port.unwrap(),
        sw_available: sw.unwrap_or(false),
        lines,
    }
}

#[test]
fn python_receiver_verifies_hmac_and_standard_webhooks() {
    let py = start();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}", py.port);
    let mut hmac_hook = fast_webhook("py-hmac", &format!("{base}/hmac"));
    hmac_hook.signing = Some(SigningConfig::Hmac {
        secret: Some(Secret::new(HMAC_SECRET)),
        secret_file: None,
        header: "Signature".into(),
        prefix: String::new(),
        encoding: Default::default(),
    });
    let mut wrong = fast_webhook("py-wrong", &format!("{base}/hmac"));
    wrong.max_retries = 0;
    wrong.signing = Some(SigningConfig::Hmac {
        secret: Some(Secret::new("not-the-secret")),
        secret_file: None,
        header: "Signature".into(),
        prefix: String::new(),
        encoding: Default::default(),
    });
    let mut hooks = vec![hmac_hook, wrong];
    if py.sw_available {
        let mut sw = fast_webhook("py-sw", &format!("{base}/sw"));
        sw.signing = Some(SigningConfig::StandardWebhooks {
            secret: Some(Secret::new(SW_SECRET)),
            secret_file: None,
            previous_secret: None,
            previous_secret_file: None,
        });
        hooks.push(sw);
    } else {
        eprintln!(
            "\n!!!!!!!!\n!!! SKIPPING the Standard Webhooks part: the Python package \
             `standardwebhooks` is missing for {}.\n!!! Install it: pip install standardwebhooks \
             (or set ENOCEAN_AGENT_PYTHON to a python that has it)\n!!!!!!!!\n",
            python()
        );
    }
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let sender = Sender::spawn(
        &hooks,
        &s.path,
        fast_options(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    ob.set_waker(sender.waker());
    enqueue_n(&mut ob, "0180A3F2", 3);
    let store = Store::open(&s.path).unwrap();
    let expect_ok = if py.sw_available { 6 } else { 3 };
    // The receiver's lines come through a pipe and a reader thread: they can arrive after the
    // sender has recorded the outcome, so all of them are part of the condition.
    assert!(wait_for(WAIT, || {
        let l = py.lines.lock().unwrap();
        l.iter().filter(|v| v["ok"] == true).count() == expect_ok
            && l.iter().filter(|v| v["ok"] == false).count() == 3
            && store.failed(Some("py-wrong"), None).unwrap().len() == 3
    }));
    sender.stop();
    let lines = py.lines.lock().unwrap().clone();
    // The wrong secret was rejected by the receiver: verification is real.
    let rejected = lines.iter().filter(|v| v["ok"] == false).count();
    assert_eq!(rejected, 3, "{lines:?}");
    assert!(store.failed(Some("py-hmac"), None).unwrap().is_empty());
    if py.sw_available {
        assert!(store.failed(Some("py-sw"), None).unwrap().is_empty());
        for v in lines.iter().filter(|v| v["path"] == "/sw") {
            assert_eq!(v["webhook_id"], v["id"]);
        }
    }
}
