//! EVENT packets (type 0x04): what the stick reports on its own.

use super::{Error, Frame, PacketType};

/// A decoded EVENT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickEvent {
    /// 0x01 SA_RECLAIM_NOT_SUCCESSFUL: a Smart Ack reclaim failed.
    SaReclaimNotSuccessful,
    /// 0x02 SA_CONFIRM_LEARN: a Smart Ack learn request needs confirming.
    SaConfirmLearn,
    /// 0x03 SA_LEARN_ACK: a Smart Ack learn finished.
    SaLearnAck,
    /// 0x04 CO_READY: the stick (re)started and is ready.
    CoReady {
        /// Why it woke up (0x00 voltage drop, 0x01 reset pin, 0x02 watchdog, …), when given.
        wakeup_cause: Option<u8>,
    },
    /// 0x05 CO_EVENT_SECUREDEVICES: a secure-device event.
    CoEventSecureDevices,
    /// 0x06 CO_DUTYCYCLE_LIMIT: the radio duty-cycle limit was reached or released.
    CoDutyCycleLimit {
        /// True when the limit was reached, false when released.
        limit_reached: Option<bool>,
    },
    /// 0x07 CO_TRANSMIT_FAILED: a telegram could not be sent.
    CoTransmitFailed {
        /// 0x00 CCA failed, 0x01 no acknowledgement.
        reason: Option<u8>,
    },
    /// 0x08 CO_TX_DONE: a telegram was sent.
    CoTxDone,
    /// 0x09 CO_LRN_MODE_DISABLED: learn mode timed out.
    CoLrnModeDisabled,
    /// Any other event code.
    Other(u8),
}

impl StickEvent {
    /// Reads an EVENT frame.
    pub fn parse(frame: &Frame) -> Result<Self, Error> {
        if frame.packet_type() != PacketType::Event {
            return Err(Error::WrongPacketType {
                expected: PacketType::Event,
                found: frame.packet_type(),
            });
        }
        let (&code, rest) = frame.data().split_first().ok_or(Error::TooShort {
            what: "EVENT",
            needed: 1,
            got: 0,
        })?;
        let arg = rest.first().copied();
        Ok(match code {
            0x01 => Self::SaReclaimNotSuccessful,
            0x02 => Self::SaConfirmLearn,
            0x03 => Self::SaLearnAck,
            0x04 => Self::CoReady { wakeup_cause: arg },
            0x05 => Self::CoEventSecureDevices,
            0x06 => Self::CoDutyCycleLimit {
                limit_reached: arg.map(|b| b != 0),
            },
            0x07 => Self::CoTransmitFailed { reason: arg },
            0x08 => Self::CoTxDone,
            0x09 => Self::CoLrnModeDisabled,
            c => Self::Other(c),
        })
    }

    /// The spec's name of the event.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SaReclaimNotSuccessful => "SA_RECLAIM_NOT_SUCCESSFUL",
            Self::SaConfirmLearn => "SA_CONFIRM_LEARN",
            Self::SaLearnAck => "SA_LEARN_ACK",
            Self::CoReady { .. } => "CO_READY",
            Self::CoEventSecureDevices => "CO_EVENT_SECUREDEVICES",
            Self::CoDutyCycleLimit { .. } => "CO_DUTYCYCLE_LIMIT",
            Self::CoTransmitFailed { .. } => "CO_TRANSMIT_FAILED",
            Self::CoTxDone => "CO_TX_DONE",
            Self::CoLrnModeDisabled => "CO_LRN_MODE_DISABLED",
            Self::Other(_) => "UNKNOWN_EVENT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events() {
        let f = |d: &[u8]| StickEvent::parse(&Frame::new(PacketType::Event, d, &[]).unwrap());
        assert_eq!(
            f(&[0x04, 0x02]).unwrap(),
            StickEvent::CoReady {
                wakeup_cause: Some(2)
            }
        );
        assert_eq!(
            f(&[0x06, 0x01]).unwrap(),
            StickEvent::CoDutyCycleLimit {
                limit_reached: Some(true)
            }
        );
        assert_eq!(
            f(&[0x07]).unwrap(),
            StickEvent::CoTransmitFailed { reason: None }
        );
        assert_eq!(f(&[0x42]).unwrap(), StickEvent::Other(0x42));
        let empty = Frame::new(PacketType::Event, &[], &[1]).unwrap();
        assert!(StickEvent::parse(&empty).is_err());
    }
}
