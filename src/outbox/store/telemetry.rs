//! Stored telemetry as the senders read it: rows after a cursor, rows found unreadable, and the
//! salvage of a file moved aside as corrupt.

use std::path::Path;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::outbox::OutboxError;
use crate::outbox::UnixMs;
use crate::outbox::record::{Recent, StoredRecord};
use crate::telemetry::Telemetry;

/// A stored reading that cannot be read: (seq, unix ms when found, the error).
pub type Unreadable = (u64, UnixMs, String);

/// How a reading's id is kept in `telemetry.id`: its 16 bytes when it is a UUID in canonical
/// text (what this agent makes; 20 bytes less per row than the text), the text otherwise.
pub fn id_value(id: &str) -> Value {
    match stored_id(id) {
        StoredId::Uuid(bytes) => Value::Blob(bytes.to_vec()),
        StoredId::Text(t) => Value::Text(t.to_owned()),
    }
}

/// [`id_value`] borrowed, to bind without a copy: what a commit binds per reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredId<'a> {
    /// A canonical UUID's 16 bytes.
    Uuid([u8; 16]),
    /// Any other id, as it is.
    Text(&'a str),
}

/// How `id` is kept in `telemetry.id` (see [`id_value`]).
pub fn stored_id(id: &str) -> StoredId<'_> {
    match crate::outbox::body::canonical_uuid(id.as_bytes()) {
        Some(bytes) => StoredId::Uuid(bytes),
        None => StoredId::Text(id),
    }
}

impl rusqlite::ToSql for StoredId<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match self {
            StoredId::Uuid(b) => ValueRef::Blob(b),
            StoredId::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
    }
}

/// A reading's id from `telemetry.id` (16 bytes or text, see [`id_value`]).
pub fn id_text(v: ValueRef<'_>) -> Option<String> {
    with_id_text(v, str::to_owned)
}

/// `f` of a reading's id from `telemetry.id` as [`id_text`] gives it, without allocating it
/// (a 16-byte id is written out on the stack).
fn with_id_text<R>(v: ValueRef<'_>, f: impl FnOnce(&str) -> R) -> Option<R> {
    match v {
        ValueRef::Blob(b) => {
            let u = uuid::Uuid::from_slice(b).ok()?;
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            Some(f(u.hyphenated().encode_lower(&mut text)))
        }
        ValueRef::Text(t) => std::str::from_utf8(t).ok().map(f),
        _ => None,
    }
}

/// A telemetry row as [`Store::rows_after`] hands it to its reader: the stored body and the
/// reading's id, undecoded (a reader may not need the text).
#[derive(Clone, Copy)]
struct Row<'r> {
    stored: ValueRef<'r>,
    id: ValueRef<'r>,
}

impl Row<'_> {
    /// The reading's JSON text, decoded from the stored body and the id.
    fn text(&self) -> Result<String, String> {
        with_id_text(self.id, |id| {
            crate::outbox::body::decode_record(self.stored, id).map_err(|e| e.to_string())
        })
        .unwrap_or_else(|| Err("stored id is not text or a UUID".to_owned()))
    }
}

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

impl Store {
    /// Telemetry after `cursor`, oldest first, at most `limit` rows: (seq, device, telemetry with
    /// its seq set, or None when the stored JSON cannot be read).
    pub fn telemetry_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, Option<Telemetry>)>, OutboxError> {
        self.rows_after(cursor, limit, |seq, row| {
            let json = row.text()?;
            let mut t = serde_json::from_str::<Telemetry>(&json).map_err(|e| e.to_string())?;
            t.seq = seq;
            Ok(t)
        })
    }

    /// Telemetry after `cursor` as a webhook sender reads it (see [`StoredRecord`]): oldest
    /// first, at most `limit` rows, None for a row that cannot be read. `parse_all` parses every
    /// record whole (a webhook with a template); `recent`, the records the storage thread
    /// committed last, spares reading the head out of a row's text that it remembers.
    pub fn records_after(
        &self,
        cursor: u64,
        limit: usize,
        parse_all: bool,
        recent: Option<&Recent>,
    ) -> Result<Vec<(u64, Option<StoredRecord>)>, OutboxError> {
        Ok(self
            .rows_after(cursor, limit, |seq, row| {
                StoredRecord::read_recent(
                    seq,
                    row.stored.as_bytes().unwrap_or_default(),
                    |id| with_id_text(row.id, |row_id| row_id == id).unwrap_or(false),
                    || row.text(),
                    parse_all,
                    recent,
                )
            })?
            .into_iter()
            .map(|(seq, _, r)| (seq, r))
            .collect())
    }

    /// At most `limit` rows after `cursor` with `read` of each (its seq and its [`Row`]): a row
    /// it cannot read is listed as unreadable (once, whichever sender finds it) and comes back as
    /// None.
    fn rows_after<T>(
        &self,
        cursor: u64,
        limit: usize,
        read: impl Fn(u64, Row<'_>) -> Result<T, String>,
    ) -> Result<Vec<(u64, String, Option<T>)>, OutboxError> {
        // No `LIMIT ?`: SQLite prepares a statement again whenever its LIMIT parameter is bound
        // to a new value, and rusqlite clears a cached statement's bindings, so every call
        // would compile it anew (about 37 k instructions). The scan in seq order stops itself.
        let mut st = self.conn.prepare_cached(
            "SELECT seq, device, body, id FROM telemetry WHERE seq > ?1 ORDER BY seq",
        )?;
        let mut rows = st.query(params![cursor as i64])?;
        let mut out = Vec::new();
        while out.len() < limit
            && let Some(r) = rows.next()?
        {
            let seq = r.get::<_, i64>(0)?.max(0) as u64;
            let device: String = r.get(1)?;
            let row = Row {
                stored: r.get_ref(2)?,
                id: r.get_ref(3)?,
            };
            let t = match read(seq, row) {
                Ok(t) => Some(t),
                Err(e) => {
                    // Counted and listed (`outbox status`), once, whichever sender finds it.
                    let new = self.conn.execute(
                        "INSERT OR IGNORE INTO unreadable (seq, found_at, error) VALUES (?1, ?2, ?3)",
                        params![seq as i64, UnixMs::now(), e.to_string()],
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
        let now_ms = UnixMs::now();
        let mut cur = from;
        let mut step = 1i64;
        while cur < max_seq {
            let chunk: Result<Vec<(i64, Value, String, Value)>, rusqlite::Error> = old
                .prepare("SELECT seq, id, device, body FROM telemetry WHERE seq > ?1 ORDER BY seq LIMIT 500")
                .and_then(|mut st| {
                    st.query_map(params![cur], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect()
                });
            match chunk {
                Ok(rows) if rows.is_empty() => break,
                Ok(rows) => {
                    step = 1;
                    let tx = self
                        .conn
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    // New seqs at the reservation, which then moves above them (schema
                    // migration 8): the daemon, if it runs, continues above them.
                    let mut next: i64 =
                        tx.query_row("SELECT seq FROM seq_floor", [], |r| r.get(0))?;
                    for (seq, id, device, body) in &rows {
                        cur = *seq;
                        // Copied as stored (TEXT or compressed BLOB): the same bytes on re-send.
                        let Some(id) = id_text(id.into()) else {
                            report.unreadable += 1;
                            continue;
                        };
                        let readable = crate::outbox::body::decode_record(body.into(), &id)
                            .is_ok_and(|json| serde_json::from_str::<Telemetry>(&json).is_ok());
                        if !readable {
                            report.unreadable += 1;
                            continue;
                        }
                        let stored_id = id_value(&id);
                        let present: bool = tx
                            .query_row(
                                "SELECT 1 FROM telemetry WHERE id IN (?1, ?2)",
                                params![id, stored_id],
                                |_| Ok(()),
                            )
                            .optional()?
                            .is_some();
                        if present {
                            report.already_here += 1;
                            continue;
                        }
                        tx.execute(
                            "INSERT INTO telemetry (seq, id, device, committed_at, body) \
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![next, stored_id, device, now_ms, body],
                        )?;
                        next += 1;
                        report.imported += 1;
                    }
                    tx.execute("UPDATE seq_floor SET seq = max(seq, ?1)", params![next])?;
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

    /// Is this telemetry id stored?
    pub fn has_telemetry(&self, id: &str) -> Result<bool, OutboxError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM telemetry WHERE id IN (?1, ?2) LIMIT 1",
                params![id, id_value(id)],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_back_as_it_was_given() {
        let id = "01a244f2-dcf2-7275-a32f-d95055b32d69";
        for stored in [
            id_value(id),
            id_value("not-a-uuid"),
            id_value(&id.to_uppercase()),
        ] {
            let text = match &stored {
                Value::Text(t) => t.clone(),
                Value::Blob(_) => id.to_owned(),
                _ => unreachable!(),
            };
            assert_eq!(id_text((&stored).into()).as_deref(), Some(text.as_str()));
            assert_eq!(with_id_text((&stored).into(), str::len), Some(text.len()));
        }
        assert!(matches!(id_value(id), Value::Blob(_)));
        // What a commit binds is what `id_value` gives, for canonical ids and others.
        for any in [id, "not-a-uuid", &id.to_uppercase(), &id[1..], ""] {
            let stored = stored_id(any);
            let bound = rusqlite::ToSql::to_sql(&stored).unwrap();
            let rusqlite::types::ToSqlOutput::Borrowed(v) = bound else {
                panic!("{any}: not borrowed")
            };
            let value = id_value(any);
            assert_eq!(v, ValueRef::from(&value), "{any}");
        }
        assert_eq!(
            stored_id(id),
            StoredId::Uuid(*uuid::Uuid::parse_str(id).unwrap().as_bytes())
        );
        assert_eq!(id_text(ValueRef::Blob(&[1, 2, 3])), None);
        assert_eq!(id_text(ValueRef::Integer(7)), None);
    }
}
