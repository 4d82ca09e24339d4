//! Every stream of `tests/data/frames.jsonl` (from an independent implementation), fed one read at a
//! time: the frames, the events and the bytes still pending must be the expected ones.

mod common;

use std::time::Instant;

use enocean_agent::esp3::{Decoder, Event, Item};
use serde_json::{Value, json};

/// Our CRC8D policy: after a data CRC mismatch the search restarts one byte after the sync byte
/// (never trusting the length of a frame that failed its check). The vectors call this policy B.
const POLICY: &str = "B";

/// Frames and events as the vector file writes them.
fn run(chunks: &[Value]) -> (Vec<Value>, Vec<Value>, String) {
    let mut decoder = Decoder::new();
    let now = Instant::now();
    let (mut frames, mut events) = (Vec::new(), Vec::new());
    for chunk in chunks {
        decoder.feed(
            &common::unhex(chunk.as_str().unwrap()),
            now,
            |item| match item {
                Item::Frame { offset, frame } => frames.push(json!({
                    "offset": offset,
                    "packet_type": frame.packet_type().code(),
                    "data_length": frame.data().len(),
                    "optional_length": frame.optional().len(),
                    "header_crc8": frame.header_crc(),
                    "data_crc8": frame.data_crc(),
                    "data_hex": hex::encode_upper(frame.data()),
                    "optional_hex": hex::encode_upper(frame.optional()),
                    "frame_hex": hex::encode_upper(frame.encode()),
                })),
                Item::Event(e) => events.push(enocean_agent::inspect::event_json(&e)),
            },
        );
    }
    (frames, events, hex::encode_upper(decoder.pending()))
}

#[test]
fn every_stream_decodes_as_expected() {
    let vectors = common::jsonl("frames.jsonl");
    assert!(vectors.len() >= 30, "vector file looks truncated");
    let mut checked = 0;
    for v in &vectors {
        let id = v["id"].as_str().unwrap();
        let (frames, events, pending) = run(v["chunks"].as_array().unwrap());
        let (mut want_frames, mut want_events) = if v["policy_dependent"] == true {
            (
                v[format!("expected_frames_policy_{POLICY}_resync_next_byte")].clone(),
                v[format!("expected_events_policy_{POLICY}")].clone(),
            )
        } else {
            (v["expected_frames"].clone(), v["expected_events"].clone())
        };
        // The vectors' framer returns a header announcing no data and no optional bytes (e.g.
        // `55 00 00 00 02 0E 00`) as a frame and leaves the rejection to the packet parser. Our
        // decoder rejects it at the framing level, as issue #2 asks ("reject len_data + len_opt ==
        // 0"): any 0x55 followed by six zero bytes passes both CRCs, so such a "frame" is far more
        // often line noise than a packet. It reports `empty_frame` and resyncs at the next byte; the
        // six header bytes after the sync byte are then discarded as non-sync bytes. Every later
        // frame is found exactly as the vectors say.
        let empty: Vec<u64> = want_frames
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["data_length"] == 0 && f["optional_length"] == 0)
            .map(|f| f["offset"].as_u64().unwrap())
            .collect();
        if !empty.is_empty() {
            want_frames
                .as_array_mut()
                .unwrap()
                .retain(|f| !(f["data_length"] == 0 && f["optional_length"] == 0));
            let events = want_events.as_array_mut().unwrap();
            for offset in empty {
                events.push(json!({"event": "empty_frame", "offset": offset}));
                events.push(
                    json!({"event": "discarded_non_sync_bytes", "offset": offset + 1, "count": 6}),
                );
            }
            events.sort_by_key(|e| e["offset"].as_u64());
        }
        assert_eq!(Value::from(frames), want_frames, "{id}: frames");
        assert_eq!(Value::from(events), want_events, "{id}: events");
        assert_eq!(
            pending,
            v["expected_pending_hex"].as_str().unwrap(),
            "{id}: pending"
        );
        checked += 1;
    }
    assert_eq!(checked, vectors.len());
}

#[test]
fn whole_stream_in_one_read_gives_the_same_frames() {
    for v in common::jsonl("frames.jsonl") {
        let split = run(v["chunks"].as_array().unwrap());
        let whole = run(&[v["stream_hex"].clone()]);
        assert_eq!(split.0, whole.0, "{}", v["id"]);
        assert_eq!(split.2, whole.2, "{}", v["id"]);
    }
}

#[test]
fn counters_add_up() {
    for v in common::jsonl("frames.jsonl") {
        let bytes = common::unhex(v["stream_hex"].as_str().unwrap());
        let mut d = Decoder::new();
        let (mut frames, mut discarded, mut header_errors) = (0, 0, 0);
        d.feed(&bytes, Instant::now(), |item| match item {
            Item::Frame { .. } => frames += 1,
            Item::Event(Event::DiscardedBytes { count, .. }) => discarded += count as u64,
            Item::Event(Event::HeaderCrcMismatch { .. }) => header_errors += 1,
            Item::Event(_) => {}
        });
        let c = d.counters();
        assert_eq!(c.bytes, bytes.len() as u64, "{}", v["id"]);
        assert_eq!(c.frames, frames, "{}", v["id"]);
        assert_eq!(c.discarded_bytes, discarded, "{}", v["id"]);
        assert_eq!(c.header_crc_errors, header_errors, "{}", v["id"]);
    }
}
