//! The figures of `outbox status` and of the webhooks' health: sizes, backlogs, counters.

use std::path::Path;

use rusqlite::params;

use super::{DeliveryState, Store};
use crate::outbox::OutboxError;
use crate::outbox::UnixMs;

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
    pub oldest_committed_ms: Option<UnixMs>,
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
    pub oldest_pending_ms: Option<UnixMs>,
}

impl Store {
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
        let (rows, bytes, max_seq, oldest): (i64, i64, i64, Option<UnixMs>) = self.conn.query_row(
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
            let (depth, oldest_pending): (i64, Option<UnixMs>) = self.conn.query_row(
                "SELECT count(*), min(committed_at) FROM telemetry WHERE seq > ?1 \
                 AND (?2 IS NULL OR device IN (SELECT value FROM json_each(?2)))",
                params![w.cursor as i64, devices],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (retrying, failed, oldest_retry): (i64, i64, Option<UnixMs>) =
                self.conn.query_row(
                    "SELECT coalesce(sum(state = ?2), 0), \
                     coalesce(sum(state = ?3), 0), \
                     min(CASE WHEN state = ?2 THEN created_at END) \
                     FROM delivery WHERE webhook = ?1",
                    params![w.name, DeliveryState::Pending, DeliveryState::Failed],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
            // The oldest waiting delivery's first reading, by its commit time while the
            // telemetry row is still there, else by the delivery's creation.
            let retry_committed: Option<UnixMs> = self.conn.query_row(
                "SELECT min(t.committed_at) FROM delivery d JOIN telemetry t ON t.seq = d.seq_first \
                 WHERE d.webhook = ?1 AND d.state = ?2",
                params![w.name, DeliveryState::Pending],
                |r| r.get(0),
            )?;
            let retry_ms = retry_committed.or(oldest_retry);
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
