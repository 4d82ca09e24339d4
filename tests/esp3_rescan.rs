//! The search rule never hides a valid frame: whatever rejects a frame start (header CRC, data
//! CRC, empty header, 100 ms gap) consumes only its sync byte and everything held after it is
//! rescanned. Valid frames mixed with arbitrary garbage, including false headers with a valid
//! CRC8H announcing any length up to 64 KiB, cut into arbitrary reads with arbitrary pauses: every
//! valid frame comes out exactly once, in order. Plus the two reproductions of issue 9.

use std::time::{Duration, Instant};

use enocean_agent::esp3::{
    Decoder, Frame, GAP_TIMEOUT, HEADER_LEN, Item, MAX_FRAME_LEN, PacketType, SYNC, crc8,
};
use proptest::prelude::*;

/// A header with a valid CRC8H announcing `data` data bytes and `opt` optional bytes.
fn fake_header(data: u16, opt: u8) -> [u8; HEADER_LEN] {
    let [hi, lo] = data.to_be_bytes();
    [SYNC, hi, lo, opt, 0x01, crc8(&[hi, lo, opt, 0x01])]
}

/// A 4BS telegram from sender `n`, as a USB 300 delivers it (data 10 bytes, optional 7).
fn telegram(n: u32) -> Vec<u8> {
    let mut data = vec![0xA5, 0x00, (n >> 8) as u8, n as u8, 0x08];
    data.extend_from_slice(&(0x0180_0000 | n).to_be_bytes());
    data.push(0x00);
    let optional = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x44, 0x00];
    Frame::new(PacketType::RadioErp1, &data, &optional)
        .unwrap()
        .encode()
}

/// A stream under construction: bytes, and where the planted valid frames are.
#[derive(Debug, Clone, Default)]
struct Stream {
    bytes: Vec<u8>,
    /// `(offset, length)` of every planted frame, in order.
    frames: Vec<(usize, usize)>,
}

impl Stream {
    fn frame(&mut self, bytes: &[u8]) {
        self.frames.push((self.bytes.len(), bytes.len()));
        self.bytes.extend_from_slice(bytes);
    }

    fn junk(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// True when `pos` is the first byte of a planted frame or lies inside one.
    fn in_frame(&self, pos: usize) -> bool {
        let i = self.frames.partition_point(|&(o, _)| o <= pos);
        i > 0 && {
            let (o, l) = self.frames[i - 1];
            pos < o + l
        }
    }

    /// True when a cut at `pos` (between bytes `pos - 1` and `pos`) splits a planted frame.
    fn splits_frame(&self, pos: usize) -> bool {
        pos > 0 && self.in_frame(pos - 1) && self.in_frame(pos) && !self.starts_frame(pos)
    }

    fn starts_frame(&self, pos: usize) -> bool {
        self.frames.binary_search_by_key(&pos, |&(o, _)| o).is_ok()
    }

    /// Whether the bytes at `pos` form a complete frame that passes both CRCs.
    fn valid_at(&self, pos: usize) -> bool {
        let b = &self.bytes[pos..];
        if b.len() < HEADER_LEN || b[0] != SYNC || crc8(&b[1..5]) != b[5] {
            return false;
        }
        let body = usize::from(u16::from_be_bytes([b[1], b[2]])) + usize::from(b[3]);
        let total = HEADER_LEN + body + 1;
        body > 0 && b.len() >= total && crc8(&b[HEADER_LEN..total - 1]) == b[total - 1]
    }

    /// Makes sure no sync byte outside the planted frames starts a valid frame by chance (a
    /// false header whose announced body happens to pass CRC8D *is* a frame by the rules, and it
    /// would rightly swallow the planted frames it covers). A hit becomes 0x54, which no frame
    /// start can be; the loop repeats because a change can validate an earlier start.
    fn no_accidental_frames(mut self) -> Self {
        loop {
            let hit = (0..self.bytes.len())
                .rev()
                .find(|&p| self.bytes[p] == SYNC && !self.in_frame(p) && self.valid_at(p));
            match hit {
                Some(p) => self.bytes[p] = 0x54,
                None => return self,
            }
        }
    }

    fn expected(&self) -> Vec<(u64, Vec<u8>)> {
        self.frames
            .iter()
            .map(|&(o, l)| (o as u64, self.bytes[o..o + l].to_vec()))
            .collect()
    }
}

/// Feeds `reads` (`(bytes, arrival)`), then a long silence; returns the frames with their
/// offsets, checking the byte accounting and the memory bound on the way.
fn decode(reads: &[(&[u8], Instant)]) -> Vec<(u64, Vec<u8>)> {
    let mut d = Decoder::new();
    let mut frames = Vec::new();
    let mut consumed = 0u64;
    let mut take = |item: Item| match item {
        Item::Frame { offset, frame } => {
            consumed += frame.encoded_len() as u64;
            frames.push((offset, frame.encode()));
        }
        Item::Event(e) => consumed += e.consumed() as u64,
    };
    let mut total = 0u64;
    let mut last = None;
    for &(bytes, at) in reads {
        d.feed(bytes, at, &mut take);
        total += bytes.len() as u64;
        last = Some(at);
        assert!(d.pending().len() < MAX_FRAME_LEN);
    }
    if let Some(at) = last {
        d.expire(at + GAP_TIMEOUT + Duration::from_millis(1), &mut take);
    }
    assert!(d.pending().is_empty(), "a silence decides everything held");
    assert_eq!(
        consumed, total,
        "every byte is in a frame, discarded or a rejected sync"
    );
    assert_eq!(d.counters().bytes, total);
    assert_eq!(d.counters().frames, frames.len() as u64);
    frames
}

#[derive(Debug, Clone)]
enum Part {
    /// A valid frame.
    Frame(Frame),
    /// Arbitrary bytes (sync bytes included).
    Garbage(Vec<u8>),
    /// A long run of pseudo-random bytes: enough to complete false headers of any length.
    Filler { len: usize, seed: u64 },
    /// A false header with a valid CRC8H announcing `data` + `opt` bytes.
    FakeHeader { data: u16, opt: u8 },
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..120),
        proptest::collection::vec(any::<u8>(), 0..12),
    )
        .prop_filter("a frame carries at least one byte", |(_, d, o)| {
            !(d.is_empty() && o.is_empty())
        })
        .prop_map(|(t, d, o)| Frame::new(PacketType::from(t), &d, &o).unwrap())
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        4 => frame().prop_map(Part::Frame),
        2 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Part::Garbage),
        1 => (0usize..70_000, any::<u64>()).prop_map(|(len, seed)| Part::Filler { len, seed }),
        2 => (prop_oneof![any::<u16>(), 0u16..400], any::<u8>())
            .prop_map(|(data, opt)| Part::FakeHeader { data, opt }),
    ]
}

fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn build(parts: &[Part]) -> Stream {
    let mut s = Stream::default();
    for p in parts {
        match p {
            Part::Frame(f) => s.frame(&f.encode()),
            Part::Garbage(b) => s.junk(b),
            Part::Filler { len, seed } => s.junk(&filler(*len, *seed)),
            Part::FakeHeader { data, opt } => s.junk(&fake_header(*data, *opt)),
        }
    }
    s.no_accidental_frames()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_valid_frame_comes_out_once_in_order(
        parts in proptest::collection::vec(part(), 1..24),
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), 0u64..400), 0..40),
    ) {
        let stream = build(&parts);
        prop_assume!(!stream.bytes.is_empty());
        // Reads end at the cut points; each read arrives after a pause. A pause longer than the
        // gap rule inside a planted frame would rightly destroy it, so there it is at most 100 ms;
        // elsewhere anything goes.
        let mut points: Vec<(usize, u64)> = cuts
            .iter()
            .map(|(i, pause)| (i.index(stream.bytes.len() + 1), *pause))
            .collect();
        points.sort_unstable();
        points.dedup_by_key(|p| p.0);
        let t0 = Instant::now();
        let mut at = t0;
        let mut from = 0;
        let mut reads = Vec::new();
        for (cut, pause) in points.into_iter().chain([(stream.bytes.len(), 0)]) {
            if cut > from {
                reads.push((&stream.bytes[from..cut], at));
                from = cut;
            }
            let pause = if stream.splits_frame(cut) { pause.min(100) } else { pause };
            at += Duration::from_millis(pause);
        }
        let found = decode(&reads);
        prop_assert_eq!(found, stream.expected());
    }
}

#[test]
fn false_header_then_three_telegrams_then_silence() {
    // Issue 9 item 1, first reproduction: 20 rounds of a false header announcing 600 bytes, three
    // telegrams 30 ms apart, 300 ms of silence. The old rule dropped all 60 telegrams.
    let t0 = Instant::now();
    let mut d = Decoder::new();
    let mut at = t0;
    let mut got = Vec::new();
    let mut sent = 0u32;
    for round in 0..20 {
        let mut items = Vec::new();
        d.feed(&fake_header(600 - 7, 0), at, |i| items.push(i));
        for k in 0..3 {
            d.feed(&telegram(sent), at, |i| items.push(i));
            sent += 1;
            if k < 2 {
                at += Duration::from_millis(30);
            }
        }
        at += Duration::from_millis(300);
        // The silence is noticed by the read timer (`expire`) or by the next read.
        if round % 2 == 0 {
            d.expire(at, |i| items.push(i));
        }
        got.extend(items.into_iter().filter_map(|i| match i {
            Item::Frame { frame, .. } => Some(frame.encode()),
            Item::Event(_) => None,
        }));
        if round % 2 == 0 {
            assert_eq!(
                got.len() as u32,
                sent,
                "round {round}: out once the silence is seen"
            );
        }
    }
    d.expire(at, |i| {
        if let Item::Frame { frame, .. } = i {
            got.push(frame.encode());
        }
    });
    let want: Vec<Vec<u8>> = (0..60).map(telegram).collect();
    assert_eq!(got, want);
    let c = d.counters();
    assert_eq!(c.frames, 60);
    assert_eq!(c.gap_timeouts, 20, "one abandoned false start per round");
}

#[test]
fn a_false_header_of_one_to_64_kib_before_each_of_300_frames() {
    // Issue 9 item 1, second reproduction: the old rule decoded 2 of 300. Lengths spread over
    // 1..=65535; 200 telegrams/s in reads of whatever is there, no pause longer than the rule.
    let mut s = Stream::default();
    for i in 0..300u32 {
        let len = 1 + (i * 65_534 / 299) as u16;
        s.junk(&fake_header(len, (i % 7) as u8));
        s.frame(&telegram(i));
    }
    let s = s.no_accidental_frames();
    let t0 = Instant::now();
    let mut reads = Vec::new();
    let mut from = 0;
    for (n, &(o, l)) in s.frames.iter().enumerate() {
        reads.push((
            &s.bytes[from..o + l],
            t0 + Duration::from_millis(5 * n as u64),
        ));
        from = o + l;
    }
    let found = decode(&reads);
    assert_eq!(found.len(), 300);
    assert_eq!(found, s.expected());
    // Also in one read, and byte by byte.
    let whole = decode(&[(&s.bytes, t0)]);
    assert_eq!(whole, s.expected());
    let bytes: Vec<(&[u8], Instant)> = s.bytes.chunks(1).map(|b| (b, t0)).collect();
    assert_eq!(decode(&bytes), s.expected());
}
