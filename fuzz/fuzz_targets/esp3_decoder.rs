//! Fuzzes the ESP3 decoder: arbitrary bytes in arbitrary reads and arrival times must never panic,
//! keep memory bounded, and every frame found must re-encode and decode to itself. The first byte
//! chooses the read size and whether reads arrive late (gap rule).
#![no_main]

use std::time::{Duration, Instant};

use enocean_agent::erp1::Telegram;
use enocean_agent::esp3::{Decoder, Item, MAX_FRAME_LEN};
use enocean_agent::inspect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&split, bytes)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(split % 64) + 1;
    let t0 = Instant::now();
    let mut decoder = Decoder::new();
    let mut frames = Vec::new();
    for (i, piece) in bytes.chunks(chunk).enumerate() {
        let at = t0 + Duration::from_millis(i as u64 * if split & 0x80 != 0 { 150 } else { 1 });
        decoder.feed(piece, at, |item| {
            if let Item::Frame { frame, .. } = item {
                frames.push(frame);
            }
        });
        assert!(decoder.pending().len() < MAX_FRAME_LEN);
    }
    for frame in &frames {
        let again = Decoder::new().feed_collect(&frame.encode(), t0);
        assert!(matches!(again.as_slice(), [Item::Frame { frame: f, .. }] if f == frame));
        let _ = inspect::frame_json(frame);
        let _ = Telegram::from_frame(frame);
    }
});
