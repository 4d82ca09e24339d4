//! The end-to-end rows of the README's bench table (issue 12), driven by `scripts/bench.sh`:
//! `enocean-agent sim` and `enocean-agent run` as separate processes (release build, as a
//! gateway runs them), a receiver on 127.0.0.1 that answers 200 at once.
//!
//! The receiver shares the machine's cores with the agent, and its wake-ups are partly charged
//! to the agent (the kernel delivers a loopback packet, and wakes its reader, in the sender's
//! `sendto`; a woken receiver thread may preempt the sender). By default it answers on the
//! connection's own thread, as a server's event loop does: one wake-up per request. With
//! `BENCH_RECEIVER=tiny_http` it is the `tiny_http` server of the figures measured before
//! 2026-12-06, which hands each request from a connection thread to a worker thread: two
//! wake-ups per request, which at 200/s with one POST each doubled the sender's measured CPU.
//!
//! - `bench_table capture N FILE`: N RADIO_ERP1 frames of the simulated building (seed 1) as a
//!   raw ESP3 capture, for the `decode` instruction counts.
//! - `bench_table e2e RATE SECS BATCH`: the simulator at RATE telegrams/s for SECS seconds, one
//!   webhook with HMAC signing and `batch_max = BATCH`. Prints one line `key=value …`: telegrams
//!   delivered in the measured span, the agent's CPU (utime + stime from /proc) per delivered
//!   telegram, bytes written per telegram (`write_bytes` and `wchar` of /proc/PID/io), peak RSS
//!   (VmHWM). The span starts when the first telegram has been delivered (start-up is not
//!   counted) and ends when the last one has and nothing more arrived for 3 s.
//! - `bench_table backlog N SECS`: an outbox file with N undelivered readings (written through
//!   the library, as the daemon would have committed them), then the agent started on it with a
//!   batched webhook for SECS seconds; prints its peak RSS and how many it delivered meanwhile.
//!
//! With `BENCH_NAMED=1` every device is configured with a name and two tags (which every
//! reading then carries), as in a configured building; without, by id and EEP only.
//!
//! - `bench_table wake`: this machine's CPU cost of one sleep and wake-up of a thread (see
//!   `wake`), the floor under every wake-up the agent does.
//!
//! Temporary files go under `BENCH_DIR` (default: the system temp directory), which must be on
//! a real disk for `write_bytes` to mean anything.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use enocean_agent::sim::building::{DEVICES, Script, ScriptOptions};

fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("enocean-agent")
}

fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("BENCH_DIR") {
        Some(d) => {
            std::fs::create_dir_all(&d).unwrap();
            tempfile::tempdir_in(d).unwrap()
        }
        None => tempfile::tempdir().unwrap(),
    }
}

/// Receiver: counts the records it was sent ([`plain_receiver`], or with
/// `BENCH_RECEIVER=tiny_http` [`tiny_http_receiver`]).
fn receiver() -> (u16, Arc<AtomicU64>) {
    match std::env::var("BENCH_RECEIVER").as_deref() {
        Ok("tiny_http") => tiny_http_receiver(),
        Ok("plain") | Err(_) => plain_receiver(),
        Ok(other) => panic!("BENCH_RECEIVER={other}: plain or tiny_http"),
    }
}

/// A `tiny_http` server with two worker threads.
fn tiny_http_receiver() -> (u16, Arc<AtomicU64>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    for _ in 0..2 {
        let (s, c) = (server.clone(), count.clone());
        std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = Vec::new();
                let _ = req.as_reader().read_to_end(&mut body);
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    let n = v["records"].as_array().map_or(0, |a| a.len());
                    c.fetch_add(n as u64, Ordering::SeqCst);
                }
                let _ = req.respond(tiny_http::Response::empty(200));
            }
        });
    }
    (port, count)
}

/// A receiver that answers on the connection's own thread: it reads a request (head, then
/// `Content-Length` bytes) with blocking reads and writes `200` back: one wake-up per request
/// (tiny_http hands each request from a connection thread to a worker thread: two).
fn plain_receiver() -> (u16, Arc<AtomicU64>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let c = c.clone();
            std::thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let mut buf: Vec<u8> = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = &buf[head_end..head_end + len];
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
                        let n = v["records"].as_array().map_or(0, |a| a.len());
                        c.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    buf.drain(..head_end + len);
                    if conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, count)
}

fn config(dir: &Path, link: &Path, port: u16, batch: usize) -> PathBuf {
    let mut text = format!(
        "[gateway]\nid = \"bench\"\n[serial]\nport = \"{}\"\ndedup_window = \"0s\"\n\
         [storage]\npath = \"{}\"\nmax_rows = 2000000\nmax_bytes = 2000000000\n\
         [learn]\nenabled = true\n",
        link.display(),
        dir.join("outbox.db").display()
    );
    // BENCH_NAMED=1: every device with a name and two tags, as a configured building has.
    let named = std::env::var_os("BENCH_NAMED").is_some_and(|v| v == "1");
    for d in DEVICES {
        text += &format!("[[device]]\nid = \"{:08X}\"\neep = \"{}\"\n", d.id, d.eep);
        if named {
            text += &format!(
                "name = \"{}\"\ntags = {{ room = \"2.14\", floor = \"2\" }}\n",
                d.name
            );
        }
    }
    text += &format!(
        "[[webhook]]\nname = \"bench\"\nurl = \"http://127.0.0.1:{port}/in\"\nbatch_max = {batch}\n\
         signing = {{ type = \"hmac\", secret = \"bench-secret\" }}\n"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(args: &[String]) -> Child {
    Command::new(agent_bin())
        .args(args)
        // As the systemd unit runs it (MALLOC_ARENA_MAX keeps glibc from an arena per thread).
        .env("RUST_LOG", "warn")
        .env("MALLOC_ARENA_MAX", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// What /proc says about a live process.
#[derive(Debug, Clone, Copy)]
struct Usage {
    cpu_s: f64,
    user_s: f64,
    switches: u64,
    write_bytes: u64,
    wchar: u64,
    hwm_kib: u64,
}

fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let user: f64 = fields[11].parse().unwrap();
    let ticks: f64 = user + fields[12].parse::<f64>().unwrap();
    let hz = 100.0; // USER_HZ on Linux
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    Usage {
        cpu_s: ticks / hz,
        user_s: user / hz,
        switches: threads(pid).iter().map(|t| t.switches).sum(),
        write_bytes: field(&io, "write_bytes:"),
        wchar: field(&io, "wchar:"),
        hwm_kib: field(&status, "VmHWM:"),
    }
}

/// One thread of a live process: its name, CPU seconds and context switches.
#[derive(Debug, Clone)]
struct Thread {
    tid: String,
    name: String,
    cpu_s: f64,
    switches: u64,
    /// Of `switches`, those where the thread was preempted (it could have run on).
    preempted: u64,
}

fn threads(pid: u32) -> Vec<Thread> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let base = e.path();
        let (Ok(stat), Ok(status)) = (
            std::fs::read_to_string(base.join("stat")),
            std::fs::read_to_string(base.join("status")),
        ) else {
            continue;
        };
        let name = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_string();
        let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        let n = |key: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        out.push(Thread {
            tid: e.file_name().to_string_lossy().into_owned(),
            name,
            cpu_s: ticks / 100.0,
            switches: n("voluntary_ctxt_switches:") + n("nonvoluntary_ctxt_switches:"),
            preempted: n("nonvoluntary_ctxt_switches:"),
        });
    }
    out
}

fn stop(mut c: Child) {
    if c.try_wait().unwrap().is_some() {
        return; // it has exited (the simulator, after its count)
    }
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if c.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

fn capture(n: u64, path: &Path) {
    let mut script = Script::new(ScriptOptions::default());
    let mut out = Vec::new();
    for _ in 0..n {
        script.next_telegram().frame().encode_into(&mut out);
    }
    std::fs::write(path, out).unwrap();
}

fn e2e(rate: f64, secs: f64, batch: usize) {
    let dir = tempdir();
    let link = dir.path().join("stick");
    let (port, delivered) = receiver();
    let cfg = config(dir.path(), &link, port, batch);
    let agent = spawn(&["run".into(), "--config".into(), cfg.display().to_string()]);
    let count = ((rate * secs).round() as u64).max(2);
    let mut sim = spawn(&[
        "sim".into(),
        "--rate".into(),
        rate.to_string(),
        "--count".into(),
        count.to_string(),
        "--link".into(),
        link.display().to_string(),
    ]);
    // The span starts at the first delivery (the agent is up and warm).
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "nothing delivered in 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (n0, u0, t0) = (
        delivered.load(Ordering::SeqCst),
        usage(agent.id()),
        Instant::now(),
    );
    let th0 = threads(agent.id());
    // The end: the simulator has sent everything, and no record arrived for 3 s.
    let mut last = (n0, Instant::now());
    let mut sim_done = false;
    let limit = Instant::now() + Duration::from_secs_f64(secs * 3.0 + 120.0);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        sim_done = sim_done || sim.try_wait().unwrap().is_some();
        let n = delivered.load(Ordering::SeqCst);
        if n != last.0 {
            last = (n, Instant::now());
        } else if sim_done && last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
        if Instant::now() > limit {
            eprintln!("bench_table: time limit reached");
            break;
        }
    }
    let u1 = usage(agent.id());
    let th1 = threads(agent.id());
    let span = last.1.duration_since(t0).as_secs_f64();
    stop(sim);
    stop(agent);
    let n = (last.0 - n0).max(1);
    // Per thread, on stderr (scripts/bench.sh reads stdout).
    for t in &th1 {
        let before = th0.iter().find(|b| b.tid == t.tid);
        let cpu = t.cpu_s - before.map_or(0.0, |b| b.cpu_s);
        let sw = t.switches - before.map_or(0, |b| b.switches);
        let pre = t.preempted - before.map_or(0, |b| b.preempted);
        eprintln!(
            "thread {:<16} cpu_us={:.1} switches={:.2} preempted={:.2}",
            t.name,
            cpu * 1e6 / n as f64,
            sw as f64 / n as f64,
            pre as f64 / n as f64
        );
    }
    println!(
        "rate={rate} batch={batch} secs={span:.1} delivered={n} cpu_us={:.1} user_us={:.1} switches={:.2} write_bytes={:.0} wchar={:.0} hwm_kib={}",
        (u1.cpu_s - u0.cpu_s) * 1e6 / n as f64,
        (u1.user_s - u0.user_s) * 1e6 / n as f64,
        (u1.switches - u0.switches) as f64 / n as f64,
        (u1.write_bytes - u0.write_bytes) as f64 / n as f64,
        (u1.wchar - u0.wchar) as f64 / n as f64,
        u1.hwm_kib
    );
}

fn backlog(n: u64, secs: f64) {
    use enocean_agent::eep::Library;
    use enocean_agent::outbox::{Outbox, StorageConfig};
    use enocean_agent::sim::decoded_reading;
    use enocean_agent::telemetry::Gateway;

    let dir = tempdir();
    let link = dir.path().join("stick");
    let (port, delivered) = receiver();
    let cfg_path = config(dir.path(), &link, port, 100);
    {
        let mut cfg = StorageConfig::at(dir.path().join("outbox.db"));
        cfg.max_rows = 2_000_000;
        cfg.max_bytes = 2_000_000_000;
        cfg.commit_batch = 10_000;
        let mut outbox = Outbox::open(&cfg, &["bench"]).unwrap();
        let lib = Library::builtin().unwrap();
        let mut script = Script::new(ScriptOptions::default());
        let gateway = Gateway {
            id: "bench".into(),
            ..Gateway::default()
        };
        let now = jiff::Timestamp::now();
        for _ in 0..n {
            let e = script.next_telegram();
            outbox
                .enqueue(decoded_reading(&lib, &e, now, gateway.clone()))
                .unwrap();
        }
        outbox.flush().unwrap();
    }
    let agent = spawn(&[
        "run".into(),
        "--config".into(),
        cfg_path.display().to_string(),
    ]);
    let start = Instant::now();
    let mut hwm = 0;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        std::thread::sleep(Duration::from_millis(200));
        hwm = usage(agent.id()).hwm_kib;
    }
    stop(agent);
    println!(
        "backlog={n} secs={secs} delivered={} hwm_kib={hwm}",
        delivered.load(Ordering::SeqCst)
    );
}

/// This machine's own cost of a thread's sleep and wake-up, in µs of CPU charged to the thread
/// (its `sum_exec_runtime`, from /proc/thread-self/schedstat, else utime + stime): a thread that
/// only sleeps `ms` milliseconds in a loop, for about 4 s per length. Every wake-up the agent
/// does (a POST's reply, the reader's next read, a commit) costs this much besides the work it
/// wakes for, so it says how much of the per-telegram CPU above is the machine's, not the
/// agent's: on a KVM guest it is tens of µs, on bare metal a few.
fn wake() {
    let now = || -> f64 {
        if let Some(ns) = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split(' ').next()?.parse::<f64>().ok())
        {
            return ns / 1e3;
        }
        thread_cpu_s() * 1e6
    };
    let mut line = String::new();
    for ms in [20u64, 5, 1] {
        let n = (4000 / ms) as usize;
        let before = now();
        for _ in 0..n {
            std::thread::sleep(Duration::from_millis(ms));
        }
        line += &format!("wake_{ms}ms_us={:.1} ", (now() - before) / n as f64);
    }
    println!("{}", line.trim_end());
}

/// This thread's utime + stime in seconds, from /proc/thread-self/stat.
fn thread_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|i| stat[i + 2..].split(' ').collect())
        .unwrap_or_default();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> f64 { args[i].parse().expect("a number") };
    if args.first().is_some_and(|a| a != "capture" && a != "wake") {
        assert!(
            agent_bin().exists(),
            "build first: cargo build --release --bins --example bench_table"
        );
    }
    match args.first().map(String::as_str) {
        Some("capture") => capture(num(1) as u64, Path::new(&args[2])),
        Some("e2e") => e2e(num(1), num(2), num(3) as usize),
        Some("backlog") => backlog(num(1) as u64, num(2)),
        Some("wake") => wake(),
        _ => {
            eprintln!(
                "usage: bench_table capture N FILE | e2e RATE SECS BATCH | backlog N SECS | wake"
            );
            std::process::exit(2);
        }
    }
}
