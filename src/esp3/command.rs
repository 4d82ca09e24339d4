//! COMMON_COMMAND packets (type 0x05) the agent sends to the stick itself, never over the air.

use super::{Frame, PacketType};

/// Common command codes the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommonCommand {
    /// 0x02 CO_WR_RESET: reset the stick.
    WriteReset,
    /// 0x03 CO_RD_VERSION: read firmware and chip versions.
    ReadVersion,
    /// 0x08 CO_RD_IDBASE: read the base ID.
    ReadIdBase,
}

impl CommonCommand {
    /// The command code byte.
    pub fn code(self) -> u8 {
        match self {
            Self::WriteReset => 0x02,
            Self::ReadVersion => 0x03,
            Self::ReadIdBase => 0x08,
        }
    }

    /// Reads a command frame the way the stick would (used by the simulated stick).
    pub fn from_frame(frame: &Frame) -> Option<Self> {
        if frame.packet_type() != PacketType::CommonCommand {
            return None;
        }
        match frame.data().first()? {
            0x02 => Some(Self::WriteReset),
            0x03 => Some(Self::ReadVersion),
            0x08 => Some(Self::ReadIdBase),
            _ => None,
        }
    }

    /// The frame to send to the stick.
    pub fn frame(self) -> Frame {
        let data = [self.code()];
        Frame::from_body(PacketType::CommonCommand, data.to_vec(), data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_wire_forms() {
        assert_eq!(
            CommonCommand::ReadVersion.frame().encode(),
            [0x55, 0x00, 0x01, 0x00, 0x05, 0x70, 0x03, 0x09]
        );
        assert_eq!(
            CommonCommand::ReadIdBase.frame().encode(),
            [0x55, 0x00, 0x01, 0x00, 0x05, 0x70, 0x08, 0x38]
        );
        let f = CommonCommand::ReadIdBase.frame();
        assert_eq!(
            CommonCommand::from_frame(&f),
            Some(CommonCommand::ReadIdBase)
        );
    }
}
