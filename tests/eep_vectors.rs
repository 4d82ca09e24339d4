//! Every vector of `tests/data/eep_vectors.jsonl` (produced by the Python `enocean` package,
//! "kipe" below) against our built-in profiles.
//!
//! Rules: raw values must be equal; scaled values agree within 1e-6 relative; enum values are
//! compared by raw value (labels are our own). Where kipe departs from the EEP specification
//! (`spec_divergence`, `edge`, and the extra cases listed in [`spec_judgement`]) the field is judged
//! by what the spec says, written down next to each rule.

use std::sync::OnceLock;

use enocean_agent::eep::{self, Decoded, EepId, Library, TeachIn, Val};
use enocean_agent::erp1::Telegram;
use serde_json::Value as Json;

fn library() -> &'static Library {
    static LIB: OnceLock<Library> = OnceLock::new();
    LIB.get_or_init(|| Library::builtin().expect("built-in profiles are valid"))
}

fn vectors() -> Vec<Json> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/eep_vectors.jsonl"
    ))
    .unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn telegram(v: &Json) -> Telegram {
    let data = hex::decode(v["esp3"]["data_hex"].as_str().unwrap()).unwrap();
    let opt = hex::decode(v["esp3"]["optional_hex"].as_str().unwrap()).unwrap();
    Telegram::from_parts(&data, &opt).unwrap()
}

/// True when a decoded value is `want` rounded to the field's resolution (the decoder rounds
/// scaled values; kipe and the spec formulas do not).
fn close(got: &eep::Value<'_>, want: f64) -> bool {
    let want = match got.decimals {
        Some(d) => eep::model::round_to(want, d),
        None => want,
    };
    got.value
        .as_f64()
        .is_some_and(|g| eep::golden::close(g, want))
}

/// What the spec says for a field where kipe's value is not the spec's.
enum Judgement {
    /// Compare as usual.
    AsUsual,
    /// The spec has no such field in this message: we must not report it.
    Absent,
    /// Our raw value must be this (kipe reads other bits), and the value is checked by `check`.
    Custom(fn(&Json, &Decoded<'_>, &str) -> Result<(), String>),
    /// The spec value is this number.
    Number(f64),
    /// The spec gives no number but this status.
    Status(&'static str),
}

fn field<'a>(d: &'a Decoded<'_>, shortcut: &str) -> Result<&'a eep::Value<'a>, String> {
    d.by_shortcut(shortcut)
        .ok_or_else(|| format!("{shortcut}: missing"))
}

fn payload(v: &Json) -> Vec<u8> {
    hex::decode(v["esp3"]["payload_hex"].as_str().unwrap()).unwrap()
}

fn spec_judgement(v: &Json, shortcut: &str, raw: u64) -> Judgement {
    let eep = format!(
        "{}-{}-{}",
        v["rorg"].as_str().unwrap_or(""),
        v["func"].as_str().unwrap_or(""),
        v["type"].as_str().unwrap_or("")
    );
    let id = v["id"].as_str().unwrap_or("");
    let divergent = v["spec_divergence"].get(shortcut).is_some();
    let p = payload(v);
    match (eep.as_str(), shortcut) {
        // Spec F6-02-0x, NU = 0: DB0.7..5 is the number of buttons pressed at once, DB0.3..0
        // reserved; there is no second action. The R1 bits are the same, their meaning differs.
        ("F6-02-01" | "F6-02-02", "R2" | "SA") if divergent => Judgement::Absent,
        ("F6-02-01" | "F6-02-02", "R1") if divergent => Judgement::Custom(|v, d, _| {
            let f = field(d, "R1")?;
            let want = v["expected"]["R1"]["raw"].as_u64().unwrap();
            (f.raw == want && f.key == "buttons_pressed")
                .then_some(())
                .ok_or(format!("R1 in NU = 0 must be the button count, got {f:?}"))
        }),
        // Spec F6-10-00: WIN is all of DB0; 0b11X0xxxx open, 0b1111xxxx closed, 0b1101xxxx
        // tilted; anything with DB0.7..6 != 11 is not a defined handle position.
        ("F6-10-00", "WIN") => Judgement::Custom(|v, d, _| {
            let f = field(d, "WIN")?;
            let byte = payload(v)[0];
            if f.raw != u64::from(byte) {
                return Err(format!("WIN raw {} is not DB0 {byte}", f.raw));
            }
            let want = match byte >> 4 {
                0xC | 0xE => Some("open"),
                0xD => Some("tilted"),
                0xF => Some("closed"),
                _ => None,
            };
            match (want, f.value) {
                (Some(w), Val::Label(g)) if w == g => Ok(()),
                (None, Val::None) if f.status == Some("reserved") => Ok(()),
                _ => Err(format!("WIN {byte:#04x}: got {f:?}, spec {want:?}")),
            }
        }),
        // Spec A5-07-01: PIRS is all of DB1, 0..127 unoccupied, 128..255 occupied (kipe: DB1.7).
        ("A5-07-01", "PIR") => Judgement::Custom(|v, d, _| {
            let f = field(d, "PIRS")?;
            let kipe = v["expected"]["PIR"]["raw"].as_u64().unwrap();
            let label = if f.raw >= 128 {
                "occupied"
            } else {
                "unoccupied"
            };
            (f.raw >> 7 == kipe && f.value == Val::Label(label))
                .then_some(())
                .ok_or(format!("PIRS {f:?} vs kipe PIR {kipe}"))
        }),
        // Spec A5-09-05: concentration times SCM (DB0.1..0: 0.01, 0.1, 1, 10).
        ("A5-09-05", "Conc") => {
            let scm = [0.01, 0.1, 1.0, 10.0][usize::from(p[3] & 0x03)];
            Judgement::Number(raw as f64 * scm)
        }
        // Spec A5-12-01: MR divided by DIV (DB0.1..0: 1, 10, 100, 1000); DT picks kWh or W.
        ("A5-12-01", "MR") => {
            let div = [1.0, 10.0, 100.0, 1000.0][usize::from(p[3] & 0x03)];
            Judgement::Number(raw as f64 / div)
        }
        // Spec A5-20-01 direction 1: BCAP 0 = change battery soon, 1 = battery ok.
        ("A5-20-01", "BCAP") => Judgement::Custom(|_, d, _| {
            let f = field(d, "BCAP")?;
            let want = if f.raw == 1 { "ok" } else { "low" };
            (f.value == Val::Label(want))
                .then_some(())
                .ok_or(format!("BCAP {f:?}, spec says {want}"))
        }),
        // Spec A5-20-01 direction 2: RCU temperature is inverted, raw 255..0 is 0..40 °C.
        ("A5-20-01", "TMP") if v["direction"] == 2 => {
            Judgement::Number(40.0 - raw as f64 * 40.0 / 255.0)
        }
        // Spec A5-20-01 direction 2 (not flagged in the vectors): with SPS = 1 (DB1.2) SP is a
        // temperature set point, raw 0..255 is 0..40 °C; kipe always reads 0..100 %.
        ("A5-20-01", "SP") if v["direction"] == 2 && p[2] & 0x04 != 0 => {
            Judgement::Number(raw as f64 * 40.0 / 255.0)
        }
        // Spec A5-38-08 COM 2: with EDIMR = 0 (DB0.2) EDIM raw 0..255 is 0..100 %; with
        // EDIMR = 1 it is already a relative value 0..100 %, and 101..255 are no value.
        ("A5-38-08", "EDIM") if p[3] & 0x04 == 0 => Judgement::Number(raw as f64 * 100.0 / 255.0),
        ("A5-38-08", "EDIM") if raw <= 100 => Judgement::Number(raw as f64),
        ("A5-38-08", "EDIM") => Judgement::Status("invalid"),
        // Spec D2-05-00 reply (CMD 4): DB1.6..4 reserved, so no REPO; POS/ANG 127 = unknown.
        ("D2-05-00", "REPO") if divergent => Judgement::Absent,
        ("D2-05-00", "POS" | "ANG") if divergent && raw == 127 => Judgement::Status("unknown"),
        // Edge vectors: a raw value outside the documented range is no number.
        // A5-04-01 / A5-10-12: HUM and TMP 0..250; A5-11-03: BSP 0..100 %; A5-20-01: CV 0..100 %.
        (_, s)
            if v.get("edge").is_some()
                && id.ends_with(&format!("-oor-{s}-{}", &id[id.len() - 3..])) =>
        {
            if eep == "A5-20-01" && s == "SP" && p[2] & 0x04 != 0 {
                // A temperature set point covers all of 0..255: raw 255 is 40 °C.
                Judgement::Number(40.0)
            } else {
                Judgement::Status("out_of_range")
            }
        }
        _ => Judgement::AsUsual,
    }
}

/// Our shortcut for kipe's where the spec spells it differently.
fn our_shortcut(eep: &str, kipe: &str) -> String {
    match (eep, kipe) {
        ("A5-11-02", "CTS") => "CST".into(), // spec shortcut is CST
        ("D2-01-01", "IO") => "I/O".into(),  // spec shortcut is I/O
        _ => kipe.into(),
    }
}

fn check_data_vector(v: &Json) -> Result<usize, String> {
    let t = telegram(v);
    let id = EepId::new(
        t.rorg,
        u8::from_str_radix(v["func"].as_str().unwrap(), 16).unwrap(),
        u8::from_str_radix(v["type"].as_str().unwrap(), 16).unwrap(),
    );
    let profile = library()
        .get(id)
        .ok_or_else(|| format!("no profile for {id}"))?;
    let direction = v["direction"].as_u64().map(|d| d as u8);
    let d = match direction {
        Some(dir) => eep::decode_direction(profile, &t, dir),
        None => eep::decode(profile, &t),
    }
    .map_err(|e| format!("decode: {e}"))?;
    let mut checked = 0;
    for (shortcut, exp) in v["expected"].as_object().unwrap() {
        let kipe_raw = exp["raw"].as_u64().unwrap();
        // T21 and NU are status bits: our profiles use them to select the case.
        if shortcut == "T21" || shortcut == "NU" {
            let bit = if shortcut == "T21" { t.t21() } else { t.nu() };
            if u64::from(bit) != kipe_raw {
                return Err(format!("{shortcut}: status bit {bit} vs {kipe_raw}"));
            }
            checked += 1;
            continue;
        }
        let ours = our_shortcut(&profile.eep, shortcut);
        match spec_judgement(v, shortcut, kipe_raw) {
            Judgement::Absent => {
                if d.by_shortcut(&ours).is_some() {
                    return Err(format!("{shortcut}: the spec has no such field here"));
                }
            }
            Judgement::Custom(check) => check(v, &d, shortcut)?,
            Judgement::Number(want) => {
                let f = field(&d, &ours)?;
                if f.raw != kipe_raw {
                    return Err(format!("{shortcut}: raw {} vs {kipe_raw}", f.raw));
                }
                let got = f
                    .value
                    .as_f64()
                    .ok_or(format!("{shortcut}: {f:?} is no number"))?;
                if !close(f, want) {
                    return Err(format!("{shortcut}: {got} but the spec gives {want}"));
                }
            }
            Judgement::Status(status) => {
                let f = field(&d, &ours)?;
                if f.raw != kipe_raw || f.value != Val::None || f.status != Some(status) {
                    return Err(format!("{shortcut}: {f:?}, spec says {status}"));
                }
            }
            Judgement::AsUsual => {
                let Some(f) = d.by_shortcut(&ours) else {
                    // A field present only when a selector field has some value (A5-06-01
                    // ILL1/ILL2 by RS): the spec says it carries nothing in this telegram.
                    let conditional = profile.cases[d.case]
                        .fields
                        .iter()
                        .any(|f| f.spec.shortcut == ours && !f.conditions.is_empty());
                    if conditional {
                        continue;
                    }
                    return Err(format!("{shortcut}: missing"));
                };
                if f.raw != kipe_raw {
                    return Err(format!("{shortcut}: raw {} vs {kipe_raw}", f.raw));
                }
                if let Some(want) = exp["value"].as_f64() {
                    let got = f
                        .value
                        .as_f64()
                        .ok_or(format!("{shortcut}: {f:?} is no number, kipe {want}"))?;
                    if !close(f, want) {
                        return Err(format!("{shortcut}: {got} vs kipe {want}"));
                    }
                }
            }
        }
        checked += 1;
    }
    Ok(checked)
}

#[test]
fn every_data_vector_decodes_as_the_spec_says() {
    let mut failures = Vec::new();
    let mut vectors_checked = 0;
    let mut fields_checked = 0;
    for v in vectors().iter().filter(|v| v["kind"] == "eep_data") {
        match check_data_vector(v) {
            Ok(n) => {
                vectors_checked += 1;
                fields_checked += n;
            }
            Err(e) => failures.push(format!("{}: {e}", v["id"].as_str().unwrap())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors fail:\n{}",
        failures.len(),
        failures.len() + vectors_checked,
        failures.join("\n")
    );
    assert_eq!(vectors_checked, 315);
    eprintln!("{vectors_checked} data vectors, {fields_checked} fields");
}

#[test]
fn every_profile_of_the_vectors_is_built_in() {
    for v in vectors() {
        if v["kind"] != "eep_data" {
            continue;
        }
        let eep = format!(
            "{}-{}-{}",
            v["rorg"].as_str().unwrap(),
            v["func"].as_str().unwrap(),
            v["type"].as_str().unwrap()
        );
        assert!(library().get_str(&eep).is_ok(), "{eep} is not built in");
    }
}

#[test]
fn teach_in_vectors_announce_their_profile() {
    let mut n = 0;
    for v in vectors().iter().filter(|v| v["kind"] != "eep_data") {
        let t = telegram(v);
        let exp = &v["expected_teach_in"];
        let ti = eep::teach_in(&t).unwrap_or_else(|| panic!("{}: not a teach-in", v["id"]));
        match ti {
            TeachIn::FourBs { eep, manufacturer } => {
                assert_eq!(v["kind"], "teach_in_4bs", "{}", v["id"]);
                if exp["contains_eep"] == true {
                    let e = eep.unwrap();
                    assert_eq!(format!("{:02X}", e.func), exp["func"], "{}", v["id"]);
                    assert_eq!(format!("{:02X}", e.type_), exp["type"], "{}", v["id"]);
                    assert_eq!(
                        format!("{:03X}", manufacturer.unwrap()),
                        exp["manufacturer"],
                        "{}",
                        v["id"]
                    );
                    // A teach-in is never a reading, even with the right profile.
                    if let Some(p) = library().get(e) {
                        assert_eq!(eep::decode(p, &t).unwrap_err(), eep::DecodeError::TeachIn);
                    }
                } else {
                    assert_eq!(eep, None);
                }
            }
            TeachIn::Ute(q) => {
                assert_eq!(v["kind"], "teach_in_ute");
                assert_eq!(format!("{:02X}", q.eep.rorg), exp["rorg_of_eep"]);
                assert_eq!(format!("{:02X}", q.eep.func), exp["func"]);
                assert_eq!(format!("{:02X}", q.eep.type_), exp["type"]);
                assert_eq!(format!("{:03X}", q.manufacturer), exp["manufacturer"]);
                assert_eq!(Json::from(q.channel), exp["channel"]);
                assert_eq!(Json::from(q.response_expected), exp["response_expected"]);
                assert_eq!(Json::from(!q.bidirectional), exp["unidirectional"]);
                let deletion = q.request == eep::UteRequest::Deletion;
                assert_eq!(Json::from(deletion), exp["delete"]);
            }
            TeachIn::OneBs => assert_eq!(v["kind"], "teach_in_1bs"),
        }
        n += 1;
    }
    assert_eq!(n, 32);
}

#[test]
fn no_data_vector_is_taken_for_a_teach_in() {
    for v in vectors().iter().filter(|v| v["kind"] == "eep_data") {
        let t = telegram(v);
        assert!(eep::teach_in(&t).is_none(), "{}", v["id"]);
    }
}
