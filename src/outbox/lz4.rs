//! A small LZ4 block encoder for the stored bodies (`body.rs`): against a fixed dictionary whose
//! match index is built once, so compressing a record costs work in proportion to the record,
//! not to the dictionary (`lz4_flex` hashes the whole dictionary again on every call).
//!
//! The output is a plain LZ4 block as the format describes it, with the dictionary as the
//! history before the input: any LZ4 block decoder given the same dictionary reads it
//! (`lz4_flex::block::decompress_size_prepended_with_dict` does, in `body.rs`). The format's
//! rules kept here: a sequence is a token (literal count in the high nibble, match length minus
//! 4 in the low one, 15 meaning "more in the following bytes, 255 at a time"), the literals, a
//! 2-byte little-endian offset of 1 to 65 535 back from the match's start (into the dictionary's
//! end when it reaches before the input) and the match length's extra bytes; the last sequence
//! is literals only, the last 5 bytes are literals, the last match starts at least 12 bytes
//! before the end, and an input of 12 bytes or less is all literals.
//!
//! The input is given in two parts, `prefix` and `rest`: `body.rs` compresses `{` followed by
//! the JSON text after its id member without joining them first. Matches are looked for at
//! positions of `rest` only; the prefix (a byte or two) is written as literals, or covered by a
//! match extended backwards.
//!
//! The search, at a position: the longest match among the previous match's offset (after a
//! changed value a record usually goes on like the same dictionary line), the input's last
//! position with the same 4-byte hash, and the dictionary's latest positions with it (a chain,
//! [`DICT_DEPTH`] long at most). Where nothing is found the next search is two bytes on (a
//! match is then found one byte late and extended backwards); a match shorter than
//! [`LAZY_BELOW`] is given up for a longer one at the next position. On the simulated
//! building's readings this stores a fifth fewer bytes than `lz4_flex` in about half its time
//! (`cargo bench --bench outbox -- record`).

use std::cell::RefCell;

/// The shortest match the format has.
const MIN_MATCH: usize = 4;
/// The block's last bytes that must be literals.
const LAST_LITERALS: usize = 5;
/// A match starts at least this many bytes before the end of the block.
const MF_LIMIT: usize = 12;
/// The farthest a match may reach back (a 2-byte offset).
const MAX_OFFSET: usize = 65_535;
/// Bits of the dictionary's hash table (8 192 buckets for dictionary v1's 5.5 kB).
const DICT_HASH_BITS: u32 = 13;
/// Bits of the per-call table of input positions: about one bucket per two input bytes (a
/// search every other byte at most), within these bounds.
const INPUT_HASH_BITS_MIN: u32 = 6;
/// See [`INPUT_HASH_BITS_MIN`] (16 384 buckets, 64 KiB).
const INPUT_HASH_BITS_MAX: u32 = 14;
/// Dictionary candidates tried per position, latest first.
const DICT_DEPTH: usize = 8;
/// A match shorter than this is given up for a longer one at the next position (lazy
/// matching); a longer one is taken as it is.
const LAZY_BELOW: usize = 16;
/// Where a search finds nothing, the next one is this many bytes on (a match that began in
/// between is found one byte later and extended backwards) ...
const MISS_STEP: usize = 2;
/// ... and one more for every 2^SKIP_SHIFT searches in a row that found nothing, so
/// incompressible input costs less.
const SKIP_SHIFT: u32 = 6;

/// The most bytes the block of an `n`-byte input takes (all literals: the token, the length's
/// extra bytes, the literals).
pub(crate) fn max_block_size(n: usize) -> usize {
    n + n / 255 + 16
}

/// The hash of 4 bytes, in `bits` bits (Fibonacci hashing: the product's high bits).
fn hash(v: u32, bits: u32) -> usize {
    (v.wrapping_mul(2_654_435_761) >> (32 - bits)) as usize
}

/// The 4 bytes at `at` as a little-endian u32, if there are 4.
fn read4(s: &[u8], at: usize) -> Option<u32> {
    s.get(at..)
        .and_then(<[u8]>::first_chunk::<4>)
        .map(|b| u32::from_le_bytes(*b))
}

/// How many leading bytes `a` and `b` have in common (8 at a time).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ca, ta) = a.as_chunks::<8>();
    let (cb, tb) = b.as_chunks::<8>();
    for (k, (x, y)) in ca.iter().zip(cb).enumerate() {
        let diff = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
        if diff != 0 {
            return k * 8 + (diff.trailing_zeros() / 8) as usize;
        }
    }
    ca.len() * 8 + ta.iter().zip(tb).take_while(|(x, y)| x == y).count()
}

/// A dictionary with its match index: the latest position of every 4-byte hash and, for every
/// position, the previous one with the same hash. Built once, only read by every compression.
#[derive(Debug)]
pub(crate) struct Dictionary<'a> {
    /// The dictionary's last 65 535 bytes (no match reaches farther back).
    bytes: &'a [u8],
    /// Per hash bucket: the latest position + 1, 0 for none.
    head: Box<[u16]>,
    /// Per position: the previous position in the same bucket + 1, 0 for none.
    prev: Box<[u16]>,
}

impl<'a> Dictionary<'a> {
    /// The index of `bytes`, which a decoder must be given as the dictionary.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        let bytes = &bytes[bytes.len().saturating_sub(MAX_OFFSET)..];
        let mut head = vec![0u16; 1 << DICT_HASH_BITS].into_boxed_slice();
        let mut prev = vec![0u16; bytes.len()].into_boxed_slice();
        for k in 0..bytes.len() {
            let Some(v) = read4(bytes, k) else { break };
            let h = hash(v, DICT_HASH_BITS);
            prev[k] = head[h];
            // k < 65 535, so k + 1 fits.
            head[h] = (k + 1) as u16;
        }
        Self { bytes, head, prev }
    }

    /// Appends to `out` the LZ4 block of `prefix` followed by `rest`, with this dictionary as
    /// the history before them. Any input, of any length, gives a valid block.
    pub(crate) fn compress_into(&self, prefix: &[u8], rest: &[u8], out: &mut Vec<u8>) {
        out.reserve(max_block_size(prefix.len() + rest.len()));
        if rest.len() <= MF_LIMIT {
            // No match can start in `rest` (and the whole input may be too short for one).
            Block::push_sequence(out, prefix, rest, None);
            return;
        }
        let bits = (usize::BITS - rest.len().leading_zeros() - 1)
            .clamp(INPUT_HASH_BITS_MIN, INPUT_HASH_BITS_MAX);
        TABLE.with_borrow_mut(|table| {
            table.clear();
            table.resize(1 << bits, 0);
            Block {
                dict: self,
                prefix,
                rest,
                table,
                bits,
            }
            .run(out);
        });
    }
}

thread_local! {
    /// The per-call table of input positions (hash -> position in `rest` + 1), kept between
    /// calls so a record costs no allocation; its first 2^bits entries are cleared and used.
    static TABLE: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// The input's bytes from `a` to `b` (positions in prefix ++ rest), as the prefix's part and
/// the rest's part.
fn span<'i>(prefix: &'i [u8], rest: &'i [u8], a: usize, b: usize) -> (&'i [u8], &'i [u8]) {
    let p = prefix.len();
    (
        &prefix[a.min(p)..b.min(p)],
        &rest[a.max(p) - p..b.max(p) - p],
    )
}

/// One compression. Positions: `j` in `rest`; input positions in prefix ++ rest; window
/// positions in dictionary ++ prefix ++ rest (an offset is a difference of two).
struct Block<'a> {
    dict: &'a Dictionary<'a>,
    prefix: &'a [u8],
    rest: &'a [u8],
    /// Positions of `rest` by hash, + 1.
    table: &'a mut [u32],
    bits: u32,
}

impl Block<'_> {
    /// Appends a sequence: the literals (`a` then `b`) and the match (offset, length), or no
    /// match for the last sequence.
    fn push_sequence(out: &mut Vec<u8>, a: &[u8], b: &[u8], m: Option<(usize, usize)>) {
        let lits = a.len() + b.len();
        let ml = m.map_or(0, |(_, len)| len - MIN_MATCH);
        out.push(((lits.min(15) as u8) << 4) | ml.min(15) as u8);
        if lits >= 15 {
            Self::push_length(out, lits - 15);
        }
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        if let Some((offset, _)) = m {
            out.extend_from_slice(&(offset as u16).to_le_bytes());
            if ml >= 15 {
                Self::push_length(out, ml - 15);
            }
        }
    }

    /// The bytes after a token's 15: 255 while more, then the remainder.
    fn push_length(out: &mut Vec<u8>, mut v: usize) {
        while v >= 255 {
            out.push(255);
            v -= 255;
        }
        out.push(v as u8);
    }

    /// The byte at window position `w`.
    fn byte_at(&self, w: usize) -> u8 {
        let d = self.dict.bytes.len();
        let p = self.prefix.len();
        if w < d {
            self.dict.bytes[w]
        } else if w < d + p {
            self.prefix[w - d]
        } else {
            self.rest[w - d - p]
        }
    }

    /// The longest match for `rest[j..limit]` (`v`: its first 4 bytes): (length, offset),
    /// length 0 when there is none of 4 bytes or more. `last` is the previous match's offset.
    fn find(&self, j: usize, v: u32, limit: usize, last: usize) -> (usize, usize) {
        let d = self.dict.bytes.len();
        let p = self.prefix.len();
        let target = &self.rest[j..limit];
        let here = d + p + j;
        let mut best = (MIN_MATCH - 1, 0);
        let consider = |best: &mut (usize, usize), source: &[u8], offset: usize| {
            // A candidate longer than the best agrees with the target where the best stopped.
            if source.get(best.0) != target.get(best.0) {
                return;
            }
            let len = common_prefix(source, target);
            if len > best.0 {
                *best = (len, offset);
            }
        };
        if last != 0 && last <= here {
            let w = here - last;
            if w < d {
                consider(&mut best, &self.dict.bytes[w..], last);
            } else if w >= d + p {
                consider(&mut best, &self.rest[w - d - p..], last);
            }
        }
        let c = self.table[hash(v, self.bits)] as usize;
        if let Some(dist) = c.checked_sub(1).and_then(|c| j.checked_sub(c))
            && (1..=MAX_OFFSET).contains(&dist)
        {
            consider(&mut best, &self.rest[j - dist..], dist);
        }
        let mut c = self.dict.head[hash(v, DICT_HASH_BITS)] as usize;
        let mut depth = DICT_DEPTH;
        while c != 0 && depth > 0 && best.0 < target.len() {
            let k = c - 1;
            if here - k > MAX_OFFSET {
                // The chain goes back in the dictionary: the rest are farther still.
                break;
            }
            consider(&mut best, &self.dict.bytes[k..], here - k);
            c = self.dict.prev[k] as usize;
            depth -= 1;
        }
        if best.0 < MIN_MATCH { (0, 0) } else { best }
    }

    /// Compresses the input (`rest` longer than 12 bytes) into `out`.
    fn run(&mut self, out: &mut Vec<u8>) {
        let d = self.dict.bytes.len();
        let p = self.prefix.len();
        let r = self.rest.len();
        // In `rest`: a match starts at `last_start` at the latest and ends by `limit`.
        let limit = r - LAST_LITERALS;
        let last_start = r - MF_LIMIT;
        let mut anchor = 0; // the first input position not written yet
        let mut j = 0;
        let mut misses = 0usize;
        let mut last = 0;
        while j <= last_start {
            let Some(v) = read4(self.rest, j) else { break };
            let (mut len, mut off) = self.find(j, v, limit, last);
            self.table[hash(v, self.bits)] = (j + 1) as u32;
            if len == 0 {
                misses += 1;
                j += MISS_STEP + (misses >> SKIP_SHIFT);
                continue;
            }
            misses = 0;
            while len < LAZY_BELOW && j < last_start {
                let Some(v) = read4(self.rest, j + 1) else {
                    break;
                };
                let (len2, off2) = self.find(j + 1, v, limit, last);
                self.table[hash(v, self.bits)] = (j + 2) as u32;
                if len2 <= len {
                    break;
                }
                j += 1;
                (len, off) = (len2, off2);
            }
            // Backwards over the literals not written yet while the bytes agree (the offset
            // stays: the match only starts earlier).
            let mut start = p + j;
            let mut source = d + start - off;
            while start > anchor
                && source > 0
                && self.byte_at(d + start - 1) == self.byte_at(source - 1)
            {
                start -= 1;
                source -= 1;
                len += 1;
            }
            let (a, b) = span(self.prefix, self.rest, anchor, start);
            Self::push_sequence(out, a, b, Some((off, len)));
            anchor = start + len;
            j = anchor - p;
            last = off;
        }
        let (a, b) = span(self.prefix, self.rest, anchor, p + r);
        Self::push_sequence(out, a, b, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Checks `block` against the format's rules for an `n`-byte input with a `dict_len`-byte
    /// dictionary, reading it as the format describes (independently of any decoder).
    fn check_rules(block: &[u8], n: usize, dict_len: usize) {
        let length = |i: &mut usize, mut v: usize| {
            loop {
                let b = block[*i];
                *i += 1;
                v += usize::from(b);
                if b != 255 {
                    return v;
                }
            }
        };
        let (mut i, mut pos) = (0, 0);
        let mut matched = false;
        loop {
            let token = block[i];
            i += 1;
            let mut lits = usize::from(token >> 4);
            if lits == 15 {
                lits = length(&mut i, lits);
            }
            i += lits;
            pos += lits;
            if i == block.len() {
                assert_eq!(token & 15, 0, "the last sequence has no match");
                assert_eq!(pos, n, "the block is the input's length");
                if matched {
                    assert!(lits >= LAST_LITERALS, "the last 5 bytes are literals");
                }
                return;
            }
            assert!(n > MF_LIMIT, "a match in an input of {n} bytes");
            let offset = usize::from(u16::from_le_bytes([block[i], block[i + 1]]));
            i += 2;
            assert!(
                (1..=pos + dict_len).contains(&offset),
                "offset {offset} at {pos}"
            );
            let mut ml = usize::from(token & 15);
            if ml == 15 {
                ml = length(&mut i, ml);
            }
            assert!(pos + MF_LIMIT <= n, "a match starts at {pos} of {n}");
            pos += ml + MIN_MATCH;
            assert!(pos + LAST_LITERALS <= n, "a match ends at {pos} of {n}");
            matched = true;
        }
    }

    /// Compresses `prefix` ++ `rest` against `dict`, checks the block's rules and reads it back
    /// with lz4_flex's decoder (the one `body.rs` reads stored bodies with). Returns the block.
    fn round_trip(dict: &[u8], prefix: &[u8], rest: &[u8]) -> Vec<u8> {
        let mut block = vec![0xAB]; // appended to, not overwritten
        Dictionary::new(dict).compress_into(prefix, rest, &mut block);
        let block = block.split_off(1);
        let n = prefix.len() + rest.len();
        assert!(block.len() <= max_block_size(n));
        check_rules(&block, n, dict.len().min(MAX_OFFSET));
        let back = lz4_flex::block::decompress_with_dict(&block, n, dict).expect("decodes");
        assert_eq!(back.len(), n);
        assert_eq!(&back[..prefix.len()], prefix);
        assert_eq!(&back[prefix.len()..], rest);
        block
    }

    /// Pseudo-random bytes (a fixed seed).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| rng.u8(..)).collect()
    }

    const DICT: &[u8] = crate::outbox::body::DICT_V1;

    #[test]
    fn short_inputs_are_literals() {
        assert_eq!(round_trip(DICT, b"", b""), [0]);
        for n in 0..=20 {
            let text = &DICT[..n];
            let block = round_trip(DICT, b"", text);
            if n <= MF_LIMIT {
                assert_eq!(block.len(), n + 1, "{n} bytes");
            }
            round_trip(DICT, b"{", text);
            round_trip(DICT, text, b"");
            round_trip(DICT, &text[..n / 2], &text[n / 2..]);
        }
    }

    #[test]
    fn text_like_the_dictionary_is_mostly_matches() {
        let line = std::str::from_utf8(DICT).unwrap().lines().nth(2).unwrap();
        let text = line.replace("-72", "-81");
        let block = round_trip(DICT, b"", text.as_bytes());
        assert!(
            block.len() * 10 < text.len(),
            "{} of {}",
            block.len(),
            text.len()
        );
        // As `body.rs` gives it: `{` and the text after the id member.
        let rest = &text[text.find("\"kind\"").unwrap()..];
        let block = round_trip(DICT, b"{", rest.as_bytes());
        assert!(
            block.len() * 10 < rest.len(),
            "{} of {}",
            block.len(),
            rest.len()
        );
        // Without a dictionary, and with one of nothing like it.
        round_trip(b"", b"{", rest.as_bytes());
        round_trip(&noise(3000, 1), b"{", rest.as_bytes());
    }

    #[test]
    fn runs_and_repeats() {
        for n in [13, 14, 15, 19, 20, 270, 271, 1000, 100_000] {
            let run = vec![b'a'; n];
            let block = round_trip(DICT, b"", &run);
            assert!(block.len() < 16 + n / 200, "{n}: {} bytes", block.len());
            round_trip(DICT, b"a", &run);
            round_trip(b"", b"", &run);
        }
        let pattern: Vec<u8> = b"0123456789abcdef"
            .iter()
            .copied()
            .cycle()
            .take(5000)
            .collect();
        round_trip(DICT, b"", &pattern);
        round_trip(DICT, b"", &noise(20_000, 2));
    }

    /// Beyond 64 KiB nothing is referred to farther back than 65 535 bytes: neither the
    /// dictionary nor the input's own beginning.
    #[test]
    fn inputs_past_the_window() {
        let mut text = DICT.to_vec();
        text.extend(noise(70_000, 3));
        text.extend_from_slice(DICT);
        text.extend_from_within(..5000);
        text.extend(noise(60_000, 4));
        text.extend_from_within(70_000..80_000);
        round_trip(DICT, b"", &text);
        round_trip(DICT, b"{", &text);
        // A dictionary larger than the window: only its last 65 535 bytes can be used, fewer
        // as the input goes on (its first 300 bytes and the 1 000 at 34 000 are out of reach).
        let big = noise(100_000, 5);
        let mut text = big[..300].to_vec();
        text.extend_from_slice(&big[99_000..]);
        text.extend_from_slice(&big[34_000..35_000]);
        let block = round_trip(&big, b"", &text);
        assert!(
            block.len() < text.len() - 900,
            "the 1 000 bytes at the end are a match"
        );
    }

    /// Input built from pieces that compress in different ways.
    fn pieces(max: usize) -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40),
            (0..DICT.len(), 0..400usize)
                .prop_map(|(at, n)| DICT[at..(at + n).min(DICT.len())].to_vec()),
            (any::<u8>(), 0..max).prop_map(|(b, n)| vec![b; n]),
            prop::collection::vec(prop::sample::select(b"{}\":,0123456789".to_vec()), 0..60),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(
            prefix in prop::collection::vec(any::<u8>(), 0..3),
            rest in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            round_trip(DICT, &prefix, &rest);
            round_trip(b"", &prefix, &rest);
        }

        #[test]
        fn pieces_round_trip(prefix in prop::collection::vec(any::<u8>(), 0..3), rest in pieces(300)) {
            round_trip(DICT, &prefix, &rest);
        }

        #[test]
        fn any_dictionary(
            dict in prop_oneof![pieces(100), prop::collection::vec(0..4u8, 0..3000)],
            rest in prop_oneof![pieces(100), prop::collection::vec(0..4u8, 0..3000)],
        ) {
            round_trip(&dict, b"{", &rest);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn large_inputs_round_trip(rest in pieces(40_000), copies in 1..4usize) {
            round_trip(DICT, b"{", &rest.repeat(copies));
        }
    }
}
