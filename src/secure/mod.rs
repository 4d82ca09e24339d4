//! Secure telegrams of the EnOcean security specification: secure teach-in (RORG 0x35, one or
//! several parts, e.g. the two a PTM 215 sends), the device keys and rolling codes that come
//! from it or from the configuration, and the verification and decryption of secure data
//! telegrams (0x30 SEC, 0x31 SEC_ENCAPS, 0x33 SEC_CDM once reassembled) into plain telegrams the
//! EEP engine decodes.
//!
//! - [`DeviceKey`]: a device's AES-128 key. Its `Debug` is redacted; it has no `Display`, no
//!   `Serialize`; it leaves the process nowhere but sealed in the `secure_devices` table.
//! - [`Slf`]: the security level format byte (RLC size and transmission, MAC size, encryption).
//! - [`SecureTeachIn`]: the TEACH_IN_INFO facts of one teach-in part (no key material).
//! - [`teach_in::Assembler`]: puts the parts of a teach-in together into a [`Taught`] device.
//! - [`keyring::Keyring`]: the reader's in-memory keys and rolling codes; `unwrap` verifies and
//!   decrypts a secure telegram or names why not ([`SecureError::code`] becomes the record's
//!   `decode_error`).
//! - [`store::SecureStore`]: the table, written on the storage thread only.

pub mod config;
pub mod crypto;
pub mod keyring;
pub mod store;
pub mod teach_in;

use serde::{Deserialize, Serialize};

use crate::erp1::{Telegram, rorg};

pub use keyring::{Keyring, Learned, SecureDevice, Unwrapped};
pub use teach_in::{Assembler, Taught};

/// RORG of a secure telegram (encrypted and/or authenticated data).
pub const SEC: u8 = 0x30;
/// RORG of a secure telegram that encapsulates the original RORG in its encrypted data.
pub const SEC_ENCAPS: u8 = 0x31;
/// RORG of a decrypted secure telegram (what a stack that decrypted a 0x30 hands on).
pub const SECD: u8 = 0x32;
/// RORG of a part of a secure chained message.
pub const SEC_CDM: u8 = 0x33;

/// True for the RORGs whose telegrams need a key: SEC, SEC_ENCAPS, SECD, SEC_CDM.
pub fn is_secure_data(rorg: u8) -> bool {
    matches!(rorg, SEC | SEC_ENCAPS | SECD | SEC_CDM)
}

/// A part of a secure chained message (RORG 0x33) in the form of a chained-message part (RORG
/// 0x40) for [`crate::chain::Reassembler`]: the same SEQ/IDX byte and LEN, and in the first part
/// RORG 0x33 where a 0x40 chain names its inner RORG. The complete message then comes out as one
/// telegram of RORG 0x33 whose payload is the secure data (data, RLC if sent, MAC), which
/// [`Keyring::unwrap`] treats like a SEC_ENCAPS telegram (the CMAC over RORG 0x33; the decrypted
/// data starts with the inner RORG). None for another RORG or a first part too short for LEN.
///
/// Assumption (no public decoder to cross-check): SEC_CDM parts follow the 0x40 layout without
/// the inner RORG byte, LEN counting every secure data byte, as the `enocean-esp3` Go package
/// splits and merges them.
pub fn sec_cdm_as_chain_part(t: &Telegram) -> Option<Telegram> {
    if t.rorg != SEC_CDM {
        return None;
    }
    let (&seq_idx, rest) = t.payload.split_first()?;
    let mut payload = vec![seq_idx];
    if seq_idx & 0x3F == 0 {
        let [hi, lo, data @ ..] = rest else {
            return None;
        };
        payload.extend_from_slice(&[*hi, *lo, SEC_CDM]);
        payload.extend_from_slice(data);
    } else {
        payload.extend_from_slice(rest);
    }
    let mut part = t.clone();
    part.rorg = rorg::CDM;
    part.payload = payload;
    Some(part)
}

/// A device's AES-128 key. Never shown: `Debug` prints `DeviceKey([redacted])`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey([u8; 16]);

impl DeviceKey {
    /// Wraps 16 key bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Reads 32 hex digits (surrounding whitespace and a `0x` prefix allowed). The error never
    /// repeats the text.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        if t.len() != 32 {
            return Err(KeyError::Length(t.chars().count()));
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(t, &mut out).map_err(|_| KeyError::NotHex)?;
        Ok(Self(out))
    }

    /// The key bytes, for the cipher. Never log them.
    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey([redacted])")
    }
}

/// Why a key file's content is not a key (the content itself is never repeated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 32 characters.
    #[error("a key is 32 hex digits, this holds {0} characters")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("a key is 32 hex digits, this holds other characters")]
    NotHex,
}

/// How data is encrypted (the SLF's DATA_ENC bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// Authenticated only.
    None,
    /// VAES with AES-128 (the only mode radio devices use).
    Vaes,
    /// AES-CBC (not supported here).
    AesCbc,
    /// A reserved value.
    Reserved,
}

/// The security level format byte: bits 7–6 RLC size (none, 16, 24, 32 bit), bit 5 RLC
/// transmitted, bits 4–3 MAC (none, 3 bytes, 4 bytes, reserved), bits 2–0 data encryption
/// (0 none, 3 VAES, 4 AES-CBC; others reserved). PTM 215: 0x4B (16-bit RLC not transmitted,
/// 3-byte CMAC, VAES).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Slf(pub u8);

impl Slf {
    /// RLC size in bytes: 0, 2, 3 or 4.
    pub fn rlc_len(self) -> usize {
        match self.0 >> 6 {
            0 => 0,
            1 => 2,
            2 => 3,
            _ => 4,
        }
    }

    /// True when every data telegram carries its RLC (explicit), false when the receiver has to
    /// find it (implicit).
    pub fn rlc_transmitted(self) -> bool {
        self.0 & 0x20 != 0
    }

    /// MAC size in bytes (0, 3 or 4); None for the reserved value.
    pub fn mac_len(self) -> Option<usize> {
        match (self.0 >> 3) & 0x03 {
            0 => Some(0),
            1 => Some(3),
            2 => Some(4),
            _ => None,
        }
    }

    /// The data encryption.
    pub fn encryption(self) -> Encryption {
        match self.0 & 0x07 {
            0 => Encryption::None,
            3 => Encryption::Vaes,
            4 => Encryption::AesCbc,
            _ => Encryption::Reserved,
        }
    }

    /// Why this SLF cannot be used here, if it cannot: a reserved MAC, AES-CBC or a reserved
    /// encryption, neither MAC nor encryption, or a transmitted RLC of size 0.
    pub fn unsupported(self) -> Option<&'static str> {
        match (self.mac_len(), self.encryption()) {
            (None, _) => Some("reserved MAC algorithm"),
            (_, Encryption::AesCbc) => Some("AES-CBC encryption"),
            (_, Encryption::Reserved) => Some("reserved encryption"),
            (Some(0), Encryption::None) => Some("neither MAC nor encryption"),
            _ if self.rlc_len() == 0 && self.rlc_transmitted() => {
                Some("a transmitted RLC of no size")
            }
            _ => None,
        }
    }

    /// The facts of the SLF for records and listings.
    pub fn describe(self) -> SlfFacts {
        SlfFacts {
            rlc_bits: 8 * self.rlc_len() as u8,
            rlc_transmitted: self.rlc_transmitted(),
            mac_bytes: self.mac_len().unwrap_or(0) as u8,
            encryption: self.encryption(),
        }
    }
}

/// What an SLF says, in words (for teach-in records; no key material).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlfFacts {
    /// RLC size in bits (0, 16, 24, 32).
    pub rlc_bits: u8,
    /// RLC sent with every telegram.
    pub rlc_transmitted: bool,
    /// CMAC bytes (0, 3, 4).
    pub mac_bytes: u8,
    /// Data encryption.
    pub encryption: Encryption,
}

/// Why a secure telegram was not decoded. [`SecureError::code`] is the record's `decode_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecureError {
    /// No key is known for the sender (never taught in, not configured).
    #[error("no key for this sender")]
    UnknownKey,
    /// The CMAC matched no rolling code of the window (forged, corrupted, or a key mismatch).
    #[error("CMAC does not verify")]
    BadCmac,
    /// The rolling code is one already accepted (or older): a replay.
    #[error("rolling code {rlc:#X} was already used (next expected {next:#X})")]
    Replay {
        /// The telegram's rolling code.
        rlc: u32,
        /// The lowest one accepted now.
        next: u32,
    },
    /// A transmitted rolling code too far ahead of the last accepted one.
    #[error("rolling code {rlc:#X} is outside the window after {next:#X}")]
    OutOfWindow {
        /// The telegram's rolling code.
        rlc: u32,
        /// The lowest one accepted now.
        next: u32,
    },
    /// The payload is shorter than its RLC and MAC.
    #[error("a {len}-byte payload is too short for its RLC and MAC")]
    TooShort {
        /// Payload length.
        len: usize,
    },
    /// Something this gateway does not do (AES-CBC, a pre-shared key, more than 16 data bytes,
    /// an implicit RLC with no starting value).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// A decrypted telegram (RORG 0x32) from the air: nothing proves it came from the device.
    #[error("a decrypted secure telegram (RORG 32) cannot be verified")]
    Unverified,
    /// A PTM rocker code the specification reserves.
    #[error("reserved PTM code {0}")]
    PtmReserved(u8),
}

impl SecureError {
    /// The stable code of the reason, for `decode_error` and counters.
    pub fn code(&self) -> &'static str {
        match self {
            SecureError::UnknownKey => "secure_unknown_key",
            SecureError::BadCmac => "secure_bad_cmac",
            SecureError::Replay { .. } => "secure_replay",
            SecureError::OutOfWindow { .. } => "secure_rlc_out_of_window",
            SecureError::TooShort { .. } => "secure_too_short",
            SecureError::Unsupported(_) => "secure_unsupported",
            SecureError::Unverified => "secure_unverified",
            SecureError::PtmReserved(_) => "secure_ptm_reserved",
        }
    }
}

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

    #[test]
    fn slf_fields() {
        let ptm = Slf(0x4B);
        assert_eq!(
            (
                ptm.rlc_len(),
                ptm.rlc_transmitted(),
                ptm.mac_len(),
                ptm.encryption()
            ),
            (2, false, Some(3), Encryption::Vaes)
        );
        let full = Slf(0xF3);
        assert_eq!(
            (full.rlc_len(), full.rlc_transmitted(), full.mac_len()),
            (4, true, Some(4))
        );
        assert_eq!(Slf(0x8B).rlc_len(), 3);
        assert_eq!(Slf(0x18).unsupported(), Some("reserved MAC algorithm"));
        assert_eq!(Slf(0x4C).unsupported(), Some("AES-CBC encryption"));
        assert_eq!(Slf(0x40).unsupported(), Some("neither MAC nor encryption"));
        assert_eq!(ptm.unsupported(), None);
    }

    #[test]
    fn keys_parse_and_never_show() {
        let k = DeviceKey::from_hex(" 0x456E4F6365616E20476D62482E313300\n").unwrap();
        assert_eq!(k.bytes(), b"EnOcean GmbH.13\0");
        assert_eq!(format!("{k:?}"), "DeviceKey([redacted])");
        assert_eq!(DeviceKey::from_hex("12"), Err(KeyError::Length(2)));
        let e = DeviceKey::from_hex("zz6E4F6365616E20476D62482E313300").unwrap_err();
        assert!(!e.to_string().contains("6E4F"), "{e}");
    }
}
