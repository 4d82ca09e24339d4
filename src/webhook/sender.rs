//! The sender: one plain thread per webhook with blocking ureq, woken when the outbox has due work.
//! One request in flight per webhook, FIFO by sequence; retries with exponential backoff and
//! jitter on the monotonic clock; deactivation after consecutive failed deliveries; offline
//! gateways hold deliveries without counting failures.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::WebhookConfig;
use super::http::{self, AttemptResult, Outcome};
use super::render::{self, Event};
use super::sign;
use crate::outbox::{Delivery, LogEntry, OutboxError, Store, Trigger, Waker, WebhookState};
use crate::telemetry::Telemetry;

/// Says whether the wall clock is plausibly synchronised (Standard Webhooks timestamps need it).
pub type ClockCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// The earliest wall-clock time this build can be running at; a clock before it is not set.
/// Set `ENOCEAN_AGENT_BUILD_DATE` (RFC 3339) at compile time to move it.
pub const BUILD_DATE: &str = match option_env!("ENOCEAN_AGENT_BUILD_DATE") {
    Some(d) => d,
    None => "2026-11-01T00:00:00Z",
};

/// systemd-timesyncd's flag file, present once the clock was synchronised.
pub const TIMESYNC_FLAG: &str = "/run/systemd/timesync/synchronized";

/// The production clock check: the timesyncd flag exists, or now is not before [`BUILD_DATE`].
pub fn system_clock_check() -> ClockCheck {
    Arc::new(|| {
        if Path::new(TIMESYNC_FLAG).exists() {
            return true;
        }
        match BUILD_DATE.parse::<jiff::Timestamp>() {
            Ok(floor) => jiff::Timestamp::now() >= floor,
            Err(_) => true,
        }
    })
}

/// Options of the sender threads.
#[derive(Clone)]
pub struct SenderOptions {
    /// How often an idle thread looks at the database anyway (CLI changes, missed wake-ups).
    pub poll_interval: Duration,
    /// Successful first attempts are acknowledged on disk in groups at most this far apart.
    pub ack_window: Duration,
    /// The clock plausibility check.
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
            prefetch: 512,
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
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.waker.wake();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The delay before retry number `attempt` (1-based): `base · 2^(attempt-1)`, capped at `max`,
/// spread by ±`jitter`.
pub fn backoff(cfg: &WebhookConfig, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let d = cfg
        .backoff_base
        .saturating_mul(1u32 << exp)
        .min(cfg.backoff_max);
    let spread = cfg.jitter * (fastrand::f64() * 2.0 - 1.0);
    Duration::try_from_secs_f64(d.as_secs_f64() * (1.0 + spread).max(0.0)).unwrap_or(d)
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
        at: format!("{:.3}", jiff::Timestamp::now()),
        webhook: webhook.to_owned(),
        delivery_id: delivery_id.to_owned(),
        delivery_row: row,
        seq_first: records.0,
        seq_last: records.1,
        trigger: trigger.as_str().to_owned(),
        outcome: r.outcome.as_str().to_owned(),
        status: r.status,
        error: r.error.clone(),
        latency_ms: r.latency.as_millis().min(u64::MAX as u128) as u64,
        response: r.response.clone(),
    }
}

/// Performs one attempt of `body` for `cfg` now: signs, posts, returns the classification.
pub fn attempt(
    agent: &ureq::Agent,
    cfg: &WebhookConfig,
    delivery_id: &str,
    body: &[u8],
) -> AttemptResult {
    let headers = sign::headers(cfg, delivery_id, body, jiff::Timestamp::now().as_second());
    http::post(agent, cfg, &headers, body)
}

/// Now plus `d`, saturating far in the future instead of overflowing.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

enum Step {
    /// Did work; look again at once.
    Busy,
    /// Nothing to do before this long.
    Idle(Duration),
}

struct Worker {
    cfg: WebhookConfig,
    store: Store,
    agent: ureq::Agent,
    opts: SenderOptions,
    waker: Waker,
    shutdown: Arc<AtomicBool>,
    cursor: u64,
    persisted_cursor: u64,
    acks: Vec<LogEntry>,
    ack_since: Option<Instant>,
    prefetched: VecDeque<(u64, String, Option<Telemetry>)>,
    /// Highest seq read into `prefetched` (reads continue after it).
    fetched: u64,
    retry_due: HashMap<i64, Instant>,
    offline_streak: u32,
    holding_for_clock: bool,
    last_idle_state: &'static str,
    /// The webhook's state as last read, and when (re-read at least every `STATE_TTL`, and at
    /// once after this thread changed it).
    state: Option<(WebhookState, Instant)>,
    /// False once the database said there is no delivery waiting for a retry; only this thread
    /// creates such deliveries.
    maybe_pending: bool,
}

/// How long a cached webhook state (enabled, deactivated) is trusted; CLI changes show within it.
const STATE_TTL: Duration = Duration::from_millis(200);

impl Worker {
    fn new(
        cfg: WebhookConfig,
        path: PathBuf,
        opts: SenderOptions,
        waker: Waker,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Self, OutboxError> {
        let store = Store::open(&path)?;
        let cursor = store.webhook(&cfg.name)?.map(|s| s.cursor).unwrap_or(0);
        Ok(Self {
            agent: http::agent(&cfg),
            cfg,
            store,
            opts,
            waker,
            shutdown,
            cursor,
            persisted_cursor: cursor,
            acks: Vec::new(),
            ack_since: None,
            prefetched: VecDeque::new(),
            fetched: cursor,
            retry_due: HashMap::new(),
            offline_streak: 0,
            holding_for_clock: false,
            last_idle_state: "",
            state: None,
            maybe_pending: true,
        })
    }

    fn run(mut self) {
        let mut seen = self.waker.seen();
        loop {
            if self.shutdown.load(Ordering::SeqCst) {
                if let Err(e) = self.flush_acks() {
                    log::error!("webhook {}: acknowledgements not saved: {e}", self.cfg.name);
                }
                return;
            }
            let wait = match self.step() {
                Ok(Step::Busy) => Duration::ZERO,
                Ok(Step::Idle(d)) => d,
                Err(e) => {
                    log::error!("webhook {}: outbox error: {e}", self.cfg.name);
                    self.prefetched.clear();
                    self.fetched = self.cursor;
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
        self.acks.clear();
        self.persisted_cursor = self.cursor;
        self.ack_since = None;
        Ok(())
    }

    fn idle(&mut self, state: &'static str, d: Duration) -> Step {
        if self.last_idle_state != state {
            self.last_idle_state = state;
            match state {
                "disabled" => log::info!(
                    "webhook {}: disabled, telemetry keeps queueing",
                    self.cfg.name
                ),
                "deactivated" => log::warn!(
                    "webhook {}: deactivated, telemetry keeps queueing; `enocean-agent webhook enable {}` resumes it",
                    self.cfg.name,
                    self.cfg.name
                ),
                _ => {}
            }
        }
        Step::Idle(d)
    }

    fn current_state(&mut self) -> Result<Option<WebhookState>, OutboxError> {
        if let Some((s, at)) = &self.state
            && at.elapsed() < STATE_TTL
        {
            return Ok(Some(s.clone()));
        }
        let s = self.store.webhook(&self.cfg.name)?;
        self.state = s.clone().map(|s| (s, Instant::now()));
        Ok(s)
    }

    fn step(&mut self) -> Result<Step, OutboxError> {
        let Some(state) = self.current_state()? else {
            return Ok(Step::Idle(self.opts.poll_interval));
        };
        if !state.enabled {
            self.flush_acks()?;
            return Ok(self.idle("disabled", self.opts.poll_interval));
        }
        if state.deactivated_at.is_some() {
            self.flush_acks()?;
            return Ok(self.idle("deactivated", self.opts.poll_interval));
        }
        if self.cfg.needs_clock() && !(self.opts.clock)() {
            if !self.holding_for_clock {
                self.holding_for_clock = true;
                log::warn!(
                    "webhook {}: holding Standard Webhooks deliveries until the clock is synchronised",
                    self.cfg.name
                );
            }
            return Ok(Step::Idle(self.opts.poll_interval));
        }
        if self.holding_for_clock {
            self.holding_for_clock = false;
            log::info!("webhook {}: clock synchronised, delivering", self.cfg.name);
        }
        self.last_idle_state = "";
        if self.maybe_pending {
            match self.store.pending_head(&self.cfg.name)? {
                Some(head) => return self.retry(head, state.consecutive_failures),
                None => self.maybe_pending = false,
            }
        }
        self.first_attempt(state.consecutive_failures)
    }

    fn retry(&mut self, d: Delivery, consecutive: u32) -> Result<Step, OutboxError> {
        let now = Instant::now();
        let due = *self.retry_due.entry(d.row).or_insert(now);
        if now < due {
            return Ok(Step::Idle(due - now));
        }
        self.flush_acks()?;
        let r = attempt(&self.agent, &self.cfg, &d.uuid, &d.body);
        let entry = log_entry(
            &self.cfg.name,
            &d.uuid,
            Some(d.row),
            (d.seq_first, d.seq_last),
            Trigger::Auto,
            &r,
        );
        self.store.log_attempt(&entry)?;
        self.after_attempt(d.row, d.attempts, &r, consecutive)
    }

    /// Applies the policy after an attempt on stored delivery `row` that had `before` attempts.
    fn after_attempt(
        &mut self,
        row: i64,
        before: u32,
        r: &AttemptResult,
        consecutive: u32,
    ) -> Result<Step, OutboxError> {
        let name = self.cfg.name.clone();
        // This changes the webhook's state: read it afresh next time.
        self.state = None;
        match r.outcome {
            Outcome::Delivered => {
                self.back_online();
                self.retry_due.remove(&row);
                self.store
                    .update_delivery(row, "delivered", before + 1, r.status, None)?;
                self.store.reset_failures(&name)?;
                if consecutive > 0 {
                    log::info!(
                        "webhook {name}: delivering again after {consecutive} failed deliveries"
                    );
                }
                Ok(Step::Busy)
            }
            Outcome::Offline => {
                self.offline_streak += 1;
                if self.offline_streak == 1 {
                    log::warn!(
                        "webhook {name}: gateway offline ({}), holding deliveries",
                        r.error.as_deref().unwrap_or("network")
                    );
                }
                self.store
                    .update_delivery(row, "pending", before, None, r.error.as_deref())?;
                let d = backoff(&self.cfg, self.offline_streak);
                self.retry_due.insert(row, later(d));
                Ok(Step::Idle(d))
            }
            Outcome::Gone => {
                self.back_online();
                self.retry_due.remove(&row);
                self.store.update_delivery(
                    row,
                    "failed",
                    before + 1,
                    r.status,
                    r.error.as_deref(),
                )?;
                self.store.deactivate(&name, "410 Gone")?;
                log::error!("webhook {name}: endpoint answered 410 Gone; webhook deactivated");
                Ok(Step::Busy)
            }
            Outcome::Failed => {
                self.back_online();
                let attempts = before + 1;
                if attempts > self.cfg.max_retries {
                    self.retry_due.remove(&row);
                    self.store.update_delivery(
                        row,
                        "failed",
                        attempts,
                        r.status,
                        r.error.as_deref(),
                    )?;
                    let (n, deactivated) = self
                        .store
                        .record_failed_delivery(&name, self.cfg.deactivate_after)?;
                    log::warn!(
                        "webhook {name}: delivery {row} failed after {attempts} attempts ({}); kept for resend",
                        r.error.as_deref().unwrap_or("error")
                    );
                    if deactivated {
                        log::error!(
                            "webhook {name}: deactivated after {n} consecutive failed deliveries; telemetry keeps queueing"
                        );
                    }
                    Ok(Step::Busy)
                } else {
                    self.store.update_delivery(
                        row,
                        "pending",
                        attempts,
                        r.status,
                        r.error.as_deref(),
                    )?;
                    self.store.note_failure_time(&name)?;
                    let mut d = backoff(&self.cfg, attempts);
                    if let Some(ra) = r.retry_after {
                        d = d.max(ra);
                    }
                    self.retry_due.insert(row, later(d));
                    Ok(Step::Idle(d))
                }
            }
        }
    }

    fn back_online(&mut self) {
        if self.offline_streak > 0 {
            log::info!("webhook {}: gateway back online", self.cfg.name);
            self.offline_streak = 0;
        }
    }

    fn first_attempt(&mut self, consecutive: u32) -> Result<Step, OutboxError> {
        let mut records: Vec<Telemetry> = Vec::new();
        loop {
            if self.prefetched.is_empty() {
                let from = self.fetched.max(self.cursor);
                let rows = self
                    .store
                    .telemetry_after(from, self.opts.prefetch.max(1))?;
                let Some(last) = rows.last() else {
                    break;
                };
                self.fetched = last.0;
                self.prefetched.extend(rows);
            }
            let Some((seq, device, t)) = self.prefetched.front() else {
                break;
            };
            let seq = *seq;
            let routed = t.is_some() && self.cfg.routes(device);
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
            if let Some((_, _, Some(t))) = self.prefetched.pop_front() {
                records.push(t);
            }
        }
        if records.is_empty() {
            return Ok(Step::Idle(self.opts.poll_interval));
        }
        let first = records.first().map(|r| r.seq);
        let last = records.last().map(|r| r.seq);
        let id = render::delivery_id(&self.cfg.name, &records);
        // Id and timestamp derive from the records, so a delivery re-rendered after a crash (its
        // acknowledgement lost) is byte-identical to the one sent before.
        let created = records
            .last()
            .map(|r| r.received_at)
            .unwrap_or_else(jiff::Timestamp::now);
        let body = render::render(&self.cfg, Event::Telemetry, &id, created, &records)?;
        let r = attempt(&self.agent, &self.cfg, &id, &body);
        let entry = log_entry(&self.cfg.name, &id, None, (first, last), Trigger::Auto, &r);
        if r.outcome == Outcome::Delivered {
            self.back_online();
            self.cursor = self.cursor.max(last.unwrap_or(0));
            self.acks.push(entry);
            self.ack_since.get_or_insert_with(Instant::now);
            if consecutive > 0 {
                self.flush_acks()?;
                self.store.reset_failures(&self.cfg.name)?;
                self.state = None;
                log::info!(
                    "webhook {}: delivering again after {consecutive} failed deliveries",
                    self.cfg.name
                );
            }
            return Ok(Step::Busy);
        }
        // Not delivered: store the delivery with its exact body and move the cursor past it.
        self.cursor = self.cursor.max(last.unwrap_or(0));
        self.flush_acks()?;
        let row = self.store.insert_delivery(
            &self.cfg.name,
            &id,
            Event::Telemetry.as_str(),
            &records,
            "pending",
            0,
            None,
            None,
            &body,
            true,
        )?;
        self.maybe_pending = true;
        let mut entry = entry;
        entry.delivery_row = Some(row);
        self.store.log_attempt(&entry)?;
        self.after_attempt(row, 0, &r, consecutive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_bounds() {
        let mut cfg = WebhookConfig::new("t", "http://127.0.0.1/");
        cfg.backoff_base = Duration::from_millis(100);
        cfg.backoff_max = Duration::from_millis(350);
        cfg.jitter = 0.0;
        let d: Vec<u128> = (1..=4).map(|n| backoff(&cfg, n).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 350, 350]);
        cfg.jitter = 0.5;
        for _ in 0..100 {
            let ms = backoff(&cfg, 1).as_millis();
            assert!((50..=150).contains(&ms), "{ms}");
        }
        assert!(backoff(&cfg, u32::MAX).as_millis() <= 525);
    }
}
