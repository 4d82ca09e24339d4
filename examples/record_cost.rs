//! The storage and sender work per reading, for instruction counts under callgrind
//! (`scripts/bench.sh` runs it): `record_cost MODE N` builds the simulated building's first
//! 1 000 readings, then does MODE's work N times over them (one reading after another) and
//! prints the stored size per reading. Instructions per reading of a step are
//! (total(MODE, N) − total(`none`, N)) / N.
//!
//! Modes: `none` (only the set-up), `json` (write a reading's JSON as a commit does), `serde`
//! (the same with `serde_json`, for comparison), `store` (write and encode the stored body: a
//! commit's work before SQLite), `store_search` (the same, finding the time and boot id in
//! the text instead of being told where they are), `read` (decode a stored body and read it as a webhook sender
//! does before rendering), `recent` (the same through the head the storage thread remembered,
//! the remembering included).

use std::hint::black_box;

use enocean_agent::outbox::body;
use enocean_agent::outbox::record::{Recent, Remembered, StoredRecord};
use enocean_agent::sim::sample_readings;
use enocean_agent::telemetry::Marks;
use jiff::{SignedDuration, Timestamp};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("none");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let items = sample_readings(
        1_000,
        Timestamp::from_second(1_790_000_000).expect("time"),
        SignedDuration::from_millis(250),
    );
    let stored: Vec<Vec<u8>> = items
        .iter()
        .map(|t| body::encode_record(&serde_json::to_string(t).expect("json"), &t.id))
        .collect();
    let bytes: usize = stored.iter().map(Vec::len).sum();
    let texts: Vec<(Vec<u8>, Marks)> = items
        .iter()
        .map(|t| {
            let mut out = Vec::new();
            let marks = t.write_json(&mut out).expect("json");
            (out, marks)
        })
        .collect();
    let recent = Recent::default();
    let mut out = Vec::with_capacity(4096);
    let mut scratch = Vec::with_capacity(4096);
    for k in 0..n {
        let i = k % items.len();
        match mode {
            "json" => {
                out.clear();
                black_box(&items[i]).write_json(&mut out).expect("json");
                black_box(&out);
            }
            "serde" => {
                out.clear();
                serde_json::to_writer(&mut out, black_box(&items[i])).expect("json");
                black_box(&out);
            }
            "store" => {
                // What the storage thread does per record.
                let t = black_box(&items[i]);
                out.clear();
                let marks = t.write_json(&mut out).expect("json");
                black_box(body::encode_record_known(
                    &out,
                    &t.id,
                    &marks.cuts,
                    &mut scratch,
                ));
            }
            "store_search" => {
                // The same, finding the time and boot id in the text.
                let t = black_box(&items[i]);
                out.clear();
                t.write_json(&mut out).expect("json");
                black_box(body::encode_record_bytes(&out, &t.id));
            }
            "recent" => {
                // What the storage thread remembers of a commit, then a sender's read of it.
                let (text, marks) = &texts[i];
                let r = Remembered::new(&items[i], text, &stored[i], marks.clone())
                    .expect("remembered");
                recent.remember(k as u64 + 1, r);
                let row = black_box(&stored[i]);
                let id = items[i].id.as_str();
                black_box(
                    StoredRecord::read_recent(
                        k as u64 + 1,
                        row,
                        |r| r == id,
                        || {
                            body::decode_record(rusqlite::types::ValueRef::Blob(row), id)
                                .map_err(|e| e.to_string())
                        },
                        false,
                        Some(&recent),
                    )
                    .expect("read"),
                );
            }
            "read" => {
                let text = body::decode_record(
                    rusqlite::types::ValueRef::Blob(black_box(&stored[i])),
                    &items[i].id,
                )
                .expect("decode");
                black_box(StoredRecord::read(i as u64, text, false).expect("read"));
            }
            _ => {}
        }
    }
    println!(
        "mode={mode} n={n} stored_bytes_per_reading={:.1}",
        bytes as f64 / items.len() as f64
    );
}
