//! The streaming frame decoder: bytes in, frames and diagnostic events out.
//!
//! The search rule never hides a valid frame: whatever rejects a frame start (a header CRC that
//! does not match, a header announcing nothing, a data CRC that does not match, or bytes that
//! stopped arriving for longer than [`GAP_TIMEOUT`]) consumes only its sync byte, and the search
//! restarts at the next byte, rescanning everything already received. A false sync byte announcing
//! a 64 KiB frame therefore delays the frames behind it until it is rejected, but never loses them.
//!
//! Cost and memory are bounded whatever the input. The bytes held are those of one incomplete
//! frame start, at most [`MAX_FRAME_LEN`] − 1. On a clean stream each data CRC is one pass over its
//! body. A rescan makes candidate frames overlap, and checking each one with a pass over its body
//! would cost up to 64 KiB per false sync byte: an attacker could make that quadratic. So once
//! bodies overlap, the decoder keeps the running CRC register after each byte, and the data CRC of
//! any candidate costs a few table lookups. Every byte goes through the CRC at most twice and is
//! passed by the search once, so the work per byte received is constant, even for a stream made
//! of nothing but false frame starts each announcing the longest frame.

use std::time::{Duration, Instant};

use super::crc::{between, update};
use super::{Frame, HEADER_LEN, MAX_FRAME_LEN, PacketType, SYNC, crc8};

/// A frame whose bytes stop arriving for longer than this is abandoned (ESP3 timing rule).
pub const GAP_TIMEOUT: Duration = Duration::from_millis(100);

/// Largest physical buffer: the held bytes (< one maximum frame) plus the input appended in one
/// step (at most the rest of a maximum frame), twice over so compaction is rare.
const CAPACITY: usize = 2 * MAX_FRAME_LEN;

/// Something the decoder noticed in the stream besides a good frame. Offsets count bytes from the
/// start of the stream fed to this decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes that could not start a frame were skipped.
    DiscardedBytes {
        /// Stream offset of the first skipped byte.
        offset: u64,
        /// How many bytes were skipped.
        count: usize,
    },
    /// A 0x55 whose header CRC did not match; the search went on at the next byte.
    HeaderCrcMismatch {
        /// Stream offset of the false sync byte.
        offset: u64,
    },
    /// A frame whose data CRC did not match; the search went on one byte after its sync byte,
    /// rescanning the bytes its header had claimed.
    DataCrcMismatch {
        /// Stream offset of the frame's sync byte.
        offset: u64,
    },
    /// A header announcing no data and no optional bytes; not a frame, the search went on at the
    /// next byte.
    EmptyFrame {
        /// Stream offset of the sync byte.
        offset: u64,
    },
    /// An incomplete frame whose next bytes came too late (more than [`GAP_TIMEOUT`] of silence)
    /// was abandoned; the search went on one byte after its sync byte, rescanning the bytes held.
    GapTimeout {
        /// Stream offset of the abandoned frame's sync byte.
        offset: u64,
        /// How many of its bytes had arrived (only the sync byte is consumed; the others are
        /// rescanned and may still hold frames).
        count: usize,
    },
}

impl Event {
    /// A stable snake_case name for logs and JSON output.
    pub fn name(&self) -> &'static str {
        match self {
            Self::DiscardedBytes { .. } => "discarded_non_sync_bytes",
            Self::HeaderCrcMismatch { .. } => "header_crc8_mismatch",
            Self::DataCrcMismatch { .. } => "data_crc8_mismatch",
            Self::EmptyFrame { .. } => "empty_frame",
            Self::GapTimeout { .. } => "gap_timeout",
        }
    }

    /// Stream offset the event refers to.
    pub fn offset(&self) -> u64 {
        match *self {
            Self::DiscardedBytes { offset, .. }
            | Self::HeaderCrcMismatch { offset }
            | Self::DataCrcMismatch { offset }
            | Self::EmptyFrame { offset }
            | Self::GapTimeout { offset, .. } => offset,
        }
    }

    /// Stream bytes this event consumed: the skipped bytes, or the one rejected sync byte.
    pub fn consumed(&self) -> usize {
        match *self {
            Self::DiscardedBytes { count, .. } => count,
            _ => 1,
        }
    }
}

/// What the decoder yields, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A frame with both CRCs correct.
    Frame {
        /// Stream offset of its sync byte.
        offset: u64,
        /// The frame.
        frame: Frame,
    },
    /// A diagnostic event.
    Event(Event),
}

/// What [`Decoder::feed_lent`] passes its sink: a frame lent for the call (its bytes live in a
/// buffer the decoder reuses), or an event.
#[derive(Debug, PartialEq, Eq)]
pub enum LentItem<'a> {
    /// A frame with both CRCs correct.
    Frame {
        /// Stream offset of its sync byte.
        offset: u64,
        /// The frame, valid during the call.
        frame: &'a Frame,
    },
    /// A diagnostic event.
    Event(Event),
}

/// Where [`Decoder`]'s search puts what it decided: a frame as the bytes of its body, or an
/// event. [`Owned`] makes each frame its own [`Frame`]; [`Lent`] reuses one.
trait Emit {
    fn frame(&mut self, offset: u64, packet_type: PacketType, body: &[u8], data_len: usize);
    fn event(&mut self, event: Event);
}

/// Each frame in its own allocation, as an [`Item`].
struct Owned<F>(F);

impl<F: FnMut(Item)> Emit for Owned<F> {
    fn frame(&mut self, offset: u64, packet_type: PacketType, body: &[u8], data_len: usize) {
        let frame = Frame::from_body(packet_type, body.to_vec(), data_len);
        (self.0)(Item::Frame { offset, frame });
    }

    fn event(&mut self, event: Event) {
        (self.0)(Item::Event(event));
    }
}

/// Every frame in the same body buffer, lent as a [`LentItem`].
struct Lent<'b, F> {
    body: &'b mut Vec<u8>,
    sink: F,
}

impl<F: FnMut(LentItem<'_>)> Emit for Lent<'_, F> {
    fn frame(&mut self, offset: u64, packet_type: PacketType, body: &[u8], data_len: usize) {
        let mut buf = std::mem::take(self.body);
        buf.clear();
        buf.extend_from_slice(body);
        let frame = Frame::from_body(packet_type, buf, data_len);
        (self.sink)(LentItem::Frame {
            offset,
            frame: &frame,
        });
        *self.body = frame.into_body();
    }

    fn event(&mut self, event: Event) {
        (self.sink)(LentItem::Event(event));
    }
}

/// Running totals of what the decoder has seen, for health reporting. Every byte fed is in
/// exactly one of: a frame, `discarded_bytes`, a rejected sync byte (one per header CRC error,
/// data CRC error, empty frame or gap timeout), or [`Decoder::pending`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes fed in.
    pub bytes: u64,
    /// Good frames produced.
    pub frames: u64,
    /// Bytes skipped while looking for a sync byte.
    pub discarded_bytes: u64,
    /// False sync bytes (header CRC mismatches).
    pub header_crc_errors: u64,
    /// Frame starts rejected for a data CRC mismatch.
    pub data_crc_errors: u64,
    /// Headers announcing an empty frame.
    pub empty_frames: u64,
    /// Incomplete frame starts abandoned after a gap.
    pub gap_timeouts: u64,
}

impl Counters {
    /// Rejected frame starts of every kind (header CRC, data CRC, empty, gap).
    pub fn rejections(&self) -> u64 {
        self.header_crc_errors + self.data_crc_errors + self.empty_frames + self.gap_timeouts
    }

    /// Adds `other` to these totals (e.g. one connection's totals to a run's).
    pub fn add(&mut self, other: &Counters) {
        self.bytes += other.bytes;
        self.frames += other.frames;
        self.discarded_bytes += other.discarded_bytes;
        self.header_crc_errors += other.header_crc_errors;
        self.data_crc_errors += other.data_crc_errors;
        self.empty_frames += other.empty_frames;
        self.gap_timeouts += other.gap_timeouts;
    }
}

/// Incremental ESP3 decoder. Feed it whatever the serial port returns with the time it arrived;
/// it is sans-IO (no clock, no port), holds fewer than [`MAX_FRAME_LEN`] unconsumed bytes, and
/// its work per byte is bounded whatever the input.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Received bytes; `buf[start..]` are not consumed yet.
    buf: Vec<u8>,
    /// Index in `buf` of the first byte not yet consumed.
    start: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    /// Index in `buf` up to which a data CRC has been computed; a body starting there or later
    /// overlaps no earlier check and gets a direct pass.
    checked: usize,
    /// Running CRC registers for overlapping checks: `regs[k]` is the register before
    /// `buf[regs_from + k]` (empty when no check overlapped).
    regs: Vec<u8>,
    /// Index in `buf` of the byte `regs[0]` stands before.
    regs_from: usize,
    last_arrival: Option<Instant>,
    counters: Counters,
    /// The body buffer [`Decoder::feed_lent`] lends its frames in.
    lent: Vec<u8>,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held for an incomplete frame (fewer than [`MAX_FRAME_LEN`]).
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Totals since the decoder was created.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Feeds bytes that arrived at `now`, passing every frame and event to `sink` in stream order.
    ///
    /// `now` is when the bytes reached the line, as well as the caller can tell: the gap rule
    /// compares it with the previous call's. A reader that was busy elsewhere should not pass the
    /// time it got round to reading (see [`crate::serial`], which counts only the time it waited).
    pub fn feed(&mut self, input: &[u8], now: Instant, sink: impl FnMut(Item)) {
        self.feed_to(input, now, &mut Owned(sink));
    }

    /// [`Decoder::feed`] lending each frame to `sink` instead of giving it away: every frame's
    /// bytes are in one buffer the decoder keeps, so a reader that is done with a frame when
    /// the call returns (the `decode` command) allocates nothing per frame.
    pub fn feed_lent(&mut self, input: &[u8], now: Instant, sink: impl FnMut(LentItem<'_>)) {
        let mut body = std::mem::take(&mut self.lent);
        self.feed_to(
            input,
            now,
            &mut Lent {
                body: &mut body,
                sink,
            },
        );
        self.lent = body;
    }

    fn feed_to(&mut self, input: &[u8], now: Instant, sink: &mut impl Emit) {
        if input.is_empty() {
            return;
        }
        self.expire_to(now, sink);
        self.last_arrival = Some(now);
        self.counters.bytes += input.len() as u64;
        let mut rest = input;
        while !rest.is_empty() {
            // After `parse` the bytes held are one incomplete frame start, shorter than a whole
            // frame: at least one more byte always fits.
            let take = (MAX_FRAME_LEN - self.pending().len()).min(rest.len());
            self.append(&rest[..take]);
            rest = &rest[take..];
            self.parse(sink);
        }
    }

    /// [`Decoder::feed`] collecting the results in a vector.
    pub fn feed_collect(&mut self, input: &[u8], now: Instant) -> Vec<Item> {
        let mut items = Vec::new();
        self.feed(input, now, |item| items.push(item));
        items
    }

    /// Applies the gap rule at `now`: if the last bytes arrived more than [`GAP_TIMEOUT`] before,
    /// nothing more can complete the frame start held, so it is abandoned and the bytes after its
    /// sync byte are rescanned; frames among them come out, and every further incomplete start is
    /// abandoned the same way. Call it when a read times out; `feed` calls it itself.
    pub fn expire(&mut self, now: Instant, sink: impl FnMut(Item)) {
        self.expire_to(now, &mut Owned(sink));
    }

    fn expire_to(&mut self, now: Instant, sink: &mut impl Emit) {
        let Some(last) = self.last_arrival else {
            return;
        };
        if self.pending().is_empty() || now.saturating_duration_since(last) <= GAP_TIMEOUT {
            return;
        }
        while !self.pending().is_empty() {
            let count = self.pending().len();
            sink.event(Event::GapTimeout {
                offset: self.offset,
                count,
            });
            self.counters.gap_timeouts += 1;
            self.advance(1);
            self.parse(sink);
        }
    }

    /// Appends received bytes, compacting first when the bytes already consumed outweigh the ones
    /// held (so moving them is paid for by consumption).
    fn append(&mut self, bytes: &[u8]) {
        let s = self.start;
        if s > 0 && (s >= self.pending().len() || self.buf.len() + bytes.len() > CAPACITY) {
            self.buf.drain(..s);
            self.checked = self.checked.saturating_sub(s);
            // Registers before the first byte held are never needed again.
            if self.regs_from + self.regs.len() <= s {
                self.regs.clear();
            } else if self.regs_from < s {
                self.regs.drain(..s - self.regs_from);
                self.regs_from = 0;
            } else {
                self.regs_from -= s;
            }
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn advance(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.checked = 0;
            self.regs.clear();
        }
    }

    /// The CRC8 of `buf[a..b]`, a candidate's body. A body that no earlier check covered gets a
    /// direct pass (each byte once over the stream); an overlapping one, only possible while
    /// rescanning after a rejection, is answered from running registers that are extended
    /// forward, each byte once.
    fn data_crc(&mut self, a: usize, b: usize) -> u8 {
        let regs_end = self.regs_from + self.regs.len().saturating_sub(1);
        if a >= self.checked && (self.regs.is_empty() || a >= regs_end) {
            self.regs.clear();
            self.checked = b;
            return crc8(&self.buf[a..b]);
        }
        if self.regs.is_empty() || a < self.regs_from {
            self.regs.clear();
            self.regs.push(0);
            self.regs_from = a;
        }
        let have = self.regs_from + self.regs.len() - 1;
        if have < b {
            let mut reg = self.regs[self.regs.len() - 1];
            self.regs.extend(self.buf[have..b].iter().map(|&x| {
                reg = update(reg, x);
                reg
            }));
        }
        self.checked = self.checked.max(b);
        between(
            self.regs[a - self.regs_from],
            self.regs[b - self.regs_from],
            b - a,
        )
    }

    /// Decides every frame start that can be decided with the bytes held.
    fn parse(&mut self, sink: &mut impl Emit) {
        loop {
            let s = self.start;
            let avail = &self.buf[s..];
            let Some(&first) = avail.first() else {
                return;
            };
            let offset = self.offset;
            if first != SYNC {
                let count = avail.iter().position(|&b| b == SYNC).unwrap_or(avail.len());
                self.counters.discarded_bytes += count as u64;
                sink.event(Event::DiscardedBytes { offset, count });
                self.advance(count);
                continue;
            }
            if avail.len() < HEADER_LEN {
                return;
            }
            if crc8(&avail[1..5]) != avail[5] {
                self.counters.header_crc_errors += 1;
                sink.event(Event::HeaderCrcMismatch { offset });
                self.advance(1);
                continue;
            }
            let data_len = usize::from(u16::from_be_bytes([avail[1], avail[2]]));
            let body_len = data_len + usize::from(avail[3]);
            if body_len == 0 {
                self.counters.empty_frames += 1;
                sink.event(Event::EmptyFrame { offset });
                self.advance(1);
                continue;
            }
            let total = HEADER_LEN + body_len + 1;
            if avail.len() < total {
                return;
            }
            let crc_byte = avail[total - 1];
            if self.data_crc(s + HEADER_LEN, s + total - 1) != crc_byte {
                self.counters.data_crc_errors += 1;
                sink.event(Event::DataCrcMismatch { offset });
                self.advance(1);
                continue;
            }
            self.counters.frames += 1;
            sink.frame(
                offset,
                PacketType::from(self.buf[s + 4]),
                &self.buf[s + HEADER_LEN..s + total - 1],
                data_len,
            );
            self.advance(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes() -> Vec<u8> {
        Frame::new(PacketType::Response, &[0x00], &[])
            .unwrap()
            .encode()
    }

    /// A header that passes CRC8H and announces `data` data bytes and `opt` optional bytes.
    fn fake_header(data: u16, opt: u8) -> Vec<u8> {
        let mut h = vec![SYNC];
        h.extend_from_slice(&data.to_be_bytes());
        h.extend_from_slice(&[opt, 0x01]);
        h.push(crc8(&h[1..5]));
        h
    }

    #[test]
    fn gap_abandons_only_the_sync_byte_of_an_incomplete_frame() {
        let bytes = frame_bytes();
        let mut d = Decoder::new();
        let t0 = Instant::now();
        assert!(d.feed_collect(&bytes[..3], t0).is_empty());
        let items = d.feed_collect(&bytes[3..], t0 + Duration::from_millis(101));
        assert_eq!(
            items,
            vec![
                Item::Event(Event::GapTimeout {
                    offset: 0,
                    count: 3
                }),
                Item::Event(Event::DiscardedBytes {
                    offset: 1,
                    count: 2
                }),
                Item::Event(Event::DiscardedBytes {
                    offset: 3,
                    count: bytes.len() - 3
                }),
            ]
        );
        assert_eq!(d.counters().gap_timeouts, 1);
    }

    #[test]
    fn gap_of_exactly_the_limit_is_tolerated() {
        let bytes = frame_bytes();
        let mut d = Decoder::new();
        let t0 = Instant::now();
        d.feed_collect(&bytes[..3], t0);
        let items = d.feed_collect(&bytes[3..], t0 + GAP_TIMEOUT);
        assert!(matches!(items.as_slice(), [Item::Frame { offset: 0, .. }]));
    }

    #[test]
    fn expire_without_input() {
        let bytes = frame_bytes();
        let mut d = Decoder::new();
        let t0 = Instant::now();
        d.feed_collect(&bytes[..5], t0);
        let mut items = Vec::new();
        d.expire(t0 + Duration::from_millis(50), |i| items.push(i));
        assert!(items.is_empty());
        d.expire(t0 + Duration::from_millis(150), |i| items.push(i));
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(d.pending().is_empty());
    }

    #[test]
    fn gap_rescans_frames_held_behind_a_false_start() {
        let mut stream = fake_header(600, 0);
        let good = frame_bytes();
        stream.extend_from_slice(&good);
        stream.extend_from_slice(&good);
        let mut d = Decoder::new();
        let t0 = Instant::now();
        assert!(
            d.feed_collect(&stream, t0)
                .iter()
                .all(|i| !matches!(i, Item::Frame { .. })),
            "held behind the false start"
        );
        let mut items = Vec::new();
        d.expire(t0 + Duration::from_millis(101), |i| items.push(i));
        let frames: Vec<u64> = items
            .iter()
            .filter_map(|i| match i {
                Item::Frame { offset, .. } => Some(*offset),
                Item::Event(_) => None,
            })
            .collect();
        assert_eq!(frames, [6, 6 + good.len() as u64]);
        assert!(d.pending().is_empty());
    }

    #[test]
    fn huge_garbage_keeps_buffer_bounded() {
        let mut d = Decoder::new();
        // A valid header announcing the largest frame, then never its body.
        let mut input = fake_header(0xFFFF, 0xFF);
        input.extend(std::iter::repeat_n(0xAAu8, 3 * MAX_FRAME_LEN));
        let items = d.feed_collect(&input, Instant::now());
        assert!(d.pending().len() < MAX_FRAME_LEN);
        assert!(d.buf.len() <= CAPACITY);
        // The announced frame's CRC8D cannot match 0xAA filler of this length, so it is dropped
        // and the rest is discarded as non-sync bytes.
        assert!(matches!(
            items[0],
            Item::Event(Event::DataCrcMismatch { offset: 0 })
        ));
        let c = d.counters();
        assert_eq!(c.discarded_bytes + 1, input.len() as u64);
    }

    #[test]
    fn false_starts_everywhere_cost_linear_work_and_bounded_memory() {
        // Nothing but valid headers announcing the longest frame, back to back, then one good
        // frame: every start is rejected by its data CRC, one byte at a time, the good frame
        // comes out, and the buffer stays bounded throughout.
        let header = fake_header(0xFFFF, 0xFF);
        let mut stream = Vec::new();
        while stream.len() < 3 * MAX_FRAME_LEN {
            stream.extend_from_slice(&header);
        }
        let good = frame_bytes();
        let good_at = stream.len() as u64;
        stream.extend_from_slice(&good);
        let mut d = Decoder::new();
        let t0 = Instant::now();
        let mut frames = Vec::new();
        for chunk in stream.chunks(61) {
            d.feed(chunk, t0, |i| {
                if let Item::Frame { offset, .. } = i {
                    frames.push(offset);
                }
            });
            assert!(d.pending().len() < MAX_FRAME_LEN);
            assert!(d.buf.len() <= CAPACITY && d.regs.len() <= CAPACITY + 1);
            assert!(d.regs_from + d.regs.len() <= d.buf.len() + 1);
        }
        d.expire(t0 + Duration::from_secs(1), |i| {
            if let Item::Frame { offset, .. } = i {
                frames.push(offset);
            }
        });
        // A false start whose announced body happened to pass CRC8D would be a frame by the
        // rules; with this filler none does, so only the good frame comes out.
        assert_eq!(frames, [good_at]);
    }
}
