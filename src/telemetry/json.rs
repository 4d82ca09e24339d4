//! A record's JSON as the outbox commits it, written without serde's machinery: the same bytes
//! as `serde_json::to_writer` writes for a [`Telemetry`] (the tests compare the two on every
//! kind of record and on generated ones), at a third of its instructions. Member names are
//! constants written in one piece; a text is copied as it is when nothing in it needs escaping
//! (checked over the whole text at once, not byte by byte); numbers go through `itoa`. What a
//! reading rarely holds (teach-in facts, health figures, secure facts, a value that is not a
//! number, text or bool, a time outside years 0000–9999) is written by serde_json itself.

use std::ops::Range;

use super::{Reading, Telemetry, TimeSource};
use crate::json_text::{int, opt_int, opt_text, text};
use crate::outbox::body::{KnownCuts, canonical_uuid};

/// Where two values are in a record's text, as byte ranges from its start: the `seq` member's
/// value and the `gateway` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marks {
    /// The `seq` value's digits.
    pub seq: Range<usize>,
    /// The `gateway` object, braces included.
    pub gateway: Range<usize>,
    /// Where its reception time and boot id are, for the outbox to keep them apart (set for a
    /// reading or teach-in whose members before them are the writer's own, so that they are
    /// the text's first such members).
    pub cuts: KnownCuts,
}

/// Appends `t`'s JSON to `out`, byte for byte what `serde_json::to_writer(out, t)` writes, and
/// says where its `seq` value and `gateway` object are.
pub fn write(t: &Telemetry, out: &mut Vec<u8>) -> Result<Marks, serde_json::Error> {
    let base = out.len();
    let mut cuts = KnownCuts::default();
    // Only members this writer writes come before the time and the boot id: no text of
    // serde's (teach-in facts, health figures) that could hold such a member first.
    let own_members_first = t.teach_in.is_none() && t.status.is_none() && t.silence.is_none();
    out.extend_from_slice(b"{\"id\":");
    text(out, &t.id);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(t.kind.as_str().as_bytes());
    out.push(b'"');
    if let Some(v) = &t.teach_in {
        member_serde(out, b",\"teach_in\":", v)?;
    }
    if let Some(v) = &t.status {
        member_serde(out, b",\"status\":", v)?;
    }
    if let Some(v) = &t.silence {
        member_serde(out, b",\"silence\":", v)?;
    }
    out.extend_from_slice(b",\"seq\":");
    let seq_start = out.len() - base;
    int(out, t.seq);
    let seq = seq_start..out.len() - base;
    out.extend_from_slice(b",\"received_at\":");
    match t.received_at {
        None => out.extend_from_slice(b"null"),
        Some(at) => {
            let nanos = i64::try_from(at.as_nanosecond()).ok();
            match nanos.and_then(|n| Some((n, crate::outbox::body::time_text(n)?))) {
                Some((nanos, (bytes, n))) => {
                    out.push(b'"');
                    let start = out.len() - base;
                    out.extend_from_slice(&bytes[..n]);
                    out.push(b'"');
                    if own_members_first {
                        // `time_text` of these nanoseconds is what the outbox writes back.
                        cuts.time = Some((start..start + n, nanos));
                    }
                }
                None => serde_json::to_writer(&mut *out, &at)?,
            }
        }
    }
    if let Some(c) = t.clock {
        out.extend_from_slice(b",\"clock\":\"");
        out.extend_from_slice(match c {
            TimeSource::Synchronized => b"synchronized",
            TimeSource::Derived => b"derived",
            TimeSource::Unknown => b"unknown",
            TimeSource::Pending => b"pending",
        });
        out.push(b'"');
    }
    if let Some(m) = &t.received_monotonic {
        out.extend_from_slice(b",\"received_monotonic\":{\"boot_id\":");
        if own_members_first && let Some(bytes) = canonical_uuid(m.boot_id.as_bytes()) {
            // Nothing to escape in a canonical UUID: its characters follow the quote.
            let at = out.len() - base + 1;
            cuts.boot = Some((at..at + m.boot_id.len(), bytes));
        }
        text(out, &m.boot_id);
        out.extend_from_slice(b",\"since_boot_ms\":");
        int(out, m.since_boot_ms);
        out.push(b'}');
    }
    out.extend_from_slice(b",\"gateway\":");
    let gateway_start = out.len() - base;
    out.extend_from_slice(b"{\"id\":");
    text(out, &t.gateway.id);
    out.extend_from_slice(b",\"base_id\":");
    opt_text(out, t.gateway.base_id.as_deref());
    out.push(b'}');
    let gateway = gateway_start..out.len() - base;
    out.extend_from_slice(b",\"sensor\":{\"id\":");
    text(out, &t.sensor.id);
    out.extend_from_slice(b",\"name\":");
    opt_text(out, t.sensor.name.as_deref());
    out.extend_from_slice(b",\"eep\":");
    opt_text(out, t.sensor.eep.as_deref());
    out.extend_from_slice(b",\"tags\":{");
    for (k, (name, value)) in t.sensor.tags.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        text(out, name);
        out.push(b':');
        text(out, value);
    }
    out.extend_from_slice(b"}},\"values\":{");
    for (k, (key, reading)) in t.values.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        text(out, key);
        out.push(b':');
        write_reading(reading, out)?;
    }
    let s = &t.signal;
    out.extend_from_slice(b"},\"signal\":{\"dbm\":");
    opt_int(out, s.dbm);
    out.extend_from_slice(b",\"repeater_count\":");
    int(out, s.repeater_count);
    out.extend_from_slice(b",\"sub_telegrams\":");
    opt_int(out, s.sub_telegrams);
    out.push(b'}');
    if !t.raw.is_empty() {
        let r = &t.raw;
        out.extend_from_slice(b",\"raw\":{\"rorg\":");
        text(out, &r.rorg);
        out.extend_from_slice(b",\"payload\":");
        text(out, &r.payload);
        out.extend_from_slice(b",\"status\":");
        text(out, &r.status);
        out.extend_from_slice(b",\"destination\":");
        opt_text(out, r.destination.as_deref());
        out.extend_from_slice(b",\"security_level\":");
        opt_int(out, r.security_level);
        if let Some(w) = &r.withheld {
            out.extend_from_slice(b",\"withheld\":");
            text(out, w);
        }
        out.push(b'}');
    }
    if let Some(e) = &t.decode_error {
        out.extend_from_slice(b",\"decode_error\":");
        text(out, e);
    }
    if let Some(v) = &t.secure {
        member_serde(out, b",\"secure\":", v)?;
    }
    out.push(b'}');
    Ok(Marks { seq, gateway, cuts })
}

/// One decoded value's object.
fn write_reading(r: &Reading, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"{\"value\":");
    match &r.value {
        serde_json::Value::Null => out.extend_from_slice(b"null"),
        serde_json::Value::Bool(true) => out.extend_from_slice(b"true"),
        serde_json::Value::Bool(false) => out.extend_from_slice(b"false"),
        serde_json::Value::String(s) => text(out, s),
        // Numbers as serde_json writes them (its float formatting is its own).
        v => serde_json::to_writer(&mut *out, v)?,
    }
    out.extend_from_slice(b",\"unit\":");
    opt_text(out, r.unit.as_deref());
    out.extend_from_slice(b",\"shortcut\":");
    text(out, &r.shortcut);
    out.extend_from_slice(b",\"raw\":");
    int(out, r.raw);
    if let Some(s) = &r.status {
        out.extend_from_slice(b",\"status\":");
        text(out, s);
    }
    out.push(b'}');
    Ok(())
}

/// A member whose value serde_json writes.
fn member_serde<T: serde::Serialize>(
    out: &mut Vec<u8>,
    name: &[u8],
    v: &T,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(name);
    serde_json::to_writer(&mut *out, v)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::clock::BootTime;
    use crate::health::{Counters, GatewayStatus, Silence, StatusReason, StickFacts};
    use crate::outbox::body;
    use crate::secure::{Encryption, SecureTeachIn, SlfFacts};
    use crate::telemetry::{Gateway, Kind, Raw, SecureRecord, Sensor, Signal, TeachInRecord};

    fn same_as_serde(t: &Telemetry) {
        let mut ours = b"left alone".to_vec();
        let marks = write(t, &mut ours).unwrap();
        let theirs = serde_json::to_vec(t).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours[10..]),
            String::from_utf8_lossy(&theirs)
        );
        assert_eq!(&ours[..10], b"left alone", "appends, never clears");
        let text = &ours[10..];
        assert_eq!(
            text[marks.seq.clone()].to_vec(),
            t.seq.to_string().into_bytes()
        );
        assert_eq!(
            text[marks.gateway.clone()].to_vec(),
            serde_json::to_vec(&t.gateway).unwrap()
        );
        // What the writer says of its time and boot id stores the very bytes that searching
        // the text for them stores.
        let mut scratch = Vec::new();
        assert_eq!(
            body::encode_record_known(text, &t.id, &marks.cuts, &mut scratch),
            body::encode_record_bytes(text, &t.id),
            "{marks:?}"
        );
        if own_text_first(t) {
            // Times within i64 nanoseconds (years 1677 to 2262) have the short form.
            assert_eq!(
                marks.cuts.time.is_some(),
                t.received_at
                    .is_some_and(|at| i64::try_from(at.as_nanosecond()).is_ok())
            );
            assert_eq!(
                marks.cuts.boot.is_some(),
                t.received_monotonic.as_ref().is_some_and(|m| {
                    uuid::Uuid::try_parse(&m.boot_id)
                        .is_ok_and(|u| u.hyphenated().to_string() == *m.boot_id)
                })
            );
        } else {
            assert_eq!(marks.cuts, body::KnownCuts::default());
        }
    }

    const CANONICAL_ID: &str = "0192a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    /// No member serde writes comes before the time and the boot id.
    fn own_text_first(t: &Telemetry) -> bool {
        t.teach_in.is_none() && t.status.is_none() && t.silence.is_none()
    }

    fn reading(value: serde_json::Value) -> Reading {
        Reading {
            value,
            unit: Some(Cow::Borrowed("°C")),
            shortcut: "TMP".into(),
            raw: 123,
            status: None,
        }
    }

    /// A reading with every optional member set, and one with none.
    fn full() -> Telemetry {
        let mut values = BTreeMap::new();
        values.insert(
            Cow::Borrowed("temperature"),
            reading(serde_json::json!(21.5)),
        );
        values.insert(Cow::Borrowed("count"), reading(serde_json::json!(-7)));
        values.insert(Cow::Borrowed("big"), reading(serde_json::json!(u64::MAX)));
        values.insert(Cow::Borrowed("tiny"), reading(serde_json::json!(1e-300)));
        values.insert(Cow::Borrowed("flag"), reading(serde_json::json!(true)));
        values.insert(Cow::Borrowed("off"), reading(serde_json::json!(false)));
        values.insert(
            Cow::Borrowed("label"),
            reading(serde_json::json!("open \"wide\"\n")),
        );
        values.insert(
            Cow::Borrowed("list"),
            reading(serde_json::json!([1, "a", null])),
        );
        values.insert(
            Cow::Borrowed("map"),
            reading(serde_json::json!({"k": {"z": 1.0}})),
        );
        let mut none = reading(serde_json::Value::Null);
        none.unit = None;
        none.status = Some("out_of_range".into());
        values.insert(Cow::Owned("none\u{1}\\".into()), none);
        let mut tags = BTreeMap::new();
        tags.insert("room".into(), "Küche 2".into());
        tags.insert("tab\t".into(), "\u{7f}\u{1f}".into());
        Telemetry {
            id: CANONICAL_ID.into(),
            kind: Kind::Telemetry,
            teach_in: None,
            status: None,
            silence: None,
            seq: 18_446_744_073_709_551_615,
            received_at: Some("2026-12-06T03:04:05.123456789Z".parse().unwrap()),
            clock: Some(TimeSource::Derived),
            received_monotonic: Some(BootTime {
                boot_id: "530fc982-0b7e-4b5c-9d6e-2f1a3b4c5d6e".into(),
                since_boot_ms: 86_400_000,
            }),
            gateway: Gateway {
                id: "gw \"one\"".into(),
                base_id: Some("FF8A1200".into()),
            },
            sensor: Sensor {
                id: "0180ABCD".into(),
                name: Some("Büro / office".into()),
                eep: Some("A5-02-05".into()),
                tags: tags.into(),
            },
            values,
            signal: Signal {
                dbm: Some(-74),
                repeater_count: 2,
                sub_telegrams: Some(3),
            },
            raw: Raw {
                rorg: "A5".into(),
                payload: "0000AA08".into(),
                status: "00".into(),
                destination: Some("FFFFFFFF".into()),
                security_level: Some(0),
                withheld: Some("key material".into()),
            },
            decode_error: Some("wrong_length".into()),
            secure: Some(Box::new(SecureRecord {
                rlc: Some(4_294_967_295),
                rorg: "F6".into(),
                payload: "30".into(),
                status: "30".into(),
            })),
        }
    }

    #[test]
    fn every_member_is_written_as_serde_writes_it() {
        let t = full();
        same_as_serde(&t);
        // Every optional member absent, every nullable member null.
        let bare = Telemetry {
            received_at: None,
            clock: None,
            received_monotonic: None,
            gateway: Gateway::default(),
            sensor: Sensor::default(),
            values: BTreeMap::new(),
            signal: Signal::default(),
            raw: Raw::default(),
            decode_error: None,
            secure: None,
            ..t.clone()
        };
        same_as_serde(&bare);
        for clock in [
            TimeSource::Synchronized,
            TimeSource::Derived,
            TimeSource::Unknown,
            TimeSource::Pending,
        ] {
            same_as_serde(&Telemetry {
                clock: Some(clock),
                ..bare.clone()
            });
        }
        let mut raw = t.clone();
        raw.raw.withheld = None;
        raw.raw.destination = None;
        raw.raw.security_level = None;
        raw.secure.as_mut().unwrap().rlc = None;
        same_as_serde(&raw);
    }

    #[test]
    fn every_kind_is_written_as_serde_writes_it() {
        let base = full();
        let teach_in = Telemetry {
            kind: Kind::TeachIn,
            teach_in: Some(Box::new(TeachInRecord {
                kind: "secure".into(),
                secure: Some(SecureTeachIn {
                    part: 1,
                    parts: 2,
                    psk: true,
                    ptm: false,
                    info: 3,
                }),
                key: Some("withheld".into()),
                slf: Some(SlfFacts {
                    rlc_bits: 24,
                    rlc_transmitted: false,
                    mac_bytes: 3,
                    encryption: Encryption::Vaes,
                }),
                stored: Some(true),
            })),
            ..base.clone()
        };
        same_as_serde(&teach_in);
        let status = Telemetry {
            kind: Kind::GatewayStatus,
            status: Some(Box::new(GatewayStatus {
                reason: StatusReason::Start,
                version: "1.2.3".into(),
                uptime_s: 5,
                stick: StickFacts::default(),
                webhooks: Vec::new(),
                disk_free_bytes: Some(1 << 40),
                counters: Counters::default(),
            })),
            ..base.clone()
        };
        same_as_serde(&status);
        for kind in [Kind::DeviceSilent, Kind::DeviceBack] {
            same_as_serde(&Telemetry {
                kind,
                silence: Some(Silence {
                    silent_after_s: 3600,
                    silent_for_s: 7200,
                    last_heard: Some("2026-12-06T01:00:00Z".into()),
                }),
                ..base.clone()
            });
        }
    }

    #[test]
    fn times_outside_the_short_form_are_written_by_serde() {
        let mut t = full();
        for at in [jiff::Timestamp::MIN, jiff::Timestamp::MAX] {
            t.received_at = Some(at);
            same_as_serde(&t);
        }
        for at in [
            "-000001-12-31T23:59:59.5Z",
            "1677-09-21T00:12:43.145224191Z",
            "2262-04-11T23:47:16.854775808Z",
            "9999-12-30T21:59:59.999999999Z",
            "1970-01-01T00:00:00Z",
        ] {
            t.received_at = Some(at.parse().unwrap());
            same_as_serde(&t);
        }
    }

    #[cfg(feature = "sim")]
    #[test]
    fn the_simulated_buildings_readings_are_written_as_serde_writes_them() {
        let items = crate::sim::sample_readings(
            500,
            jiff::Timestamp::from_second(1_790_000_000).unwrap(),
            jiff::SignedDuration::from_millis(333),
        );
        let mut kinds = std::collections::BTreeSet::new();
        for t in &items {
            kinds.extend(t.values.keys().cloned());
            same_as_serde(t);
        }
        assert!(kinds.len() > 10, "only {} value keys", kinds.len());
    }

    fn any_value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ]
    }

    proptest! {
        /// Any texts (escapes, control characters, any Unicode), numbers and times: the same
        /// bytes as serde.
        #[test]
        fn generated_records_are_written_as_serde_writes_them(
            id in ".{0,40}",
            name in proptest::option::of(".{0,20}"),
            tags in proptest::collection::btree_map(".{0,8}", ".{0,8}", 0..3),
            values in proptest::collection::btree_map(
                ".{0,12}",
                (any_value(), proptest::option::of(".{0,4}"), ".{0,6}", any::<u64>(),
                 proptest::option::of(".{0,8}")),
                0..6,
            ),
            nanos in proptest::option::of(any::<i64>()),
            seq in any::<u64>(),
            dbm in proptest::option::of(any::<i16>()),
            error in proptest::option::of(".{0,10}"),
            boot in proptest::option::of(proptest::prop_oneof![
                ".{0,40}",
                "[0-9a-fA-F]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-fA-F]{4}-[0-9a-f]{12}",
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            ]),
        ) {
            let mut t = full();
            t.id = id;
            t.sensor.name = name.map(Into::into);
            t.sensor.tags = tags.into();
            t.values = values
                .into_iter()
                .map(|(k, (value, unit, shortcut, raw, status))| {
                    (Cow::Owned(k), Reading {
                        value,
                        unit: unit.map(Cow::Owned),
                        shortcut: shortcut.into(),
                        raw,
                        status,
                    })
                })
                .collect();
            t.received_at = nanos.map(|n| jiff::Timestamp::from_nanosecond(i128::from(n)).unwrap());
            t.seq = seq;
            t.signal.dbm = dbm;
            t.decode_error = error;
            t.received_monotonic = boot.map(|b| BootTime { boot_id: b.into(), since_boot_ms: 1 });
            let mut ours = Vec::new();
            write(&t, &mut ours).unwrap();
            prop_assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&t).unwrap()
            );
            same_as_serde(&t);
        }
    }
}
