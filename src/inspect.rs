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
    obj.insert("data".into(), hex::encode_upper(frame.data()).into());
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
    json!({
        "rorg": format!("{:02X}", t.rorg),
        "sender": t.sender_hex(),
        "status": t.status,
        "repeater_count": t.repeater_count(),
        "payload": hex::encode_upper(&t.payload),
        "dbm": t.dbm(),
        "destination": t.destination.map(|d| format!("{d:08X}")),
        "sub_telegrams": t.sub_telegrams,
        "security_level": t.security_level,
    })
}

/// The JSON object for a decoder event: `event` (its name), `offset`, and `count` where it has one.
pub fn event_json(event: &Event) -> Value {
    let mut v = json!({ "event": event.name(), "offset": event.offset() });
    if let Event::DiscardedBytes { count, .. } | Event::GapTimeout { count, .. } = event {
        v["count"] = (*count).into();
    }
    v
}
