//! Property tests of the ESP3 decoder: round trips through arbitrary read splits, resync after
//! garbage, and no panic and bounded memory on arbitrary input.

use std::time::{Duration, Instant};

use enocean_agent::esp3::{Decoder, Frame, GAP_TIMEOUT, Item, LentItem, MAX_FRAME_LEN, PacketType};
use proptest::prelude::*;

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(any::<u8>(), 0..20),
    )
        .prop_filter("a frame carries at least one byte", |(_, d, o)| {
            !(d.is_empty() && o.is_empty())
        })
        .prop_map(|(t, d, o)| Frame::new(PacketType::from(t), &d, &o).unwrap())
}

/// Cuts `bytes` at the given fractions and feeds the pieces one by one.
fn feed_split(decoder: &mut Decoder, bytes: &[u8], cuts: &[f64], at: Instant) -> Vec<Item> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|f| (f * bytes.len() as f64) as usize)
        .collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    let mut items = Vec::new();
    for w in points.windows(2) {
        decoder.feed(&bytes[w[0]..w[1]], at, |i| items.push(i));
    }
    items
}

fn frames_of(items: Vec<Item>) -> Vec<Frame> {
    items
        .into_iter()
        .filter_map(|i| match i {
            Item::Frame { frame, .. } => Some(frame),
            Item::Event(_) => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_split_decode_round_trips(
        frames in proptest::collection::vec(frame(), 1..8),
        cuts in proptest::collection::vec(0.0f64..1.0, 0..12),
    ) {
        let mut bytes = Vec::new();
        for f in &frames {
            f.encode_into(&mut bytes);
        }
        let mut d = Decoder::new();
        let items = feed_split(&mut d, &bytes, &cuts, Instant::now());
        prop_assert!(items.iter().all(|i| matches!(i, Item::Frame { .. })), "{:?}", items);
        prop_assert_eq!(frames_of(items), frames);
        prop_assert!(d.pending().is_empty());
    }

    #[test]
    fn frames_after_a_noise_burst_are_all_found(
        garbage in proptest::collection::vec(any::<u8>(), 0..400),
        frames in proptest::collection::vec(frame(), 1..6),
        cuts in proptest::collection::vec(0.0f64..1.0, 0..6),
    ) {
        // Noise, then a quiet line for longer than the gap rule, then traffic: whatever false frame
        // start the noise contained is abandoned and every real frame is found.
        let mut d = Decoder::new();
        let t0 = Instant::now();
        d.feed(&garbage, t0, |_| {});
        let mut bytes = Vec::new();
        for f in &frames {
            f.encode_into(&mut bytes);
        }
        let later = t0 + GAP_TIMEOUT + Duration::from_millis(1);
        let found = frames_of(feed_split(&mut d, &bytes, &cuts, later));
        prop_assert_eq!(found, frames);
    }

    #[test]
    fn frames_separated_by_non_sync_garbage_are_all_found(
        parts in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>().prop_filter("no sync", |b| *b != 0x55), 0..40), frame()),
            1..8,
        ),
        cuts in proptest::collection::vec(0.0f64..1.0, 0..10),
    ) {
        let mut bytes = Vec::new();
        for (garbage, f) in &parts {
            bytes.extend_from_slice(garbage);
            f.encode_into(&mut bytes);
        }
        let garbage_total: usize = parts.iter().map(|(g, _)| g.len()).sum();
        let mut d = Decoder::new();
        let found = frames_of(feed_split(&mut d, &bytes, &cuts, Instant::now()));
        let want: Vec<Frame> = parts.into_iter().map(|(_, f)| f).collect();
        prop_assert_eq!(found, want);
        prop_assert_eq!(d.counters().discarded_bytes as usize, garbage_total);
    }

    #[test]
    fn lent_frames_are_the_frames_given(
        parts in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..40), frame()),
            1..8,
        ),
        cuts in proptest::collection::vec(0.0f64..1.0, 0..10),
        gap_after in proptest::option::of(0usize..8),
    ) {
        // Garbage (sync bytes included) between frames, read in arbitrary pieces, with a pause
        // past the gap rule somewhere: `feed_lent` lends the same frames and events, in the
        // same order, as `feed` gives, though every frame it lends shares one buffer.
        let mut bytes = Vec::new();
        for (garbage, f) in &parts {
            bytes.extend_from_slice(garbage);
            f.encode_into(&mut bytes);
        }
        let mut points: Vec<usize> = cuts.iter().map(|f| (f * bytes.len() as f64) as usize).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let (mut given, mut lent) = (Vec::new(), Vec::new());
        let (mut a, mut b) = (Decoder::new(), Decoder::new());
        let t0 = Instant::now();
        for (k, w) in points.windows(2).enumerate() {
            let late = gap_after.is_some_and(|g| k > g);
            let at = t0 + if late { GAP_TIMEOUT * 2 } else { Duration::ZERO };
            a.feed(&bytes[w[0]..w[1]], at, |i| given.push(i));
            b.feed_lent(&bytes[w[0]..w[1]], at, |i| {
                lent.push(match i {
                    LentItem::Frame { offset, frame } => Item::Frame { offset, frame: frame.clone() },
                    LentItem::Event(e) => Item::Event(e),
                });
            });
        }
        prop_assert_eq!(&lent, &given);
        prop_assert_eq!(a.counters(), b.counters());
        prop_assert_eq!(a.pending(), b.pending());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_memory_stays_bounded(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..40),
        sync_bias in proptest::collection::vec((any::<usize>(), 0u8..4), 0..20),
    ) {
        let mut d = Decoder::new();
        let t0 = Instant::now();
        let mut total = 0u64;
        let mut accounted = 0u64;
        for (n, mut chunk) in chunks.into_iter().enumerate() {
            // Plant sync bytes and plausible headers so the slow paths are exercised too.
            for (pos, kind) in &sync_bias {
                if !chunk.is_empty() {
                    let i = pos % chunk.len();
                    chunk[i] = if *kind == 0 { 0x00 } else { 0x55 };
                }
            }
            total += chunk.len() as u64;
            d.feed(&chunk, t0 + Duration::from_millis(n as u64 * 40), |item| {
                accounted += match item {
                    Item::Frame { frame, .. } => frame.encoded_len() as u64,
                    Item::Event(e) => e.consumed() as u64,
                };
            });
            prop_assert!(d.pending().len() < MAX_FRAME_LEN);
        }
        // Every byte is either in a frame, discarded, a rejected sync byte (a gap timeout consumes
        // only its sync byte too), or still pending.
        prop_assert_eq!(accounted + d.pending().len() as u64, total);
        prop_assert_eq!(d.counters().bytes, total);
    }
}
