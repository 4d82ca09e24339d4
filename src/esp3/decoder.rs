//! The streaming frame decoder: bytes in, frames and diagnostic events out.

use std::time::{Duration, Instant};

use super::{Frame, HEADER_LEN, MAX_FRAME_LEN, PacketType, SYNC, crc8};

/// A frame whose bytes stop arriving for longer than this is abandoned (ESP3 timing rule).
pub const GAP_TIMEOUT: Duration = Duration::from_millis(100);

/// The most bytes the decoder buffers at once: one incomplete frame plus one frame's worth of input.
const BUFFER_LIMIT: usize = 2 * MAX_FRAME_LEN;

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
    /// A frame whose data CRC did not match; the search went on after its sync byte.
    DataCrcMismatch {
        /// Stream offset of the frame's sync byte.
        offset: u64,
    },
    /// A header announcing no data and no optional bytes; not a frame, the search went on.
    EmptyFrame {
        /// Stream offset of the sync byte.
        offset: u64,
    },
    /// An incomplete frame whose next bytes came too late was abandoned.
    GapTimeout {
        /// Stream offset of the abandoned bytes.
        offset: u64,
        /// How many bytes were abandoned.
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

/// Running totals of what the decoder has seen, for health reporting.
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
    /// Frames dropped for a data CRC mismatch.
    pub data_crc_errors: u64,
    /// Headers announcing an empty frame.
    pub empty_frames: u64,
    /// Incomplete frames abandoned after a gap.
    pub gap_timeouts: u64,
}

/// Incremental ESP3 decoder. Feed it whatever the serial port returns; it keeps at most about two
/// maximum-size frames in memory whatever the input.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Index in `buf` of the first byte not yet consumed.
    start: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    last_arrival: Option<Instant>,
    counters: Counters,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held for an incomplete frame.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Totals since the decoder was created.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Feeds bytes that arrived at `now`, passing every frame and event to `sink` in stream order.
    pub fn feed(&mut self, input: &[u8], now: Instant, mut sink: impl FnMut(Item)) {
        if input.is_empty() {
            return;
        }
        self.expire(now, &mut sink);
        self.last_arrival = Some(now);
        self.counters.bytes += input.len() as u64;
        let mut rest = input;
        while !rest.is_empty() {
            self.compact();
            let take = (BUFFER_LIMIT - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            self.parse(&mut sink);
        }
    }

    /// [`Decoder::feed`] collecting the results in a vector.
    pub fn feed_collect(&mut self, input: &[u8], now: Instant) -> Vec<Item> {
        let mut items = Vec::new();
        self.feed(input, now, |item| items.push(item));
        items
    }

    /// Abandons an incomplete frame if its last byte arrived more than [`GAP_TIMEOUT`] before
    /// `now`. Call it when a read times out; `feed` calls it itself.
    pub fn expire(&mut self, now: Instant, mut sink: impl FnMut(Item)) {
        let Some(last) = self.last_arrival else {
            return;
        };
        let count = self.buf.len() - self.start;
        if count > 0 && now.saturating_duration_since(last) > GAP_TIMEOUT {
            sink(Item::Event(Event::GapTimeout {
                offset: self.offset,
                count,
            }));
            self.counters.gap_timeouts += 1;
            self.advance(count);
        }
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    fn advance(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    fn parse(&mut self, sink: &mut impl FnMut(Item)) {
        loop {
            let avail = &self.buf[self.start..];
            let Some(&first) = avail.first() else {
                return;
            };
            let offset = self.offset;
            if first != SYNC {
                let count = avail.iter().position(|&b| b == SYNC).unwrap_or(avail.len());
                self.counters.discarded_bytes += count as u64;
                sink(Item::Event(Event::DiscardedBytes { offset, count }));
                self.advance(count);
                continue;
            }
            if avail.len() < HEADER_LEN {
                return;
            }
            if crc8(&avail[1..5]) != avail[5] {
                self.counters.header_crc_errors += 1;
                sink(Item::Event(Event::HeaderCrcMismatch { offset }));
                self.advance(1);
                continue;
            }
            let data_len = usize::from(u16::from_be_bytes([avail[1], avail[2]]));
            let body_len = data_len + usize::from(avail[3]);
            if body_len == 0 {
                self.counters.empty_frames += 1;
                sink(Item::Event(Event::EmptyFrame { offset }));
                self.advance(1);
                continue;
            }
            let total = HEADER_LEN + body_len + 1;
            if avail.len() < total {
                return;
            }
            let body = &avail[HEADER_LEN..total - 1];
            if crc8(body) != avail[total - 1] {
                self.counters.data_crc_errors += 1;
                sink(Item::Event(Event::DataCrcMismatch { offset }));
                self.advance(1);
                continue;
            }
            let frame = Frame::from_body(PacketType::from(avail[4]), body.to_vec(), data_len);
            self.counters.frames += 1;
            sink(Item::Frame { offset, frame });
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

    #[test]
    fn gap_abandons_incomplete_frame() {
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
        assert_eq!(items.len(), 1);
        assert!(d.pending().is_empty());
    }

    #[test]
    fn huge_garbage_keeps_buffer_bounded() {
        let mut d = Decoder::new();
        // A valid header announcing the largest frame, then never its body.
        let mut header = vec![SYNC, 0xFF, 0xFF, 0xFF, 0x01];
        header.push(crc8(&header[1..5]));
        let mut input = header.clone();
        input.extend(std::iter::repeat_n(0xAAu8, 3 * MAX_FRAME_LEN));
        let items = d.feed_collect(&input, Instant::now());
        assert!(d.pending().len() <= BUFFER_LIMIT);
        // The announced frame's CRC8D cannot match 0xAA filler of this length, so it is dropped
        // and the rest is discarded as non-sync bytes.
        assert!(matches!(
            items[0],
            Item::Event(Event::DataCrcMismatch { offset: 0 })
        ));
    }
}
