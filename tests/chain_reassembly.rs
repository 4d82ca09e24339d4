//! Chained data messages (RORG 0x40): reassembly by sender and sequence, decoding of the result
//! as if it had come in one telegram, bounds, timeouts, and properties over split points.

use std::time::{Duration, Instant};

use enocean_agent::chain::{self, ChainError, Limits, Outcome, Reassembler};
use enocean_agent::eep::{self, Library};
use enocean_agent::erp1::Telegram;
use proptest::prelude::*;

fn part(sender: u32, payload: Vec<u8>) -> Telegram {
    Telegram {
        rorg: 0x40,
        payload,
        sender,
        status: 0,
        sub_telegrams: Some(1),
        destination: Some(0xFFFF_FFFF),
        dbm_raw: Some(60),
        security_level: Some(0),
    }
}

/// The 0x40 payloads of `data` cut at `cuts` (sizes of the data carried by each part; the first
/// part may carry none).
fn cut(inner: u8, data: &[u8], seq: u8, sizes: &[usize]) -> Vec<Vec<u8>> {
    let len = data.len() as u16;
    let mut parts = Vec::new();
    let mut at = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let end = (at + n).min(data.len());
        let mut p = vec![(seq << 6) | i as u8];
        if i == 0 {
            p.extend_from_slice(&len.to_be_bytes());
            p.push(inner);
        }
        p.extend_from_slice(&data[at..end]);
        parts.push(p);
        at = end;
    }
    assert_eq!(
        at,
        data.len(),
        "sizes {sizes:?} do not cover {} bytes",
        data.len()
    );
    parts
}

/// A D2-50 basic status message (14 bytes) with values in every field.
const HRV_STATUS: [u8; 14] = [
    0x4E, 0x0F, 0xFF, 0xE4, 0x7F, 0xFF, 0x52, 0x55, 0x46, 0xFF, 0xD2, 0xC0, 0xFF, 0xF4,
];

#[test]
fn a_chained_vld_message_decodes_as_if_it_came_in_one_telegram() {
    let lib = Library::builtin().unwrap();
    let profile = lib.get_str("D2-50-00").unwrap();
    let whole = eep::decode_payload(profile, 0xD2, &HRV_STATUS, 0, None).unwrap();
    assert!(whole.values.len() > 20, "{:?}", whole.values);

    // The way a sender splits it: 10 data bytes in the first part, the rest in the second.
    let parts = chain::split(0xD2, &HRV_STATUS, 1, 10, 13).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(&parts[0][..4], &[0x40, 0x00, 14, 0xD2]);
    let mut r = Reassembler::default();
    let now = Instant::now();
    assert_eq!(
        r.push(&part(0x0190_0001, parts[0].clone()), now),
        Outcome::Pending
    );
    let mut last = part(0x0190_0001, parts[1].clone());
    last.dbm_raw = Some(71);
    last.status = 0x01;
    let Outcome::Complete(t) = r.push(&last, now) else {
        panic!("not complete")
    };
    assert_eq!((t.rorg, t.payload.as_slice()), (0xD2, &HRV_STATUS[..]));
    assert_eq!(t.sender, 0x0190_0001);
    assert_eq!(t.dbm(), Some(-71), "signal of the completing part");
    assert_eq!(t.repeater_count(), 1);
    assert_eq!(t.destination, Some(0xFFFF_FFFF));
    let joined = eep::decode(profile, &t).unwrap();
    assert_eq!(joined.values, whole.values);
    assert_eq!(
        joined.get("outdoor_air_temperature").unwrap().value,
        eep::Val::Number(63.0)
    );
    assert_eq!(r.counters().completed, 1);
    assert_eq!(r.counters().parts, 2);
    assert_eq!(r.pending(), 0);
}

#[test]
fn interleaved_senders_and_sequences_complete_independently() {
    let mut r = Reassembler::default();
    let now = Instant::now();
    let a = chain::split(0xD2, &[1; 30], 0, 10, 13).unwrap();
    let b = chain::split(0xD2, &[2; 30], 0, 10, 13).unwrap();
    let a2 = chain::split(0xD1, &[3; 12], 1, 10, 13).unwrap();
    let mut done = Vec::new();
    for i in 0..3 {
        for (sender, parts) in [(0xA, &a), (0xB, &b), (0xA, &a2)] {
            if let Some(p) = parts.get(i)
                && let Outcome::Complete(t) = r.push(&part(sender, p.clone()), now)
            {
                done.push((t.sender, t.rorg, t.payload));
            }
        }
    }
    done.sort();
    assert_eq!(
        done,
        vec![
            (0xA, 0xD1, vec![3; 12]),
            (0xA, 0xD2, vec![1; 30]),
            (0xB, 0xD2, vec![2; 30])
        ]
    );
    assert_eq!(r.counters().incomplete(), 0);
}

#[test]
fn parts_in_any_order_and_repeated_parts() {
    let mut r = Reassembler::default();
    let now = Instant::now();
    let parts = chain::split(0xD2, &(0..40).collect::<Vec<u8>>(), 2, 10, 13).unwrap();
    assert_eq!(parts.len(), 4);
    assert_eq!(r.push(&part(7, parts[3].clone()), now), Outcome::Pending);
    assert_eq!(r.push(&part(7, parts[1].clone()), now), Outcome::Pending);
    assert_eq!(r.push(&part(7, parts[1].clone()), now), Outcome::Duplicate);
    assert_eq!(r.push(&part(7, parts[0].clone()), now), Outcome::Pending);
    let Outcome::Complete(t) = r.push(&part(7, parts[2].clone()), now) else {
        panic!("not complete")
    };
    assert_eq!(t.payload, (0..40).collect::<Vec<u8>>());
    assert_eq!(r.counters().duplicates, 1);
    // A repeat of a part after completion starts a chain that never completes.
    assert_eq!(r.push(&part(7, parts[3].clone()), now), Outcome::Pending);
    assert_eq!(r.expire(now + Duration::from_secs(4)), 1);
    assert_eq!(r.counters().timed_out, 1);
}

#[test]
fn a_missing_part_times_out_and_is_counted() {
    let limits = Limits {
        timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let mut r = Reassembler::new(limits);
    let t0 = Instant::now();
    let parts = chain::split(0xD2, &[9; 20], 0, 10, 13).unwrap();
    assert_eq!(r.push(&part(1, parts[0].clone()), t0), Outcome::Pending);
    assert_eq!(r.expire(t0 + Duration::from_millis(500)), 0, "not yet");
    // The second part arrives too late: the first is gone, and it cannot complete alone.
    assert_eq!(
        r.push(&part(1, parts[1].clone()), t0 + Duration::from_millis(501)),
        Outcome::Pending
    );
    assert_eq!(r.counters().timed_out, 1);
    assert_eq!(r.pending(), 1);
    assert_eq!(r.expire(t0 + Duration::from_secs(2)), 1);
    assert_eq!(r.counters().incomplete(), 2);
    assert_eq!(r.counters().completed, 0);
    assert_eq!(r.pending_bytes(), 0);
}

#[test]
fn a_new_first_part_with_the_same_sequence_replaces_the_old_chain() {
    let mut r = Reassembler::default();
    let now = Instant::now();
    let old = chain::split(0xD2, &[1; 20], 3, 10, 13).unwrap();
    let new = chain::split(0xD2, &[2; 12], 3, 10, 13).unwrap();
    assert_eq!(r.push(&part(5, old[0].clone()), now), Outcome::Pending);
    assert_eq!(r.push(&part(5, new[0].clone()), now), Outcome::Pending);
    let Outcome::Complete(t) = r.push(&part(5, new[1].clone()), now) else {
        panic!("not complete")
    };
    assert_eq!(t.payload, vec![2; 12]);
    assert_eq!(r.counters().replaced, 1);
}

#[test]
fn parts_past_the_announced_length_reject_the_chain() {
    let mut r = Reassembler::default();
    let now = Instant::now();
    // LEN 5 is complete after the first part, but a part 1 was stored before it.
    assert_eq!(r.push(&part(3, vec![0x01, 9, 9]), now), Outcome::Pending);
    assert!(matches!(
        r.push(&part(3, vec![0x00, 0, 5, 0xD2, 1, 2, 3, 4, 5]), now),
        Outcome::Rejected(ChainError::Overlong { len: 5, .. })
    ));
    assert_eq!(r.pending(), 0);
    // Padding after LEN in the last needed part is dropped.
    let Outcome::Complete(t) = r.push(&part(3, vec![0x00, 0, 2, 0xD2, 1, 2, 0, 0]), now) else {
        panic!("not complete")
    };
    assert_eq!(t.payload, vec![1, 2]);
}

#[test]
fn memory_stays_within_the_limits() {
    let limits = Limits {
        max_senders: 8,
        max_chains_per_sender: 2,
        max_total_bytes: 200,
        ..Limits::default()
    };
    let mut r = Reassembler::new(limits);
    let now = Instant::now();
    for sender in 0..100u32 {
        for seq in 0..4u8 {
            let parts = chain::split(0xD2, &[sender as u8; 40], seq, 10, 13).unwrap();
            assert_eq!(
                r.push(&part(sender, parts[0].clone()), now),
                Outcome::Pending
            );
            assert_eq!(
                r.push(&part(sender, parts[1].clone()), now),
                Outcome::Pending
            );
            assert!(r.pending_bytes() <= 200, "{} bytes", r.pending_bytes());
            assert!(r.pending() <= 8 * 2);
        }
    }
    let c = r.counters();
    assert_eq!(c.completed, 0);
    assert_eq!(c.incomplete() as usize + r.pending(), 400);
    assert!(c.evicted >= 390, "{c:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any split of any message, in any order, with repeats, interleaved with another sender's
    /// message, comes back exactly once and byte for byte.
    #[test]
    fn any_split_point_reassembles(
        data in proptest::collection::vec(any::<u8>(), 1..400),
        raw_sizes in proptest::collection::vec(1usize..40, 1..64),
        first in 0usize..12,
        order_seed in any::<u64>(),
        repeat in proptest::option::of(0usize..64),
        seq in 0u8..4,
        inner in any::<u8>().prop_filter("not 0x40", |r| *r != 0x40),
    ) {
        // Sizes that cover the data in at most 64 parts.
        let mut sizes = vec![first.min(data.len())];
        let mut left = data.len() - sizes[0];
        let least = data.len().div_ceil(60);
        for s in raw_sizes.iter().cycle() {
            if left == 0 { break; }
            let n = (*s).max(least).min(left);
            sizes.push(n);
            left -= n;
        }
        prop_assert!(sizes.len() <= 64);
        let parts = cut(inner, &data, seq, &sizes);
        let other = chain::split(0xD2, &[0xEE; 25], 0, 10, 13).unwrap();
        let mut order: Vec<usize> = (0..parts.len()).collect();
        let mut x = order_seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        // A repeated part (a second copy right after the first), never of the completing part.
        if let Some(rp) = repeat && order.len() > 1 {
            let j = rp % (order.len() - 1);
            order.insert(j + 1, order[j]);
        }
        let mut r = Reassembler::default();
        let now = Instant::now();
        let mut got = Vec::new();
        for (k, &i) in order.iter().enumerate() {
            if let Some(p) = other.get(k)
                && let Outcome::Complete(t) = r.push(&part(2, p.clone()), now)
            {
                prop_assert_eq!(t.payload, vec![0xEE; 25]);
            }
            match r.push(&part(1, parts[i].clone()), now) {
                Outcome::Complete(t) => got.push(t),
                Outcome::Rejected(e) => prop_assert!(false, "rejected: {e}"),
                Outcome::Pending | Outcome::Duplicate => {}
            }
        }
        for p in other.iter().skip(order.len()) {
            let _ = r.push(&part(2, p.clone()), now);
        }
        prop_assert_eq!(got.len(), 1, "completed {} times", got.len());
        prop_assert_eq!(got[0].rorg, inner);
        prop_assert_eq!(&got[0].payload, &data);
        prop_assert_eq!(r.counters().completed, 2);
        prop_assert_eq!(r.pending(), 0);
    }

    /// Arbitrary 0x40 payloads from arbitrary senders at arbitrary times never panic and never
    /// push memory past the limits.
    #[test]
    fn garbage_never_panics_and_stays_bounded(
        telegrams in proptest::collection::vec(
            (0u32..12, proptest::collection::vec(any::<u8>(), 0..20), 0u64..5000),
            0..300,
        ),
    ) {
        let limits = Limits {
            max_senders: 4,
            max_chains_per_sender: 2,
            max_total_bytes: 256,
            max_len: 128,
            timeout: Duration::from_millis(1000),
            ..Limits::default()
        };
        let mut r = Reassembler::new(limits);
        let t0 = Instant::now();
        let mut at = 0;
        for (sender, payload, dt) in telegrams {
            at += dt;
            let now = t0 + Duration::from_millis(at);
            if let Outcome::Complete(t) = r.push(&part(sender, payload), now) {
                prop_assert!(!t.payload.is_empty() && t.payload.len() <= 128);
                prop_assert_ne!(t.rorg, 0x40);
            }
            prop_assert!(r.pending_bytes() <= 256);
            prop_assert!(r.pending() <= 4 * 2);
        }
        let c = r.counters();
        prop_assert!(c.parts >= c.completed);
    }
}
