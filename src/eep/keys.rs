//! Semantic keys: the one documented list of names decoded values are keyed by, with the
//! canonical unit each value is converted to. `eep-profiles/README.md` carries the same table
//! (a test keeps the two in step).

/// What kind of value a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A number in the key's canonical unit.
    Number,
    /// A label from the profile's enum.
    Label,
    /// A flag.
    Bool,
    /// Whatever the profile gives (generic keys).
    Any,
}

/// One semantic key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemanticKey {
    /// The key, snake_case.
    pub name: &'static str,
    /// Canonical unit, None when unitless.
    pub unit: Option<&'static str>,
    /// The kind of value.
    pub kind: KeyKind,
    /// What it means.
    pub description: &'static str,
}

const fn k(
    name: &'static str,
    unit: Option<&'static str>,
    kind: KeyKind,
    description: &'static str,
) -> SemanticKey {
    SemanticKey {
        name,
        unit,
        kind,
        description,
    }
}

#[allow(unused_imports)]
use KeyKind::{Any, Bool, Label, Number};

/// Every semantic key, sorted by name.
pub static KEYS: &[SemanticKey] = &include!("keys_table.rs");

/// The key with this name.
pub fn lookup(name: &str) -> Option<&'static SemanticKey> {
    KEYS.binary_search_by(|k| k.name.cmp(name))
        .ok()
        .map(|i| &KEYS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_snake_case() {
        for w in KEYS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for key in KEYS {
            assert!(
                key.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                key.name
            );
            assert!(!key.description.is_empty(), "{}", key.name);
        }
        assert_eq!(lookup("temperature").unwrap().unit, Some("°C"));
        assert!(lookup("nope").is_none());
    }
}
