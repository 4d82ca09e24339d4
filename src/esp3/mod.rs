//! ESP3 (EnOcean Serial Protocol 3) framing: what travels between the host and the USB 300 stick.
//!
//! A frame is `0x55 | len_data (u16 BE) | len_opt (u8) | type | CRC8H | data | optional | CRC8D`.
//! [`Decoder`] turns an arbitrary byte stream into [`Frame`]s and diagnostic [`Event`]s;
//! [`Frame::encode`] does the reverse. Typed views of the common packet types live in
//! [`response`], [`event`] and [`command`]; radio telegrams are in [`crate::erp1`].

mod crc;
mod decoder;

pub mod command;
pub mod event;
pub mod response;

pub use crc::crc8;
pub use decoder::{Counters, Decoder, Event, GAP_TIMEOUT, Item, LentItem};

/// The sync byte that starts every ESP3 frame.
pub const SYNC: u8 = 0x55;
/// Bytes before the data field: sync, 4 header bytes, CRC8H.
pub const HEADER_LEN: usize = 6;
/// Largest possible frame: header, 65 535 data bytes, 255 optional bytes, CRC8D.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + u16::MAX as usize + u8::MAX as usize + 1;

/// Errors from building or interpreting ESP3 frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The data field does not fit the 16-bit length of the header.
    #[error("data field of {0} bytes exceeds the ESP3 maximum of 65535")]
    DataTooLong(usize),
    /// The optional field does not fit the 8-bit length of the header.
    #[error("optional field of {0} bytes exceeds the ESP3 maximum of 255")]
    OptionalTooLong(usize),
    /// A frame with neither data nor optional bytes carries nothing and is not valid ESP3.
    #[error("frame has no data and no optional bytes")]
    Empty,
    /// The frame is of another packet type than the view asked for.
    #[error("expected packet type {expected:?}, found {found:?}")]
    WrongPacketType {
        /// The type the view needs.
        expected: PacketType,
        /// The type the frame has.
        found: PacketType,
    },
    /// The stick answered with a return code other than RET_OK.
    #[error("stick answered {}", .0.name())]
    NotOk(response::ReturnCode),
    /// The packet is shorter than its type requires.
    #[error("{what} needs at least {needed} bytes, got {got}")]
    TooShort {
        /// Which structure was being read.
        what: &'static str,
        /// Minimum length it needs.
        needed: usize,
        /// Length present.
        got: usize,
    },
}

/// ESP3 packet types (the byte after the optional length in the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 0x01: an ERP1 radio telegram.
    RadioErp1,
    /// 0x02: the stick's answer to a command.
    Response,
    /// 0x03: radio sub-telegram information.
    RadioSubTel,
    /// 0x04: an unsolicited event from the stick.
    Event,
    /// 0x05: a command to the stick's core.
    CommonCommand,
    /// 0x06: a Smart Acknowledge command.
    SmartAckCommand,
    /// 0x07: a remote management command.
    RemoteManCommand,
    /// 0x09: a radio message (chained, decrypted).
    RadioMessage,
    /// 0x0A: an ERP2 radio telegram.
    RadioErp2,
    /// 0x0B: a configuration command.
    ConfigCommand,
    /// 0x0C: a command accepted notification.
    CommandAccepted,
    /// 0x10: an IEEE 802.15.4 radio packet.
    Radio802154,
    /// 0x11: a 2.4 GHz command.
    Command24,
    /// Any other value; the frame is kept as it is.
    Unknown(u8),
}

impl PacketType {
    /// The byte that stands for this type on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::RadioErp1 => 0x01,
            Self::Response => 0x02,
            Self::RadioSubTel => 0x03,
            Self::Event => 0x04,
            Self::CommonCommand => 0x05,
            Self::SmartAckCommand => 0x06,
            Self::RemoteManCommand => 0x07,
            Self::RadioMessage => 0x09,
            Self::RadioErp2 => 0x0A,
            Self::ConfigCommand => 0x0B,
            Self::CommandAccepted => 0x0C,
            Self::Radio802154 => 0x10,
            Self::Command24 => 0x11,
            Self::Unknown(c) => c,
        }
    }

    /// The spec's name (`RADIO_ERP1`, …), or `UNKNOWN` for unassigned codes.
    pub fn name(self) -> &'static str {
        match self {
            Self::RadioErp1 => "RADIO_ERP1",
            Self::Response => "RESPONSE",
            Self::RadioSubTel => "RADIO_SUB_TEL",
            Self::Event => "EVENT",
            Self::CommonCommand => "COMMON_COMMAND",
            Self::SmartAckCommand => "SMART_ACK_COMMAND",
            Self::RemoteManCommand => "REMOTE_MAN_COMMAND",
            Self::RadioMessage => "RADIO_MESSAGE",
            Self::RadioErp2 => "RADIO_ERP2",
            Self::ConfigCommand => "COMMAND_CONFIG",
            Self::CommandAccepted => "COMMAND_ACCEPTED",
            Self::Radio802154 => "RADIO_802_15_4",
            Self::Command24 => "COMMAND_2_4",
            Self::Unknown(_) => "UNKNOWN",
        }
    }
}

impl From<u8> for PacketType {
    fn from(code: u8) -> Self {
        match code {
            0x01 => Self::RadioErp1,
            0x02 => Self::Response,
            0x03 => Self::RadioSubTel,
            0x04 => Self::Event,
            0x05 => Self::CommonCommand,
            0x06 => Self::SmartAckCommand,
            0x07 => Self::RemoteManCommand,
            0x09 => Self::RadioMessage,
            0x0A => Self::RadioErp2,
            0x0B => Self::ConfigCommand,
            0x0C => Self::CommandAccepted,
            0x10 => Self::Radio802154,
            0x11 => Self::Command24,
            c => Self::Unknown(c),
        }
    }
}

/// One ESP3 frame: packet type, data and optional data, CRCs already checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    packet_type: PacketType,
    /// Data followed by optional data, in one allocation.
    body: Vec<u8>,
    data_len: usize,
}

impl Frame {
    /// Builds a frame, checking that both fields fit the header and that it is not empty.
    pub fn new(packet_type: PacketType, data: &[u8], optional: &[u8]) -> Result<Self, Error> {
        if data.len() > u16::MAX as usize {
            return Err(Error::DataTooLong(data.len()));
        }
        if optional.len() > u8::MAX as usize {
            return Err(Error::OptionalTooLong(optional.len()));
        }
        if data.is_empty() && optional.is_empty() {
            return Err(Error::Empty);
        }
        let mut body = Vec::with_capacity(data.len() + optional.len());
        body.extend_from_slice(data);
        body.extend_from_slice(optional);
        Ok(Self {
            packet_type,
            body,
            data_len: data.len(),
        })
    }

    /// Used by the decoder, which has already checked the lengths.
    pub(crate) fn from_body(packet_type: PacketType, body: Vec<u8>, data_len: usize) -> Self {
        Self {
            packet_type,
            body,
            data_len,
        }
    }

    /// Gives the buffer back (to be reused for another frame).
    pub(crate) fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The packet type.
    pub fn packet_type(&self) -> PacketType {
        self.packet_type
    }

    /// The data field.
    pub fn data(&self) -> &[u8] {
        &self.body[..self.data_len]
    }

    /// The optional data field (may be empty).
    pub fn optional(&self) -> &[u8] {
        &self.body[self.data_len..]
    }

    /// The four header bytes covered by CRC8H: data length, optional length, packet type.
    pub fn header(&self) -> [u8; 4] {
        let [hi, lo] = (self.data_len as u16).to_be_bytes();
        [
            hi,
            lo,
            (self.body.len() - self.data_len) as u8,
            self.packet_type.code(),
        ]
    }

    /// CRC8H as it appears on the wire.
    pub fn header_crc(&self) -> u8 {
        crc8(&self.header())
    }

    /// CRC8D as it appears on the wire.
    pub fn data_crc(&self) -> u8 {
        crc8(&self.body)
    }

    /// Length of the encoded frame in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.len() + 1
    }

    /// Appends the wire form of the frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.push(SYNC);
        let header = self.header();
        out.extend_from_slice(&header);
        out.push(crc8(&header));
        out.extend_from_slice(&self.body);
        out.push(self.data_crc());
    }

    /// The wire form of the frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }
}
