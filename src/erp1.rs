//! ERP1 radio telegrams: the view of a RADIO_ERP1 frame that the rest of the agent works with.
//!
//! Data field: `RORG | payload | sender ID (4) | status`. Optional field (when present):
//! `sub-telegram count | destination ID (4) | dBm | security level`.

use crate::esp3::{Frame, PacketType};

/// Errors from reading a RADIO_ERP1 frame as a telegram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The frame is not a RADIO_ERP1 frame.
    #[error("not a RADIO_ERP1 frame (packet type {0:#04x})")]
    NotErp1(u8),
    /// The data field is too short for RORG, sender and status.
    #[error("RADIO_ERP1 data of {0} bytes is shorter than the minimum of 6")]
    TooShort(usize),
}

/// Well-known radio telegram types (RORG).
pub mod rorg {
    /// Repeated switch communication (rocker switches, window handles).
    pub const RPS: u8 = 0xF6;
    /// 1-byte communication (contacts).
    pub const BS1: u8 = 0xD5;
    /// 4-byte communication (most sensors).
    pub const BS4: u8 = 0xA5;
    /// Variable-length data (actuators, meters).
    pub const VLD: u8 = 0xD2;
    /// Manufacturer-specific communication.
    pub const MSC: u8 = 0xD1;
    /// Universal teach-in.
    pub const UTE: u8 = 0xD4;
    /// Signal telegram.
    pub const SIGNAL: u8 = 0xD0;
    /// Chained data message.
    pub const CDM: u8 = 0x40;
    /// Addressed destination telegram.
    pub const ADT: u8 = 0xA6;
    /// Secure teach-in: carries the device's AES-128 key.
    pub const SEC_TI: u8 = 0x35;

    /// Short name of a RORG, e.g. "4BS", or None for an unknown one.
    pub fn name(rorg: u8) -> Option<&'static str> {
        Some(match rorg {
            RPS => "RPS",
            BS1 => "1BS",
            BS4 => "4BS",
            VLD => "VLD",
            MSC => "MSC",
            UTE => "UTE",
            SIGNAL => "SIGNAL",
            CDM => "CDM",
            ADT => "ADT",
            0x30 => "SEC",
            0x31 => "SEC_ENCAPS",
            0x32 => "SECD",
            0x33 => "SEC_CDM",
            SEC_TI => "SEC_TI",
            0xC5 => "SYS_EX",
            0xC6 => "SM_LRN_REQ",
            0xC7 => "SM_LRN_ANS",
            0xA7 => "SM_REC",
            _ => return None,
        })
    }
}

/// Status bit T21 (RPS: PTM type 2 when set).
pub const STATUS_T21: u8 = 0x20;
/// Status bit NU (RPS: N-message when set, U-message when clear).
pub const STATUS_NU: u8 = 0x10;

/// One received ERP1 radio telegram. Its `Debug` form withholds the payload of a telegram that
/// carries key material (see [`Telegram::carries_key`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Telegram {
    /// The radio telegram type.
    pub rorg: u8,
    /// User data between RORG and sender ID.
    pub payload: Vec<u8>,
    /// The transmitting module's ID.
    pub sender: u32,
    /// Status byte: repeater count in the low nibble, T21 and NU for RPS.
    pub status: u8,
    /// Number of sub-telegrams received, when the stick reports it.
    pub sub_telegrams: Option<u8>,
    /// Destination ID (0xFFFFFFFF for broadcast), when the stick reports it.
    pub destination: Option<u32>,
    /// The dBm byte as received: the signal is minus this many dBm; 0xFF is the send-case value.
    pub dbm_raw: Option<u8>,
    /// Security level, when the stick reports it.
    pub security_level: Option<u8>,
}

impl Telegram {
    /// Reads a RADIO_ERP1 frame.
    pub fn from_frame(frame: &Frame) -> Result<Self, Error> {
        if frame.packet_type() != PacketType::RadioErp1 {
            return Err(Error::NotErp1(frame.packet_type().code()));
        }
        Self::from_parts(frame.data(), frame.optional())
    }

    /// Reads the data and optional fields of a RADIO_ERP1 frame.
    pub fn from_parts(data: &[u8], optional: &[u8]) -> Result<Self, Error> {
        let mut t = Self {
            rorg: 0,
            payload: Vec::new(),
            sender: 0,
            status: 0,
            sub_telegrams: None,
            destination: None,
            dbm_raw: None,
            security_level: None,
        };
        t.read_parts(data, optional)?;
        Ok(t)
    }

    /// [`Telegram::from_frame`] into this telegram, reusing its payload's buffer: a reader that
    /// keeps one telegram for every frame allocates nothing per frame. On an error the telegram
    /// is left as it was.
    pub fn read_frame(&mut self, frame: &Frame) -> Result<(), Error> {
        if frame.packet_type() != PacketType::RadioErp1 {
            return Err(Error::NotErp1(frame.packet_type().code()));
        }
        self.read_parts(frame.data(), frame.optional())
    }

    fn read_parts(&mut self, data: &[u8], optional: &[u8]) -> Result<(), Error> {
        let n = data.len();
        if n < 6 {
            return Err(Error::TooShort(n));
        }
        self.rorg = data[0];
        self.payload.clear();
        self.payload.extend_from_slice(&data[1..n - 5]);
        self.sender = u32::from_be_bytes([data[n - 5], data[n - 4], data[n - 3], data[n - 2]]);
        self.status = data[n - 1];
        self.sub_telegrams = optional.first().copied();
        self.destination = optional
            .get(1..5)
            .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
        self.dbm_raw = optional.get(5).copied();
        self.security_level = optional.get(6).copied();
        Ok(())
    }

    /// How many repeaters relayed the telegram (0–15).
    pub fn repeater_count(&self) -> u8 {
        self.status & 0x0F
    }

    /// The T21 status bit.
    pub fn t21(&self) -> bool {
        self.status & STATUS_T21 != 0
    }

    /// The NU status bit.
    pub fn nu(&self) -> bool {
        self.status & STATUS_NU != 0
    }

    /// Received signal strength as a negative dBm value; None when absent or the 0xFF send-case byte.
    pub fn dbm(&self) -> Option<i16> {
        match self.dbm_raw {
            None | Some(0xFF) => None,
            Some(raw) => Some(-i16::from(raw)),
        }
    }

    /// The sender ID as eight uppercase hex digits.
    pub fn sender_hex(&self) -> String {
        upper_hex(&self.sender.to_be_bytes())
    }

    /// True when the payload carries key material (a secure teach-in): such a payload never
    /// leaves the process — not in a record, a listing, a log line or a hex dump.
    pub fn carries_key(&self) -> bool {
        self.rorg == rorg::SEC_TI
    }

    /// The payload as uppercase hex for records, listings and logs; empty for a telegram that
    /// [carries key material](Telegram::carries_key).
    pub fn payload_hex(&self) -> String {
        if self.carries_key() {
            String::new()
        } else {
            upper_hex(&self.payload)
        }
    }
}

/// Bytes as uppercase hex, the way records, listings and logs show ids and payloads (every
/// received telegram is shown this way: the `hex` crate's encoder builds its text a character
/// at a time, several times slower).
pub fn upper_hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(2 * bytes.len());
    write_upper_hex(&mut out, bytes);
    // Hex digits are ASCII: never the empty fallback.
    String::from_utf8(out).unwrap_or_default()
}

/// A byte as two uppercase hex digits, from a table (a record's RORG and status: no
/// allocation per telegram).
pub fn byte_hex(b: u8) -> &'static str {
    let i = 2 * usize::from(b);
    // Every pair of the table is two ASCII digits: the range is always in it.
    BYTE_PAIRS.get(i..i + 2).unwrap_or("")
}

/// The hex digits, uppercase.
const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// "00" to "FF", each byte's two digits at twice its value.
const BYTE_PAIRS: &str = {
    const PAIRS: [u8; 512] = {
        let mut t = [0u8; 512];
        let mut i = 0;
        while i < 256 {
            t[2 * i] = HEX_DIGITS[i >> 4];
            t[2 * i + 1] = HEX_DIGITS[i & 0x0F];
            i += 1;
        }
        t
    };
    match std::str::from_utf8(&PAIRS) {
        Ok(s) => s,
        Err(_) => panic!("hex digits are ASCII"),
    }
};

/// Appends `bytes` as uppercase hex to `out`.
pub(crate) fn write_upper_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + 2 * bytes.len(), 0);
    for (pair, b) in out[start..].chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 0x0F)];
    }
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let payload = if self.carries_key() {
            "[withheld: key material]".to_owned()
        } else {
            hex::encode_upper(&self.payload)
        };
        f.debug_struct("Telegram")
            .field("rorg", &format_args!("{:02X}", self.rorg))
            .field("payload", &payload)
            .field("sender", &format_args!("{:08X}", self.sender))
            .field("status", &self.status)
            .field("sub_telegrams", &self.sub_telegrams)
            .field("destination", &self.destination)
            .field("dbm_raw", &self.dbm_raw)
            .field("security_level", &self.security_level)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn upper_hex_is_the_hex_crates(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40), head in proptest::collection::vec(proptest::num::u8::ANY, 0..3)) {
            let oracle = hex::encode_upper(&bytes);
            proptest::prop_assert_eq!(&upper_hex(&bytes), &oracle);
            for (k, b) in bytes.iter().enumerate() {
                proptest::prop_assert_eq!(byte_hex(*b), &oracle[2 * k..2 * k + 2]);
            }
            let mut out = head.clone();
            write_upper_hex(&mut out, &bytes);
            proptest::prop_assert_eq!(&out[..head.len()], &head[..]);
            proptest::prop_assert_eq!(&out[head.len()..], oracle.as_bytes());
        }
    }

    #[test]
    fn reads_4bs_telegram() {
        let frame = Frame::new(
            PacketType::RadioErp1,
            &[0xA5, 0x00, 0x00, 0x55, 0x08, 0x01, 0x81, 0xB7, 0x44, 0x31],
            &[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x2D, 0x00],
        )
        .unwrap();
        let t = Telegram::from_frame(&frame).unwrap();
        assert_eq!(t.rorg, rorg::BS4);
        assert_eq!(t.payload, [0x00, 0x00, 0x55, 0x08]);
        assert_eq!(t.sender_hex(), "0181B744");
        assert_eq!(t.repeater_count(), 1);
        assert!(t.t21() && t.nu());
        assert_eq!(t.dbm(), Some(-45));
        assert_eq!(t.destination, Some(0xFFFF_FFFF));
        assert_eq!(t.security_level, Some(0));
    }

    #[test]
    fn short_and_foreign_frames_are_errors() {
        let f = Frame::new(PacketType::RadioErp1, &[0xF6, 1, 2, 3, 4], &[]).unwrap();
        assert_eq!(Telegram::from_frame(&f), Err(Error::TooShort(5)));
        let f = Frame::new(PacketType::Response, &[0], &[]).unwrap();
        assert_eq!(Telegram::from_frame(&f), Err(Error::NotErp1(2)));
    }

    #[test]
    fn a_telegram_read_again_is_the_new_frames_whole() {
        // A long VLD telegram with full optional data, then a short RPS one without any: nothing
        // of the first may stay behind in the reused telegram.
        let long = Frame::new(
            PacketType::RadioErp1,
            &[
                0xD2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x05, 0x06, 0x07, 0x08, 0x80,
            ],
            &[0x03, 0x01, 0x02, 0x03, 0x04, 0x40, 0x01],
        )
        .unwrap();
        let short =
            Frame::new(PacketType::RadioErp1, &[0xF6, 0x50, 0, 0, 0, 1, 0x30], &[]).unwrap();
        let mut t = Telegram::from_frame(&long).unwrap();
        let capacity = t.payload.capacity();
        t.read_frame(&short).unwrap();
        assert_eq!(t, Telegram::from_frame(&short).unwrap());
        assert_eq!(
            t.payload.capacity(),
            capacity,
            "the payload's buffer is reused"
        );
        t.read_frame(&long).unwrap();
        assert_eq!(t, Telegram::from_frame(&long).unwrap());
        // A frame that is no telegram leaves the last one as it was.
        let before = t.clone();
        let too_short = Frame::new(PacketType::RadioErp1, &[0xF6, 1, 2, 3, 4], &[]).unwrap();
        assert_eq!(t.read_frame(&too_short), Err(Error::TooShort(5)));
        let response = Frame::new(PacketType::Response, &[0], &[]).unwrap();
        assert_eq!(t.read_frame(&response), Err(Error::NotErp1(2)));
        assert_eq!(t, before);
    }

    #[test]
    fn send_case_dbm_is_none() {
        let t = Telegram::from_parts(
            &[0xF6, 0x50, 0, 0, 0, 1, 0x30],
            &[3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0],
        )
        .unwrap();
        assert_eq!(t.dbm(), None);
        assert_eq!(t.dbm_raw, Some(0xFF));
    }
}
