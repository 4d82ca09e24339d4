//! Readings of the simulated building as the agent commits them, for benches and tests (not
//! part of the agent: the simulated stick does not use them).

use jiff::{SignedDuration, Timestamp};

use super::building::{DEVICES, Emission, Script, ScriptOptions};
use crate::clock::BootTime;
use crate::eep::{self, Library};
use crate::erp1::Telegram;
use crate::telemetry::{Gateway, Telemetry, TimeSource};

/// The seed of the ids [`sample_readings`] gives.
const ID_SEED: u64 = 12;

/// For benches and tests: `n` readings as the agent commits them, the simulated building's
/// telegrams (a [`Script`] with its default options) decoded with the built-in profiles, with
/// the installer's names, a synchronised clock and a boot time, received `step` apart from
/// `start` by the gateway `bench` (base ID FF8A1200). Each id is a UUID v7 of the reading's time
/// with bits from a fixed seed, so the same `start` and `step` give the same readings.
///
/// # Panics
///
/// If the built-in profiles do not load, which the test suite rules out.
#[doc(hidden)]
pub fn sample_readings(n: usize, start: Timestamp, step: SignedDuration) -> Vec<Telemetry> {
    let lib = Library::builtin().expect("the built-in profiles load");
    let mut script = Script::new(ScriptOptions::default());
    let gateway = Gateway {
        id: "bench".into(),
        base_id: Some("FF8A1200".into()),
    };
    let step = i64::try_from(step.as_nanos()).expect("a step of less than 292 years");
    let mut rng = fastrand::Rng::with_seed(ID_SEED);
    (0..n)
        .map(|i| {
            let e = script.next_telegram();
            let at = start + SignedDuration::from_nanos(step * i as i64);
            let mut tm = decoded_reading(&lib, &e, at, gateway.clone());
            let mut random = [0u8; 10];
            rng.fill(&mut random);
            let ms = u64::try_from(at.as_millisecond()).expect("a time after 1970");
            tm.id = crate::telemetry::id_at(ms, &random);
            tm.clock = Some(TimeSource::Synchronized);
            tm.received_monotonic = Some(BootTime {
                // Not the boot id of the stored-body dictionary's samples: a running gateway's
                // never is.
                boot_id: "530fc982-8d81-4e82-ae51-865f95a0751f".into(),
                since_boot_ms: 778_968 + i as u64 / 2,
            });
            tm.sensor.name = Some(DEVICES[e.device].name.into());
            tm
        })
        .collect()
}

/// For benches and tests: the reading of one telegram the simulator emitted, received at `at` by
/// `gateway`, with its device's EEP and the values `lib` decodes (none if it cannot); nothing
/// else is filled in (a fresh id, no name, no clock).
#[doc(hidden)]
pub fn decoded_reading(lib: &Library, e: &Emission, at: Timestamp, gateway: Gateway) -> Telemetry {
    let t = Telegram::from_frame(&e.frame()).expect("the simulator's frames are radio telegrams");
    let mut tm = Telemetry::from_telegram(&t, at, gateway);
    tm.sensor.eep = Some(e.eep.into());
    if let Ok(p) = lib.get_str(e.eep)
        && let Ok(d) = eep::decode(p, &t)
    {
        tm.values = d.readings();
    }
    tm
}
