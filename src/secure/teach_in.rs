//! Putting a secure teach-in together. The first part (IDX 0) carries TEACH_IN_INFO (part count,
//! PSK, PTM type, INFO), then the data: SLF, the RLC (its size from the SLF; sent even when data
//! telegrams leave it out) and the 16-byte key. Later parts carry TEACH_IN_INFO (their IDX) and
//! the rest of that data. PTM 215: two parts, 5 key bytes in the first and 11 in the second.
//!
//! Parts are kept per sender, in memory only, bounded ([`Assembler::MAX_SENDERS`]) and dropped
//! after [`Assembler::TIMEOUT`]; a part out of order drops the sender's pending teach-in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{DeviceKey, SecureTeachIn, Slf};
use crate::erp1::Telegram;

/// A device taught in: everything its secure telegrams need. `Debug` shows no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taught {
    /// Sender ID.
    pub sender: u32,
    /// The security level format.
    pub slf: Slf,
    /// The rolling code the device uses next (None when the SLF has no RLC).
    pub rlc: Option<u32>,
    /// The device key.
    pub key: DeviceKey,
    /// A PTM (rocker) module: its 4-bit data is an F6-02-01 rocker action.
    pub ptm: bool,
    /// The INFO bits (PTM: rocker A = 0, B = 1).
    pub info: u8,
}

/// What one teach-in telegram did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Kept; more parts to come.
    Pending,
    /// The last part: the device is taught in.
    Complete(Taught),
    /// Not usable (the reason; no key material in it).
    Rejected(&'static str),
}

#[derive(Debug)]
struct Partial {
    parts: u8,
    next: u8,
    ptm: bool,
    info: u8,
    data: Vec<u8>,
    started: Instant,
}

/// Secure teach-in parts being put together, per sender.
#[derive(Debug, Default)]
pub struct Assembler {
    pending: HashMap<u32, Partial>,
}

impl Assembler {
    /// Senders with a teach-in in progress at most; a new one evicts the oldest.
    pub const MAX_SENDERS: usize = 16;
    /// A teach-in whose next part does not come within this time is dropped.
    pub const TIMEOUT: Duration = Duration::from_secs(5);

    /// Takes one telegram (RORG 0x35; anything else is rejected).
    pub fn push(&mut self, t: &Telegram, now: Instant) -> Progress {
        let Some(info) = SecureTeachIn::parse(t) else {
            return Progress::Rejected("not a secure teach-in");
        };
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.started) < Self::TIMEOUT);
        let rest = &t.payload[1..];
        if info.part == 0 {
            self.pending.remove(&t.sender);
            if info.parts == 0 {
                return Progress::Rejected("a teach-in of 0 parts");
            }
            if info.psk {
                return Progress::Rejected(
                    "key encrypted with a pre-shared key (PSK), which this gateway does not hold",
                );
            }
            let partial = Partial {
                parts: info.parts,
                next: 1,
                ptm: info.ptm,
                info: info.info,
                data: rest.to_vec(),
                started: now,
            };
            if partial.parts == 1 {
                return finish(t.sender, partial);
            }
            if self.pending.len() >= Self::MAX_SENDERS
                && let Some(oldest) = self
                    .pending
                    .iter()
                    .min_by_key(|(_, p)| p.started)
                    .map(|(id, _)| *id)
            {
                self.pending.remove(&oldest);
            }
            self.pending.insert(t.sender, partial);
            return Progress::Pending;
        }
        let Some(mut partial) = self.pending.remove(&t.sender) else {
            return Progress::Rejected("a later part without the first");
        };
        if partial.next != info.part {
            return Progress::Rejected("a part out of order");
        }
        partial.data.extend_from_slice(rest);
        partial.next += 1;
        if partial.next == partial.parts {
            return finish(t.sender, partial);
        }
        self.pending.insert(t.sender, partial);
        Progress::Pending
    }

    /// Teach-ins waiting for a part.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

fn finish(sender: u32, p: Partial) -> Progress {
    let Some((&slf, rest)) = p.data.split_first() else {
        return Progress::Rejected("no SLF");
    };
    let slf = Slf(slf);
    if let Some(why) = slf.unsupported() {
        return Progress::Rejected(why);
    }
    let n = slf.rlc_len();
    if rest.len() < n + 16 {
        return Progress::Rejected("too short for its RLC and key");
    }
    let rlc = (n > 0).then(|| rest[..n].iter().fold(0u32, |a, b| a << 8 | u32::from(*b)));
    let mut key = [0u8; 16];
    key.copy_from_slice(&rest[n..n + 16]);
    Progress::Complete(Taught {
        sender,
        slf,
        rlc,
        key: DeviceKey::from_bytes(key),
        ptm: p.ptm,
        info: p.info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ti(payload: &[u8], sender: u32) -> Telegram {
        let mut data = vec![0x35];
        data.extend_from_slice(payload);
        data.extend_from_slice(&sender.to_be_bytes());
        data.push(0);
        Telegram::from_parts(&data, &[]).unwrap()
    }

    const PTM_FIRST: [u8; 9] = [0x24, 0x4B, 0xC0, 0xFF, 0x45, 0x6E, 0x4F, 0x63, 0x65];
    const PTM_SECOND: [u8; 12] = [
        0x40, 0x61, 0x6E, 0x20, 0x47, 0x6D, 0x62, 0x48, 0x2E, 0x31, 0x33, 0x00,
    ];

    #[test]
    fn ptm215_example_gives_key_rlc_and_slf() {
        let mut a = Assembler::default();
        let now = Instant::now();
        assert_eq!(a.push(&ti(&PTM_FIRST, 0x019E_B63B), now), Progress::Pending);
        let Progress::Complete(t) = a.push(&ti(&PTM_SECOND, 0x019E_B63B), now) else {
            panic!("not complete")
        };
        assert_eq!(t.key.bytes(), b"EnOcean GmbH.13\0");
        assert_eq!(t.rlc, Some(0xC0FF));
        assert_eq!(t.slf, Slf(0x4B));
        assert!(t.ptm);
        assert_eq!(a.pending(), 0);
        assert!(!format!("{t:?}").contains("456E"));
    }

    #[test]
    fn parts_out_of_order_late_or_alone_are_rejected() {
        let mut a = Assembler::default();
        let now = Instant::now();
        assert!(matches!(
            a.push(&ti(&PTM_SECOND, 1), now),
            Progress::Rejected(_)
        ));
        assert_eq!(a.push(&ti(&PTM_FIRST, 1), now), Progress::Pending);
        assert!(matches!(
            a.push(&ti(&PTM_SECOND, 1), now + Assembler::TIMEOUT),
            Progress::Rejected(_)
        ));
        // PSK: refused at once.
        let mut psk = PTM_FIRST;
        psk[0] |= 0x08;
        assert!(matches!(a.push(&ti(&psk, 2), now), Progress::Rejected(_)));
        // Too short: refused, never a panic.
        assert!(matches!(
            a.push(&ti(&[0x10, 0x4B, 0xC0], 3), now),
            Progress::Rejected(_)
        ));
        assert!(matches!(
            a.push(&ti(&[0x10], 3), now),
            Progress::Rejected(_)
        ));
    }

    #[test]
    fn pending_teach_ins_are_bounded() {
        let mut a = Assembler::default();
        let now = Instant::now();
        for s in 0..100u32 {
            a.push(
                &ti(&PTM_FIRST, s),
                now + Duration::from_millis(u64::from(s)),
            );
        }
        assert_eq!(a.pending(), Assembler::MAX_SENDERS);
    }
}
