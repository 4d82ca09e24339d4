//! The attempt log: one compact row per attempt (automatic, manual or test), kept for
//! `deliveries` and pruned by age.

use rusqlite::{Connection, params};

use super::Store;
use crate::outbox::OutboxError;

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
}

const TRIGGERS: &[&str] = &["auto", "manual", "test"];
const OUTCOMES: &[&str] = &["delivered", "failed", "gone", "offline", "rejected"];

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

pub(super) fn insert_log(conn: &Connection, l: &LogEntry) -> Result<(), OutboxError> {
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
