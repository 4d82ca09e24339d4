//! A full SD card, for real: the outbox on an 8 MiB tmpfs, the simulated stick at 500
//! telegrams/s, the receiver down. The episode must be calm (a few log lines, commits retried
//! once per window), visible while it lasts (`outbox status` reads the daemon's runtime file), and
//! bounded: when space returns, only as many of the oldest readings as were needed are gone, and
//! every reading is either stored or counted as dropped. Needs root (to mount a tmpfs); skipped
//! with a note otherwise.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use enocean_agent::sim::building::ScriptOptions;
use enocean_agent::sim::{SimConfig, SimStick};
use enocean_agent::storage::RuntimeStatus;
use enocean_agent::webhook::health::State;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(dir.to_path_buf()))
}

/// Another writer on the same card (a runaway log, a journal): takes every byte of the file
/// system as soon as it is free, until stopped. Without it the full disk would end as soon as the
/// agent's own reserve is released and its one-for-one dropping keeps the file from growing;
/// with it, the outbox meets a disk that stays full for as long as the test needs.
struct Filler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl Filler {
    fn start(dir: &Path) -> Filler {
        let stop = Arc::new(AtomicBool::new(false));
        let path = dir.join("filler");
        let (flag, file) = (stop.clone(), path.clone());
        let thread = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .unwrap();
            let chunk = vec![0u8; 4096];
            while !flag.load(Ordering::SeqCst) {
                if f.write(&chunk).is_err() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Filler {
            stop,
            thread: Some(thread),
            path,
        }
    }

    /// Stops it and gives its space back.
    fn release(mut self) {
        self.halt();
        std::fs::remove_file(&self.path).unwrap();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.halt();
    }
}

fn status(run: &Path) -> Option<RuntimeStatus> {
    serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).ok()?).ok()
}

fn rows(db: &Path) -> u64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM telemetry", [], |r| r.get::<_, i64>(0)))
        .map_or_else(|e| panic!("reading {}: {e}", db.display()), |n| n as u64)
}

/// Readings the outbox holds: telemetry rows, plus those only in a stored delivery (the head of
/// the queue, handed to a delivery whose body is kept, may have left the telemetry table).
fn held(db: &Path) -> u64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut st = c.prepare("SELECT id FROM telemetry").unwrap();
    for id in st
        .query_map([], |r| {
            Ok(enocean_agent::outbox::id_text(r.get_ref(0)?).unwrap())
        })
        .unwrap()
    {
        ids.insert(id.unwrap());
    }
    let mut st = c
        .prepare("SELECT telemetry_ids FROM delivery WHERE state != 'delivered'")
        .unwrap();
    for list in st.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        for id in list
            .unwrap()
            .split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        {
            if id.len() == 36 {
                ids.insert(id.to_owned());
            }
        }
    }
    ids.len() as u64
}

async fn wait(what: &str, log: &Path, limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_full_disk_is_calm_visible_and_bounded() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&disk).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    let Some(mount) = mount_tmpfs(&disk, "8m") else {
        eprintln!(
            "skipping: cannot mount a tmpfs here (not root?); tests/outbox_store.rs covers a full database"
        );
        return;
    };
    let db = disk.join("outbox.db");
    let link = dir.path().join("stick");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[serial]\nport = \"{}\"\ndedup_window = \"0s\"\n[storage]\npath = \"{}\"\nmin_free_bytes = 0\n\
             [[webhook]]\nname = \"down\"\nurl = \"http://127.0.0.1:9/in\"\n",
            link.display(),
            db.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut agent = common::Reaper(
            common::agent_command()
                .args(["run", "--config"])
                .arg(&config)
                .env("RUST_LOG", "info")
                .env("RUNTIME_DIRECTORY", &run)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let sim = SimStick::start(SimConfig {
            rate: 500.0,
            script: ScriptOptions {
                seed: 5,
                ..ScriptOptions::default()
            },
            link: Some(link.clone()),
            ..SimConfig::default()
        })
        .unwrap();
        // Readings on the disk first, then something else takes the rest of it.
        wait(
            "readings on the disk",
            &log,
            Duration::from_secs(120),
            || status(&run).is_some_and(|s| s.committed >= 2000),
        )
        .await;
        let filler = Filler::start(&disk);
        wait("the disk to fill", &log, Duration::from_secs(120), || {
            status(&run).is_some_and(|s| s.disk_full_now)
        })
        .await;
        let lines_at_start = std::fs::read_to_string(&log).unwrap().lines().count();
        // Ten commit windows on a full disk, then look at what it cost.
        let tries_then = status(&run).unwrap().failed_commits;
        wait(
            "ten retries on the full disk",
            &log,
            Duration::from_secs(120),
            || status(&run).is_some_and(|s| s.failed_commits >= tries_then + 10),
        )
        .await;
        let text = std::fs::read_to_string(&log).unwrap();
        // Lines about the receiver being down are the webhook policy's, not the disk's; the
        // radio's once-a-minute summaries (strangers' teach-ins, rejected serial input) come
        // whatever the disk does.
        let during: Vec<&str> = text
            .lines()
            .skip(lines_at_start)
            .filter(|l| !l.contains("connection_refused") && !l.contains("deactivated"))
            .filter(|l| !l.contains("in the last minute") && !l.contains("in the last 60 s"))
            .collect();
        assert!(
            during.len() <= 3,
            "{} log lines during ten windows of full disk:\n{}",
            during.len(),
            during.join("\n")
        );
        // One line when an episode starts, not one per window. On a loaded machine the first
        // episode can end at once (the released reserve makes room) and a second one begin
        // later: each episode has its own start line, counted by the status file too.
        let starts = text
            .lines()
            .filter(|l| l.contains("outbox: disk full ("))
            .count() as u64;
        let now = status(&run).unwrap();
        assert!(
            starts >= 1 && starts == now.disk_full_episodes,
            "one line per episode ({} episodes):\n{text}",
            now.disk_full_episodes
        );
        // Visible while it lasts.
        let out = common::agent_command()
            .args(["outbox", "status", "--config"])
            .arg(&config)
            .env("RUNTIME_DIRECTORY", &run)
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(shown.contains("DISK FULL NOW"), "{shown}");
        assert!(
            shown.contains(&format!("disk full {} times", now.disk_full_episodes)),
            "{shown}"
        );
        let stored_while_full = rows(&db);
        assert!(
            stored_while_full > 100,
            "readings kept while full: {stored_while_full}"
        );
        // Space returns: the episode ends with one line and commits resume.
        filler.release();
        assert!(
            Command::new("mount")
                .args(["-o", "remount,size=64m"])
                .arg(&disk)
                .status()
                .unwrap()
                .success()
        );
        wait("commits to resume", &log, Duration::from_secs(120), || {
            status(&run).is_some_and(|s| !s.disk_full_now && s.buffered < 2000)
        })
        .await;
        sim.stop().await;
        // SIGTERM and a bounded wait (the agent needs nothing from this runtime to stop).
        agent.terminate();
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let end = status(&run).unwrap();
    // Every episode ended with one line, and none began unannounced.
    let starts = text
        .lines()
        .filter(|l| l.contains("outbox: disk full ("))
        .count() as u64;
    let ends = text
        .lines()
        .filter(|l| l.contains("commits succeed again after"))
        .count() as u64;
    assert!(
        ends >= 1 && starts == ends && starts == end.disk_full_episodes,
        "one line when each episode starts and one when it ends:\n{text}"
    );
    let stopped = text.lines().find(|l| l.contains("stopped: ")).unwrap();
    let figure = |what: &str| -> u64 {
        stopped
            .split(", ")
            .find_map(|p| {
                p.split(": ")
                    .last()?
                    .strip_suffix(what)?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {what:?} in {stopped}"))
    };
    let readings = figure("telegrams") - figure("teach-ins");
    let stored = held(&db);
    // Every reading is stored or counted: nothing vanished without a number.
    assert_eq!(
        readings,
        stored + end.dropped + figure("lost at hand-off") + figure("not committed"),
        "{stopped}; stored {stored}; status {end:?}"
    );
    // Only as many as needed were dropped: what the disk held stays (no wholesale delete).
    assert!(stored > 1000, "{stored} stored after the episode");
    assert!(
        end.disk_full_episodes >= 1 && end.failed_commits >= 10,
        "{end:?}"
    );
    // The status file carries each webhook's health too.
    let down = &end.webhooks[0];
    assert_eq!(down.name, "down");
    assert_eq!(
        down.last_failure_reason.as_deref(),
        Some("connection_refused"),
        "{down:?}"
    );
    assert!(down.backlog > 0 && down.state != State::Active, "{down:?}");
    drop(mount);
}
