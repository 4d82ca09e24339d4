//! Shared test helpers: vector files, the agent binary (also under qemu), a scripted HTTP receiver
//! on 127.0.0.1 (tiny_http), telemetry builders, fast webhook settings, bounded waiting, child
//! processes stopped gracefully and their output read line by line as it comes.
//!
//! Waiting rule of the suite: a test waits for the condition it needs ([`wait_for`],
//! [`Lines::wait`], [`committed_ids`]) within a generous bound ([`WAIT`]), never for a fixed time,
//! and never asserts a count that depends on how fast the machine is.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use enocean_agent::outbox::{Outbox, StorageConfig};
use enocean_agent::telemetry::{Gateway, Raw, Reading, Sensor, Signal, Telemetry};
use enocean_agent::webhook::{SenderOptions, WebhookConfig};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// When the receiver read it (monotonic clock).
    pub at: Instant,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
}

/// The receiver's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }
    pub fn ok() -> Self {
        Self::status(200)
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: &str) -> Self {
        self.body = b.into();
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

/// A scripted HTTP server on 127.0.0.1.
pub struct Receiver {
    pub url: String,
    pub port: u16,
    pub log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Arc<Script>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start(script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1:0", script)
    }

    /// A receiver on a given address (e.g. a port an endpoint comes back on).
    pub fn start_on(
        addr: &str,
        script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let server = tiny_http::Server::http(addr).expect("bind the receiver's address");
        let ip = server.server_addr().to_ip().expect("ip").ip();
        let port = server.server_addr().to_ip().expect("ip").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<Arc<Script>>> = Arc::new(Mutex::new(Arc::new(script)));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s, st) = (log.clone(), script.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(20)) else {
                    continue;
                };
                let mut body = Vec::new();
                let _ = std::io::Read::read_to_end(req.as_reader(), &mut body);
                let rec = Received {
                    at: Instant::now(),
                    path: req.url().to_owned(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                    body,
                };
                let n = {
                    let mut g = l.lock().unwrap();
                    g.push(rec.clone());
                    g.len() - 1
                };
                let f = s.lock().unwrap().clone();
                let reply = f(n, &rec);
                if !reply.delay.is_zero() {
                    std::thread::sleep(reply.delay);
                }
                let mut resp =
                    tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
                for (k, v) in reply.headers {
                    if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                        resp.add_header(h);
                    }
                }
                let _ = req.respond(resp);
            }
        });
        Self {
            url: format!("http://{ip}:{port}/hook"),
            port,
            log,
            script,
            stop,
            thread: Some(thread),
        }
    }

    /// Replaces the script.
    pub fn set_script(&self, f: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(f);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A receiver whose answer the test switches: every request gets the current status, except
/// that `rule` may answer a request itself (e.g. refuse one body). Remembers what it answered.
pub struct Endpoint {
    pub rx: Receiver,
    status: Arc<std::sync::atomic::AtomicU16>,
    answers: Arc<Mutex<Vec<u16>>>,
}

impl Endpoint {
    pub fn start(status: u16) -> Self {
        Self::with_rule(status, |_| None)
    }

    pub fn with_rule(
        status: u16,
        rule: impl Fn(&Received) -> Option<u16> + Send + Sync + 'static,
    ) -> Self {
        let current = Arc::new(std::sync::atomic::AtomicU16::new(status));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (c, a) = (current.clone(), answers.clone());
        let rx = Receiver::start(move |n, r| {
            let s = rule(r).unwrap_or_else(|| c.load(Ordering::SeqCst));
            let mut g = a.lock().unwrap();
            if g.len() <= n {
                g.resize(n + 1, 0);
            }
            g[n] = s;
            Reply::status(s)
        });
        Self {
            rx,
            status: current,
            answers,
        }
    }

    /// Answers `status` from now on.
    pub fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn count(&self) -> usize {
        self.rx.count()
    }

    /// The requests with the status each got (requests still being answered are left out).
    pub fn answered(&self) -> Vec<(Received, u16)> {
        let reqs = self.rx.requests();
        let answers = self.answers.lock().unwrap().clone();
        reqs.into_iter()
            .zip(answers)
            .filter(|(_, s)| *s != 0)
            .collect()
    }

    /// Telemetry ids in the order they were first accepted (2xx), each once.
    pub fn first_accepted(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (r, s) in self.answered() {
            if (200..300).contains(&s) {
                for id in record_ids(&r) {
                    if seen.insert(id.clone()) {
                        out.push(id);
                    }
                }
            }
        }
        out
    }
}

/// Waits (polling every 10 ms, at most `limit`) until `cond` holds; returns whether it did.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (async, polling every 25 ms, at most [`WAIT`]) until `done` holds; on timeout fails
/// the test with `what` and the agent's log at `log`.
pub async fn wait_until(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; agent log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// [`wait_until`] for tests without a runtime (blocks the thread between polls).
pub fn wait_until_blocking(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; agent log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The bound of every wait: generous, because a wait ends as soon as its condition holds and a
/// loaded machine (two cores shared by several builds) can be many times slower than an idle one.
pub const WAIT: Duration = Duration::from_secs(60);

/// Ids of the telemetry committed to the outbox file at `db`, read as another process would
/// (read-only, while the agent writes it). `None` while the file or its tables do not exist yet
/// or the database is busy: the caller polls again.
pub fn committed_ids(db: &Path) -> Option<Vec<String>> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    let mut stmt = conn.prepare("SELECT id FROM telemetry ORDER BY seq").ok()?;
    let ids = stmt
        .query_map([], |r| {
            Ok(enocean_agent::outbox::id_text(r.get_ref(0)?).unwrap_or_default())
        })
        .ok()?
        .collect::<Result<Vec<String>, _>>()
        .ok()?;
    Some(ids)
}

/// The lines a child process writes to a pipe, collected by a thread as they come, so a test
/// can wait for the line it needs instead of sleeping or giving the child a fixed duration.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
    ended: bool,
}

impl Lines {
    /// Starts reading `pipe` (a child's stdout or stderr).
    pub fn new(pipe: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            rx,
            seen: Vec::new(),
            ended: false,
        }
    }

    /// Every line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Waits (at most `limit`) until `done(lines so far)` holds; false when the limit passed or
    /// the pipe was closed first.
    pub fn wait(&mut self, limit: Duration, mut done: impl FnMut(&[String]) -> bool) -> bool {
        let until = Instant::now() + limit;
        loop {
            if done(&self.seen) {
                return true;
            }
            if self.ended {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
                Err(mpsc::RecvTimeoutError::Disconnected) => self.ended = true,
            }
        }
    }

    /// Reads until the pipe is closed (the child exited), at most `limit`; returns every line.
    pub fn read_to_end(&mut self, limit: Duration) -> &[String] {
        let ended = self.wait(limit, |_| false) || self.ended;
        assert!(ended, "the child's output did not end within {limit:?}");
        &self.seen
    }
}

/// Sends `sig` (e.g. `-TERM`) to a child process with kill(1).
pub fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {}", child.id());
}

/// Waits (at most `limit`) for a child to exit; kills it and panics if it does not.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process that is stopped when the test ends, however it ends: SIGTERM first, so it can
/// clean up (the simulator removes its link), SIGKILL only if it does not exit within 20 s.
pub struct Reaper(pub Child);

impl Reaper {
    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.0.try_wait().expect("wait for child") {
            return status;
        }
        signal(&self.0, "-TERM");
        wait_exit(&mut self.0, WAIT)
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

pub fn gateway() -> Gateway {
    Gateway {
        id: "test-gw".into(),
        base_id: Some("FF8A1200".into()),
    }
}

/// A temperature telemetry from `device` with value `n`.
pub fn telemetry(device: &str, n: u32) -> Telemetry {
    let mut values = BTreeMap::new();
    values.insert(
        "temperature".into(),
        Reading {
            value: serde_json::json!(f64::from(n) / 10.0),
            unit: Some("°C".into()),
            shortcut: "TMP".into(),
            raw: u64::from(n),
            status: None,
        },
    );
    Telemetry {
        id: uuid::Uuid::now_v7().to_string(),
        kind: Default::default(),
        teach_in: None,
        status: None,
        silence: None,
        seq: 0,
        received_at: Some(jiff::Timestamp::now()),
        clock: None,
        received_monotonic: None,
        gateway: gateway(),
        sensor: Sensor {
            id: device.into(),
            name: Some("Office 2.14".into()),
            eep: Some("A5-02-05".into()),
            tags: Default::default(),
        },
        values,
        signal: Signal {
            dbm: Some(-68),
            repeater_count: 0,
            sub_telegrams: Some(1),
        },
        raw: Raw {
            rorg: "A5".into(),
            payload: "00008608".into(),
            status: "00".into(),
            destination: Some("FFFFFFFF".into()),
            security_level: Some(0),
            withheld: None,
        },
        decode_error: None,
        secure: None,
    }
}

/// A webhook with millisecond backoff and probes for tests.
pub fn fast_webhook(name: &str, url: &str) -> WebhookConfig {
    let mut w = WebhookConfig::new(name, url);
    w.backoff_base = Duration::from_millis(5);
    w.backoff_max = Duration::from_millis(20);
    w.probe_base = Duration::from_millis(50);
    w.probe_max = Duration::from_millis(200);
    w.jitter = 0.0;
    w.timeout = Duration::from_secs(5);
    w.connect_timeout = Duration::from_secs(2);
    w
}

pub fn fast_options() -> SenderOptions {
    let _ = env_logger::builder().is_test(true).try_init();
    SenderOptions {
        poll_interval: Duration::from_millis(20),
        ack_window: Duration::from_millis(20),
        clock: Arc::new(|| true),
        prefetch: 64,
    }
}

pub fn storage(dir: &Path) -> StorageConfig {
    let mut s = StorageConfig::at(dir.join("outbox.db"));
    s.commit_window = Duration::from_millis(10);
    s.ack_window = Duration::from_millis(20);
    s.min_free_bytes = 0;
    s
}

/// Opens an outbox for these webhooks.
pub fn open_outbox(s: &StorageConfig, hooks: &[WebhookConfig]) -> Outbox {
    let names: Vec<&str> = hooks
        .iter()
        .filter(|w| w.enabled)
        .map(|w| w.name.as_str())
        .collect();
    Outbox::open(s, &names).expect("open outbox")
}

/// Enqueues `n` telemetry from `device` and flushes; returns their ids in order.
pub fn enqueue_n(outbox: &mut Outbox, device: &str, n: u32) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let t = telemetry(device, i);
        ids.push(t.id.clone());
        outbox.enqueue(t).expect("enqueue");
    }
    outbox.flush().expect("flush");
    ids
}

/// Telemetry ids in a default-envelope body.
pub fn record_ids(r: &Received) -> Vec<String> {
    r.json()["records"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Path of a file in `tests/data/`.
pub fn data_path(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Every line of a JSON Lines file in `tests/data/`.
pub fn jsonl(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(data_path(name)).expect("vector file present");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// Bytes from a hex string.
pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("valid hex in vector file")
}

/// A `Command` for the agent binary built for these tests. Under cross-compilation the binary is
/// for another CPU and no binfmt handler may exist: `ENOCEAN_AGENT_TEST_RUNNER` (set by
/// `scripts/cross.sh`, e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`) is then put in front of it.
pub fn agent_command() -> std::process::Command {
    let bin = env!("CARGO_BIN_EXE_enocean-agent");
    let runner = std::env::var("ENOCEAN_AGENT_TEST_RUNNER").unwrap_or_default();
    let mut parts = runner.split_whitespace();
    match parts.next() {
        Some(program) => {
            let mut c = std::process::Command::new(program);
            c.args(parts).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    }
}

/// False (with a note) where a pseudo-terminal cannot be opened as a serial port, e.g. under
/// qemu-user, which lacks the TCGETS2 ioctl tokio-serial uses.
pub fn pty_usable() -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(async { tokio_serial::SerialStream::pair() }) {
        Ok(_) => {
            if std::env::var_os("ENOCEAN_AGENT_TEST_RUNNER").is_some() {
                eprintln!("skipping: serial tests do not run under an emulator runner");
                return false;
            }
            true
        }
        Err(e) => {
            eprintln!("skipping: no usable pseudo-terminal here ({e})");
            false
        }
    }
}
