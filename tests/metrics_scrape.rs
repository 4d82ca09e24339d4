//! The metrics endpoint and textfile of the running binary: a real scrape over loopback, parsed
//! as the Prometheus text exposition format, with figures checked against what a loopback
//! receiver got and what a dead endpoint's webhook must show.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text exposition format strictly enough to catch a malformed line: every sample's
/// metric has `# HELP` and `# TYPE`, counters end in `_total`, no series twice.
fn parse(text: &str) -> Vec<Sample> {
    let mut types = BTreeMap::new();
    let mut helps = HashSet::new();
    let mut samples = Vec::new();
    let mut seen = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge"].contains(&kind),
                "unexpected type {kind}"
            );
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helps.insert(rest.split(' ').next().unwrap().to_owned());
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                (name.to_owned(), labels(body))
            }
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
        let kind = types
            .get(&name)
            .unwrap_or_else(|| panic!("{name} has no TYPE"));
        assert!(helps.contains(&name), "{name} has no HELP");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
        assert!(seen.insert(series.to_owned()), "{series} twice");
        samples.push((name, labels, value));
    }
    samples
}

/// `a="x",b="y \"q\""` → {a: x, b: y "q"}.
fn labels(body: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {key} value quoted");
        let mut value = String::new();
        loop {
            match chars.next().expect("closing quote") {
                '\\' => match chars.next().expect("escape") {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name && label.is_none_or(|(k, v)| l.get(k).map(String::as_str) == Some(v))
        })
        .map(|s| s.2)
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

use common::wait_until_blocking as wait_until;

/// Starts `enocean-agent run --config CONFIG` with its log beside the configuration and waits for
/// the metrics address it logs: (the agent, its log, host:port).
fn start(config: &std::path::Path) -> (common::Reaper, std::path::PathBuf, String) {
    let log = config.with_file_name("agent.log");
    let agent = common::Reaper(
        common::agent_command()
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut addr = String::new();
    wait_until("the metrics address in the log", &log, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        match text
            .lines()
            .find_map(|l| l.split("metrics on http://").nth(1))
            .and_then(|r| r.split('/').next())
        {
            Some(a) => {
                addr = a.to_owned();
                true
            }
            None => false,
        }
    });
    (agent, log, addr)
}

/// A webhook receiver on 127.0.0.1 that answers 200 to everything: its URL and the records it
/// got.
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/in",
        server.server_addr().to_ip().unwrap().port()
    );
    let records: Arc<Mutex<Vec<Value>>> = Arc::default();
    let r = records.clone();
    std::thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let mut body = Vec::new();
            let _ = req.as_reader().read_to_end(&mut body);
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            r.lock()
                .unwrap()
                .extend(v["records"].as_array().cloned().unwrap_or_default());
            let _ = req.respond(tiny_http::Response::empty(200));
        }
    });
    (url, records)
}

#[test]
fn scrape_of_the_running_agent_and_its_textfile() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A receiver that takes everything, and a port nobody listens on.
    let (good, records) = receiver();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}/in", l.local_addr().unwrap().port())
    };
    let textfile = dir.path().join("enocean_agent.prom");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"metrics \\\"gw\\\"\"\n[serial]\nport = \"sim\"\n[storage]\npath = \"{}\"\ncommit_window = \"50ms\"\n\
             [metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\ntextfile = \"{}\"\nwebhook_figures_every = \"0s\"\n\
             [[webhook]]\nname = \"good\"\nurl = \"{good}\"\n\
             [[webhook]]\nname = \"dead\"\nurl = \"{dead}\"\nbackoff_base = \"50ms\"\nbackoff_max = \"200ms\"\n",
            dir.path().join("outbox.db").display(),
            textfile.display(),
        ),
    )
    .unwrap();
    let (mut agent, log, addr) = start(&config);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    // Readings reach the good receiver; the scrape counts at least as many telegrams.
    wait_until("ten delivered readings", &log, || {
        records.lock().unwrap().len() >= 10
    });
    let delivered = records.lock().unwrap().len() as f64;
    let base_id = records.lock().unwrap()[0]["gateway"]["base_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut samples = Vec::new();
    wait_until(
        "a scrape showing the telegrams, the stick and a failing webhook",
        &log,
        || {
            let (status, body) = get(&addr, "/metrics");
            assert_eq!(status, 200, "{body}");
            samples = parse(&body);
            value(&samples, "enocean_agent_telegrams_total", None) >= Some(delivered)
                && value(&samples, "enocean_agent_stick_connected", None) == Some(1.0)
                && value(
                    &samples,
                    "enocean_agent_webhook_state",
                    Some(("webhook", "dead")),
                )
                .is_some()
                && samples.iter().any(|(n, l, _)| {
                    n == "enocean_agent_webhook_state"
                        && l["webhook"] == "dead"
                        && l["state"] != "active"
                        && l["state"] != "new"
                })
        },
    );
    let info = samples
        .iter()
        .find(|(n, _, _)| n == "enocean_agent_info")
        .unwrap();
    assert_eq!(info.1["base_id"], base_id);
    assert_eq!(info.1["gateway"], "metrics \"gw\"");
    assert_eq!(info.1["version"], env!("CARGO_PKG_VERSION"));
    let state = |hook: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == "enocean_agent_webhook_state" && l["webhook"] == hook)
            .map(|(_, l, _)| l["state"].clone())
            .unwrap()
    };
    assert_eq!(state("good"), "active");
    assert!(
        ["retrying", "offline", "deactivated-probing"].contains(&state("dead").as_str()),
        "{}",
        state("dead")
    );
    assert!(
        value(
            &samples,
            "enocean_agent_webhook_backlog",
            Some(("webhook", "dead"))
        )
        .is_some_and(|b| b > 0.0)
    );
    assert!(value(&samples, "enocean_agent_committed_total", None).is_some_and(|c| c >= delivered));
    assert!(value(&samples, "enocean_agent_disk_free_bytes", None).is_some_and(|b| b > 0.0));
    for name in [
        "enocean_agent_decoded_total",
        "enocean_agent_raw_total",
        "enocean_agent_duplicates_total",
        "enocean_agent_crc_errors_total",
        "enocean_agent_dropped_total",
        "enocean_agent_uptime_seconds",
        "enocean_agent_backlog",
    ] {
        assert!(value(&samples, name, None).is_some(), "{name} missing");
    }
    let (status, _) = get(&addr, "/other");
    assert_eq!(status, 404);
    // The dead webhook never comes past what it was not given: its readings are flushed to the
    // disk within a commit window.
    wait_until("a flush of readings the dead webhook lacks", &log, || {
        let samples = parse(&get(&addr, "/metrics").1);
        value(&samples, "enocean_agent_outbox_flushes_total", None).is_some_and(|f| f >= 1.0)
    });

    // The textfile: the same format, written atomically.
    wait_until("the textfile", &log, || textfile.exists());
    let file = parse(&std::fs::read_to_string(&textfile).unwrap());
    assert!(value(&file, "enocean_agent_committed_total", None).is_some());
    assert_eq!(agent.terminate().code(), Some(0));
    // Rewritten at exit with the final figures: at least what was delivered.
    let file = parse(&std::fs::read_to_string(&textfile).unwrap());
    assert!(value(&file, "enocean_agent_telegrams_total", None).is_some_and(|t| t >= delivered));
    assert!(!dir.path().join("enocean_agent.prom.tmp").exists());
}

/// With every output delivering, a commit window's readings are at the receiver before the
/// window ends and need no flush of their own: the skipped flushes show it (eventually: on a
/// loaded machine a delivery may miss a window, which is then flushed).
#[test]
fn windows_every_output_delivered_are_not_flushed() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (good, _records) = receiver();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw\"\n[serial]\nport = \"sim\"\n[storage]\npath = \"{}\"\ncommit_window = \"2s\"\n\
             [metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\
             [[webhook]]\nname = \"good\"\nurl = \"{good}\"\n",
            dir.path().join("outbox.db").display(),
        ),
    )
    .unwrap();
    let (mut agent, log, addr) = start(&config);
    wait_until(
        "a window whose readings were all delivered in time",
        &log,
        || {
            let samples = parse(&get(&addr, "/metrics").1);
            value(&samples, "enocean_agent_outbox_flushes_skipped_total", None)
                .is_some_and(|f| f >= 1.0)
        },
    );
    assert_eq!(agent.terminate().code(), Some(0));
}
