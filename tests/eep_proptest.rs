//! Arbitrary payloads for every built-in profile never panic, and decoded values keep their
//! promises (numbers are finite, statuses mean "no value").

use std::sync::OnceLock;

use enocean_agent::eep::{self, Library, Profile, Val};
use proptest::prelude::*;

fn profiles() -> &'static [Profile] {
    static P: OnceLock<Vec<Profile>> = OnceLock::new();
    P.get_or_init(|| Library::builtin().unwrap().iter().cloned().collect())
}

fn check(p: &Profile, rorg: u8, payload: &[u8], status: u8, direction: Option<u8>) {
    let _ = eep::teach_in_payload(rorg, payload);
    let result = eep::decode_payload(p, rorg, payload, status, direction);
    let fixed = match rorg {
        0xA5 => Some(4),
        0xF6 | 0xD5 => Some(1),
        _ => None,
    };
    if rorg == p.id.rorg
        && let Some(n) = fixed
        && payload.len() != n
    {
        assert_eq!(
            result.as_ref().map_err(|e| e.kind()).err(),
            Some("wrong_length"),
            "{} decoded a {}-byte payload",
            p.eep,
            payload.len()
        );
    }
    if let Ok(d) = result {
        for v in &d.values {
            match v.value {
                Val::Number(x) => assert!(x.is_finite(), "{} {v:?}", p.eep),
                Val::None => assert!(v.status.is_some(), "{} {v:?}", p.eep),
                _ => {}
            }
            let r = v.to_reading();
            assert_eq!(r.raw, v.raw);
        }
        let _ = d.readings();
    }
}

#[test]
fn every_profile_survives_every_short_length() {
    for p in profiles() {
        for len in 0..=24 {
            for fill in [0x00u8, 0xFF, 0x55, 0xAA] {
                let payload = vec![fill; len];
                for status in [0x00, 0x10, 0x20, 0x30, 0xFF] {
                    for dir in [None, Some(1), Some(2), Some(3)] {
                        check(p, p.id.rorg, &payload, status, dir);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_payloads_never_panic(
        index in 0usize..10_000,
        payload in proptest::collection::vec(any::<u8>(), 0..40),
        status in any::<u8>(),
        direction in proptest::option::of(0u8..4),
        same_rorg in any::<bool>(),
        rorg in any::<u8>(),
    ) {
        let all = profiles();
        let p = &all[index % all.len()];
        let rorg = if same_rorg { p.id.rorg } else { rorg };
        check(p, rorg, &payload, status, direction);
    }

    #[test]
    fn arbitrary_profile_text_never_panics(text in "\\PC{0,400}") {
        let _ = eep::parse_profile(&text, "X.toml");
    }
}
