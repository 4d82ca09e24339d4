//! The built binary: `sim --link` in one process, `listen --port` in another. No fixed durations:
//! each test reads the output as it comes until it has what it needs, then stops the process with
//! SIGTERM. Links live in a fresh temporary directory, so none can be left from an earlier run.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Lines, Reaper, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_enocean-agent");

/// Lines of `listen` output that show a telegram.
fn telegram_lines(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| !l.starts_with('#') && l.contains(" dBm"))
        .count()
}

/// Starts `sim --link link` with `args` and waits until it says it is ready (its link made).
fn start_sim(link: &Path, args: &[&str]) -> (Reaper, Lines) {
    let mut child = Command::new(BIN)
        .arg("sim")
        .args(args)
        .arg("--link")
        .arg(link)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sim");
    let mut stderr = Lines::new(child.stderr.take().unwrap());
    let sim = Reaper(child);
    assert!(
        stderr.wait(WAIT, |l| l
            .iter()
            .any(|l| l.starts_with("simulated USB 300"))),
        "sim did not start: {:?}",
        stderr.seen()
    );
    assert!(std::fs::symlink_metadata(link).is_ok(), "no link");
    (sim, stderr)
}

/// Starts `listen` (without a duration) with `args`, stdout read as it comes.
fn start_listen(args: &[&str]) -> (Reaper, Lines) {
    let mut child = Command::new(BIN)
        .arg("listen")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start listen");
    let stdout = Lines::new(child.stdout.take().unwrap());
    (Reaper(child), stdout)
}

#[test]
fn sim_link_and_listen_port_in_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (mut sim, _) = start_sim(&link, &["--rate", "40", "--seed", "7"]);
    let (mut listen, mut out) = start_listen(&["--port", link.to_str().unwrap()]);
    let got = out.wait(WAIT, |l| {
        l.iter().any(|l| l.contains("# stick: base ID FF8A1200"))
            && l.iter()
                .any(|l| l.contains("TEACH-IN 4BS EEP A5-02-05 manufacturer 00D"))
            && telegram_lines(l) >= 10
    });
    assert!(got, "{:#?}", out.seen());
    assert!(listen.terminate().success(), "listen stops on SIGTERM");
    assert!(sim.terminate().success(), "sim stops on SIGTERM");
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the sim removes its link when stopped"
    );
}

#[test]
fn listen_on_a_missing_port_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["listen", "--duration", "1", "--port"])
        .arg(dir.path().join("absent"))
        .output()
        .expect("run listen");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn listen_with_the_built_in_simulator() {
    let (mut listen, mut out) = start_listen(&["--port", "sim", "--sim-rate", "50"]);
    let got = out.wait(WAIT, |l| {
        l.iter().any(|l| l.contains("# stick: base ID FF8A1200"))
            && l.iter().any(|l| l.contains("01867001"))
    });
    assert!(got, "stick line and the teach-in device: {:#?}", out.seen());
    assert!(listen.terminate().success());
}

#[test]
fn sim_stops_after_count_and_removes_its_link() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("count");
    let (mut sim, mut summary) = start_sim(&link, &["--rate", "0", "--count", "50"]);
    // A host opens the port and the sim emits its 50 telegrams, copies included (--all).
    let (mut listen, mut out) = start_listen(&["--all", "--port", link.to_str().unwrap()]);
    assert!(
        out.wait(WAIT, |l| telegram_lines(l) >= 50),
        "{:#?}",
        out.seen()
    );
    // The sim keeps the port open for the host; once the host has closed it, it exits on its
    // own, with its summary, and removes its link.
    assert!(listen.terminate().success());
    let status = common::wait_exit(&mut sim.0, WAIT);
    assert!(status.success());
    let lines = summary.read_to_end(WAIT);
    assert!(
        lines.iter().any(|l| l.starts_with("sim: 50 telegrams")),
        "{lines:#?}"
    );
    assert!(std::fs::symlink_metadata(&link).is_err(), "link removed");
}

#[test]
fn a_link_left_by_a_killed_sim_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stale");
    // What SIGKILL leaves behind: a link to a pty that is gone.
    {
        let (mut sim, _) = start_sim(&link, &["--rate", "5"]);
        sim.0.kill().unwrap();
        sim.0.wait().unwrap();
    }
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "SIGKILL leaves the link"
    );
    let (mut sim, err) = start_sim(&link, &["--rate", "40"]);
    assert!(
        err.seen()
            .iter()
            .any(|l| l.contains("replacing the existing link")),
        "{:#?}",
        err.seen()
    );
    let (mut listen, mut out) = start_listen(&["--port", link.to_str().unwrap()]);
    assert!(
        out.wait(WAIT, |l| telegram_lines(l) >= 3),
        "{:#?}",
        out.seen()
    );
    assert!(listen.terminate().success());
    assert!(sim.terminate().success());
    assert!(std::fs::symlink_metadata(&link).is_err(), "link removed");

    // Anything that is not a link is left alone, with a clear error.
    let file = dir.path().join("file");
    std::fs::write(&file, b"keep me").unwrap();
    let out = Command::new(BIN)
        .args(["sim", "--link"])
        .arg(&file)
        .output()
        .expect("run sim");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a symbolic link"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}
