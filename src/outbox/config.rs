//! The `[storage]` configuration: where the outbox lives, how commits are grouped, its bounds and
//! how long delivered rows and the delivery log are kept.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;

/// What to do when the outbox reaches `max_rows`, `max_bytes` or the free-disk reserve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// Drop the oldest telemetry to make room (default): the newest readings matter most.
    #[default]
    DropOldest,
    /// Refuse new telemetry until there is room.
    DropNewest,
}

impl Overflow {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::DropOldest => "drop-oldest",
            Overflow::DropNewest => "drop-newest",
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The SQLite file.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// Group-commit window: telemetry waits at most this long in memory before it is committed.
    #[serde(default = "default_commit_window", with = "duration")]
    pub commit_window: Duration,
    /// Commit early when this many telemetry records are waiting.
    #[serde(default = "default_commit_batch")]
    pub commit_batch: usize,
    /// Successful deliveries are acknowledged on disk in groups at most this far apart (a lost
    /// acknowledgement only causes a duplicate with the same id).
    #[serde(default = "default_ack_window", with = "duration")]
    pub ack_window: Duration,
    /// At most this many telemetry rows.
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// At most this many bytes of telemetry.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Policy when a bound is reached.
    #[serde(default)]
    pub overflow: Overflow,
    /// Keep at least this many bytes free on the file system; the outbox stops growing below it.
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
    /// Delivered telemetry is kept this long, then pruned.
    #[serde(default = "default_delivered_retention", with = "duration")]
    pub delivered_retention: Duration,
    /// Delivery log entries are kept this long.
    #[serde(default = "default_log_retention", with = "duration")]
    pub log_retention: Duration,
    /// At most this many delivery log entries.
    #[serde(default = "default_log_max_rows")]
    pub log_max_rows: u64,
    /// At most this many failed deliveries kept for resending (oldest dropped first).
    #[serde(default = "default_max_failed")]
    pub max_failed: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: default_path(),
            commit_window: default_commit_window(),
            commit_batch: default_commit_batch(),
            ack_window: default_ack_window(),
            max_rows: default_max_rows(),
            max_bytes: default_max_bytes(),
            overflow: Overflow::default(),
            min_free_bytes: default_min_free_bytes(),
            delivered_retention: default_delivered_retention(),
            log_retention: default_log_retention(),
            log_max_rows: default_log_max_rows(),
            max_failed: default_max_failed(),
        }
    }
}

impl StorageConfig {
    /// Defaults with the database at `path` (tests, the demo).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }
}

fn default_path() -> PathBuf {
    PathBuf::from("/var/lib/enocean-agent/outbox.db")
}
fn default_commit_window() -> Duration {
    Duration::from_secs(1)
}
fn default_commit_batch() -> usize {
    // A group in memory is this many telemetry objects: small enough to keep a burst's memory
    // flat (a Pi Zero has 512 MB for everything), large enough that a commit per group costs
    // nothing per reading.
    256
}
fn default_ack_window() -> Duration {
    Duration::from_secs(5)
}
fn default_max_rows() -> u64 {
    1_000_000
}
fn default_max_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_min_free_bytes() -> u64 {
    32 * 1024 * 1024
}
fn default_delivered_retention() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_log_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_log_max_rows() -> u64 {
    100_000
}
fn default_max_failed() -> u64 {
    100_000
}
