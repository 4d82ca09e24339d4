//! The telemetry object: one received telegram as the agent commits, stores and delivers it.
//! Its JSON form is the record inside every webhook body (see `DESIGN.md`, "Telemetry object").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::erp1::Telegram;

/// One record, ready to be stored and delivered: a reading (decoded or raw) or a teach-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Unique and stable across retries and resends (UUIDv7: sortable by creation time).
    pub id: String,
    /// What the record is: a reading (`telemetry`) or a device announcing itself (`teach_in`).
    #[serde(default)]
    pub kind: Kind,
    /// For a `teach_in` record: what the device announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teach_in: Option<TeachInRecord>,
    /// Per-gateway sequence number, strictly increasing; assigned when the outbox commits it
    /// (0 until then).
    pub seq: u64,
    /// When the gateway received the telegram (RFC 3339, UTC, milliseconds).
    pub received_at: jiff::Timestamp,
    /// Which gateway received it.
    pub gateway: Gateway,
    /// Which device sent it.
    pub sensor: Sensor,
    /// Decoded values keyed by semantic key (`temperature`, `humidity`, …); empty when the
    /// telegram could not be decoded.
    pub values: BTreeMap<String, Reading>,
    /// Radio signal facts.
    pub signal: Signal,
    /// The telegram as received, so nothing is lost even when decoding is not possible.
    pub raw: Raw,
}

/// The kinds of record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A reading, decoded or raw.
    #[default]
    Telemetry,
    /// A teach-in telegram: a device announced itself (never a reading).
    TeachIn,
}

/// What a teach-in record tells the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeachInRecord {
    /// `secure` for a secure teach-in (RORG 0x35).
    #[serde(rename = "type")]
    pub kind: String,
    /// For a secure teach-in: its TEACH_IN_INFO facts. The key it carried is never kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<crate::secure::SecureTeachIn>,
    /// Always `withheld` for a secure teach-in: the device key does not leave the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The gateway that received a telegram.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    /// Configured gateway name.
    pub id: String,
    /// The stick's base ID (eight hex digits), once the handshake has read it.
    pub base_id: Option<String>,
}

/// The sending device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sensor {
    /// Sender ID, eight uppercase hex digits.
    pub id: String,
    /// Configured or learned name.
    pub name: Option<String>,
    /// EEP as "RR-FF-TT", None when unknown.
    pub eep: Option<String>,
    /// Configured tags (room, floor, …).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One decoded value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The value: a number, a label (enums), a bool, or null when a sentinel says there is none.
    pub value: serde_json::Value,
    /// Canonical unit of the semantic key ("°C", "%", …), None for unitless values.
    pub unit: Option<String>,
    /// The spec's shortcut (`TMP`, `HUM`, …).
    pub shortcut: String,
    /// The raw bits as read from the telegram.
    pub raw: u64,
    /// Why there is no value (`error`, `out_of_range`, `invalid`, …), when a sentinel matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Signal facts of the received telegram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// Received signal strength, negative dBm; None when the stick did not report it.
    pub dbm: Option<i16>,
    /// How many repeaters relayed it.
    pub repeater_count: u8,
    /// Sub-telegrams received, when reported.
    pub sub_telegrams: Option<u8>,
}

/// The telegram as received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raw {
    /// RORG as two hex digits.
    pub rorg: String,
    /// Payload as uppercase hex.
    pub payload: String,
    /// Status byte as two hex digits.
    pub status: String,
    /// Destination ID, eight hex digits, when reported.
    pub destination: Option<String>,
    /// Security level, when reported.
    pub security_level: Option<u8>,
    /// Why the payload is empty although the telegram had one (`key material` for a secure
    /// teach-in); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
}

impl Telemetry {
    /// Telemetry for a received telegram with a fresh id and no decoded values yet.
    pub fn from_telegram(t: &Telegram, received_at: jiff::Timestamp, gateway: Gateway) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            kind: Kind::Telemetry,
            teach_in: None,
            seq: 0,
            received_at,
            gateway,
            sensor: Sensor {
                id: t.sender_hex(),
                ..Sensor::default()
            },
            values: BTreeMap::new(),
            signal: Signal {
                dbm: t.dbm(),
                repeater_count: t.repeater_count(),
                sub_telegrams: t.sub_telegrams,
            },
            raw: Raw {
                rorg: format!("{:02X}", t.rorg),
                payload: t.payload_hex(),
                status: format!("{:02X}", t.status),
                destination: t.destination.map(|d| format!("{d:08X}")),
                security_level: t.security_level,
                withheld: t.carries_key().then(|| "key material".to_owned()),
            },
        }
    }
}

impl Telemetry {
    /// The `teach_in` record of a secure teach-in telegram: sender, signal and the TEACH_IN_INFO
    /// facts; no key material in any field.
    pub fn secure_teach_in(
        t: &Telegram,
        info: crate::secure::SecureTeachIn,
        received_at: jiff::Timestamp,
        gateway: Gateway,
    ) -> Self {
        let mut tm = Self::from_telegram(t, received_at, gateway);
        tm.kind = Kind::TeachIn;
        tm.teach_in = Some(TeachInRecord {
            kind: "secure".to_owned(),
            secure: Some(info),
            key: Some("withheld".to_owned()),
        });
        tm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_follows_design() {
        let t = Telegram::from_parts(
            &[0xA5, 0x78, 0x86, 0x0A, 0x08, 0x01, 0x80, 0xA3, 0xF2, 0x00],
            &[1, 0xFF, 0xFF, 0xFF, 0xFF, 68, 0],
        )
        .unwrap();
        let ts: jiff::Timestamp = "2026-11-22T20:05:11.482Z".parse().unwrap();
        let tm = Telemetry::from_telegram(
            &t,
            ts,
            Gateway {
                id: "lobby-pi".into(),
                base_id: None,
            },
        );
        let v = serde_json::to_value(&tm).unwrap();
        assert_eq!(v["sensor"]["id"], "0180A3F2");
        assert_eq!(v["signal"]["dbm"], -68);
        assert_eq!(v["raw"]["payload"], "78860A08");
        assert_eq!(v["received_at"], "2026-11-22T20:05:11.482Z");
        assert_eq!(v["id"].as_str().unwrap().len(), 36);
        let back: Telemetry = serde_json::from_value(v).unwrap();
        assert_eq!(back, tm);
    }
}
