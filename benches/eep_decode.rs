//! EEP decoding throughput on a realistic mix: every data telegram of `tests/data/eep_vectors.jsonl`
//! (rockers, contacts, temperature/humidity/CO2/VOC sensors, meters, actuators) with its profile
//! looked up by EEP, as the agent does per received telegram. Reports telegrams per second.
//!
//! `decode_only` decodes the same telegrams with the profiles looked up beforehand (the decoder
//! alone), `lookup_only` is the profile lookups alone.
//!
//! `cargo bench --bench eep_decode`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use enocean_agent::eep::{self, EepId, Library};

struct Sample {
    eep: EepId,
    rorg: u8,
    payload: Vec<u8>,
    status: u8,
    direction: Option<u8>,
}

fn samples() -> Vec<Sample> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/eep_vectors.jsonl"
    ))
    .unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "eep_data")
        .map(|v| {
            let eep: EepId = format!(
                "{}-{}-{}",
                v["rorg"].as_str().unwrap(),
                v["func"].as_str().unwrap(),
                v["type"].as_str().unwrap()
            )
            .parse()
            .unwrap();
            Sample {
                eep,
                rorg: eep.rorg,
                payload: hex::decode(v["esp3"]["payload_hex"].as_str().unwrap()).unwrap(),
                status: v["esp3"]["status"].as_u64().unwrap() as u8,
                direction: v["direction"].as_u64().map(|d| d as u8),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let lib = Library::builtin().unwrap();
    let samples = samples();
    let mut group = c.benchmark_group("eep");
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.bench_function("decode_mix", |b| {
        b.iter(|| {
            let mut values = 0usize;
            for s in &samples {
                let Some(p) = lib.get(s.eep) else { continue };
                if let Ok(d) =
                    eep::decode_payload(p, s.rorg, black_box(&s.payload), s.status, s.direction)
                {
                    values += d.values.len();
                }
            }
            black_box(values)
        })
    });
    group.bench_function("decode_mix_to_readings", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for s in &samples {
                let Some(p) = lib.get(s.eep) else { continue };
                if let Ok(d) =
                    eep::decode_payload(p, s.rorg, black_box(&s.payload), s.status, s.direction)
                {
                    n += d.readings().len();
                }
            }
            black_box(n)
        })
    });
    let resolved: Vec<(&eep::Profile, &Sample)> = samples
        .iter()
        .filter_map(|s| Some((lib.get(s.eep)?, s)))
        .collect();
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            let mut values = 0usize;
            for (p, s) in &resolved {
                if let Ok(d) =
                    eep::decode_payload(p, s.rorg, black_box(&s.payload), s.status, s.direction)
                {
                    values += d.values.len();
                }
            }
            black_box(values)
        })
    });
    group.bench_function("lookup_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for s in &samples {
                if lib.get(black_box(s.eep)).is_some() {
                    n += 1;
                }
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
