//! Duplicate suppression: repeated copies of one telegram (repeaters, several sub-telegrams
//! passed up separately) are delivered once.
//!
//! A telegram is a copy when the same sender's most recently delivered telegram had the same
//! RORG and payload and was delivered less than the window ago. Comparing with the sender's
//! *last* telegram rather than with everything it sent in the window keeps a legitimate
//! repetition apart from a copy: a rocker pressed, released and pressed again within two seconds
//! gives three telegrams, and all three are delivered. Copies are identified by content only;
//! status (repeater count) and signal strength may differ between them.
//!
//! Memory is bounded: at most `capacity` senders are remembered; when full, expired entries go
//! first, then the oldest one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::erp1::Telegram;

/// Default window in which an identical telegram counts as a copy.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(2);
/// Default number of senders remembered.
pub const DEFAULT_CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
struct Last {
    rorg: u8,
    payload: Vec<u8>,
    at: Instant,
}

/// The duplicate filter. Pure logic: the caller passes arrival times.
#[derive(Debug, Clone)]
pub struct Dedup {
    window: Duration,
    capacity: usize,
    last: HashMap<u32, Last>,
}

impl Dedup {
    /// A filter with the given window and [`DEFAULT_CAPACITY`]. A zero window lets everything
    /// through.
    pub fn new(window: Duration) -> Self {
        Self::with_capacity(window, DEFAULT_CAPACITY)
    }

    /// A filter remembering at most `capacity` senders (at least 1).
    pub fn with_capacity(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            last: HashMap::new(),
        }
    }

    /// Number of senders currently remembered (never more than the capacity).
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// True when no sender is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// Decides about a received telegram: true to deliver it, false for a copy.
    pub fn accept(&mut self, telegram: &Telegram, now: Instant) -> bool {
        self.accept_parts(telegram.sender, telegram.rorg, &telegram.payload, now)
    }

    /// [`Dedup::accept`] on the identifying parts of a telegram.
    pub fn accept_parts(&mut self, sender: u32, rorg: u8, payload: &[u8], now: Instant) -> bool {
        if self.window.is_zero() {
            return true;
        }
        if let Some(last) = self.last.get_mut(&sender) {
            let copy = last.rorg == rorg
                && last.payload == payload
                && now.saturating_duration_since(last.at) < self.window;
            if copy {
                return false;
            }
            last.rorg = rorg;
            last.payload.clear();
            last.payload.extend_from_slice(payload);
            last.at = now;
            return true;
        }
        if self.last.len() >= self.capacity {
            self.evict(now);
        }
        self.last.insert(
            sender,
            Last {
                rorg,
                payload: payload.to_vec(),
                at: now,
            },
        );
        true
    }

    fn evict(&mut self, now: Instant) {
        let window = self.window;
        self.last
            .retain(|_, l| now.saturating_duration_since(l.at) < window);
        if self.last.len() >= self.capacity
            && let Some(oldest) = self.last.iter().min_by_key(|(_, l)| l.at).map(|(k, _)| *k)
        {
            self.last.remove(&oldest);
        }
    }
}

impl Default for Dedup {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn copies_within_window_are_dropped() {
        let t = Instant::now();
        let mut d = Dedup::default();
        assert!(d.accept_parts(1, 0xA5, &[1, 2, 3, 8], t));
        assert!(!d.accept_parts(1, 0xA5, &[1, 2, 3, 8], t + ms(40)));
        assert!(!d.accept_parts(1, 0xA5, &[1, 2, 3, 8], t + ms(1999)));
        // Same content after the window: a new reading.
        assert!(d.accept_parts(1, 0xA5, &[1, 2, 3, 8], t + ms(2000)));
        // Other sender, other payload, other RORG: not copies.
        assert!(d.accept_parts(2, 0xA5, &[1, 2, 3, 8], t + ms(2001)));
        assert!(d.accept_parts(1, 0xA5, &[1, 2, 4, 8], t + ms(2002)));
        assert!(d.accept_parts(1, 0xD2, &[1, 2, 4, 8], t + ms(2003)));
    }

    #[test]
    fn rocker_press_release_press_is_three_telegrams() {
        let t = Instant::now();
        let mut d = Dedup::default();
        assert!(d.accept_parts(7, 0xF6, &[0x30], t));
        assert!(
            !d.accept_parts(7, 0xF6, &[0x30], t + ms(20)),
            "repeated copy"
        );
        assert!(d.accept_parts(7, 0xF6, &[0x00], t + ms(300)));
        assert!(d.accept_parts(7, 0xF6, &[0x30], t + ms(600)));
    }

    #[test]
    fn zero_window_lets_everything_through() {
        let t = Instant::now();
        let mut d = Dedup::new(Duration::ZERO);
        assert!(d.accept_parts(1, 0xA5, &[1], t));
        assert!(d.accept_parts(1, 0xA5, &[1], t));
        assert!(d.is_empty());
    }

    #[test]
    fn capacity_evicts_oldest() {
        let t = Instant::now();
        let mut d = Dedup::with_capacity(DEFAULT_WINDOW, 2);
        assert!(d.accept_parts(1, 0xA5, &[1], t));
        assert!(d.accept_parts(2, 0xA5, &[1], t + ms(1)));
        assert!(d.accept_parts(3, 0xA5, &[1], t + ms(2)));
        assert_eq!(d.len(), 2);
        // Sender 1 was forgotten: its copy gets through (bounded memory has a price).
        assert!(d.accept_parts(1, 0xA5, &[1], t + ms(3)));
        assert!(!d.accept_parts(3, 0xA5, &[1], t + ms(4)));
    }

    /// An original telegram: sender, payload byte and its arrival offset in ms.
    fn originals() -> impl Strategy<Value = Vec<(u32, u8, u64, u8)>> {
        prop::collection::vec((0u32..20, any::<u8>(), 0u64..5000, 0u8..4), 0..200)
    }

    proptest! {
        /// Every original followed by up to 3 copies within 500 ms: exactly the originals come
        /// out, provided a sender's consecutive originals differ or are a window apart.
        #[test]
        fn copies_removed_originals_kept(raw in originals()) {
            let window = ms(2000);
            let base = Instant::now();
            // Build a time-ordered stream of originals 1 s apart with their copies.
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            let mut last: HashMap<u32, (u8, u64)> = HashMap::new();
            for (i, (sender, byte, _, copies)) in raw.iter().enumerate() {
                let at = i as u64 * 1000;
                if let Some(&(b, t)) = last.get(sender)
                    && b == *byte && at - t < 2000
                {
                    continue; // would legitimately be a copy: not an original
                }
                last.insert(*sender, (*byte, at));
                expected.push((*sender, *byte, at));
                stream.push((*sender, *byte, at));
                for c in 0..*copies {
                    stream.push((*sender, *byte, at + 10 + u64::from(c) * 100));
                }
            }
            stream.sort_by_key(|s| s.2);
            let mut d = Dedup::new(window);
            let got: Vec<_> = stream
                .iter()
                .filter(|(s, b, at)| d.accept_parts(*s, 0xA5, &[*b], base + ms(*at)))
                .copied()
                .collect();
            prop_assert_eq!(got, expected);
        }

        /// Whatever comes in, memory stays within the capacity and a telegram seen for the
        /// first time is always delivered.
        #[test]
        fn bounded_and_first_copy_delivered(raw in originals(), cap in 1usize..8) {
            let base = Instant::now();
            let mut sorted = raw.clone();
            sorted.sort_by_key(|r| r.2);
            let mut d = Dedup::with_capacity(ms(2000), cap);
            let mut seen = std::collections::HashSet::new();
            for (sender, byte, at, _) in sorted {
                let first = seen.insert((sender, byte));
                let ok = d.accept_parts(sender, 0xA5, &[byte], base + ms(at));
                if first {
                    prop_assert!(ok);
                }
                prop_assert!(d.len() <= cap);
            }
        }
    }
}
