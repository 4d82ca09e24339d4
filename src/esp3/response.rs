//! RESPONSE packets (type 0x02): the stick's answer to a command, and the answers we parse.

use super::{Error, Frame, PacketType};

/// The return code that starts every RESPONSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnCode {
    /// 0x00 RET_OK.
    Ok,
    /// 0x01 RET_ERROR.
    Error,
    /// 0x02 RET_NOT_SUPPORTED.
    NotSupported,
    /// 0x03 RET_WRONG_PARAM.
    WrongParam,
    /// 0x04 RET_OPERATION_DENIED.
    OperationDenied,
    /// 0x05 RET_LOCK_SET.
    LockSet,
    /// 0x06 RET_BUFFER_TO_SMALL.
    BufferTooSmall,
    /// 0x07 RET_NO_FREE_BUFFER.
    NoFreeBuffer,
    /// Any other code (0x80 and up are command specific).
    Other(u8),
}

impl ReturnCode {
    /// The spec's name for the code.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "RET_OK",
            Self::Error => "RET_ERROR",
            Self::NotSupported => "RET_NOT_SUPPORTED",
            Self::WrongParam => "RET_WRONG_PARAM",
            Self::OperationDenied => "RET_OPERATION_DENIED",
            Self::LockSet => "RET_LOCK_SET",
            Self::BufferTooSmall => "RET_BUFFER_TO_SMALL",
            Self::NoFreeBuffer => "RET_NO_FREE_BUFFER",
            Self::Other(_) => "RET_OTHER",
        }
    }

    /// The code's byte value.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Error => 1,
            Self::NotSupported => 2,
            Self::WrongParam => 3,
            Self::OperationDenied => 4,
            Self::LockSet => 5,
            Self::BufferTooSmall => 6,
            Self::NoFreeBuffer => 7,
            Self::Other(c) => c,
        }
    }
}

impl From<u8> for ReturnCode {
    fn from(code: u8) -> Self {
        match code {
            0 => Self::Ok,
            1 => Self::Error,
            2 => Self::NotSupported,
            3 => Self::WrongParam,
            4 => Self::OperationDenied,
            5 => Self::LockSet,
            6 => Self::BufferTooSmall,
            7 => Self::NoFreeBuffer,
            c => Self::Other(c),
        }
    }
}

/// A RESPONSE: return code plus whatever the command returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The return code.
    pub code: ReturnCode,
    /// Response data after the return code.
    pub data: &'a [u8],
    /// Optional data of the frame.
    pub optional: &'a [u8],
}

impl<'a> Response<'a> {
    /// Reads a RESPONSE frame; fails on another packet type or an empty data field.
    pub fn parse(frame: &'a Frame) -> Result<Self, Error> {
        if frame.packet_type() != PacketType::Response {
            return Err(Error::WrongPacketType {
                expected: PacketType::Response,
                found: frame.packet_type(),
            });
        }
        let (&code, data) = frame.data().split_first().ok_or(Error::TooShort {
            what: "RESPONSE",
            needed: 1,
            got: 0,
        })?;
        Ok(Self {
            code: ReturnCode::from(code),
            data,
            optional: frame.optional(),
        })
    }

    fn require_ok(&self) -> Result<(), Error> {
        match self.code {
            ReturnCode::Ok => Ok(()),
            code => Err(Error::NotOk(code)),
        }
    }
}

/// The answer to CO_RD_VERSION: which stick and firmware we talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Application (firmware) version, main.beta.alpha.build.
    pub app_version: [u8; 4],
    /// API version, main.beta.alpha.build.
    pub api_version: [u8; 4],
    /// The chip's unique ID (EURID).
    pub chip_id: u32,
    /// Chip version.
    pub chip_version: u32,
    /// Application description, e.g. "GATEWAYCTRL".
    pub description: String,
}

impl VersionInfo {
    /// Interprets the response to CO_RD_VERSION.
    pub fn parse(response: &Response<'_>) -> Result<Self, Error> {
        response.require_ok()?;
        let d = response.data;
        if d.len() < 32 {
            return Err(Error::TooShort {
                what: "CO_RD_VERSION response",
                needed: 33,
                got: d.len() + 1,
            });
        }
        let word = |i: usize| u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
        let text = &d[16..32];
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        Ok(Self {
            app_version: [d[0], d[1], d[2], d[3]],
            api_version: [d[4], d[5], d[6], d[7]],
            chip_id: word(8),
            chip_version: word(12),
            description: String::from_utf8_lossy(&text[..end]).trim().to_string(),
        })
    }

    /// The application version as "a.b.c.d".
    pub fn app_version_string(&self) -> String {
        dotted(self.app_version)
    }

    /// The API version as "a.b.c.d".
    pub fn api_version_string(&self) -> String {
        dotted(self.api_version)
    }
}

fn dotted(v: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", v[0], v[1], v[2], v[3])
}

/// The answer to CO_RD_IDBASE: the stick's base ID for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseIdInfo {
    /// First ID of the stick's 128-ID base range.
    pub base_id: u32,
    /// How many times the base ID may still be changed, when the stick says so.
    pub remaining_write_cycles: Option<u8>,
}

impl BaseIdInfo {
    /// Interprets the response to CO_RD_IDBASE.
    pub fn parse(response: &Response<'_>) -> Result<Self, Error> {
        response.require_ok()?;
        let d = response.data;
        if d.len() < 4 {
            return Err(Error::TooShort {
                what: "CO_RD_IDBASE response",
                needed: 5,
                got: d.len() + 1,
            });
        }
        Ok(Self {
            base_id: u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
            remaining_write_cycles: response.optional.first().copied(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_response() {
        let mut data = vec![0x00, 2, 11, 1, 0, 2, 6, 3, 0];
        data.extend_from_slice(&0x0181_B744u32.to_be_bytes());
        data.extend_from_slice(&0x4500_0001u32.to_be_bytes());
        data.extend_from_slice(b"GATEWAYCTRL\0\0\0\0\0");
        let frame = Frame::new(PacketType::Response, &data, &[]).unwrap();
        let info = VersionInfo::parse(&Response::parse(&frame).unwrap()).unwrap();
        assert_eq!(info.app_version_string(), "2.11.1.0");
        assert_eq!(info.api_version_string(), "2.6.3.0");
        assert_eq!(info.chip_id, 0x0181_B744);
        assert_eq!(info.chip_version, 0x4500_0001);
        assert_eq!(info.description, "GATEWAYCTRL");
    }

    #[test]
    fn short_and_failed_responses_are_errors() {
        let frame = Frame::new(PacketType::Response, &[0x00, 1, 2], &[]).unwrap();
        let r = Response::parse(&frame).unwrap();
        assert!(matches!(
            VersionInfo::parse(&r),
            Err(Error::TooShort { .. })
        ));
        assert!(matches!(BaseIdInfo::parse(&r), Err(Error::TooShort { .. })));
        let frame = Frame::new(PacketType::Response, &[0x02], &[]).unwrap();
        let r = Response::parse(&frame).unwrap();
        assert_eq!(
            BaseIdInfo::parse(&r),
            Err(Error::NotOk(ReturnCode::NotSupported))
        );
        let frame = Frame::new(PacketType::Event, &[0x04], &[]).unwrap();
        assert!(Response::parse(&frame).is_err());
    }

    #[test]
    fn base_id_with_write_cycles() {
        let frame =
            Frame::new(PacketType::Response, &[0, 0xFF, 0x8A, 0x12, 0x00], &[0x0A]).unwrap();
        let info = BaseIdInfo::parse(&Response::parse(&frame).unwrap()).unwrap();
        assert_eq!(info.base_id, 0xFF8A_1200);
        assert_eq!(info.remaining_write_cycles, Some(10));
    }
}
