//! Secure telegram cost per telegram (`Keyring::unwrap`): an accepted PTM 215 telegram (the
//! published example, implicit 16-bit RLC found at the first try), an accepted 0x31 telegram
//! with a transmitted 32-bit RLC, and the worst case, a forged telegram from a known sender with
//! an implicit RLC: every code of the window forward and backward is tried (2 × 128 CMACs).
//!
//! `cargo bench --bench secure`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use enocean_agent::erp1::Telegram;
use enocean_agent::secure::{DeviceKey, Keyring, SecureDevice, Slf};

fn telegram(rorg: u8, payload: &[u8], sender: u32) -> Telegram {
    let mut data = vec![rorg];
    data.extend_from_slice(payload);
    data.extend_from_slice(&sender.to_be_bytes());
    data.push(0);
    Telegram::from_parts(&data, &[]).unwrap()
}

fn ptm_ring() -> Keyring {
    let mut ring = Keyring::default();
    ring.insert(
        0x019E_B63B,
        SecureDevice {
            key: DeviceKey::from_bytes(*b"EnOcean GmbH.13\0"),
            slf: Slf(0x4B),
            next_rlc: Some(0xC0FF),
            ptm: true,
            configured: true,
        },
    );
    ring
}

fn bench(c: &mut Criterion) {
    let pressed = telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFB], 0x019E_B63B);
    c.bench_function("ptm215_accepted", |b| {
        b.iter_batched(
            ptm_ring,
            |mut ring| black_box(ring.unwrap(black_box(&pressed), None)).is_ok(),
            criterion::BatchSize::SmallInput,
        )
    });
    let forged = telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFA], 0x019E_B63B);
    let mut ring = ptm_ring();
    c.bench_function("implicit_rlc_forged_worst_case", |b| {
        b.iter(|| black_box(ring.unwrap(black_box(&forged), None)).is_err())
    });
    // Transmitted 32-bit RLC: one CMAC per telegram; the RLC moves on each time.
    let key = DeviceKey::from_bytes([0x5A; 16]);
    let mut ring = Keyring::default();
    ring.insert(
        7,
        SecureDevice {
            key: key.clone(),
            slf: Slf(0xF3),
            next_rlc: None,
            ptm: false,
            configured: true,
        },
    );
    let explicit = telegram(0x31, &[1, 2, 3, 4, 5, 0, 0, 0, 1, 9, 9, 9, 9], 7);
    c.bench_function("explicit_rlc_rejected_one_cmac", |b| {
        b.iter(|| black_box(ring.unwrap(black_box(&explicit), None)).is_err())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
