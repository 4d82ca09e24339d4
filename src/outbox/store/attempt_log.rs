//! The attempt log: one compact row per attempt (automatic, manual or test), kept for
//! `deliveries` and pruned by age.

use rusqlite::{Connection, params};

use super::Store;
use crate::outbox::OutboxError;
use crate::outbox::UnixMs;

/// Why an attempt was made (stored as a code: 0 auto, 1 manual, 2 test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The sender's own schedule.
    Auto,
    /// `outbox resend`.
    Manual,
    /// `webhook test`.
    Test,
}

stored_enum!(Trigger, "attempt trigger", code {
    Auto => 0 / "auto",
    Manual => 1 / "manual",
    Test => 2 / "test",
});

/// What one attempt came to (defined in [`crate::delivery`], shared by every output).
pub use crate::delivery::Outcome;

// Stored as a code: 0 delivered, 1 failed, 2 gone, 3 offline, 4 rejected; `deliveries --failed`
// lists every code but 0.
stored_enum!(Outcome, "attempt outcome", code_of_named {
    Delivered => 0,
    Failed => 1,
    Gone => 2,
    Offline => 3,
    Rejected => 4,
});

/// One delivery log entry (one attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Log row id (0 before insertion).
    pub id: i64,
    /// When.
    pub at: UnixMs,
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
    /// Why it was made.
    pub trigger: Trigger,
    /// What it came to.
    pub outcome: Outcome,
    /// HTTP status.
    pub status: Option<u16>,
    /// Error class.
    pub error: Option<String>,
    /// Latency in milliseconds.
    pub latency_ms: u64,
    /// First 2 KiB of the response body.
    pub response: String,
}

impl Store {
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
             WHERE (?1 IS NULL OR webhook = ?1) AND (?2 = 0 OR outcome != ?4) \
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = st.query_map(
            params![webhook, failed_only, limit as i64, Outcome::Delivered],
            |r| {
                let seq_first = r.get::<_, Option<i64>>(5)?.map(|v| v as u64);
                Ok(LogEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    webhook: r.get(2)?,
                    delivery_id: uuid_text(&r.get::<_, Vec<u8>>(3)?),
                    delivery_row: r.get(4)?,
                    seq_first,
                    seq_last: r.get::<_, Option<i64>>(6)?.map(|v| v as u64).or(seq_first),
                    trigger: r.get(7)?,
                    outcome: r.get(8)?,
                    status: r.get(9)?,
                    error: r.get(10)?,
                    latency_ms: r.get::<_, i64>(11)?.max(0) as u64,
                    response: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
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

pub(super) fn insert_log(conn: &Connection, l: &LogEntry) -> Result<(), OutboxError> {
    conn.prepare_cached(
        "INSERT INTO attempt_log (at, webhook, delivery_id, delivery_row, seq_first, seq_last, \
         trigger, outcome, status, error, latency_ms, response) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        l.at,
        l.webhook,
        uuid_bytes(&l.delivery_id),
        l.delivery_row,
        l.seq_first.map(|v| v as i64),
        l.seq_last
            .filter(|last| Some(*last) != l.seq_first)
            .map(|v| v as i64),
        l.trigger,
        l.outcome,
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
