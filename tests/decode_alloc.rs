//! The `decode` command's path allocates nothing per frame once it is warm (issue 12): the
//! decoder lends each frame in a buffer it reuses (`Decoder::feed_lent`), and the frame writer
//! keeps one telegram and one list of values for every frame (`inspect::FrameWriter`), which is
//! how `src/cmd/decode.rs` drives them.
//!
//! The stream is the simulated building's, with its repeated copies, line noise and bad-CRC
//! frames: a noisy line is the steady state too. Teach-in telegrams are left out of it — their
//! `teach_in` object is written through `serde_json` (one telegram in 200 in the simulator) —
//! and so are chained messages (RORG 0x40), which the simulator does not send.
//!
//! Counted by an instrumented global allocator, so this file is its own test binary
//! (`harness = false`): no other test's thread allocates while it counts.

use std::alloc::System;
use std::io::Write;
use std::time::Instant;

use enocean_agent::eep::{EepId, Library};
use enocean_agent::esp3::{Decoder, LentItem};
use enocean_agent::inspect::FrameWriter;
use enocean_agent::sim::building::{Chunk, Script, ScriptOptions};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The wire bytes of `n` radio telegrams after the first (a teach-in), with the simulator's
/// copies, noise and bad-CRC frames between them, and how many good frames they hold.
fn capture(n: usize) -> (Vec<u8>, u64) {
    let mut script = Script::new(ScriptOptions {
        teach_in_probability: 0.0,
        noise_probability: 0.05,
        bad_crc_probability: 0.05,
        ..ScriptOptions::default()
    });
    let _teach_in = script.next_chunk();
    let (mut bytes, mut frames, mut telegrams) = (Vec::new(), 0, 0);
    while telegrams < n || script.has_pending() {
        let chunk = script.next_chunk();
        if let Chunk::Telegram(e) = &chunk {
            assert!(!e.teach_in, "no teach-in after the first telegram");
            frames += 1;
            telegrams += usize::from(!e.repeated);
        }
        chunk.encode_into(&mut bytes);
    }
    (bytes, frames)
}

/// One pass of `decode` over `bytes`: frames decoded, lines with values, bytes written.
fn pass(
    decoder: &mut Decoder,
    writer: &mut FrameWriter<'_>,
    line: &mut Vec<u8>,
    out: &mut impl Write,
    bytes: &[u8],
) -> (u64, u64, u64) {
    let before = decoder.counters().frames;
    let (mut with_values, mut written) = (0, 0);
    decoder.feed_lent(bytes, Instant::now(), |item| {
        if let LentItem::Frame { frame, .. } = item {
            line.clear();
            writer.write(line, frame);
            line.push(b'\n');
            with_values += u64::from(line.windows(11).any(|w| w == b"\"values\":{\""));
            written += line.len() as u64;
            out.write_all(line).expect("a sink takes everything");
        }
    });
    (decoder.counters().frames - before, with_values, written)
}

fn check(library: &Library, eep: Option<&str>, bytes: &[u8], frames: u64) {
    let profile = eep.map(|e| library.get_str(e).expect("a built-in profile"));
    let signal = library.get(EepId::new(0xD0, 0, 0));
    let mut decoder = Decoder::new();
    let mut writer = FrameWriter::new(profile, signal, None);
    let mut line = Vec::with_capacity(1024);
    let mut out = std::io::sink();

    // Warm: every buffer grows to the largest frame and line of the stream.
    let warm = pass(&mut decoder, &mut writer, &mut line, &mut out, bytes);
    let region = Region::new(GLOBAL);
    let steady = pass(&mut decoder, &mut writer, &mut line, &mut out, bytes);
    let change = region.change();

    let what = eep.unwrap_or("no --eep");
    assert_eq!(warm.0, frames, "{what}: every good frame is decoded");
    assert_eq!(
        steady, warm,
        "{what}: the second pass writes what the first did"
    );
    if eep.is_some() {
        // The profile decodes the building's 4BS telegrams: a real share of the lines.
        assert!(
            steady.1 > frames / 20,
            "{what}: {steady:?} lines with values"
        );
    } else {
        assert_eq!(steady.1, 0, "{what}: values without a profile");
    }
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "{what}: allocations and reallocations over {frames} frames ({} bytes written)",
        steady.2
    );
    println!(
        "{what}: {frames} frames, {} lines with values, 0 allocations in the second pass",
        steady.1
    );
}

fn main() {
    let library = Library::builtin().expect("the built-in profiles load");
    let (bytes, frames) = capture(2000);
    assert!(frames >= 2000, "{frames} frames");
    check(&library, Some("A5-04-01"), &bytes, frames);
    check(&library, None, &bytes, frames);
}
