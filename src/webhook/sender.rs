//! The sender: one plain thread per webhook with blocking ureq, woken when the outbox has due work.
//! One request in flight per webhook, FIFO by sequence. The thread drives the sans-IO delivery
//! policy ([`super::policy::Policy`]: retries, deactivation, probes, resumption, offline) with
//! the outcome of each attempt and persists what it decides in one transaction per attempt.
//!
//! Batches: with `batch_max > 1` a batch that is not full (the sender caught up with the
//! committed telemetry) has its last seq stored with the acknowledgements before it is posted
//! (one small row write per such batch), so a batch rebuilt after a crash ends at the same
//! record and keeps its id and bytes. A full batch needs nothing: it is rebuilt the same.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::WebhookConfig;
use super::http::{self, AttemptResult, Outcome};
use super::policy::{Action, Decision, Event, Fate, Policy, PolicyConfig};
use super::render;
use super::sign;
use crate::clock::{BootStart, ClockCheck, SystemClock, system_clock_check, wall_ms_of};
use crate::outbox::record::StoredRecord;
use crate::outbox::{
    Delivery, DeliveryChange, DeliveryState, HealthChange, LogEntry, NewDelivery, OutboxError,
    Phase, Store, Trigger, UnixMs, Waker, WebhookState,
};

/// At most this many acknowledgements are held for `ack_window` before they are written: each
/// is an attempt-log entry that keeps up to [`crate::webhook::http::RESPONSE_PREFIX_MAX`] bytes
/// of the reply, and a drain after an outage (one POST per reading, thousands a second) would
/// otherwise hold a window's worth, megabytes. At a stick's rate (its line carries at most
/// about 270 telegrams a second) the default 5 s window stays the rule. MQTT outputs, one
/// acknowledgement per PUBACK, use the same bound.
pub const MAX_HELD_ACKS: usize = 1024;

/// Options of the sender threads.
#[derive(Clone)]
pub struct SenderOptions {
    /// How often an idle thread looks at the database anyway (CLI changes, missed wake-ups).
    pub poll_interval: Duration,
    /// Successful first attempts are acknowledged on disk in groups at most this far apart.
    pub ack_window: Duration,
    /// The clock: whether the wall clock can be believed (Standard Webhooks timestamps and
    /// readings received before the clock was synchronised wait for it), the time, the boot.
    /// Injected by tests; see [`crate::clock`].
    pub clock: ClockCheck,
    /// Telemetry rows read ahead per query.
    pub prefetch: usize,
}

impl Default for SenderOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            ack_window: Duration::from_secs(1),
            clock: system_clock_check(),
            // Parsed records held in memory per output; a batch larger than this reads on.
            prefetch: 64,
        }
    }
}

impl SenderOptions {
    /// Production options with the acknowledgement window of `[storage]`.
    pub fn from_storage(storage: &crate::outbox::StorageConfig) -> Self {
        Self {
            ack_window: storage.ack_window,
            ..Self::default()
        }
    }

    /// Production options for a configuration: `[storage] ack_window`, `[gateway] clock_sync`.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Self {
            clock: Arc::new(SystemClock::new(cfg.gateway.clock_sync)),
            ..Self::from_storage(&cfg.storage)
        }
    }
}

/// Starts the sender threads.
pub struct Sender;

/// The running sender: wake it after commits, stop it at shutdown.
pub struct SenderHandle {
    waker: Waker,
    shutdown: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Sender {
    /// Spawns one thread per webhook enabled in the configuration, each with its own connection
    /// to the outbox at `outbox_path`. The threads stop when `shutdown` is set and they are woken
    /// (see [`SenderHandle::stop`]); an in-flight request finishes within its timeout first.
    pub fn spawn(
        webhooks: &[WebhookConfig],
        outbox_path: &Path,
        options: SenderOptions,
        shutdown: Arc<AtomicBool>,
    ) -> Result<SenderHandle, OutboxError> {
        let waker = Waker::new();
        let enabled: Vec<&WebhookConfig> = webhooks.iter().filter(|w| w.enabled).collect();
        let mut store = Store::open(outbox_path)?;
        let names: Vec<&str> = enabled.iter().map(|w| w.name.as_str()).collect();
        store.register_webhooks(&names)?;
        drop(store);
        let mut threads = Vec::new();
        for cfg in enabled {
            let worker = Worker::new(
                cfg.clone(),
                outbox_path.to_path_buf(),
                options.clone(),
                waker.clone(),
                shutdown.clone(),
            )?;
            let name = format!("webhook-{}", cfg.name);
            let t = std::thread::Builder::new()
                .name(name)
                .spawn(move || worker.run())?;
            threads.push(t);
        }
        Ok(SenderHandle {
            waker,
            shutdown,
            threads,
        })
    }
}

impl SenderHandle {
    /// The waker to hand to [`crate::outbox::Outbox::set_waker`].
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Wakes the threads (new work).
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// Sets the shutdown flag, wakes the threads and waits for them (dropping the handle does
    /// the same).
    pub fn stop(self) {
        drop(self);
    }

    /// Sender threads that ended although no shutdown was asked for (a panic): the daemon
    /// stops then, so that systemd restarts it, instead of feeding its watchdog with a webhook
    /// that no longer delivers.
    pub fn dead(&self) -> usize {
        if self.shutdown.load(Ordering::SeqCst) {
            return 0;
        }
        self.threads.iter().filter(|t| t.is_finished()).count()
    }
}

/// How long a sender keeps delivering at a clean stop (see `Worker::drain`): well inside
/// systemd's stop timeout, long enough for the stop's status and a short backlog.
const DRAIN_AT_STOP: Duration = Duration::from_secs(5);

/// Test-only: a sender thread panics at its first step when this variable is set, to prove that
/// a dead sender stops the daemon.
pub const TEST_PANIC_ENV: &str = "ENOCEAN_AGENT_TEST_SENDER_PANIC";

impl Drop for SenderHandle {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.waker.wake();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The delivery-log row for one attempt (automatic, manual or test).
pub(crate) fn log_entry(
    webhook: &str,
    delivery_id: &str,
    row: Option<i64>,
    records: (Option<u64>, Option<u64>),
    trigger: Trigger,
    r: &AttemptResult,
) -> LogEntry {
    LogEntry {
        id: 0,
        at: UnixMs::now(),
        webhook: webhook.to_owned(),
        delivery_id: delivery_id.to_owned(),
        delivery_row: row,
        seq_first: records.0,
        seq_last: records.1,
        trigger,
        outcome: r.outcome,
        status: r.status,
        error: r.error.clone(),
        latency_ms: r.latency.as_millis().min(u64::MAX as u128) as u64,
        response: r.response.clone(),
    }
}

/// Performs one attempt of `body` for `cfg` now: signs (with `signer`, prepared from `cfg`),
/// posts, returns the classification.
pub fn attempt(
    agent: &ureq::Agent,
    cfg: &WebhookConfig,
    signer: &sign::Signer,
    delivery_id: &str,
    body: &[u8],
) -> AttemptResult {
    let headers = signer.headers(delivery_id, body, jiff::Timestamp::now().as_second());
    http::post(agent, cfg, &headers, body)
}

/// Why a sender thread does not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// `webhook disable`.
    Disabled,
    /// The endpoint answered 410 Gone.
    Gone,
}

enum Step {
    /// Did work; look again at once.
    Busy,
    /// Nothing to do before this long.
    Idle(Duration),
}

struct Worker {
    cfg: WebhookConfig,
    /// `cfg`'s auth and signing, prepared once.
    signer: sign::Signer,
    store: Store,
    agent: ureq::Agent,
    opts: SenderOptions,
    waker: Waker,
    shutdown: Arc<AtomicBool>,
    policy: Policy,
    /// `webhook enable` count last seen; a change restarts the policy.
    resets: u64,
    cursor: u64,
    persisted_cursor: u64,
    acks: Vec<LogEntry>,
    ack_since: Option<Instant>,
    prefetched: VecDeque<(u64, Option<StoredRecord>)>,
    /// Highest seq read into `prefetched` (reads continue after it).
    fetched: u64,
    /// Last seq of a partial batch stored before its POST: the batch starting at the cursor
    /// ends there (it matters after a crash, when the acknowledgement was lost).
    batch_end: u64,
    holding_for_clock: bool,
    /// This boot's start in wall time, once recorded (see [`crate::clock`]).
    boot_start: BootStart,
    /// Why the thread last stopped sending (logged once per stop), None while it sends.
    stopped: Option<Stopped>,
    /// The webhook's state as last read, and when (re-read when another connection committed,
    /// at least every `STATE_TTL`, and at once after this thread changed it).
    state: Option<(WebhookState, Instant)>,
    /// `data_version` when `state` was read.
    data_version: i64,
    /// False once the database said there is no delivery waiting for a retry; only this thread
    /// (and `webhook enable`, which bumps `resets`) creates such deliveries.
    maybe_pending: bool,
}

/// How long a cached webhook state is trusted at most (changes by other connections are
/// noticed at once through `data_version`).
const STATE_TTL: Duration = Duration::from_secs(5);

impl Worker {
    fn new(
        cfg: WebhookConfig,
        path: PathBuf,
        opts: SenderOptions,
        waker: Waker,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Self, OutboxError> {
        let store = Store::open_sender(&path)?;
        let st = store.webhook(&cfg.name)?;
        let cursor = st.as_ref().map_or(0, |s| s.cursor);
        waker.delivered().register(&cfg.name, cursor);
        if cfg.template.is_none() {
            // It reads the rows' heads; a template webhook parses every row whole.
            waker.recent().want();
        }
        let (phase, consecutive) = st
            .as_ref()
            .map_or((Phase::Active, 0), |s| (s.phase, s.consecutive_failures));
        let policy = Policy::restore(
            PolicyConfig::from_webhook(&cfg),
            fastrand::u64(..),
            phase,
            consecutive,
            Instant::now(),
        );
        if phase == Phase::Probing && st.as_ref().is_some_and(|s| s.enabled) {
            log::warn!(
                "webhook {}: deactivated ({}); probing it, telemetry keeps queueing",
                cfg.name,
                st.as_ref()
                    .and_then(|s| s.deactivated_reason.clone())
                    .unwrap_or_else(|| "consecutive failed deliveries".into())
            );
        }
        Ok(Self {
            agent: http::agent(&cfg),
            signer: sign::Signer::new(&cfg),
            cfg,
            store,
            opts,
            waker,
            shutdown,
            policy,
            resets: st.as_ref().map_or(0, |s| s.resets),
            cursor,
            persisted_cursor: cursor,
            acks: Vec::new(),
            ack_since: None,
            prefetched: VecDeque::new(),
            fetched: cursor,
            batch_end: st.as_ref().map_or(0, |s| s.batch_end),
            holding_for_clock: false,
            boot_start: BootStart::default(),
            stopped: None,
            state: None,
            data_version: 0,
            maybe_pending: true,
        })
    }

    /// At shutdown, after the storage thread's last commit: delivers what is committed while
    /// the webhook answers, for at most `limit`, so that the stop's own `gateway.status` gets
    /// out before the exit instead of at the next start. A webhook that is failing, waiting,
    /// disabled or idle ends it at once (no new attempt against a server that is down).
    fn drain(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until && self.policy.consecutive() == 0 {
            match self.step() {
                Ok(Step::Busy) => {}
                Ok(Step::Idle(_)) | Err(_) => break,
            }
        }
    }

    fn run(mut self) {
        let mut seen = self.waker.seen();
        // Outbox errors (a full disk) repeat every poll: the first is logged, then at most one
        // line a minute with the count.
        let mut db_errors: (Option<Instant>, u64) = (None, 0);
        loop {
            if self.shutdown.load(Ordering::SeqCst) {
                self.drain(DRAIN_AT_STOP);
                if let Err(e) = self.flush_acks() {
                    log::error!("webhook {}: acknowledgements not saved: {e}", self.cfg.name);
                }
                return;
            }
            let step = self.step();
            // Past the cursor, every reading was delivered, passed over, or kept in a delivery
            // flushed to the disk (`record_first_attempt`): the outbox needs no flush for it.
            self.waker.delivered().advance(&self.cfg.name, self.cursor);
            let wait = match step {
                Ok(Step::Busy) => Duration::ZERO,
                Ok(Step::Idle(d)) => d,
                Err(e) => {
                    db_errors.1 += 1;
                    let now = Instant::now();
                    match db_errors.0 {
                        None => {
                            log::error!("webhook {}: outbox error: {e}", self.cfg.name);
                            db_errors = (Some(now), 0);
                        }
                        Some(t) if now >= t + Duration::from_secs(60) => {
                            log::error!(
                                "webhook {}: outbox error: {e} ({} times in the last minute)",
                                self.cfg.name,
                                db_errors.1
                            );
                            db_errors = (Some(now), 0);
                        }
                        Some(_) => {}
                    }
                    self.prefetched.clear();
                    self.fetched = self.cursor;
                    self.state = None;
                    self.opts.poll_interval
                }
            };
            let ack_due = self
                .ack_since
                .map(|t| (t + self.opts.ack_window).saturating_duration_since(Instant::now()));
            let wait = match ack_due {
                Some(d) if d.is_zero() => {
                    if let Err(e) = self.flush_acks() {
                        log::error!("webhook {}: acknowledgements not saved: {e}", self.cfg.name);
                    }
                    wait
                }
                Some(d) => wait.min(d),
                None => wait,
            };
            if wait > Duration::ZERO {
                self.waker.wait(&mut seen, wait);
            }
        }
    }

    fn flush_acks(&mut self) -> Result<(), OutboxError> {
        if self.acks.is_empty() && self.cursor == self.persisted_cursor {
            self.ack_since = None;
            return Ok(());
        }
        self.store
            .commit_acks(&self.cfg.name, self.cursor, &self.acks)?;
        self.acks_saved();
        Ok(())
    }

    fn acks_saved(&mut self) {
        self.acks.clear();
        self.persisted_cursor = self.cursor;
        self.ack_since = None;
    }

    fn idle(&mut self, stop: Stopped, d: Duration) -> Step {
        if self.stopped != Some(stop) {
            self.stopped = Some(stop);
            let name = &self.cfg.name;
            match stop {
                Stopped::Disabled => log::info!(
                    "webhook {name}: disabled by the operator, telemetry keeps queueing; \
                     `enocean-agent webhook enable {name}` resumes it"
                ),
                Stopped::Gone => log::warn!(
                    "webhook {name}: stopped after 410 Gone, telemetry keeps queueing; \
                     `enocean-agent webhook enable {name}` resumes it"
                ),
            }
        }
        Step::Idle(d)
    }

    /// The webhook's persisted state: read again when another connection committed (the
    /// command line's `disable`/`enable`, or a telemetry commit), so an operator's switch takes
    /// effect before the next attempt that starts after it.
    fn current_state(&mut self) -> Result<Option<WebhookState>, OutboxError> {
        let version = self.store.data_version()?;
        if let Some((s, at)) = &self.state
            && version == self.data_version
            && at.elapsed() < STATE_TTL
        {
            return Ok(Some(s.clone()));
        }
        self.data_version = version;
        let s = self.store.webhook(&self.cfg.name)?;
        self.state = s.clone().map(|s| (s, Instant::now()));
        Ok(s)
    }

    fn step(&mut self) -> Result<Step, OutboxError> {
        if std::env::var_os(TEST_PANIC_ENV).is_some() {
            panic!(
                "{TEST_PANIC_ENV} is set: the sender thread of {} dies",
                self.cfg.name
            );
        }
        let Some(state) = self.current_state()? else {
            return Ok(Step::Idle(self.opts.poll_interval));
        };
        if state.resets != self.resets {
            self.resets = state.resets;
            self.policy.reset();
            self.maybe_pending = true;
            log::info!("webhook {}: enabled by the operator", self.cfg.name);
        }
        if !state.enabled {
            self.flush_acks()?;
            return Ok(self.idle(Stopped::Disabled, self.opts.poll_interval));
        }
        if self.cfg.needs_clock() && !self.opts.clock.synchronized() {
            if !self.holding_for_clock {
                self.holding_for_clock = true;
                log::warn!(
                    "webhook {}: holding Standard Webhooks deliveries until the clock is synchronised",
                    self.cfg.name
                );
            }
            return Ok(Step::Idle(self.opts.poll_interval));
        }
        if self.holding_for_clock && self.opts.clock.synchronized() {
            self.holding_for_clock = false;
            log::info!("webhook {}: clock synchronised, delivering", self.cfg.name);
        }
        let now = Instant::now();
        let probe = match self.policy.next(now) {
            Action::Stop => {
                self.flush_acks()?;
                return Ok(self.idle(Stopped::Gone, self.opts.poll_interval));
            }
            // Look at the database now and then while waiting (operator commands).
            Action::WaitUntil(t) => return Ok(Step::Idle((t - now).min(self.opts.poll_interval))),
            Action::Send => false,
            Action::Probe => true,
        };
        self.stopped = None;
        if self.maybe_pending {
            match self.store.pending_head(&self.cfg.name)? {
                Some(head) => return self.retry(head, probe),
                None => self.maybe_pending = false,
            }
        }
        match self.first_attempt(probe)? {
            // Nothing queued but deliveries rejected while the webhook kept failing: probe with
            // the oldest of them, so a webhook that refused everything can still resume.
            Step::Idle(d) if probe => match self.store.streak_head(&self.cfg.name)? {
                Some(head) => self.retry(head, true),
                None => Ok(Step::Idle(d)),
            },
            step => Ok(step),
        }
    }

    /// One attempt (retry or probe) of the stored delivery at the head of the queue.
    fn retry(&mut self, d: Delivery, probe: bool) -> Result<Step, OutboxError> {
        self.flush_acks()?;
        let r = attempt(&self.agent, &self.cfg, &self.signer, &d.uuid, &d.body);
        let decision = self
            .policy
            .on_attempt(Instant::now(), r.outcome, r.retry_after);
        let entry = log_entry(
            &self.cfg.name,
            &d.uuid,
            Some(d.row),
            (d.seq_first, d.seq_last),
            Trigger::Auto,
            &r,
        );
        let change = delivery_change(&decision, &r, d.attempts, d.requeue);
        let health = self.health(&decision, &r);
        self.store
            .record_attempt(&self.cfg.name, d.row, &change, &entry, &health)?;
        self.state = None;
        self.requeued(&decision);
        self.report(&decision, &r, Some(d.row), probe);
        Ok(Step::Busy)
    }

    /// Deliveries put back into the queue are pending ones to look for.
    fn requeued(&mut self, d: &Decision) {
        if d.streak_end == Some(crate::outbox::StreakEnd::Requeue) {
            self.maybe_pending = true;
        }
    }

    /// Gives readings received before the clock was synchronised their wall time (from this
    /// boot's recorded start) or marks them unknown (received in an earlier boot). False while
    /// the clock is not synchronised: they wait, and so does everything behind them.
    fn resolve_times(&mut self, records: &mut [StoredRecord]) -> Result<bool, OutboxError> {
        if !self.opts.clock.synchronized() {
            if !self.holding_for_clock {
                self.holding_for_clock = true;
                log::warn!(
                    "webhook {}: holding readings received before the clock was synchronised \
                     until it is (see [gateway] clock_sync)",
                    self.cfg.name
                );
            }
            return Ok(false);
        }
        let (here, start) = self
            .boot_start
            .get(&self.store.conn, self.opts.clock.as_ref())?;
        for r in records.iter_mut() {
            r.resolve_time(&here.boot_id, start);
        }
        Ok(true)
    }

    /// The first attempt of the next batch after the cursor.
    fn first_attempt(&mut self, probe: bool) -> Result<Step, OutboxError> {
        let bound = (self.batch_end > self.cursor).then_some(self.batch_end);
        let mut at_bound = false;
        let mut records: Vec<StoredRecord> = Vec::new();
        loop {
            if self.prefetched.is_empty() {
                let from = self.fetched.max(self.cursor);
                let rows = self.store.records_after(
                    from,
                    self.opts.prefetch.max(1),
                    self.cfg.template.is_some(),
                    Some(self.waker.recent()),
                )?;
                let Some(last) = rows.last() else {
                    break;
                };
                self.fetched = last.0;
                self.prefetched.extend(rows);
            }
            let Some((seq, t)) = self.prefetched.front() else {
                break;
            };
            let seq = *seq;
            let routed = t
                .as_ref()
                .is_some_and(|t| self.cfg.accepts_from(t.kind, &t.sensor));
            if !routed {
                // Not for this webhook (or unreadable): pass over it.
                self.prefetched.pop_front();
                if records.is_empty() {
                    self.cursor = self.cursor.max(seq);
                    self.ack_since.get_or_insert_with(Instant::now);
                }
                continue;
            }
            if records.len() >= self.cfg.batch_max {
                break;
            }
            // Readings and teach-ins share a delivery; a health event has one of its own, with
            // its own `event` name.
            if let (Some(first), Some(t)) = (records.first(), t.as_ref())
                && (first.kind.is_health() || t.kind.is_health())
            {
                break;
            }
            if let Some(b) = bound
                && seq > b
                && !records.is_empty()
            {
                at_bound = true;
                break;
            }
            if let Some((_, Some(t))) = self.prefetched.pop_front() {
                records.push(t);
            }
        }
        if records.iter().any(|r| r.awaits_clock) && !self.resolve_times(&mut records)? {
            // Not before the clock is synchronised: put them back and look again later.
            for r in records.into_iter().rev() {
                self.prefetched.push_front((r.seq, Some(r)));
            }
            return Ok(Step::Idle(self.opts.poll_interval));
        }
        let (Some(first), Some(last)) = (
            records.first().map(|r| r.seq),
            records.last().map(|r| r.seq),
        ) else {
            return Ok(Step::Idle(self.opts.poll_interval));
        };
        if self.cfg.batch_max > 1 && records.len() < self.cfg.batch_max && !at_bound {
            // A partial batch: more records may be committed before a crash, and the batch
            // rebuilt then must still end here. Stored with the acknowledgements so far.
            self.store.commit_acks_with(
                &self.cfg.name,
                self.cursor,
                &self.acks,
                Some(last),
                None,
            )?;
            self.acks_saved();
            self.batch_end = last;
        }
        let id = render::delivery_id_of(&self.cfg.name, records.iter().map(|r| r.id.as_str()));
        // Id and timestamp derive from the records, so a delivery re-rendered after a crash (its
        // acknowledgement lost) is byte-identical to the one sent before.
        let created = records
            .iter()
            .rev()
            .find_map(|r| r.received_at)
            .unwrap_or_else(|| self.opts.clock.now());
        let event = render::Event::of(records[0].kind);
        let body = render::render_stored(&self.cfg, event, &id, created, &records)?;
        let r = attempt(&self.agent, &self.cfg, &self.signer, &id, &body);
        let decision = self
            .policy
            .on_attempt(Instant::now(), r.outcome, r.retry_after);
        let entry = log_entry(
            &self.cfg.name,
            &id,
            None,
            (Some(first), Some(last)),
            Trigger::Auto,
            &r,
        );
        if decision.fate == Fate::Delivered {
            self.cursor = self.cursor.max(last);
            self.acks.push(entry);
            self.ack_since.get_or_insert_with(Instant::now);
            if !decision.events.is_empty() || decision.streak_end.is_some() {
                // A streak of failures ended: the health is saved now, with the acks.
                let health = self.health(&decision, &r);
                self.store.commit_acks_with(
                    &self.cfg.name,
                    self.cursor,
                    &self.acks,
                    None,
                    Some(&health),
                )?;
                self.acks_saved();
                self.state = None;
                self.requeued(&decision);
                self.report(&decision, &r, None, probe);
            } else if self.acks.len() >= MAX_HELD_ACKS {
                self.flush_acks()?;
            }
            return Ok(Step::Busy);
        }
        // Not delivered: store the delivery with its exact body and move the cursor past it (in
        // memory only once that is on disk: if the write fails, the records are read again).
        let change = delivery_change(&decision, &r, 0, 0);
        let health = self.health(&decision, &r);
        let cursor = self.cursor.max(last);
        let row = self.store.record_first_attempt(
            cursor,
            &self.acks,
            NewDelivery {
                webhook: &self.cfg.name,
                uuid: &id,
                event: event.as_str(),
                records: &records,
                body: &body,
                first_attempt: &change,
            },
            &entry,
            &health,
        )?;
        self.cursor = cursor;
        self.acks_saved();
        self.state = None;
        if decision.fate == Fate::Retry {
            self.maybe_pending = true;
        }
        self.report(&decision, &r, Some(row), probe);
        Ok(Step::Busy)
    }

    /// The webhook's health after `d`, to persist with the attempt.
    fn health(&self, d: &Decision, r: &AttemptResult) -> HealthChange {
        let mut deactivate = None;
        let mut reactivate = false;
        for e in &d.events {
            match e {
                Event::Deactivated { consecutive } => {
                    deactivate = Some(format!("{consecutive} consecutive failed deliveries"));
                }
                Event::Gone => deactivate = Some("410 Gone".to_owned()),
                Event::Resumed { .. } => reactivate = true,
                _ => {}
            }
        }
        let counted = matches!(
            r.outcome,
            Outcome::Failed | Outcome::Rejected | Outcome::Gone
        );
        HealthChange {
            phase: self.policy.phase(),
            consecutive_failures: self.policy.consecutive(),
            next_attempt_ms: self.policy.not_before().map(wall_ms_of),
            success: d.fate == Fate::Delivered,
            failure: counted.then(|| r.error.clone().unwrap_or_else(|| "error".into())),
            deactivate,
            reactivate,
            streak_end: d.streak_end,
        }
    }

    /// Log lines for what the policy decided.
    fn report(&self, d: &Decision, r: &AttemptResult, row: Option<i64>, probe: bool) {
        let name = &self.cfg.name;
        let why = r.error.as_deref().unwrap_or("error");
        let delivery = row.map_or_else(|| "delivery".to_owned(), |r| format!("delivery {r}"));
        let next = self
            .policy
            .not_before()
            .map(|t| t.saturating_duration_since(Instant::now()));
        let next_text = next.map_or_else(String::new, |d| format!("; next attempt in {d:.1?}"));
        if probe && d.events.is_empty() && d.fate != Fate::Delivered {
            log::info!("webhook {name}: probe with {delivery} failed ({why}){next_text}");
        }
        for e in &d.events {
            match e {
                Event::Retrying => {
                    log::warn!("webhook {name}: {delivery} not delivered ({why}), retrying")
                }
                Event::DeliveryFailed { consecutive } if r.outcome == Outcome::Rejected => {
                    log::warn!(
                        "webhook {name}: {delivery} rejected ({why}); kept for `outbox resend`, \
                         the queue moves on ({consecutive} failed in a row)"
                    )
                }
                Event::DeliveryFailed { consecutive } => log::warn!(
                    "webhook {name}: {delivery} failed {} attempts in a row ({why}); it stays at \
                     the head of the queue ({consecutive} failed in a row){next_text}",
                    1 + self.cfg.max_retries
                ),
                Event::Deactivated { consecutive } => log::error!(
                    "webhook {name}: deactivated after {consecutive} consecutive failed \
                     deliveries (last: {why}); probing it, first probe in {:.1?}; telemetry keeps \
                     queueing",
                    next.unwrap_or_default()
                ),
                Event::Resumed { after } => log::warn!(
                    "webhook {name}: probe delivered, webhook resumed after {after} failed \
                     deliveries; the backlog drains in order"
                ),
                Event::Recovered { after } => {
                    log::info!(
                        "webhook {name}: delivering again ({after} failed deliveries before)"
                    )
                }
                Event::Gone => log::error!(
                    "webhook {name}: endpoint answered 410 Gone; webhook deactivated and not \
                     probed; `enocean-agent webhook enable {name}` resumes it"
                ),
                Event::WentOffline => log::warn!(
                    "webhook {name}: gateway offline ({why}), holding deliveries (not counted \
                     as failures)"
                ),
                Event::BackOnline => log::info!("webhook {name}: gateway back online"),
            }
        }
    }
}

/// What an attempt with `d` changes in the stored delivery that had `before` attempts.
fn delivery_change(d: &Decision, r: &AttemptResult, before: u32, requeue: u8) -> DeliveryChange {
    DeliveryChange {
        state: match d.fate {
            Fate::Delivered => DeliveryState::Delivered,
            Fate::Retry => DeliveryState::Pending,
            Fate::Failed => DeliveryState::Failed,
        },
        attempts: if r.outcome == Outcome::Offline {
            before
        } else {
            before + 1
        },
        status: r.status,
        error: r.error.clone(),
        // A delivery already put back once is final when rejected again.
        requeue: d.in_streak.then_some(if requeue == 2 { 2 } else { 1 }),
    }
}
