//! True timestamps on a gateway without a real-time clock, with an injected clock: readings
//! received before the clock is synchronised are held, then delivered with a wall time derived
//! from their monotonic time (the same after a restart of the sender, whatever the clock says
//! then), or marked unknown when they belong to an earlier boot. Real outbox file, real sender
//! threads, a loopback receiver.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use enocean_agent::clock::{BootTime, Clock};
use enocean_agent::telemetry::Telemetry;
use enocean_agent::webhook::{Sender, SenderOptions};

const DEV: &str = "0180A3F2";

/// A clock the test sets.
#[derive(Clone)]
struct TestClock(
    Arc<Mutex<(bool, jiff::Timestamp, BootTime)>>,
    /// How often the sender asked whether the clock is synchronised.
    Arc<std::sync::atomic::AtomicU64>,
);

impl TestClock {
    fn new(synced: bool, wall: &str, boot: &str, ms: u64) -> Self {
        Self(
            Arc::new(Mutex::new((
                synced,
                wall.parse().unwrap(),
                BootTime {
                    boot_id: boot.to_owned().into(),
                    since_boot_ms: ms,
                },
            ))),
            Arc::default(),
        )
    }
    fn checks(&self) -> u64 {
        self.1.load(Ordering::SeqCst)
    }
    fn set(&self, synced: bool, wall: &str, ms: u64) {
        let mut g = self.0.lock().unwrap();
        g.0 = synced;
        g.1 = wall.parse().unwrap();
        g.2.since_boot_ms = ms;
    }
}

impl Clock for TestClock {
    fn now(&self) -> jiff::Timestamp {
        self.0.lock().unwrap().1
    }
    fn boot_time(&self) -> BootTime {
        self.0.lock().unwrap().2.clone()
    }
    fn synchronized(&self) -> bool {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.lock().unwrap().0
    }
}

fn options(clock: &TestClock) -> SenderOptions {
    SenderOptions {
        clock: Arc::new(clock.clone()),
        ..fast_options()
    }
}

/// A reading stamped at reception by `clock`, as the agent does.
fn received(clock: &dyn Clock, n: u32) -> Telemetry {
    let mut t = telemetry(DEV, n);
    // What the wall clock said at reception (wrong while not synchronised).
    t.received_at = Some(clock.now());
    t.stamp_reception(clock);
    t
}

fn records(rx: &Receiver) -> Vec<serde_json::Value> {
    rx.requests()
        .iter()
        .flat_map(|r| r.json()["records"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

#[test]
fn readings_before_sync_wait_then_get_a_derived_or_unknown_time() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|_, _| Reply::ok());
    let hooks = vec![fast_webhook("a", &rx.url)];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);

    // Boot "b0": received before sync, then the gateway rebooted before the clock was set.
    let b0 = TestClock::new(false, "1970-01-01T00:01:00Z", "b0", 60_000);
    let lost = received(&b0, 0);
    // Boot "b1": a restored clock says yesterday; 42 s after boot a reading arrives.
    let clock = TestClock::new(false, "2026-11-21T18:00:00Z", "b1", 42_000);
    let early = received(&clock, 1);
    assert!(lost.awaits_clock() && early.awaits_clock());
    let ids = [lost.id.clone(), early.id.clone()];
    ob.enqueue(lost).unwrap();
    ob.enqueue(early).unwrap();
    ob.flush().unwrap();

    let sender = Sender::spawn(
        &hooks,
        &s.path,
        options(&clock),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    ob.set_waker(sender.waker());
    // Nothing may leave while the clock is not synchronised: wait until the sender has asked
    // the clock a few times (it holds the readings each time), then look.
    let asked = clock.checks();
    assert!(wait_for(WAIT, || clock.checks() >= asked + 3));
    assert_eq!(rx.count(), 0, "a reading left with an unsynchronised clock");

    // NTP sets the clock 100 s after boot: the boot started at 20:00:00.
    clock.set(true, "2026-11-22T20:01:40Z", 100_000);
    // A reading received now is stamped from the synchronised clock.
    let late = received(&clock, 2);
    assert_eq!(
        late.received_at,
        Some("2026-11-22T20:01:40Z".parse().unwrap())
    );
    ob.enqueue(late).unwrap();
    ob.flush().unwrap();
    assert!(wait_for(WAIT, || records(&rx).len() >= 3), "{}", rx.count());
    sender.stop();

    let recs = records(&rx);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    assert_eq!(recs[0]["id"], ids[0].as_str());
    assert!(recs[0]["received_at"].is_null(), "{:#}", recs[0]);
    assert_eq!(recs[0]["clock"], "unknown");
    assert_eq!(recs[0]["received_monotonic"]["boot_id"], "b0");
    assert_eq!(recs[0]["received_monotonic"]["since_boot_ms"], 60_000);
    assert_eq!(recs[1]["id"], ids[1].as_str());
    assert_eq!(recs[1]["received_at"], "2026-11-22T20:00:42Z");
    assert_eq!(recs[1]["clock"], "derived");
    assert_eq!(recs[2]["received_at"], "2026-11-22T20:01:40Z");
    assert_eq!(recs[2]["clock"], "synchronized");
    assert_eq!(recs[2]["received_monotonic"]["since_boot_ms"], 100_000);
    // No record carries a time from the unsynchronised clock.
    let text = serde_json::to_string(&recs).unwrap();
    assert!(
        !text.contains("1970-") && !text.contains("2026-11-21"),
        "{text}"
    );

    // The boot's start is recorded once: a restarted sender derives the same times even when
    // the clock has moved since (stepped by NTP).
    clock.set(false, "2026-11-22T20:02:00Z", 120_000);
    let again = received(&clock, 3);
    ob.enqueue(again).unwrap();
    ob.flush().unwrap();
    clock.set(true, "2026-11-22T21:00:00Z", 130_000);
    let sender = Sender::spawn(
        &hooks,
        &s.path,
        options(&clock),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    ob.set_waker(sender.waker());
    assert!(wait_for(WAIT, || records(&rx).len() >= 4));
    sender.stop();
    let recs = records(&rx);
    assert_eq!(recs[3]["received_at"], "2026-11-22T20:02:00Z");
    assert_eq!(recs[3]["clock"], "derived");
    assert_eq!(
        enocean_agent::clock::boot_start_ms(
            &rusqlite::Connection::open(&s.path).unwrap(),
            &BootTime {
                boot_id: "b1".into(),
                since_boot_ms: 0,
            },
            "2030-01-01T00:00:00Z".parse().unwrap(),
        )
        .unwrap(),
        ms("2026-11-22T20:00:00Z"),
        "the recorded start of boot b1"
    );
}

/// A batch whose newest reading has no wall time takes its envelope timestamp from the newest
/// one that has.
#[test]
fn a_batch_timestamp_comes_from_its_newest_known_time() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|_, _| Reply::ok());
    let mut hook = fast_webhook("a", &rx.url);
    hook.batch_max = 10;
    let hooks = vec![hook];
    let s = storage(dir.path());
    let mut ob = open_outbox(&s, &hooks);
    let clock = TestClock::new(true, "2026-11-22T20:00:10Z", "b2", 10_000);
    let known = received(&clock, 0);
    let b1 = TestClock::new(false, "1970-01-01T00:00:05Z", "b1", 5_000);
    let unknown = received(&b1, 1);
    ob.enqueue(known).unwrap();
    ob.enqueue(unknown).unwrap();
    ob.flush().unwrap();
    let sender = Sender::spawn(
        &hooks,
        &s.path,
        options(&clock),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    ob.set_waker(sender.waker());
    assert!(wait_for(WAIT, || records(&rx).len() >= 2));
    sender.stop();
    let body = rx.requests()[0].json();
    assert_eq!(body["timestamp"], "2026-11-22T20:00:10.000Z", "{body:#}");
    assert_eq!(body["records"][1]["clock"], "unknown");
}

/// The agent itself (in-process, simulated stick) stamps what it receives with the injected
/// clock: readings committed while the clock is not synchronised are held, and leave with a
/// derived time once it is.
#[test]
fn the_agent_stamps_readings_with_its_clock() {
    use enocean_agent::agent::{self, Options};
    use enocean_agent::config::Config;
    use enocean_agent::eep::Library;
    use enocean_agent::sim::SimConfig;
    use std::time::Instant;

    if !pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|_, _| Reply::ok());
    let db = dir.path().join("outbox.db");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[serial]\nport = \"sim\"\n[storage]\npath = \"{}\"\ncommit_window = \"50ms\"\n\
             [[webhook]]\nname = \"a\"\nurl = \"{}\"\n",
            db.display(),
            rx.url
        ),
    )
    .unwrap();
    let cfg = Config::load(&path).unwrap();
    let library = Library::builtin().unwrap();
    // A restored clock that says 1970, 42 s after boot.
    let clock = TestClock::new(false, "1970-01-01T00:00:42Z", "boot-9", 42_000);
    let options = Options {
        sim: SimConfig {
            rate: 50.0,
            ..SimConfig::default()
        },
        sender: Some(options(&clock)),
        ..Options::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let held_before_sync = Arc::new(Mutex::new(None));
    let log = rx.log.clone();
    let rx_count = move || log.lock().unwrap().len();
    let (watch, held) = (clock.clone(), held_before_sync.clone());
    let shutdown = async move {
        let until = Instant::now() + WAIT;
        while Instant::now() < until {
            if committed_ids(&db).is_some_and(|ids| ids.len() >= 5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        *held.lock().unwrap() = Some(rx_count());
        // NTP sets the clock 60 s after boot: the boot started at 10:00:00.
        watch.set(true, "2026-11-22T10:01:00Z", 60_000);
        while Instant::now() < until && rx_count() < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    rt.block_on(agent::run(&cfg, &library, options, shutdown, &mut |_| {}))
        .unwrap();
    assert_eq!(
        *held_before_sync.lock().unwrap(),
        Some(0),
        "readings left before the clock was synchronised"
    );
    let recs = records(&rx);
    assert!(recs.len() >= 5, "{}", recs.len());
    let derived: Vec<_> = recs.iter().filter(|r| r["clock"] == "derived").collect();
    assert!(derived.len() >= 5, "{recs:#?}");
    for r in &derived {
        assert_eq!(r["received_at"], "2026-11-22T10:00:42Z", "{r:#}");
        assert_eq!(r["received_monotonic"]["boot_id"], "boot-9");
    }
    for r in &recs {
        assert!(
            r["clock"] == "derived" || r["clock"] == "synchronized",
            "{r:#}"
        );
        assert!(!r["received_at"].to_string().contains("1970"), "{r:#}");
    }
}
