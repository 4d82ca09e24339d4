//! Rendering a delivery body: the default envelope or a custom template, for one or more records.
//! A body is rendered once; the outbox stores it and every retry or resend sends the same bytes.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::config::WebhookConfig;
use crate::outbox::record::StoredRecord;
use crate::telemetry::{Gateway, Raw, Reading, Sensor, Signal, Telemetry};

/// What a delivery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Received telemetry.
    Telemetry,
    /// A test delivery (`webhook test`).
    Test,
    /// A health event (`gateway.status`, `device.silent`, `device.back`): one record per
    /// delivery.
    Health(crate::telemetry::Kind),
}

impl Event {
    /// The `event` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Telemetry => "telemetry",
            Event::Test => "test",
            Event::Health(kind) => kind.event(),
        }
    }

    /// The event of a delivery whose first record is of `kind`.
    pub fn of(kind: crate::telemetry::Kind) -> Self {
        if kind.is_health() {
            Event::Health(kind)
        } else {
            Event::Telemetry
        }
    }
}

/// The envelope format version.
pub const ENVELOPE_VERSION: &str = "1.0";

#[derive(Serialize)]
struct Envelope<'a> {
    version: &'static str,
    event: &'static str,
    id: &'a str,
    timestamp: String,
    gateway: &'a Gateway,
    records: &'a [Telemetry],
}

/// The delivery id for these records on this webhook: derived from the webhook name and the
/// telemetry ids, so a delivery re-rendered after a crash keeps its id (receivers deduplicate on
/// it, and it is the Standard Webhooks `webhook-id`).
pub fn delivery_id(webhook: &str, records: &[Telemetry]) -> String {
    delivery_id_of(webhook, records.iter().map(|r| r.id.as_str()))
}

/// [`delivery_id`] of the records with these ids.
pub fn delivery_id_of<'a>(webhook: &str, ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    h.update(webhook.as_bytes());
    for id in ids {
        h.update(b"\n");
        h.update(id.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    uuid::Uuid::from_bytes(b).to_string()
}

/// Renders the body for `records` (at least one). With a custom template and several records the
/// body is a JSON array with one rendered object per record.
pub fn render(
    cfg: &WebhookConfig,
    event: Event,
    id: &str,
    created: jiff::Timestamp,
    records: &[Telemetry],
) -> Result<Vec<u8>, serde_json::Error> {
    let timestamp = timestamp_text(created);
    match &cfg.template {
        None => {
            let empty = Gateway::default();
            let env = Envelope {
                version: ENVELOPE_VERSION,
                event: event.as_str(),
                id,
                timestamp,
                gateway: records.first().map(|r| &r.gateway).unwrap_or(&empty),
                records,
            };
            serde_json::to_vec(&env)
        }
        Some(t) => {
            let mut out = Vec::with_capacity(records.len());
            for r in records {
                let mut ctx = serde_json::to_value(r)?;
                if let Value::Object(m) = &mut ctx {
                    let whole = Value::Object(m.clone());
                    m.insert("telemetry".into(), whole);
                    m.insert("event".into(), Value::from(event.as_str()));
                    m.insert("version".into(), Value::from(ENVELOPE_VERSION));
                    m.insert("timestamp".into(), Value::from(timestamp.clone()));
                    m.insert("delivery".into(), serde_json::json!({ "id": id }));
                }
                out.push(t.render(&ctx));
            }
            if out.len() == 1 {
                serde_json::to_vec(&out[0])
            } else {
                serde_json::to_vec(&out)
            }
        }
    }
}

/// The envelope's `timestamp`: `created` to the millisecond, RFC 3339 with three decimals.
fn timestamp_text(created: jiff::Timestamp) -> String {
    let t = created.round(jiff::Unit::Millisecond).unwrap_or(created);
    format!("{t:.3}")
}

/// [`render`] of records read back from the outbox: the default envelope is written around
/// their stored texts (the same bytes as `render` of the parsed readings); a template renders
/// the parsed readings.
pub fn render_stored(
    cfg: &WebhookConfig,
    event: Event,
    id: &str,
    created: jiff::Timestamp,
    records: &[StoredRecord],
) -> Result<Vec<u8>, serde_json::Error> {
    if cfg.template.is_some() {
        let parsed = records
            .iter()
            .map(StoredRecord::telemetry)
            .collect::<Result<Vec<_>, _>>()?;
        return render(cfg, event, id, created, &parsed);
    }
    let mut out = Vec::with_capacity(256 + records.len() * 768);
    // As serde writes `Envelope`: its members in order, no spaces.
    out.extend_from_slice(b"{\"version\":");
    serde_json::to_writer(&mut out, ENVELOPE_VERSION)?;
    out.extend_from_slice(b",\"event\":");
    serde_json::to_writer(&mut out, event.as_str())?;
    out.extend_from_slice(b",\"id\":");
    serde_json::to_writer(&mut out, id)?;
    out.extend_from_slice(b",\"timestamp\":");
    serde_json::to_writer(&mut out, &timestamp_text(created))?;
    out.extend_from_slice(b",\"gateway\":");
    match records.first() {
        Some(r) => r.write_gateway(&mut out)?,
        None => serde_json::to_writer(&mut out, &Gateway::default())?,
    }
    out.extend_from_slice(b",\"records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        r.write_json(&mut out)?;
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// A plausible sample telemetry for test deliveries (a temperature and humidity sensor).
pub fn sample_telemetry(gateway: Gateway, now: jiff::Timestamp) -> Telemetry {
    let mut values = std::collections::BTreeMap::new();
    values.insert(
        "temperature".into(),
        Reading {
            value: serde_json::json!(21.4),
            unit: Some("°C".into()),
            shortcut: "TMP".into(),
            raw: 134,
            status: None,
        },
    );
    values.insert(
        "humidity".into(),
        Reading {
            value: serde_json::json!(48.0),
            unit: Some("%".into()),
            shortcut: "HUM".into(),
            raw: 120,
            status: None,
        },
    );
    Telemetry {
        id: crate::telemetry::fresh_id(),
        kind: Default::default(),
        teach_in: None,
        status: None,
        silence: None,
        seq: 0,
        received_at: Some(now),
        clock: Some(crate::telemetry::TimeSource::Synchronized),
        received_monotonic: None,
        gateway,
        sensor: Sensor {
            id: "0180A3F2".into(),
            name: Some("Test sensor".into()),
            eep: Some("A5-04-01".into()),
            tags: Default::default(),
        },
        values,
        signal: Signal {
            dbm: Some(-68),
            repeater_count: 0,
            sub_telegrams: Some(1),
        },
        raw: Raw {
            rorg: "A5".into(),
            payload: "78860A08".into(),
            status: "00".into(),
            destination: Some("FFFFFFFF".into()),
            security_level: Some(0),
            withheld: None,
        },
        decode_error: None,
        secure: None,
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;

    /// Readings as the sender reads them back: committed text (seq 0), then the row's seq.
    fn stored(readings: &[Telemetry]) -> Vec<StoredRecord> {
        readings
            .iter()
            .map(|t| {
                let mut c = t.clone();
                c.seq = 0;
                let json = serde_json::to_string(&c).unwrap();
                StoredRecord::read(t.seq, json, false).unwrap()
            })
            .collect()
    }

    /// `n` readings of the simulated building `step` apart from `start`, seqs from `first`.
    fn numbered(n: usize, start: &str, step: jiff::SignedDuration, first: u64) -> Vec<Telemetry> {
        let mut readings = crate::sim::sample_readings(n, start.parse().unwrap(), step);
        for (i, t) in readings.iter_mut().enumerate() {
            t.seq = first + i as u64;
        }
        readings
    }

    #[test]
    fn the_spliced_envelope_is_the_serialised_one_byte_for_byte() {
        let readings = numbered(
            60,
            "2026-03-01T08:00:00.5Z",
            jiff::SignedDuration::from_millis(733),
            41,
        );
        let cfg = WebhookConfig::new("w", "http://127.0.0.1/hook");
        let created = "2026-03-01T08:01:02.3456Z".parse().unwrap();
        for batch in [1, 2, 7, 60] {
            for chunk in readings.chunks(batch) {
                let id = delivery_id(&cfg.name, chunk);
                let recs = stored(chunk);
                assert_eq!(
                    delivery_id_of(&cfg.name, recs.iter().map(|r| r.id.as_str())),
                    id
                );
                for event in [
                    Event::Telemetry,
                    Event::Health(crate::telemetry::Kind::GatewayStatus),
                ] {
                    let a = render(&cfg, event, &id, created, chunk).unwrap();
                    let b = render_stored(&cfg, event, &id, created, &recs).unwrap();
                    assert_eq!(String::from_utf8(b).unwrap(), String::from_utf8(a).unwrap());
                }
            }
        }
    }

    #[test]
    fn a_template_renders_the_parsed_readings() {
        let start = "2026-03-01T08:00:00Z".parse().unwrap();
        let readings = numbered(
            3,
            "2026-03-01T08:00:00Z",
            jiff::SignedDuration::from_secs(1),
            5,
        );
        let mut cfg = WebhookConfig::new("w", "http://127.0.0.1/hook");
        let table: toml::Table = toml::from_str(
            "sensor = \"{{sensor.id}}\"\nseq = \"{{seq}}\"\nid = \"{{delivery.id}}\"",
        )
        .unwrap();
        cfg.template = Some(super::super::template::Template::compile(&table).unwrap());
        let recs = stored(&readings);
        let a = render(&cfg, Event::Telemetry, "d", start, &readings).unwrap();
        let b = render_stored(&cfg, Event::Telemetry, "d", start, &recs).unwrap();
        assert_eq!(a, b);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v[2]["seq"], Value::from(7));
    }
}
