//! A frozen stick: the built binary's `sim --link` process stopped with SIGSTOP keeps its pty open
//! and says nothing, like a stick whose firmware hung or a link nobody serves. The serial runtime
//! must notice it (the keep-alive goes unanswered: a `Disconnected` saying so, counted in the
//! totals) and receive again once the process is continued with SIGCONT.
//!
//! In its own test binary: a child process inherits the pty masters of in-process simulators
//! (tokio-serial does not set close-on-exec), which would break the hang-up tests next door.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use enocean_agent::serial::{self, Monitor, PortConfig, SerialEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};

const BIN: &str = env!("CARGO_BIN_EXE_enocean-agent");

/// Every wait is bounded by this, generous for a loaded machine.
const LIMIT: Duration = Duration::from_secs(60);

/// The `sim --link` child; continued, killed and reaped whatever happens to the test.
struct SimProcess {
    child: Child,
    link: PathBuf,
}

impl SimProcess {
    fn start(link: &Path) -> Self {
        let child = Command::new(BIN)
            .args(["sim", "--rate", "50", "--seed", "3", "--link"])
            .arg(link)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sim");
        Self {
            child,
            link: link.to_path_buf(),
        }
    }

    /// Sends a signal with kill(1), as an operator would.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.link);
    }
}

/// Receives until `done` holds for an event, passing every event to `seen` first.
async fn until(
    rx: &mut mpsc::Receiver<SerialEvent>,
    seen: &mut Seen,
    what: &str,
    mut done: impl FnMut(&SerialEvent, &Seen) -> bool,
) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let ev = timeout(
            deadline.saturating_duration_since(Instant::now()),
            rx.recv(),
        )
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}; so far {seen:?}"))
        .expect("serial runtime ended");
        seen.take(&ev);
        if done(&ev, seen) {
            return;
        }
    }
}

#[derive(Debug, Default)]
struct Seen {
    telegrams: usize,
    infos: usize,
    connects: usize,
    keepalive_losses: usize,
}

impl Seen {
    fn take(&mut self, ev: &SerialEvent) {
        match ev {
            SerialEvent::Telegram { .. } => self.telegrams += 1,
            SerialEvent::StickInfo(_) => self.infos += 1,
            SerialEvent::Connected { .. } => self.connects += 1,
            SerialEvent::Disconnected { reason } if reason.contains("keep-alive") => {
                self.keepalive_losses += 1
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_frozen_stick_is_noticed_and_reception_resumes_when_it_continues() {
    let _ = env_logger::builder().is_test(true).try_init();
    let link =
        std::env::temp_dir().join(format!("enocean-agent-stall-{}-stick", std::process::id()));
    let sim = SimProcess::start(&link);
    let deadline = Instant::now() + LIMIT;
    while std::fs::symlink_metadata(&link).is_err() {
        assert!(Instant::now() < deadline, "the sim made no link");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let config = PortConfig {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        presence_poll: Duration::from_millis(20),
        // Three tries of 400 ms: a live stick is never dropped for a scheduling hiccup.
        response_timeout: Duration::from_millis(400),
        handshake_attempts: 3,
        keepalive: Duration::from_millis(300),
        dedup_window: Duration::ZERO,
        ..PortConfig::new(link.clone())
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let (stop, stopped) = oneshot::channel::<()>();
    let monitor = Monitor::new();
    let task = tokio::spawn(serial::run_with_monitor(
        config,
        tx,
        async move {
            let _ = stopped.await;
        },
        monitor.clone(),
    ));
    let mut seen = Seen::default();
    until(
        &mut rx,
        &mut seen,
        "the handshake and 10 telegrams",
        |_, s| s.infos >= 1 && s.telegrams >= 10,
    )
    .await;
    assert_eq!(seen.keepalive_losses, 0);

    // Frozen: nothing arrives, the keep-alive goes unanswered, the runtime says so and reopens.
    sim.signal("STOP");
    until(&mut rx, &mut seen, "the dead stick reported", |_, s| {
        s.keepalive_losses >= 1
    })
    .await;
    let frozen = monitor.snapshot();
    assert!(frozen.unresponsive >= 1, "{frozen:?}");
    assert!(
        frozen.keepalive_probes >= 3,
        "three tries before giving up: {frozen:?}"
    );
    let connects = seen.connects;
    until(&mut rx, &mut seen, "a reconnect", |_, s| {
        s.connects > connects
    })
    .await;

    // Continued: reception resumes on the reopened port.
    sim.signal("CONT");
    let before = seen.telegrams;
    until(&mut rx, &mut seen, "telegrams after SIGCONT", |_, s| {
        s.telegrams >= before + 10
    })
    .await;
    assert!(monitor.connected());

    let _ = stop.send(());
    let stats = timeout(LIMIT, task)
        .await
        .expect("runtime did not stop")
        .expect("runtime panicked")
        .expect("runtime failed");
    assert!(stats.connects >= 2, "{stats:?}");
    assert!(stats.unresponsive >= 1, "{stats:?}");
    assert!(stats.telegrams as usize >= seen.telegrams);
    drop(sim);
    assert!(!link.exists(), "link cleaned up");
}
