//! The webhooks' persisted state: registration, cursors, the operator's switches, the health
//! the sender persists with each attempt, and the acknowledgements of delivered telemetry.

use rusqlite::{Connection, OptionalExtension, params};

use super::attempt_log::insert_log;
use super::{DeliveryState, LogEntry, Outcome, Store};
use crate::outbox::OutboxError;
use crate::outbox::UnixMs;

/// The delivery policy's phase of a webhook, as persisted by the sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// Delivering (or idle).
    #[default]
    Active,
    /// The head of its queue failed and is being retried; nothing behind it is sent.
    Retrying,
    /// The gateway's own network is down (DNS, no route): attempts are held, not counted.
    Offline,
    /// Deactivated after consecutive failed deliveries; probed with backoff, resumes by itself.
    Probing,
    /// The endpoint answered 410 Gone: deactivated, not probed until `webhook enable`.
    Gone,
}

stored_enum!(Phase, "webhook phase", text {
    Active => "active",
    Retrying => "retrying",
    Offline => "offline",
    Probing => "probing",
    Gone => "gone",
});

/// A webhook's persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookState {
    /// Name.
    pub name: String,
    /// Still in the configuration.
    pub configured: bool,
    /// Operator switch (`webhook enable`/`disable`).
    pub enabled: bool,
    /// When the policy deactivated it, if it did.
    pub deactivated_at: Option<UnixMs>,
    /// Why it was deactivated.
    pub deactivated_reason: Option<String>,
    /// Consecutive failed deliveries.
    pub consecutive_failures: u32,
    /// Highest telemetry seq handed to a delivery.
    pub cursor: u64,
    /// Last successful attempt.
    pub last_success: Option<UnixMs>,
    /// Last failed attempt.
    pub last_failure: Option<UnixMs>,
    /// The delivery policy's phase as last persisted by the sender.
    pub phase: Phase,
    /// Error class of the last failed attempt (`http_503`, `timeout`, …).
    pub last_failure_reason: Option<String>,
    /// When the next retry or probe is due, if one is scheduled.
    pub next_attempt_ms: Option<UnixMs>,
    /// Last seq of a partial batch that was posted and maybe not acknowledged (0: none); a
    /// delivery rebuilt after a crash ends there.
    pub batch_end: u64,
    /// How often `webhook enable` was run (the sender restarts its policy when it changes).
    pub resets: u64,
}

/// What one attempt (or one decision of the policy) changes in a webhook's persisted health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthChange {
    /// The phase now.
    pub phase: Phase,
    /// Failed deliveries in a row now.
    pub consecutive_failures: u32,
    /// Next retry or probe, None when nothing is scheduled.
    pub next_attempt_ms: Option<UnixMs>,
    /// A delivery got through: `last_success` is now.
    pub success: bool,
    /// An attempt failed with this error class: `last_failure` is now.
    pub failure: Option<String>,
    /// Deactivated now, for this reason (kept when already deactivated).
    pub deactivate: Option<String>,
    /// Deactivation cleared (resumed).
    pub reactivate: bool,
    /// What to do with the deliveries rejected during the failure streak that ended.
    pub streak_end: Option<StreakEnd>,
}

/// The end of a failure streak, for the deliveries rejected during it (`delivery.requeue = 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreakEnd {
    /// They stay failed (others got through: the rejections were about their bodies).
    Finalize,
    /// They go back into the queue once (the webhook resumed after a deactivation).
    Requeue,
}

fn state_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WebhookState> {
    Ok(WebhookState {
        name: r.get(0)?,
        configured: r.get(1)?,
        enabled: r.get(2)?,
        deactivated_at: r.get(3)?,
        deactivated_reason: r.get(4)?,
        consecutive_failures: r.get(5)?,
        cursor: r.get::<_, i64>(6)?.max(0) as u64,
        last_success: r.get(7)?,
        last_failure: r.get(8)?,
        phase: r.get(9)?,
        last_failure_reason: r.get(10)?,
        next_attempt_ms: r.get(11)?,
        batch_end: r.get::<_, i64>(12)?.max(0) as u64,
        resets: r.get::<_, i64>(13)?.max(0) as u64,
    })
}

const STATE_COLS: &str = "name, configured, enabled, deactivated_at, deactivated_reason, \
     consecutive_failures, cursor, last_success, last_failure, phase, last_failure_reason, \
     next_attempt_at, batch_end, resets";

impl Store {
    /// Registers the configured webhooks: new names start at the current end of the telemetry
    /// (history is not replayed to a new webhook); names no longer configured stop holding back
    /// pruning. Rows of other outputs (`mqtt:NAME`) are left alone.
    pub fn register_webhooks(&mut self, names: &[&str]) -> Result<(), OutboxError> {
        let prefix = crate::mqtt::OUTPUT_PREFIX;
        self.register(names, &|n: &str| !n.starts_with(prefix))
    }

    /// Registers the configured outputs of one other kind, whose names all start with `prefix`
    /// (`mqtt:`), like [`Store::register_webhooks`]: they share the table, the cursors and the
    /// health columns with the webhooks; only rows with the prefix are marked unconfigured.
    pub fn register_outputs(&mut self, prefix: &str, names: &[String]) -> Result<(), OutboxError> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.register(&names, &|n: &str| n.starts_with(prefix))
    }

    fn register(&mut self, names: &[&str], mine: &dyn Fn(&str) -> bool) -> Result<(), OutboxError> {
        let tx = self.conn.transaction()?;
        for n in names {
            // A name coming back after it was removed starts afresh at the end, too.
            tx.execute(
                "INSERT INTO webhook (name, cursor) VALUES (?1, \
                 (SELECT coalesce(max(seq), 0) FROM telemetry)) \
                 ON CONFLICT(name) DO UPDATE SET \
                 cursor = CASE WHEN configured = 0 THEN excluded.cursor ELSE cursor END, \
                 configured = 1",
                params![n],
            )?;
        }
        let known: Vec<String> = {
            let mut st = tx.prepare("SELECT name FROM webhook WHERE configured = 1")?;
            st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        for k in known {
            if mine(&k) && !names.contains(&k.as_str()) {
                tx.execute(
                    "UPDATE webhook SET configured = 0 WHERE name = ?1",
                    params![k],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Creates the state row of a configured webhook the daemon has not registered yet (its
    /// cursor starts at the current end); existing rows are left alone.
    pub fn ensure_webhook(&self, name: &str) -> Result<(), OutboxError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO webhook (name, cursor) VALUES (?1, \
             (SELECT coalesce(max(seq), 0) FROM telemetry))",
            params![name],
        )?;
        Ok(())
    }

    /// A webhook's state, None when it was never registered.
    pub fn webhook(&self, name: &str) -> Result<Option<WebhookState>, OutboxError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {STATE_COLS} FROM webhook WHERE name = ?1"),
                params![name],
                state_from_row,
            )
            .optional()?)
    }

    /// Every registered webhook's state.
    pub fn webhooks(&self) -> Result<Vec<WebhookState>, OutboxError> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {STATE_COLS} FROM webhook ORDER BY name"))?;
        let rows = st.query_map([], state_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `webhook enable`: switch on, clear a deactivation (also a 410 Gone) and the failure
    /// count, put the deliveries rejected during the failure streak back into the queue (once),
    /// and tell the sender to start its policy afresh. False when the webhook is unknown.
    pub fn enable(&mut self, name: &str) -> Result<bool, OutboxError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE webhook SET enabled = 1, deactivated_at = NULL, deactivated_reason = NULL, \
             consecutive_failures = 0, phase = ?2, next_attempt_at = NULL, \
             resets = resets + 1 WHERE name = ?1",
            params![name, Phase::Active],
        )?;
        if n > 0 {
            end_streak(&tx, name, StreakEnd::Requeue)?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// `webhook disable`: switch off (telemetry keeps queueing). False when unknown.
    pub fn disable(&self, name: &str) -> Result<bool, OutboxError> {
        Ok(self.conn.execute(
            "UPDATE webhook SET enabled = 0 WHERE name = ?1",
            params![name],
        )? > 0)
    }

    /// Persists acknowledgements: advances the cursor, appends log entries, notes the last
    /// success, in one transaction.
    pub fn commit_acks(
        &mut self,
        webhook: &str,
        cursor: u64,
        log: &[LogEntry],
    ) -> Result<(), OutboxError> {
        self.commit_acks_with(webhook, cursor, log, None, None)
    }

    /// [`Store::commit_acks`], plus `batch_end` (the last seq of a partial batch about to be
    /// posted, stored so a crash cannot change that batch) and a health change, in the same
    /// transaction.
    pub fn commit_acks_with(
        &mut self,
        webhook: &str,
        cursor: u64,
        log: &[LogEntry],
        batch_end: Option<u64>,
        health: Option<&HealthChange>,
    ) -> Result<(), OutboxError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE webhook SET cursor = max(cursor, ?2), \
             last_success = coalesce(?3, last_success), batch_end = coalesce(?4, batch_end) \
             WHERE name = ?1",
            params![
                webhook,
                cursor as i64,
                log.iter()
                    .rev()
                    .find(|l| l.outcome == Outcome::Delivered)
                    .map(|l| l.at),
                batch_end.map(|v| v as i64),
            ],
        )?;
        for l in log {
            insert_log(&tx, l)?;
        }
        if let Some(h) = health {
            apply_health(&tx, webhook, h)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Applies a health change on its own (tests, tools).
    pub fn apply_health(
        &mut self,
        webhook: &str,
        health: &HealthChange,
    ) -> Result<(), OutboxError> {
        let tx = self.conn.transaction()?;
        apply_health(&tx, webhook, health)?;
        tx.commit()?;
        Ok(())
    }
}

pub(super) fn apply_health(
    conn: &Connection,
    webhook: &str,
    h: &HealthChange,
) -> Result<(), OutboxError> {
    let now = UnixMs::now();
    conn.prepare_cached(
        "UPDATE webhook SET phase = ?2, consecutive_failures = ?3, next_attempt_at = ?4, \
         last_success = CASE WHEN ?5 THEN ?6 ELSE last_success END, \
         last_failure = CASE WHEN ?7 IS NOT NULL THEN ?6 ELSE last_failure END, \
         last_failure_reason = coalesce(?7, last_failure_reason), \
         deactivated_at = CASE WHEN ?9 THEN NULL WHEN ?8 IS NOT NULL \
             THEN coalesce(deactivated_at, ?6) ELSE deactivated_at END, \
         deactivated_reason = CASE WHEN ?9 THEN NULL WHEN ?8 IS NOT NULL \
             THEN ?8 ELSE deactivated_reason END \
         WHERE name = ?1",
    )?
    .execute(params![
        webhook,
        h.phase,
        h.consecutive_failures,
        h.next_attempt_ms,
        h.success,
        now,
        h.failure,
        h.deactivate,
        h.reactivate,
    ])?;
    if let Some(end) = h.streak_end {
        end_streak(conn, webhook, end)?;
    }
    Ok(())
}

fn end_streak(conn: &Connection, webhook: &str, end: StreakEnd) -> Result<(), OutboxError> {
    let n = match end {
        StreakEnd::Finalize => conn
            .prepare_cached("UPDATE delivery SET requeue = 0 WHERE webhook = ?1 AND requeue = 1")?
            .execute(params![webhook])?,
        StreakEnd::Requeue => conn
            .prepare_cached(
                "UPDATE delivery SET state = ?2, requeue = 2 \
                 WHERE webhook = ?1 AND requeue = 1 AND state = ?3",
            )?
            .execute(params![
                webhook,
                DeliveryState::Pending,
                DeliveryState::Failed
            ])?,
    };
    if end == StreakEnd::Requeue && n > 0 {
        log::info!(
            "webhook {webhook}: {n} deliveries rejected while it kept failing are queued again"
        );
    }
    Ok(())
}
