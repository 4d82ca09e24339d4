//! Queries on the outbox database shared by the sender threads and the command line, one file
//! per noun: the webhooks' persisted state and cursors (`webhooks.rs`), deliveries that needed a
//! retry (`deliveries.rs`), the attempt log (`attempt_log.rs`), stored telemetry and its
//! salvage (`telemetry.rs`), and the figures of `outbox status` (`status.rs`).

mod attempt_log;
mod deliveries;
mod status;
mod telemetry;
mod webhooks;

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::OutboxError;

pub use attempt_log::{LogEntry, Trigger};
pub use deliveries::{Delivery, DeliveryChange, NewDelivery};
pub use status::{Status, WebhookDepth};
pub use telemetry::{Salvage, Unreadable};
pub use webhooks::{HealthChange, Phase, StreakEnd, WebhookState};

/// One connection to the outbox database (the file must be openable; see [`super::Outbox::open`]
/// for corruption recovery).
pub struct Store {
    pub(crate) conn: Connection,
}

pub(super) fn now_text() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

impl Store {
    /// Opens an existing or new database at `path` (no corruption recovery: that is the
    /// daemon's [`super::Outbox::open`]).
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        Ok(Self {
            conn: super::schema::open(path)?,
        })
    }

    /// A number that changes whenever another connection committed to the database (SQLite's
    /// `PRAGMA data_version`): a cheap way to notice changes made by the command line.
    pub fn data_version(&self) -> Result<i64, OutboxError> {
        Ok(self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?)
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
}
