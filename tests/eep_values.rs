//! Clean values (issue 11, outcome 5): scaled numbers are rounded to their field's resolution
//! with the raw value beside them, and a payload of the wrong length is never decoded.

use enocean_agent::eep::{self, DecodeError, Library, Val, model::round_to};

fn lib() -> Library {
    Library::builtin().unwrap()
}

#[test]
fn humidity_is_delivered_as_written_in_the_spec_resolution() {
    let lib = lib();
    let p = lib.get_str("A5-04-01").unwrap();
    // HUM raw 101 of 0…250 is 40.4 %; without rounding 101 × 0.4 is 40.400000000000006.
    let d = eep::decode_payload(p, 0xA5, &[0x00, 101, 0, 0x08], 0, None).unwrap();
    let hum = d.get("humidity").unwrap();
    assert_eq!(hum.value, Val::Number(40.4));
    assert_eq!(hum.raw, 101);
    assert_eq!(hum.decimals, Some(1));
    let json = serde_json::to_string(&hum.to_reading()).unwrap();
    assert!(json.contains("\"value\":40.4,"), "{json}");
    assert!(json.contains("\"raw\":101"), "{json}");
}

#[test]
fn a_255_step_temperature_keeps_every_raw_step_apart() {
    let lib = lib();
    let p = lib.get_str("A5-02-05").unwrap();
    let mut seen = Vec::new();
    for raw in 0..=255u8 {
        let d = eep::decode_payload(p, 0xA5, &[0, 0, raw, 0x08], 0, None).unwrap();
        let t = d.get("temperature").unwrap();
        let exact = (255.0 - f64::from(raw)) * 40.0 / 255.0;
        let got = t.value.as_f64().unwrap();
        assert_eq!(t.raw, u64::from(raw));
        assert!(
            (got - exact).abs() <= 0.005 + 1e-12,
            "raw {raw}: {got} vs {exact}"
        );
        // Two decimals: the printed number has at most two places.
        let text = serde_json::to_string(&t.value.to_json()).unwrap();
        assert!(
            text.split('.').nth(1).is_none_or(|f| f.len() <= 2),
            "{text}"
        );
        seen.push(got);
    }
    seen.sort_by(f64::total_cmp);
    seen.dedup();
    assert_eq!(seen.len(), 256, "two raw steps gave the same value");
}

/// Every scaled field of every built-in profile: decoding each raw value of its range gives
/// numbers that are strictly monotonic (no two raw steps merge) and within a tenth of a step of
/// the unrounded formula.
#[test]
fn rounding_never_merges_raw_steps_in_any_profile() {
    let lib = lib();
    let mut fields = 0;
    for p in lib.iter() {
        for f in p.cases.iter().flat_map(|c| &c.fields) {
            let (Some(lin), None) = (f.linear(), &f.multiplier) else {
                continue;
            };
            let f = &f.spec;
            let Some(d) = lin.decimals else { continue };
            let max_raw = if f.size >= 16 {
                4096
            } else {
                (1u64 << f.size) - 1
            };
            let mut last: Option<(u64, f64)> = None;
            for raw in 0..=max_raw {
                let x = if f.signed {
                    eep::bits::sign_extend(raw, f.size) as f64
                } else {
                    raw as f64
                };
                if lin.raw_min.is_some_and(|m| x < m) || lin.raw_max.is_some_and(|m| x > m) {
                    continue;
                }
                let exact = x * lin.slope + lin.intercept;
                let v = round_to(exact, d);
                assert!(
                    (v - exact).abs() <= lin.slope.abs() / 10.0 + 1e-9 * exact.abs().max(1.0),
                    "{} {}: raw {raw} rounds {exact} to {v}",
                    p.eep,
                    f.shortcut
                );
                if let Some((r0, v0)) = last
                    && !f.signed
                {
                    assert_ne!(
                        v, v0,
                        "{} {}: raw {r0} and {raw} both give {v}",
                        p.eep, f.shortcut
                    );
                }
                last = Some((raw, v));
            }
            fields += 1;
        }
    }
    assert!(fields > 100, "only {fields} scaled fields checked");
}

#[test]
fn a_three_byte_4bs_payload_is_never_decoded() {
    let lib = lib();
    let mut checked = 0;
    for p in lib.iter() {
        let (expected, name) = match p.id.rorg {
            0xA5 => (4, "4BS"),
            0xF6 => (1, "RPS"),
            0xD5 => (1, "1BS"),
            _ => continue,
        };
        for len in [0usize, 1, 2, 3, 4, 5, 6, 14] {
            if len == expected {
                continue;
            }
            let payload = vec![0x08u8; len];
            match eep::decode_payload(p, p.id.rorg, &payload, 0, None) {
                Err(DecodeError::WrongLength {
                    len: l,
                    expected: e,
                    rorg_name,
                    ..
                }) => {
                    assert_eq!((l, e, rorg_name), (len, expected, name), "{}", p.eep);
                }
                other => panic!("{} with {len} bytes: {other:?}", p.eep),
            }
        }
        checked += 1;
    }
    assert!(checked > 90, "{checked} profiles");
    let p = lib.get_str("A5-04-01").unwrap();
    let e = eep::decode_payload(p, 0xA5, &[0x00, 0x65, 0x00], 0, None).unwrap_err();
    assert_eq!(e.kind(), "wrong_length");
    assert!(
        e.to_string()
            .contains("3-byte payload is not a 4BS telegram"),
        "{e}"
    );
}
