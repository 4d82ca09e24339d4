//! Teach-in detection: 4BS and 1BS telegrams with the LRN bit cleared, and UTE (D4) queries.
//!
//! A teach-in is never a reading. The agent is receive-only, so it never answers; it records
//! whether the device asked for an answer.

use serde_json::{Value as Json, json};

use super::bits::extract;
use super::model::EepId;
use crate::erp1::{Telegram, rorg};

/// 4BS: the LRN bit (DB0.3); 0 means teach-in.
pub const LRN_OFFSET_4BS: usize = 28;
/// 4BS teach-in: DB0.7, 1 when FUNC/TYPE/manufacturer are included ("variant 2").
pub const EEP_INCLUDED_OFFSET_4BS: usize = 24;
/// 1BS: the LRN bit (DB0.3 of the single byte); 0 means teach-in.
pub const LRN_OFFSET_1BS: usize = 4;

/// What a teach-in telegram announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeachIn {
    /// 4BS teach-in; `eep` and `manufacturer` are present when the telegram includes them.
    FourBs {
        /// Announced profile (RORG A5).
        eep: Option<EepId>,
        /// 11-bit manufacturer ID.
        manufacturer: Option<u16>,
    },
    /// 1BS teach-in (carries no profile; contacts are D5-00-01).
    OneBs,
    /// UTE teach-in query (D4).
    Ute(UteQuery),
}

/// What a UTE teach-in query (command 0) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UteQuery {
    /// The device's profile.
    pub eep: EepId,
    /// 11-bit manufacturer ID.
    pub manufacturer: u16,
    /// Number of channels to teach in (255 = all).
    pub channel: u8,
    /// The device communicates in both directions.
    pub bidirectional: bool,
    /// The device asked for a teach-in response (the agent never sends one).
    pub response_expected: bool,
    /// What the device asks for.
    pub request: UteRequest,
}

/// The request type of a UTE query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UteRequest {
    /// Teach-in.
    TeachIn,
    /// Teach-out (deletion).
    Deletion,
    /// Teach-in or deletion, whichever applies.
    NotSpecific,
    /// The value 3, not used by the spec.
    Reserved,
}

impl UteRequest {
    /// The request as a lower-case word.
    pub fn as_str(&self) -> &'static str {
        match self {
            UteRequest::TeachIn => "teach_in",
            UteRequest::Deletion => "deletion",
            UteRequest::NotSpecific => "teach_in_or_deletion",
            UteRequest::Reserved => "reserved",
        }
    }
}

impl TeachIn {
    /// The announced EEP, when the telegram carries one.
    pub fn eep(&self) -> Option<EepId> {
        match self {
            TeachIn::FourBs { eep, .. } => *eep,
            TeachIn::OneBs => None,
            TeachIn::Ute(q) => Some(q.eep),
        }
    }

    /// The announced manufacturer ID, when the telegram carries one.
    pub fn manufacturer(&self) -> Option<u16> {
        match self {
            TeachIn::FourBs { manufacturer, .. } => *manufacturer,
            TeachIn::OneBs => None,
            TeachIn::Ute(q) => Some(q.manufacturer),
        }
    }

    /// The JSON object printed as `teach_in` by `decode` and stored in teach-in events.
    pub fn to_json(&self) -> Json {
        let eep = self.eep();
        let mut v = json!({
            "kind": match self {
                TeachIn::FourBs { .. } => "4bs",
                TeachIn::OneBs => "1bs",
                TeachIn::Ute(_) => "ute",
            },
            "eep": eep.map(|e| e.to_string()),
            "func": eep.map(|e| format!("{:02X}", e.func)),
            "type": eep.map(|e| format!("{:02X}", e.type_)),
            "manufacturer": self.manufacturer().map(|m| format!("{m:03X}")),
            "response_expected": false,
        });
        if let TeachIn::Ute(q) = self {
            v["response_expected"] = q.response_expected.into();
            v["channel"] = q.channel.into();
            v["bidirectional"] = q.bidirectional.into();
            v["request"] = q.request.as_str().into();
        }
        v
    }
}

/// True when a 4BS or 1BS payload has its LRN bit cleared. Short payloads are not teach-in.
#[inline]
pub fn is_teach_in_bits(rorg_code: u8, payload: &[u8]) -> bool {
    match rorg_code {
        rorg::BS4 => payload.len() == 4 && extract(payload, LRN_OFFSET_4BS, 1) == Some(0),
        rorg::BS1 => payload.len() == 1 && extract(payload, LRN_OFFSET_1BS, 1) == Some(0),
        _ => false,
    }
}

/// Detects a teach-in telegram and reads what it announces.
pub fn teach_in(telegram: &Telegram) -> Option<TeachIn> {
    teach_in_payload(telegram.rorg, &telegram.payload)
}

/// [`teach_in`] on a RORG and payload.
pub fn teach_in_payload(rorg_code: u8, payload: &[u8]) -> Option<TeachIn> {
    match rorg_code {
        rorg::BS4 if is_teach_in_bits(rorg_code, payload) => {
            if extract(payload, EEP_INCLUDED_OFFSET_4BS, 1) == Some(1) {
                let func = extract(payload, 0, 6)? as u8;
                let type_ = extract(payload, 6, 7)? as u8;
                let manufacturer = extract(payload, 13, 11)? as u16;
                Some(TeachIn::FourBs {
                    eep: Some(EepId::new(rorg::BS4, func, type_)),
                    manufacturer: Some(manufacturer),
                })
            } else {
                Some(TeachIn::FourBs {
                    eep: None,
                    manufacturer: None,
                })
            }
        }
        rorg::BS1 if is_teach_in_bits(rorg_code, payload) => Some(TeachIn::OneBs),
        rorg::UTE if payload.len() == 7 => {
            let db6 = payload[0];
            // Command identifier 0 = teach-in query; 1 (a response) comes from a controller.
            if db6 & 0x0F != 0 {
                return None;
            }
            let request = match (db6 >> 4) & 0x03 {
                0 => UteRequest::TeachIn,
                1 => UteRequest::Deletion,
                2 => UteRequest::NotSpecific,
                _ => UteRequest::Reserved,
            };
            Some(TeachIn::Ute(UteQuery {
                eep: EepId::new(payload[6], payload[5], payload[4]),
                manufacturer: u16::from(payload[3] & 0x07) << 8 | u16::from(payload[2]),
                channel: payload[1],
                bidirectional: db6 & 0x80 != 0,
                // DB6.6: 0 = a response is expected, 1 = none expected.
                response_expected: db6 & 0x40 == 0,
                request,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_bs_with_eep() {
        let t = teach_in_payload(0xA5, &[0x08, 0x28, 0x3E, 0x80]).unwrap();
        assert_eq!(t.eep(), Some(EepId::new(0xA5, 0x02, 0x05)));
        assert_eq!(t.manufacturer(), Some(0x03E));
        assert!(teach_in_payload(0xA5, &[0x08, 0x28, 0x3E, 0x88]).is_none());
        assert_eq!(
            teach_in_payload(0xA5, &[0, 0, 0, 0]),
            Some(TeachIn::FourBs {
                eep: None,
                manufacturer: None
            })
        );
        assert!(teach_in_payload(0xA5, &[0, 0, 0]).is_none());
    }

    #[test]
    fn one_bs_and_ute() {
        assert_eq!(teach_in_payload(0xD5, &[0x00]), Some(TeachIn::OneBs));
        assert_eq!(teach_in_payload(0xD5, &[0x08]), None);
        let TeachIn::Ute(q) =
            teach_in_payload(0xD4, &[0x90, 0x02, 0x0B, 0x00, 0x01, 0x05, 0xD2]).unwrap()
        else {
            panic!("not UTE")
        };
        assert_eq!(q.eep, EepId::new(0xD2, 0x05, 0x01));
        assert!(q.bidirectional && q.response_expected);
        assert_eq!(q.request, UteRequest::Deletion);
        assert_eq!(q.channel, 2);
        assert_eq!(q.manufacturer, 0x00B);
        assert!(teach_in_payload(0xD4, &[0x91, 2, 0x0B, 0, 1, 5, 0xD2]).is_none());
    }
}
