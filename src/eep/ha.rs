//! How a semantic key shows in Home Assistant: entity component (`sensor`, `binary_sensor`),
//! `device_class`, `state_class`, and for a binary sensor the label that means "on". One table
//! (`ha_table.rs`) next to the key list; keys it does not name fall back on their kind (numbers
//! are plain sensors with their unit, labels text sensors, flags binary sensors).

use super::keys::{self, KeyKind};

/// A Home Assistant entity component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// `sensor`: a number or a text.
    Sensor,
    /// `binary_sensor`: on or off.
    BinarySensor,
}

impl Component {
    /// The component's name in a discovery topic.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Sensor => "sensor",
            Component::BinarySensor => "binary_sensor",
        }
    }
}

/// One row of the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaKey {
    /// The semantic key.
    pub key: &'static str,
    /// Entity component.
    pub component: Component,
    /// `device_class`, when Home Assistant has one for it.
    pub device_class: Option<&'static str>,
    /// `state_class` (`measurement`, `total_increasing`), for numbers with history.
    pub state_class: Option<&'static str>,
    /// For a binary sensor of labels: the label that means "on" (a flag's `true` otherwise).
    pub on_label: Option<&'static str>,
}

const fn h(
    key: &'static str,
    component: Component,
    device_class: Option<&'static str>,
    state_class: Option<&'static str>,
    on_label: Option<&'static str>,
) -> HaKey {
    HaKey {
        key,
        component,
        device_class,
        state_class,
        on_label,
    }
}

#[allow(unused_imports)]
use Component::{BinarySensor, Sensor};

/// The mapped keys, sorted by key.
pub static HA_KEYS: &[HaKey] = &include!("ha_table.rs");

/// The Home Assistant view of `key`: the table's row, or one derived from the key's kind (unknown
/// keys are text sensors).
pub fn lookup(key: &str) -> HaKey {
    if let Ok(i) = HA_KEYS.binary_search_by(|k| k.key.cmp(key)) {
        return HA_KEYS[i];
    }
    let kind = keys::lookup(key).map(|k| k.kind);
    HaKey {
        key: "",
        component: if kind == Some(KeyKind::Bool) {
            Component::BinarySensor
        } else {
            Component::Sensor
        },
        device_class: None,
        state_class: (kind == Some(KeyKind::Number)).then_some("measurement"),
        on_label: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_names_known_keys_with_units_that_fit() {
        for w in HA_KEYS.windows(2) {
            assert!(w[0].key < w[1].key, "{} before {}", w[0].key, w[1].key);
        }
        for row in HA_KEYS {
            let k = keys::lookup(row.key)
                .unwrap_or_else(|| panic!("{} is not a semantic key", row.key));
            match row.component {
                Component::Sensor => {
                    assert_eq!(k.kind, KeyKind::Number, "{}", row.key);
                    assert!(k.unit.is_some(), "{} has no unit", row.key);
                }
                Component::BinarySensor => {
                    assert!(
                        matches!(k.kind, KeyKind::Label | KeyKind::Bool),
                        "{}",
                        row.key
                    );
                    assert_eq!(
                        row.on_label.is_some(),
                        k.kind == KeyKind::Label,
                        "{}",
                        row.key
                    );
                }
            }
        }
    }

    #[test]
    fn fallbacks_by_kind() {
        assert_eq!(lookup("temperature").device_class, Some("temperature"));
        let f = lookup("button_a0");
        assert_eq!(f.component, Component::BinarySensor);
        let n = lookup("angle");
        assert_eq!(
            (n.component, n.state_class),
            (Component::Sensor, Some("measurement"))
        );
        assert_eq!(lookup("no_such_key").component, Component::Sensor);
    }
}
