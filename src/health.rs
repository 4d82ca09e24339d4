//! Health events for fleets: `gateway.status` (at start, at a clean stop and every
//! `[health] status_interval`), `device.silent` (a configured device not heard for its
//! `silent_after`) and `device.back` (heard again). They are records like readings: committed to
//! the outbox with their own seq, routed, authenticated and signed like telemetry; a webhook
//! receives them only when its `events` list names them (see [`EventFilter`]).
//!
//! Silence is judged on the monotonic clock ([`SilenceWatch`] is sans-IO: it takes
//! `Instant`s), so a wall clock that is wrong at boot cannot make every device "silent". Across a
//! restart: a device reported silent stays silent (persisted; not reported again, `device.back`
//! when heard); a device last heard before the restart is judged from its persisted last-heard
//! wall time when the clock is synchronised at start, otherwise from the start.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `[health]`: the periodic `gateway.status`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// A `gateway.status` record this often (besides start and clean stop); `"0s"` = only at
    /// start and stop. Default 1 h.
    #[serde(default = "default_status_interval", with = "crate::duration")]
    pub status_interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            status_interval: default_status_interval(),
        }
    }
}

fn default_status_interval() -> Duration {
    Duration::from_secs(3600)
}

/// Default `[learn] silent_after`: configured devices not heard for this long are reported
/// `device.silent` (sensors that report periodically send every few minutes; rockers, RORG F6,
/// send only when pressed and are not watched unless their `[[device]]` sets `silent_after`).
pub const DEFAULT_SILENT_AFTER: Duration = Duration::from_secs(2 * 3600);

/// The record kinds a webhook can receive, by their `event` names.
pub const EVENT_NAMES: [&str; 5] = [
    "telemetry",
    "teach_in",
    "gateway.status",
    "device.silent",
    "device.back",
];

/// Which record kinds a webhook receives: its `events` list. Default (no list): `telemetry`
/// and `teach_in`, what a receiver written before health events existed expects; health events
/// are asked for by name, or all kinds with `"all"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    names: Vec<String>,
}

impl Default for EventFilter {
    fn default() -> Self {
        Self {
            names: vec!["telemetry".into(), "teach_in".into()],
        }
    }
}

impl EventFilter {
    /// The filter of an `events` list; an unknown name is an error that lists the known ones.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let mut names = Vec::new();
        for n in list {
            let n = n.trim();
            if n == "all" {
                names.extend(EVENT_NAMES.iter().map(|s| (*s).to_owned()));
            } else if EVENT_NAMES.contains(&n) {
                names.push(n.to_owned());
            } else {
                return Err(format!(
                    "{n:?} is not an event: use any of {}, or \"all\"",
                    EVENT_NAMES.join(", ")
                ));
            }
        }
        names.sort();
        names.dedup();
        Ok(Self { names })
    }

    /// The kinds accepted, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// True when records of this kind (its `event` name) go to the webhook.
    pub fn accepts(&self, event: &str) -> bool {
        self.names.iter().any(|n| n == event)
    }
}

/// Why a `gateway.status` record was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusReason {
    /// The agent started.
    Start,
    /// Every `status_interval`.
    Periodic,
    /// A clean stop (SIGTERM).
    Stop,
}

/// The stick as the handshake read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StickFacts {
    /// Base ID, 8 hex digits.
    pub base_id: Option<String>,
    /// Firmware (application) version, `2.11.1.0`.
    pub firmware: Option<String>,
    /// API version.
    pub api: Option<String>,
    /// The chip's description (`GATEWAYCTRL`).
    pub description: Option<String>,
    /// True while the port is open.
    pub connected: bool,
}

/// Counters since the agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Telegrams received (repeated copies removed).
    pub telegrams: u64,
    /// Telegrams decoded with a known EEP.
    pub decoded: u64,
    /// Telegrams forwarded raw (unknown sender or EEP, undecodable payload).
    pub raw: u64,
    /// Teach-ins seen.
    pub teach_ins: u64,
    /// Repeated copies dropped by deduplication.
    pub duplicates: u64,
    /// Frames rejected for a header or data CRC mismatch.
    pub crc_errors: u64,
    /// Records dropped: by the outbox's overflow policy or because the hand-off to storage was
    /// full.
    pub dropped: u64,
    /// Times the stick was (re)connected.
    pub connects: u64,
    /// Secure telegrams verified (CMAC, rolling code) and decrypted (absent in records of older
    /// versions).
    #[serde(default)]
    pub secure_verified: u64,
    /// Secure telegrams forwarded raw because they failed (unknown key, bad CMAC, replay, …;
    /// each record names the reason in `decode_error`).
    #[serde(default)]
    pub secure_rejected: u64,
}

/// One webhook in a `gateway.status` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookFigures {
    /// Its name.
    pub name: String,
    /// `active`, `retrying`, `offline`, `probing`, `deactivated`, …
    pub state: String,
    /// Readings waiting for it.
    pub backlog: u64,
    /// Age of the oldest reading not delivered to it, seconds.
    pub oldest_undelivered_age_s: Option<u64>,
}

/// The body of a `gateway.status` record (its `status` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// Why it was made.
    pub reason: StatusReason,
    /// The agent's version.
    pub version: String,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// The stick.
    pub stick: StickFacts,
    /// Per webhook.
    pub webhooks: Vec<WebhookFigures>,
    /// Free bytes on the outbox's file system (for unprivileged users), when known.
    pub disk_free_bytes: Option<u64>,
    /// Counters since start.
    pub counters: Counters,
}

/// The body of a `device.silent` or `device.back` record (its `silence` field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// The device's threshold, seconds.
    pub silent_after_s: u64,
    /// How long it had not been heard, seconds (for `device.back`: how long the silence lasted,
    /// as far as this run saw it).
    pub silent_for_s: u64,
    /// When it was last heard before (wall time), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heard: Option<String>,
}

/// What [`SilenceWatch`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Not heard for its threshold: `silent_for` so far.
    Silent {
        /// The device.
        id: u32,
        /// How long it has not been heard.
        silent_for: Duration,
    },
    /// Heard again after it was reported silent.
    Back {
        /// The device.
        id: u32,
        /// How long the silence lasted (as far as this run saw; since start for a device silent
        /// before the restart).
        silent_for: Duration,
    },
}

#[derive(Debug, Clone)]
struct Watched {
    after: Duration,
    /// The monotonic time it was last heard, or the start.
    last: Instant,
    /// Silence that had already passed before `last` (judged from the persisted wall time at
    /// start); zero once heard.
    credit: Duration,
    silent: bool,
}

/// Judges silence on the monotonic clock (sans-IO: every call takes the time).
#[derive(Debug, Default)]
pub struct SilenceWatch {
    devices: HashMap<u32, Watched>,
    /// No device can become silent before this (the earliest threshold of those not silent, as
    /// of the last look; hearing a device only moves its own later): [`SilenceWatch::due`]
    /// looks at the devices only from then on, not on every telegram. None: look now.
    next: Option<Instant>,
}

/// A device to watch, as the agent knows it at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchStart {
    /// The device.
    pub id: u32,
    /// Its threshold.
    pub silent_after: Duration,
    /// Silence already passed at start (now minus the persisted last-heard wall time, with a
    /// synchronised clock); zero when unknown.
    pub silent_before_start: Duration,
    /// Reported silent before the restart and not heard since.
    pub was_silent: bool,
}

impl SilenceWatch {
    /// Watches `devices` from `now`.
    pub fn new(devices: &[WatchStart], now: Instant) -> Self {
        let devices = devices
            .iter()
            .map(|d| {
                (
                    d.id,
                    Watched {
                        after: d.silent_after,
                        last: now,
                        credit: d.silent_before_start,
                        silent: d.was_silent,
                    },
                )
            })
            .collect();
        Self {
            devices,
            next: None,
        }
    }

    /// Number of watched devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when no device is watched.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The device `id` was heard at `now`: [`Transition::Back`] when it was silent.
    pub fn heard(&mut self, id: u32, now: Instant) -> Option<Transition> {
        let d = self.devices.get_mut(&id)?;
        let silent_for = now.saturating_duration_since(d.last) + d.credit;
        d.last = now;
        d.credit = Duration::ZERO;
        if std::mem::take(&mut d.silent) {
            // Watched again: its threshold may come before every other one.
            let at = now.checked_add(d.after);
            self.next = self.next.min(at);
            return Some(Transition::Back { id, silent_for });
        }
        None
    }

    /// Devices that became silent by `now` (each reported once until heard again), by ID.
    pub fn due(&mut self, now: Instant) -> Vec<Transition> {
        if self.next.is_some_and(|t| now < t) {
            return Vec::new();
        }
        let mut next: Option<Instant> = None;
        let mut out: Vec<Transition> = self
            .devices
            .iter_mut()
            .filter_map(|(&id, d)| {
                let silent_for = now.saturating_duration_since(d.last) + d.credit;
                if d.silent {
                    return None;
                }
                if silent_for < d.after {
                    // Silent at `last + after − credit` unless heard before.
                    let at = d.last.checked_add(d.after.saturating_sub(d.credit));
                    next = match (next, at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    return None;
                }
                d.silent = true;
                Some(Transition::Silent { id, silent_for })
            })
            .collect();
        // Nothing to wait for (every device silent, or thresholds beyond the clock's range):
        // look again only once a device is heard.
        self.next = Some(next.unwrap_or_else(|| now + Duration::from_secs(86_400 * 365)));
        out.sort_by_key(|t| match t {
            Transition::Silent { id, .. } | Transition::Back { id, .. } => *id,
        });
        out
    }

    /// The threshold of device `id`, when watched.
    pub fn silent_after(&self, id: u32) -> Option<Duration> {
        self.devices.get(&id).map(|d| d.after)
    }
}

/// How long a device had been silent at start: `now` (the wall clock, only when synchronised)
/// minus its stored last-heard time. Zero without a synchronised clock (a Pi without RTC boots
/// with a clock that may be days behind or ahead: every device would look silent, or none), and
/// zero when the stored time lies in the future.
pub fn silent_before_start(
    now: Option<jiff::Timestamp>,
    last_seen: Option<jiff::Timestamp>,
) -> Duration {
    now.zip(last_seen)
        .and_then(|(now, seen)| Duration::try_from(now.duration_since(seen)).ok())
        .unwrap_or_default()
}

/// Free bytes for unprivileged users on the file system holding `path` (its directory when the
/// file does not exist yet).
pub fn disk_free(path: &std::path::Path) -> Option<u64> {
    let dir = if path.exists() {
        path.to_path_buf()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf()
    };
    let s = rustix::fs::statvfs(&dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Records that device `id` was reported silent (or clears it when heard again).
pub fn persist_silence(
    conn: &rusqlite::Connection,
    id: u32,
    silent: bool,
) -> Result<(), rusqlite::Error> {
    let key = format!("{id:08X}");
    if silent {
        conn.execute(
            "INSERT OR REPLACE INTO device_silence (id, since_ms) VALUES (?1, ?2)",
            rusqlite::params![key, jiff::Timestamp::now().as_millisecond()],
        )?;
    } else {
        conn.execute("DELETE FROM device_silence WHERE id = ?1", [key])?;
    }
    Ok(())
}

/// The devices reported silent and not heard since (persisted by [`persist_silence`]).
pub fn silent_devices(
    conn: &rusqlite::Connection,
) -> Result<std::collections::HashSet<u32>, rusqlite::Error> {
    let mut stmt = conn.prepare("SELECT id FROM device_silence")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = std::collections::HashSet::new();
    for id in rows {
        if let Ok(n) = u32::from_str_radix(&id?, 16) {
            out.insert(n);
        }
    }
    Ok(out)
}

/// [`silent_devices`] of the outbox file at `db` (for the `devices` command).
pub fn silent_devices_at(
    db: &std::path::Path,
) -> Result<std::collections::HashSet<u32>, crate::outbox::OutboxError> {
    let store = crate::outbox::Store::open(db)?;
    Ok(silent_devices(&store.conn)?)
}

/// A version as the stick reports it: `main.beta.alpha.build`.
pub fn version_text(v: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", v[0], v[1], v[2], v[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(id: u32, after: u64, before: u64, was_silent: bool) -> WatchStart {
        WatchStart {
            id,
            silent_after: Duration::from_secs(after),
            silent_before_start: Duration::from_secs(before),
            was_silent,
        }
    }

    #[test]
    fn silent_once_then_back_when_heard() {
        let t0 = Instant::now();
        let mut w = SilenceWatch::new(&[start(1, 10, 0, false), start(2, 30, 0, false)], t0);
        assert!(w.due(t0 + Duration::from_secs(9)).is_empty());
        assert!(w.heard(2, t0 + Duration::from_secs(9)).is_none());
        let d = w.due(t0 + Duration::from_secs(10));
        assert_eq!(
            d,
            vec![Transition::Silent {
                id: 1,
                silent_for: Duration::from_secs(10)
            }]
        );
        assert!(w.due(t0 + Duration::from_secs(20)).is_empty(), "once only");
        assert_eq!(
            w.heard(1, t0 + Duration::from_secs(25)),
            Some(Transition::Back {
                id: 1,
                silent_for: Duration::from_secs(25)
            })
        );
        assert!(w.heard(1, t0 + Duration::from_secs(26)).is_none());
        // Device 2 was heard at 9 s: silent at 39 s, not at 30 s; device 1, heard at 26 s, is
        // silent again from 36 s.
        assert!(w.due(t0 + Duration::from_secs(30)).is_empty());
        // (Device 1, heard again at 26 s, is due again at 36 s: both are reported at 39 s.)
        let d = w.due(t0 + Duration::from_secs(39));
        assert!(d.contains(&Transition::Silent {
            id: 2,
            silent_for: Duration::from_secs(30)
        }));
        assert!(d.contains(&Transition::Silent {
            id: 1,
            silent_for: Duration::from_secs(13)
        }));
        assert_eq!(d.len(), 2);
        assert!(w.heard(3, t0).is_none(), "not watched");
    }

    proptest::proptest! {
        /// Looking at the devices only from the earliest threshold on reports what looking at
        /// every device every time reports: the same transitions at the same calls.
        #[test]
        fn skipping_looks_reports_what_looking_every_time_reports(
            devices in proptest::collection::vec((1u64..50, 0u64..60, proptest::bool::ANY), 1..6),
            steps in proptest::collection::vec((0u64..20, proptest::option::of(0usize..6)), 1..60),
        ) {
            let t0 = Instant::now();
            let starts: Vec<WatchStart> = devices
                .iter()
                .enumerate()
                .map(|(k, &(after, before, was))| start(k as u32, after, before, was))
                .collect();
            let mut fast = SilenceWatch::new(&starts, t0);
            let mut every = SilenceWatch::new(&starts, t0);
            let mut now = t0;
            for (dt, heard) in steps {
                now += Duration::from_secs(dt);
                if let Some(k) = heard.filter(|&k| k < devices.len()) {
                    proptest::prop_assert_eq!(fast.heard(k as u32, now), every.heard(k as u32, now));
                }
                every.next = None; // the reference looks every time
                proptest::prop_assert_eq!(fast.due(now), every.due(now));
            }
        }
    }

    #[test]
    fn restart_keeps_silence_and_counts_time_before_it() {
        let t0 = Instant::now();
        // Heard 50 s before the restart with a 60 s threshold: silent 10 s after start.
        // Reported silent before the restart: not reported again, back when heard.
        let mut w = SilenceWatch::new(&[start(1, 60, 50, false), start(2, 60, 500, true)], t0);
        assert!(w.due(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(
            w.due(t0 + Duration::from_secs(10)),
            vec![Transition::Silent {
                id: 1,
                silent_for: Duration::from_secs(60)
            }]
        );
        assert!(w.due(t0 + Duration::from_secs(1000)).is_empty());
        assert!(matches!(
            w.heard(2, t0 + Duration::from_secs(5)),
            Some(Transition::Back { id: 2, .. })
        ));
    }

    #[test]
    fn silence_before_start_needs_a_synchronised_clock() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let now = t("2026-12-05T12:00:00Z");
        let seen = Some(t("2026-12-05T09:00:00Z"));
        assert_eq!(
            silent_before_start(Some(now), seen),
            Duration::from_secs(3 * 3600)
        );
        // Unsynchronised: judged from the start, whatever the stored time says.
        assert_eq!(silent_before_start(None, seen), Duration::ZERO);
        // Heard "in the future" (the clock was ahead then): not silent.
        assert_eq!(
            silent_before_start(Some(now), Some(t("2026-12-06T00:00:00Z"))),
            Duration::ZERO
        );
        assert_eq!(silent_before_start(Some(now), None), Duration::ZERO);
    }

    #[test]
    fn event_filter_defaults_and_names() {
        let d = EventFilter::default();
        assert!(d.accepts("telemetry") && d.accepts("teach_in"));
        assert!(!d.accepts("gateway.status") && !d.accepts("device.silent"));
        let all = EventFilter::parse(&["all".into()]).unwrap();
        assert!(EVENT_NAMES.iter().all(|n| all.accepts(n)));
        let some = EventFilter::parse(&["device.silent".into(), "device.back".into()]).unwrap();
        assert!(some.accepts("device.back") && !some.accepts("telemetry"));
        let e = EventFilter::parse(&["device.gone".into()]).unwrap_err();
        assert!(e.contains("device.silent"), "{e}");
    }
}
