//! Chained data messages (RORG 0x40, "CDM"): a VLD or other message too long for one radio
//! telegram is sent as several ERP1 telegrams. This module puts them back together, sans-IO: feed
//! it each received 0x40 telegram with its arrival time and it answers with the reassembled ERP1
//! telegram of the inner RORG once the last part is in, to be decoded as if it had come in one
//! piece.
//!
//! Wire format of one part (the payload after RORG 0x40):
//!
//! ```text
//! first part (IDX 0):  SEQ(2 bits) IDX(6 bits) | LEN (u16, big endian) | inner RORG | data…
//! later parts:         SEQ(2 bits) IDX(6 bits) | data…
//! ```
//!
//! LEN counts the inner message's data bytes, not its RORG. SEQ tells a sender's consecutive
//! chains apart, IDX orders the parts. Parts may arrive in any order (repeaters); a chain is
//! complete when IDX 0 and every index up to the last one needed have arrived and together
//! carry LEN bytes. Facts cross-checked with FHEM 10_EnOcean.pm (its CDM receiver and sender:
//! LEN excludes the inner RORG, the first part carries up to 10 data bytes and later parts up to
//! 13 in a 14-byte ERP1 payload, a 3 s timeout).
//!
//! Memory is bounded ([`Limits`]): chains per sender, senders, parts per chain, bytes per chain
//! and bytes overall; a chain whose parts stop arriving is dropped after [`Limits::timeout`].
//! Every chain that never completes is counted ([`Counters::incomplete`]). Bad input is counted
//! and dropped; nothing here panics.
//!
//! ```
//! use std::time::Instant;
//! use enocean_agent::chain::{Outcome, Reassembler};
//! use enocean_agent::erp1::Telegram;
//!
//! let part = |payload: &[u8]| Telegram {
//!     rorg: 0x40,
//!     payload: payload.to_vec(),
//!     sender: 0x0102_0304,
//!     status: 0,
//!     sub_telegrams: None,
//!     destination: None,
//!     dbm_raw: None,
//!     security_level: None,
//! };
//! let mut chains = Reassembler::default();
//! let now = Instant::now();
//! // A 12-byte VLD message: 10 bytes in the first part, 2 in the second.
//! let first = [0x40, 0x00, 12, 0xD2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
//! assert!(matches!(chains.push(&part(&first), now), Outcome::Pending));
//! let Outcome::Complete(t) = chains.push(&part(&[0x41, 11, 12]), now) else { panic!() };
//! assert_eq!(t.rorg, 0xD2);
//! assert_eq!(t.payload, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
//! ```

use std::time::{Duration, Instant};

use crate::erp1::{Telegram, rorg};

/// Bounds on what the reassembler keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Chains of different senders kept at once; a new sender past this evicts the oldest chain.
    pub max_senders: usize,
    /// Chains of one sender (different SEQ) kept at once; SEQ has 2 bits, so at most 4 matter.
    pub max_chains_per_sender: usize,
    /// Parts one chain may have (IDX has 6 bits: at most 64).
    pub max_parts: usize,
    /// Largest inner message (LEN) accepted, in data bytes.
    pub max_len: usize,
    /// Bytes held by all pending chains together; a part that would exceed it evicts the oldest
    /// chains first.
    pub max_total_bytes: usize,
    /// A chain whose first part arrived longer ago than this is dropped as incomplete.
    pub timeout: Duration,
}

impl Default for Limits {
    /// 64 senders, 4 chains each, 64 parts, 1 KiB per message, 64 KiB overall, 3 s timeout (as
    /// FHEM).
    fn default() -> Self {
        Self {
            max_senders: 64,
            max_chains_per_sender: 4,
            max_parts: 64,
            max_len: 1024,
            max_total_bytes: 64 * 1024,
            timeout: Duration::from_secs(3),
        }
    }
}

/// Why a part was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The telegram's RORG is not 0x40.
    #[error("RORG {0:02X} is not a chained data message (40)")]
    NotChained(u8),
    /// The part has no SEQ/IDX byte, or a first part lacks LEN and the inner RORG.
    #[error("a chained part of {len} bytes is too short (index {idx:?})")]
    TooShort {
        /// Payload length of the part.
        len: usize,
        /// Its index, when it has one.
        idx: Option<u8>,
    },
    /// LEN is 0 or above [`Limits::max_len`].
    #[error("chained message length {len} is not between 1 and {max}")]
    BadLength {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The index is past [`Limits::max_parts`].
    #[error("part index {idx} is past the limit of {max} parts")]
    TooManyParts {
        /// The part's index.
        idx: u8,
        /// The limit.
        max: usize,
    },
    /// The inner RORG is 0x40 again (chains do not nest).
    #[error("a chained message cannot contain another chained message")]
    Nested,
    /// The parts carry more bytes than LEN allows for their indices.
    #[error("parts of sequence {seq} carry {have} bytes, more than the announced {len}")]
    Overlong {
        /// The chain's SEQ.
        seq: u8,
        /// Bytes received.
        have: usize,
        /// The announced length.
        len: usize,
    },
}

/// What [`Reassembler::push`] made of a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The chain is complete: the inner message as one ERP1 telegram (inner RORG and data; the
    /// first part's sender, destination and security level; the completing part's status, signal
    /// and sub-telegram count).
    Complete(Telegram),
    /// The part was stored; more are needed.
    Pending,
    /// The same part was seen already (a repeated telegram); nothing changed.
    Duplicate,
    /// The part was dropped (counted in [`Counters::rejected`]).
    Rejected(ChainError),
}

/// What the reassembler has seen; counters only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Parts stored (duplicates and rejected parts not included).
    pub parts: u64,
    /// Messages reassembled.
    pub completed: u64,
    /// Chains dropped because their parts stopped arriving within the timeout.
    pub timed_out: u64,
    /// Chains dropped to stay within the memory limits.
    pub evicted: u64,
    /// Chains dropped because a new first part with the same sender and SEQ started over.
    pub replaced: u64,
    /// Parts dropped as malformed or over a limit.
    pub rejected: u64,
    /// Repeated parts ignored.
    pub duplicates: u64,
}

impl Counters {
    /// Chains that never completed: timed out, evicted or replaced.
    pub fn incomplete(&self) -> u64 {
        self.timed_out + self.evicted + self.replaced
    }
}

/// One pending chain.
#[derive(Debug, Clone)]
struct Chain {
    sender: u32,
    seq: u8,
    started: Instant,
    /// LEN and inner RORG, once IDX 0 has arrived.
    header: Option<(usize, u8)>,
    /// Data of each part by index (IDX 0: the data after LEN and RORG).
    parts: Vec<Option<Vec<u8>>>,
    bytes: usize,
    /// Destination and security level of the first part.
    destination: Option<u32>,
    security_level: Option<u8>,
}

impl Chain {
    /// The inner message when IDX 0 and every part up to the one that completes LEN are in.
    /// Bytes of the last needed part past LEN are padding and dropped; a part stored past it
    /// means the parts do not belong together.
    fn assemble(&self) -> Result<Option<Vec<u8>>, ChainError> {
        let Some((len, _)) = self.header else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(len);
        for (i, part) in self.parts.iter().enumerate() {
            let Some(data) = part else {
                return Ok(None);
            };
            let take = (len - out.len()).min(data.len());
            out.extend_from_slice(&data[..take]);
            if out.len() == len {
                if self.parts.len() > i + 1 {
                    return Err(ChainError::Overlong {
                        seq: self.seq,
                        have: self.bytes,
                        len,
                    });
                }
                return Ok(Some(out));
            }
        }
        Ok(None)
    }
}

/// Puts chained data messages back together. See the module documentation.
#[derive(Debug, Clone)]
pub struct Reassembler {
    limits: Limits,
    /// Pending chains, oldest first.
    chains: Vec<Chain>,
    counters: Counters,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Reassembler {
    /// A reassembler with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            chains: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// What has been seen so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Chains waiting for parts.
    pub fn pending(&self) -> usize {
        self.chains.len()
    }

    /// Bytes held by pending chains.
    pub fn pending_bytes(&self) -> usize {
        self.chains.iter().map(|c| c.bytes).sum()
    }

    /// Drops chains whose first part arrived longer than the timeout before `now`; returns how
    /// many. [`Reassembler::push`] does this too, so calling it is only needed to count
    /// incomplete chains while no parts arrive.
    pub fn expire(&mut self, now: Instant) -> usize {
        let timeout = self.limits.timeout;
        let before = self.chains.len();
        self.chains
            .retain(|c| now.saturating_duration_since(c.started) <= timeout);
        let dropped = before - self.chains.len();
        self.counters.timed_out += dropped as u64;
        dropped
    }

    /// Takes one received telegram of RORG 0x40 at time `now`.
    pub fn push(&mut self, telegram: &Telegram, now: Instant) -> Outcome {
        match self.take(telegram, now) {
            Ok(outcome) => outcome,
            Err(e) => {
                self.counters.rejected += 1;
                Outcome::Rejected(e)
            }
        }
    }

    fn take(&mut self, t: &Telegram, now: Instant) -> Result<Outcome, ChainError> {
        if t.rorg != rorg::CDM {
            return Err(ChainError::NotChained(t.rorg));
        }
        self.expire(now);
        let (&seq_idx, rest) = t.payload.split_first().ok_or(ChainError::TooShort {
            len: t.payload.len(),
            idx: None,
        })?;
        let seq = seq_idx >> 6;
        let idx = seq_idx & 0x3F;
        if usize::from(idx) >= self.limits.max_parts {
            return Err(ChainError::TooManyParts {
                idx,
                max: self.limits.max_parts,
            });
        }
        let (header, data) = if idx == 0 {
            let [len_hi, len_lo, inner, data @ ..] = rest else {
                return Err(ChainError::TooShort {
                    len: t.payload.len(),
                    idx: Some(0),
                });
            };
            let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
            if len == 0 || len > self.limits.max_len {
                return Err(ChainError::BadLength {
                    len,
                    max: self.limits.max_len,
                });
            }
            if *inner == rorg::CDM {
                return Err(ChainError::Nested);
            }
            (Some((len, *inner)), data)
        } else {
            if rest.is_empty() {
                return Err(ChainError::TooShort {
                    len: t.payload.len(),
                    idx: Some(idx),
                });
            }
            (None, rest)
        };
        if data.len() > self.limits.max_len {
            return Err(ChainError::BadLength {
                len: data.len(),
                max: self.limits.max_len,
            });
        }

        let pos = match self
            .chains
            .iter()
            .position(|c| c.sender == t.sender && c.seq == seq)
        {
            Some(pos) => {
                let chain = &self.chains[pos];
                let existing = chain.parts.get(usize::from(idx)).and_then(Option::as_ref);
                match existing {
                    Some(old)
                        if old.as_slice() == data
                            && (header.is_none() || chain.header == header) =>
                    {
                        self.counters.duplicates += 1;
                        return Ok(Outcome::Duplicate);
                    }
                    Some(_) => {
                        // The same index with other content: a new message started with this
                        // SEQ (or the old parts belong to another one); the old chain is dropped.
                        self.chains.remove(pos);
                        self.counters.replaced += 1;
                        self.new_chain(t, seq, now)
                    }
                    None => pos,
                }
            }
            None => self.new_chain(t, seq, now),
        };
        self.make_room(data.len(), pos);
        // make_room never removes the chain at `pos` but may shift it.
        let Some(pos) = self
            .chains
            .iter()
            .position(|c| c.sender == t.sender && c.seq == seq)
        else {
            return Ok(Outcome::Pending);
        };
        let chain = &mut self.chains[pos];
        let i = usize::from(idx);
        if chain.parts.len() <= i {
            chain.parts.resize(i + 1, None);
        }
        chain.parts[i] = Some(data.to_vec());
        chain.bytes += data.len();
        if let Some(h) = header {
            chain.header = Some(h);
            chain.destination = t.destination;
            chain.security_level = t.security_level;
        }
        self.counters.parts += 1;

        match chain.assemble() {
            Ok(None) => Ok(Outcome::Pending),
            Ok(Some(payload)) => {
                let chain = self.chains.remove(pos);
                self.counters.completed += 1;
                let inner = chain.header.map_or(0, |(_, r)| r);
                Ok(Outcome::Complete(Telegram {
                    rorg: inner,
                    payload,
                    sender: t.sender,
                    status: t.status,
                    sub_telegrams: t.sub_telegrams,
                    destination: chain.destination.or(t.destination),
                    dbm_raw: t.dbm_raw,
                    security_level: chain.security_level.or(t.security_level),
                }))
            }
            Err(e) => {
                self.chains.remove(pos);
                self.counters.replaced += 1;
                Err(e)
            }
        }
    }

    /// Starts a chain for this sender and SEQ, evicting to stay within the chain limits; returns
    /// its position.
    fn new_chain(&mut self, t: &Telegram, seq: u8, now: Instant) -> usize {
        let of_sender = self.chains.iter().filter(|c| c.sender == t.sender).count();
        if of_sender >= self.limits.max_chains_per_sender.max(1)
            && let Some(oldest) = self.chains.iter().position(|c| c.sender == t.sender)
        {
            self.chains.remove(oldest);
            self.counters.evicted += 1;
        }
        let senders = |chains: &[Chain]| {
            let mut s: Vec<u32> = chains.iter().map(|c| c.sender).collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        let known = senders(&self.chains);
        if !known.contains(&t.sender) && known.len() >= self.limits.max_senders.max(1) {
            // Evict every chain of the sender whose oldest chain is the oldest overall.
            if let Some(victim) = self.chains.first().map(|c| c.sender) {
                let before = self.chains.len();
                self.chains.retain(|c| c.sender != victim);
                self.counters.evicted += (before - self.chains.len()) as u64;
            }
        }
        self.chains.push(Chain {
            sender: t.sender,
            seq,
            started: now,
            header: None,
            parts: Vec::new(),
            bytes: 0,
            destination: None,
            security_level: None,
        });
        self.chains.len() - 1
    }

    /// Evicts the oldest chains other than the one at `keep` until `extra` more bytes fit.
    fn make_room(&mut self, extra: usize, keep: usize) {
        let keep_key = self.chains.get(keep).map(|c| (c.sender, c.seq));
        while self.pending_bytes() + extra > self.limits.max_total_bytes {
            let Some(victim) = self
                .chains
                .iter()
                .position(|c| Some((c.sender, c.seq)) != keep_key)
            else {
                break;
            };
            self.chains.remove(victim);
            self.counters.evicted += 1;
        }
    }
}

/// Splits an inner message into chained parts the way a sender does (first part: up to
/// `first_data` data bytes, later parts: up to `next_data`); for tests, simulators and tools.
/// Returns the 0x40 payloads. `seq` is taken modulo 4. None when the message is empty, longer
/// than LEN can say, or needs more than 64 parts.
pub fn split(
    inner_rorg: u8,
    data: &[u8],
    seq: u8,
    first_data: usize,
    next_data: usize,
) -> Option<Vec<Vec<u8>>> {
    let len = u16::try_from(data.len()).ok()?;
    if data.is_empty() || next_data == 0 {
        return None;
    }
    let seq_bits = (seq & 0x03) << 6;
    let (head, mut rest) = data.split_at(first_data.min(data.len()));
    let mut first = vec![seq_bits, (len >> 8) as u8, len as u8, inner_rorg];
    first.extend_from_slice(head);
    let mut parts = vec![first];
    while !rest.is_empty() {
        let idx = u8::try_from(parts.len()).ok().filter(|i| *i < 64)?;
        let (chunk, tail) = rest.split_at(next_data.min(rest.len()));
        let mut p = vec![seq_bits | idx];
        p.extend_from_slice(chunk);
        parts.push(p);
        rest = tail;
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(sender: u32, payload: Vec<u8>) -> Telegram {
        Telegram {
            rorg: rorg::CDM,
            payload,
            sender,
            status: 0,
            sub_telegrams: None,
            destination: None,
            dbm_raw: None,
            security_level: None,
        }
    }

    #[test]
    fn split_follows_the_wire_format() {
        let parts = split(0xD2, &[1, 2, 3, 4, 5], 2, 2, 2).unwrap();
        assert_eq!(
            parts,
            vec![
                vec![0x80, 0, 5, 0xD2, 1, 2],
                vec![0x81, 3, 4],
                vec![0x82, 5]
            ]
        );
        assert!(split(0xD2, &[], 0, 10, 13).is_none());
        assert!(
            split(0xD2, &[0; 200], 0, 0, 1).is_none(),
            "more than 64 parts"
        );
    }

    #[test]
    fn errors_are_typed_and_counted() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        let mut t = part(1, vec![0x00, 0, 1, 0xD2]);
        t.rorg = 0xD2;
        assert_eq!(
            r.push(&t, now),
            Outcome::Rejected(ChainError::NotChained(0xD2))
        );
        assert!(matches!(
            r.push(&part(1, vec![]), now),
            Outcome::Rejected(ChainError::TooShort { idx: None, .. })
        ));
        assert!(matches!(
            r.push(&part(1, vec![0x00, 0, 1]), now),
            Outcome::Rejected(ChainError::TooShort { idx: Some(0), .. })
        ));
        assert!(matches!(
            r.push(&part(1, vec![0x00, 0, 0, 0xD2]), now),
            Outcome::Rejected(ChainError::BadLength { len: 0, .. })
        ));
        assert!(matches!(
            r.push(&part(1, vec![0x00, 0xFF, 0xFF, 0xD2, 1]), now),
            Outcome::Rejected(ChainError::BadLength { len: 65535, .. })
        ));
        assert_eq!(
            r.push(&part(1, vec![0x00, 0, 2, 0x40, 1]), now),
            Outcome::Rejected(ChainError::Nested)
        );
        assert!(matches!(
            r.push(&part(1, vec![0x05]), now),
            Outcome::Rejected(ChainError::TooShort { idx: Some(5), .. })
        ));
        assert_eq!(r.counters().rejected, 7);
        assert_eq!(r.pending(), 0);
    }
}
