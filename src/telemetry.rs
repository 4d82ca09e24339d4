//! The telemetry object: one received telegram as the agent commits, stores and delivers it.
//! Its JSON form is the record inside every webhook body (`records` in the default envelope, see
//! `docs/outbox-and-webhooks.md`, "Configuration"); the fields below, with their serde names, are
//! its reference, and `README.md` explains `kind`, `teach_in` and `clock`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::{BootTime, Clock};
use crate::erp1::Telegram;

mod json;
pub use json::Marks;

/// How a record's `received_at` was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// The wall clock at reception, which was synchronised.
    Synchronized,
    /// Received before the clock was synchronised; computed once it was, from the start of the
    /// boot (recorded then) plus the monotonic time since boot at reception.
    Derived,
    /// Received before the clock was synchronised, and the gateway restarted its boot before
    /// that: the wall time cannot be known, `received_at` is null.
    Unknown,
    /// Stored only, never delivered: waiting for the clock to be synchronised.
    Pending,
}

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
    pub teach_in: Option<Box<TeachInRecord>>,
    /// For a `gateway.status` record: the gateway's figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<crate::health::GatewayStatus>>,
    /// For a `device.silent` or `device.back` record: how long the device was not heard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence: Option<crate::health::Silence>,
    /// Per-gateway sequence number, strictly increasing; assigned when the outbox commits it
    /// (0 until then).
    pub seq: u64,
    /// When the gateway received the telegram (RFC 3339, UTC, milliseconds); `null` only when
    /// [`Telemetry::clock`] is `unknown` (the wall time cannot be known).
    pub received_at: Option<jiff::Timestamp>,
    /// How `received_at` was obtained (absent in records stored by older versions: as
    /// `synchronized`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<TimeSource>,
    /// The monotonic time of reception and the boot it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_monotonic: Option<BootTime>,
    /// Which gateway received it.
    pub gateway: Gateway,
    /// Which device sent it.
    pub sensor: Sensor,
    /// Decoded values keyed by semantic key (`temperature`, `humidity`, …); empty when the
    /// telegram could not be decoded. A decoded key borrows the semantic key list's name
    /// (no allocation per reading); a key read back from JSON is owned.
    pub values: BTreeMap<Cow<'static, str>, Reading>,
    /// Radio signal facts.
    pub signal: Signal,
    /// The telegram as received, so nothing is lost even when decoding is not possible (absent
    /// in health events, which come from no telegram).
    #[serde(default, skip_serializing_if = "Raw::is_empty")]
    pub raw: Raw,
    /// Why the telegram was not decoded, when it was not: a secure telegram that failed
    /// (`secure_unknown_key`, `secure_bad_cmac`, `secure_replay`, …) or a payload its profile
    /// does not fit (`wrong_length`, `no_case`, …). Absent when decoded or simply unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
    /// For a secure telegram that verified: the plain telegram it carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<Box<SecureRecord>>,
}

/// The plain telegram inside a verified secure telegram (`raw` keeps what was received).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureRecord {
    /// The rolling code it was accepted with (absent when the device uses none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rlc: Option<u32>,
    /// The plain telegram's RORG as two hex digits (F6 for a PTM rocker).
    pub rorg: String,
    /// The decrypted payload as uppercase hex.
    pub payload: String,
    /// The plain telegram's status byte (a PTM rocker's T21/NU bits), two hex digits.
    pub status: String,
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
    /// The gateway's health figures (at start, clean stop, periodically).
    #[serde(rename = "gateway.status")]
    GatewayStatus,
    /// A configured device has not been heard for its `silent_after`.
    #[serde(rename = "device.silent")]
    DeviceSilent,
    /// A device reported silent was heard again.
    #[serde(rename = "device.back")]
    DeviceBack,
}

impl Kind {
    /// The kind's name, as in the record's `kind` and a webhook's `events` list.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Telemetry => "telemetry",
            Kind::TeachIn => "teach_in",
            Kind::GatewayStatus => "gateway.status",
            Kind::DeviceSilent => "device.silent",
            Kind::DeviceBack => "device.back",
        }
    }

    /// True for a health event (`gateway.status`, `device.silent`, `device.back`): delivered
    /// alone, with its own `event`; readings and teach-ins share deliveries.
    pub fn is_health(self) -> bool {
        !matches!(self, Kind::Telemetry | Kind::TeachIn)
    }

    /// The `event` of a delivery carrying records of this kind: `telemetry` for readings and
    /// teach-ins (delivered together), the kind's own name for a health event (delivered alone).
    pub fn event(self) -> &'static str {
        if self.is_health() {
            self.as_str()
        } else {
            "telemetry"
        }
    }
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
    /// On the last part of a complete secure teach-in: what its SLF says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slf: Option<crate::secure::SlfFacts>,
    /// True on the last part of a secure teach-in whose key this gateway stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<bool>,
}

/// The gateway that received a telegram. Its texts are shared (`Arc<str>`): every record of a
/// gateway holds them without copies of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    /// Configured gateway name.
    pub id: std::sync::Arc<str>,
    /// The stick's base ID (eight hex digits), once the handshake has read it.
    pub base_id: Option<std::sync::Arc<str>>,
}

/// The sending device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sensor {
    /// Sender ID, eight uppercase hex digits.
    pub id: String,
    /// Configured or learned name (shared with the device registry: no copy per reading).
    pub name: Option<std::sync::Arc<str>>,
    /// EEP as "RR-FF-TT", None when unknown (shared like `name`).
    pub eep: Option<std::sync::Arc<str>>,
    /// Configured tags (room, floor, …), shared like `name`.
    #[serde(default = "no_tags")]
    pub tags: std::sync::Arc<BTreeMap<String, String>>,
}

impl Default for Sensor {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: None,
            eep: None,
            tags: no_tags(),
        }
    }
}

/// No tags, shared: a reading of a device without tags allocates none.
pub fn no_tags() -> std::sync::Arc<BTreeMap<String, String>> {
    static NONE: std::sync::OnceLock<std::sync::Arc<BTreeMap<String, String>>> =
        std::sync::OnceLock::new();
    NONE.get_or_init(Default::default).clone()
}

/// One decoded value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The value: a number, a label (enums), a bool, or null when a sentinel says there is none.
    pub value: serde_json::Value,
    /// Canonical unit of the semantic key ("°C", "%", …), None for unitless values. Borrowed
    /// from the semantic key list when decoded, owned when read back from JSON.
    pub unit: Option<Cow<'static, str>>,
    /// The spec's shortcut (`TMP`, `HUM`, …). Shared with the profile's field when decoded
    /// (no copy per reading).
    pub shortcut: std::sync::Arc<str>,
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
    /// RORG as two hex digits (borrowed from a table when received: no allocation per
    /// telegram).
    pub rorg: Cow<'static, str>,
    /// Payload as uppercase hex.
    pub payload: String,
    /// Status byte as two hex digits (borrowed like `rorg`).
    pub status: Cow<'static, str>,
    /// Destination ID, eight hex digits, when reported (the broadcast address, which most
    /// telegrams carry, is borrowed: no allocation per telegram).
    pub destination: Option<Cow<'static, str>>,
    /// Security level, when reported.
    pub security_level: Option<u8>,
    /// Why the payload is empty although the telegram had one (`key material` for a secure
    /// teach-in); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
}

impl Raw {
    /// True for the empty `raw` of a health event (every telegram has a RORG).
    pub fn is_empty(&self) -> bool {
        self.rorg.is_empty()
    }
}

/// A fresh record id: a UUID version 7 (its first 48 bits the milliseconds since 1970, then 74
/// random bits). The random bits come from a per-thread generator seeded once from the operating
/// system, instead of a `getrandom` call per reading as the `uuid` crate's own generator makes:
/// an id must be unique, not unguessable.
pub fn fresh_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut random = [0u8; 10];
    fastrand::fill(&mut random);
    id_at(ms, &random)
}

/// A reading id made at `ms` (unix milliseconds) from `random`: a UUID v7 in lowercase
/// hyphenated text.
pub fn id_at(ms: u64, random: &[u8; 10]) -> String {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Builder::from_unix_timestamp_millis(ms, random)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut text)
        .to_owned()
}

impl Telemetry {
    /// Appends the record's JSON to `out`: the bytes `serde_json::to_writer` writes for it,
    /// written faster (the outbox commits every reading this way). Says where its `seq` value
    /// and `gateway` object are in what it appended.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<json::Marks, serde_json::Error> {
        json::write(self, out)
    }

    /// A health event record (`gateway.status`, `device.silent`, `device.back`) with a fresh id,
    /// made at `now` by `gateway` about `sensor` (empty for the gateway itself). The caller sets
    /// `status` or `silence` and stamps it like a reception.
    pub fn health_event(
        kind: Kind,
        now: jiff::Timestamp,
        gateway: Gateway,
        sensor: Sensor,
    ) -> Self {
        Self {
            id: fresh_id(),
            kind,
            teach_in: None,
            status: None,
            silence: None,
            seq: 0,
            received_at: Some(now),
            clock: None,
            received_monotonic: None,
            gateway,
            sensor,
            values: BTreeMap::new(),
            signal: Signal::default(),
            raw: Raw::default(),
            decode_error: None,
            secure: None,
        }
    }

    /// Telemetry for a received telegram with a fresh id and no decoded values yet.
    pub fn from_telegram(t: &Telegram, received_at: jiff::Timestamp, gateway: Gateway) -> Self {
        Self {
            id: fresh_id(),
            kind: Kind::Telemetry,
            teach_in: None,
            status: None,
            silence: None,
            seq: 0,
            received_at: Some(received_at),
            clock: None,
            received_monotonic: None,
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
                rorg: Cow::Borrowed(crate::erp1::byte_hex(t.rorg)),
                payload: t.payload_hex(),
                status: Cow::Borrowed(crate::erp1::byte_hex(t.status)),
                destination: t.destination.map(|d| match d {
                    0xFFFF_FFFF => Cow::Borrowed("FFFFFFFF"),
                    d => Cow::Owned(crate::erp1::upper_hex(&d.to_be_bytes())),
                }),
                security_level: t.security_level,
                withheld: t.carries_key().then(|| "key material".to_owned()),
            },
            decode_error: None,
            secure: None,
        }
    }
}

impl Telemetry {
    /// Notes how the reception time can be trusted: the monotonic time and boot from `clock`;
    /// with a synchronised clock the wall time stays (`synchronized`), otherwise it is dropped
    /// and the record waits for the clock (`pending`: [`Telemetry::resolve_time`] fills it in).
    /// Called right after reception: a wall time more than a second away from the clock's now
    /// was read before NTP stepped the clock (between reception and this call) and is replaced.
    pub fn stamp_reception(&mut self, clock: &dyn Clock) {
        self.received_monotonic = Some(clock.boot_time());
        if clock.synchronized() {
            let now = clock.now();
            let stepped = self.received_at.is_none_or(|t| {
                t.duration_since(now).unsigned_abs() > std::time::Duration::from_secs(1)
            });
            if stepped {
                self.received_at = Some(now);
            }
            self.clock = Some(TimeSource::Synchronized);
        } else {
            self.clock = Some(TimeSource::Pending);
            self.received_at = None;
        }
    }

    /// True while the record waits for a synchronised clock.
    pub fn awaits_clock(&self) -> bool {
        self.clock == Some(TimeSource::Pending)
    }

    /// Gives a pending record its wall time, once the clock is synchronised during boot
    /// `boot_id`, which started at `boot_start_ms` (unix ms): received during this boot, it is
    /// `derived`; during an earlier one, `unknown` (and `received_at` stays null). Records that
    /// are not pending are left alone.
    pub fn resolve_time(&mut self, boot_id: &str, boot_start_ms: i64) {
        if !self.awaits_clock() {
            return;
        }
        let derived = self
            .received_monotonic
            .as_ref()
            .filter(|m| m.boot_id == boot_id)
            .and_then(|m| {
                let ms = boot_start_ms.checked_add(i64::try_from(m.since_boot_ms).ok()?)?;
                jiff::Timestamp::from_millisecond(ms).ok()
            });
        self.clock = Some(if derived.is_some() {
            TimeSource::Derived
        } else {
            TimeSource::Unknown
        });
        self.received_at = derived;
    }

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
        tm.teach_in = Some(Box::new(TeachInRecord {
            kind: "secure".to_owned(),
            secure: Some(info),
            key: Some("withheld".to_owned()),
            slf: None,
            stored: None,
        }));
        tm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_distinct_version_7_uuids_of_the_current_millisecond() {
        let before = jiff::Timestamp::now().as_millisecond();
        let ids: Vec<String> = (0..10_000).map(|_| fresh_id()).collect();
        let after = jiff::Timestamp::now().as_millisecond();
        let set: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(set.len(), ids.len(), "no id twice");
        for id in [&ids[0], &ids[9_999]] {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 7);
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = u.get_timestamp().unwrap().to_unix();
            let ms = i64::try_from(secs).unwrap() * 1000 + i64::from(nanos / 1_000_000);
            assert!(
                (before..=after).contains(&ms),
                "{ms} outside {before}..={after}"
            );
        }
    }

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
        assert!(v.get("clock").is_none() && v.get("received_monotonic").is_none());
        assert_eq!(v["id"].as_str().unwrap().len(), 36);
        let back: Telemetry = serde_json::from_value(v).unwrap();
        assert_eq!(back, tm);
        // A device without tags shares the one empty map: nothing allocated per reading.
        assert!(std::sync::Arc::ptr_eq(
            &tm.sensor.tags,
            &Sensor::default().tags
        ));
        assert!(tm.sensor.tags.is_empty());
        // Broadcast and addressed destinations, and none.
        for (opt, dest) in [
            (vec![1, 0xFF, 0xFF, 0xFF, 0xFF, 68, 0], Some("FFFFFFFF")),
            (vec![1, 0x01, 0x80, 0xA3, 0xF2, 68, 0], Some("0180A3F2")),
            (vec![1, 0xFF, 0xFF, 0xFF, 0xFE, 68, 0], Some("FFFFFFFE")),
            (vec![], None),
        ] {
            let t = Telegram::from_parts(
                &[0xA5, 0x78, 0x86, 0x0A, 0x08, 0x01, 0x80, 0xA3, 0xF2, 0x00],
                &opt,
            )
            .unwrap();
            let tm = Telemetry::from_telegram(&t, ts, Gateway::default());
            assert_eq!(tm.raw.destination.as_deref(), dest);
            let v = serde_json::to_value(&tm).unwrap();
            assert_eq!(v["raw"]["destination"].as_str(), dest);
        }
    }

    /// A clock the test sets: synchronised or not, the wall time, the boot and its time.
    struct TestClock {
        synced: bool,
        wall: jiff::Timestamp,
        boot: BootTime,
    }

    impl Clock for TestClock {
        fn now(&self) -> jiff::Timestamp {
            self.wall
        }
        fn boot_time(&self) -> BootTime {
            self.boot.clone()
        }
        fn synchronized(&self) -> bool {
            self.synced
        }
    }

    fn reading(at: &str) -> Telemetry {
        let t = Telegram::from_parts(&[0xA5, 1, 2, 3, 8, 1, 0x80, 0xA3, 0xF2, 0], &[]).unwrap();
        Telemetry::from_telegram(&t, at.parse().unwrap(), Gateway::default())
    }

    fn boot(id: &str, ms: u64) -> BootTime {
        BootTime {
            boot_id: id.to_owned().into(),
            since_boot_ms: ms,
        }
    }

    #[test]
    fn a_reading_before_sync_is_stamped_from_its_boot_or_marked_unknown() {
        // Synchronised at reception: the wall time stays, the monotonic time is added.
        let mut tm = reading("2026-11-22T20:05:11.482Z");
        tm.stamp_reception(&TestClock {
            synced: true,
            wall: "2026-11-22T20:05:11.482Z".parse().unwrap(),
            boot: boot("b1", 90_000),
        });
        let v = serde_json::to_value(&tm).unwrap();
        assert_eq!(v["received_at"], "2026-11-22T20:05:11.482Z");
        assert_eq!(v["clock"], "synchronized");
        assert_eq!(v["received_monotonic"]["boot_id"], "b1");
        assert_eq!(v["received_monotonic"]["since_boot_ms"], 90_000);
        tm.resolve_time("b2", 0);
        assert_eq!(tm.clock, Some(TimeSource::Synchronized), "left alone");
        // Read just before NTP stepped the clock: the clock's time after the step wins.
        let mut stepped = reading("2026-11-21T18:00:00Z");
        stepped.stamp_reception(&TestClock {
            synced: true,
            wall: "2026-11-22T20:05:11.482Z".parse().unwrap(),
            boot: boot("b1", 90_000),
        });
        assert_eq!(stepped.received_at, tm.received_at);

        // Not synchronised (a restored clock says 1970): no wall time is kept.
        let unsynced = TestClock {
            synced: false,
            wall: "1970-01-01T00:00:42Z".parse().unwrap(),
            boot: boot("b1", 42_000),
        };
        let mut early = reading("1970-01-01T00:00:42Z");
        early.stamp_reception(&unsynced);
        assert!(early.awaits_clock());
        let stored = serde_json::to_string(&early).unwrap();
        assert!(stored.contains("\"received_at\":null") && stored.contains("\"pending\""));
        let mut early: Telemetry = serde_json::from_str(&stored).unwrap();
        let mut other_boot = early.clone();

        // Synchronised later in the same boot, which started at 20:00:00: 20:00:42.
        let start = "2026-11-22T20:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        early.resolve_time("b1", start);
        assert_eq!(early.clock, Some(TimeSource::Derived));
        assert_eq!(
            early.received_at,
            Some("2026-11-22T20:00:42Z".parse().unwrap())
        );
        // Resolved once: a second call changes nothing.
        early.resolve_time("b1", start + 5);
        assert_eq!(
            early.received_at,
            Some("2026-11-22T20:00:42Z".parse().unwrap())
        );

        // The gateway rebooted before the clock was synchronised: unknown, never invented.
        other_boot.resolve_time("b2", start);
        assert_eq!(other_boot.clock, Some(TimeSource::Unknown));
        let v = serde_json::to_value(&other_boot).unwrap();
        assert!(v["received_at"].is_null());
        assert_eq!(v["clock"], "unknown");
        assert_eq!(v["received_monotonic"]["boot_id"], "b1");
    }
}
