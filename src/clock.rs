//! The wall clock, and whether it can be believed yet. A Raspberry Pi has no real-time clock: until
//! NTP has set it, the wall clock shows whatever `fake-hwclock` or systemd-timesyncd restored (the
//! time of the last shutdown) or 1970. A reading received then keeps its monotonic time since boot
//! and the boot it belongs to ([`BootTime`]); it gets its wall time once the clock is synchronised
//! (the boot's start, recorded then, plus the time since boot), or is marked unknown when the
//! gateway rebooted before that (`crate::telemetry::TimeSource`).
//!
//! When is the clock synchronised? ([`ClockRule`], `[gateway] clock_sync`):
//! - systemd-timesyncd's flag file `/run/systemd/timesync/synchronized` exists: it has set the
//!   clock from NTP during this boot;
//! - otherwise, when no timesyncd runs this boot (no `/run/systemd/timesync`) — a gateway with a
//!   battery-backed RTC, chrony or ntpd, a container — the clock is believed once it is not
//!   before the plausible floor: the build's `SOURCE_DATE_EPOCH` or commit date (`build.rs`).
//!
//! The kernel's own flag (adjtimex `STA_UNSYNC`, what `timedatectl` shows as "System clock
//! synchronized") is not read: rustix does not offer adjtimex, libc would need `unsafe`, and the
//! service's `ProtectClock=yes` refuses the call anyway.
//!
//! Everything that needs the time takes a [`Clock`], so tests inject one.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// systemd-timesyncd's flag file, present once it synchronised the clock during this boot.
pub const TIMESYNC_FLAG: &str = "/run/systemd/timesync/synchronized";

/// systemd-timesyncd's runtime directory, present while it runs (so its flag will come).
pub const TIMESYNC_DIR: &str = "/run/systemd/timesync";

/// Where Linux tells the identity of the current boot.
pub const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// The plausible-time floor of this build in unix seconds, set by `build.rs`.
pub const PLAUSIBLE_FLOOR_SECS: &str = env!("ENOCEAN_AGENT_PLAUSIBLE_FLOOR");

/// Where the floor came from: `SOURCE_DATE_EPOCH`, `commit date` or `build time`.
pub const PLAUSIBLE_FLOOR_SOURCE: &str = env!("ENOCEAN_AGENT_PLAUSIBLE_FLOOR_SOURCE");

/// The earliest wall-clock time this build can be running at; a clock before it is not set.
pub fn plausible_floor() -> jiff::Timestamp {
    PLAUSIBLE_FLOOR_SECS
        .parse::<i64>()
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// A monotonic time: milliseconds since the start of a boot (`CLOCK_BOOTTIME`, which counts
/// suspend too), and which boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootTime {
    /// The boot's identity (`/proc/sys/kernel/random/boot_id`): this boot's is read once and
    /// borrowed by every reading; one read back from a stored record is owned.
    pub boot_id: std::borrow::Cow<'static, str>,
    /// Milliseconds since that boot started.
    pub since_boot_ms: u64,
}

/// The time sources the agent uses: injected in tests, [`SystemClock`] in the daemon.
pub trait Clock: Send + Sync {
    /// The wall clock now.
    fn now(&self) -> jiff::Timestamp;
    /// The monotonic time now, with the boot it belongs to.
    fn boot_time(&self) -> BootTime;
    /// True when the wall clock can be believed (see the module documentation).
    fn synchronized(&self) -> bool;
}

/// A clock shared by the threads that need one (the sender threads, the agent, the command
/// line's one-off deliveries); tests inject their own.
pub type ClockCheck = Arc<dyn Clock>;

/// The production clock with the default rule (`[gateway] clock_sync = "auto"`).
pub fn system_clock_check() -> ClockCheck {
    Arc::new(SystemClock::new(ClockRule::Auto))
}

/// A closure is a clock whose synchronisation it decides; time comes from the system.
impl<F: Fn() -> bool + Send + Sync> Clock for F {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
    fn boot_time(&self) -> BootTime {
        system_boot_time()
    }
    fn synchronized(&self) -> bool {
        self()
    }
}

/// How the agent decides that the wall clock is synchronised (`[gateway] clock_sync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockRule {
    /// timesyncd's flag when timesyncd runs this boot, the plausible floor otherwise (default).
    #[default]
    Auto,
    /// Only timesyncd's flag: readings wait until it has synchronised the clock.
    Ntp,
    /// Only the floor: for a gateway whose clock is right from boot (a battery-backed RTC).
    Floor,
}

/// What the rule sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    /// The wall clock is not before the plausible floor.
    pub past_floor: bool,
    /// timesyncd's flag file exists.
    pub timesync_flag: bool,
    /// timesyncd's runtime directory exists (it runs this boot).
    pub timesync_running: bool,
}

impl ClockRule {
    /// The decision for these signals.
    pub fn synchronized(self, s: Signals) -> bool {
        match self {
            ClockRule::Ntp => s.timesync_flag,
            ClockRule::Floor => s.past_floor,
            ClockRule::Auto if s.timesync_running => s.timesync_flag,
            ClockRule::Auto => s.timesync_flag || s.past_floor,
        }
    }
}

/// The system's clocks, judged by a [`ClockRule`].
#[derive(Debug)]
pub struct SystemClock {
    rule: ClockRule,
    /// systemd-timesyncd's flag file and directory as last looked at, and when: asked for
    /// every telegram, they are looked at (two `stat` calls) at most once per [`LOOK_EVERY`].
    looked: std::sync::Mutex<Option<(std::time::Instant, bool, bool)>>,
}

/// How long [`SystemClock`] relies on its last look at systemd-timesyncd's files.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl SystemClock {
    /// The system clock with `rule`.
    pub fn new(rule: ClockRule) -> Self {
        Self {
            rule,
            looked: std::sync::Mutex::new(None),
        }
    }

    /// (flag file present, timesyncd running), looked at no more than once per [`LOOK_EVERY`].
    fn timesync(&self) -> (bool, bool) {
        let look = || {
            (
                Path::new(TIMESYNC_FLAG).exists(),
                Path::new(TIMESYNC_DIR).is_dir(),
            )
        };
        let Ok(mut last) = self.looked.lock() else {
            return look();
        };
        match *last {
            Some((at, flag, running)) if at.elapsed() < LOOK_EVERY => (flag, running),
            _ => {
                let (flag, running) = look();
                *last = Some((std::time::Instant::now(), flag, running));
                (flag, running)
            }
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
    fn boot_time(&self) -> BootTime {
        system_boot_time()
    }
    fn synchronized(&self) -> bool {
        let (timesync_flag, timesync_running) = self.timesync();
        self.rule.synchronized(Signals {
            past_floor: jiff::Timestamp::now() >= plausible_floor(),
            timesync_flag,
            timesync_running,
        })
    }
}

/// This boot's identity, read once. Where the file cannot be read (a sandbox hiding `/proc/sys`)
/// a random identity for this process is used, with a warning: readings of an earlier run then
/// count as another boot's, so they are marked unknown rather than given a wrong time.
pub fn boot_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| match std::fs::read_to_string(BOOT_ID_FILE) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
        r => {
            let id = format!("process-{}", uuid::Uuid::now_v7());
            log::warn!(
                "clock: cannot read {BOOT_ID_FILE} ({}); this run counts as boot {id}",
                r.map_or_else(|e| e.to_string(), |_| "empty".to_owned())
            );
            id
        }
    })
}

/// The monotonic time since boot (`CLOCK_BOOTTIME`) with this boot's identity.
pub fn system_boot_time() -> BootTime {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let ms = (t.tv_sec.max(0) as u64)
        .saturating_mul(1000)
        .saturating_add((t.tv_nsec.max(0) as u64) / 1_000_000);
    BootTime {
        boot_id: std::borrow::Cow::Borrowed(boot_id()),
        since_boot_ms: ms,
    }
}

/// The wall time (unix ms) at which the boot `now` belongs to started, as first judged with a
/// synchronised clock (`wall_now` must come from one). Recorded once per boot in the outbox
/// (table `boot_clock`): every stamp derived from it, in every render and after a restart of the
/// agent, is the same.
pub fn boot_start_ms(
    conn: &rusqlite::Connection,
    now: &BootTime,
    wall_now: jiff::Timestamp,
) -> Result<i64, rusqlite::Error> {
    let start = wall_now
        .as_millisecond()
        .saturating_sub(now.since_boot_ms.min(i64::MAX as u64) as i64);
    conn.execute(
        "INSERT OR IGNORE INTO boot_clock (boot_id, start_ms, recorded_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![now.boot_id, start, wall_now.as_millisecond()],
    )?;
    conn.query_row(
        "SELECT start_ms FROM boot_clock WHERE boot_id = ?1",
        [&now.boot_id],
        |r| r.get(0),
    )
}

/// The start of the current boot in wall time, looked up (or recorded, see [`boot_start_ms`])
/// once per boot and then kept: the sender threads give readings received before the clock
/// was synchronised their wall time from it.
#[derive(Debug, Default)]
pub struct BootStart {
    known: Option<(String, i64)>,
}

impl BootStart {
    /// The current boot and the wall time (unix ms) it started at. `clock` must be synchronised
    /// (its wall time is what a first record of this boot stores).
    pub fn get(
        &mut self,
        conn: &rusqlite::Connection,
        clock: &dyn Clock,
    ) -> Result<(BootTime, i64), rusqlite::Error> {
        let here = clock.boot_time();
        let start = match &self.known {
            Some((id, start)) if *id == here.boot_id => *start,
            _ => {
                let start = boot_start_ms(conn, &here, clock.now())?;
                self.known = Some((here.boot_id.to_string(), start));
                start
            }
        };
        Ok((here, start))
    }
}

/// The wall-clock time (unix ms) of a monotonic instant, past or future, as the system clock
/// sees it now (when a retry or probe scheduled on the monotonic clock is due, for the status).
pub fn wall_ms_of(t: Instant) -> crate::outbox::UnixMs {
    let now = Instant::now();
    let ms = if t >= now {
        (t - now).as_millis() as i64
    } else {
        -((now - t).as_millis() as i64)
    };
    crate::outbox::UnixMs(jiff::Timestamp::now().as_millisecond().saturating_add(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let s = |past_floor, timesync_flag, timesync_running| Signals {
            past_floor,
            timesync_flag,
            timesync_running,
        };
        // timesyncd runs: only its flag counts (a restored clock is past the floor but stale).
        assert!(!ClockRule::Auto.synchronized(s(true, false, true)));
        assert!(ClockRule::Auto.synchronized(s(true, true, true)));
        // No timesyncd: the floor is all there is.
        assert!(ClockRule::Auto.synchronized(s(true, false, false)));
        assert!(!ClockRule::Auto.synchronized(s(false, false, false)));
        assert!(!ClockRule::Ntp.synchronized(s(true, false, false)));
        assert!(ClockRule::Ntp.synchronized(s(false, true, true)));
        assert!(ClockRule::Floor.synchronized(s(true, false, true)));
        assert!(!ClockRule::Floor.synchronized(s(false, true, true)));
    }

    #[test]
    fn floor_comes_from_the_build() {
        let floor = plausible_floor();
        assert!(
            floor > jiff::Timestamp::UNIX_EPOCH,
            "{PLAUSIBLE_FLOOR_SECS}"
        );
        assert!(
            ["SOURCE_DATE_EPOCH", "commit date", "build time"].contains(&PLAUSIBLE_FLOOR_SOURCE)
        );
        // This test runs after the build, on a clock that is set.
        assert!(floor <= jiff::Timestamp::now());
    }

    /// A clock whose wall time, boot and boot time the test sets.
    struct Fixed(std::sync::Mutex<(jiff::Timestamp, BootTime)>);

    impl Clock for Fixed {
        fn now(&self) -> jiff::Timestamp {
            self.0.lock().unwrap().0
        }
        fn boot_time(&self) -> BootTime {
            self.0.lock().unwrap().1.clone()
        }
        fn synchronized(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_boot_start_is_recorded_once_and_kept_per_boot() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::outbox::schema::open(&dir.path().join("outbox.db")).unwrap();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let boot = |id: &str, ms| BootTime {
            boot_id: id.to_owned().into(),
            since_boot_ms: ms,
        };
        let clock = Fixed(std::sync::Mutex::new((
            at("2026-12-05T10:00:00Z"),
            boot("b1", 60_000),
        )));
        let mut cache = BootStart::default();
        let start = at("2026-12-05T09:59:00Z").as_millisecond();
        assert_eq!(cache.get(&conn, &clock).unwrap().1, start);
        // The clock stepped (NTP): the boot keeps the start recorded first, in this cache and
        // for a fresh one (another thread, a restart).
        *clock.0.lock().unwrap() = (at("2026-12-05T11:00:00Z"), boot("b1", 61_000));
        assert_eq!(cache.get(&conn, &clock).unwrap().1, start);
        assert_eq!(BootStart::default().get(&conn, &clock).unwrap().1, start);
        // A new boot gets its own start.
        *clock.0.lock().unwrap() = (at("2026-12-05T12:00:00Z"), boot("b2", 1_000));
        let (here, start2) = cache.get(&conn, &clock).unwrap();
        assert_eq!(here.boot_id, "b2");
        assert_eq!(start2, at("2026-12-05T11:59:59Z").as_millisecond());
    }

    #[test]
    fn wall_time_of_an_instant_is_near_now_plus_its_distance() {
        // Bounds that hold however long the machine takes between the lines.
        let created = Instant::now();
        let before = jiff::Timestamp::now().as_millisecond();
        let t = wall_ms_of(created + std::time::Duration::from_secs(3600)).as_millis();
        let after = jiff::Timestamp::now().as_millisecond();
        let elapsed = created.elapsed().as_millis() as i64;
        assert!(t <= after + 3_600_000, "{t} {after}");
        assert!(
            t >= before + 3_600_000 - elapsed - 1,
            "{before} {t} {elapsed}"
        );
    }

    #[test]
    fn boot_time_moves_forward_within_one_boot() {
        let a = system_boot_time();
        let b = system_boot_time();
        assert_eq!(a.boot_id, b.boot_id);
        assert!(b.since_boot_ms >= a.since_boot_ms);
        assert!(a.since_boot_ms > 0);
    }
}
