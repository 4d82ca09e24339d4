//! The one time encoding of the database: integer milliseconds since the Unix epoch (UTC), in
//! every table (`telemetry.committed_at`, `attempt_log.at`, `delivery.created_at`, the webhook's
//! last success and failure, `devices.last_seen`, …). Integers compare and sort as times, cost
//! eight bytes, and need no parsing; [`UnixMs`] is their type on the Rust side, shown as RFC 3339
//! with milliseconds (`2026-12-05T10:00:00.123Z`).
//!
//! Schema version 5 converted the RFC 3339 text and the nanosecond strings older versions
//! stored (see `schema.rs`).

use std::fmt;
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// A point in time as the database stores it: milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMs(pub i64);

impl UnixMs {
    /// The wall clock now.
    pub fn now() -> Self {
        Self::from_timestamp(jiff::Timestamp::now())
    }

    /// A timestamp, truncated to the millisecond.
    pub fn from_timestamp(t: jiff::Timestamp) -> Self {
        Self(t.as_millisecond())
    }

    /// The wall clock `d` ago (saturating).
    pub fn ago(d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(Self::now().0.saturating_sub(ms))
    }

    /// As a timestamp; None outside the range jiff can represent (a damaged value).
    pub fn timestamp(self) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_millisecond(self.0).ok()
    }

    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }
}

impl From<jiff::Timestamp> for UnixMs {
    fn from(t: jiff::Timestamp) -> Self {
        Self::from_timestamp(t)
    }
}

/// RFC 3339 in UTC with exactly three decimals (`2026-12-05T10:00:00.123Z`), as the command line
/// shows times; honours width and alignment. A value outside jiff's range shows as the number.
impl fmt::Display for UnixMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.timestamp() {
            Some(t) => f.pad(&format!("{t:.3}")),
            None => f.pad(&format!("{} ms", self.0)),
        }
    }
}

impl ToSql for UnixMs {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.0.into())
    }
}

impl FromSql for UnixMs {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        v.as_i64().map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_rfc_3339_with_milliseconds_and_pads() {
        let t: jiff::Timestamp = "2026-12-05T10:00:00.123456789Z".parse().unwrap();
        let ms = UnixMs::from(t);
        assert_eq!(ms.as_millis(), 1_796_464_800_123);
        assert_eq!(ms.to_string(), "2026-12-05T10:00:00.123Z");
        assert_eq!(format!("{ms:<26}|"), "2026-12-05T10:00:00.123Z  |");
        assert_eq!(UnixMs(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(UnixMs(i64::MAX).to_string(), format!("{} ms", i64::MAX));
        assert!(UnixMs::ago(Duration::from_secs(60)) < UnixMs::now());
    }
}
