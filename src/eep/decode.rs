//! Decoding a telegram's payload with a profile: case selection, bit fields, scaling, labels.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

use super::bits::{extract, sign_extend};
use super::model::{Case, Field, FieldKind, Profile, round_pow};
use super::teach_in;
use crate::erp1::{STATUS_NU, STATUS_T21, Telegram};
use crate::telemetry::Reading;

/// Why a telegram gave no values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The telegram's RORG is not the profile's.
    #[error("telegram RORG {found:02X} does not fit profile {eep}")]
    WrongRorg {
        /// The profile's EEP.
        eep: String,
        /// The telegram's RORG.
        found: u8,
    },
    /// A teach-in telegram (4BS/1BS with LRN = 0): never a reading; see [`super::teach_in`](mod@super::teach_in).
    #[error("teach-in telegram, not a reading")]
    TeachIn,
    /// No case of the profile fits the telegram (direction, status bits, length, command).
    #[error(
        "no case of {eep} fits a {len}-byte payload with status {status:02X} in direction {direction}"
    )]
    NoCase {
        /// The profile's EEP.
        eep: String,
        /// Payload length in bytes.
        len: usize,
        /// Status byte.
        status: u8,
        /// Requested direction.
        direction: u8,
    },
    /// The payload length is not the one the telegram type has (RPS and 1BS: 1 byte, 4BS: 4
    /// bytes); such a telegram is never decoded.
    #[error("{eep}: a {len}-byte payload is not a {rorg_name} telegram ({expected} bytes)")]
    WrongLength {
        /// The profile's EEP.
        eep: String,
        /// The telegram type's name (`4BS`, …).
        rorg_name: &'static str,
        /// Payload length in bytes.
        len: usize,
        /// The length the telegram type has.
        expected: usize,
    },
    /// The payload is too short for a field of the selected case.
    #[error("{eep}: a {len}-byte payload is too short for field {shortcut} (bits {offset}..{end})")]
    Truncated {
        /// The profile's EEP.
        eep: String,
        /// The field's shortcut.
        shortcut: String,
        /// First bit of the field.
        offset: usize,
        /// One past its last bit.
        end: usize,
        /// Payload length in bytes.
        len: usize,
    },
}

impl DecodeError {
    /// A short stable name of the error kind (`teach_in`, `no_case`, `truncated`, `wrong_rorg`,
    /// `wrong_length`).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::WrongRorg { .. } => "wrong_rorg",
            DecodeError::TeachIn => "teach_in",
            DecodeError::NoCase { .. } => "no_case",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::WrongLength { .. } => "wrong_length",
        }
    }
}

/// A decoded value: a number, a label, a bool, or none (a sentinel or an undefined raw value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val<'p> {
    /// A scaled value in the key's canonical unit.
    Number(f64),
    /// An unscaled integer (counters, raw set points).
    Int(i64),
    /// An enum label.
    Label(&'p str),
    /// A flag.
    Bool(bool),
    /// No value; [`Value::status`] says why.
    None,
}

impl Val<'_> {
    /// The value as JSON (a number, string, bool or null).
    pub fn to_json(&self) -> Json {
        match *self {
            Val::Number(x) => serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number),
            Val::Int(i) => Json::from(i),
            Val::Label(s) => Json::from(s),
            Val::Bool(b) => Json::from(b),
            Val::None => Json::Null,
        }
    }

    /// The number, for numeric values.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Val::Number(x) => Some(x),
            Val::Int(i) => Some(i as f64),
            _ => None,
        }
    }
}

/// One decoded field, borrowing names from the profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value<'p> {
    /// Semantic key (`temperature`, …).
    pub key: &'static str,
    /// Canonical unit of the key, None for unitless values.
    pub unit: Option<&'static str>,
    /// The spec's shortcut, as its field shares it: what a telemetry reading holds, without a
    /// copy of its own.
    pub shortcut: &'p Arc<str>,
    /// The raw bits.
    pub raw: u64,
    /// The decoded value.
    pub value: Val<'p>,
    /// Why there is no value (`error`, `out_of_range`, `reserved`, …).
    pub status: Option<&'p str>,
    /// Decimal places a scaled number was rounded to (its field's resolution), None when the
    /// value was not scaled.
    pub decimals: Option<u8>,
}

impl Value<'_> {
    /// Converts into the telemetry object's reading.
    pub fn to_reading(&self) -> Reading {
        Reading {
            value: self.value.to_json(),
            unit: self.unit.map(Cow::Borrowed),
            shortcut: Arc::clone(self.shortcut),
            raw: self.raw,
            status: self.status.map(str::to_string),
        }
    }
}

/// The result of decoding one telegram.
#[derive(Debug, Clone)]
pub struct Decoded<'p> {
    /// The profile used.
    pub profile: &'p Profile,
    /// Index of the case that matched.
    pub case: usize,
    /// The values in field order.
    pub values: Vec<Value<'p>>,
}

impl<'p> Decoded<'p> {
    /// The value with this semantic key.
    pub fn get(&self, key: &str) -> Option<&Value<'p>> {
        self.values.iter().find(|v| v.key == key)
    }

    /// The value with this spec shortcut.
    pub fn by_shortcut(&self, shortcut: &str) -> Option<&Value<'p>> {
        self.values.iter().find(|v| &**v.shortcut == shortcut)
    }

    /// The values as telemetry readings keyed by semantic key.
    ///
    /// Inserted one by one: collecting would gather them in a vector and sort it first, an
    /// allocation more per telegram for the handful of values a telegram has. As with
    /// collecting, a key that comes twice keeps its last value.
    pub fn readings(&self) -> BTreeMap<Cow<'static, str>, Reading> {
        let mut readings = BTreeMap::new();
        for v in &self.values {
            readings.insert(Cow::Borrowed(v.key), v.to_reading());
        }
        readings
    }

    /// The name of the matched case, when it has one.
    pub fn case_name(&self) -> Option<&'p str> {
        self.profile.cases.get(self.case)?.name.as_deref()
    }
}

/// Decodes a telegram with a profile (direction 1 for two-direction profiles).
pub fn decode<'p>(profile: &'p Profile, telegram: &Telegram) -> Result<Decoded<'p>, DecodeError> {
    decode_payload(
        profile,
        telegram.rorg,
        &telegram.payload,
        telegram.status,
        None,
    )
}

/// Decodes a telegram with a profile in the given direction (1 or 2).
pub fn decode_direction<'p>(
    profile: &'p Profile,
    telegram: &Telegram,
    direction: u8,
) -> Result<Decoded<'p>, DecodeError> {
    decode_payload(
        profile,
        telegram.rorg,
        &telegram.payload,
        telegram.status,
        Some(direction),
    )
}

/// Decodes a payload given as its parts. `direction` None means direction 1.
pub fn decode_payload<'p>(
    profile: &'p Profile,
    rorg: u8,
    payload: &[u8],
    status: u8,
    direction: Option<u8>,
) -> Result<Decoded<'p>, DecodeError> {
    let mut values = Vec::new();
    let case = decode_payload_into(profile, rorg, payload, status, direction, &mut values)?;
    Ok(Decoded {
        profile,
        case,
        values,
    })
}

/// [`decode_payload`] into a buffer the caller reuses (no allocation per telegram once it has
/// grown): `values` is cleared, then receives the values in field order. Returns the index of
/// the case that matched.
pub fn decode_payload_into<'p>(
    profile: &'p Profile,
    rorg: u8,
    payload: &[u8],
    status: u8,
    direction: Option<u8>,
    values: &mut Vec<Value<'p>>,
) -> Result<usize, DecodeError> {
    values.clear();
    if rorg != profile.id.rorg {
        return Err(DecodeError::WrongRorg {
            eep: profile.eep.clone(),
            found: rorg,
        });
    }
    if let Some((rorg_name, expected)) = fixed_length(rorg)
        && payload.len() != expected
    {
        return Err(DecodeError::WrongLength {
            eep: profile.eep.clone(),
            rorg_name,
            len: payload.len(),
            expected,
        });
    }
    if teach_in::is_teach_in_bits(rorg, payload) {
        return Err(DecodeError::TeachIn);
    }
    let direction = direction.unwrap_or(1);
    let Some(case_index) = profile
        .cases
        .iter()
        .position(|c| case_matches(c, payload, status, direction))
    else {
        return Err(DecodeError::NoCase {
            eep: profile.eep.clone(),
            len: payload.len(),
            status,
            direction,
        });
    };
    let case = &profile.cases[case_index];
    values.reserve(case.fields.len());
    for field in &case.fields {
        if let Some(v) = decode_field(profile, field, payload)? {
            values.push(v);
        }
    }
    Ok(case_index)
}

/// The payload length of the telegram types that have one fixed length.
#[inline]
fn fixed_length(rorg: u8) -> Option<(&'static str, usize)> {
    match rorg {
        crate::erp1::rorg::RPS => Some(("RPS", 1)),
        crate::erp1::rorg::BS1 => Some(("1BS", 1)),
        crate::erp1::rorg::BS4 => Some(("4BS", 4)),
        _ => None,
    }
}

fn case_matches(case: &Case, payload: &[u8], status: u8, direction: u8) -> bool {
    if case.direction.unwrap_or(1) != direction {
        return false;
    }
    if let Some(s) = case.status {
        if s.t21.is_some_and(|t| t != (status & STATUS_T21 != 0)) {
            return false;
        }
        if s.nu.is_some_and(|n| n != (status & STATUS_NU != 0)) {
            return false;
        }
    }
    if case.length.is_some_and(|l| l != payload.len()) {
        return false;
    }
    if case.min_length.is_some_and(|l| payload.len() < l) {
        return false;
    }
    case.select
        .iter()
        .all(|c| extract(payload, c.offset, c.size).is_some_and(|raw| c.accepts(raw)))
}

/// A field's raw bits: its first range, then each of `more_bits` appended below.
#[inline]
fn field_raw(payload: &[u8], field: &super::model::FieldSpec) -> Option<u64> {
    let mut raw = extract(payload, field.offset, field.size)?;
    for b in &field.more_bits {
        raw = raw.checked_shl(b.size as u32).unwrap_or(0) | extract(payload, b.offset, b.size)?;
    }
    Some(raw)
}

fn decode_field<'p>(
    profile: &'p Profile,
    field: &'p Field,
    payload: &[u8],
) -> Result<Option<Value<'p>>, DecodeError> {
    for ((o, s), cond) in &field.conditions {
        match extract(payload, *o, *s) {
            Some(raw) if cond.accepts(raw) => {}
            _ => return Ok(None),
        }
    }
    let spec = &field.spec;
    let Some(raw) = field_raw(payload, spec) else {
        return Err(DecodeError::Truncated {
            eep: profile.eep.clone(),
            shortcut: spec.shortcut.clone(),
            offset: spec.offset,
            end: spec.end(),
            len: payload.len(),
        });
    };
    let mut out = Value {
        key: field.key.name,
        unit: field.key.unit,
        shortcut: &field.shared_shortcut,
        raw,
        value: Val::None,
        status: None,
        decimals: None,
    };
    if let Some(s) = spec.sentinels.iter().find(|s| s.matches(raw)) {
        out.status = Some(&s.status);
        return Ok(Some(out));
    }
    match field.kind {
        FieldKind::Bool { invert } => out.value = Val::Bool((raw != 0) != invert),
        FieldKind::Label => match spec.items.iter().find(|i| i.matches(raw)) {
            Some(item) => out.value = Val::Label(&item.label),
            None => out.status = Some("reserved"),
        },
        FieldKind::Linear(_) | FieldKind::Raw => {
            let x = if spec.signed {
                sign_extend(raw, spec.total_size()) as f64
            } else {
                raw as f64
            };
            let mut round = None;
            let mut number = match field.kind {
                FieldKind::Linear(lin) => {
                    if lin.raw_min.is_some_and(|m| x < m) || lin.raw_max.is_some_and(|m| x > m) {
                        out.status = Some("out_of_range");
                        return Ok(Some(out));
                    }
                    out.decimals = lin.decimals;
                    round = lin.round_pow;
                    Some(x * lin.slope + lin.intercept)
                }
                _ => None,
            };
            if let Some(m) = &field.multiplier {
                let (o, s) = m.bits;
                let index = extract(payload, o, s).and_then(|sel| usize::try_from(sel).ok());
                match index.and_then(|i| Some((m.values.get(i)?, i))) {
                    Some((f, i)) => {
                        number = Some(number.unwrap_or(x) * f);
                        out.decimals = m.decimals.get(i).copied().flatten();
                        round = m.round_pow.get(i).copied().flatten();
                    }
                    None => {
                        out.status = Some("invalid");
                        return Ok(Some(out));
                    }
                }
            }
            out.value = match number {
                Some(v) => Val::Number(match round {
                    Some(p) => round_pow(v, p),
                    None => v,
                }),
                None if spec.signed => Val::Int(sign_extend(raw, spec.total_size())),
                None => match i64::try_from(raw) {
                    Ok(i) => Val::Int(i),
                    Err(_) => Val::Number(raw as f64),
                },
            };
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eep::model::parse_profile;

    const PROFILE: &str = r#"
eep = "D2-99-01"
title = "test profile"
[[case]]
name = "signed"
select = [{ offset = 0, size = 4, value = 1 }]
[[case.field]]
shortcut = "S"
key = "temperature"
offset = 8
size = 8
signed = true
factor = 0.5
[[case.field]]
shortcut = "R"
key = "counter"
offset = 16
size = 8
signed = true
[[case]]
name = "multiplied"
select = [{ offset = 0, size = 4, value = 2 }]
[[case.field]]
shortcut = "M"
key = "energy"
offset = 8
size = 8
multiplier = { field = "X", values = [1, 10] }
[[case.field]]
shortcut = "X"
key = "divisor"
offset = 4
size = 2
enum = [{ raw = 0, label = "x1" }, { raw = 1, label = "x10" }]
[[case.field]]
shortcut = "SP"
key = "tariff"
offset = 12
size = 4
more_bits = [{ offset = 0, size = 2 }]
[[case]]
name = "far field"
direction = 2
[[case.field]]
shortcut = "F"
key = "counter"
offset = 40
size = 8
"#;

    fn profile() -> Profile {
        parse_profile(PROFILE, "D2-99-01.toml").unwrap()
    }

    #[test]
    fn signed_values_use_twos_complement() {
        let p = profile();
        let d = decode_payload(&p, 0xD2, &[0x10, 0xF6, 0xFF], 0, None).unwrap();
        assert_eq!(d.values[0].value, Val::Number(-5.0));
        assert_eq!(d.values[0].raw, 0xF6);
        assert_eq!(d.values[1].value, Val::Int(-1));
        assert_eq!(d.case_name(), Some("signed"));
    }

    #[test]
    fn multiplier_out_of_list_is_invalid() {
        let p = profile();
        let d = decode_payload(&p, 0xD2, &[0x24, 0x07], 0, None).unwrap();
        assert_eq!(d.get("energy").unwrap().value, Val::Number(70.0));
        let d = decode_payload(&p, 0xD2, &[0x28, 0x07], 0, None).unwrap();
        let e = d.get("energy").unwrap();
        assert_eq!((e.value, e.status), (Val::None, Some("invalid")));
        assert_eq!(d.get("divisor").unwrap().status, Some("reserved"));
    }

    #[test]
    fn split_fields_append_their_parts() {
        let p = profile();
        // SP: bits 12..15 (0b1011) then bits 0..1 (0b00) appended below: 0b101100 = 44.
        let d = decode_payload(&p, 0xD2, &[0x24, 0x0B], 0, None).unwrap();
        assert_eq!(d.get("tariff").unwrap().value, Val::Int(44));
        assert_eq!(d.get("tariff").unwrap().raw, 44);
        assert!(matches!(
            decode_payload(&p, 0xD2, &[0x24], 0, None),
            Err(DecodeError::Truncated { end: 16, .. })
        ));
    }

    #[test]
    fn errors_are_typed() {
        let p = profile();
        assert!(matches!(
            decode_payload(&p, 0xA5, &[0x10, 0, 0, 8], 0, None),
            Err(DecodeError::WrongRorg { found: 0xA5, .. })
        ));
        assert!(matches!(
            decode_payload(&p, 0xD2, &[0x30], 0, None),
            Err(DecodeError::NoCase { len: 1, .. })
        ));
        assert!(matches!(
            decode_payload(&p, 0xD2, &[0x10, 0x01], 0, None),
            Err(DecodeError::Truncated { end: 24, .. })
        ));
        assert!(matches!(
            decode_payload(&p, 0xD2, &[0x30, 0, 0, 0], 0, Some(2)),
            Err(DecodeError::Truncated { .. })
        ));
        let d = decode_payload(&p, 0xD2, &[0x30, 0, 0, 0, 0, 9], 0, Some(2)).unwrap();
        assert_eq!(d.get("counter").unwrap().value, Val::Int(9));
        assert!(decode_payload(&p, 0xD2, &[], 0, None).is_err());
    }

    #[test]
    fn readings_follow_the_telemetry_shape() {
        let p = profile();
        let d = decode_payload(&p, 0xD2, &[0x10, 0x14, 0x00], 0, None).unwrap();
        let r = d.readings();
        let t = &r["temperature"];
        assert_eq!(t.value, serde_json::json!(10.0));
        assert_eq!(t.unit.as_deref(), Some("°C"));
        assert_eq!(&*t.shortcut, "S");
        assert_eq!(t.raw, 0x14);
        assert_eq!(t.status, None);
    }
}
