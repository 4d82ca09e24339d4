//! Fuzz target: arbitrary telegrams through every built-in EEP profile and teach-in detection.
//! First byte picks the profile, second the status, third the direction; the rest is the payload.
#![no_main]

use std::sync::OnceLock;

use enocean_agent::eep::{self, Library, Profile};
use libfuzzer_sys::fuzz_target;

fn profiles() -> &'static [Profile] {
    static P: OnceLock<Vec<Profile>> = OnceLock::new();
    P.get_or_init(|| {
        Library::builtin()
            .expect("built-in profiles are valid")
            .iter()
            .cloned()
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let [pick, status, dir, payload @ ..] = data else {
        return;
    };
    let all = profiles();
    let p = &all[usize::from(*pick) % all.len()];
    let direction = match dir % 4 {
        0 => None,
        d => Some(d),
    };
    let _ = eep::teach_in_payload(p.id.rorg, payload);
    if let Ok(d) = eep::decode_payload(p, p.id.rorg, payload, *status, direction) {
        let _ = d.readings();
    }
});
