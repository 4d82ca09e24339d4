//! One thread per `[[mqtt]]` output (a current-thread tokio runtime inside, for rumqttc). It
//! reads the outbox after its own cursor (`mqtt:NAME` in the outputs table), publishes each
//! routed record's messages with QoS 1 and moves the cursor past a record only once every one of
//! its messages got its PUBACK, in seq order (up to `inflight` records are published ahead).
//!
//! The delivery policy is the webhooks' ([`crate::webhook::policy::Policy`]), driven with:
//! - `Delivered` for each record acknowledged;
//! - `Failed` when the connection cannot be opened (refused, bad password, TLS, timeout), drops,
//!   misses a PUBACK for `ack_timeout`, or the broker refuses a publish (MQTT 5 reason code):
//!   the session is dropped and what was not acknowledged is published again, from the cursor,
//!   once the policy's backoff has passed. After `deactivate_after` failed rounds the output is
//!   deactivated and probed (one record at a time) until a probe is acknowledged;
//! - `Offline` when the gateway's own network is down (DNS, no route): not counted.
//!
//! Where MQTT differs from webhooks: there is no per-message rejection that moves the queue on
//! (a refused publish is retried like a failure, so nothing is skipped), no `410 Gone`, and no
//! stored delivery rows: a record stays in the outbox until its PUBACK, and every retry renders
//! it again, byte-identical (the record JSON is stable).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::config::MqttConfig;
use super::session::{Ev, Failure, Session};
use super::topic::{self, Message};
use crate::delivery::Outcome;
use crate::outbox::{Delivered, HealthChange, LogEntry, OutboxError, Phase, Store, Trigger, Waker};
use crate::telemetry::Telemetry;
use crate::webhook::policy::{Action, Decision, Event, Fate, Policy};
use crate::webhook::{AttemptResult, SenderOptions};

/// Starts the MQTT output threads.
pub struct MqttSender;

/// The running MQTT outputs: stop them at shutdown, check they are alive.
pub struct MqttHandle {
    shutdown: Arc<AtomicBool>,
    waker: Waker,
    threads: Vec<JoinHandle<()>>,
}

impl MqttSender {
    /// Registers the enabled outputs in the outbox (a new one starts at the current end) and
    /// spawns one thread per output. The threads wake with `waker` (share the webhook sender's,
    /// so one commit wakes every output) and stop when `shutdown` is set and they are woken.
    pub fn spawn(
        outputs: &[MqttConfig],
        gateway: &str,
        outbox_path: &Path,
        options: SenderOptions,
        waker: Waker,
        shutdown: Arc<AtomicBool>,
    ) -> Result<MqttHandle, OutboxError> {
        let enabled: Vec<&MqttConfig> = outputs.iter().filter(|o| o.enabled).collect();
        let names: Vec<String> = enabled.iter().map(|o| o.output_name()).collect();
        let mut store = Store::open(outbox_path)?;
        store.register_outputs(super::OUTPUT_PREFIX, &names)?;
        drop(store);
        let mut threads = Vec::new();
        for cfg in enabled {
            let worker = Worker::new(
                cfg.clone(),
                gateway,
                outbox_path.to_path_buf(),
                options.clone(),
                shutdown.clone(),
                waker.delivered().clone(),
            )?;
            let notify = Arc::new(Notify::new());
            let bridge = {
                let notify = notify.clone();
                let waker = waker.clone();
                let shutdown = shutdown.clone();
                move || {
                    let mut seen = waker.seen();
                    loop {
                        waker.wait(&mut seen, Duration::from_secs(1));
                        notify.notify_one();
                        if shutdown.load(Ordering::SeqCst) {
                            return;
                        }
                    }
                }
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("mqtt-wake-{}", cfg.name))
                    .spawn(bridge)?,
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("mqtt-{}", cfg.name))
                    .spawn(move || worker.run(notify))?,
            );
        }
        Ok(MqttHandle {
            shutdown,
            waker,
            threads,
        })
    }
}

impl MqttHandle {
    /// Output threads that ended although no shutdown was asked for (a panic).
    pub fn dead(&self) -> usize {
        if self.shutdown.load(Ordering::SeqCst) {
            return 0;
        }
        self.threads.iter().filter(|t| t.is_finished()).count()
    }

    /// Sets the shutdown flag, wakes the threads and waits for them (each publishes `offline`
    /// and disconnects within a few seconds).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for MqttHandle {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.waker.wake();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// How long a stopping output keeps publishing what is committed and waiting for PUBACKs.
const DRAIN: Duration = Duration::from_secs(5);

/// One record published and waiting for its acknowledgements.
struct InFlight {
    seq: u64,
    /// Delivery id (stable per output and record) for the attempt log.
    id: String,
    /// Messages not acknowledged yet.
    left: usize,
    /// Not routed to this output or unreadable: passes the cursor without a delivery.
    skip: bool,
    /// Discovery configs it carries, remembered once it is acknowledged.
    announces: Vec<topic::Announced>,
    sent_at: Instant,
}

struct Worker {
    cfg: MqttConfig,
    output: String,
    gateway: String,
    client_id: String,
    store: Store,
    opts: SenderOptions,
    shutdown: Arc<AtomicBool>,
    policy: Policy,
    cursor: u64,
    /// Where this output's cursor is published for the outbox's flush decision.
    marks: Delivered,
    persisted_cursor: u64,
    acks: Vec<LogEntry>,
    ack_since: Option<Instant>,
    /// Highest seq read (reads continue after it).
    fetched: u64,
    window: VecDeque<InFlight>,
    /// Records read ahead (after `fetched`), `SenderOptions::prefetch` per query.
    prefetched: VecDeque<(u64, String, Option<Telemetry>)>,
    /// Seqs of messages handed to the client and not yet written (their packet id comes with
    /// [`Ev::Sent`], in this order); 0 for the availability message.
    unassigned: VecDeque<u64>,
    by_pkid: HashMap<u16, u64>,
    /// Discovery configs acknowledged in this session (a new session publishes them again, in
    /// case the broker lost its retained messages).
    announced: HashSet<topic::Announced>,
    session: Option<Session>,
    holding_for_clock: bool,
    boot_start: Option<(String, i64)>,
    /// `webhook enable mqtt:NAME` count last seen; a change restarts the policy.
    resets: u64,
    /// Switched off by `webhook disable mqtt:NAME`.
    disabled: bool,
    /// When the operator's switches were last read.
    state_read: Option<Instant>,
}

impl Worker {
    fn new(
        cfg: MqttConfig,
        gateway: &str,
        path: PathBuf,
        opts: SenderOptions,
        shutdown: Arc<AtomicBool>,
        marks: Delivered,
    ) -> Result<Self, OutboxError> {
        let store = Store::open_sender(&path)?;
        let output = cfg.output_name();
        let st = store.webhook(&output)?;
        let cursor = st.as_ref().map_or(0, |s| s.cursor);
        marks.register(&output, cursor);
        let (phase, consecutive) = st
            .as_ref()
            .map_or((Phase::Active, 0), |s| (s.phase, s.consecutive_failures));
        let policy = Policy::restore(
            cfg.policy(),
            fastrand::u64(..),
            phase,
            consecutive,
            Instant::now(),
        );
        let client_id = cfg
            .client_id
            .clone()
            .unwrap_or_else(|| format!("enocean-agent-{gateway}-{}", cfg.name));
        Ok(Self {
            output,
            gateway: gateway.to_owned(),
            client_id,
            store,
            opts,
            shutdown,
            policy,
            cursor,
            marks,
            persisted_cursor: cursor,
            acks: Vec::new(),
            ack_since: None,
            fetched: cursor,
            window: VecDeque::new(),
            prefetched: VecDeque::new(),
            unassigned: VecDeque::new(),
            by_pkid: HashMap::new(),
            announced: HashSet::new(),
            session: None,
            holding_for_clock: false,
            boot_start: None,
            resets: st.as_ref().map_or(0, |s| s.resets),
            disabled: false,
            state_read: None,
            cfg,
        })
    }

    fn run(mut self, notify: Arc<Notify>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                log::error!("mqtt {}: cannot start its runtime: {e}", self.cfg.name);
                return;
            }
        };
        rt.block_on(self.main(notify));
    }

    async fn main(&mut self, notify: Arc<Notify>) {
        let mut db_error_at: Option<Instant> = None;
        loop {
            if self.shutdown.load(Ordering::SeqCst) {
                self.close(true).await;
                return;
            }
            let wait = match self.step().await {
                Ok(d) => d,
                Err(e) => {
                    if db_error_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        log::error!("mqtt {}: outbox error: {e}", self.cfg.name);
                        db_error_at = Some(Instant::now());
                    }
                    self.restart_window();
                    Some(self.opts.poll_interval)
                }
            };
            if let Some(ack_due) = self.ack_since.map(|t| t + self.opts.ack_window)
                && Instant::now() >= ack_due
                && let Err(e) = self.flush_acks()
            {
                log::error!("mqtt {}: acknowledgements not saved: {e}", self.cfg.name);
            }
            let Some(wait) = wait else { continue };
            let wait = match self.ack_since {
                Some(t) => {
                    wait.min((t + self.opts.ack_window).saturating_duration_since(Instant::now()))
                }
                None => wait,
            };
            // Wait for the broker, new records, or the time.
            let ev = match self.session.as_mut() {
                Some(s) => {
                    tokio::select! {
                        ev = s.poll() => Some(ev),
                        _ = notify.notified() => None,
                        _ = tokio::time::sleep(wait) => None,
                    }
                }
                None => {
                    tokio::select! {
                        _ = notify.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                    None
                }
            };
            if let Some(ev) = ev {
                self.on_event(ev);
            }
        }
    }

    /// Does what can be done now; returns how long to wait for events at most (None: look
    /// again at once).
    async fn step(&mut self) -> Result<Option<Duration>, OutboxError> {
        if !self.operator_allows()? {
            if self.session.is_some() {
                self.close(false).await;
            }
            self.restart_window();
            return Ok(Some(self.opts.poll_interval));
        }
        let now = Instant::now();
        let probe = match self.policy.next(now) {
            // Only after a failure, which ended the session: nothing is in flight.
            Action::WaitUntil(t) => return Ok(Some((t - now).min(self.opts.poll_interval))),
            Action::Stop => return Ok(Some(self.opts.poll_interval)),
            Action::Send => false,
            Action::Probe => true,
        };
        if self.session.is_none() {
            // Connected whenever it can be (not only with work to do): the availability topic
            // and the Last Will mean something only for a live session.
            let status = topic::status_topic(&self.cfg, &self.gateway);
            match Session::connect(&self.cfg, &self.client_id, &status).await {
                Ok(s) => {
                    log::info!(
                        "mqtt {}: connected to {} as {}",
                        self.cfg.name,
                        self.cfg.url,
                        self.client_id
                    );
                    self.session = Some(s);
                    self.restart_window();
                    self.announced.clear();
                    self.publish(
                        &Message {
                            topic: status,
                            payload: b"online".to_vec(),
                            retain: true,
                        },
                        0,
                    );
                }
                Err(f) => {
                    self.failed(f, None)?;
                    return Ok(None);
                }
            }
        }
        // A probe sends one record; otherwise up to `inflight` records are in flight.
        let room = if probe { 1 } else { self.cfg.inflight };
        let mut added = false;
        while self.window.iter().filter(|w| !w.skip).count() < room {
            if !self.publish_next()? {
                break;
            }
            added = true;
        }
        if let Some(head) = self.window.iter().find(|w| !w.skip) {
            let due = head.sent_at + self.cfg.ack_timeout;
            if Instant::now() >= due {
                self.failed(
                    Failure {
                        outcome: Outcome::Failed,
                        class: "ack_timeout".into(),
                    },
                    None,
                )?;
                return Ok(None);
            }
            return Ok(Some(
                due.saturating_duration_since(Instant::now())
                    .min(self.opts.poll_interval),
            ));
        }
        self.drain_skipped();
        Ok(if added {
            None
        } else {
            Some(self.opts.poll_interval)
        })
    }

    /// The operator's switches (`webhook disable|enable mqtt:NAME`), read at most once a
    /// second: false while disabled; an `enable` starts the policy afresh.
    fn operator_allows(&mut self) -> Result<bool, OutboxError> {
        if self
            .state_read
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return Ok(!self.disabled);
        }
        self.state_read = Some(Instant::now());
        if let Some(st) = self.store.webhook(&self.output)? {
            if st.resets != self.resets {
                self.resets = st.resets;
                self.policy.reset();
                log::info!("mqtt {}: enabled by the operator", self.cfg.name);
            }
            if !st.enabled && !self.disabled {
                log::info!(
                    "mqtt {}: disabled by the operator, readings keep queueing; \
                     `enocean-agent webhook enable {}` resumes it",
                    self.cfg.name,
                    self.output
                );
            }
            self.disabled = !st.enabled;
        }
        Ok(!self.disabled)
    }

    /// Forgets what was in flight: the next records are read again from the cursor.
    fn restart_window(&mut self) {
        self.window.clear();
        self.unassigned.clear();
        self.by_pkid.clear();
        self.prefetched.clear();
        self.fetched = self.cursor;
    }

    fn publish(&mut self, m: &Message, seq: u64) -> bool {
        let Some(s) = &self.session else {
            return false;
        };
        match s.publish(m) {
            Ok(()) => {
                self.unassigned.push_back(seq);
                true
            }
            Err(_) => false,
        }
    }

    /// Reads the next record after `fetched` and publishes its messages. False when there is
    /// none (or it must wait for the clock).
    fn publish_next(&mut self) -> Result<bool, OutboxError> {
        if self.prefetched.is_empty() {
            let rows = self
                .store
                .telemetry_after(self.fetched, self.opts.prefetch.max(1))?;
            self.prefetched.extend(rows);
        }
        let Some((seq, device, t)) = self.prefetched.pop_front() else {
            return Ok(false);
        };
        let mut record = match t {
            Some(t) if self.cfg.accepts(&t) => t,
            _ => {
                self.fetched = seq;
                self.window.push_back(InFlight {
                    seq,
                    id: String::new(),
                    left: 0,
                    skip: true,
                    announces: Vec::new(),
                    sent_at: Instant::now(),
                });
                return Ok(true);
            }
        };
        if record.awaits_clock() && !self.resolve_time(&mut record)? {
            // Not before the clock is synchronised: it waits at the head.
            self.prefetched.push_front((seq, device, Some(record)));
            return Ok(false);
        }
        let id = crate::webhook::render::delivery_id(&self.output, std::slice::from_ref(&record));
        let (messages, announces) = match topic::messages(&self.cfg, &record, &self.announced) {
            Ok(m) => m,
            Err(e) => {
                log::error!(
                    "mqtt {}: record seq {seq} cannot be rendered ({e}); it is passed over",
                    self.cfg.name
                );
                (Vec::new(), Vec::new())
            }
        };
        self.fetched = seq;
        let n = messages.len();
        for m in &messages {
            if !self.publish(m, seq) {
                // The client's queue is full or gone: start again from the cursor.
                let f = Failure {
                    outcome: Outcome::Failed,
                    class: "client_queue_full".into(),
                };
                self.failed(f, Some(&id))?;
                return Ok(false);
            }
        }
        self.window.push_back(InFlight {
            seq,
            id,
            left: n,
            skip: n == 0,
            announces,
            sent_at: Instant::now(),
        });
        Ok(true)
    }

    /// Gives a reading received before the clock was synchronised its wall time, as the webhook
    /// sender does. False while the clock is not synchronised (it waits, and so does everything
    /// behind it).
    fn resolve_time(&mut self, r: &mut Telemetry) -> Result<bool, OutboxError> {
        if !self.opts.clock.synchronized() {
            if !self.holding_for_clock {
                self.holding_for_clock = true;
                log::warn!(
                    "mqtt {}: holding readings received before the clock was synchronised until \
                     it is (see [gateway] clock_sync)",
                    self.cfg.name
                );
            }
            return Ok(false);
        }
        self.holding_for_clock = false;
        let here = self.opts.clock.boot_time();
        let start = match &self.boot_start {
            Some((id, start)) if *id == here.boot_id => *start,
            _ => {
                let start =
                    crate::clock::boot_start_ms(&self.store.conn, &here, self.opts.clock.now())?;
                self.boot_start = Some((here.boot_id.to_string(), start));
                start
            }
        };
        r.resolve_time(&here.boot_id, start);
        Ok(true)
    }

    fn on_event(&mut self, ev: Result<Ev, Failure>) {
        let r = match ev {
            Ok(Ev::Sent(pkid)) => {
                if let Some(seq) = self.unassigned.pop_front()
                    && seq != 0
                {
                    self.by_pkid.insert(pkid, seq);
                }
                Ok(())
            }
            Ok(Ev::Acked(pkid)) => self.acked(pkid),
            Ok(Ev::Refused(pkid, class)) => {
                let id = self
                    .by_pkid
                    .get(&pkid)
                    .and_then(|seq| self.window.iter().find(|w| w.seq == *seq))
                    .map(|w| w.id.clone());
                self.failed(
                    Failure {
                        outcome: Outcome::Failed,
                        class,
                    },
                    id.as_deref(),
                )
            }
            Ok(Ev::Other) => Ok(()),
            Err(f) => self.failed(f, None),
        };
        if let Err(e) = r {
            log::error!("mqtt {}: outbox error: {e}", self.cfg.name);
        }
    }

    fn acked(&mut self, pkid: u16) -> Result<(), OutboxError> {
        let Some(seq) = self.by_pkid.remove(&pkid) else {
            return Ok(());
        };
        if let Some(w) = self.window.iter_mut().find(|w| w.seq == seq) {
            w.left = w.left.saturating_sub(1);
        }
        while let Some(front) = self.window.front() {
            if front.skip {
                self.drain_skipped();
                continue;
            }
            if front.left > 0 {
                break;
            }
            let Some(done) = self.window.pop_front() else {
                break;
            };
            self.delivered(done)?;
        }
        Ok(())
    }

    /// Records passed over at the head of the window move the cursor.
    fn drain_skipped(&mut self) {
        while self.window.front().is_some_and(|w| w.skip) {
            if let Some(w) = self.window.pop_front() {
                self.cursor = self.cursor.max(w.seq);
                self.marks.advance(&self.output, self.cursor);
                self.ack_since.get_or_insert_with(Instant::now);
            }
        }
    }

    fn delivered(&mut self, w: InFlight) -> Result<(), OutboxError> {
        let r = AttemptResult {
            outcome: Outcome::Delivered,
            status: None,
            error: None,
            latency: w.sent_at.elapsed(),
            response: String::new(),
            retry_after: None,
        };
        let decision = self
            .policy
            .on_attempt(Instant::now(), Outcome::Delivered, None);
        self.cursor = self.cursor.max(w.seq);
        // Acknowledged by the broker: the outbox needs no flush for it.
        self.marks.advance(&self.output, self.cursor);
        self.announced.extend(w.announces);
        self.acks.push(crate::webhook::sender::log_entry(
            &self.output,
            &w.id,
            None,
            (Some(w.seq), Some(w.seq)),
            Trigger::Auto,
            &r,
        ));
        self.ack_since.get_or_insert_with(Instant::now);
        if !decision.events.is_empty() {
            let health = self.health(&decision, None);
            self.store.commit_acks_with(
                &self.output,
                self.cursor,
                &self.acks,
                None,
                Some(&health),
            )?;
            self.acks_saved();
            self.report(&decision, "");
        } else if self.acks.len() >= crate::webhook::sender::MAX_HELD_ACKS {
            self.flush_acks()?;
        }
        Ok(())
    }

    /// The connection failed (or a publish was refused): the policy decides when to try again,
    /// the session is dropped and what was in flight is sent again from the cursor.
    fn failed(&mut self, f: Failure, id: Option<&str>) -> Result<(), OutboxError> {
        self.session = None;
        let head = self.window.iter().find(|w| !w.skip);
        let seqs = head.map(|w| w.seq);
        let id = id
            .map(str::to_owned)
            .or_else(|| head.map(|w| w.id.clone()))
            // No record was in flight (the connection failed first): the nil id, no seqs.
            .unwrap_or_else(|| uuid::Uuid::nil().to_string());
        self.restart_window();
        let decision = self.policy.on_attempt(Instant::now(), f.outcome, None);
        let r = AttemptResult {
            outcome: f.outcome,
            status: None,
            error: Some(f.class.clone()),
            latency: Duration::ZERO,
            response: String::new(),
            retry_after: None,
        };
        let mut entry = crate::webhook::sender::log_entry(
            &self.output,
            &id,
            None,
            (seqs, seqs),
            Trigger::Auto,
            &r,
        );
        if seqs.is_none() {
            entry.seq_first = None;
            entry.seq_last = None;
        }
        self.acks.push(entry);
        let health = self.health(&decision, Some(&f));
        self.store
            .commit_acks_with(&self.output, self.cursor, &self.acks, None, Some(&health))?;
        self.acks_saved();
        self.report(&decision, &f.class);
        Ok(())
    }

    fn flush_acks(&mut self) -> Result<(), OutboxError> {
        if self.acks.is_empty() && self.cursor == self.persisted_cursor {
            self.ack_since = None;
            return Ok(());
        }
        self.store
            .commit_acks(&self.output, self.cursor, &self.acks)?;
        self.acks_saved();
        Ok(())
    }

    fn acks_saved(&mut self) {
        self.acks.clear();
        self.persisted_cursor = self.cursor;
        self.ack_since = None;
    }

    /// At shutdown (`drain`): publish what is committed and wait for the acknowledgements, for
    /// at most [`DRAIN`] (so the stop's own `gateway.status` gets out), save the cursor, publish
    /// `offline` and disconnect. When the operator disables the output: the same without
    /// publishing anything new.
    async fn close(&mut self, drain: bool) {
        let deadline = Instant::now() + DRAIN;
        while self.session.is_some() {
            if drain {
                while self.session.is_some()
                    && self.window.iter().filter(|w| !w.skip).count() < self.cfg.inflight
                {
                    match self.publish_next() {
                        Ok(true) => {}
                        _ => break,
                    }
                }
                self.drain_skipped();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.window.iter().any(|w| !w.skip) || left.is_zero() {
                break;
            }
            let Some(s) = self.session.as_mut() else {
                break;
            };
            match tokio::time::timeout(left, s.poll()).await {
                Ok(ev) => self.on_event(ev),
                Err(_) => break,
            }
        }
        if let Some(mut s) = self.session.take() {
            let status = topic::status_topic(&self.cfg, &self.gateway);
            let _ = s.publish(&Message {
                topic: status,
                payload: b"offline".to_vec(),
                retain: true,
            });
            s.disconnect(Duration::from_secs(2)).await;
        }
        if let Err(e) = self.flush_acks() {
            log::error!("mqtt {}: acknowledgements not saved: {e}", self.cfg.name);
        }
    }

    fn health(&self, d: &Decision, f: Option<&Failure>) -> HealthChange {
        let mut deactivate = None;
        let mut reactivate = false;
        for e in &d.events {
            match e {
                Event::Deactivated { consecutive } => {
                    deactivate = Some(format!("{consecutive} consecutive failed deliveries"));
                }
                Event::Resumed { .. } => reactivate = true,
                _ => {}
            }
        }
        HealthChange {
            phase: self.policy.phase(),
            consecutive_failures: self.policy.consecutive(),
            next_attempt_ms: self.policy.not_before().map(crate::clock::wall_ms_of),
            success: d.fate == Fate::Delivered,
            failure: f
                .filter(|f| f.outcome != Outcome::Offline)
                .map(|f| f.class.clone()),
            deactivate,
            reactivate,
            streak_end: None,
        }
    }

    fn report(&self, d: &Decision, why: &str) {
        let name = &self.cfg.name;
        let next = self
            .policy
            .not_before()
            .map(|t| t.saturating_duration_since(Instant::now()));
        let next_text = next.map_or_else(String::new, |d| format!("; next attempt in {d:.1?}"));
        if d.events.is_empty() && d.fate != Fate::Delivered {
            log::info!("mqtt {name}: broker attempt failed ({why}){next_text}");
        }
        for e in &d.events {
            match e {
                Event::Retrying => log::warn!(
                    "mqtt {name}: broker {} not reachable or refusing ({why}{}), retrying; \
                     readings keep queueing in order",
                    self.cfg.url,
                    hint(why)
                ),
                Event::DeliveryFailed { consecutive } => log::warn!(
                    "mqtt {name}: {} attempts in a row failed ({why}); {consecutive} failed \
                     rounds in a row{next_text}",
                    1 + self.cfg.max_retries
                ),
                Event::Deactivated { consecutive } => log::error!(
                    "mqtt {name}: deactivated after {consecutive} failed rounds (last: {why}{}); \
                     probing the broker, first probe in {:.1?}; readings keep queueing",
                    hint(why),
                    next.unwrap_or_default()
                ),
                Event::Resumed { after } => log::warn!(
                    "mqtt {name}: probe acknowledged, output resumed after {after} failed \
                     rounds; the backlog drains in order"
                ),
                Event::Recovered { after } => {
                    log::info!("mqtt {name}: publishing again ({after} failed rounds before)")
                }
                Event::Gone => {}
                Event::WentOffline => log::warn!(
                    "mqtt {name}: gateway offline ({why}), holding readings (not counted as \
                     failures)"
                ),
                Event::BackOnline => log::info!("mqtt {name}: gateway back online"),
            }
        }
    }
}

/// What an operator can do about a failure class, for the log line.
fn hint(class: &str) -> &'static str {
    match class {
        "not_authorized" | "bad_username_or_password" => {
            ": the broker refused the login, check `username` and `password_file`"
        }
        "tls_unknown_ca" => ": the broker's certificate is not trusted, set `ca_file`",
        "tls_wrong_name" => ": the broker's certificate is not for the URL's host",
        "tls_client_cert_refused" => ": the broker wants a client certificate it accepts",
        "connection_refused" => ": nothing listens at the URL (broker stopped?)",
        "ack_timeout" => ": the broker stopped acknowledging",
        _ => "",
    }
}
