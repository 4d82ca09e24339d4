//! Queries on the outbox database shared by the sender threads and the command line, one file
//! per noun: the webhooks' persisted state and cursors (`webhooks.rs`), deliveries that needed a
//! retry (`deliveries.rs`), the attempt log (`attempt_log.rs`), stored telemetry and its
//! salvage (`telemetry.rs`), and the figures of `outbox status` (`status.rs`).
//!
//! Every state, trigger and outcome is an enum that is stored as one fixed name or code per
//! variant (`stored_enum!`); a value in the file that no variant has is read as an
//! [`UnknownValue`] error, never guessed.

/// A name or code in the database that no variant of the enum it stands for has (a file written
/// by a newer version, or damaged). Reading it fails with this error, inside
/// [`rusqlite::Error::FromSqlConversionFailure`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value} in the outbox database")]
pub struct UnknownValue {
    /// What the column holds (`delivery state`, `attempt outcome`, …).
    pub what: &'static str,
    /// The value found, as text (quoted names, plain codes).
    pub value: String,
}

/// Gives an enum its stored form: `as_str` (its name, also its `Display`, which honours width
/// and alignment), and `ToSql`/`FromSql` as that name (`text`) or as an integer code (`code`).
/// Reading a name or code no variant has is an [`UnknownValue`] error.
macro_rules! stored_enum {
    ($ty:ident, $what:literal, text { $($var:ident => $name:literal),+ $(,)? }) => {
        $crate::outbox::store::stored_enum!(@common $ty { $($var => $name),+ });
        impl rusqlite::types::ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }
        impl rusqlite::types::FromSql for $ty {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                match s {
                    $($name => Ok($ty::$var),)+
                    _ => Err(rusqlite::types::FromSqlError::Other(Box::new(
                        $crate::outbox::store::UnknownValue { what: $what, value: format!("{s:?}") },
                    ))),
                }
            }
        }
    };
    ($ty:ident, $what:literal, code { $($var:ident => $code:literal / $name:literal),+ $(,)? }) => {
        $crate::outbox::store::stored_enum!(@common $ty { $($var => $name),+ });
        $crate::outbox::store::stored_enum!(@code $ty, $what { $($var => $code),+ });
    };
    // An enum defined elsewhere with its own `as_str`: the code and `Display` only.
    ($ty:ident, $what:literal, code_of_named { $($var:ident => $code:literal),+ $(,)? }) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
        $crate::outbox::store::stored_enum!(@code $ty, $what { $($var => $code),+ });
    };
    (@code $ty:ident, $what:literal { $($var:ident => $code:literal),+ }) => {
        impl $ty {
            /// The integer code stored in the database.
            pub fn code(self) -> i64 {
                match self {
                    $($ty::$var => $code,)+
                }
            }
        }
        impl rusqlite::types::ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.code().into())
            }
        }
        impl rusqlite::types::FromSql for $ty {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let c = v.as_i64()?;
                match c {
                    $($code => Ok($ty::$var),)+
                    _ => Err(rusqlite::types::FromSqlError::Other(Box::new(
                        $crate::outbox::store::UnknownValue { what: $what, value: c.to_string() },
                    ))),
                }
            }
        }
    };
    (@common $ty:ident { $($var:ident => $name:literal),+ }) => {
        impl $ty {
            /// The name shown and stored.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$var => $name,)+
                }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

pub(crate) use stored_enum;

mod attempt_log;
mod deliveries;
mod status;
mod telemetry;
mod webhooks;

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::OutboxError;

pub use attempt_log::{LogEntry, Outcome, Trigger};
pub use deliveries::{Delivery, DeliveryChange, DeliveryState, NewDelivery};
pub use status::{Status, WebhookDepth};
pub use telemetry::{Salvage, StoredId, Unreadable, id_text, id_value, stored_id};
pub use webhooks::{HealthChange, Phase, StreakEnd, WebhookState};

/// One connection to the outbox database (the file must be openable; see [`super::Outbox::open`]
/// for corruption recovery).
pub struct Store {
    pub(crate) conn: Connection,
}

impl Store {
    /// Opens an existing or new database at `path` (no corruption recovery: that is the
    /// daemon's [`super::Outbox::open`]).
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        Ok(Self {
            conn: super::schema::open(path)?,
        })
    }

    /// Opens the connection of an output's sender thread. Its commits are not flushed to the
    /// disk one by one (`synchronous=NORMAL`): what a sender records — acknowledgements, the
    /// attempt log, retry and deactivation state — reaches the disk with the next reading's
    /// commit (fsynced, [`Store::open`]) or the next checkpoint. A power cut can undo the last
    /// of these records, never a reading: the readings they were about are sent again with the
    /// same ids (at least once, as after any lost acknowledgement). This saves an fsync and a
    /// rewritten WAL page per acknowledgement on the SD card.
    pub fn open_sender(path: &Path) -> Result<Self, OutboxError> {
        let store = Self::open(path)?;
        store.conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(store)
    }

    /// The connection's `PRAGMA synchronous` (0 off, 1 normal, 2 full, 3 extra).
    pub fn synchronous(&self) -> Result<i64, OutboxError> {
        Ok(self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))?)
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
