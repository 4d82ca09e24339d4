//! The built binary: `sim --link` in one process, `listen --port` in another, both bounded.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_enocean-agent");

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("enocean-agent-cli-{}-{name}", std::process::id()))
}

/// Kills the child when the test ends, whatever happens.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sim_link_and_listen_port_in_two_processes() {
    let link = temp_path("stick");
    let sim = Command::new(BIN)
        .args([
            "sim",
            "--rate",
            "40",
            "--seed",
            "7",
            "--duration",
            "20",
            "--link",
        ])
        .arg(&link)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sim");
    let sim = Reaper(sim);
    let t0 = Instant::now();
    while std::fs::symlink_metadata(&link).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(15), "sim made no link");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(BIN)
        .args(["listen", "--duration", "2", "--port"])
        .arg(&link)
        .output()
        .expect("run listen");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("# stick: base ID FF8A1200"), "{stdout}");
    assert!(
        stdout.contains("TEACH-IN 4BS EEP A5-02-05 manufacturer 00D"),
        "{stdout}"
    );
    let telegram_lines = stdout
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" dBm"))
        .count();
    assert!(telegram_lines >= 10, "{stdout}");
    drop(sim);
}

#[test]
fn listen_on_a_missing_port_fails_clearly() {
    let out = Command::new(BIN)
        .args(["listen", "--duration", "1", "--port"])
        .arg(temp_path("absent"))
        .output()
        .expect("run listen");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn listen_with_the_built_in_simulator() {
    let out = Command::new(BIN)
        .args([
            "listen",
            "--port",
            "sim",
            "--sim-rate",
            "50",
            "--duration",
            "1.5",
        ])
        .output()
        .expect("run listen");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("# stick: base ID FF8A1200"), "{stdout}");
    assert!(stdout.contains("01867001"), "the teach-in device: {stdout}");
}

#[test]
fn sim_stops_after_count_and_removes_its_link() {
    let link = temp_path("count");
    let mut sim = Reaper(
        Command::new(BIN)
            .args([
                "sim",
                "--rate",
                "0",
                "--count",
                "50",
                "--duration",
                "20",
                "--link",
            ])
            .arg(&link)
            .stderr(Stdio::null())
            .spawn()
            .expect("start sim"),
    );
    let t0 = Instant::now();
    while std::fs::symlink_metadata(&link).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(15), "sim made no link");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A host opens the port, the sim emits its 50 telegrams and exits on its own.
    let listen = Command::new(BIN)
        .args(["listen", "--all", "--duration", "3", "--port"])
        .arg(&link)
        .output()
        .expect("run listen");
    let stdout = String::from_utf8_lossy(&listen.stdout);
    let lines = stdout
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" dBm"))
        .count();
    assert!(lines >= 50, "{lines}: {stdout}");
    let t0 = Instant::now();
    loop {
        if let Some(status) = sim.0.try_wait().expect("wait sim") {
            assert!(status.success());
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "sim did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(std::fs::symlink_metadata(&link).is_err(), "link removed");
}
