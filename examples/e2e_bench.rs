//! End-to-end figures of the agent as it runs on a gateway: `enocean-agent sim` on a pty and
//! `enocean-agent run` as separate processes, a receiver on 127.0.0.1.
//!
//! - latency telegram→POST when idle (one telegram every 1.25 s): p50 / p99 / max
//! - throughput with the simulated stick far above the real line rate, one telemetry per POST
//! - CPU seconds of the agent process per 10 000 telegrams, and its peak RSS
//!
//! Reproduce: `cargo build --release --bins --examples && target/release/examples/e2e_bench`
//! (`E2E_IDLE_SECS`, `E2E_LOAD_COUNT` change the run lengths).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("enocean-agent")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Receiver: records each record's latency (arrival − telemetry `received_at`).
fn receiver() -> (u16, Arc<Mutex<Vec<f64>>>, Arc<tiny_http::Server>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let lat = Arc::new(Mutex::new(Vec::new()));
    let (s, l) = (server.clone(), lat.clone());
    std::thread::spawn(move || {
        for mut req in s.incoming_requests() {
            let now = jiff::Timestamp::now();
            let mut body = Vec::new();
            let _ = req.as_reader().read_to_end(&mut body);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                for r in v["records"].as_array().into_iter().flatten() {
                    if let Some(t) = r["received_at"]
                        .as_str()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    {
                        let ms = (now.as_nanosecond() - t.as_nanosecond()) as f64 / 1e6;
                        l.lock().unwrap().push(ms);
                    }
                }
            }
            let _ = req.respond(tiny_http::Response::empty(200));
        }
    });
    (port, lat, server)
}

fn config(dir: &Path, link: &Path, port: u16, dedup: &str) -> PathBuf {
    let mut text = format!(
        "[gateway]\nid = \"bench\"\n[serial]\nport = \"{}\"\ndedup_window = \"{dedup}\"\n[storage]\npath = \"{}\"\n[learn]\nenabled = true\n",
        link.display(),
        dir.join("outbox.db").display()
    );
    for d in enocean_agent::sim::building::DEVICES {
        text += &format!("[[device]]\nid = \"{:08X}\"\neep = \"{}\"\n", d.id, d.eep);
    }
    text += &format!(
        "[[webhook]]\nname = \"bench\"\nurl = \"http://127.0.0.1:{port}/in\"\nsigning = {{ type = \"hmac\", secret = \"bench\" }}\n"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(args: &[&str], extra: &[&Path]) -> Child {
    let mut c = Command::new(agent_bin());
    c.args(args);
    for p in extra {
        c.arg(p);
    }
    // As the systemd unit runs it (MALLOC_ARENA_MAX keeps glibc from an arena per thread).
    c.env("RUST_LOG", "warn")
        .env("MALLOC_ARENA_MAX", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// utime + stime in seconds and VmHWM in KiB of a live process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, hwm)
}

fn stop(mut c: Child) {
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
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    assert!(
        agent_bin().exists(),
        "build first: cargo build --release --bins --examples"
    );
    let dir = tempfile::tempdir().unwrap();

    // Idle: one telegram every 1.25 s, longer apart than the 1 s commit window.
    let idle_secs = env_u64("E2E_IDLE_SECS", 40);
    let link = dir.path().join("stick-idle");
    let (port, lat, _s) = receiver();
    let cfg = config(dir.path(), &link, port, "2s");
    let agent = spawn(&["run", "--config"], &[&cfg]);
    let sim = spawn(&["sim", "--rate", "0.8", "--link"], &[&link]);
    std::thread::sleep(Duration::from_secs(idle_secs));
    let (idle_cpu, idle_hwm) = usage(agent.id());
    stop(sim);
    stop(agent);
    let mut idle = lat.lock().unwrap().clone();
    println!(
        "idle latency telegram→POST: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} telegrams); \
         agent peak RSS {:.1} MB, CPU {:.2} s",
        pct(&mut idle, 0.5),
        pct(&mut idle, 0.99),
        pct(&mut idle, 1.0),
        idle.len(),
        idle_hwm as f64 / 1024.0,
        idle_cpu
    );

    // Load: the simulated stick at 10 000 telegrams/s (40× the USB 300's line rate); dedup off,
    // so every telegram, repeated copies included, becomes a delivery.
    let count = env_u64("E2E_LOAD_COUNT", 30_000);
    let dir2 = tempfile::tempdir().unwrap();
    let link = dir2.path().join("stick-load");
    let (port, lat, _s2) = receiver();
    let cfg = config(dir2.path(), &link, port, "0s");
    let agent = spawn(&["run", "--config"], &[&cfg]);
    let start = Instant::now();
    let sim = spawn(
        &[
            "sim",
            "--rate",
            "10000",
            "--count",
            &count.to_string(),
            "--link",
        ],
        &[&link],
    );
    let mut last = (0, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let n = lat.lock().unwrap().len();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3)
            || start.elapsed() > Duration::from_secs(300)
        {
            break;
        }
    }
    let secs = last.1.duration_since(start).as_secs_f64();
    let (cpu, hwm) = usage(agent.id());
    stop(sim);
    stop(agent);
    let n = lat.lock().unwrap().len();
    println!(
        "throughput: {n} telemetry delivered in {secs:.1} s = {:.0}/s (one per POST, HMAC-signed)",
        n as f64 / secs
    );
    println!(
        "agent under load: CPU {:.2} s per 10 000 telegrams; peak RSS {:.1} MB",
        cpu / n.max(1) as f64 * 10_000.0,
        hwm as f64 / 1024.0
    );
}
