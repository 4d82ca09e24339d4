//! JSON views of decoded frames and decoder events, as printed by `decode` (JSON Lines).
//! The keys are a stable interface that other tools rely on.

use serde_json::{Map, Value, json};

use crate::erp1::Telegram;
use crate::esp3::{Event, Frame, PacketType};

/// The JSON object for one frame: packet type, hex fields, and a `telegram` object for RADIO_ERP1.
pub fn frame_json(frame: &Frame) -> Map<String, Value> {
    let mut obj = Map::new();
    let pt = frame.packet_type();
    obj.insert("packet_type".into(), pt.code().into());
    obj.insert("packet_type_name".into(), pt.name().into());
    // A secure teach-in's data carries a device key: only its RORG and TEACH_IN_INFO are shown.
    let data = match frame.data() {
        [crate::erp1::rorg::SEC_TI, info, ..] if pt == PacketType::RadioErp1 => {
            format!("{:02X}{info:02X}", crate::erp1::rorg::SEC_TI)
        }
        d => hex::encode_upper(d),
    };
    obj.insert("data".into(), data.into());
    obj.insert(
        "optional".into(),
        hex::encode_upper(frame.optional()).into(),
    );
    if pt == PacketType::RadioErp1 {
        let telegram = match Telegram::from_frame(frame) {
            Ok(t) => telegram_json(&t),
            Err(e) => json!({ "error": e.to_string() }),
        };
        obj.insert("telegram".into(), telegram);
    }
    obj
}

/// The JSON object for one radio telegram.
pub fn telegram_json(t: &Telegram) -> Value {
    let mut v = json!({
        "rorg": format!("{:02X}", t.rorg),
        "sender": t.sender_hex(),
        "status": t.status,
        "repeater_count": t.repeater_count(),
        "payload": t.payload_hex(),
        "dbm": t.dbm(),
        "destination": t.destination.map(|d| format!("{d:08X}")),
        "sub_telegrams": t.sub_telegrams,
        "security_level": t.security_level,
    });
    if t.carries_key() {
        v["withheld"] = "key material".into();
    }
    v
}

/// The JSON object for a decoder event: `event` (its name), `offset`, and `count` where it has one.
pub fn event_json(event: &Event) -> Value {
    let mut v = json!({ "event": event.name(), "offset": event.offset() });
    if let Event::DiscardedBytes { count, .. } | Event::GapTimeout { count, .. } = event {
        v["count"] = (*count).into();
    }
    v
}

/// Adds the EEP keys to a telegram's JSON object: `eep` (the profile used, or null), `values`
/// (keyed by semantic key, each `{value, unit, shortcut, raw}` plus `status` when there is no
/// value) and `teach_in` (what a teach-in telegram announces, or null). A teach-in is never
/// decoded as a reading; a telegram the profile cannot decode gets `decode_error`.
pub fn add_eep_json(
    obj: &mut Value,
    t: &Telegram,
    profile: Option<&crate::eep::Profile>,
    direction: Option<u8>,
) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let teach_in = crate::eep::teach_in(t);
    map.insert(
        "teach_in".into(),
        teach_in.map_or(Value::Null, |ti| ti.to_json()),
    );
    let mut eep = Value::Null;
    let mut values = Map::new();
    if let Some(p) = profile.filter(|p| p.id.rorg == t.rorg)
        && teach_in.is_none()
    {
        eep = p.eep.clone().into();
        match crate::eep::decode_payload(p, t.rorg, &t.payload, t.status, direction) {
            Ok(d) => {
                for v in &d.values {
                    values.insert(
                        v.key.into(),
                        serde_json::to_value(v.to_reading()).unwrap_or(Value::Null),
                    );
                }
            }
            Err(e) => {
                map.insert("decode_error".into(), e.to_string().into());
            }
        }
    }
    map.insert("eep".into(), eep);
    map.insert("values".into(), Value::Object(values));
}
