//! Deliveries stored because their first attempt did not get through: their exact bodies, their
//! state, the retry queue and the failed ones kept for `outbox resend`.

use rusqlite::{Connection, OptionalExtension, params};

use super::attempt_log::insert_log;
use super::webhooks::apply_health;
use super::{HealthChange, LogEntry, Outcome, Store};
use crate::outbox::OutboxError;
use crate::outbox::UnixMs;
use crate::outbox::record::StoredRecord;

/// Where a stored delivery stands (stored by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for a retry (or a probe) at the head of its webhook's queue.
    Pending,
    /// Got through.
    Delivered,
    /// Given up (a rejected body, 410 Gone, a failed manual resend): kept for `outbox resend`.
    Failed,
}

stored_enum!(DeliveryState, "delivery state", text {
    Pending => "pending",
    Delivered => "delivered",
    Failed => "failed",
});

/// What an attempt changes in a stored delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryChange {
    /// The delivery's state after the attempt.
    pub state: DeliveryState,
    /// Attempts counted so far (offline tries excluded).
    pub attempts: u32,
    /// Last HTTP status.
    pub status: Option<u16>,
    /// Last error class.
    pub error: Option<String>,
    /// New `requeue` mark (see the schema, version 2), None to keep it.
    pub requeue: Option<u8>,
}

/// A delivery to store because its first attempt did not get through: everything its row is
/// made of.
#[derive(Debug, Clone, Copy)]
pub struct NewDelivery<'a> {
    /// Webhook name.
    pub webhook: &'a str,
    /// Delivery id.
    pub uuid: &'a str,
    /// The envelope's `event`: `telemetry`, or a health event's name (`gateway.status`, …).
    pub event: &'a str,
    /// Its records (seq set).
    pub records: &'a [StoredRecord],
    /// The exact body.
    pub body: &'a [u8],
    /// What the first attempt left: state, attempts, status, error, `requeue` mark.
    pub first_attempt: &'a DeliveryChange,
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
    /// The envelope's `event` as stored: `telemetry`, `test`, or a health event's name. Text,
    /// not a type: a row written by another version may hold a name this one does not know, and
    /// it is shown as it is.
    pub event: String,
    /// First telemetry seq.
    pub seq_first: Option<u64>,
    /// Last telemetry seq.
    pub seq_last: Option<u64>,
    /// Telemetry ids, comma separated.
    pub telemetry_ids: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts so far (offline tries excluded).
    pub attempts: u32,
    /// Creation time.
    pub created_at: UnixMs,
    /// Last change.
    pub updated_at: UnixMs,
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
    /// The oldest delivery of `webhook` waiting for a retry.
    pub fn pending_head(&self, webhook: &str) -> Result<Option<Delivery>, OutboxError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM delivery WHERE webhook = ?1 AND state = ?2 \
                 ORDER BY id LIMIT 1"
            ))?
            .query_row(params![webhook, DeliveryState::Pending], delivery_from_row)
            .optional()?)
    }

    /// The oldest delivery of `webhook` rejected during the current failure streak (a probe
    /// for a deactivated webhook that has nothing else to send).
    pub fn streak_head(&self, webhook: &str) -> Result<Option<Delivery>, OutboxError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM delivery WHERE webhook = ?1 AND state = ?2 \
                 AND requeue = 1 ORDER BY id LIMIT 1"
            ))?
            .query_row(params![webhook, DeliveryState::Failed], delivery_from_row)
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

    /// Failed deliveries, oldest first, optionally for one webhook and created since a time.
    pub fn failed(
        &self,
        webhook: Option<&str>,
        since: Option<UnixMs>,
    ) -> Result<Vec<Delivery>, OutboxError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {DELIVERY_COLS} FROM delivery WHERE state = ?3 \
             AND (?1 IS NULL OR webhook = ?1) AND (?2 IS NULL OR created_at >= ?2) ORDER BY id"
        ))?;
        let rows = st.query_map(
            params![webhook, since, DeliveryState::Failed],
            delivery_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The row ids of failed deliveries (no bodies loaded), for a bulk resend.
    pub fn failed_ids(
        &self,
        webhook: Option<&str>,
        since: Option<UnixMs>,
    ) -> Result<Vec<i64>, OutboxError> {
        let mut st = self.conn.prepare(
            "SELECT id FROM delivery WHERE state = ?3 \
             AND (?1 IS NULL OR webhook = ?1) AND (?2 IS NULL OR created_at >= ?2) ORDER BY id",
        )?;
        let rows = st.query_map(params![webhook, since, DeliveryState::Failed], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Calls `f` for each failed delivery, oldest first, one row in memory at a time and without
    /// its body (`body` is empty): for listings of any length. Stops at the first error `f`
    /// returns.
    pub fn for_each_failed<E: From<OutboxError>>(
        &self,
        webhook: Option<&str>,
        since: Option<UnixMs>,
        mut f: impl FnMut(&Delivery) -> Result<(), E>,
    ) -> Result<u64, E> {
        let cols = DELIVERY_COLS.replace(", body,", ", X'' AS body,");
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {cols} FROM delivery WHERE state = ?3 \
                 AND (?1 IS NULL OR webhook = ?1) AND (?2 IS NULL OR created_at >= ?2) ORDER BY id"
            ))
            .map_err(OutboxError::from)?;
        let mut rows = st
            .query(params![webhook, since, DeliveryState::Failed])
            .map_err(OutboxError::from)?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(OutboxError::from)? {
            let d = delivery_from_row(r).map_err(OutboxError::from)?;
            f(&d)?;
            n += 1;
        }
        Ok(n)
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
    /// webhook's health (all of `new.webhook`). Returns the delivery's row id.
    pub fn record_first_attempt(
        &mut self,
        cursor: u64,
        acks: &[LogEntry],
        new: NewDelivery<'_>,
        log: &LogEntry,
        health: &HealthChange,
    ) -> Result<i64, OutboxError> {
        // The cursor moves past these readings, so the outbox may skip their flush
        // (`Outbox::sync_due`): the delivery keeping their body must be on the disk when this
        // returns, whatever the connection's own setting (a sender's is NORMAL).
        let sync: i64 = self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let row = self.first_attempt_tx(cursor, acks, new, log, health);
        self.conn.pragma_update(None, "synchronous", sync)?;
        row
    }

    fn first_attempt_tx(
        &mut self,
        cursor: u64,
        acks: &[LogEntry],
        new: NewDelivery<'_>,
        log: &LogEntry,
        health: &HealthChange,
    ) -> Result<i64, OutboxError> {
        let webhook = new.webhook;
        let tx = self.conn.transaction()?;
        for l in acks {
            insert_log(&tx, l)?;
        }
        let row = insert_delivery(&tx, new)?;
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
                    .find(|l| l.outcome == Outcome::Delivered)
                    .map(|l| l.at),
            ],
        )?;
        let mut log = log.clone();
        log.delivery_row = Some(row);
        insert_log(&tx, &log)?;
        apply_health(&tx, webhook, health)?;
        tx.commit()?;
        Ok(row)
    }

    /// Records an attempt on a stored delivery: new state, attempt count, last status/error
    /// (manual resends).
    pub fn update_delivery(
        &self,
        row: i64,
        state: DeliveryState,
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
}

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
        UnixMs::now(),
        c.requeue
    ])?;
    Ok(())
}

fn insert_delivery(conn: &Connection, new: NewDelivery<'_>) -> Result<i64, OutboxError> {
    let c = new.first_attempt;
    let now = UnixMs::now();
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
        new.webhook,
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
