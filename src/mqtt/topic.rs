//! Topics and payloads (sans-IO): the messages one record becomes on one output. A reading goes
//! to the `topic` template with the record JSON (or the custom payload), optionally each value
//! to `<topic>/<key>`, optionally retained, and Home Assistant discovery configs first for the
//! values a device has not announced yet; any other record (a teach-in, a health event) goes to
//! `event_topic`, never retained.

use std::collections::HashSet;

use serde_json::Value;

use super::config::MqttConfig;
use crate::telemetry::{Kind, Telemetry};

/// One message to publish (QoS 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Retain flag.
    pub retain: bool,
}

/// A compiled topic template: literal text and placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Gateway,
    SensorId,
    Eep,
    Kind,
    Name,
    Output,
}

/// What fills a topic's placeholders.
#[derive(Debug, Clone, Copy)]
pub struct TopicVars<'a> {
    /// `{gateway}`.
    pub gateway: &'a str,
    /// `{output}`: the output's name.
    pub output: &'a str,
    /// `{sensor_id}`.
    pub sensor_id: &'a str,
    /// `{eep}` (`unknown` when none).
    pub eep: Option<&'a str>,
    /// `{kind}`: `telemetry`, `teach_in`, `gateway.status`, …
    pub kind: &'a str,
    /// `{name}`: the sensor's name, or its id.
    pub name: Option<&'a str>,
}

impl TopicTemplate {
    /// Compiles `text`: literal topic text (no `+` or `#` wildcards, no empty template) with the
    /// placeholders `{gateway}`, `{sensor_id}`, `{eep}`, `{kind}`, `{name}`, `{output}`.
    pub fn compile(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.contains(['+', '#', '\0']) {
            return Err("must not contain the wildcards + or # (a topic to publish to)".into());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {text:?}"))?;
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "gateway" => Part::Gateway,
                "sensor_id" => Part::SensorId,
                "eep" => Part::Eep,
                "kind" => Part::Kind,
                "name" => Part::Name,
                "output" => Part::Output,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}}: use {{gateway}}, {{sensor_id}}, {{eep}}, \
                         {{kind}}, {{name}} or {{output}}"
                    ));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("a '}}' without its '{{' in {text:?}"));
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// True when a placeholder depends on the record (anything but `{gateway}` and `{output}`).
    pub fn uses_record(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::SensorId | Part::Eep | Part::Kind | Part::Name))
    }

    /// The topic for these values. Inserted values cannot add levels or wildcards: `/`, `+`,
    /// `#` become `_`, and an empty value `_`.
    pub fn render(&self, v: &TopicVars<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Gateway => push_level(&mut out, v.gateway),
                Part::SensorId => push_level(&mut out, v.sensor_id),
                Part::Eep => push_level(&mut out, v.eep.unwrap_or("unknown")),
                Part::Kind => push_level(&mut out, v.kind),
                Part::Name => push_level(&mut out, v.name.unwrap_or(v.sensor_id)),
                Part::Output => push_level(&mut out, v.output),
            }
        }
        out
    }
}

fn push_level(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('_');
        return;
    }
    out.extend(value.chars().map(|c| match c {
        '/' | '+' | '#' | '\0' => '_',
        c => c,
    }));
}

/// The record's kind as its JSON names it (`telemetry`, `teach_in`, …).
pub fn kind_name(kind: &Kind) -> String {
    kind.as_str().to_owned()
}

/// The topic placeholders of a record on an output.
pub fn vars<'a>(cfg: &'a MqttConfig, r: &'a Telemetry, kind: &'a str) -> TopicVars<'a> {
    TopicVars {
        gateway: &r.gateway.id,
        output: &cfg.name,
        sensor_id: &r.sensor.id,
        eep: r.sensor.eep.as_deref(),
        kind,
        name: r.sensor.name.as_deref(),
    }
}

/// The availability topic of an output for `gateway`.
pub fn status_topic(cfg: &MqttConfig, gateway: &str) -> String {
    cfg.topics.status.render(&TopicVars {
        gateway,
        output: &cfg.name,
        sensor_id: "",
        eep: None,
        kind: "status",
        name: None,
    })
}

/// The payload of a record: the record JSON, or the custom template rendered with the same
/// context as webhook payloads (the record's fields, plus `telemetry`, `event`, `version`,
/// `timestamp`, `delivery.id`).
pub fn payload(cfg: &MqttConfig, r: &Telemetry, id: &str) -> Result<Vec<u8>, serde_json::Error> {
    match &cfg.template {
        None => serde_json::to_vec(r),
        Some(t) => {
            let mut ctx = serde_json::to_value(r)?;
            if let Value::Object(m) = &mut ctx {
                let whole = Value::Object(m.clone());
                let ts = r
                    .received_at
                    .map(|t| format!("{:.3}", t.round(jiff::Unit::Millisecond).unwrap_or(t)));
                m.insert("telemetry".into(), whole);
                m.insert("event".into(), Value::from(kind_name(&r.kind)));
                m.insert(
                    "version".into(),
                    Value::from(crate::webhook::render::ENVELOPE_VERSION),
                );
                m.insert("timestamp".into(), ts.map_or(Value::Null, Value::from));
                m.insert("delivery".into(), serde_json::json!({ "id": id }));
            }
            serde_json::to_vec(&t.render(&ctx))
        }
    }
}

/// A value as a value topic carries it: a number or bool as its JSON text, a label as itself.
/// None for null (a sentinel: the record's JSON says why).
pub fn plain(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A (device, value key) pair whose Home Assistant discovery config was published.
pub type Announced = (String, String);

/// The messages of one record, in publishing order, and the (device, key) pairs whose discovery
/// config they carry (first, before the state). `announced` holds the pairs already
/// acknowledged on this output's session; the caller adds the new ones once the record's
/// PUBACKs came, so a config lost with a connection is published again.
pub fn messages(
    cfg: &MqttConfig,
    r: &Telemetry,
    announced: &HashSet<Announced>,
) -> Result<(Vec<Message>, Vec<Announced>), serde_json::Error> {
    let kind = kind_name(&r.kind);
    let id = r.id.as_str();
    if r.kind != Kind::Telemetry {
        let m = Message {
            topic: cfg.topics.event.render(&vars(cfg, r, &kind)),
            payload: payload(cfg, r, id)?,
            retain: false,
        };
        return Ok((vec![m], Vec::new()));
    }
    let topic = cfg.topics.reading.render(&vars(cfg, r, &kind));
    let mut out = Vec::new();
    let mut new = Vec::new();
    if cfg.discovery {
        for key in r.values.keys() {
            let pair = (r.sensor.id.clone(), key.to_string());
            if announced.contains(&pair) {
                continue;
            }
            out.push(super::discovery::config_message(cfg, r, key, &topic));
            new.push(pair);
        }
    }
    out.push(Message {
        topic: topic.clone(),
        payload: payload(cfg, r, id)?,
        retain: cfg.retain,
    });
    if cfg.value_topics {
        for (key, reading) in &r.values {
            if let Some(v) = plain(&reading.value) {
                out.push(Message {
                    topic: format!("{topic}/{key}"),
                    payload: v.into_bytes(),
                    retain: cfg.retain,
                });
            }
        }
    }
    Ok((out, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v<'a>() -> TopicVars<'a> {
        TopicVars {
            gateway: "lobby",
            output: "home",
            sensor_id: "0180A3F2",
            eep: Some("A5-04-01"),
            kind: "telemetry",
            name: Some("Office 2/14 #1"),
        }
    }

    #[test]
    fn templates_render_and_keep_levels() {
        let t = TopicTemplate::compile("enocean/{gateway}/{sensor_id}").unwrap();
        assert_eq!(t.render(&v()), "enocean/lobby/0180A3F2");
        let t = TopicTemplate::compile("x/{name}/{eep}/{kind}/{output}").unwrap();
        assert_eq!(t.render(&v()), "x/Office 2_14 _1/A5-04-01/telemetry/home");
        assert!(t.uses_record());
        assert!(!TopicTemplate::compile("s/{gateway}").unwrap().uses_record());
        for bad in ["", "a/#", "a/+/b", "a/{nope}", "a/{gateway", "a}"] {
            assert!(TopicTemplate::compile(bad).is_err(), "{bad:?}");
        }
    }

    fn record(kind: Kind) -> Telemetry {
        let mut r = crate::webhook::render::sample_telemetry(
            crate::telemetry::Gateway {
                id: "lobby".into(),
                base_id: None,
            },
            jiff::Timestamp::UNIX_EPOCH,
        );
        r.kind = kind;
        r
    }

    fn output(edit: impl FnOnce(&mut MqttConfig)) -> MqttConfig {
        let mut c = MqttConfig::new("home", "mqtt://127.0.0.1");
        edit(&mut c);
        c.validate(std::path::Path::new(".")).unwrap();
        c
    }

    #[test]
    fn a_reading_is_its_json_then_its_values_with_new_discovery_configs_first() {
        let cfg = output(|c| {
            c.discovery = true;
            c.value_topics = true;
            c.retain = true;
        });
        let r = record(Kind::Telemetry);
        let (msgs, new) = messages(&cfg, &r, &HashSet::new()).unwrap();
        let topics: Vec<&str> = msgs.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "homeassistant/sensor/enocean_0180A3F2/humidity/config",
                "homeassistant/sensor/enocean_0180A3F2/temperature/config",
                "enocean/lobby/0180A3F2",
                "enocean/lobby/0180A3F2/humidity",
                "enocean/lobby/0180A3F2/temperature",
            ]
        );
        assert!(msgs.iter().all(|m| m.retain));
        let json: serde_json::Value = serde_json::from_slice(&msgs[2].payload).unwrap();
        assert_eq!(json["id"], r.id.as_str());
        assert_eq!(msgs[4].payload, b"21.4");
        // Once acknowledged, a pair is not announced again.
        let done: HashSet<Announced> = new.into_iter().collect();
        let (again, more) = messages(&cfg, &r, &done).unwrap();
        assert_eq!(again.len(), 3);
        assert!(more.is_empty());
    }

    #[test]
    fn other_kinds_go_to_the_event_topic_unretained_and_custom_payloads_render() {
        let cfg = output(|c| {
            c.retain = true;
            c.payload = Some(
                toml::from_str(
                    "device = \"{{sensor.id}}\"\nkind = \"{{event}}\"\nid = \"{{delivery.id}}\"",
                )
                .unwrap(),
            );
        });
        let r = record(Kind::TeachIn);
        let (msgs, _) = messages(&cfg, &r, &HashSet::new()).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].topic, "enocean/lobby/events/teach_in");
        assert!(!msgs[0].retain);
        let json: serde_json::Value = serde_json::from_slice(&msgs[0].payload).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"device": "0180A3F2", "kind": "teach_in", "id": r.id})
        );
        let r = record(Kind::GatewayStatus);
        assert_eq!(
            messages(&cfg, &r, &HashSet::new()).unwrap().0[0].topic,
            "enocean/lobby/events/gateway.status"
        );
    }

    #[test]
    fn plain_values() {
        assert_eq!(plain(&serde_json::json!(21.4)).as_deref(), Some("21.4"));
        assert_eq!(plain(&serde_json::json!("open")).as_deref(), Some("open"));
        assert_eq!(plain(&serde_json::json!(true)).as_deref(), Some("true"));
        assert_eq!(plain(&Value::Null), None);
    }
}
