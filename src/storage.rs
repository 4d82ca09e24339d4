//! The storage writer: one thread that owns every write to the outbox database on the daemon's
//! behalf — group commits, pruning and checkpoints, learned devices, last-heard facts and the
//! forgets the CLI records. The serial reader hands records over through a bounded queue and
//! never waits on the disk: a slow or stalled SD card fills the queue, and what does not fit is
//! counted (never silently lost), while the reader keeps draining the stick.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::device::{DeviceStore, Heard};
use crate::outbox::Outbox;
use crate::secure::store::SecureStore;
use crate::telemetry::Telemetry;

/// Records the hand-off holds while the disk is busy: at the stick's top rate (about 240
/// telegrams/s) that is 17 s of a stalled SD card; a building's usual 1–20/s is minutes.
pub const HANDOFF_CAPACITY: usize = 4096;

/// Records queued in the hand-off that wake the writer even while it waits for a commit window
/// (so a burst is moved into the outbox's group, and `commit_batch` can commit it early, long
/// before the hand-off could fill).
const WAKE_AT: usize = HANDOFF_CAPACITY / 16;

/// When a hand-off must wake the writer. A record is a reading the writer will commit at its
/// window's end anyway: waking the writer for each (a futex wake and two context switches per
/// telegram) is only needed when nothing waits for a commit — then an idle gateway commits the
/// reading at once. Other operations always wake it.
#[derive(Default)]
struct Wake {
    /// The writer sleeps with nothing waiting for a commit: the next record wakes it.
    wanted: AtomicBool,
    /// Records queued since the writer last drained the hand-off.
    queued: AtomicUsize,
}

/// How often the writer looks for forgets and refreshes its figures.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// How often the runtime status file is rewritten (it lives on tmpfs, under `/run`).
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// Where the daemon writes its live figures: `$RUNTIME_DIRECTORY/status.json` (systemd's
/// `RuntimeDirectory=`), else `/run/enocean-agent/status.json` when that directory exists. Never
/// on the SD card: it is rewritten every few seconds.
pub fn status_path() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("RUNTIME_DIRECTORY") {
        let first = std::env::split_paths(&dir).next()?;
        return Some(first.join("status.json"));
    }
    let dir = std::path::Path::new("/run/enocean-agent");
    dir.is_dir().then(|| dir.join("status.json"))
}

/// The runtime status file's content.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RuntimeStatus {
    /// The daemon's process ID.
    pub pid: u32,
    /// When this was written (RFC 3339).
    pub updated_at: String,
    /// Records committed by this run.
    pub committed: u64,
    /// Records waiting in memory for the next commit.
    pub buffered: u64,
    /// Committed readings not yet handed to the slowest webhook (upper bound).
    pub backlog: u64,
    /// Records lost because the hand-off to storage was full.
    pub handoff_dropped: u64,
    /// Records the outbox refused or could not commit.
    pub not_committed: u64,
    /// Undelivered readings dropped by the overflow policy since start.
    pub dropped: u64,
    /// Full-disk episodes since start.
    pub disk_full_episodes: u64,
    /// Failed commits since start.
    pub failed_commits: u64,
    /// True while the disk is full.
    pub disk_full_now: bool,
    /// True while commits fail.
    pub failing: bool,
    /// Per webhook: state, backlog, oldest undelivered, last success and failure, next probe
    /// (refreshed every minute; the same figures as `webhook list`).
    #[serde(default)]
    pub webhooks: Vec<crate::webhook::health::WebhookHealth>,
}

/// How often the per-webhook figures of the status file are recomputed (they read the database).
const HEALTH_EVERY: Duration = Duration::from_secs(60);

/// One piece of work for the storage writer.
#[derive(Debug)]
pub enum Op {
    /// A record to commit (a reading or a teach-in record).
    Record(Box<Telemetry>),
    /// A device learned from a teach-in, to persist.
    Learned {
        /// Sender ID.
        id: u32,
        /// The announced EEP.
        eep: String,
        /// The announced manufacturer.
        manufacturer: Option<u16>,
        /// When.
        at: crate::outbox::UnixMs,
    },
    /// Last-heard facts collected by the reader.
    Heard(Vec<Heard>),
    /// A `gateway.status` record made by the reader: the writer adds what only it knows (per
    /// webhook state, backlog and oldest undelivered age, free disk, records dropped by the
    /// outbox) and commits it like any record.
    Status(Box<Telemetry>),
    /// A device reported `device.silent` (true) or heard again (false): persisted so that a
    /// restart neither reports it again nor forgets to report it back.
    Silence {
        /// Sender ID.
        id: u32,
        /// Silent now.
        silent: bool,
    },
    /// A secure device taught in by radio: its key (sealed when stored), SLF and rolling code;
    /// written with the rolling codes after the next commit.
    SecureTaught {
        /// Sender ID.
        id: u32,
        /// The device (its `Debug` shows no key).
        device: Box<crate::secure::SecureDevice>,
    },
    /// A secure device's new rolling-code state (coalesced, written after the next commit like
    /// a teach-in).
    SecureRlc {
        /// Sender ID.
        id: u32,
        /// The lowest rolling code accepted next.
        next_rlc: u32,
        /// Key check value of the key it belongs to.
        kcv: [u8; 4],
    },
}

/// Figures the writer keeps in memory for the status line and the shutdown report: read at any
/// time without touching the database.
#[derive(Debug, Default)]
pub struct Figures {
    /// Records committed by this run (safe from a crash; on the disk within a commit window
    /// unless delivered first, see `Outbox::sync_due`).
    pub committed: AtomicU64,
    /// Records the outbox refused or could not keep (overflow policy, failed commits at exit).
    pub not_committed: AtomicU64,
    /// Records that did not fit in the hand-off (the disk was too slow for too long).
    pub handoff_dropped: AtomicU64,
    /// Committed readings not yet handed to the slowest webhook (an upper bound).
    pub backlog: AtomicU64,
    /// Records waiting in memory for the next group commit.
    pub buffered: AtomicU64,
    /// True while commits fail (a full disk or a failing card).
    pub failing: AtomicBool,
    /// Undelivered readings dropped by the outbox's overflow policy since start (refreshed
    /// every second).
    pub dropped: AtomicU64,
    /// Flushes (fsync) of committed readings some output had not delivered within a commit
    /// window, since start.
    pub flushes: AtomicU64,
    /// Commit windows whose readings every output had delivered: no flush was needed.
    pub flushes_skipped: AtomicU64,
}

/// What a look at the hand-off found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// Nothing was waiting.
    Nothing,
    /// Operations were handled.
    Some,
    /// The handle is gone: commit what is left and stop.
    Closed,
}

/// The handle the daemon holds: send work, read figures, receive forgets, stop.
pub struct Storage {
    tx: Option<SyncSender<Op>>,
    wake: Arc<Wake>,
    figures: Arc<Figures>,
    forgets: UnboundedReceiver<u32>,
    thread: Option<JoinHandle<()>>,
    /// When a hand-off overflow was last logged, and how many since.
    overflow_log: (Option<Instant>, u64),
}

impl Storage {
    /// Starts the writer thread with the open outbox and device tables; `webhooks` and `mqtt`
    /// outputs are reported in the runtime status file and `gateway.status`.
    pub fn start(
        outbox: Outbox,
        devices: DeviceStore,
        secure: SecureStore,
        webhooks: Vec<crate::webhook::WebhookConfig>,
        mqtt: Vec<crate::mqtt::MqttConfig>,
        db_path: std::path::PathBuf,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(HANDOFF_CAPACITY);
        let wake = Arc::new(Wake::default());
        let (forget_tx, forgets) = unbounded_channel();
        let figures = Arc::new(Figures::default());
        let writer = Writer {
            outbox,
            devices,
            secure,
            figures: figures.clone(),
            forgets: forget_tx,
            webhooks,
            mqtt,
            db_path,
            health: (None, Vec::new()),
            wake: wake.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("storage".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            tx: Some(tx),
            wake,
            figures,
            forgets,
            thread: Some(thread),
            overflow_log: (None, 0),
        })
    }

    /// Hands `op` over without waiting. False when the queue is full (the record is counted in
    /// [`Figures::handoff_dropped`] and logged at most once a minute) or the writer is gone.
    pub fn send(&mut self, op: Op) -> bool {
        let Some(tx) = &self.tx else { return false };
        let is_record = matches!(op, Op::Record(_));
        match tx.try_send(op) {
            Ok(()) => {
                let queued = self.wake.queued.fetch_add(1, Ordering::SeqCst) + 1;
                if !is_record || queued >= WAKE_AT || self.wake.wanted.swap(false, Ordering::SeqCst)
                {
                    self.unpark();
                }
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                if is_record {
                    self.figures.handoff_dropped.fetch_add(1, Ordering::Relaxed);
                    self.overflow_log.1 += 1;
                    let now = Instant::now();
                    if self
                        .overflow_log
                        .0
                        .is_none_or(|t| now >= t + Duration::from_secs(60))
                    {
                        error!(
                            "storage is not keeping up (disk too slow or stalled): {} record(s) could not be handed over and are lost (counted)",
                            self.overflow_log.1
                        );
                        self.overflow_log = (Some(now), 0);
                    }
                }
                false
            }
        }
    }

    /// The writer's figures.
    pub fn figures(&self) -> &Figures {
        &self.figures
    }

    /// The writer's figures, to read after [`Storage::stop`].
    pub fn shared_figures(&self) -> Arc<Figures> {
        self.figures.clone()
    }

    /// Device IDs `enocean-agent devices forget` asked to forget.
    pub fn forgets(&mut self) -> &mut UnboundedReceiver<u32> {
        &mut self.forgets
    }

    /// Commits everything handed over, stops the writer and waits for it. False when the writer
    /// thread died (it logged why).
    pub fn stop(mut self) -> bool {
        self.tx.take();
        self.unpark();
        match self.thread.take() {
            Some(t) => t.join().is_ok(),
            None => true,
        }
    }

    /// True while the writer thread runs.
    pub fn is_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Storage {
    /// Wakes the writer thread (a closed hand-off is noticed at its next look).
    fn unpark(&self) {
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.tx.take();
        self.unpark();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    outbox: Outbox,
    devices: DeviceStore,
    secure: SecureStore,
    figures: Arc<Figures>,
    forgets: UnboundedSender<u32>,
    webhooks: Vec<crate::webhook::WebhookConfig>,
    /// MQTT outputs, reported beside the webhooks.
    mqtt: Vec<crate::mqtt::MqttConfig>,
    db_path: std::path::PathBuf,
    /// Per-webhook figures and when they were computed.
    health: (Option<Instant>, Vec<crate::webhook::health::WebhookHealth>),
    /// Shared with the handle: when a hand-off wakes this thread.
    wake: Arc<Wake>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Op>) {
        let status_file = status_path();
        let mut last_status = Instant::now() - STATUS_EVERY;
        let mut last_housekeeping = Instant::now() - HOUSEKEEPING_EVERY;
        let mut failing_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wake = self
                .outbox
                .next_due()
                .unwrap_or(now + HOUSEKEEPING_EVERY)
                .min(last_housekeeping + HOUSEKEEPING_EVERY);
            // Take whatever is waiting (a busy reader gets one commit per window); with nothing,
            // sleep until the next commit, flush or housekeeping is due, woken by the handle
            // (see `Wake`: a record wakes this thread only when nothing waits for a commit).
            let mut open = self.drain(&rx);
            if open == Drained::Nothing {
                self.wake
                    .wanted
                    .store(self.outbox.commit_due().is_none(), Ordering::SeqCst);
                // A record sent between the drain and the flag above is taken now, or its
                // sender saw the flag and unparks the sleep below.
                open = self.drain(&rx);
                if open == Drained::Nothing {
                    std::thread::park_timeout(wake.saturating_duration_since(now));
                    open = self.drain(&rx);
                }
                self.wake.wanted.store(false, Ordering::SeqCst);
            }
            let open = open != Drained::Closed;
            let result = if open {
                self.outbox.poll(Instant::now())
            } else {
                self.outbox.flush()
            };
            match result {
                Ok(done) => {
                    self.committed(done.len());
                    // Teach-ins and rolling codes follow the records they came with: one
                    // transaction per commit window, never one per telegram.
                    if (!done.is_empty() || !open) && self.secure.dirty() {
                        self.flush_rlc();
                    }
                    if let Some(since) = failing_since.take()
                        && self.outbox.counts().disk_full_episodes == 0
                    {
                        info!(
                            "storage: commits succeed again after {:.0?}",
                            since.elapsed()
                        );
                    }
                }
                Err(e) => {
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        // A full disk is the outbox's to report (start, summary, end).
                        if !e.is_disk_full() {
                            error!("storage: commit failed: {e}; retrying once per commit window");
                        }
                    }
                }
            }
            self.figures
                .failing
                .store(failing_since.is_some(), Ordering::Relaxed);
            self.figures
                .buffered
                .store(self.outbox.buffered() as u64, Ordering::Relaxed);
            let syncs = self.outbox.sync_counts();
            self.figures.flushes.store(syncs.flushed, Ordering::Relaxed);
            self.figures
                .flushes_skipped
                .store(syncs.skipped, Ordering::Relaxed);
            if !open {
                break;
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
                last_housekeeping = Instant::now();
                self.housekeeping();
            }
            if let Some(path) = &status_file
                && last_status.elapsed() >= STATUS_EVERY
            {
                last_status = Instant::now();
                self.write_status(path);
            }
        }
        if self.secure.dirty() {
            self.flush_rlc();
        }
        if let Some(path) = &status_file {
            self.health.0 = None; // fresh per-webhook figures in the last status
            self.write_status(path);
        }
        let left = self.outbox.buffered();
        if left > 0 {
            self.figures
                .not_committed
                .fetch_add(left as u64, Ordering::Relaxed);
            error!(
                "storage: {left} record(s) could not be committed before exit and are lost (counted)"
            );
        }
    }

    /// Writes the runtime status file (atomically: a temporary file renamed over it).
    fn write_status(&mut self, path: &std::path::Path) {
        if self.health.0.is_none_or(|t| t.elapsed() >= HEALTH_EVERY) {
            self.health.0 = Some(Instant::now());
            match crate::mqtt::outputs_health(
                self.outbox.store(),
                &self.webhooks,
                &self.mqtt,
                &self.db_path,
            ) {
                Ok(list) => self.health.1 = list,
                Err(e) => log::debug!("storage: webhook figures: {e}"),
            }
        }
        let f = &self.figures;
        let c = self.outbox.counts();
        let status = RuntimeStatus {
            pid: std::process::id(),
            updated_at: jiff::Timestamp::now().to_string(),
            committed: f.committed.load(Ordering::Relaxed),
            buffered: self.outbox.buffered() as u64,
            backlog: f.backlog.load(Ordering::Relaxed),
            handoff_dropped: f.handoff_dropped.load(Ordering::Relaxed),
            not_committed: f.not_committed.load(Ordering::Relaxed),
            dropped: c.dropped,
            disk_full_episodes: c.disk_full_episodes,
            failed_commits: c.failed_commits,
            disk_full_now: c.disk_full_now,
            failing: f.failing.load(Ordering::Relaxed),
            webhooks: self.health.1.clone(),
        };
        let Ok(text) = serde_json::to_string_pretty(&status) else {
            return;
        };
        let tmp = path.with_extension("json.tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            log::debug!("storage: status file {}: {e}", path.display());
        }
    }

    fn flush_rlc(&mut self) {
        if let Err(e) = self.secure.flush() {
            warn!("could not store secure devices or rolling codes: {e}; retrying");
        }
    }

    fn committed(&self, n: usize) {
        self.figures
            .committed
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Handles every operation waiting in the hand-off.
    fn drain(&mut self, rx: &Receiver<Op>) -> Drained {
        let mut took = Drained::Nothing;
        loop {
            match rx.try_recv() {
                Ok(op) => {
                    self.wake.queued.store(0, Ordering::SeqCst);
                    self.handle(op);
                    took = Drained::Some;
                }
                Err(TryRecvError::Empty) => return took,
                Err(TryRecvError::Disconnected) => return Drained::Closed,
            }
        }
    }

    fn handle(&mut self, op: Op) {
        match op {
            Op::Record(t) => {
                // On error the records stay buffered for the next try; what the policy refused
                // is counted by the outbox as dropped.
                if let Ok(done) = self.outbox.enqueue_boxed(t) {
                    self.committed(done.len());
                }
            }
            Op::Learned {
                id,
                eep,
                manufacturer,
                at,
            } => {
                if let Err(e) = self.devices.save_learned(id, &eep, manufacturer, at) {
                    warn!("could not store learned device {id:08X}: {e}");
                }
            }
            Op::Heard(heard) => {
                if let Err(e) = self.devices.write_heard(&heard) {
                    // Last-heard times are refreshed every few seconds: during a full-disk
                    // episode (which the outbox reports once) each failure would be a line.
                    if e.is_disk_full() && self.outbox.counts().disk_full_now {
                        log::debug!("could not record when devices were last heard: {e}");
                    } else {
                        warn!("could not record when devices were last heard: {e}");
                    }
                }
            }
            Op::Status(mut t) => {
                self.complete_status(&mut t);
                if let Ok(done) = self.outbox.enqueue_boxed(t) {
                    self.committed(done.len());
                }
            }
            Op::Silence { id, silent } => {
                if let Err(e) =
                    crate::health::persist_silence(&self.outbox.store().conn, id, silent)
                {
                    warn!("could not record the silence of device {id:08X}: {e}");
                }
            }
            Op::SecureTaught { id, device } => self.secure.note_taught(id, *device),
            Op::SecureRlc { id, next_rlc, kcv } => self.secure.note_rlc(id, next_rlc, kcv),
        }
    }

    /// Fills in the figures of a `gateway.status` record that come from the database and the
    /// file system.
    fn complete_status(&mut self, t: &mut Telemetry) {
        let Some(status) = t.status.as_mut() else {
            return;
        };
        match crate::mqtt::outputs_health(
            self.outbox.store(),
            &self.webhooks,
            &self.mqtt,
            &self.db_path,
        ) {
            Ok(list) => {
                let now = jiff::Timestamp::now().as_millisecond();
                status.webhooks = list
                    .iter()
                    .map(|h| crate::health::WebhookFigures {
                        name: h.name.clone(),
                        state: h.state.to_string(),
                        backlog: h.backlog,
                        oldest_undelivered_age_s: h
                            .oldest_undelivered_ms
                            .map(|ms| (now.saturating_sub(ms).max(0) / 1000) as u64),
                    })
                    .collect();
                self.health = (Some(Instant::now()), list);
            }
            Err(e) => log::debug!("storage: webhook figures: {e}"),
        }
        status.disk_free_bytes = crate::health::disk_free(&self.db_path);
        status.counters.dropped += self.outbox.counts().dropped;
    }

    fn housekeeping(&mut self) {
        if self.secure.dirty() {
            self.flush_rlc();
        }
        match self.devices.take_forgets() {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = self.secure.forget(id) {
                        warn!("could not forget secure device {id:08X}: {e}");
                    }
                    let _ = self.forgets.send(id);
                }
            }
            Err(e) => warn!("could not read forgotten devices: {e}"),
        }
        self.figures
            .dropped
            .store(self.outbox.counts().dropped, Ordering::Relaxed);
        match self.outbox.backlog() {
            Ok(n) => self.figures.backlog.store(n, Ordering::Relaxed),
            Err(e) => log::debug!("storage: backlog figure: {e}"),
        }
    }
}
