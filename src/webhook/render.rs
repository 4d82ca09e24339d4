//! Rendering a delivery body: the default envelope or a custom template, for one or more records.
//! A body is rendered once; the outbox stores it and every retry or resend sends the same bytes.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::config::WebhookConfig;
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
    let mut h = Sha256::new();
    h.update(webhook.as_bytes());
    for r in records {
        h.update(b"\n");
        h.update(r.id.as_bytes());
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
    let timestamp = created.round(jiff::Unit::Millisecond).unwrap_or(created);
    let timestamp = format!("{timestamp:.3}");
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

/// A plausible sample telemetry for test deliveries (a temperature and humidity sensor).
pub fn sample_telemetry(gateway: Gateway, now: jiff::Timestamp) -> Telemetry {
    let mut values = std::collections::BTreeMap::new();
    values.insert(
        "temperature".to_owned(),
        Reading {
            value: serde_json::json!(21.4),
            unit: Some("°C".into()),
            shortcut: "TMP".into(),
            raw: 134,
            status: None,
        },
    );
    values.insert(
        "humidity".to_owned(),
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
