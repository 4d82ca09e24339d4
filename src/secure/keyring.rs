//! The reader's keys and rolling codes, in memory: [`Keyring::unwrap`] turns a secure telegram
//! into the plain telegram it carries, or says why it cannot.
//!
//! Rolling codes: the keyring keeps, per device, the lowest RLC it accepts next (`next_rlc`;
//! a teach-in gives the RLC the device uses next). A telegram is accepted only with an RLC in
//! the window `next_rlc .. next_rlc + RLC_WINDOW` (modulo the RLC size), and then `next_rlc`
//! moves past it, so the same RLC is never accepted twice.
//! - Implicit RLC (not transmitted): the CMAC is tried with every RLC of the window, in order;
//!   if none verifies, the [`RLC_WINDOW`] codes before it are tried too, to tell a replay
//!   (`secure_replay`) from a forgery or corruption (`secure_bad_cmac`). At most 2 × 128
//!   CMACs of one block each per rejected telegram.
//! - Explicit RLC: the CMAC is checked with the transmitted RLC; a valid telegram whose RLC is
//!   behind `next_rlc` is a replay, one more than the window ahead is `secure_rlc_out_of_window`
//!   (the device was heard by someone else for a long time: a new teach-in resynchronises).
//! - No RLC (SLF RLC size 0): the CMAC alone; there is nothing to tell a replay by.

use std::collections::{BTreeMap, HashMap};

use super::crypto::{Signer, VAES_MAX, vaes};
use super::teach_in::Taught;
use super::{DeviceKey, Encryption, SEC, SEC_CDM, SEC_ENCAPS, SECD, SecureError, Slf};
use crate::erp1::{STATUS_NU, STATUS_T21, Telegram, rorg};

/// How far past the last accepted rolling code a telegram may be (the EnOcean security
/// specification's RLC window; 128 as in its examples): that many telegrams may be lost
/// between two heard ones.
pub const RLC_WINDOW: u32 = 128;

/// One secure device: key, SLF and rolling-code state. `Debug` shows no key.
#[derive(Debug, Clone)]
pub struct SecureDevice {
    /// The device key.
    pub key: DeviceKey,
    /// The security level format.
    pub slf: Slf,
    /// The lowest rolling code accepted next; None until known (an explicit RLC then takes the
    /// first verified one).
    pub next_rlc: Option<u32>,
    /// A PTM (rocker) module: 4-bit data maps to F6-02-01.
    pub ptm: bool,
    /// The key comes from the configuration (a teach-in does not replace it).
    pub configured: bool,
}

/// A secure telegram verified and decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwrapped {
    /// The plain telegram: its inner RORG (encapsulated), F6 for a PTM rocker, the RORG of the
    /// device's EEP (0x30 data), or 0x32 when that is not known.
    pub telegram: Telegram,
    /// The rolling code it was accepted with.
    pub rlc: Option<u32>,
    /// The device's rolling-code state after it (to persist).
    pub next_rlc: Option<u32>,
}

/// What a completed teach-in changed in the keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A device new to the keyring.
    New,
    /// A known device with a new key or SLF (it was paired again).
    Rekeyed,
    /// The known key again, with a rolling code ahead of the one held: that code is taken.
    RollingCode,
    /// The known key again and nothing newer: nothing changes.
    Unchanged,
    /// The device's key comes from the configuration: nothing changes.
    Configured,
    /// The bound on devices taught in by radio is reached: refused.
    Full,
}

impl Learned {
    /// True when the device's entry changed and has to be stored.
    pub fn changed(self) -> bool {
        matches!(self, Learned::New | Learned::Rekeyed | Learned::RollingCode)
    }
}

/// The keyring: devices with a key, by sender ID, and what it has counted.
#[derive(Debug)]
pub struct Keyring {
    devices: HashMap<u32, (SecureDevice, Signer)>,
    /// Devices taught in by radio at most.
    max_learned: usize,
    /// Telegrams accepted.
    accepted: u64,
    /// Telegrams rejected, by reason code.
    rejected: BTreeMap<&'static str, u64>,
}

impl Default for Keyring {
    fn default() -> Self {
        Self {
            devices: HashMap::new(),
            max_learned: crate::device::DEFAULT_MAX_DEVICES,
            accepted: 0,
            rejected: BTreeMap::new(),
        }
    }
}

/// All ones over an RLC of `len` bytes.
fn rlc_mask(len: usize) -> u32 {
    if len >= 4 {
        u32::MAX
    } else {
        (1u32 << (8 * len)) - 1
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Keyring {
    /// Adds or replaces a device.
    pub fn insert(&mut self, id: u32, device: SecureDevice) {
        let signer = Signer::new(&device.key);
        self.devices.insert(id, (device, signer));
    }

    /// Takes a completed teach-in and says what changed. A key from the configuration is never
    /// replaced; a teach-in repeating the known key never moves the rolling code back (a
    /// replayed teach-in must not reopen a replay window); past [`Keyring::set_max_learned`]
    /// devices taught in by radio, a new one is refused.
    pub fn learn(&mut self, t: &Taught) -> Learned {
        let learned = self.devices.values().filter(|(d, _)| !d.configured).count();
        match self.devices.get_mut(&t.sender) {
            Some((d, _)) if d.configured => return Learned::Configured,
            Some((d, _)) if d.key == t.key && d.slf == t.slf => {
                let mask = rlc_mask(d.slf.rlc_len());
                let ahead = match (d.next_rlc, t.rlc) {
                    (Some(now), Some(new)) => (new.wrapping_sub(now) & mask) <= mask / 2,
                    (None, Some(_)) => true,
                    _ => false,
                };
                if ahead && d.next_rlc != t.rlc {
                    d.next_rlc = t.rlc;
                    return Learned::RollingCode;
                }
                return Learned::Unchanged;
            }
            Some(_) => {}
            None if learned >= self.max_learned => return Learned::Full,
            None => {}
        }
        let rekeyed = self.devices.contains_key(&t.sender);
        self.insert(
            t.sender,
            SecureDevice {
                key: t.key.clone(),
                slf: t.slf,
                next_rlc: t.rlc,
                ptm: t.ptm,
                configured: false,
            },
        );
        if rekeyed {
            Learned::Rekeyed
        } else {
            Learned::New
        }
    }

    /// Bounds the devices taught in by radio (the daemon uses `[learn] max_devices`).
    pub fn set_max_learned(&mut self, max: usize) {
        self.max_learned = max;
    }

    /// Drops a device's key (e.g. `devices forget`); a configured one stays.
    pub fn forget(&mut self, id: u32) {
        if self.devices.get(&id).is_some_and(|(d, _)| !d.configured) {
            self.devices.remove(&id);
        }
    }

    /// The device with this ID.
    pub fn get(&self, id: u32) -> Option<&SecureDevice> {
        self.devices.get(&id).map(|(d, _)| d)
    }

    /// Devices with a key.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when no device has a key.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Telegrams accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Telegrams rejected so far, by reason code (`secure_bad_cmac`, …).
    pub fn rejected(&self) -> &BTreeMap<&'static str, u64> {
        &self.rejected
    }

    /// Verifies and decrypts a secure telegram (RORG 0x30, 0x31, 0x32, or a reassembled 0x33
    /// message). `eep_rorg` is the RORG of the device's EEP, when known: 0x30 data carries no
    /// RORG of its own. Counts the outcome.
    pub fn unwrap(&mut self, t: &Telegram, eep_rorg: Option<u8>) -> Result<Unwrapped, SecureError> {
        let r = self.unwrap_inner(t, eep_rorg);
        match &r {
            Ok(_) => self.accepted += 1,
            Err(e) => *self.rejected.entry(e.code()).or_default() += 1,
        }
        r
    }

    fn unwrap_inner(
        &mut self,
        t: &Telegram,
        eep_rorg: Option<u8>,
    ) -> Result<Unwrapped, SecureError> {
        match t.rorg {
            SEC | SEC_ENCAPS | SEC_CDM => {}
            SECD => return Err(SecureError::Unverified),
            _ => return Err(SecureError::Unsupported("not a secure telegram")),
        }
        let (dev, signer) = self
            .devices
            .get_mut(&t.sender)
            .ok_or(SecureError::UnknownKey)?;
        let slf = dev.slf;
        if let Some(why) = slf.unsupported() {
            return Err(SecureError::Unsupported(why));
        }
        let mac_len = slf.mac_len().unwrap_or(0);
        let rlc_len = slf.rlc_len();
        let tx_len = if slf.rlc_transmitted() { rlc_len } else { 0 };
        let n = t.payload.len();
        if n < 1 + tx_len + mac_len {
            return Err(SecureError::TooShort { len: n });
        }
        let data_len = n - tx_len - mac_len;
        let (data, rest) = t.payload.split_at(data_len);
        let (rlc_field, tag) = rest.split_at(tx_len);
        if slf.encryption() == Encryption::Vaes && data_len > VAES_MAX {
            return Err(SecureError::Unsupported("more than 16 bytes of VAES data"));
        }
        let mask = rlc_mask(rlc_len);
        let rlc = if rlc_len == 0 {
            if !signer.verify(t.rorg, data, 0, 0, tag) {
                return Err(SecureError::BadCmac);
            }
            None
        } else if tx_len > 0 {
            let rlc = rlc_field.iter().fold(0u32, |a, b| a << 8 | u32::from(*b));
            if !signer.verify(t.rorg, data, rlc, rlc_len, tag) {
                return Err(SecureError::BadCmac);
            }
            if let Some(next) = dev.next_rlc {
                let ahead = rlc.wrapping_sub(next) & mask;
                if ahead >= RLC_WINDOW {
                    let behind = next.wrapping_sub(rlc) & mask;
                    return Err(if behind <= mask / 2 {
                        SecureError::Replay { rlc, next }
                    } else {
                        SecureError::OutOfWindow { rlc, next }
                    });
                }
            }
            Some(rlc)
        } else {
            let next = dev.next_rlc.ok_or(SecureError::Unsupported(
                "an implicit rolling code with no starting value (configure `rlc`)",
            ))?;
            let found = (0..RLC_WINDOW)
                .map(|i| next.wrapping_add(i) & mask)
                .find(|&r| signer.verify(t.rorg, data, r, rlc_len, tag));
            match found {
                Some(r) => Some(r),
                None => {
                    let past = (1..=RLC_WINDOW)
                        .map(|i| next.wrapping_sub(i) & mask)
                        .find(|&r| signer.verify(t.rorg, data, r, rlc_len, tag));
                    return Err(match past {
                        Some(rlc) => SecureError::Replay { rlc, next },
                        None => SecureError::BadCmac,
                    });
                }
            }
        };
        if let Some(r) = rlc {
            dev.next_rlc = Some(r.wrapping_add(1) & mask);
        }
        let mut plain = data.to_vec();
        if slf.encryption() == Encryption::Vaes {
            vaes(&dev.key, rlc.unwrap_or(0), rlc_len, &mut plain);
        }
        let mut inner = t.clone();
        match t.rorg {
            SEC if dev.ptm || (eep_rorg == Some(rorg::RPS) && plain.len() == 1) => {
                let code = plain[0] & 0x0F;
                let (data, status) = ptm_to_rps(code).ok_or(SecureError::PtmReserved(code))?;
                inner.rorg = rorg::RPS;
                inner.payload = vec![data];
                inner.status = (t.status & 0x0F) | status;
            }
            SEC => {
                inner.rorg = eep_rorg.unwrap_or(SECD);
                inner.payload = plain;
            }
            _ => {
                let Some((&r, rest)) = plain.split_first() else {
                    return Err(SecureError::TooShort { len: n });
                };
                inner.rorg = r;
                inner.payload = rest.to_vec();
            }
        }
        Ok(Unwrapped {
            telegram: inner,
            rlc,
            next_rlc: dev.next_rlc,
        })
    }
}

/// A PTM 2xx secure rocker's 4-bit code as the F6-02-01 data byte and status bits (T21, NU) a
/// PTM sends in plain mode; None for the reserved codes 0–4. Codes per the PTM 215 user manual,
/// as the `enocean` Python library maps them: 5 A1+B0, 6 three or four buttons, 7 A0+B0,
/// 8 energy bow only, 9 A1+B1, 10 A0+B1, 11 B1, 12 B0, 13 A1, 14 A0 (all pressed), 15 released.
pub fn ptm_to_rps(code: u8) -> Option<(u8, u8)> {
    let n = STATUS_T21 | STATUS_NU;
    let u = STATUS_T21;
    Some(match code {
        5 => (0x17, n),
        6 => (0x70, u),
        7 => (0x37, n),
        8 => (0x10, u),
        9 => (0x15, n),
        10 => (0x35, n),
        11 => (0x50, n),
        12 => (0x70, n),
        13 => (0x10, n),
        14 => (0x30, n),
        15 => (0x00, u),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::crypto::rlc_bytes;

    fn telegram(rorg: u8, payload: &[u8], sender: u32) -> Telegram {
        let mut data = vec![rorg];
        data.extend_from_slice(payload);
        data.extend_from_slice(&sender.to_be_bytes());
        data.push(0);
        Telegram::from_parts(&data, &[1, 0xFF, 0xFF, 0xFF, 0xFF, 0x37, 0]).unwrap()
    }

    fn ptm_ring() -> Keyring {
        let mut ring = Keyring::default();
        ring.insert(
            0x019E_B63B,
            SecureDevice {
                key: DeviceKey::from_bytes(*b"EnOcean GmbH.13\0"),
                slf: Slf(0x4B),
                next_rlc: Some(0xC0FF),
                ptm: true,
                configured: false,
            },
        );
        ring
    }

    /// Encrypts and signs like a device: data, then the RLC if transmitted, then the MAC.
    fn seal(key: &DeviceKey, slf: Slf, rorg: u8, plain: &[u8], rlc: u32) -> Vec<u8> {
        let mut data = plain.to_vec();
        if slf.encryption() == Encryption::Vaes {
            vaes(key, rlc, slf.rlc_len(), &mut data);
        }
        let mac = Signer::new(key).mac(rorg, &data, rlc, slf.rlc_len());
        if slf.rlc_transmitted() {
            let (r, n) = rlc_bytes(rlc, slf.rlc_len());
            data.extend_from_slice(&r[..n]);
        }
        data.extend_from_slice(&mac[..slf.mac_len().unwrap()]);
        data
    }

    // The `enocean` Python library's secure example: PTM 215 019EB63B, key "EnOcean GmbH.13\0",
    // teach-in RLC C0FF; A0 pressed `30 D0 B5 18 FB`, released `30 7B AE C8 28`.
    #[test]
    fn ptm215_example_telegrams_decrypt_to_rocker_a0() {
        let mut ring = ptm_ring();
        let pressed = ring
            .unwrap(
                &telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFB], 0x019E_B63B),
                None,
            )
            .unwrap();
        assert_eq!(pressed.rlc, Some(0xC0FF));
        assert_eq!(pressed.telegram.rorg, rorg::RPS);
        assert_eq!(pressed.telegram.payload, [0x30]);
        assert_eq!(pressed.telegram.status & 0x30, 0x30);
        let released = ring
            .unwrap(
                &telegram(0x30, &[0x7B, 0xAE, 0xC8, 0x28], 0x019E_B63B),
                None,
            )
            .unwrap();
        assert_eq!(released.rlc, Some(0xC100));
        assert_eq!(released.next_rlc, Some(0xC101));
        assert_eq!(released.telegram.payload, [0x00]);
        assert_eq!(released.telegram.status & 0x30, 0x20);
        // The same telegram again: a replay.
        let again = ring.unwrap(
            &telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFB], 0x019E_B63B),
            None,
        );
        assert_eq!(
            again,
            Err(SecureError::Replay {
                rlc: 0xC0FF,
                next: 0xC101
            })
        );
        assert_eq!(ring.accepted(), 2);
        assert_eq!(ring.rejected()["secure_replay"], 1);
    }

    #[test]
    fn unknown_senders_bad_macs_and_short_payloads_are_named() {
        let mut ring = ptm_ring();
        assert_eq!(
            ring.unwrap(
                &telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFB], 0x0100_0001),
                None
            ),
            Err(SecureError::UnknownKey)
        );
        assert_eq!(
            ring.unwrap(
                &telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFA], 0x019E_B63B),
                None
            ),
            Err(SecureError::BadCmac)
        );
        assert_eq!(
            ring.unwrap(&telegram(0x30, &[0xB5, 0x18, 0xFB], 0x019E_B63B), None),
            Err(SecureError::TooShort { len: 3 })
        );
        assert_eq!(
            ring.unwrap(&telegram(0x32, &[0x0E], 0x019E_B63B), None),
            Err(SecureError::Unverified)
        );
        // The rolling code did not move.
        assert_eq!(ring.get(0x019E_B63B).unwrap().next_rlc, Some(0xC0FF));
    }

    #[test]
    fn implicit_rlc_window_skips_lost_telegrams_but_not_more_than_the_window() {
        let key = DeviceKey::from_bytes([0x11; 16]);
        let slf = Slf(0x8B); // 24-bit implicit RLC, 3-byte MAC, VAES
        let mut ring = Keyring::default();
        let dev = SecureDevice {
            key: key.clone(),
            slf,
            next_rlc: Some(0xFF_FFF0),
            ptm: false,
            configured: true,
        };
        ring.insert(7, dev);
        // 0xFFFFF0 + 127 wraps past 0xFFFFFF: still in the window.
        let rlc = (0xFF_FFF0 + RLC_WINDOW - 1) & 0xFF_FFFF;
        let p = seal(&key, slf, 0x31, &[0xA5, 1, 2, 3, 8], rlc);
        let u = ring.unwrap(&telegram(0x31, &p, 7), None).unwrap();
        assert_eq!(u.rlc, Some(rlc));
        assert_eq!(
            (u.telegram.rorg, u.telegram.payload),
            (0xA5, vec![1, 2, 3, 8])
        );
        // One past the window: no RLC verifies.
        let far = (rlc + 1 + RLC_WINDOW) & 0xFF_FFFF;
        let p = seal(&key, slf, 0x31, &[0xA5, 1, 2, 3, 8], far);
        assert_eq!(
            ring.unwrap(&telegram(0x31, &p, 7), None),
            Err(SecureError::BadCmac)
        );
    }

    #[test]
    fn explicit_rlc_replays_and_far_codes_are_rejected() {
        let key = DeviceKey::from_bytes([0x22; 16]);
        let slf = Slf(0xF3); // 32-bit transmitted RLC, 4-byte MAC, VAES
        let mut ring = Keyring::default();
        ring.insert(
            9,
            SecureDevice {
                key: key.clone(),
                slf,
                next_rlc: None,
                ptm: false,
                configured: true,
            },
        );
        let send = |ring: &mut Keyring, rlc: u32| {
            let p = seal(&key, slf, 0x30, &[0x08, 0x28, 0x0D, 0x88], rlc);
            ring.unwrap(&telegram(0x30, &p, 9), Some(0xA5))
        };
        let first = send(&mut ring, 1000).unwrap();
        assert_eq!(first.telegram.rorg, 0xA5);
        assert_eq!(first.telegram.payload, [0x08, 0x28, 0x0D, 0x88]);
        assert_eq!(
            send(&mut ring, 1000),
            Err(SecureError::Replay {
                rlc: 1000,
                next: 1001
            })
        );
        assert_eq!(
            send(&mut ring, 999),
            Err(SecureError::Replay {
                rlc: 999,
                next: 1001
            })
        );
        assert_eq!(
            send(&mut ring, 1001 + RLC_WINDOW),
            Err(SecureError::OutOfWindow {
                rlc: 1001 + RLC_WINDOW,
                next: 1001
            })
        );
        assert!(send(&mut ring, 1000 + RLC_WINDOW).is_ok());
        // Without the EEP's RORG the data stays as decrypted, under RORG 0x32.
        let p = seal(&key, slf, 0x30, &[1, 2], 1200);
        assert_eq!(
            ring.unwrap(&telegram(0x30, &p, 9), None)
                .unwrap()
                .telegram
                .rorg,
            SECD
        );
    }

    #[test]
    fn mac_only_telegrams_verify_without_decryption() {
        let key = DeviceKey::from_bytes([0x33; 16]);
        let slf = Slf(0x68); // 16-bit transmitted RLC, 3-byte MAC, no encryption
        let mut ring = Keyring::default();
        ring.insert(
            5,
            SecureDevice {
                key: key.clone(),
                slf,
                next_rlc: Some(10),
                ptm: false,
                configured: true,
            },
        );
        let p = seal(&key, slf, 0x31, &[0xD5, 0x09], 12);
        let u = ring.unwrap(&telegram(0x31, &p, 5), None).unwrap();
        assert_eq!((u.telegram.rorg, u.telegram.payload), (0xD5, vec![0x09]));
    }

    #[test]
    fn a_replayed_teach_in_never_moves_the_rolling_code_back() {
        let mut ring = ptm_ring();
        let taught = Taught {
            sender: 0x019E_B63B,
            slf: Slf(0x4B),
            rlc: Some(0xC0FF),
            key: DeviceKey::from_bytes(*b"EnOcean GmbH.13\0"),
            ptm: true,
            info: 0,
        };
        ring.unwrap(
            &telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFB], 0x019E_B63B),
            None,
        )
        .unwrap();
        // The captured teach-in again: the pressed telegram stays a replay.
        assert_eq!(ring.learn(&taught), Learned::Unchanged);
        assert_eq!(ring.get(0x019E_B63B).unwrap().next_rlc, Some(0xC100));
        assert_eq!(
            ring.unwrap(
                &telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFB], 0x019E_B63B),
                None
            )
            .unwrap_err()
            .code(),
            "secure_replay"
        );
        // The same key with a newer code (the device taught in again later): taken.
        let later = Taught {
            rlc: Some(0xD000),
            ..taught.clone()
        };
        assert_eq!(ring.learn(&later), Learned::RollingCode);
        assert_eq!(ring.get(0x019E_B63B).unwrap().next_rlc, Some(0xD000));
        // Another key: the device was paired again.
        let other = Taught {
            key: DeviceKey::from_bytes([1; 16]),
            ..taught
        };
        assert_eq!(ring.learn(&other), Learned::Rekeyed);
    }

    #[test]
    fn configured_keys_stay_and_learned_devices_are_bounded() {
        let mut ring = Keyring::default();
        ring.set_max_learned(2);
        let taught = |sender| Taught {
            sender,
            slf: Slf(0xF3),
            rlc: Some(1),
            key: DeviceKey::from_bytes([2; 16]),
            ptm: false,
            info: 0,
        };
        ring.insert(
            9,
            SecureDevice {
                key: DeviceKey::from_bytes([3; 16]),
                slf: Slf(0xF3),
                next_rlc: None,
                ptm: false,
                configured: true,
            },
        );
        assert_eq!(ring.learn(&taught(9)), Learned::Configured);
        assert_eq!(ring.get(9).unwrap().key, DeviceKey::from_bytes([3; 16]));
        assert_eq!(ring.learn(&taught(1)), Learned::New);
        assert_eq!(ring.learn(&taught(2)), Learned::New);
        assert_eq!(ring.learn(&taught(3)), Learned::Full);
        assert_eq!(ring.len(), 3);
        ring.forget(9);
        ring.forget(1);
        assert!(ring.get(9).is_some() && ring.get(1).is_none());
        assert_eq!(ring.learn(&taught(3)), Learned::New);
    }

    #[test]
    fn ptm_codes_map_to_f6_02_01() {
        assert_eq!(ptm_to_rps(14), Some((0x30, 0x30)));
        assert_eq!(ptm_to_rps(15), Some((0x00, 0x20)));
        assert_eq!(ptm_to_rps(4), None);
        let reserved = (0..16).filter(|c| ptm_to_rps(*c).is_none()).count();
        assert_eq!(reserved, 5);
    }
}
