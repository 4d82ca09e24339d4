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
