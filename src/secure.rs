//! Secure telegrams of the EnOcean security specification. For now: recognising a secure
//! teach-in (RORG 0x35) without ever keeping its key. Decryption and rolling codes come with the
//! secure decoding work; until then a secure teach-in becomes a `teach_in` record naming the sender
//! and the announcement, and its key material is dropped where it arrived.

use serde::{Deserialize, Serialize};

use crate::erp1::{Telegram, rorg};

/// What a secure teach-in telegram announces, read from its first byte (TEACH_IN_INFO) only.
/// It holds no key material, so it can be stored, logged and delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureTeachIn {
    /// Index of this telegram within the teach-in (0 for the first part).
    pub part: u8,
    /// Number of telegrams of the teach-in, as the first part announces it (0 in later parts,
    /// which do not repeat it).
    pub parts: u8,
    /// True when the key is encrypted with a pre-shared key (PSK bit).
    pub psk: bool,
    /// True for a PTM (rocker switch module, e.g. PTM 215) teach-in (TYPE bit).
    pub ptm: bool,
    /// The two INFO bits (for a PTM: which rocker; otherwise reserved).
    pub info: u8,
}

impl SecureTeachIn {
    /// Reads a secure teach-in; None for any other telegram (or an empty payload).
    pub fn parse(t: &Telegram) -> Option<Self> {
        if t.rorg != rorg::SEC_TI {
            return None;
        }
        let b = *t.payload.first()?;
        let part = b >> 6;
        Some(Self {
            part,
            parts: if part == 0 { (b >> 4) & 0x03 } else { 0 },
            psk: part == 0 && b & 0x08 != 0,
            ptm: part == 0 && b & 0x04 != 0,
            info: if part == 0 { b & 0x03 } else { 0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telegram(data: &[u8]) -> Telegram {
        Telegram::from_parts(data, &[1, 0xFF, 0xFF, 0xFF, 0xFF, 0x37, 0]).unwrap()
    }

    // The PTM 215 example teach-in of the `enocean` Python library's secure example (two parts).
    #[test]
    fn ptm215_two_part_teach_in() {
        let first = telegram(&[
            0x35, 0x24, 0x4B, 0xC0, 0xFF, 0x45, 0x6E, 0x4F, 0x63, 0x65, 0x01, 0x9E, 0xB6, 0x3B,
            0x00,
        ]);
        assert_eq!(
            SecureTeachIn::parse(&first),
            Some(SecureTeachIn {
                part: 0,
                parts: 2,
                psk: false,
                ptm: true,
                info: 0
            })
        );
        assert!(first.carries_key());
        assert_eq!(first.payload_hex(), "");
        assert!(!format!("{first:?}").contains("456E"));
        let second = telegram(&[
            0x35, 0x40, 0x61, 0x6E, 0x20, 0x47, 0x6D, 0x62, 0x48, 0x2E, 0x31, 0x33, 0x00, 0x01,
            0x9E, 0xB6, 0x3B, 0x00,
        ]);
        let s = SecureTeachIn::parse(&second).unwrap();
        assert_eq!((s.part, s.parts), (1, 0));
        assert_eq!(
            SecureTeachIn::parse(&telegram(&[0xA5, 1, 2, 3, 4, 1, 2, 3, 4, 0])),
            None
        );
    }
}
