//! The outbox: one SQLite file (WAL) where telemetry is committed before
//! anything else happens to it, with group commit, bounds, pruning and corruption recovery.
//!
//! Model: telemetry rows carry the sequence number (`seq`, assigned at commit). Every webhook has a
//! persisted cursor (the highest seq handed to one of its deliveries); a webhook's backlog is the
//! telemetry after its cursor that its routes match — one delivery per telemetry per matching
//! webhook, in seq order. A delivery whose first attempt does not succeed is stored with its exact
//! body (table `delivery`), so retries and resends send the same bytes. Successful first attempts
//! are acknowledged on disk in groups (`ack_window`): a crash in between causes a duplicate with
//! the same delivery id, never a loss.
//!
//! Durability window: telemetry handed to [`Outbox::enqueue`] survives a crash of the agent once a
//! commit returns its [`Committed`] record — at most `commit_window` (default 1 s) or
//! `commit_batch` records later — and a power cut one more window later unless every output has
//! delivered it by then ([`Outbox::sync_due`]).

pub mod body;
pub mod config;
mod lz4;
pub mod record;
pub mod schema;
pub mod store;
pub mod time;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{ErrorCode, OptionalExtension, params};

pub use config::{Overflow, StorageConfig};
pub use store::{
    Delivery, DeliveryChange, DeliveryState, HealthChange, LogEntry, NewDelivery, Outcome, Phase,
    Salvage, Status, Store, StreakEnd, Trigger, UnknownValue, WebhookState, id_text, id_value,
};
pub use time::UnixMs;

use crate::telemetry::Telemetry;

/// Errors of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// SQLite reported an error.
    #[error("outbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file operation failed.
    #[error("outbox file: {0}")]
    Io(#[from] std::io::Error),
    /// Telemetry could not be serialised.
    #[error("outbox: telemetry JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The file was written by a newer version of the agent.
    #[error("outbox schema version {found} is newer than this agent supports ({supported})")]
    NewerSchema {
        /// Version in the file.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// The outbox is full and the policy refuses new telemetry (`overflow = "drop-newest"`).
    #[error("outbox full: {0} telemetry records refused")]
    Refused(usize),
}

impl OutboxError {
    /// The stored name or code no variant has, when reading one is what failed (see
    /// [`UnknownValue`]).
    pub fn unknown_value(&self) -> Option<&UnknownValue> {
        match self {
            OutboxError::Sqlite(rusqlite::Error::FromSqlConversionFailure(_, _, e)) => {
                e.downcast_ref()
            }
            _ => None,
        }
    }

    /// True for a full disk or database (`SQLITE_FULL`, ENOSPC).
    pub fn is_disk_full(&self) -> bool {
        match self {
            OutboxError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                f.code == ErrorCode::DiskFull
            }
            OutboxError::Io(e) => e.raw_os_error() == Some(28),
            _ => false,
        }
    }
}

/// A telemetry record that is committed: in the database, safe from a crash of the agent, on
/// the disk within a commit window unless delivered first ([`Outbox::sync_due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The telemetry id.
    pub id: String,
    /// Its sequence number.
    pub seq: u64,
}

/// Wakes the sender threads when there is new work (a commit, `webhook enable`, shutdown). It
/// also carries how far each output has come ([`Delivered`]) and the records committed last
/// ([`record::Recent`]), since the outbox and every sender already share it.
#[derive(Clone, Default)]
pub struct Waker(Arc<(Mutex<u64>, Condvar)>, Delivered, record::Recent);

impl Waker {
    /// A new waker.
    pub fn new() -> Self {
        Self::default()
    }

    /// How far each output has come, in memory.
    pub fn delivered(&self) -> &Delivered {
        &self.1
    }

    /// The records committed last.
    pub fn recent(&self) -> &record::Recent {
        &self.2
    }

    /// Wakes every waiting thread.
    pub fn wake(&self) {
        let (m, c) = &*self.0;
        if let Ok(mut n) = m.lock() {
            *n = n.wrapping_add(1);
        }
        c.notify_all();
    }

    /// Waits until woken after `seen` or until `timeout`; updates `seen`.
    pub fn wait(&self, seen: &mut u64, timeout: Duration) {
        let (m, c) = &*self.0;
        let Ok(guard) = m.lock() else { return };
        let result = c.wait_timeout_while(guard, timeout, |n| *n == *seen);
        if let Ok((g, _)) = result {
            *seen = *g;
        }
    }

    /// The current wake count (to pass to [`Waker::wait`]).
    pub fn seen(&self) -> u64 {
        self.0.0.lock().map(|g| *g).unwrap_or(0)
    }
}

/// How far each running output has come, in memory: the seq through which every reading was
/// delivered, passed over (not routed to it) or stored durably in a delivery of its own. The
/// outbox skips the fsync of readings every output has come past (they are at the receivers or
/// on the disk already) and flushes the others within `commit_window`.
#[derive(Clone, Default)]
pub struct Delivered(Arc<Mutex<Vec<(String, u64)>>>);

impl Delivered {
    /// An output starts at its stored cursor (again after a restart of its thread).
    pub fn register(&self, output: &str, cursor: u64) {
        if let Ok(mut v) = self.0.lock() {
            match v.iter_mut().find(|(n, _)| n == output) {
                Some(e) => e.1 = cursor,
                None => v.push((output.to_owned(), cursor)),
            }
        }
    }

    /// The output has come through `seq`.
    pub fn advance(&self, output: &str, seq: u64) {
        if let Ok(mut v) = self.0.lock()
            && let Some(e) = v.iter_mut().find(|(n, _)| n == output)
        {
            e.1 = e.1.max(seq);
        }
    }

    /// The seq every registered output has come through; None when no output is running
    /// (then nothing ever leaves the outbox and every reading is flushed).
    pub fn through(&self) -> Option<u64> {
        self.0.lock().ok()?.iter().map(|e| e.1).min()
    }
}

/// What a maintenance pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Delivered telemetry older than the retention.
    pub telemetry: u64,
    /// Delivery log entries.
    pub log: u64,
    /// Delivered or surplus failed deliveries.
    pub deliveries: u64,
}

/// The writer side of the outbox: the daemon's one instance enqueues telemetry and commits it in
/// groups.
pub struct Outbox {
    store: Store,
    cfg: StorageConfig,
    /// Boxed as the serial reader hands them over: a record (472 bytes) is not moved again.
    #[allow(clippy::vec_box, reason = "records arrive boxed; unboxing copies each")]
    buffer: Vec<Box<Telemetry>>,
    oldest_buffered: Option<Instant>,
    /// When the last group commit was tried (successful or not).
    last_commit: Option<Instant>,
    rows: u64,
    bytes: u64,
    waker: Option<Waker>,
    last_maintenance: Instant,
    recovered_from: Option<PathBuf>,
    pending_counters: Vec<(&'static str, i64)>,
    /// Test-only: every commit first sleeps this long (`ENOCEAN_AGENT_TEST_COMMIT_DELAY_MS`), to
    /// prove that a slow SD card never stalls the serial reader.
    commit_delay: Option<Duration>,
    /// Counted since open, in memory: visible while the disk is full (when nothing can be
    /// written to the database's counters).
    counts: Counts,
    /// When the current full-disk episode began, and `counts.dropped` then.
    disk_full: Option<(Instant, u64)>,
    /// Rate limit of drop log lines: when the last was written, and drops not yet logged.
    drop_log: (Option<Instant>, u64),
    /// Seqs below this are reserved in `seq_floor` and `<db>.seq` (may have been handed out).
    seq_reserved: u64,
    /// The seq of the next reading committed.
    next_seq: u64,
    /// Records of a failed commit, encoded (id, device, body), first in the next try.
    retry: Vec<(String, String, Vec<u8>)>,
    /// Commits not yet flushed to the disk: the commit slot (`last_commit`) of the first of
    /// them, and the last seq committed since (see [`Outbox::sync_due`]).
    unsynced: Option<(Instant, u64)>,
    /// Flushes done and flushes found unneeded (every output had come past the readings).
    syncs: SyncCounts,
}

/// How the outbox's commits reached the disk, counted since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Flushes of the WAL to the disk (readings some output had not come past yet, a stop).
    pub flushed: u64,
    /// Windows whose readings every output had come past already: no flush needed.
    pub skipped: u64,
}

/// What the outbox counted since it was opened. Kept in memory, so the figures are right while
/// the disk is full; the database's `counters` table has the lasting totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Undelivered readings dropped by the overflow policy (full disk, bounds, memory cap).
    pub dropped: u64,
    /// Full-disk episodes (a first failed commit after a good one).
    pub disk_full_episodes: u64,
    /// Commits that failed (each retried a window later).
    pub failed_commits: u64,
    /// True while the disk is full.
    pub disk_full_now: bool,
}

/// Sequence numbers are reserved in blocks of this many in `<db>.seq`, a file beside the
/// database: after a corrupt database is moved aside, the fresh one continues above every seq
/// ever handed out. One small file write per block.
const SEQ_BLOCK: u64 = 1_000_000;
/// A new block is reserved when the last seq comes this close to the reservation.
const SEQ_MARGIN: u64 = 100_000;

/// A file of this many bytes at most (`<db>.reserve`) is kept beside the database and deleted
/// when the disk fills, so that dropping the oldest readings (which writes to the WAL) has room.
const RESERVE_MAX: u64 = 1 << 20;

/// Environment variable of the test-only commit delay, in milliseconds.
pub const TEST_COMMIT_DELAY_ENV: &str = "ENOCEAN_AGENT_TEST_COMMIT_DELAY_MS";

const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

impl Outbox {
    /// Opens the outbox at `cfg.path`, creating it if needed and registering the webhooks that
    /// are enabled in the configuration. A corrupt or unreadable file is moved aside as
    /// `outbox.db.corrupt-<time>` (logged at error level) and a fresh one is created.
    pub fn open(cfg: &StorageConfig, webhooks: &[&str]) -> Result<Self, OutboxError> {
        let mut recovered_from = None;
        let (mut store, rows, bytes) = match Self::try_open(&cfg.path) {
            Ok(v) => v,
            Err(e) if schema::is_corruption(&e) => {
                let moved = schema::move_aside(&cfg.path)?;
                log::error!(
                    "outbox: {} is corrupt ({e}); moved aside to {} and starting a fresh outbox",
                    cfg.path.display(),
                    moved.display()
                );
                recovered_from = Some(moved);
                Self::try_open(&cfg.path)?
            }
            Err(e) => return Err(e),
        };
        store.register_webhooks(webhooks)?;
        match schema::drop_autoincrement(&mut store.conn, schema::REBUILD_MAX_ROWS) {
            Ok(true) if rows > 0 => {
                log::info!("outbox: telemetry table copied without AUTOINCREMENT ({rows} rows)")
            }
            Ok(_) => {}
            Err(e) => log::warn!("outbox: could not copy the telemetry table: {e}"),
        }
        let mut me = Self {
            store,
            cfg: cfg.clone(),
            buffer: Vec::new(),
            oldest_buffered: None,
            last_commit: None,
            rows,
            bytes,
            waker: None,
            last_maintenance: Instant::now(),
            recovered_from,
            pending_counters: Vec::new(),
            commit_delay: std::env::var(TEST_COMMIT_DELAY_ENV)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis),
            counts: Counts::default(),
            disk_full: None,
            drop_log: (None, 0),
            seq_reserved: 0,
            next_seq: 1,
            retry: Vec::new(),
            unsynced: None,
            syncs: SyncCounts::default(),
        };
        // Readings are committed without a flush each (see `sync_due`); the CLI's and tests'
        // connections (`Store::open`) keep flushing every commit.
        me.store.conn.pragma_update(None, "synchronous", "NORMAL")?;
        me.keep_reserve();
        me.continue_seq()?;
        if me.recovered_from.is_some() {
            me.pending_counters.push(("corrupt_recovered", 1));
        }
        if let Err(e) = me.maintain() {
            log::warn!("outbox: maintenance at start failed: {e}");
        }
        Ok(me)
    }

    fn try_open(path: &Path) -> Result<(Store, u64, u64), OutboxError> {
        let store = Store::open(path)?;
        let (rows, bytes): (i64, i64) = store.conn.query_row(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM telemetry",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        store
            .conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get::<_, String>(0))
            .map_err(OutboxError::from)
            .and_then(|s| {
                if s == "ok" {
                    Ok(())
                } else {
                    Err(OutboxError::Sqlite(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                        Some(s),
                    )))
                }
            })?;
        Ok((store, rows.max(0) as u64, bytes.max(0) as u64))
    }

    /// Where a corrupt file was moved at open, if it was.
    pub fn recovered_from(&self) -> Option<&Path> {
        self.recovered_from.as_deref()
    }

    /// Wakes `waker` after every commit (the sender's).
    pub fn set_waker(&mut self, waker: Waker) {
        self.waker = Some(waker);
    }

    /// Caps the database file at `pages` pages (`PRAGMA max_page_count`) for this connection: a
    /// hard size limit that makes SQLite report a full database (small disks, tests). Returns the
    /// limit in effect.
    pub fn set_page_limit(&mut self, pages: u64) -> Result<u64, OutboxError> {
        let v: i64 = self.store.conn.query_row(
            &format!("PRAGMA max_page_count = {}", pages.min(i64::MAX as u64)),
            [],
            |r| r.get(0),
        )?;
        Ok(v.max(0) as u64)
    }

    /// The underlying store (queries).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Telemetry rows and bytes currently stored.
    pub fn size(&self) -> (u64, u64) {
        (self.rows, self.bytes)
    }

    /// Telemetry waiting in memory for the next commit.
    pub fn buffered(&self) -> usize {
        self.buffer.len() + self.retry.len()
    }

    /// Adds telemetry to the next group commit. Commits at once when `commit_batch` records are
    /// waiting and returns what was committed (empty while the group is still open). On error
    /// the records stay buffered for the next try.
    pub fn enqueue(&mut self, t: Telemetry) -> Result<Vec<Committed>, OutboxError> {
        self.enqueue_boxed(Box::new(t))
    }

    /// [`Outbox::enqueue`] of a record handed over in a box (as the storage thread receives
    /// them), without moving it out.
    pub fn enqueue_boxed(&mut self, t: Box<Telemetry>) -> Result<Vec<Committed>, OutboxError> {
        if self.oldest_buffered.is_none() {
            self.oldest_buffered = Some(Instant::now());
        }
        self.buffer.push(t);
        // A full group commits at once, unless a commit failed within the window: a failing
        // disk is retried once per window, not once per reading.
        if self.buffer.len() >= self.cfg.commit_batch.max(1) && self.disk_full.is_none() {
            return self.commit_now();
        }
        Ok(Vec::new())
    }

    /// When the open group must be committed (None when nothing is waiting): at once when no
    /// commit was tried within the last `commit_window` (an idle gateway delivers without
    /// delay), else one window after the previous try. So at most one commit per window reaches
    /// the disk, no record waits longer than a window, and a failing disk is retried once per
    /// window rather than in a loop.
    pub fn commit_due(&self) -> Option<Instant> {
        let oldest = self.oldest_buffered?;
        let next_slot = self
            .last_commit
            .and_then(|t| t.checked_add(self.cfg.commit_window))
            .unwrap_or(oldest);
        Some(oldest.max(next_slot))
    }

    /// When committed readings must be on the disk (None when everything is): one
    /// `commit_window` after the first commit not yet flushed. Commits are not flushed one by one
    /// (`synchronous=NORMAL`): a reading is in the database when its commit returns, safe from a
    /// crash of the agent (the page cache keeps it), and is delivered at once; the flush that
    /// makes it safe from a power cut comes at most a window later, and only when some running
    /// output has not come past it ([`Delivered`]): a reading already at every receiver, or kept
    /// in a flushed delivery of its own, needs no flush. A quiet building's SD card so sees no
    /// flush per reading, and a power cut loses at most the readings of the last window that
    /// had not been delivered — the bound of the group commit before this.
    pub fn sync_due(&self) -> Option<Instant> {
        self.unsynced
            .map(|(since, _)| since + self.cfg.commit_window)
    }

    /// The earliest of [`Outbox::commit_due`] and [`Outbox::sync_due`]: when to poll next.
    pub fn next_due(&self) -> Option<Instant> {
        match (self.commit_due(), self.sync_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Flushes and skipped flushes since open.
    pub fn sync_counts(&self) -> SyncCounts {
        self.syncs
    }

    /// Flushes the committed readings to the disk unless every running output has come past
    /// them (`force`: flush anyway, at a stop).
    fn sync_now(&mut self, force: bool) {
        let Some((_, last)) = self.unsynced else {
            return;
        };
        let through = self.waker.as_ref().and_then(|w| w.delivered().through());
        log::debug!(
            "outbox: flush due for commits through seq {last}; outputs through {through:?}"
        );
        let passed = through.is_some_and(|through| through >= last);
        if passed && !force {
            self.syncs.skipped += 1;
            self.unsynced = None;
            return;
        }
        let mut wal = self.cfg.path.clone().into_os_string();
        wal.push("-wal");
        match std::fs::File::open(&wal).and_then(|f| f.sync_data()) {
            Ok(()) => {
                self.syncs.flushed += 1;
                self.unsynced = None;
            }
            // No WAL: everything is in the database file, which SQLite flushed at the checkpoint.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.unsynced = None,
            Err(e) => {
                // Tried again one window later.
                log::warn!("outbox: flushing committed readings to the disk failed: {e}");
                self.unsynced = Some((Instant::now(), last));
            }
        }
    }

    /// Commits the open group when its window has passed, flushes commits to the disk when
    /// they are due, and runs maintenance now and then.
    pub fn poll(&mut self, now: Instant) -> Result<Vec<Committed>, OutboxError> {
        // The flush decision first: it is about the commits that had their whole window to be
        // delivered, not about a group committed this instant (both fall due together when
        // readings keep coming).
        if self.sync_due().is_some_and(|due| now >= due) {
            self.sync_now(false);
        }
        let out = match self.commit_due() {
            Some(due) if now >= due => self.commit_now()?,
            _ => Vec::new(),
        };
        if now.duration_since(self.last_maintenance) >= MAINTENANCE_EVERY {
            self.last_maintenance = now;
            if let Err(e) = self.maintain() {
                // Pruning needs a little room too; a full-disk episode is reported once.
                if e.is_disk_full() && self.counts.disk_full_now {
                    log::debug!("outbox: maintenance failed: {e}");
                } else {
                    log::warn!("outbox: maintenance failed: {e}");
                }
            }
        }
        Ok(out)
    }

    /// Commits everything waiting now and flushes it to the disk (shutdown, tests). Returns the
    /// committed records.
    pub fn flush(&mut self) -> Result<Vec<Committed>, OutboxError> {
        let out = self.commit_now();
        self.sync_now(true);
        out
    }

    /// Commits everything waiting now. Returns the committed records.
    fn commit_now(&mut self) -> Result<Vec<Committed>, OutboxError> {
        if self.buffer.is_empty() && self.retry.is_empty() {
            return Ok(Vec::new());
        }
        self.last_commit = Some(Instant::now());
        let batch = std::mem::take(&mut self.buffer);
        let oldest = self.oldest_buffered.take();
        // Records of a failed commit wait encoded: a failing disk costs no re-encoding per try.
        let mut encoded = std::mem::take(&mut self.retry);
        encoded.reserve(batch.len());
        // One JSON buffer for the group; the ids move out of the records. With senders to tell,
        // what they will read back is remembered once committed (aligned with `encoded`; the
        // records of a failed commit have nothing to remember).
        let remember = self.waker.as_ref().is_some_and(|w| w.recent().wanted());
        let mut recent: Vec<Option<record::Remembered>> = Vec::new();
        if remember {
            recent.resize_with(encoded.len(), || None);
        }
        let mut json = Vec::with_capacity(1024);
        let mut scratch = Vec::with_capacity(1024);
        for mut t in batch {
            json.clear();
            let marks = t.write_json(&mut json)?;
            let stored = body::encode_record_known(&json, &t.id, &marks.cuts, &mut scratch);
            if remember {
                recent.push(record::Remembered::new(&t, &json, &stored, marks));
            }
            encoded.push((
                std::mem::take(&mut t.id),
                std::mem::take(&mut t.sensor.id),
                stored,
            ));
        }
        // A group larger than the bounds themselves keeps only its newest records.
        if self.cfg.overflow == Overflow::DropOldest {
            let mut excess = encoded.len().saturating_sub(self.cfg.max_rows as usize);
            let mut total: u64 = encoded.iter().map(|e| e.2.len() as u64).sum();
            while excess < encoded.len() && total > self.cfg.max_bytes {
                total -= encoded[excess].2.len() as u64;
                excess += 1;
            }
            if excess > 0 {
                encoded.drain(..excess);
                recent.drain(..excess.min(recent.len()));
                self.count_drop(excess as u64, "group larger than the outbox bounds");
            }
        }
        let mut result = self.commit_batch(&encoded);
        if let Err(e) = &result
            && e.is_disk_full()
        {
            self.counts.failed_commits += 1;
            if self.disk_full.is_none() {
                self.disk_full = Some((Instant::now(), self.counts.dropped));
                self.counts.disk_full_episodes += 1;
                self.counts.disk_full_now = true;
                self.pending_counters.push(("disk_full", 1));
                log::error!(
                    "outbox: disk full ({e}); policy {}: {}; commits are retried once per {:?}; \
                     one line when it ends, at most one summary a minute meanwhile",
                    self.cfg.overflow.as_str(),
                    if self.cfg.overflow == Overflow::DropNewest {
                        "new readings are refused and counted"
                    } else {
                        "the oldest readings make room, one for each new one, counted"
                    },
                    self.cfg.commit_window
                );
                self.release_reserve();
            }
            if self.cfg.overflow == Overflow::DropNewest {
                self.count_drop(encoded.len() as u64, "disk full, policy drop-newest");
                return Err(OutboxError::Refused(encoded.len()));
            }
            // Only as many of the oldest as are added; a checkpoint moves the WAL into the
            // database file (where the freed pages are) and truncates it; then one more try.
            match self.drop_oldest(encoded.len() as u64, 0, "disk full") {
                Ok(()) => {
                    let _ = self.store.conn.query_row(
                        "PRAGMA wal_checkpoint(TRUNCATE)",
                        [],
                        |_| Ok(()),
                    );
                    result = self.commit_batch(&encoded);
                }
                Err(e2) => log::debug!("outbox: could not drop readings on a full disk: {e2}"),
            }
        }
        match result {
            Ok(c) => {
                if let Some((since, dropped_then)) = self.disk_full.take() {
                    self.counts.disk_full_now = false;
                    log::info!(
                        "outbox: commits succeed again after {:.0?} of full disk; {} undelivered \
                         reading(s) were dropped meanwhile",
                        since.elapsed(),
                        self.counts.dropped - dropped_then
                    );
                }
                if let Some(last) = c.last() {
                    // The window starts with the commit's own slot (`last_commit`), so a flush
                    // falls due with the next group commit and is decided before it.
                    let since = self
                        .unsynced
                        .map(|u| u.0)
                        .or(self.last_commit)
                        .unwrap_or_else(Instant::now);
                    self.unsynced = Some((since, last.seq));
                }
                if let Some(w) = &self.waker {
                    if c.len() == recent.len() {
                        for (committed, r) in c.iter().zip(recent) {
                            if let Some(r) = r {
                                w.recent().remember(committed.seq, r);
                            }
                        }
                    }
                    w.wake();
                }
                Ok(c)
            }
            Err(e @ OutboxError::Refused(_)) => Err(e),
            Err(e) => {
                // Keep the records for the next try, bounded so memory cannot grow without end.
                let cap = self.cfg.commit_batch.max(1) * 10;
                let mut kept = encoded;
                if kept.len() > cap {
                    let excess = kept.len() - cap;
                    kept.drain(..excess);
                    self.count_drop(excess as u64, "commit failing, memory buffer full");
                }
                // Kept for a while: a body is sized for its worst case until shrunk.
                for (_, _, stored) in &mut kept {
                    stored.shrink_to_fit();
                }
                self.retry = kept;
                self.oldest_buffered = oldest.or(Some(Instant::now()));
                Err(e)
            }
        }
    }

    fn seq_path(&self) -> PathBuf {
        Self::seq_path_of(&self.cfg.path)
    }

    /// `<db>.seq` beside the database at `db`.
    fn seq_path_of(db: &Path) -> PathBuf {
        let mut p = db.as_os_str().to_owned();
        p.push(".seq");
        PathBuf::from(p)
    }

    /// Sets where new seqs start: above every seq this database or its predecessor handed out
    /// (the reservations in `seq_floor` and in `<db>.seq` — a fresh database after a corrupt one
    /// was moved aside starts there — and the stored readings), and reserves the next block.
    fn continue_seq(&mut self) -> Result<(), OutboxError> {
        let file = std::fs::read_to_string(self.seq_path())
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let db: i64 = self
            .store
            .conn
            .query_row("SELECT seq FROM seq_floor", [], |r| r.get(0))?;
        let db = db.max(0) as u64;
        let current = self.last_seq()?;
        if file > db.max(current + 1) && (current > 0 || self.recovered_from.is_some()) {
            log::warn!(
                "outbox: seq continues above {file} (reserved in {}), never reusing a seq handed out before",
                self.seq_path().display()
            );
        }
        self.next_seq = file.max(db).max(current + 1);
        self.seq_reserved = db;
        // Reserve the next block now (a full disk may refuse: the first commit tries again).
        let reserved = self.next_seq + SEQ_BLOCK;
        if let Err(e) = Self::write_seq_file(&self.seq_path(), reserved) {
            log::warn!("outbox: could not write the seq reservation file: {e}");
        }
        match self
            .store
            .conn
            .execute("UPDATE seq_floor SET seq = ?1", params![reserved as i64])
        {
            Ok(_) => self.seq_reserved = reserved,
            Err(e) => log::warn!("outbox: could not reserve the next seqs: {e}"),
        }
        Ok(())
    }

    /// Highest seq stored or recorded by SQLite's AUTOINCREMENT (tables of older versions).
    fn last_seq(&self) -> Result<u64, OutboxError> {
        let auto: Option<i64> = self
            .store
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'telemetry'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok((auto.unwrap_or(0).max(0) as u64).max(self.max_seq()?))
    }

    /// The highest seq stored (0 when the table is empty): one index lookup.
    fn max_seq(&self) -> Result<u64, OutboxError> {
        let v: i64 =
            self.store
                .conn
                .query_row("SELECT coalesce(max(seq), 0) FROM telemetry", [], |r| {
                    r.get(0)
                })?;
        Ok(v.max(0) as u64)
    }

    /// Writes the reservation `next` to `<db>.seq` (flushed, replaced atomically).
    fn write_seq_file(path: &Path, next: u64) -> Result<(), OutboxError> {
        let tmp = path.with_extension("seq.tmp");
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{next}")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }

    /// Figures counted since open (readable while the disk is full).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn reserve_path(&self) -> PathBuf {
        let mut p = self.cfg.path.as_os_str().to_owned();
        p.push(".reserve");
        PathBuf::from(p)
    }

    /// Creates the reserve file when it is missing and the disk has room for it comfortably.
    fn keep_reserve(&mut self) {
        let path = self.reserve_path();
        if self.disk_full.is_some() || path.exists() {
            return;
        }
        let dir = self.cfg.path.parent().filter(|p| !p.as_os_str().is_empty());
        let Ok(st) = rustix::fs::statvfs(dir.unwrap_or(Path::new("."))) else {
            return;
        };
        let total = st.f_blocks.saturating_mul(st.f_frsize);
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        let size = (total / 64).clamp(64 << 10, RESERVE_MAX);
        if free < self.cfg.min_free_bytes.saturating_add(size * 4) {
            return;
        }
        let written = std::fs::File::create(&path).and_then(|f| {
            use std::io::Write as _;
            let mut f = std::io::BufWriter::new(f);
            let zeros = vec![0u8; 64 << 10];
            let mut left = size;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.into_inner().map_err(|e| e.into_error())?.sync_all()
        });
        if let Err(e) = written {
            log::debug!("outbox: no reserve file ({e})");
            let _ = std::fs::remove_file(&path);
        }
    }

    fn release_reserve(&mut self) {
        if std::fs::remove_file(self.reserve_path()).is_ok() {
            log::info!("outbox: released the reserve file to make room for dropping readings");
        }
    }

    /// Counts dropped readings; logs the first at once and then at most one line a minute.
    fn count_drop(&mut self, n: u64, why: &str) {
        self.counts.dropped += n;
        self.pending_counters.push(("dropped", n as i64));
        self.drop_log.1 += n;
        let now = Instant::now();
        if self
            .drop_log
            .0
            .is_none_or(|t| now >= t + Duration::from_secs(60))
        {
            log::warn!(
                "outbox: dropped {} undelivered reading(s) ({why}); {} since the agent started",
                self.drop_log.1,
                self.counts.dropped
            );
            self.drop_log = (Some(now), 0);
        }
    }

    fn free_disk(&self) -> Option<u64> {
        let dir = self.cfg.path.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        let st = rustix::fs::statvfs(dir).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Makes room per the policy, then inserts the batch in one transaction.
    fn commit_batch(
        &mut self,
        encoded: &[(String, String, Vec<u8>)],
    ) -> Result<Vec<Committed>, OutboxError> {
        let n = encoded.len() as u64;
        let new_bytes: u64 = encoded.iter().map(|e| e.2.len() as u64).sum();
        let over_rows = (self.rows + n).saturating_sub(self.cfg.max_rows);
        let over_bytes = (self.bytes + new_bytes).saturating_sub(self.cfg.max_bytes);
        let low_disk = self
            .free_disk()
            .is_some_and(|free| free < self.cfg.min_free_bytes.saturating_add(new_bytes * 2));
        if over_rows > 0 || over_bytes > 0 || low_disk {
            if self.cfg.overflow == Overflow::DropNewest {
                self.count_drop(n, "outbox full, policy drop-newest");
                self.flush_counters()?;
                return Err(OutboxError::Refused(encoded.len()));
            }
            // On low disk, one oldest reading goes for each one added: the file stops growing
            // (freed pages are reused) and no more is dropped than is added.
            let rows_goal = if low_disk {
                over_rows.max(n)
            } else {
                over_rows
            };
            let why = if low_disk {
                "free-disk reserve reached"
            } else {
                "outbox bounds reached"
            };
            self.drop_oldest(rows_goal, over_bytes, why)?;
        }
        if let Some(d) = self.commit_delay {
            std::thread::sleep(d);
        }
        let now_ms = UnixMs::now();
        let tx = self
            .store
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Seqs come from memory, below the reservation in `seq_floor` (schema migration 8); a
        // reservation moved by another writer (`outbox salvage`) means its seqs start there,
        // and a row written past both (by hand, by an older version) is stepped over too.
        let (floor, stored): (i64, i64) = tx
            .prepare_cached(
                "SELECT (SELECT seq FROM seq_floor), (SELECT coalesce(max(seq), 0) FROM telemetry)",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let floor = floor.max(0) as u64;
        let (mut next, mut reserved) = (self.next_seq, self.seq_reserved);
        if floor > reserved {
            next = next.max(floor);
            reserved = floor;
        }
        next = next.max(stored.max(0) as u64 + 1);
        let first = next;
        let last = first + encoded.len() as u64 - 1;
        if last + SEQ_MARGIN >= reserved {
            reserved = last + SEQ_BLOCK;
            tx.prepare_cached("UPDATE seq_floor SET seq = ?1")?
                .execute(params![reserved as i64])?;
            if let Err(e) = Self::write_seq_file(&Self::seq_path_of(&self.cfg.path), reserved) {
                log::warn!("outbox: could not write the seq reservation file: {e}");
            }
        }
        let mut out = Vec::with_capacity(encoded.len());
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO telemetry (seq, id, device, committed_at, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for ((id, device, body), seq) in encoded.iter().zip(first..) {
                st.execute(params![
                    seq as i64,
                    store::stored_id(id),
                    device,
                    now_ms,
                    body
                ])?;
                out.push(Committed {
                    id: id.clone(),
                    seq,
                });
            }
        }
        for (name, delta) in &self.pending_counters {
            bump(&tx, name, *delta)?;
        }
        tx.commit()?;
        self.next_seq = last + 1;
        self.seq_reserved = reserved;
        self.pending_counters.clear();
        self.rows += n;
        self.bytes += new_bytes;
        Ok(out)
    }

    fn flush_counters(&mut self) -> Result<(), OutboxError> {
        if self.pending_counters.is_empty() {
            return Ok(());
        }
        let tx = self.store.conn.transaction()?;
        for (name, delta) in &self.pending_counters {
            bump(&tx, name, *delta)?;
        }
        tx.commit()?;
        self.pending_counters.clear();
        Ok(())
    }

    /// Readings committed but not yet handed to the slowest configured webhook (an upper bound:
    /// readings a webhook does not route count too). Two index lookups, no table scan.
    pub fn backlog(&self) -> Result<u64, OutboxError> {
        let max_seq = self.max_seq()?;
        // The running outputs' cursors in memory are ahead of the stored ones by up to an
        // `ack_window`: without them a busy gateway would show seconds of phantom backlog.
        let live = self
            .waker
            .as_ref()
            .and_then(|w| w.delivered().through())
            .unwrap_or(0);
        Ok(max_seq.saturating_sub(self.min_cursor()?.max(live)))
    }

    fn min_cursor(&self) -> Result<u64, OutboxError> {
        let v: Option<i64> = self.store.conn.query_row(
            "SELECT coalesce((SELECT min(cursor) FROM webhook WHERE configured = 1), \
             (SELECT coalesce(max(seq), 0) FROM telemetry))",
            [],
            |r| r.get(0),
        )?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }

    /// Deletes the oldest telemetry until at least `rows_goal` rows and `bytes_goal` bytes are
    /// gone; undelivered ones are counted as dropped and logged.
    fn drop_oldest(
        &mut self,
        rows_goal: u64,
        bytes_goal: u64,
        why: &str,
    ) -> Result<(), OutboxError> {
        let min_cursor = self.min_cursor()?;
        // Find the seq up to which to delete, walking oldest first in chunks.
        let mut last_seq: Option<i64> = None;
        let (mut rows, mut bytes, mut undelivered) = (0u64, 0u64, 0u64);
        {
            let mut st = self.store.conn.prepare(
                "SELECT seq, length(body) FROM telemetry WHERE seq > ?1 ORDER BY seq LIMIT 1000",
            )?;
            'outer: loop {
                let mut q = st.query(params![last_seq.unwrap_or(0)])?;
                let mut any = false;
                while let Some(r) = q.next()? {
                    any = true;
                    let seq: i64 = r.get(0)?;
                    let len: i64 = r.get(1)?;
                    last_seq = Some(seq);
                    rows += 1;
                    bytes += len.max(0) as u64;
                    if seq as u64 > min_cursor {
                        undelivered += 1;
                    }
                    if rows >= rows_goal && (bytes_goal == u64::MAX || bytes >= bytes_goal) {
                        break 'outer;
                    }
                }
                if !any {
                    break;
                }
            }
        }
        let Some(upto) = last_seq else {
            return Ok(());
        };
        self.store
            .conn
            .execute("DELETE FROM telemetry WHERE seq <= ?1", params![upto])?;
        self.rows = self.rows.saturating_sub(rows);
        self.bytes = self.bytes.saturating_sub(bytes);
        if undelivered > 0 {
            self.count_drop(undelivered, why);
        } else if self.disk_full.is_some() {
            log::debug!("outbox: pruned {rows} delivered telemetry records early ({why})");
        } else {
            log::info!("outbox: pruned {rows} delivered telemetry records early ({why})");
        }
        Ok(())
    }

    /// Prunes delivered telemetry older than `delivered_retention`, the delivery log by age and
    /// count, delivered deliveries by age and failed ones beyond `max_failed`.
    pub fn maintain(&mut self) -> Result<Pruned, OutboxError> {
        let mut p = Pruned::default();
        let min_cursor = self.min_cursor()?;
        let cutoff_ms = UnixMs::ago(self.cfg.delivered_retention);
        let (n, b): (i64, i64) = self.store.conn.query_row(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM telemetry \
             WHERE seq <= ?1 AND committed_at < ?2",
            params![min_cursor as i64, cutoff_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if n > 0 {
            self.store.conn.execute(
                "DELETE FROM telemetry WHERE seq <= ?1 AND committed_at < ?2",
                params![min_cursor as i64, cutoff_ms],
            )?;
            self.rows = self.rows.saturating_sub(n as u64);
            self.bytes = self.bytes.saturating_sub(b as u64);
            p.telemetry = n as u64;
        }
        let log_cutoff = UnixMs::ago(self.cfg.log_retention);
        p.log += self
            .store
            .conn
            .execute("DELETE FROM attempt_log WHERE at < ?1", params![log_cutoff])?
            as u64;
        p.log += self.store.conn.execute(
            "DELETE FROM attempt_log WHERE id <= (SELECT max(id) FROM attempt_log) - ?1",
            params![self.cfg.log_max_rows as i64],
        )? as u64;
        let del_cutoff = UnixMs::ago(self.cfg.delivered_retention);
        p.deliveries += self.store.conn.execute(
            "DELETE FROM delivery WHERE state = ?2 AND updated_at < ?1",
            params![del_cutoff, DeliveryState::Delivered],
        )? as u64;
        let surplus = self.store.conn.execute(
            "DELETE FROM delivery WHERE state = ?2 AND id IN (SELECT id FROM delivery \
             WHERE state = ?2 ORDER BY id DESC LIMIT -1 OFFSET ?1)",
            params![self.cfg.max_failed as i64, DeliveryState::Failed],
        )? as u64;
        if surplus > 0 {
            log::warn!("outbox: dropped {surplus} oldest failed deliveries (max_failed reached)");
            self.pending_counters
                .push(("failed_dropped", surplus as i64));
            p.deliveries += surplus;
        }
        self.flush_counters()?;
        self.keep_reserve();
        if p != Pruned::default() {
            log::info!(
                "outbox: pruned {} delivered telemetry, {} log entries, {} deliveries",
                p.telemetry,
                p.log,
                p.deliveries
            );
        }
        Ok(p)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if (self.buffered() > 0 || self.unsynced.is_some())
            && let Err(e) = self.flush()
        {
            log::error!(
                "outbox: {} telemetry records not committed at shutdown: {e}",
                self.buffered()
            );
        }
    }
}

fn bump(conn: &rusqlite::Connection, name: &str, delta: i64) -> Result<(), OutboxError> {
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET value = value + ?2",
        params![name, delta],
    )?;
    Ok(())
}
