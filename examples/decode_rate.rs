//! Prints how fast this machine frames and reads ERP1 telegrams from a capture, as one JSON line.
//! Used by `scripts/compare_python.sh` to put our rate next to the Python `enocean` package's.
//! Usage: `cargo run --release --example decode_rate -- tests/data/mixed.esp3`

use std::time::{Duration, Instant};

use enocean_agent::erp1::Telegram;
use enocean_agent::esp3::{Decoder, Item};

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or("tests/data/mixed.esp3".into());
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let start = Instant::now();
    let (mut frames, mut telegrams, mut passes) = (0u64, 0u64, 0u64);
    while passes < 3 || start.elapsed() < Duration::from_secs(2) {
        let mut decoder = Decoder::new();
        let now = Instant::now();
        for read in bytes.chunks(64) {
            decoder.feed(read, now, |item| {
                if let Item::Frame { frame, .. } = item {
                    frames += 1;
                    telegrams += u64::from(Telegram::from_frame(&frame).is_ok());
                }
            });
        }
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"frames\":{frames},\"telegrams\":{telegrams},\"seconds\":{secs:.3},\"frames_per_s\":{:.0},\"mb_per_s\":{:.1}}}",
        frames as f64 / secs,
        (bytes.len() as u64 * passes) as f64 / secs / 1e6
    );
}
