//! Queries on the outbox database shared by the sender threads and the command line: webhook state
//! and cursors, deliveries that needed a retry, the attempt log, status figures.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::OutboxError;
use crate::telemetry::Telemetry;

/// One connection to the outbox database (the file must be openable; see [`super::Outbox::open`]
/// for corruption recovery).
pub struct Store {
    pub(crate) conn: Connection,
}

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

impl Phase {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Active => "active",
            Phase::Retrying => "retrying",
            Phase::Offline => "offline",
            Phase::Probing => "probing",
            Phase::Gone => "gone",
        }
    }

    /// From the stored name (unknown names read as active).
    pub fn parse(s: &str) -> Self {
        match s {
            "retrying" => Phase::Retrying,
            "offline" => Phase::Offline,
            "probing" => Phase::Probing,
            "gone" => Phase::Gone,
            _ => Phase::Active,
        }
    }
}

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
    pub deactivated_at: Option<String>,
    /// Why it was deactivated.
    pub deactivated_reason: Option<String>,
    /// Consecutive failed deliveries.
    pub consecutive_failures: u32,
    /// Highest telemetry seq handed to a delivery.
    pub cursor: u64,
    /// Last successful attempt.
    pub last_success: Option<String>,
    /// Last failed attempt.
    pub last_failure: Option<String>,
    /// The delivery policy's phase as last persisted by the sender.
    pub phase: Phase,
    /// Error class of the last failed attempt (`http_503`, `timeout`, …).
    pub last_failure_reason: Option<String>,
    /// When the next retry or probe is due (unix ms), if one is scheduled.
    pub next_attempt_ms: Option<i64>,
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
    /// Next retry or probe (unix ms), None when nothing is scheduled.
    pub next_attempt_ms: Option<i64>,
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

/// What an attempt changes in a stored delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryChange {
    /// `pending`, `delivered` or `failed`.
    pub state: &'static str,
    /// Attempts counted so far (offline tries excluded).
    pub attempts: u32,
    /// Last HTTP status.
    pub status: Option<u16>,
    /// Last error class.
    pub error: Option<String>,
    /// New `requeue` mark (see the schema, version 2), None to keep it.
    pub requeue: Option<u8>,
}

/// A delivery to store because its first attempt did not get through.
#[derive(Debug, Clone, Copy)]
pub struct NewDelivery<'a> {
    /// Delivery id.
    pub uuid: &'a str,
    /// `telemetry`.
    pub event: &'a str,
    /// Its records (seq set).
    pub records: &'a [Telemetry],
    /// The exact body.
    pub body: &'a [u8],
}

/// A stored delivery: one that needed a retry, failed, or was resent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Row id (what `outbox resend` takes).
    pub row: i64,
    /// Webhook name.
    pub webhook: String,
    /// Delivery id (envelope `id`, `webhook-id`).
    pub uuid: String,
    /// `telemetry` or `test`.
    pub event: String,
    /// First telemetry seq.
    pub seq_first: Option<u64>,
    /// Last telemetry seq.
    pub seq_last: Option<u64>,
    /// Telemetry ids, comma separated.
    pub telemetry_ids: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts so far (offline tries excluded).
    pub attempts: u32,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Last HTTP status.
    pub last_status: Option<u16>,
    /// Last error class.
    pub last_error: Option<String>,
    /// The exact body.
    pub body: Vec<u8>,
    /// 0; 1 rejected during a failure streak (put back once if it ends in a deactivation);
    /// 2 put back once already.
    pub requeue: u8,
}

/// Why an attempt was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The sender's own schedule.
    Auto,
    /// `outbox resend`.
    Manual,
    /// `webhook test`.
    Test,
}

impl Trigger {
    /// Name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Auto => "auto",
            Trigger::Manual => "manual",
            Trigger::Test => "test",
        }
    }
}

/// One delivery log entry (one attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Log row id (0 before insertion).
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Webhook name.
    pub webhook: String,
    /// Delivery id.
    pub delivery_id: String,
    /// Delivery row, when the delivery is stored.
    pub delivery_row: Option<i64>,
    /// First telemetry seq.
    pub seq_first: Option<u64>,
    /// Last telemetry seq.
    pub seq_last: Option<u64>,
    /// `auto`, `manual` or `test`.
    pub trigger: String,
    /// `delivered`, `failed`, `gone` or `offline`.
    pub outcome: String,
    /// HTTP status.
    pub status: Option<u16>,
    /// Error class.
    pub error: Option<String>,
    /// Latency in milliseconds.
    pub latency_ms: u64,
    /// First 2 KiB of the response body.
    pub response: String,
}

/// A stored reading that cannot be read: (seq, unix ms when found, the error).
pub type Unreadable = (u64, i64, String);

/// What `outbox salvage` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Salvage {
    /// Rows after this seq were considered (the old file's slowest cursor).
    pub from_seq: u64,
    /// Readings added to this outbox.
    pub imported: u64,
    /// Readings whose id this outbox already had.
    pub already_here: u64,
    /// Rows whose JSON could not be read.
    pub unreadable: u64,
    /// Damaged ranges stepped over.
    pub skipped_ranges: u64,
}

/// Figures for `outbox status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Telemetry rows.
    pub rows: u64,
    /// Telemetry bytes.
    pub bytes: u64,
    /// Database file size (file + WAL).
    pub file_bytes: u64,
    /// Highest seq committed.
    pub max_seq: u64,
    /// Oldest telemetry commit time (unix ms).
    pub oldest_committed_ms: Option<i64>,
    /// Per webhook: name, depth (telemetry after its cursor), pending retries, failed, oldest
    /// pending commit time (unix ms).
    pub webhooks: Vec<WebhookDepth>,
    /// Counters (`dropped`, `disk_full`, …).
    pub counters: Vec<(String, i64)>,
}

/// The backlog of one webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookDepth {
    /// Name.
    pub name: String,
    /// Telemetry committed after its cursor (only its routed devices with
    /// [`Store::status_routed`]).
    pub depth: u64,
    /// Deliveries waiting for a retry.
    pub retrying: u64,
    /// Failed deliveries kept for resending.
    pub failed: u64,
    /// Commit time of the oldest telemetry not yet handed over (unix ms).
    pub oldest_pending_ms: Option<i64>,
}

fn now_text() -> String {
    format!("{:.3}", jiff::Timestamp::now())
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
        phase: Phase::parse(&r.get::<_, String>(9)?),
        last_failure_reason: r.get(10)?,
        next_attempt_ms: r.get(11)?,
        batch_end: r.get::<_, i64>(12)?.max(0) as u64,
        resets: r.get::<_, i64>(13)?.max(0) as u64,
    })
}

const STATE_COLS: &str = "name, configured, enabled, deactivated_at, deactivated_reason, \
     consecutive_failures, cursor, last_success, last_failure, phase, last_failure_reason, \
     next_attempt_at, batch_end, resets";

const DELIVERY_COLS: &str = "id, webhook, uuid, event, seq_first, seq_last, telemetry_ids, \
     state, attempts, created_at, updated_at, last_status, last_error, body, requeue";

fn delivery_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        row: r.get(0)?,
        webhook: r.get(1)?,
        uuid: r.get(2)?,
        event: r.get(3)?,
        seq_first: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
        seq_last: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
        telemetry_ids: r.get(6)?,
        state: r.get(7)?,
        attempts: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        last_status: r.get(11)?,
        last_error: r.get(12)?,
        body: r.get(13)?,
        requeue: r.get::<_, i64>(14)?.clamp(0, 2) as u8,
    })
}

impl Store {
    /// Opens an existing or new database at `path` (no corruption recovery: that is the
    /// daemon's [`super::Outbox::open`]).
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        Ok(Self {
            conn: super::schema::open(path)?,
        })
    }

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

    /// A number that changes whenever another connection committed to the database (SQLite's
    /// `PRAGMA data_version`): a cheap way to notice changes made by the command line.
    pub fn data_version(&self) -> Result<i64, OutboxError> {
        Ok(self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?)
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
             consecutive_failures = 0, phase = 'active', next_attempt_at = NULL, \
             resets = resets + 1 WHERE name = ?1",
            params![name],
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

    /// Telemetry after `cursor`, oldest first, at most `limit` rows: (seq, device, telemetry with
    /// its seq set, or None when the stored JSON cannot be read).
    pub fn telemetry_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, Option<Telemetry>)>, OutboxError> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, device, body FROM telemetry WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let mut rows = st.query(params![cursor as i64, limit as i64])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let seq = r.get::<_, i64>(0)?.max(0) as u64;
            let device: String = r.get(1)?;
            let body: String = r.get(2)?;
            let t = match serde_json::from_str::<Telemetry>(&body) {
                Ok(mut t) => {
                    t.seq = seq;
                    Some(t)
                }
                Err(e) => {
                    // Counted and listed (`outbox status`), once, whichever sender finds it.
                    let new = self.conn.execute(
                        "INSERT OR IGNORE INTO unreadable (seq, found_at, error) VALUES (?1, ?2, ?3)",
                        params![seq as i64, jiff::Timestamp::now().as_millisecond(), e.to_string()],
                    );
                    if new.is_ok_and(|n| n > 0) {
                        log::error!(
                            "outbox: telemetry seq {seq} is unreadable ({e}); it cannot be delivered and is listed by `outbox status`"
                        );
                    }
                    None
                }
            };
            out.push((seq, device, t));
        }
        Ok(out)
    }

    /// Telemetry rows found unreadable: (seq, unix ms found, error), oldest first, at most
    /// `limit`, and how many there are in all.
    pub fn unreadable(&self, limit: usize) -> Result<(u64, Vec<Unreadable>), OutboxError> {
        let total: i64 = self
            .conn
            .query_row("SELECT count(*) FROM unreadable", [], |r| r.get(0))?;
        let mut st = self
            .conn
            .prepare("SELECT seq, found_at, error FROM unreadable ORDER BY seq LIMIT ?1")?;
        let rows = st
            .query_map(params![limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((total.max(0) as u64, rows))
    }

    /// Imports the undelivered readings still readable from `file`, an outbox moved aside as
    /// corrupt: rows after the slowest configured webhook's cursor there (all rows when its
    /// webhook table cannot be read), with their ids and bodies, under new seqs. Readings whose
    /// id is already here are skipped; ranges that cannot be read are stepped over and counted.
    pub fn salvage(&mut self, file: &Path) -> Result<Salvage, OutboxError> {
        let old = rusqlite::Connection::open_with_flags(
            file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut report = Salvage::default();
        let from: i64 = old
            .query_row(
                "SELECT coalesce(min(cursor), 0) FROM webhook WHERE configured = 1",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        let max_seq: i64 = old
            .query_row("SELECT coalesce(max(seq), 0) FROM telemetry", [], |r| {
                r.get(0)
            })
            .unwrap_or(i64::MAX);
        report.from_seq = from.max(0) as u64;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let mut cur = from;
        let mut step = 1i64;
        while cur < max_seq {
            let chunk: Result<Vec<(i64, String, String, String)>, rusqlite::Error> = old
                .prepare("SELECT seq, id, device, body FROM telemetry WHERE seq > ?1 ORDER BY seq LIMIT 500")
                .and_then(|mut st| {
                    st.query_map(params![cur], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect()
                });
            match chunk {
                Ok(rows) if rows.is_empty() => break,
                Ok(rows) => {
                    step = 1;
                    let tx = self.conn.transaction()?;
                    for (seq, id, device, body) in &rows {
                        cur = *seq;
                        if serde_json::from_str::<Telemetry>(body).is_err() {
                            report.unreadable += 1;
                            continue;
                        }
                        let present: bool = tx
                            .query_row("SELECT 1 FROM telemetry WHERE id = ?1", params![id], |_| {
                                Ok(())
                            })
                            .optional()?
                            .is_some();
                        if present {
                            report.already_here += 1;
                            continue;
                        }
                        tx.execute(
                            "INSERT INTO telemetry (id, device, committed_at, body) VALUES (?1, ?2, ?3, ?4)",
                            params![id, device, now_ms, body],
                        )?;
                        report.imported += 1;
                    }
                    tx.commit()?;
                }
                Err(_) => {
                    // A damaged page: step over it, further each time it does not help.
                    report.skipped_ranges += 1;
                    cur = cur.saturating_add(step);
                    step = step.saturating_mul(2).min(1 << 20);
                }
            }
        }
        Ok(report)
    }

    /// The oldest delivery of `webhook` waiting for a retry.
    pub fn pending_head(&self, webhook: &str) -> Result<Option<Delivery>, OutboxError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM delivery WHERE webhook = ?1 AND state = 'pending' \
                 ORDER BY id LIMIT 1"
            ))?
            .query_row(params![webhook], delivery_from_row)
            .optional()?)
    }

    /// The oldest delivery of `webhook` rejected during the current failure streak (a probe
    /// for a deactivated webhook that has nothing else to send).
    pub fn streak_head(&self, webhook: &str) -> Result<Option<Delivery>, OutboxError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM delivery WHERE webhook = ?1 AND state = 'failed' \
                 AND requeue = 1 ORDER BY id LIMIT 1"
            ))?
            .query_row(params![webhook], delivery_from_row)
            .optional()?)
    }

    /// One delivery by row id.
    pub fn delivery(&self, row: i64) -> Result<Option<Delivery>, OutboxError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {DELIVERY_COLS} FROM delivery WHERE id = ?1"),
                params![row],
                delivery_from_row,
            )
            .optional()?)
    }

    /// Failed deliveries, oldest first, optionally for one webhook and since a time (RFC 3339).
    pub fn failed(
        &self,
        webhook: Option<&str>,
        since: Option<&str>,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {DELIVERY_COLS} FROM delivery WHERE state = 'failed' \
             AND (?1 IS NULL OR webhook = ?1) AND (?2 IS NULL OR created_at >= ?2) ORDER BY id"
        ))?;
        let rows = st.query_map(params![webhook, since], delivery_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The row ids of failed deliveries (no bodies loaded), for a bulk resend.
    pub fn failed_ids(
        &self,
        webhook: Option<&str>,
        since: Option<&str>,
    ) -> Result<Vec<i64>, OutboxError> {
        let mut st = self.conn.prepare(
            "SELECT id FROM delivery WHERE state = 'failed' \
             AND (?1 IS NULL OR webhook = ?1) AND (?2 IS NULL OR created_at >= ?2) ORDER BY id",
        )?;
        let rows = st.query_map(params![webhook, since], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Calls `f` for each failed delivery, oldest first, one row in memory at a time and without
    /// its body (`body` is empty): for listings of any length. Stops at the first error `f`
    /// returns.
    pub fn for_each_failed<E: From<OutboxError>>(
        &self,
        webhook: Option<&str>,
        since: Option<&str>,
        mut f: impl FnMut(&Delivery) -> Result<(), E>,
    ) -> Result<u64, E> {
        let cols = DELIVERY_COLS.replace(", body,", ", X'' AS body,");
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {cols} FROM delivery WHERE state = 'failed' \
                 AND (?1 IS NULL OR webhook = ?1) AND (?2 IS NULL OR created_at >= ?2) ORDER BY id"
            ))
            .map_err(OutboxError::from)?;
        let mut rows = st
            .query(params![webhook, since])
            .map_err(OutboxError::from)?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(OutboxError::from)? {
            let d = delivery_from_row(r).map_err(OutboxError::from)?;
            f(&d)?;
            n += 1;
        }
        Ok(n)
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
                    .find(|l| l.outcome == "delivered")
                    .map(|l| l.at.clone()),
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

    /// Records an automatic attempt on stored delivery `row` in one transaction: the
    /// delivery's new state, the log entry, the webhook's health.
    pub fn record_attempt(
        &mut self,
        webhook: &str,
        row: i64,
        change: &DeliveryChange,
        log: &LogEntry,
        health: &HealthChange,
    ) -> Result<(), OutboxError> {
        let tx = self.conn.transaction()?;
        update_delivery(&tx, row, change)?;
        insert_log(&tx, log)?;
        apply_health(&tx, webhook, health)?;
        tx.commit()?;
        Ok(())
    }

    /// Records a first attempt that did not get through, in one transaction: the pending
    /// acknowledgements before it (`acks`, up to `cursor`), the delivery stored with its exact
    /// body, the cursor moved past its records, the log entry (its row filled in) and the
    /// webhook's health. Returns the delivery's row id.
    #[allow(clippy::too_many_arguments)]
    pub fn record_first_attempt(
        &mut self,
        webhook: &str,
        cursor: u64,
        acks: &[LogEntry],
        new: NewDelivery<'_>,
        change: &DeliveryChange,
        log: &LogEntry,
        health: &HealthChange,
    ) -> Result<i64, OutboxError> {
        let tx = self.conn.transaction()?;
        for l in acks {
            insert_log(&tx, l)?;
        }
        let row = insert_delivery(&tx, webhook, new, change)?;
        let last = new.records.last().map_or(0, |r| r.seq);
        tx.execute(
            "UPDATE webhook SET cursor = max(cursor, ?2, ?3), \
             last_success = coalesce(?4, last_success) WHERE name = ?1",
            params![
                webhook,
                cursor as i64,
                last as i64,
                acks.iter()
                    .rev()
                    .find(|l| l.outcome == "delivered")
                    .map(|l| l.at.clone()),
            ],
        )?;
        let mut log = log.clone();
        log.delivery_row = Some(row);
        insert_log(&tx, &log)?;
        apply_health(&tx, webhook, health)?;
        tx.commit()?;
        Ok(row)
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

    /// Records an attempt on a stored delivery: new state, attempt count, last status/error
    /// (manual resends).
    pub fn update_delivery(
        &self,
        row: i64,
        state: &'static str,
        attempts: u32,
        status: Option<u16>,
        error: Option<&str>,
    ) -> Result<(), OutboxError> {
        update_delivery(
            &self.conn,
            row,
            &DeliveryChange {
                state,
                attempts,
                status,
                error: error.map(str::to_owned),
                requeue: None,
            },
        )
    }

    /// Appends one attempt to the log.
    pub fn log_attempt(&self, entry: &LogEntry) -> Result<(), OutboxError> {
        insert_log(&self.conn, entry)
    }

    /// The delivery log, newest first.
    pub fn attempts(
        &self,
        webhook: Option<&str>,
        failed_only: bool,
        limit: usize,
    ) -> Result<Vec<LogEntry>, OutboxError> {
        let mut st = self.conn.prepare(
            "SELECT id, at, webhook, delivery_id, delivery_row, seq_first, seq_last, trigger, \
             outcome, status, error, latency_ms, response FROM attempt_log \
             WHERE (?1 IS NULL OR webhook = ?1) AND (?2 = 0 OR outcome != 0) \
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![webhook, failed_only, limit as i64], |r| {
            let seq_first = r.get::<_, Option<i64>>(5)?.map(|v| v as u64);
            Ok(LogEntry {
                id: r.get(0)?,
                at: ms_text(r.get(1)?),
                webhook: r.get(2)?,
                delivery_id: uuid_text(&r.get::<_, Vec<u8>>(3)?),
                delivery_row: r.get(4)?,
                seq_first,
                seq_last: r.get::<_, Option<i64>>(6)?.map(|v| v as u64).or(seq_first),
                trigger: decode(TRIGGERS, r.get(7)?),
                outcome: decode(OUTCOMES, r.get(8)?),
                status: r.get(9)?,
                error: r.get(10)?,
                latency_ms: r.get::<_, i64>(11)?.max(0) as u64,
                response: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Is this telemetry id stored?
    pub fn has_telemetry(&self, id: &str) -> Result<bool, OutboxError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM telemetry WHERE id = ?1 LIMIT 1",
                params![id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// A counter's value (0 when never set).
    pub fn counter(&self, name: &str) -> Result<i64, OutboxError> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Figures for `outbox status`; depths count every device after each cursor.
    pub fn status(&self, path: &Path) -> Result<Status, OutboxError> {
        self.status_routed(path, &[])
    }

    /// Figures for `outbox status`, with the depth of each webhook listed in `routes`
    /// (name, sender IDs) counting only telemetry from those devices.
    pub fn status_routed(
        &self,
        path: &Path,
        routes: &[(String, Vec<String>)],
    ) -> Result<Status, OutboxError> {
        let (rows, bytes, max_seq, oldest): (i64, i64, i64, Option<i64>) = self.conn.query_row(
            "SELECT count(*), coalesce(sum(length(body)), 0), coalesce(max(seq), 0), \
             min(committed_at) FROM telemetry",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let mut file_bytes = 0;
        for suffix in ["", "-wal"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            file_bytes += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        }
        let mut webhooks = Vec::new();
        for w in self.webhooks()? {
            if !w.configured {
                continue;
            }
            let devices = routes
                .iter()
                .find(|(n, _)| *n == w.name)
                .map(|(_, d)| serde_json::to_string(d))
                .transpose()?;
            let (depth, oldest_pending): (i64, Option<i64>) = self.conn.query_row(
                "SELECT count(*), min(committed_at) FROM telemetry WHERE seq > ?1 \
                 AND (?2 IS NULL OR device IN (SELECT value FROM json_each(?2)))",
                params![w.cursor as i64, devices],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (retrying, failed, oldest_retry): (i64, i64, Option<String>) =
                self.conn.query_row(
                    "SELECT coalesce(sum(state = 'pending'), 0), \
                     coalesce(sum(state = 'failed'), 0), \
                     min(CASE WHEN state = 'pending' THEN created_at END) \
                     FROM delivery WHERE webhook = ?1",
                    params![w.name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
            // The oldest waiting delivery's first reading, by its commit time while the
            // telemetry row is still there, else by the delivery's creation.
            let retry_committed: Option<i64> = self.conn.query_row(
                "SELECT min(t.committed_at) FROM delivery d JOIN telemetry t ON t.seq = d.seq_first \
                 WHERE d.webhook = ?1 AND d.state = 'pending'",
                params![w.name],
                |r| r.get(0),
            )?;
            let retry_ms = retry_committed.or_else(|| {
                oldest_retry
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .map(|t| t.as_millisecond())
            });
            let oldest_pending_ms = match (oldest_pending, retry_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            webhooks.push(WebhookDepth {
                name: w.name,
                depth: depth as u64,
                retrying: retrying as u64,
                failed: failed as u64,
                oldest_pending_ms,
            });
        }
        let mut st = self
            .conn
            .prepare("SELECT name, value FROM counters ORDER BY name")?;
        let counters = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(Status {
            rows: rows as u64,
            bytes: bytes as u64,
            file_bytes,
            max_seq: max_seq as u64,
            oldest_committed_ms: oldest,
            webhooks,
            counters,
        })
    }
}

const TRIGGERS: &[&str] = &["auto", "manual", "test"];
const OUTCOMES: &[&str] = &["delivered", "failed", "gone", "offline", "rejected"];

fn update_delivery(conn: &Connection, row: i64, c: &DeliveryChange) -> Result<(), OutboxError> {
    conn.prepare_cached(
        "UPDATE delivery SET state = ?2, attempts = ?3, last_status = ?4, last_error = ?5, \
         updated_at = ?6, requeue = coalesce(?7, requeue) WHERE id = ?1",
    )?
    .execute(params![
        row,
        c.state,
        c.attempts,
        c.status,
        c.error,
        now_text(),
        c.requeue
    ])?;
    Ok(())
}

fn insert_delivery(
    conn: &Connection,
    webhook: &str,
    new: NewDelivery<'_>,
    c: &DeliveryChange,
) -> Result<i64, OutboxError> {
    let now = now_text();
    let first = new.records.first().map(|r| r.seq as i64);
    let last = new.records.last().map(|r| r.seq as i64);
    let ids = new
        .records
        .iter()
        .map(|r| r.id.as_str())
        .collect::<Vec<_>>()
        .join(",");
    conn.prepare_cached(
        "INSERT INTO delivery (webhook, uuid, event, seq_first, seq_last, telemetry_ids, \
         state, attempts, created_at, updated_at, last_status, last_error, body, requeue) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        webhook,
        new.uuid,
        new.event,
        first,
        last,
        ids,
        c.state,
        c.attempts,
        now,
        c.status,
        c.error,
        new.body,
        c.requeue.unwrap_or(0)
    ])?;
    Ok(conn.last_insert_rowid())
}

fn apply_health(conn: &Connection, webhook: &str, h: &HealthChange) -> Result<(), OutboxError> {
    let now = now_text();
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
        h.phase.as_str(),
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
    let sql = match end {
        StreakEnd::Finalize => "UPDATE delivery SET requeue = 0 WHERE webhook = ?1 AND requeue = 1",
        StreakEnd::Requeue => {
            "UPDATE delivery SET state = 'pending', requeue = 2 \
             WHERE webhook = ?1 AND requeue = 1 AND state = 'failed'"
        }
    };
    let n = conn.prepare_cached(sql)?.execute(params![webhook])?;
    if end == StreakEnd::Requeue && n > 0 {
        log::info!(
            "webhook {webhook}: {n} deliveries rejected while it kept failing are queued again"
        );
    }
    Ok(())
}

fn encode(table: &[&str], v: &str) -> i64 {
    table.iter().position(|t| *t == v).unwrap_or(table.len()) as i64
}

fn decode(table: &[&str], v: i64) -> String {
    usize::try_from(v)
        .ok()
        .and_then(|i| table.get(i))
        .unwrap_or(&"unknown")
        .to_string()
}

fn text_ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .unwrap_or(0)
}

fn ms_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default()
}

fn uuid_bytes(id: &str) -> Vec<u8> {
    match uuid::Uuid::parse_str(id) {
        Ok(u) => u.as_bytes().to_vec(),
        Err(_) => id.as_bytes().to_vec(),
    }
}

fn uuid_text(b: &[u8]) -> String {
    match uuid::Uuid::from_slice(b) {
        Ok(u) => u.to_string(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

fn insert_log(conn: &Connection, l: &LogEntry) -> Result<(), OutboxError> {
    conn.prepare_cached(
        "INSERT INTO attempt_log (at, webhook, delivery_id, delivery_row, seq_first, seq_last, \
         trigger, outcome, status, error, latency_ms, response) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        text_ms(&l.at),
        l.webhook,
        uuid_bytes(&l.delivery_id),
        l.delivery_row,
        l.seq_first.map(|v| v as i64),
        l.seq_last
            .filter(|last| Some(*last) != l.seq_first)
            .map(|v| v as i64),
        encode(TRIGGERS, &l.trigger),
        encode(OUTCOMES, &l.outcome),
        l.status,
        l.error,
        l.latency_ms as i64,
        if l.response.is_empty() {
            None
        } else {
            Some(l.response.as_str())
        },
    ])?;
    Ok(())
}
