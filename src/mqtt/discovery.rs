//! Home Assistant MQTT discovery (optional, `discovery = true`): one retained config message per
//! (device, value key), on `<discovery_prefix>/<component>/enocean_<sensor_id>/<key>/config`,
//! published before the first reading that carries the key (configured and learned devices
//! alike), so the sensor appears in Home Assistant without YAML. The entity's `device_class`,
//! `state_class` and binary mapping come from [`crate::eep::ha`], the unit from the reading.
//!
//! Templates index `value_json['values']` (never `value_json.values`, which Jinja resolves to
//! the dict method) and render `None` for a value the reading does not carry, which Home
//! Assistant shows as unknown.

use serde_json::{Map, Value, json};

use super::config::MqttConfig;
use super::topic::{Message, status_topic};
use crate::eep::ha::{self, Component};
use crate::telemetry::Telemetry;

/// A topic level made of `[A-Za-z0-9_-]` only (Home Assistant's rule for node and object ids).
pub fn id_level(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The discovery topic of `key` of the device `sensor_id`.
pub fn config_topic(cfg: &MqttConfig, component: Component, sensor_id: &str, key: &str) -> String {
    format!(
        "{}/{}/enocean_{}/{}/config",
        cfg.discovery_prefix,
        component.as_str(),
        id_level(sensor_id),
        id_level(key)
    )
}

/// A key as an entity name: `battery_level` → `Battery level`.
pub fn entity_name(key: &str) -> String {
    let spaced = key.replace('_', " ");
    let mut c = spaced.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => spaced,
    }
}

/// The retained discovery config of `key` from the reading `r`, whose state goes to `topic`.
pub fn config_message(cfg: &MqttConfig, r: &Telemetry, key: &str, topic: &str) -> Message {
    let map = ha::lookup(key);
    let reading = r.values.get(key);
    let (state_topic, value) = if cfg.value_topics {
        (format!("{topic}/{key}"), "value".to_owned())
    } else {
        (
            topic.to_owned(),
            format!("value_json['values'].get('{key}', {{}}).get('value')"),
        )
    };
    let value_template = match map.component {
        Component::Sensor if cfg.value_topics => None,
        Component::Sensor => Some(format!("{{{{ {value} }}}}")),
        Component::BinarySensor => {
            let on = match (map.on_label, cfg.value_topics) {
                (Some(label), _) => format!("v == '{label}'"),
                (None, true) => "v == 'true'".to_owned(),
                (None, false) => "v".to_owned(),
            };
            Some(format!(
                "{{% set v = {value} %}}{{{{ 'None' if v is none else ('ON' if {on} else 'OFF') }}}}"
            ))
        }
    };
    let mut c = Map::new();
    c.insert("name".into(), json!(entity_name(key)));
    c.insert(
        "unique_id".into(),
        json!(format!(
            "enocean_{}_{}",
            id_level(&r.sensor.id),
            id_level(key)
        )),
    );
    c.insert("state_topic".into(), json!(state_topic));
    if let Some(t) = value_template {
        c.insert("value_template".into(), json!(t));
    }
    if let Some(dc) = map.device_class {
        c.insert("device_class".into(), json!(dc));
    }
    if map.component == Component::Sensor {
        if let Some(unit) = reading.and_then(|x| x.unit.as_deref()) {
            c.insert("unit_of_measurement".into(), json!(unit));
        }
        if let Some(sc) = map.state_class
            && reading.is_some_and(|x| x.unit.is_some() || x.value.is_number())
        {
            c.insert("state_class".into(), json!(sc));
        }
    } else {
        c.insert("payload_on".into(), json!("ON"));
        c.insert("payload_off".into(), json!("OFF"));
    }
    c.insert(
        "availability_topic".into(),
        json!(status_topic(cfg, &r.gateway.id)),
    );
    c.insert("payload_available".into(), json!("online"));
    c.insert("payload_not_available".into(), json!("offline"));
    let mut device = Map::new();
    device.insert(
        "identifiers".into(),
        json!([format!("enocean_{}", id_level(&r.sensor.id))]),
    );
    device.insert(
        "name".into(),
        json!(
            r.sensor
                .name
                .as_deref()
                .map_or_else(|| format!("EnOcean {}", r.sensor.id), str::to_owned)
        ),
    );
    device.insert("manufacturer".into(), json!("EnOcean"));
    if let Some(eep) = &r.sensor.eep {
        device.insert("model".into(), json!(format!("EEP {eep}")));
    }
    device.insert(
        "via_device".into(),
        json!(format!("enocean-agent_{}", id_level(&r.gateway.id))),
    );
    c.insert("device".into(), Value::Object(device));
    c.insert(
        "origin".into(),
        json!({ "name": "enocean-agent", "sw_version": env!("CARGO_PKG_VERSION") }),
    );
    Message {
        topic: config_topic(cfg, map.component, &r.sensor.id, key),
        payload: serde_json::to_vec(&Value::Object(c)).unwrap_or_default(),
        retain: true,
    }
}
