//! A simulated EnOcean USB 300 behind a pseudo-terminal; only with the default-on `sim` feature
//! (a gateway build leaves it out).
//!
//! [`SimStick::start`] creates a pty pair, keeps the master side and offers the slave's path
//! (optionally through a symlink at a fixed path, as udev gives `/dev/enocean`). The agent opens
//! that path with the very same tokio-serial code as real hardware. The simulated stick answers
//! CO_RD_VERSION and CO_RD_IDBASE like a USB 300 and emits the telegrams of a small building
//! ([`building`]): readings, a teach-in, repeated copies, line noise and frames with a bad CRC.
//!
//! Telegrams are only emitted while a host has the port open (a real stick's bytes go nowhere
//! otherwise). While the host does not read, writes wait for room in the pty and emission pauses
//! (the waits are counted in [`SimStats::write_blocked`]); what cannot be written at all (host
//! gone, simulator stopped) is counted in [`SimStats::unwritten_telegrams`] and
//! [`SimStats::unwritten_bytes`], never dropped silently. Every telegram written has its ground
//! truth recorded when asked, so tests know what must arrive. [`SimStick::replug`] closes the pty
//! and creates a new one at the same link, like pulling the stick out and plugging it back.
//! [`SimStick::set_max_telegrams`] pauses and resumes the radio at an exact telegram, so a test
//! can replug while nothing is in flight.
//!
//! The link: an existing symbolic link at the path is replaced (a simulator killed with SIGKILL
//! cannot remove its link, and the pty it points to may since belong to someone else); anything
//! else at the path is refused. On stop, and when the simulator is dropped with its runtime, the
//! link is removed only if it still points at this simulator's pty.

pub mod building;
mod sample;

#[doc(hidden)]
pub use sample::{decoded_reading, sample_readings};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_serial::{SerialPort, SerialStream};

use crate::esp3::command::CommonCommand;
use crate::esp3::{Decoder, Frame, Item, PacketType};
use building::{Chunk, Emission, Script, ScriptOptions};

/// Base ID the simulated stick reports.
pub const SIM_BASE_ID: u32 = 0xFF8A_1200;
/// Chip ID the simulated stick reports.
pub const SIM_CHIP_ID: u32 = 0x0194_3B2E;
/// Chip version the simulated stick reports.
pub const SIM_CHIP_VERSION: u32 = 0x4501_0003;
/// Application version the simulated stick reports (2.11.1.0, a USB 300 firmware).
pub const SIM_APP_VERSION: [u8; 4] = [2, 11, 1, 0];
/// API version the simulated stick reports.
pub const SIM_API_VERSION: [u8; 4] = [2, 6, 3, 0];
/// Description the simulated stick reports, as a USB 300 does.
pub const SIM_DESCRIPTION: &str = "GATEWAYCTRL";
/// Remaining base-ID write cycles the simulated stick reports.
pub const SIM_WRITE_CYCLES: u8 = 10;

/// How often the simulator checks whether a host has opened the port or sent a command.
const HOST_POLL: Duration = Duration::from_millis(5);
/// How long to wait before retrying a write when the pty buffer is full.
const WRITE_RETRY: Duration = Duration::from_millis(1);
/// Bytes written to the pty in one go when the simulator is behind its schedule.
const WRITE_BATCH: usize = 4096;

/// Errors of the simulated stick.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The pseudo-terminal could not be created.
    #[error("cannot create a pseudo-terminal: {0}")]
    Pty(#[from] tokio_serial::Error),
    /// The symlink to the pty could not be created or replaced.
    #[error("cannot create the link {path}: {source}")]
    Link {
        /// The link path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Something other than a symbolic link is at the link path; it is left alone.
    #[error("{path} exists and is not a symbolic link; the simulator only replaces links")]
    NotALink {
        /// The link path.
        path: PathBuf,
    },
    /// The pty slave has no name (should not happen on Unix).
    #[error("the pseudo-terminal has no device name")]
    NoName,
}

/// Options of the simulated stick.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Original telegrams per second (copies and noise come on top). `0.0` means as fast as the
    /// reader takes them (for benchmarks). A real USB 300 at 57 600 baud carries about 240
    /// telegrams/s of 24 bytes.
    pub rate: f64,
    /// Stream content: seed and probabilities of copies, noise and teach-ins.
    pub script: ScriptOptions,
    /// Stop emitting after this long (counted from the first emission).
    pub duration: Option<Duration>,
    /// Stop emitting after this many original telegrams ([`SimStick::set_max_telegrams`] changes
    /// it while running).
    pub max_telegrams: Option<u64>,
    /// A symlink to create (and re-create on replug) pointing at the pty slave.
    pub link: Option<PathBuf>,
    /// Keep the ground truth of every emitted telegram (memory grows with the run; for tests).
    pub record: bool,
    /// Answer CO_RD_VERSION / CO_RD_IDBASE (turn off to test a failing handshake).
    pub answer_commands: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            rate: 20.0,
            script: ScriptOptions::default(),
            duration: None,
            max_telegrams: None,
            link: None,
            record: false,
            answer_commands: true,
        }
    }
}

/// Running totals of the simulated stick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Original radio telegrams emitted (teach-ins included, copies not).
    pub telegrams: u64,
    /// Repeated copies emitted.
    pub copies: u64,
    /// Teach-in telegrams emitted.
    pub teach_ins: u64,
    /// Chunks of line noise emitted.
    pub noise_chunks: u64,
    /// Bytes of line noise emitted.
    pub noise_bytes: u64,
    /// Frames with a bad data CRC emitted.
    pub bad_crc_frames: u64,
    /// Bytes of those bad frames.
    pub bad_crc_bytes: u64,
    /// Commands received from the host (any ESP3 frame it wrote).
    pub commands: u64,
    /// RADIO_ERP1 frames the host asked to transmit (the agent must never do this).
    pub radio_transmit_requests: u64,
    /// Original telegrams that could not be written to the pty (the host closed it, or the
    /// simulator was stopped or replugged while waiting for room); they are not in
    /// [`SimStick::sent`]. Counted in `telegrams` too, which counts what was generated.
    pub unwritten_telegrams: u64,
    /// Bytes that could not be written, for the same reasons (copies, noise and answers included).
    pub unwritten_bytes: u64,
    /// Total time writes waited because the pty took no more bytes (the host was not reading).
    /// Emission pauses meanwhile and catches up afterwards; nothing is lost by waiting.
    pub write_blocked: Duration,
    /// The longest single such wait.
    pub longest_write_block: Duration,
    /// Pseudo-terminals created so far (1 + replugs).
    pub ptys: u32,
    /// True while emission is finished: duration reached, or telegram limit reached (until the
    /// limit is raised).
    pub finished: bool,
}

/// One emitted telegram with the number of the pty it went out on.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// Pty generation (1 for the first, +1 per replug).
    pub pty: u32,
    /// What was sent.
    pub emission: Emission,
}

#[derive(Debug, Default)]
struct Shared {
    stats: SimStats,
    sent: Vec<Sent>,
    slave: PathBuf,
    /// Bytes handed to [`SimStick::inject`], written before the next scripted chunk.
    injected: Vec<u8>,
    /// The telegram limit in force (starts as `SimConfig::max_telegrams`).
    max_telegrams: Option<u64>,
    /// The duration has run out: raising the telegram limit does not resume emission.
    duration_over: bool,
    /// A host has the current pty open.
    host: bool,
}

#[derive(Debug)]
enum Control {
    Replug(Duration),
    Stop,
}

/// A running simulated stick. Dropping it stops the simulator task and removes the link.
#[derive(Debug)]
pub struct SimStick {
    path: PathBuf,
    control: mpsc::UnboundedSender<Control>,
    shared: Arc<Mutex<Shared>>,
    finished: watch::Receiver<bool>,
    finished_tx: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimStick {
    /// Creates the pty (and link) and starts the simulator task. Must be called from within a
    /// tokio runtime.
    pub fn start(config: SimConfig) -> Result<Self, SimError> {
        let (master, slave_path) = new_pty()?;
        if let Some(link) = &config.link {
            set_link(link, &slave_path)?;
        }
        let path = config.link.clone().unwrap_or_else(|| slave_path.clone());
        let shared = Arc::new(Mutex::new(Shared {
            slave: slave_path,
            stats: SimStats {
                ptys: 1,
                ..Default::default()
            },
            max_telegrams: config.max_telegrams,
            ..Default::default()
        }));
        let (control, control_rx) = mpsc::unbounded_channel();
        let (finished_tx, finished) = watch::channel(false);
        let task = tokio::spawn(
            Runner {
                config,
                shared: shared.clone(),
                control: control_rx,
                finished: finished_tx.clone(),
                script: None,
                host_backlog: Vec::new(),
            }
            .run(master),
        );
        Ok(Self {
            path,
            control,
            shared,
            finished,
            finished_tx,
            task: Some(task),
        })
    }

    /// The path a host opens: the link when one was asked for, else the pty slave.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current pty slave device (`/dev/pts/N`).
    pub fn slave_path(&self) -> PathBuf {
        lock(&self.shared).slave.clone()
    }

    /// Totals so far.
    pub fn stats(&self) -> SimStats {
        lock(&self.shared).stats
    }

    /// True while a host has the current pty open (the simulator notices within a few ms).
    pub fn host_connected(&self) -> bool {
        lock(&self.shared).host
    }

    /// Changes the limit of original telegrams while running (`None`: no limit). A stick that
    /// stopped at its limit resumes when the limit is raised above what it emitted, with its
    /// schedule starting afresh; tests use this to pause the radio at an exact telegram. Does not
    /// resume a stick whose `duration` has run out.
    pub fn set_max_telegrams(&self, max: Option<u64>) {
        let mut s = lock(&self.shared);
        s.max_telegrams = max;
        let below = max.is_none_or(|m| m > s.stats.telegrams);
        if s.stats.finished && below && !s.duration_over {
            s.stats.finished = false;
            drop(s);
            self.finished_tx.send_replace(false);
            log::info!("sim: emission resumed");
        }
    }

    /// Ground truth of every telegram emitted so far (empty unless `record` was set).
    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.shared).sent.clone()
    }

    /// Sends `bytes` to the host as they are (whole ESP3 frames, or noise), before the next
    /// scripted telegram, once a host has the port open: for tests that need one particular
    /// telegram (a secure teach-in, a sender the building does not have).
    pub fn inject(&self, bytes: &[u8]) {
        lock(&self.shared).injected.extend_from_slice(bytes);
    }

    /// Simulates unplugging the stick for `downtime` and plugging it back: the link is removed,
    /// the pty closed, and after `downtime` a new pty is linked at the same path.
    pub fn replug(&self, downtime: Duration) {
        let _ = self.control.send(Control::Replug(downtime));
    }

    /// Waits until emission has finished (duration or telegram limit reached).
    pub async fn wait_finished(&mut self) {
        let _ = self.finished.wait_for(|f| *f).await;
    }

    /// Stops the simulator, closes the pty and removes the link.
    pub async fn stop(mut self) {
        let _ = self.control.send(Control::Stop);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimStick {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Stop);
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn new_pty() -> Result<(SerialStream, PathBuf), SimError> {
    let (master, slave) = SerialStream::pair()?;
    let name = slave.name().ok_or(SimError::NoName)?;
    drop(slave);
    Ok((master, PathBuf::from(name)))
}

/// Points `link` at `target`, replacing an existing symbolic link atomically (one left behind by
/// a simulator that was killed, whatever it points to now). Anything else at `link` is refused.
fn set_link(link: &Path, target: &Path) -> Result<(), SimError> {
    let err = |source| SimError::Link {
        path: link.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(link) {
        Ok(m) if !m.file_type().is_symlink() => {
            return Err(SimError::NotALink {
                path: link.to_path_buf(),
            });
        }
        Ok(_) => log::warn!(
            "sim: replacing the existing link {} -> {} (left by a simulator that did not stop \
             cleanly, or another one at the same path)",
            link.display(),
            std::fs::read_link(link).map_or_else(|e| e.to_string(), |t| t.display().to_string())
        ),
        Err(_) => {}
    }
    let mut tmp = link.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(err)?;
    std::fs::rename(&tmp, link).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// Removes `link` if it is a symbolic link to `target` (not one another simulator has put there
/// since).
fn remove_link(link: &Path, target: &Path) {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        let _ = std::fs::remove_file(link);
    }
}

/// The link and the pty it points to; removes the link when dropped, also when the simulator's
/// task is dropped with its runtime instead of being stopped.
struct LinkGuard {
    link: Option<PathBuf>,
    target: PathBuf,
}

impl LinkGuard {
    fn remove(&self) {
        if let Some(link) = &self.link {
            remove_link(link, &self.target);
        }
    }
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The RESPONSE the simulated USB 300 sends for a frame from the host: version and base ID like
/// a real stick, RET_OK for CO_WR_RESET, RET_NOT_SUPPORTED for anything else (radio transmit
/// requests included: the simulator never transmits).
pub fn response_to(command: &Frame) -> Frame {
    let ok = |data: &[u8], optional: &[u8]| {
        Frame::new(PacketType::Response, data, optional).unwrap_or_else(|_| not_supported())
    };
    match CommonCommand::from_frame(command) {
        Some(CommonCommand::ReadVersion) => {
            let mut data = vec![0x00];
            data.extend_from_slice(&SIM_APP_VERSION);
            data.extend_from_slice(&SIM_API_VERSION);
            data.extend_from_slice(&SIM_CHIP_ID.to_be_bytes());
            data.extend_from_slice(&SIM_CHIP_VERSION.to_be_bytes());
            let mut text = [0u8; 16];
            text[..SIM_DESCRIPTION.len()].copy_from_slice(SIM_DESCRIPTION.as_bytes());
            data.extend_from_slice(&text);
            ok(&data, &[])
        }
        Some(CommonCommand::ReadIdBase) => {
            let mut data = vec![0x00];
            data.extend_from_slice(&SIM_BASE_ID.to_be_bytes());
            ok(&data, &[SIM_WRITE_CYCLES])
        }
        Some(CommonCommand::WriteReset) => ok(&[0x00], &[]),
        None => not_supported(),
    }
}

fn not_supported() -> Frame {
    Frame::from_body(PacketType::Response, vec![0x02], 1)
}

struct Runner {
    config: SimConfig,
    shared: Arc<Mutex<Shared>>,
    control: mpsc::UnboundedReceiver<Control>,
    finished: watch::Sender<bool>,
    script: Option<Script>,
    /// Bytes from the host read while waiting to write, not handled yet.
    host_backlog: Vec<u8>,
}

enum Ended {
    Stop,
    Replug(Duration),
}

impl Runner {
    async fn run(mut self, mut master: SerialStream) {
        let mut generation = 1;
        let mut guard = LinkGuard {
            link: self.config.link.clone(),
            target: lock(&self.shared).slave.clone(),
        };
        loop {
            let ended = self.serve(&mut master, generation).await;
            lock(&self.shared).host = false;
            match ended {
                Ended::Stop => break,
                Ended::Replug(downtime) => {
                    guard.remove();
                    drop(master);
                    log::info!("sim: stick unplugged for {downtime:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(downtime) => {}
                        c = self.control.recv() => if !matches!(c, Some(Control::Replug(_))) { return; }
                    }
                    let created = new_pty().and_then(|(m, slave)| {
                        if let Some(link) = &self.config.link {
                            set_link(link, &slave)?;
                        }
                        Ok((m, slave))
                    });
                    match created {
                        Ok((m, slave)) => {
                            master = m;
                            generation += 1;
                            guard.target.clone_from(&slave);
                            let mut s = lock(&self.shared);
                            s.slave = slave;
                            s.stats.ptys = generation;
                            log::info!("sim: stick plugged back in");
                        }
                        Err(e) => {
                            log::error!("sim: {e}");
                            break;
                        }
                    }
                }
            }
        }
        drop(guard);
    }

    /// Serves one pty until it is stopped or replugged.
    ///
    /// The master side is driven by polling (`try_read` / `try_write` and short sleeps), never
    /// through tokio's readiness: while no host has the slave open, the master reports a hang-up,
    /// which tokio keeps as a permanent "read/write closed" readiness, and a readiness-driven
    /// read would then spin on EAGAIN for ever once a host appears.
    async fn serve(&mut self, master: &mut SerialStream, generation: u32) -> Ended {
        let mut present = false;
        let mut rbuf = [0u8; 1024];
        let mut commands = Decoder::new();
        let mut out = Vec::with_capacity(WRITE_BATCH + 64);
        // End offset in `out` of each radio telegram, and whether it is a repeated copy.
        let mut marks: Vec<(usize, bool)> = Vec::new();
        // Emission schedule: starts when the first host connects (and again on a resume).
        let mut started: Option<Instant> = None;
        let mut schedule_from: Option<Instant> = None;
        let mut emitted_at_start = 0u64;
        let mut was_finished = lock(&self.shared).stats.finished;
        loop {
            let was_present = present;
            if !self.host_backlog.is_empty() {
                let bytes = std::mem::take(&mut self.host_backlog);
                if let Err(end) = self.on_host_bytes(master, &mut commands, &bytes).await {
                    return end;
                }
            }
            match master.try_read(&mut rbuf) {
                Ok(n) if n > 0 => {
                    present = true;
                    let bytes = rbuf[..n].to_vec();
                    if let Err(end) = self.on_host_bytes(master, &mut commands, &bytes).await {
                        return end;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => present = true,
                // EIO (or EOF): no host has the slave open.
                _ => present = false,
            }
            if present != was_present {
                log::debug!("sim: host {}", if present { "connected" } else { "gone" });
            }
            let now = Instant::now();
            let finished = {
                let mut s = lock(&self.shared);
                s.host = present;
                s.stats.finished
            };
            if present && (started.is_none() || (was_finished && !finished)) {
                started.get_or_insert(now);
                schedule_from = Some(now);
                emitted_at_start = self.script.as_ref().map_or(0, Script::telegrams);
            }
            was_finished = finished;
            if let (Some(t0), Some(d), false) = (started, self.config.duration, finished)
                && now >= t0 + d
            {
                lock(&self.shared).duration_over = true;
                self.finish();
                continue;
            }
            let rate = self.config.rate;
            let due_at = |n: u64| match schedule_from {
                Some(t0) if rate > 0.0 => {
                    t0 + Duration::from_secs_f64(n.saturating_sub(emitted_at_start) as f64 / rate)
                }
                _ => now,
            };
            let injected = if present {
                std::mem::take(&mut lock(&self.shared).injected)
            } else {
                Vec::new()
            };
            if !injected.is_empty() {
                let (written, result) = self.write_out(master, &injected).await;
                if written < injected.len() {
                    self.unwritten(&injected[written..], &[], written);
                }
                match result {
                    Err(end) => return end,
                    Ok(true) => {}
                    Ok(false) => present = false,
                }
            }
            let mut wake = now + HOST_POLL;
            if present && !finished {
                let next = due_at(self.script.as_ref().map_or(0, Script::telegrams));
                if next <= now {
                    out.clear();
                    marks.clear();
                    let reached_max =
                        self.fill(&mut out, &mut marks, generation, |n| due_at(n) <= now);
                    if reached_max {
                        self.finish();
                    }
                    let (written, result) = self.write_out(master, &out).await;
                    if written < out.len() {
                        self.unwritten(&out[written..], &marks, written);
                    }
                    match result {
                        Err(end) => return end,
                        Ok(true) => {}
                        Ok(false) => present = false,
                    }
                    // Let the reader (maybe in this runtime) catch up, then go on at once.
                    tokio::task::yield_now().await;
                    continue;
                }
                wake = wake.min(next);
            }
            if let (Some(t0), Some(d), false) = (started, self.config.duration, finished) {
                wake = wake.min(t0 + d);
            }
            tokio::select! {
                biased;
                c = self.control.recv() => return ended(c),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Writes all of `out`, waiting while the pty buffer is full. Returns how many bytes went
    /// out and `Ok(false)` when the host went away, `Err` when told to stop or replug meanwhile.
    async fn write_out(
        &mut self,
        master: &mut SerialStream,
        out: &[u8],
    ) -> (usize, Result<bool, Ended>) {
        let mut off = 0;
        // The wait in progress: when it started and when it was last counted.
        let mut wait: Option<(Instant, Instant)> = None;
        let result = loop {
            if off == out.len() {
                break Ok(true);
            }
            match master.try_write(&out[off..]) {
                Ok(n) => {
                    off += n;
                    wait = None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // A full pty still takes writes after the host closed it: look for the
                    // host (its commands are kept for later) so a gone host is noticed.
                    let mut probe = [0u8; 256];
                    match master.try_read(&mut probe) {
                        Ok(n) if n > 0 => self.host_backlog.extend_from_slice(&probe[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        _ => break Ok(false),
                    }
                    let now = Instant::now();
                    let (since, counted) = wait.unwrap_or((now, now));
                    self.blocked(now - counted, now - since);
                    wait = Some((since, now));
                    tokio::select! {
                        biased;
                        c = self.control.recv() => break Err(ended(c)),
                        _ = tokio::time::sleep(WRITE_RETRY) => {}
                    }
                }
                Err(e) => {
                    log::debug!("sim: write failed: {e}");
                    break Ok(false);
                }
            }
        };
        (off, result)
    }

    /// Counts `more` waiting time, in a wait that has lasted `so_far` (live, so a reader that
    /// stopped shows while it lasts).
    fn blocked(&mut self, more: Duration, so_far: Duration) {
        let mut s = lock(&self.shared);
        s.stats.write_blocked += more;
        s.stats.longest_write_block = s.stats.longest_write_block.max(so_far);
    }

    /// Counts the bytes of a batch that could not be written (`rest`, from offset `written`) and
    /// the telegrams among them (`marks`: end offsets in the batch), and takes those telegrams
    /// out of the ground truth.
    fn unwritten(&mut self, rest: &[u8], marks: &[(usize, bool)], written: usize) {
        let lost: Vec<bool> = marks
            .iter()
            .filter(|(end, _)| *end > written)
            .map(|(_, repeated)| *repeated)
            .collect();
        let mut s = lock(&self.shared);
        s.stats.unwritten_bytes += rest.len() as u64;
        s.stats.unwritten_telegrams += lost.iter().filter(|r| !**r).count() as u64;
        if self.config.record {
            let keep = s.sent.len().saturating_sub(lost.len());
            s.sent.truncate(keep);
        }
        log::warn!(
            "sim: {} bytes ({} telegrams) could not be written to the pty",
            rest.len(),
            lost.len()
        );
    }

    fn finish(&mut self) {
        let mut s = lock(&self.shared);
        if !s.stats.finished {
            s.stats.finished = true;
            drop(s);
            self.finished.send_replace(true);
            log::info!("sim: emission finished");
        }
    }

    /// Appends chunks to `out` while `due(next telegram number)` holds, up to one write batch.
    /// Returns true when the telegram limit is reached.
    fn fill(
        &mut self,
        out: &mut Vec<u8>,
        marks: &mut Vec<(usize, bool)>,
        generation: u32,
        due: impl Fn(u64) -> bool,
    ) -> bool {
        let options = self.config.script;
        let script = self.script.get_or_insert_with(|| Script::new(options));
        let mut shared = lock(&self.shared);
        loop {
            let n = script.telegrams();
            if let Some(max) = shared.max_telegrams
                && n >= max
            {
                return true;
            }
            if out.len() >= WRITE_BATCH || !due(n) {
                return false;
            }
            // One original telegram plus whatever follows it (copies, noise).
            loop {
                let chunk = script.next_chunk();
                chunk.encode_into(out);
                let st = &mut shared.stats;
                match &chunk {
                    Chunk::Telegram(e) => {
                        marks.push((out.len(), e.repeated));
                        if e.repeated {
                            st.copies += 1;
                        } else {
                            st.telegrams += 1;
                        }
                        if e.teach_in && !e.repeated {
                            st.teach_ins += 1;
                        }
                    }
                    Chunk::Noise(b) => {
                        st.noise_chunks += 1;
                        st.noise_bytes += b.len() as u64;
                    }
                    Chunk::BadCrc(b) => {
                        st.bad_crc_frames += 1;
                        st.bad_crc_bytes += b.len() as u64;
                    }
                }
                if self.config.record
                    && let Chunk::Telegram(e) = chunk
                {
                    shared.sent.push(Sent {
                        pty: generation,
                        emission: e,
                    });
                }
                if !script.has_pending() {
                    break;
                }
            }
        }
    }

    async fn on_host_bytes(
        &mut self,
        master: &mut SerialStream,
        dec: &mut Decoder,
        bytes: &[u8],
    ) -> Result<(), Ended> {
        let mut frames = Vec::new();
        dec.feed(bytes, std::time::Instant::now(), |item| {
            if let Item::Frame { frame, .. } = item {
                frames.push(frame);
            }
        });
        for frame in frames {
            {
                let mut s = lock(&self.shared);
                s.stats.commands += 1;
                if frame.packet_type() == PacketType::RadioErp1 {
                    s.stats.radio_transmit_requests += 1;
                }
            }
            if self.config.answer_commands {
                let answer = response_to(&frame).encode();
                let (written, result) = self.write_out(master, &answer).await;
                if written < answer.len() {
                    self.unwritten(&answer[written..], &[], written);
                }
                result?;
            }
        }
        Ok(())
    }
}

fn ended(c: Option<Control>) -> Ended {
    match c {
        Some(Control::Replug(d)) => Ended::Replug(d),
        _ => Ended::Stop,
    }
}
