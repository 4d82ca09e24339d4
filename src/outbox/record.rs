//! A committed reading as a webhook sender reads it back: the JSON text the storage thread
//! committed, read only as far as routing and the envelope need (kind, sensor, times, where the
//! id, seq and gateway are in the text). The default envelope is spliced from these texts
//! instead of parsing every reading into a [`Telemetry`] and serialising it again, which was
//! about half of a sender's own work per delivery. Records whose text is not in the current
//! shape (stored by an older version), records still waiting for the clock, and webhooks with a
//! template keep the whole parse.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::telemetry::{Kind, Marks, Telemetry, TimeSource};

/// One committed reading read back for delivery (see the module documentation).
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Its seq (the row's; the text holds the seq it was committed with).
    pub seq: u64,
    /// The reading's id.
    pub id: String,
    /// What the record is.
    pub kind: Kind,
    /// The sender ID (routing by `devices`).
    pub sensor: String,
    /// `received_at` as stored.
    pub received_at: Option<jiff::Timestamp>,
    /// True while the reading waits for a synchronised clock.
    pub awaits_clock: bool,
    form: Form,
}

#[derive(Debug, Clone)]
enum Form {
    /// The committed text, with where its `seq` value and `gateway` object are.
    Text {
        json: String,
        seq_at: Range<usize>,
        gateway: Range<usize>,
    },
    /// The whole record, parsed (seq set).
    Parsed(Box<Telemetry>),
}

/// The members read from a record's text. Every member serde writes unconditionally is required,
/// so a text written by an older version (a member missing) takes the whole parse instead.
#[derive(Deserialize)]
struct Head<'a> {
    id: std::borrow::Cow<'a, str>,
    kind: Kind,
    #[serde(borrow)]
    seq: &'a RawValue,
    #[serde(borrow)]
    received_at: &'a RawValue,
    #[serde(default)]
    clock: Option<TimeSource>,
    #[serde(borrow)]
    gateway: &'a RawValue,
    #[serde(borrow)]
    sensor: SensorHead<'a>,
    #[serde(borrow)]
    #[allow(dead_code)] // required, not read
    values: &'a RawValue,
    #[serde(borrow)]
    #[allow(dead_code)] // required, not read
    signal: &'a RawValue,
}

#[derive(Deserialize)]
struct SensorHead<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

/// How many committed records [`Recent`] remembers.
const RECENT_CAP: usize = 256;

/// A record the storage thread just committed, as it knew it: its seq, its stored body's length
/// and 64-bit hash, and the record a sender would otherwise decompress and read out of that body
/// again, text included, its seq set when it is taken (None once the only reader took it).
#[derive(Debug)]
struct RecentRecord {
    seq: u64,
    len: usize,
    hash: u64,
    record: Option<StoredRecord>,
}

/// The records committed last (at most 256), shared by the storage thread and the webhook
/// senders, which read every reading back from the outbox soon after its commit. A sender
/// whose row holds the stored body remembered for its seq (the same length and 64-bit hash,
/// std's `DefaultHasher`, SipHash-1-3 today: a row changed on the disk passes for it with a
/// chance of about 2^-64; the same body decodes to the same text) and the same reading id takes
/// the remembered record, text and head, instead of decompressing the body and reading the head
/// out of the JSON again (most of a sender's own work per reading). The body is hashed, not its
/// text: it is several times shorter. With one such reader (one webhook without a template, the
/// common case) a record is handed over, not copied, and its text's memory goes with it; with
/// several, each takes a copy and the texts stay until they are forgotten (about 0.2 MB for
/// 256).
/// The row stays the truth: a row that is gone is not delivered, and a row that holds anything
/// else (another version wrote it, the disk changed it) is read and checked in full.
#[derive(Debug, Clone, Default)]
pub struct Recent(Arc<RecentInner>);

#[derive(Debug, Default)]
struct RecentInner {
    records: Mutex<VecDeque<RecentRecord>>,
    /// Rows read through a remembered head.
    hits: AtomicU64,
    /// How many readers take records from it ([`Recent::want`]): without one (no webhook, or
    /// only template webhooks, which parse every row whole) nothing is remembered.
    readers: AtomicUsize,
}

/// A record being committed, to remember once it is ([`Recent::remember`]).
#[derive(Debug)]
pub struct Remembered(RecentRecord);

impl Remembered {
    /// `t`, written as `json` and stored as `stored` (the body its row holds, see
    /// [`crate::outbox::body`]; the text's `seq` value and `gateway` object at `marks`). None
    /// for a record waiting for the clock (a sender parses those whole).
    pub fn new(t: &Telemetry, json: &[u8], stored: &[u8], marks: Marks) -> Option<Self> {
        if t.clock == Some(TimeSource::Pending) {
            return None;
        }
        let json = std::str::from_utf8(json).ok()?.to_owned();
        Some(Self(RecentRecord {
            seq: 0,
            len: stored.len(),
            hash: body_hash(stored),
            record: Some(StoredRecord {
                seq: 0,
                id: t.id.clone(),
                kind: t.kind,
                sensor: t.sensor.id.clone(),
                received_at: t.received_at,
                awaits_clock: false,
                form: Form::Text {
                    json,
                    seq_at: marks.seq,
                    gateway: marks.gateway,
                },
            }),
        }))
    }
}

/// A stored body's 64-bit hash (std's `DefaultHasher` with its fixed keys: the same in the
/// storage thread and the senders of one process, which is all it is compared in).
fn body_hash(stored: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    h.write(stored);
    h.finish()
}

impl Recent {
    /// Says that one more reader will take records from it: from now on committed records are
    /// remembered (a webhook sender calls it once, when it starts).
    pub fn want(&self) {
        self.0.readers.fetch_add(1, Ordering::Relaxed);
    }

    /// True once some reader [wants](Recent::want) it: the storage thread remembers
    /// committed records only then.
    pub fn wanted(&self) -> bool {
        self.0.readers.load(Ordering::Relaxed) > 0
    }

    /// Remembers `r`, committed under `seq`, forgetting the oldest beyond the bound.
    pub fn remember(&self, seq: u64, r: Remembered) {
        let mut r = r.0;
        r.seq = seq;
        let mut q = self.0.records.lock().unwrap_or_else(|e| e.into_inner());
        if q.back().is_some_and(|b| b.seq >= seq) {
            // Seqs only grow; anything else (another writer) starts the memory afresh.
            q.clear();
        }
        if q.len() >= RECENT_CAP {
            q.pop_front();
        }
        q.push_back(r);
    }

    /// How many records it holds (a record handed over to its only reader is no longer held).
    pub fn len(&self) -> usize {
        self.0
            .records
            .lock()
            .map_or(0, |q| q.iter().filter(|r| r.record.is_some()).count())
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many rows were read through a remembered head so far.
    pub fn hits(&self) -> u64 {
        self.0.hits.load(Ordering::Relaxed)
    }

    /// The record for `seq` when its row's body, `stored`, is the one remembered for it and
    /// `same_id` says the row's reading id is the remembered one (see [`Recent`]).
    fn take(
        &self,
        seq: u64,
        stored: &[u8],
        same_id: impl FnOnce(&str) -> bool,
    ) -> Option<StoredRecord> {
        let mut q = self.0.records.lock().unwrap_or_else(|e| e.into_inner());
        let k = q.binary_search_by_key(&seq, |r| r.seq).ok()?;
        let r = &mut q[k];
        let record = r
            .record
            .as_ref()
            .filter(|_| r.len == stored.len() && r.hash == body_hash(stored))
            .filter(|record| same_id(&record.id))?;
        let mut record = if self.0.readers.load(Ordering::Relaxed) > 1 {
            record.clone()
        } else {
            r.record.take()?
        };
        record.seq = seq;
        self.0.hits.fetch_add(1, Ordering::Relaxed);
        Some(record)
    }
}

impl StoredRecord {
    /// The record of the row that holds `stored` under `seq`: taken from `recent` when it
    /// remembers this body for `seq` and `same_id` says the row's reading id is the remembered
    /// one (see [`Recent`]), otherwise [`StoredRecord::read`] of the body's text, which `text`
    /// decodes. An error says why the row cannot be read.
    pub fn read_recent(
        seq: u64,
        stored: &[u8],
        same_id: impl FnOnce(&str) -> bool,
        text: impl FnOnce() -> Result<String, String>,
        parse_all: bool,
        recent: Option<&Recent>,
    ) -> Result<Self, String> {
        if !parse_all && let Some(record) = recent.and_then(|r| r.take(seq, stored, same_id)) {
            return Ok(record);
        }
        Self::read(seq, text()?, parse_all).map_err(|e| e.to_string())
    }

    /// Reads the record committed as `json` under `seq`. With `parse_all` (a webhook with a
    /// template needs every member) the whole record is parsed; so is a record waiting for the
    /// clock or one whose text is not in the current shape. An error means the record cannot be
    /// read at all.
    pub fn read(seq: u64, json: String, parse_all: bool) -> Result<Self, serde_json::Error> {
        let head = if parse_all {
            None
        } else {
            serde_json::from_str::<Head<'_>>(&json)
                .ok()
                .and_then(|h| Some((serde_json::from_str(h.received_at.get()).ok()?, h)))
        };
        match head {
            Some((received_at, h)) if h.clock != Some(TimeSource::Pending) => {
                let at = |raw: &RawValue| {
                    let start = raw.get().as_ptr() as usize - json.as_ptr() as usize;
                    start..start + raw.get().len()
                };
                let (seq_at, gateway) = (at(h.seq), at(h.gateway));
                Ok(Self {
                    seq,
                    id: h.id.into_owned(),
                    kind: h.kind,
                    sensor: h.sensor.id.into_owned(),
                    received_at,
                    awaits_clock: false,
                    form: Form::Text {
                        seq_at,
                        gateway,
                        json,
                    },
                })
            }
            _ => {
                let mut t: Telemetry = serde_json::from_str(&json)?;
                t.seq = seq;
                Ok(Self::parsed(t))
            }
        }
    }

    /// A record from a parsed reading (its seq set).
    pub fn parsed(t: Telemetry) -> Self {
        Self {
            seq: t.seq,
            id: t.id.clone(),
            kind: t.kind,
            sensor: t.sensor.id.clone(),
            received_at: t.received_at,
            awaits_clock: t.awaits_clock(),
            form: Form::Parsed(Box::new(t)),
        }
    }

    /// The whole reading: parsed from the text unless it was already.
    pub fn telemetry(&self) -> Result<Telemetry, serde_json::Error> {
        match &self.form {
            Form::Parsed(t) => Ok((**t).clone()),
            Form::Text { json, .. } => {
                let mut t: Telemetry = serde_json::from_str(json)?;
                t.seq = self.seq;
                Ok(t)
            }
        }
    }

    /// Gives a reading waiting for the clock its wall time (see [`Telemetry::resolve_time`]).
    pub fn resolve_time(&mut self, boot_id: &str, boot_start_ms: i64) {
        if let Form::Parsed(t) = &mut self.form {
            t.resolve_time(boot_id, boot_start_ms);
            self.received_at = t.received_at;
            self.awaits_clock = t.awaits_clock();
        }
    }

    /// Writes the record's JSON as `serde_json` writes the [`Telemetry`] (its seq set): the
    /// stored text with the row's seq put in.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match &self.form {
            Form::Parsed(t) => serde_json::to_writer(out, t),
            Form::Text { json, seq_at, .. } => {
                out.extend_from_slice(&json.as_bytes()[..seq_at.start]);
                std::io::Write::write_fmt(out, format_args!("{}", self.seq))
                    .map_err(serde_json::Error::io)?;
                out.extend_from_slice(&json.as_bytes()[seq_at.end..]);
                Ok(())
            }
        }
    }

    /// Writes the record's `gateway` object as `serde_json` writes it.
    pub fn write_gateway(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match &self.form {
            Form::Parsed(t) => serde_json::to_writer(out, &t.gateway),
            Form::Text { json, gateway, .. } => {
                out.extend_from_slice(&json.as_bytes()[gateway.clone()]);
                Ok(())
            }
        }
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;

    fn committed(t: &Telemetry) -> String {
        // As the storage thread writes it: before the seq is assigned.
        let mut c = t.clone();
        c.seq = 0;
        serde_json::to_string(&c).unwrap()
    }

    #[test]
    fn the_text_form_writes_what_serde_writes_for_the_parsed_reading() {
        let start = "2026-03-01T08:00:00.123Z".parse().unwrap();
        let readings =
            crate::sim::sample_readings(400, start, jiff::SignedDuration::from_micros(500_123));
        let mut kinds = std::collections::BTreeSet::new();
        for (i, mut t) in readings.into_iter().enumerate() {
            t.seq = 1000 + i as u64;
            let r = StoredRecord::read(t.seq, committed(&t), false).unwrap();
            assert!(matches!(r.form, Form::Text { .. }), "{}", t.id);
            assert_eq!(
                (r.id.as_str(), r.kind, r.sensor.as_str(), r.received_at),
                (t.id.as_str(), t.kind, t.sensor.id.as_str(), t.received_at)
            );
            let (mut a, mut b) = (Vec::new(), Vec::new());
            r.write_json(&mut a).unwrap();
            serde_json::to_writer(&mut b, &t).unwrap();
            assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            r.write_gateway(&mut a).unwrap();
            serde_json::to_writer(&mut b, &t.gateway).unwrap();
            assert_eq!(a, b);
            assert_eq!(r.telemetry().unwrap(), t);
            kinds.insert(t.sensor.eep.clone());
        }
        assert!(
            kinds.len() > 5,
            "the sample covers several profiles: {kinds:?}"
        );
    }

    #[test]
    fn pending_old_shaped_and_template_records_are_parsed_whole() {
        let start = "2026-03-01T08:00:00Z".parse().unwrap();
        let mut t =
            crate::sim::sample_readings(1, start, jiff::SignedDuration::from_secs(1)).remove(0);
        t.seq = 7;
        // A template needs every member.
        let r = StoredRecord::read(7, committed(&t), true).unwrap();
        assert!(matches!(r.form, Form::Parsed(_)));
        // An older version's text: no `kind` member.
        let old = committed(&t).replace("\"kind\":\"telemetry\",", "");
        assert_ne!(old, committed(&t));
        let r = StoredRecord::read(7, old, false).unwrap();
        assert!(matches!(r.form, Form::Parsed(_)));
        let mut out = Vec::new();
        r.write_json(&mut out).unwrap();
        assert_eq!(out, serde_json::to_vec(&t).unwrap());
        // Waiting for the clock: parsed, then resolved.
        let mut p = t.clone();
        p.clock = Some(TimeSource::Pending);
        p.received_at = None;
        let mut r = StoredRecord::read(7, committed(&p), false).unwrap();
        assert!(r.awaits_clock && matches!(r.form, Form::Parsed(_)));
        r.resolve_time("another boot", 0);
        assert!(!r.awaits_clock);
        // Not JSON of a record: unreadable.
        assert!(StoredRecord::read(7, "{\"id\":1}".into(), false).is_err());
        assert!(StoredRecord::read(7, "{".into(), false).is_err());
    }

    /// A record's head as the parse reads it, for comparisons.
    fn head(r: &StoredRecord) -> String {
        let Form::Text {
            json,
            seq_at,
            gateway,
        } = &r.form
        else {
            panic!("not the text form");
        };
        format!(
            "{} {} {:?} {} {:?} {} {:?} {:?} {}",
            r.seq, r.id, r.kind, r.sensor, r.received_at, r.awaits_clock, seq_at, gateway, json
        )
    }

    /// [`StoredRecord::read_recent`] of a row holding `stored` and reading id `id`, whose body
    /// decodes to `text`.
    fn read(
        seq: u64,
        stored: &[u8],
        id: &str,
        text: &str,
        parse_all: bool,
        recent: &Recent,
    ) -> Result<StoredRecord, String> {
        StoredRecord::read_recent(
            seq,
            stored,
            |r| r == id,
            || Ok(text.to_owned()),
            parse_all,
            Some(recent),
        )
    }

    #[test]
    fn a_remembered_record_is_the_record_its_text_reads_as() {
        let start = "2026-03-01T08:00:00.123Z".parse().unwrap();
        let readings =
            crate::sim::sample_readings(300, start, jiff::SignedDuration::from_micros(700_001));
        let recent = Recent::default();
        // One reader (one webhook): each record is handed over once.
        recent.want();
        let mut texts = Vec::new();
        for (i, t) in readings.iter().enumerate() {
            let mut text = Vec::new();
            let marks = t.write_json(&mut text).unwrap();
            let stored = crate::outbox::body::encode_record_bytes(&text, &t.id);
            let r = Remembered::new(t, &text, &stored, marks).expect("not waiting for the clock");
            recent.remember(1000 + i as u64, r);
            texts.push((String::from_utf8(text).unwrap(), stored, t.id.clone()));
        }
        assert_eq!(recent.len(), RECENT_CAP);
        let mut taken = 0;
        for (i, (text, stored, id)) in texts.iter().enumerate() {
            let seq = 1000 + i as u64;
            let parsed = StoredRecord::read(seq, text.clone(), false).unwrap();
            // Only the last 256 are remembered; the others are parsed (the same record).
            let remembered = recent.take(seq, stored, |r| r == id);
            taken += usize::from(remembered.is_some());
            // Text included: the remembered text is the one the body decodes to.
            let r =
                remembered.unwrap_or_else(|| read(seq, stored, id, text, false, &recent).unwrap());
            assert_eq!(head(&r), head(&parsed));
            // Handed over: not there for a second read, which decodes the row (the same record).
            assert!(recent.take(seq, stored, |r| r == id).is_none());
            assert_eq!(
                head(&read(seq, stored, id, text, false, &recent).unwrap()),
                head(&parsed)
            );
        }
        assert_eq!(taken, RECENT_CAP);
        assert_eq!(recent.hits(), RECENT_CAP as u64);
        assert_eq!(recent.len(), 0, "every record handed over");
        // Two readers (two webhooks): each takes a copy.
        recent.want();
        for (i, t) in readings.iter().enumerate().skip(readings.len() - 3) {
            let (text, stored, id) = &texts[i];
            let mut json = Vec::new();
            let marks = t.write_json(&mut json).unwrap();
            recent.remember(
                5000 + i as u64,
                Remembered::new(t, &json, stored, marks).unwrap(),
            );
            let parsed = StoredRecord::read(5000 + i as u64, text.clone(), false).unwrap();
            for _ in 0..2 {
                let r = recent.take(5000 + i as u64, stored, |r| r == id).unwrap();
                assert_eq!(head(&r), head(&parsed));
            }
        }
        assert_eq!(recent.hits(), RECENT_CAP as u64 + 6);
    }

    #[test]
    fn a_text_other_than_the_remembered_one_is_read_in_full() {
        let start = "2026-03-01T08:00:00Z".parse().unwrap();
        let t = crate::sim::sample_readings(1, start, jiff::SignedDuration::from_secs(1)).remove(0);
        let recent = Recent::default();
        // Two readers: a record stays remembered when one takes it.
        recent.want();
        recent.want();
        let store = |text: &str| crate::outbox::body::encode_record_bytes(text.as_bytes(), &t.id);
        let mut text = Vec::new();
        let marks = t.write_json(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let stored = store(&text);
        recent.remember(
            7,
            Remembered::new(&t, text.as_bytes(), &stored, marks).unwrap(),
        );
        let id = t.id.as_str();
        assert!(recent.take(7, &stored, |r| r == id).is_some());
        // Another seq: not remembered.
        assert!(recent.take(8, &stored, |r| r == id).is_none());
        // The row's id changed on the disk: the row is read as it is.
        assert!(recent.take(7, &stored, |r| r == "another id").is_none());
        let other_id = "5c2a9a1e-0000-4000-8000-000000000000";
        let r = read(
            7,
            &stored,
            other_id,
            &text.replacen(id, other_id, 1),
            false,
            &recent,
        );
        assert_eq!(r.unwrap().id, other_id);
        // A row that changed on the disk: checked by the parse, which refuses a broken one ...
        let broken = text.replacen("\"signal\":{", "\"signal\":[", 1);
        assert_ne!(broken, text);
        let broken_stored = store(&broken);
        assert_ne!(broken_stored, stored);
        assert!(recent.take(7, &broken_stored, |r| r == id).is_none());
        assert!(read(7, &broken_stored, id, &broken, false, &recent).is_err());
        // ... and reads another one as it is.
        let other = text.replacen(&t.sensor.id, "0BADBEEF", 1);
        let r = read(7, &store(&other), id, &other, false, &recent).unwrap();
        assert_eq!(r.sensor, "0BADBEEF");
        // A template webhook parses every record whole.
        let r = read(7, &stored, id, &text, true, &recent).unwrap();
        assert!(matches!(r.form, Form::Parsed(_)));
        // Waiting for the clock: never remembered.
        let mut p = t.clone();
        p.clock = Some(TimeSource::Pending);
        let mut text = Vec::new();
        let marks = p.write_json(&mut text).unwrap();
        let stored = store(std::str::from_utf8(&text).unwrap());
        assert!(Remembered::new(&p, &text, &stored, marks).is_none());
        // A seq that goes back (another writer): the memory starts afresh.
        let mut text = Vec::new();
        let marks = t.write_json(&mut text).unwrap();
        let stored = store(std::str::from_utf8(&text).unwrap());
        recent.remember(3, Remembered::new(&t, &text, &stored, marks).unwrap());
        assert_eq!(recent.len(), 1);
    }
}
