//! Fuzz target: arbitrary secure telegrams (RORG 0x30…0x35) from a sender with a key, under an
//! SLF the input picks, through `Keyring::unwrap`, the teach-in assembler and the SEC_CDM part
//! conversion. First byte picks the SLF, second the RORG, third the known rolling code's low
//! byte; the rest is the payload. Nothing may panic.
#![no_main]

use std::time::Instant;

use enocean_agent::erp1::Telegram;
use enocean_agent::secure::{Assembler, DeviceKey, Keyring, SecureDevice, Slf, sec_cdm_as_chain_part};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [slf, rorg, rlc, payload @ ..] = data else {
        return;
    };
    let rorg = 0x30 + rorg % 6;
    let mut ring = Keyring::default();
    ring.insert(
        1,
        SecureDevice {
            key: DeviceKey::from_bytes([0x42; 16]),
            slf: Slf(*slf),
            next_rlc: Some(u32::from(*rlc) << 8),
            ptm: slf & 1 == 0,
            configured: true,
        },
    );
    let mut bytes = vec![rorg];
    bytes.extend_from_slice(payload);
    bytes.extend_from_slice(&[0, 0, 0, 1, 0]);
    let Ok(t) = Telegram::from_parts(&bytes, &[]) else {
        return;
    };
    let _ = ring.unwrap(&t, Some(0xA5));
    let _ = ring.unwrap(&t, None);
    let _ = sec_cdm_as_chain_part(&t);
    let _ = Assembler::default().push(&t, Instant::now());
});
