//! Decoder throughput on a realistic capture (`tests/data/mixed.esp3`: RPS, 1BS, 4BS and VLD
//! telegrams with noise bursts), fed in 64-byte reads as a serial port returns them.
//! Reports frames/s and MB/s. `hostile` is the worst case of the rescan rule: nothing but false
//! headers with a valid CRC8H each announcing the longest frame (every one is rejected by its
//! data CRC, one byte at a time); it must stay linear. Reproduce: `cargo bench --bench esp3_decoder`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use enocean_agent::esp3::{Decoder, Item, SYNC, crc8};

fn capture() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mixed.esp3");
    std::fs::read(path).expect("run scripts/make_captures.py")
}

fn decode_all(bytes: &[u8]) -> u64 {
    let mut decoder = Decoder::new();
    let now = Instant::now();
    let mut frames = 0u64;
    for read in bytes.chunks(64) {
        decoder.feed(read, now, |item| {
            if let Item::Frame { frame, .. } = item {
                frames += 1;
                black_box(frame);
            }
        });
    }
    frames
}

/// 256 KiB of back-to-back headers announcing 65 535 data + 255 optional bytes.
fn hostile() -> Vec<u8> {
    let mut header = vec![SYNC, 0xFF, 0xFF, 0xFF, 0x01];
    header.push(crc8(&header[1..5]));
    header.iter().copied().cycle().take(256 * 1024).collect()
}

fn bench(c: &mut Criterion) {
    let bytes = capture();
    let frames = decode_all(&bytes);
    let mut group = c.benchmark_group("esp3_decoder");
    group.throughput(Throughput::Elements(frames));
    group.bench_function("frames", |b| b.iter(|| decode_all(black_box(&bytes))));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("bytes", |b| b.iter(|| decode_all(black_box(&bytes))));
    let hostile = hostile();
    group.throughput(Throughput::Bytes(hostile.len() as u64));
    group.bench_function("hostile", |b| b.iter(|| decode_all(black_box(&hostile))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
