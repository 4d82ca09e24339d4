//! The serial runtime against the simulated USB 300 on a real pseudo-terminal, opened by path
//! through tokio-serial exactly like hardware. Every wait is bounded; no wall-clock assertions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use enocean_agent::dedup::Dedup;
use enocean_agent::esp3::Event;
use enocean_agent::serial::{self, Monitor, OpenError, PortConfig, RunStats, SerialEvent};
use enocean_agent::sim::building::{Emission, ScriptOptions};
use enocean_agent::sim::{SIM_BASE_ID, SIM_CHIP_ID, SimConfig, SimStick};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// The bound of every wait: generous, a wait ends as soon as its condition holds.
const LIMIT: Duration = Duration::from_secs(60);

/// A path in a fresh temporary directory (removed with the returned guard, whatever happens).
fn temp_link(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join(name);
    (dir, path)
}

fn fast_config(path: PathBuf) -> PortConfig {
    PortConfig {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        presence_poll: Duration::from_millis(20),
        // Ten times the ESP3 timeout: the simulator answers at once, and a loaded machine must
        // not turn a slow answer into a failed handshake.
        response_timeout: Duration::from_secs(5),
        dedup_window: Duration::ZERO,
        ..PortConfig::new(path)
    }
}

struct Agent {
    rx: mpsc::Receiver<SerialEvent>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<RunStats, serial::SerialError>>,
    monitor: Monitor,
}

impl Agent {
    fn start(config: PortConfig) -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let (tx, rx) = mpsc::channel(1024);
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
        Self {
            rx,
            stop: Some(stop),
            task,
            monitor,
        }
    }

    /// Next event, or panics after the test limit.
    async fn next(&mut self) -> SerialEvent {
        timeout(LIMIT, self.rx.recv())
            .await
            .expect("no serial event within the limit")
            .expect("serial runtime ended")
    }

    async fn stop(mut self) -> RunStats {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        timeout(LIMIT, self.task)
            .await
            .expect("runtime did not stop")
            .expect("runtime panicked")
            .expect("runtime failed")
    }
}

/// Collected output of the runtime.
#[derive(Default)]
struct Seen {
    telegrams: Vec<(u32, Vec<u8>, u8, Option<i16>)>,
    infos: Vec<serial::StickInfo>,
    handshake_failures: usize,
    connects: usize,
    disconnects: usize,
    discarded: usize,
    data_crc: usize,
    telegrams_before_handshake_result: usize,
}

impl Seen {
    fn take(&mut self, ev: SerialEvent) {
        match ev {
            SerialEvent::Telegram { telegram: t, .. } => {
                if self.infos.is_empty() && self.handshake_failures == 0 {
                    self.telegrams_before_handshake_result += 1;
                }
                self.telegrams
                    .push((t.sender, t.payload.clone(), t.status, t.dbm()))
            }
            SerialEvent::StickInfo(i) => self.infos.push(i),
            SerialEvent::HandshakeFailed { .. } => self.handshake_failures += 1,
            SerialEvent::Connected { .. } => self.connects += 1,
            SerialEvent::Disconnected { .. } => self.disconnects += 1,
            SerialEvent::Decoder(Event::DiscardedBytes { count, .. }) => self.discarded += count,
            SerialEvent::Decoder(Event::DataCrcMismatch { .. }) => self.data_crc += 1,
            _ => {}
        }
    }
}

fn key(e: &Emission) -> (u32, Vec<u8>, u8, Option<i16>) {
    (
        e.sender,
        e.payload.clone(),
        e.status,
        Some(-i16::from(e.dbm)),
    )
}

fn sim_config(link: &Path, telegrams: u64, rate: f64) -> SimConfig {
    SimConfig {
        rate,
        max_telegrams: Some(telegrams),
        link: Some(link.to_path_buf()),
        record: true,
        ..SimConfig::default()
    }
}

/// Receives until `done(seen)` holds.
async fn until(agent: &mut Agent, seen: &mut Seen, done: impl Fn(&Seen) -> bool) {
    while !done(seen) {
        let ev = agent.next().await;
        seen.take(ev);
    }
}

#[tokio::test]
async fn handshake_and_every_telegram_arrives() {
    let (_dir, link) = temp_link("all");
    let mut sim = SimStick::start(sim_config(&link, 300, 0.0)).unwrap();
    let mut agent = Agent::start(fast_config(link.clone()));
    let mut seen = Seen::default();
    timeout(LIMIT, sim.wait_finished()).await.unwrap();
    let sent: Vec<_> = sim.sent().into_iter().map(|s| s.emission).collect();
    assert!(sent.iter().any(|e| e.repeated), "the stream has copies");
    assert!(sent.iter().any(|e| e.teach_in), "the stream has a teach-in");
    until(&mut agent, &mut seen, |s| {
        s.telegrams.len() >= sent.len() && !s.infos.is_empty()
    })
    .await;
    let expected: Vec<_> = sent.iter().map(key).collect();
    assert_eq!(seen.telegrams, expected);
    let info = &seen.infos[0];
    assert_eq!(info.base_id(), Some(SIM_BASE_ID));
    assert_eq!(info.base_id_hex().as_deref(), Some("FF8A1200"));
    assert_eq!(info.chip_id(), Some(SIM_CHIP_ID));
    assert_eq!(info.app_version().as_deref(), Some("2.11.1.0"));
    assert_eq!(info.description(), Some("GATEWAYCTRL"));
    let stats = sim.stats();
    assert_eq!(
        stats.commands, 2,
        "only the two handshake commands were written"
    );
    assert_eq!(
        stats.radio_transmit_requests, 0,
        "the agent never transmits"
    );
    let run = agent.stop().await;
    assert_eq!(run.connects, 1);
    assert_eq!(run.telegrams as usize, sent.len());
    sim.stop().await;
    assert!(!link.exists(), "the sim removes its link");
}

#[tokio::test]
async fn repeated_copies_are_delivered_once() {
    let (_dir, link) = temp_link("dedup");
    let mut sim = SimStick::start(SimConfig {
        script: ScriptOptions {
            repeat_probability: 0.3,
            ..ScriptOptions::default()
        },
        ..sim_config(&link, 200, 0.0)
    })
    .unwrap();
    // A window far longer than the run, so the model below sees the same thing.
    let window = Duration::from_secs(3600);
    let mut agent = Agent::start(PortConfig {
        dedup_window: window,
        ..fast_config(link.clone())
    });
    timeout(LIMIT, sim.wait_finished()).await.unwrap();
    let sent: Vec<_> = sim.sent().into_iter().map(|s| s.emission).collect();
    let copies = sent.iter().filter(|e| e.repeated).count();
    assert!(copies > 20, "{copies}");
    let mut model = Dedup::new(window);
    let now = std::time::Instant::now();
    let expected: Vec<_> = sent
        .iter()
        .filter(|e| model.accept_parts(e.sender, e.rorg, &e.payload, now))
        .map(key)
        .collect();
    // Every copy directly follows its original, so the model keeps no copy.
    assert!(expected.iter().all(|k| k.2 & 0x0F == 0));
    let mut seen = Seen::default();
    until(&mut agent, &mut seen, |s| {
        s.telegrams.len() >= expected.len()
    })
    .await;
    // Nothing more than the expected ones: the copies after the last expected were dropped.
    let run = agent.stop().await;
    assert_eq!(seen.telegrams, expected);
    assert_eq!(run.telegrams as usize, expected.len());
    assert_eq!(run.duplicates as usize, sent.len() - expected.len());
    sim.stop().await;
}

#[tokio::test]
async fn unplug_and_replug_reconnects_and_loses_nothing_after() {
    let (_dir, link) = temp_link("replug");
    // No limit while the stick is pulled out mid-stream: it is still sending when it is
    // unplugged, however fast or slow the machine is.
    let mut sim = SimStick::start(SimConfig {
        max_telegrams: None,
        ..sim_config(&link, 0, 300.0)
    })
    .unwrap();
    let mut agent = Agent::start(fast_config(link.clone()));
    let mut seen = Seen::default();
    until(&mut agent, &mut seen, |s| s.telegrams.len() >= 40).await;
    sim.replug(Duration::from_millis(300));
    until(&mut agent, &mut seen, |s| s.disconnects == 1).await;
    until(&mut agent, &mut seen, |s| {
        s.connects == 2 && s.infos.len() == 2
    })
    .await;
    // Back on the new pty: 100 more telegrams, then the stream ends.
    sim.set_max_telegrams(Some(sim.stats().telegrams + 100));
    timeout(LIMIT, sim.wait_finished()).await.unwrap();
    let after: Vec<_> = sim
        .sent()
        .into_iter()
        .filter(|s| s.pty == 2)
        .map(|s| key(&s.emission))
        .collect();
    assert!(after.len() >= 100, "{}", after.len());
    let total_sent = sim.sent().len();
    // Everything sent on the new pty arrives, in order, at the end of what was received (what
    // was in flight when the old pty closed is lost, as on hardware).
    until(&mut agent, &mut seen, |s| {
        s.telegrams.len() >= after.len()
            && s.telegrams[s.telegrams.len() - after.len()..] == after[..]
    })
    .await;
    assert!(seen.telegrams.len() <= total_sent);
    assert_eq!(sim.stats().ptys, 2);
    assert_eq!(seen.infos[1].base_id(), Some(SIM_BASE_ID));
    let run = agent.stop().await;
    assert_eq!(run.connects, 2);
    sim.stop().await;
    assert!(!link.exists(), "the sim removes its link");
}

#[tokio::test]
async fn paused_stick_replugged_loses_nothing() {
    let (_dir, link) = temp_link("pause");
    let mut sim = SimStick::start(sim_config(&link, 150, 0.0)).unwrap();
    let mut agent = Agent::start(fast_config(link.clone()));
    let mut seen = Seen::default();
    // The radio pauses at telegram 150; once all of it is read, the stick is replugged (nothing
    // in flight) and resumes up to 300.
    timeout(LIMIT, sim.wait_finished()).await.unwrap();
    let first = sim.sent().len();
    until(&mut agent, &mut seen, |s| {
        s.telegrams.len() >= first && !s.infos.is_empty()
    })
    .await;
    sim.replug(Duration::from_millis(100));
    sim.set_max_telegrams(Some(300));
    timeout(LIMIT, sim.wait_finished()).await.unwrap();
    assert_eq!(sim.stats().telegrams, 300);
    let sent: Vec<_> = sim.sent().into_iter().map(|s| key(&s.emission)).collect();
    until(&mut agent, &mut seen, |s| s.telegrams.len() >= sent.len()).await;
    assert_eq!(seen.telegrams, sent, "every telegram, in order, once");
    assert_eq!(seen.disconnects, 1);
    assert_eq!(sim.stats().ptys, 2);
    let run = agent.stop().await;
    assert_eq!(run.connects, 2);
    sim.stop().await;
    assert!(!link.exists(), "the sim removes its link");
}

#[tokio::test]
async fn garbage_and_bad_crcs_are_counted() {
    let (_dir, link) = temp_link("noise");
    let mut sim = SimStick::start(SimConfig {
        script: ScriptOptions {
            noise_probability: 0.2,
            bad_crc_probability: 0.2,
            ..ScriptOptions::default()
        },
        ..sim_config(&link, 300, 0.0)
    })
    .unwrap();
    let mut agent = Agent::start(fast_config(link.clone()));
    timeout(LIMIT, sim.wait_finished()).await.unwrap();
    let stats = sim.stats();
    assert!(
        stats.noise_chunks > 20 && stats.bad_crc_frames > 20,
        "{stats:?}"
    );
    let sent = sim.sent();
    let mut seen = Seen::default();
    let expected_discard =
        (stats.noise_bytes + stats.bad_crc_bytes - stats.bad_crc_frames) as usize;
    until(&mut agent, &mut seen, |s| {
        s.telegrams.len() >= sent.len()
            && s.data_crc >= stats.bad_crc_frames as usize
            && s.discarded >= expected_discard
    })
    .await;
    // The totals are visible while the run goes on, as the agent's status shows them (the
    // monitor is updated right after the events of a read are handed over).
    let monitor = agent.monitor.clone();
    eventually("the monitor's totals", || {
        monitor.snapshot().telegrams as usize >= sent.len()
    })
    .await;
    let live = agent.monitor.snapshot();
    assert!(agent.monitor.connected());
    assert_eq!(live.decoder.data_crc_errors, stats.bad_crc_frames);
    assert_eq!(live.decoder.discarded_bytes as usize, expected_discard);
    assert_eq!(live.telegrams as usize, sent.len());
    let run = agent.stop().await;
    assert_eq!(seen.telegrams.len(), sent.len(), "noise cost no telegram");
    assert_eq!(seen.data_crc as u64, stats.bad_crc_frames);
    assert_eq!(seen.discarded, expected_discard);
    assert_eq!(run.decoder.data_crc_errors, stats.bad_crc_frames);
    assert_eq!(run.decoder.discarded_bytes as usize, expected_discard);
    sim.stop().await;
}

#[tokio::test]
async fn failed_handshake_never_blocks_reception() {
    let (_dir, link) = temp_link("mute");
    let mut sim = SimStick::start(SimConfig {
        answer_commands: false,
        ..sim_config(&link, 100, 200.0)
    })
    .unwrap();
    // Each unanswered command is given 1 s: telegrams flow from the first milliseconds, and
    // only a machine that stalls this process for two whole seconds could see none before the
    // handshake gives up.
    let mut agent = Agent::start(PortConfig {
        response_timeout: Duration::from_secs(1),
        handshake_attempts: 2,
        ..fast_config(link.clone())
    });
    let mut seen = Seen::default();
    until(&mut agent, &mut seen, |s| s.handshake_failures == 1).await;
    timeout(LIMIT, sim.wait_finished()).await.unwrap();
    let sent = sim.sent().len();
    until(&mut agent, &mut seen, |s| s.telegrams.len() >= sent).await;
    assert!(seen.infos.is_empty());
    assert!(
        seen.telegrams_before_handshake_result > 0,
        "telegrams flowed while the handshake was waiting"
    );
    assert_eq!(sim.stats().commands, 4, "two tries of each command");
    agent.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn missing_port_gives_a_clear_error() {
    let (_dir, path) = temp_link("does-not-exist");
    let err = serial::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::Missing { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("does not exist") && text.contains(&*path.to_string_lossy()),
        "{text}"
    );

    // The daemon waits for it; an interactive command asks to fail at once.
    let (tx, _rx) = mpsc::channel(8);
    let config = PortConfig {
        fail_on_first_open: true,
        ..fast_config(path.clone())
    };
    let res = timeout(LIMIT, serial::run(config, tx, std::future::pending())).await;
    assert!(matches!(
        res,
        Ok(Err(serial::SerialError::Open(OpenError::Missing { .. })))
    ));

    // A regular file is not a serial device.
    let (_dir2, file) = temp_link("regular-file");
    std::fs::write(&file, b"x").unwrap();
    let err = serial::open(&file).unwrap_err();
    assert!(matches!(err, OpenError::NotASerialDevice { .. }), "{err:?}");
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test]
async fn daemon_waits_for_a_missing_port_then_receives() {
    let (_dir, link) = temp_link("late");
    let mut agent = Agent::start(fast_config(link.clone()));
    // Nothing there yet: the runtime waits quietly.
    assert!(
        timeout(Duration::from_millis(200), agent.rx.recv())
            .await
            .is_err()
    );
    let sim = SimStick::start(sim_config(&link, 20, 0.0)).unwrap();
    let mut seen = Seen::default();
    until(&mut agent, &mut seen, |s| s.telegrams.len() >= 20).await;
    assert_eq!(seen.connects, 1);
    agent.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn port_already_open_gives_a_clear_error() {
    let (_dir, link) = temp_link("busy");
    let sim = SimStick::start(sim_config(&link, 1, 0.0)).unwrap();
    let first = serial::open(&link).unwrap();
    let err = serial::open(&link).unwrap_err();
    assert!(matches!(err, OpenError::InUse { .. }), "{err:?}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    // Closed again: it can be opened.
    let again = serial::open(&link);
    assert!(again.is_ok(), "{:?}", again.err());
    drop(again);
    sim.stop().await;
}

#[tokio::test]
async fn port_in_use_is_retried_until_free() {
    let (_dir, link) = temp_link("held");
    let sim = SimStick::start(sim_config(&link, 30, 0.0)).unwrap();
    let holder = serial::open(&link).unwrap();
    let mut agent = Agent::start(fast_config(link.clone()));
    // The runtime keeps retrying (with backoff) while another process holds the port.
    assert!(
        timeout(Duration::from_millis(300), agent.rx.recv())
            .await
            .is_err()
    );
    drop(holder);
    let mut seen = Seen::default();
    until(&mut agent, &mut seen, |s| {
        s.connects == 1 && !s.infos.is_empty()
    })
    .await;
    agent.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn dropping_the_receiver_ends_the_run() {
    let (_dir, link) = temp_link("drop-rx");
    let sim = SimStick::start(sim_config(&link, 1000, 500.0)).unwrap();
    let mut agent = Agent::start(fast_config(link.clone()));
    let mut seen = Seen::default();
    until(&mut agent, &mut seen, |s| s.telegrams.len() >= 5).await;
    let Agent { rx, stop, task, .. } = agent;
    drop(rx);
    let stats = timeout(LIMIT, task).await.unwrap().unwrap().unwrap();
    assert_eq!(stats.connects, 1);
    assert!(stats.decoder.frames >= 5);
    drop(stop);
    sim.stop().await;
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after [`LIMIT`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_sim_counts_what_the_pty_would_not_take() {
    let (_dir, link) = temp_link("unread");
    let sim = SimStick::start(sim_config(&link, 1_000_000, 0.0)).unwrap();
    // A host that opens the port and never reads: the pty fills up and the sim waits.
    let host = serial::open(&link).unwrap();
    eventually("the sim waits for room", || {
        sim.stats().longest_write_block >= Duration::from_millis(50)
    })
    .await;
    let waiting = sim.stats();
    assert_eq!(waiting.unwritten_telegrams, 0, "waiting loses nothing");
    assert!(waiting.write_blocked >= waiting.longest_write_block);
    // The host goes away while the sim waits: the rest of its batch cannot be written.
    drop(host);
    eventually("the unwritten rest is counted", || {
        sim.stats().unwritten_bytes > 0
    })
    .await;
    let st = sim.stats();
    assert!(st.unwritten_telegrams > 0, "{st:?}");
    // What was generated is either in the ground truth (written) or counted as unwritten.
    let written = sim.sent().iter().filter(|s| !s.emission.repeated).count() as u64;
    assert_eq!(written + st.unwritten_telegrams, st.telegrams, "{st:?}");
    sim.stop().await;
}

/// A stand-in stick on a real pty that answers commands and sends the telegrams it is given,
/// until it is told to stall: then it keeps the pty open and neither reads nor writes, like a
/// stick whose firmware hung (or a link whose reader side stopped).
struct Peer {
    path: PathBuf,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    telegrams: mpsc::UnboundedSender<Vec<u8>>,
    task: JoinHandle<()>,
}

impl Peer {
    fn start() -> Self {
        use std::sync::atomic::AtomicBool;
        let (mut master, slave) = tokio_serial::SerialStream::pair().unwrap();
        let path = PathBuf::from(tokio_serial::SerialPort::name(&slave).unwrap());
        drop(slave);
        let stalled = std::sync::Arc::new(AtomicBool::new(false));
        let (telegrams, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
        let flag = stalled.clone();
        // Polled like the simulator's master side (see `sim`): never through readiness.
        let task = tokio::spawn(async move {
            let mut decoder = enocean_agent::esp3::Decoder::new();
            let mut buf = [0u8; 512];
            let mut out: Vec<u8> = Vec::new();
            loop {
                tokio::time::sleep(Duration::from_millis(2)).await;
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                if let Ok(n) = master.try_read(&mut buf) {
                    decoder.feed(&buf[..n], std::time::Instant::now(), |item| {
                        if let enocean_agent::esp3::Item::Frame { frame, .. } = item {
                            out.extend(enocean_agent::sim::response_to(&frame).encode());
                        }
                    });
                }
                while let Ok(t) = queue.try_recv() {
                    out.extend(t);
                }
                while !out.is_empty() {
                    match master.try_write(&out) {
                        Ok(n) => {
                            out.drain(..n);
                        }
                        Err(_) => break,
                    }
                }
            }
        });
        Self {
            path,
            stalled,
            telegrams,
            task,
        }
    }

    fn send_telegrams(&self, n: u32) {
        for i in 0..n {
            let data = [
                0xA5, 0x00, 0x00, i as u8, 0x08, 0x01, 0x80, 0xA3, 0xF2, 0x00,
            ];
            let optional = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x44, 0x00];
            let frame = enocean_agent::esp3::Frame::new(
                enocean_agent::esp3::PacketType::RadioErp1,
                &data,
                &optional,
            )
            .unwrap();
            self.telegrams.send(frame.encode()).unwrap();
        }
    }

    fn stall(&self, stalled: bool) {
        self.stalled
            .store(stalled, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn keepalive_config(path: PathBuf) -> PortConfig {
    PortConfig {
        // Three tries of 400 ms: an answering stick is never dropped for a scheduling hiccup.
        keepalive: Duration::from_millis(300),
        response_timeout: Duration::from_millis(400),
        handshake_attempts: 3,
        ..fast_config(path)
    }
}

#[tokio::test]
async fn a_stalled_stick_is_noticed_and_the_port_reopened() {
    let peer = Peer::start();
    let mut agent = Agent::start(keepalive_config(peer.path.clone()));
    let mut seen = Seen::default();
    until(&mut agent, &mut seen, |s| !s.infos.is_empty()).await;
    peer.send_telegrams(5);
    until(&mut agent, &mut seen, |s| s.telegrams.len() >= 5).await;

    // A quiet radio: the stick is asked for its version and answers; nothing else happens.
    let probes_before = agent.monitor.snapshot().keepalive_probes;
    let monitor = agent.monitor.clone();
    eventually("two answered keep-alive probes", || {
        monitor.snapshot().keepalive_probes >= probes_before + 2
    })
    .await;
    assert_eq!(agent.monitor.snapshot().unresponsive, 0);
    while let Ok(ev) = agent.rx.try_recv() {
        assert!(
            !matches!(ev, SerialEvent::Disconnected { .. }),
            "an answering stick is never dropped"
        );
        seen.take(ev);
    }

    // The stick hangs: the probes go unanswered, the runtime says so and reopens the port.
    peer.stall(true);
    let reason = loop {
        match agent.next().await {
            SerialEvent::Disconnected { reason } => break reason,
            ev => seen.take(ev),
        }
    };
    assert!(reason.contains("keep-alive"), "{reason}");
    assert!(agent.monitor.snapshot().unresponsive >= 1);
    let connects = seen.connects;
    until(&mut agent, &mut seen, |s| s.connects > connects).await;

    // It comes back: the next connection completes its handshake and telegrams flow again.
    peer.stall(false);
    let infos = seen.infos.len();
    until(&mut agent, &mut seen, |s| s.infos.len() > infos).await;
    let received = seen.telegrams.len();
    peer.send_telegrams(5);
    until(&mut agent, &mut seen, |s| s.telegrams.len() >= received + 5).await;
    let run = agent.stop().await;
    assert!(
        run.unresponsive >= 1 && run.keepalive_probes >= 4,
        "{run:?}"
    );
    assert!(run.connects >= 2);
}

/// What a resting port gathers is all there at the first read after it is watched again, and
/// nothing is lost or reordered meanwhile (the reader rests between reads on a busy line).
#[tokio::test]
async fn a_resting_port_gathers_what_arrives_and_reads_it_at_once() {
    use std::future::poll_fn;
    let (mut master, slave) = tokio_serial::SerialStream::pair().unwrap();
    let path = PathBuf::from(tokio_serial::SerialPort::name(&slave).unwrap());
    drop(slave);
    let mut port = serial::open(&path).unwrap();
    port.rest();
    assert!(port.is_resting());
    let mut bytes = Vec::new();
    let mut script = enocean_agent::sim::building::Script::new(ScriptOptions::default());
    for _ in 0..3 {
        script.next_telegram().frame().encode_into(&mut bytes);
    }
    // A pty takes about 12 KiB before a write would block: the three frames go in one write.
    assert_eq!(master.try_write(&bytes).unwrap(), bytes.len());
    // The pty moves the bytes to the reading side in the background: wait until all are there.
    eventually("the three frames wait in the port", || {
        port.waiting().unwrap() as usize == bytes.len()
    })
    .await;
    port.watch().unwrap();
    assert!(!port.is_resting());
    let mut buf = vec![0u8; 4096];
    let n = timeout(LIMIT, poll_fn(|cx| port.poll_read(cx, &mut buf)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], &bytes[..], "one read, every byte in order");
    // Resting again and watched again, an empty port waits (and wakes) as before.
    port.rest();
    port.watch().unwrap();
    master.try_write(&bytes[..10]).unwrap();
    let n = timeout(LIMIT, poll_fn(|cx| port.poll_read(cx, &mut buf)))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0 && buf[..n] == bytes[..n], "{n}");
}
