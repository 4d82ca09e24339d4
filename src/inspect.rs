//! JSON views of decoded frames and decoder events, as printed by `decode` (JSON Lines).
//! The keys are a stable interface that other tools rely on.

use serde_json::{Map, Value, json};

use crate::erp1::{Telegram, write_upper_hex};
use crate::esp3::{Event, Frame, PacketType};
use crate::json_text::{int, opt_int, text};

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

/// Writes the JSON line of a frame straight from the frame and the decoded fields, without
/// building a `serde_json::Value`: the same bytes as [`frame_json`] followed by
/// [`add_eep_json`] (for RADIO_ERP1 frames that hold a telegram), serialised. `decode` uses it
/// for every frame but chained-message parts (RORG 0x40, whose `chain` object it adds to the
/// [`frame_json`] view); reusing one writer and one output buffer, a frame costs no allocation
/// beyond the telegram itself.
#[derive(Debug, Default)]
pub struct FrameWriter<'p> {
    profile: Option<&'p crate::eep::Profile>,
    signal: Option<&'p crate::eep::Profile>,
    direction: Option<u8>,
    values: Vec<crate::eep::Value<'p>>,
    /// The telegram of the last frame, its payload buffer reused for the next.
    telegram: Option<Telegram>,
}

impl<'p> FrameWriter<'p> {
    /// A writer decoding telegrams with `profile` (when its RORG fits), signal telegrams
    /// (RORG D0, sent by any device) with `signal`, in `direction` (None: 1).
    pub fn new(
        profile: Option<&'p crate::eep::Profile>,
        signal: Option<&'p crate::eep::Profile>,
        direction: Option<u8>,
    ) -> Self {
        Self {
            profile,
            signal,
            direction,
            values: Vec::new(),
            telegram: None,
        }
    }

    /// The profile a telegram of this RORG is decoded with (before the RORG check).
    pub fn profile_for(&self, rorg: u8) -> Option<&'p crate::eep::Profile> {
        if rorg == crate::erp1::rorg::SIGNAL {
            self.signal
        } else {
            self.profile
        }
    }

    /// Appends the frame's JSON object (no newline) to `out`.
    pub fn write(&mut self, out: &mut Vec<u8>, frame: &Frame) {
        out.reserve(1024);
        let pt = frame.packet_type();
        out.extend_from_slice(b"{\"packet_type\":");
        int(out, pt.code());
        out.extend_from_slice(b",\"packet_type_name\":");
        text(out, pt.name());
        out.extend_from_slice(b",\"data\":\"");
        match frame.data() {
            [crate::erp1::rorg::SEC_TI, info, ..] if pt == PacketType::RadioErp1 => {
                write_upper_hex(out, &[crate::erp1::rorg::SEC_TI, *info]);
            }
            d => write_upper_hex(out, d),
        }
        out.extend_from_slice(b"\",\"optional\":\"");
        write_upper_hex(out, frame.optional());
        out.push(b'"');
        if pt == PacketType::RadioErp1 {
            out.extend_from_slice(b",\"telegram\":");
            // The kept telegram is taken out while the writer is borrowed, and put back.
            let read = match self.telegram.take() {
                Some(mut t) => match t.read_frame(frame) {
                    Ok(()) => Ok(t),
                    Err(e) => {
                        self.telegram = Some(t);
                        Err(e)
                    }
                },
                None => Telegram::from_frame(frame),
            };
            match read {
                Ok(t) => {
                    write_telegram_fields(out, &t);
                    self.write_eep_fields(out, &t);
                    self.telegram = Some(t);
                    out.push(b'}');
                }
                Err(e) => {
                    out.extend_from_slice(b"{\"error\":");
                    text(out, &e.to_string());
                    out.push(b'}');
                }
            }
        }
        out.push(b'}');
    }

    /// `,"teach_in":…,["decode_error":…,]"eep":…,"values":{…}` as [`add_eep_json`] adds them.
    fn write_eep_fields(&mut self, out: &mut Vec<u8>, t: &Telegram) {
        let teach_in = crate::eep::teach_in(t);
        out.extend_from_slice(b",\"teach_in\":");
        match &teach_in {
            Some(ti) => write_value(out, &ti.to_json()),
            None => out.extend_from_slice(b"null"),
        }
        let profile = self
            .profile_for(t.rorg)
            .filter(|p| p.id.rorg == t.rorg && teach_in.is_none());
        let Some(p) = profile else {
            out.extend_from_slice(b",\"eep\":null,\"values\":{}");
            return;
        };
        let decoded = crate::eep::decode_payload_into(
            p,
            t.rorg,
            &t.payload,
            t.status,
            self.direction,
            &mut self.values,
        );
        if let Err(e) = &decoded {
            self.values.clear();
            out.extend_from_slice(b",\"decode_error\":");
            text(out, &e.to_string());
        }
        out.extend_from_slice(b",\"eep\":");
        write_plain(out, &p.eep);
        out.extend_from_slice(b",\"values\":{");
        let values = &self.values;
        let mut first = true;
        for (i, v) in values.iter().enumerate() {
            // A key given by two fields (both conditional) appears once, where it first
            // appeared, with the last field's value (a JSON map insert).
            if values[..i].iter().any(|w| w.key == v.key) {
                continue;
            }
            let last = values[i..]
                .iter()
                .rev()
                .find(|w| w.key == v.key)
                .unwrap_or(v);
            if !first {
                out.push(b',');
            }
            first = false;
            write_plain(out, v.key);
            out.push(b':');
            write_reading(out, last);
        }
        out.push(b'}');
    }
}

/// The telegram object of [`telegram_json`] without its closing brace.
fn write_telegram_fields(out: &mut Vec<u8>, t: &Telegram) {
    out.extend_from_slice(b"{\"rorg\":\"");
    write_upper_hex(out, &[t.rorg]);
    out.extend_from_slice(b"\",\"sender\":\"");
    write_upper_hex(out, &t.sender.to_be_bytes());
    out.extend_from_slice(b"\",\"status\":");
    int(out, t.status);
    out.extend_from_slice(b",\"repeater_count\":");
    int(out, t.repeater_count());
    out.extend_from_slice(b",\"payload\":\"");
    if !t.carries_key() {
        write_upper_hex(out, &t.payload);
    }
    out.extend_from_slice(b"\",\"dbm\":");
    match t.dbm() {
        Some(d) => write_serialized(out, &d),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"destination\":");
    match t.destination {
        Some(d) => {
            out.push(b'"');
            write_upper_hex(out, &d.to_be_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"sub_telegrams\":");
    opt_int(out, t.sub_telegrams);
    out.extend_from_slice(b",\"security_level\":");
    opt_int(out, t.security_level);
    if t.carries_key() {
        out.extend_from_slice(b",\"withheld\":\"key material\"");
    }
}

/// One value as its telemetry reading: `{"value":…,"unit":…,"shortcut":…,"raw":…[,"status":…]}`.
fn write_reading(out: &mut Vec<u8>, v: &crate::eep::Value<'_>) {
    use crate::eep::Val;
    out.extend_from_slice(b"{\"value\":");
    match v.value {
        Val::Number(x) => write_serialized(out, &x),
        Val::Int(i) => write_serialized(out, &i),
        Val::Label(s) => text(out, s),
        Val::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Val::None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"unit\":");
    match v.unit {
        Some(u) => write_plain(out, u),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"shortcut\":");
    text(out, v.shortcut);
    out.extend_from_slice(b",\"raw\":");
    int(out, v.raw);
    if let Some(s) = v.status {
        out.extend_from_slice(b",\"status\":");
        text(out, s);
    }
    out.push(b'}');
}

/// A string known to need no JSON escape (semantic keys and units of the registry, checked by
/// a test), in quotes.
#[inline]
fn write_plain(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    write_serialized(out, v);
}

/// serde_json's own formatting of a number, string or value (the bytes `to_string` gives);
/// writing into a `Vec` cannot fail.
fn write_serialized<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(out, v);
}

#[cfg(test)]
mod tests {
    #[test]
    fn registry_keys_and_units_need_no_json_escape() {
        let plain = |s: &str| s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        for k in crate::eep::keys::KEYS {
            assert!(plain(k.name), "{}", k.name);
            assert!(k.unit.is_none_or(plain), "{:?}", k.unit);
        }
    }
}
