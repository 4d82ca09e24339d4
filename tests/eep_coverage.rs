//! Coverage of the EEP reference (`tests/data/reference_eeps.txt`: the 217 EEPs of the shared
//! EnOcean Alliance data dump, regenerated with `scripts/eep_reference.py ids`): the number of
//! reference EEPs without a built-in profile may only shrink.

use enocean_agent::eep::{EepId, Library};

/// Reference EEPs that have no built-in profile yet. Lower it when you add profiles; the test
/// fails if more are missing (a profile was lost) or fewer (update the number, and the README).
const MISSING: usize = 0;

/// Reference families (RORG-FUNC) without any built-in profile; may only shrink likewise.
const MISSING_FAMILIES: usize = 0;

fn reference() -> Vec<EepId> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference_eeps.txt"
    ))
    .unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.parse().unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn reference_eeps_without_a_profile_do_not_grow() {
    let lib = Library::builtin().unwrap();
    let all = reference();
    assert_eq!(all.len(), 217, "the reference lists 217 EEPs");
    let missing: Vec<String> = all
        .iter()
        .filter(|id| lib.get(**id).is_none())
        .map(|id| id.to_string())
        .collect();
    eprintln!(
        "{} of {} reference EEPs have a profile; missing: {}",
        all.len() - missing.len(),
        all.len(),
        missing.join(" ")
    );
    assert_eq!(
        missing.len(),
        MISSING,
        "reference EEPs without a profile: {}",
        missing.join(" ")
    );
}

#[test]
fn every_family_of_the_reference_has_a_profile() {
    let lib = Library::builtin().unwrap();
    let families: std::collections::BTreeSet<(u8, u8)> =
        reference().iter().map(|id| (id.rorg, id.func)).collect();
    let covered = families
        .iter()
        .filter(|(r, f)| lib.iter().any(|p| p.id.rorg == *r && p.id.func == *f))
        .count();
    eprintln!("{covered} of {} reference families covered", families.len());
    assert_eq!(families.len() - covered, MISSING_FAMILIES);
}

/// One field of the reference (`tests/data/reference_fields.tsv`, from
/// `scripts/eep_reference.py fields`).
struct RefField {
    eep: EepId,
    shortcut: String,
    /// Bit ranges, high part first.
    parts: Vec<(usize, usize)>,
    /// Raw range and value range, for linear fields.
    scale: Option<([f64; 2], [f64; 2])>,
    unit: String,
}

fn reference_fields() -> Vec<RefField> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reference_fields.tsv"
    ))
    .unwrap();
    let range = |s: &str| -> Option<[f64; 2]> {
        let (a, b) = s.split_once("..")?;
        Some([a.parse().ok()?, b.parse().ok()?])
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert_eq!(c.len(), 6, "{l}");
            RefField {
                eep: c[0].parse().unwrap(),
                shortcut: c[1].to_string(),
                parts: c[2]
                    .split(',')
                    .map(|p| {
                        let (o, s) = p.split_once(':').unwrap();
                        (o.parse().unwrap(), s.parse().unwrap())
                    })
                    .collect(),
                scale: range(c[3]).zip(range(c[4])),
                unit: c[5].to_string(),
            }
        })
        .collect()
}

/// Reference fields no profile field sits on, and why.
const POSITION_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "A5-11-05",
        "RS",
        "split into one field per channel (RS1 bit 30, RS2 bit 29)",
    ),
    ("A5-20-11", "RES", "a reserved field the reference names"),
    (
        "A5-3F-00",
        "RSLV",
        "DB2 and DB1 are split into sub-telegram count and RSSI pairs",
    ),
    (
        "A5-3F-00",
        "MC",
        "1BS (RORG D5) form of the test: not decodable under an A5 profile",
    ),
    (
        "A5-3F-00",
        "MSGS",
        "1BS (RORG D5) form of the test: not decodable under an A5 profile",
    ),
    (
        "D2-00-01",
        "TT (LSB)",
        "joined with TT (MSB) into one split field",
    ),
];

/// Reference scales a profile departs from on purpose (each explained in the profile file).
const SCALE_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "A5-09-0B",
        "Ract",
        "0…6553 read as 0.1 per step (the reference's 6553 is 6553.5)",
    ),
    (
        "D2-02-00",
        "MAT",
        "the reference's 0…255 → 10…2550 s is 10 s steps as in D2-01",
    ),
    ("D2-02-01", "MAT", "as D2-02-00"),
    ("D2-02-02", "MAT", "as D2-02-00"),
    (
        "D2-14-30",
        "TMP",
        "the reference's offsets are wrong; corrected and cross-checked",
    ),
    (
        "D2-14-30",
        "HUM",
        "the reference's offsets are wrong; corrected and cross-checked",
    ),
];

fn excepted(list: &[(&str, &str, &str)], f: &RefField) -> bool {
    list.iter()
        .any(|(e, s, _)| *e == f.eep.to_string() && *s == f.shortcut)
}

/// Cross-check: every field the reference defines is read from the same bits by the profile
/// (as one field, a split field or a case selector), apart from the listed exceptions.
#[test]
fn every_reference_field_is_read_from_the_same_bits() {
    let lib = Library::builtin().unwrap();
    let fields = reference_fields();
    assert!(fields.len() > 3000, "{} reference fields", fields.len());
    let mut wrong = Vec::new();
    for f in &fields {
        let p = lib.get(f.eep).unwrap();
        let size: usize = f.parts.iter().map(|(_, s)| s).sum();
        let (offset, first) = f.parts[0];
        let found = p.cases.iter().any(|c| {
            c.fields
                .iter()
                .map(|pf| &pf.spec)
                .any(|pf| pf.offset == offset && (pf.total_size() == size || pf.size == first))
                || c.select
                    .iter()
                    .any(|s| s.offset == offset && s.size == size)
        });
        if !found && !excepted(POSITION_EXCEPTIONS, f) {
            wrong.push(format!("{} {} {:?}", f.eep, f.shortcut, f.parts));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} fields:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Cross-check: every linear scale of the reference is a profile field's scale at the same
/// offset (converted to the semantic key's unit: klx → lx, mph → m/s, min → s), apart from the
/// listed exceptions.
#[test]
fn every_reference_scale_is_the_profiles_scale() {
    let lib = Library::builtin().unwrap();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for f in reference_fields() {
        let Some(([r0, r1], [v0, v1])) = f.scale else {
            continue;
        };
        if r0 == r1 || excepted(SCALE_EXCEPTIONS, &f) {
            continue;
        }
        // The factor from the reference's unit to the semantic key's unit.
        let convert = |key_unit: Option<&str>| match (f.unit.as_str(), key_unit) {
            ("klx", Some("lx")) => 1000.0,
            ("mph", Some("m/s")) => 0.44704,
            ("min", Some("s")) => 60.0,
            _ => 1.0,
        };
        let slope = (v1 - v0) / (r1 - r0);
        let intercept = v0 - r0 * slope;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0);
        let p = lib.get(f.eep).unwrap();
        let offset = f.parts[0].0;
        let matches = p
            .cases
            .iter()
            .flat_map(|c| &c.fields)
            .filter(|pf| pf.spec.offset == offset)
            .any(|pf| {
                let k = convert(pf.key.unit);
                match pf.linear() {
                    Some(l) => close(l.slope, slope * k) && close(l.intercept, intercept * k),
                    // A raw integer field is the identity scale.
                    None => close(slope * k, 1.0) && close(intercept, 0.0),
                }
            });
        checked += 1;
        if !matches {
            wrong.push(format!(
                "{} {}: {r0}..{r1} -> {v0}..{v1} {}",
                f.eep, f.shortcut, f.unit
            ));
        }
    }
    assert!(checked > 300, "{checked} scales checked");
    assert!(
        wrong.is_empty(),
        "{} scales:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
