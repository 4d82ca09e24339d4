//! Secure telegrams (EnOcean security specification) through the library: the published PTM 215
//! example, telegrams encrypted here with the RustCrypto `aes` and `cmac` crates for other SLFs
//! (independently of `enocean_agent::secure::crypto`), corruption properties, the sealed table
//! across a restart, and `key_file` in the configuration.
//!
//! Published example (facts, source named): the `enocean` Python library's secure example, a
//! PTM 215 with ID 019EB63B and key "EnOcean GmbH.13\0". Teach-in part 1 as the ESP3 frame
//! `55000F07012B35244BC0FF456E4F6365019EB63B0000FFFFFFFF370071`, part 2 data
//! `35 40 61 6E 20 47 6D 62 48 2E 31 33 00`; then rocker A0 pressed `30 D0 B5 18 FB` and
//! released `30 7B AE C8 28`. Checked by hand with Python's `cryptography`: the pressed
//! telegram verifies with RLC C0FF (the teach-in's) and decrypts to code 14 (A0 pressed), the
//! released one with RLC C100 to code 15 (released).

use std::path::Path;
use std::time::Instant;

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use cmac::{Cmac, Mac};
use enocean_agent::config::Config;
use enocean_agent::eep::{Library, decode};
use enocean_agent::erp1::Telegram;
use enocean_agent::esp3::{Decoder, Item};
use enocean_agent::secure::keyring::RLC_WINDOW;
use enocean_agent::secure::store::{SecureStore, load, sealing_key_path};
use enocean_agent::secure::teach_in::Progress;
use enocean_agent::secure::{Assembler, DeviceKey, Keyring, SecureDevice, SecureError, Slf};
use proptest::prelude::*;

const PTM: u32 = 0x019E_B63B;
const PTM_KEY: &[u8; 16] = b"EnOcean GmbH.13\0";

fn telegram(rorg: u8, payload: &[u8], sender: u32) -> Telegram {
    let mut data = vec![rorg];
    data.extend_from_slice(payload);
    data.extend_from_slice(&sender.to_be_bytes());
    data.push(0);
    Telegram::from_parts(&data, &[1, 0xFF, 0xFF, 0xFF, 0xFF, 0x37, 0]).unwrap()
}

fn frame_telegram(hex: &str) -> Telegram {
    let bytes = hex::decode(hex).unwrap();
    let items = Decoder::new().feed_collect(&bytes, Instant::now());
    let frame = items
        .into_iter()
        .find_map(|i| match i {
            Item::Frame { frame, .. } => Some(frame),
            _ => None,
        })
        .expect("the published frame decodes");
    Telegram::from_frame(&frame).unwrap()
}

/// The PTM 215 taught in from the published telegrams.
fn ptm_keyring() -> Keyring {
    let mut parts = Assembler::default();
    let first = frame_telegram("55000F07012B35244BC0FF456E4F6365019EB63B0000FFFFFFFF370071");
    assert_eq!(first.sender, PTM);
    assert_eq!(parts.push(&first, Instant::now()), Progress::Pending);
    let second = telegram(
        0x35,
        &[
            0x40, 0x61, 0x6E, 0x20, 0x47, 0x6D, 0x62, 0x48, 0x2E, 0x31, 0x33, 0x00,
        ],
        PTM,
    );
    let Progress::Complete(taught) = parts.push(&second, Instant::now()) else {
        panic!("the two parts complete the teach-in")
    };
    assert_eq!(taught.key.bytes(), PTM_KEY);
    assert_eq!(
        (taught.slf, taught.rlc, taught.ptm),
        (Slf(0x4B), Some(0xC0FF), true)
    );
    let mut ring = Keyring::default();
    assert_eq!(ring.learn(&taught), enocean_agent::secure::Learned::New);
    ring
}

#[test]
fn published_ptm215_telegrams_decode_as_rocker_a0_pressed_and_released() {
    let lib = Library::builtin().unwrap();
    let profile = lib.get_str("F6-02-01").unwrap();
    let mut ring = ptm_keyring();
    let pressed = ring
        .unwrap(&telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFB], PTM), None)
        .unwrap();
    let v = decode(profile, &pressed.telegram).unwrap().readings();
    assert_eq!(v["button"].value, "a0");
    assert_eq!(v["pressed"].value, true);
    let released = ring
        .unwrap(&telegram(0x30, &[0x7B, 0xAE, 0xC8, 0x28], PTM), None)
        .unwrap();
    let v = decode(profile, &released.telegram).unwrap().readings();
    assert_eq!(v["pressed"].value, false);
    assert_eq!((pressed.rlc, released.rlc), (Some(0xC0FF), Some(0xC100)));
    // Both again: replays.
    for p in [[0xD0, 0xB5, 0x18, 0xFB], [0x7B, 0xAE, 0xC8, 0x28]] {
        let e = ring.unwrap(&telegram(0x30, &p, PTM), None).unwrap_err();
        assert_eq!(e.code(), "secure_replay");
    }
}

// ---- An independent sender: VAES and CMAC written here on the RustCrypto crates. ----

const VAES_INIT: [u8; 16] = [
    0x34, 0x10, 0xDE, 0x8F, 0x1A, 0xBA, 0x3E, 0xFF, 0x9F, 0x5A, 0x11, 0x71, 0x72, 0xEA, 0xCA, 0xBD,
];

fn rlc_len(slf: u8) -> usize {
    [0, 2, 3, 4][usize::from(slf >> 6)]
}

/// The payload a device with `slf` sends for `plain` with rolling code `rlc`.
fn device_payload(key: &[u8; 16], slf: u8, rorg: u8, plain: &[u8], rlc: u32) -> Vec<u8> {
    let n = rlc_len(slf);
    let rlc_be = &rlc.to_be_bytes()[4 - n..];
    let mut data = plain.to_vec();
    if slf & 0x07 == 3 {
        let mut block = VAES_INIT;
        for (b, r) in block.iter_mut().zip(rlc_be) {
            *b ^= r;
        }
        let mut block = block.into();
        Aes128::new(&(*key).into()).encrypt_block(&mut block);
        for (d, k) in data.iter_mut().zip(block.iter()) {
            *d ^= k;
        }
    }
    let mut mac = <Cmac<Aes128> as KeyInit>::new(&(*key).into());
    mac.update(&[rorg]);
    mac.update(&data);
    mac.update(rlc_be);
    let tag = mac.finalize().into_bytes();
    if slf & 0x20 != 0 {
        data.extend_from_slice(rlc_be);
    }
    let mac_len = [0, 3, 4][usize::from((slf >> 3) & 3)];
    data.extend_from_slice(&tag[..mac_len]);
    data
}

/// SLFs a device may use: RLC none/16/24/32, implicit and transmitted, CMAC 3 or 4 bytes,
/// VAES or authentication only.
const SLFS: [u8; 9] = [0x4B, 0x6B, 0x8B, 0xAB, 0xD3, 0xF3, 0xF0, 0x0B, 0x70];

fn ring_for(key: &[u8; 16], slf: u8, sender: u32, next: u32) -> Keyring {
    let mut ring = Keyring::default();
    ring.insert(
        sender,
        SecureDevice {
            key: DeviceKey::from_bytes(*key),
            slf: Slf(slf),
            next_rlc: (rlc_len(slf) > 0).then_some(next),
            ptm: false,
            configured: true,
        },
    );
    ring
}

#[test]
fn every_slf_decrypts_an_encapsulated_reading_and_a_plain_sec_telegram() {
    let lib = Library::builtin().unwrap();
    let profile = lib.get_str("A5-02-05").unwrap();
    let key = [0x5Au8; 16];
    for slf in SLFS {
        let sender = 0x0510_0000 | u32::from(slf);
        let mut ring = ring_for(&key, slf, sender, 0x0100);
        let reading = [0x00, 0x00, 0x80, 0x08];
        let expected = decode(profile, &telegram(0xA5, &reading, sender))
            .unwrap()
            .readings();
        // 0x31: the inner RORG travels encrypted with the data; two lost telegrams before it.
        let encaps = [&[0xA5][..], &reading].concat();
        let p = device_payload(&key, slf, 0x31, &encaps, 0x0102);
        let u = ring
            .unwrap(&telegram(0x31, &p, sender), None)
            .unwrap_or_else(|e| panic!("SLF {slf:02X}: {e}"));
        assert_eq!(u.telegram.rorg, 0xA5, "SLF {slf:02X}");
        assert_eq!(decode(profile, &u.telegram).unwrap().readings(), expected);
        // 0x30: the data alone, decoded as the device's EEP.
        let p = device_payload(&key, slf, 0x30, &reading, 0x0103);
        let u = ring
            .unwrap(&telegram(0x30, &p, sender), Some(0xA5))
            .unwrap();
        assert_eq!(u.telegram.payload, reading, "SLF {slf:02X}");
        if rlc_len(slf) > 0 {
            assert_eq!(u.next_rlc, Some(0x0104));
            let e = ring
                .unwrap(&telegram(0x30, &p, sender), Some(0xA5))
                .unwrap_err();
            assert_eq!(e.code(), "secure_replay", "SLF {slf:02X}");
        }
        // Another key: the CMAC does not verify.
        let p = device_payload(&[0x5B; 16], slf, 0x30, &reading, 0x0104);
        let e = ring
            .unwrap(&telegram(0x30, &p, sender), Some(0xA5))
            .unwrap_err();
        assert_eq!(e, SecureError::BadCmac, "SLF {slf:02X}");
    }
}

#[test]
fn a_rolling_code_beyond_the_window_is_rejected_and_named() {
    let key = [0x21u8; 16];
    // Transmitted 24-bit RLC: named out of window.
    let mut ring = ring_for(&key, 0xAB, 1, 500);
    let p = device_payload(&key, 0xAB, 0x31, &[0xD5, 0x09], 500 + RLC_WINDOW);
    let e = ring.unwrap(&telegram(0x31, &p, 1), None).unwrap_err();
    assert_eq!(e.code(), "secure_rlc_out_of_window");
    // Implicit: nothing in the window verifies.
    let mut ring = ring_for(&key, 0x8B, 2, 500);
    let p = device_payload(&key, 0x8B, 0x31, &[0xD5, 0x09], 500 + RLC_WINDOW);
    let e = ring.unwrap(&telegram(0x31, &p, 2), None).unwrap_err();
    assert_eq!(e.code(), "secure_bad_cmac");
    let p = device_payload(&key, 0x8B, 0x31, &[0xD5, 0x09], 500 + RLC_WINDOW - 1);
    assert!(ring.unwrap(&telegram(0x31, &p, 2), None).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Any change to the authenticated part of a valid secure telegram (RORG, data, RLC, MAC:
    /// a flipped bit, a byte cut off or added) is rejected, never panics and leaves the rolling
    /// code where it was; the untouched telegram is then still accepted.
    #[test]
    fn corrupted_secure_telegrams_are_rejected(
        slf_i in 0..SLFS.len(),
        plain in proptest::collection::vec(any::<u8>(), 1..9),
        rlc in 0u32..0xFFFF,
        edit in 0u8..3,
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        extra in any::<u8>(),
        encaps in any::<bool>(),
    ) {
        let slf = SLFS[slf_i];
        let key = [0x77u8; 16];
        let mut ring = ring_for(&key, slf, 42, rlc);
        let rorg = if encaps { 0x31 } else { 0x30 };
        let good = device_payload(&key, slf, rorg, &plain, rlc);
        let mut whole = vec![rorg];
        whole.extend_from_slice(&good);
        match edit {
            0 => {
                let i = at.index(whole.len());
                whole[i] ^= 1 << bit;
            }
            1 => { whole.pop(); }
            _ => whole.push(extra),
        }
        if whole.is_empty() {
            return Ok(());
        }
        let bad = telegram(whole[0], &whole[1..], 42);
        // A flipped RORG may name another secure RORG or none; the result is an error either way.
        let r = ring.unwrap(&bad, Some(0xD2));
        prop_assert!(r.is_err(), "SLF {:02X} edit {} accepted: {:?}", slf, edit, r);
        let before = ring.get(42).unwrap().next_rlc;
        prop_assert_eq!(before, (rlc_len(slf) > 0).then_some(rlc));
        prop_assert!(ring.unwrap(&telegram(rorg, &good, 42), Some(0xD2)).is_ok());
    }

    /// Arbitrary payloads under every secure RORG from a known sender: an error or a telegram,
    /// never a panic.
    #[test]
    fn arbitrary_secure_payloads_never_panic(
        rorg in 0x30u8..0x34,
        slf_i in 0..SLFS.len(),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut ring = ring_for(&[1; 16], SLFS[slf_i], 7, 0);
        let _ = ring.unwrap(&telegram(rorg, &payload, 7), None);
        let mut parts = Assembler::default();
        let _ = parts.push(&telegram(0x35, &payload, 7), Instant::now());
    }
}

#[test]
fn keys_and_rolling_codes_survive_a_restart_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    let (mut ring, warnings) = load(&db, &[]).unwrap();
    assert!(warnings.is_empty() && ring.is_empty());
    let mut store = SecureStore::open(&db).unwrap();
    // Taught in: the published PTM 215.
    let taught = ptm_keyring();
    let dev = taught.get(PTM).unwrap().clone();
    let taught = enocean_agent::secure::Taught {
        sender: PTM,
        slf: dev.slf,
        rlc: dev.next_rlc,
        key: dev.key.clone(),
        ptm: true,
        info: 0,
    };
    assert_eq!(ring.learn(&taught), enocean_agent::secure::Learned::New);
    store.save_taught(PTM, &dev).unwrap();
    let u = ring
        .unwrap(&telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFB], PTM), None)
        .unwrap();
    store.note_rlc(
        PTM,
        u.next_rlc.unwrap(),
        enocean_agent::secure::crypto::check_value(&dev.key),
    );
    assert_eq!(store.flush().unwrap(), 1);
    assert_eq!(store.stored_rlc(PTM).unwrap(), Some(0xC100));
    drop(store);
    // The key is nowhere in the database files in the clear.
    for f in ["outbox.db", "outbox.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(f)) {
            assert!(
                !bytes.windows(5).any(|w| PTM_KEY.windows(5).any(|k| k == w)),
                "key bytes in {f}"
            );
        }
    }
    // A restart: the pressed telegram is a replay, the released one is accepted.
    let (mut ring, warnings) = load(&db, &[]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let replay = ring
        .unwrap(&telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFB], PTM), None)
        .unwrap_err();
    assert_eq!(replay.code(), "secure_replay");
    assert!(
        ring.unwrap(&telegram(0x30, &[0x7B, 0xAE, 0xC8, 0x28], PTM), None)
            .is_ok()
    );
    // A replaced sealing key: the stored key is not usable, and the warning says so without it.
    std::fs::write(sealing_key_path(&db), "00112233445566778899AABBCCDDEEFF\n").unwrap();
    let (ring, warnings) = load(&db, &[]).unwrap();
    assert!(ring.is_empty());
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("019EB63B") && warnings[0].contains("teach-in"));
}

fn config(dir: &Path, device: &str) -> Result<Config, String> {
    let text = format!(
        "[storage]\npath = \"{}\"\n\n[[device]]\nid = \"019EB63B\"\n{device}",
        dir.join("o.db").display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, &text).unwrap();
    Config::load(&path).map_err(|e| e.to_string())
}

#[test]
fn key_files_in_the_configuration_are_read_checked_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ptm.key"),
        "456E4F6365616E20476D62482E313300\n",
    )
    .unwrap();
    let cfg = config(
        dir.path(),
        "eep = \"F6-02-01\"\nkey_file = \"ptm.key\"\nslf = 0x4B\nrlc = 0xC0FF\n",
    )
    .unwrap();
    let d = &cfg.devices[0];
    assert_eq!(d.key.as_ref().unwrap().bytes(), PTM_KEY);
    let shown = format!("{cfg:?}{}", toml::to_string(&cfg).unwrap());
    assert!(!shown.to_ascii_uppercase().contains("456E4F63"), "{shown}");
    // The configured key decodes the published telegrams (PTM found through the F6 EEP).
    let (mut ring, _) = load(&dir.path().join("o.db"), &cfg.devices).unwrap();
    let u = ring
        .unwrap(&telegram(0x30, &[0xD0, 0xB5, 0x18, 0xFB], PTM), Some(0xF6))
        .unwrap();
    assert_eq!(
        (u.telegram.rorg, u.telegram.payload.clone()),
        (0xF6, vec![0x30])
    );

    let missing = config(
        dir.path(),
        "key_file = \"absent.key\"\nslf = 0x4B\nrlc = 1\n",
    )
    .unwrap_err();
    assert!(
        missing.contains("absent.key") && missing.contains("device[0].key_file"),
        "{missing}"
    );
    std::fs::write(
        dir.path().join("bad.key"),
        "secret-but-not-hex-0123456789ab\n",
    )
    .unwrap();
    let bad = config(dir.path(), "key_file = \"bad.key\"\nslf = 0x4B\nrlc = 1\n").unwrap_err();
    assert!(bad.contains("bad.key") && !bad.contains("secret"), "{bad}");
    let no_slf = config(dir.path(), "key_file = \"ptm.key\"\n").unwrap_err();
    assert!(no_slf.contains("device[0].slf"), "{no_slf}");
    let no_rlc = config(dir.path(), "key_file = \"ptm.key\"\nslf = 0x4B\n").unwrap_err();
    assert!(no_rlc.contains("device[0].rlc"), "{no_rlc}");
    let too_big = config(
        dir.path(),
        "key_file = \"ptm.key\"\nslf = 0x4B\nrlc = 0x10000\n",
    )
    .unwrap_err();
    assert!(too_big.contains("16-bit"), "{too_big}");
    let cbc = config(dir.path(), "key_file = \"ptm.key\"\nslf = 0x6C\n").unwrap_err();
    assert!(cbc.contains("AES-CBC"), "{cbc}");
    let alone = config(dir.path(), "slf = 0x4B\n").unwrap_err();
    assert!(alone.contains("key_file"), "{alone}");
}

#[test]
fn a_secure_chained_message_is_reassembled_verified_and_decrypted() {
    use enocean_agent::chain::{Outcome, Reassembler};
    use enocean_agent::secure::sec_cdm_as_chain_part;
    let key = [0x3Cu8; 16];
    let slf = 0xF3;
    let sender = 0x0520_0001;
    let mut ring = ring_for(&key, slf, sender, 70);
    // A VLD message of 9 data bytes behind its RORG: 18 secure bytes with RLC and MAC.
    let inner = [0xD2, 0x04, 0x60, 0x80, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66];
    let secure = device_payload(&key, slf, 0x33, &inner, 71);
    assert_eq!(secure.len(), 18);
    let len = (secure.len() as u16).to_be_bytes();
    let first = [&[0x40, len[0], len[1]][..], &secure[..10]].concat();
    let second = [&[0x41][..], &secure[10..]].concat();
    let mut chains = Reassembler::default();
    let now = Instant::now();
    // The second part first (a repeater's order): pending until the first comes.
    let p2 = sec_cdm_as_chain_part(&telegram(0x33, &second, sender)).unwrap();
    assert!(matches!(chains.push(&p2, now), Outcome::Pending));
    let p1 = sec_cdm_as_chain_part(&telegram(0x33, &first, sender)).unwrap();
    let Outcome::Complete(whole) = chains.push(&p1, now) else {
        panic!("the two parts complete the message")
    };
    assert_eq!((whole.rorg, whole.payload.clone()), (0x33, secure.clone()));
    let u = ring.unwrap(&whole, None).unwrap();
    assert_eq!(u.telegram.rorg, 0xD2);
    assert_eq!(u.telegram.payload, inner[1..]);
    assert_eq!(u.rlc, Some(71));
    // Signed as a SEC_ENCAPS instead: the RORG is part of the CMAC, so it does not verify.
    let mut as_encaps = whole.clone();
    as_encaps.payload = device_payload(&key, slf, 0x31, &inner, 72);
    assert_eq!(ring.unwrap(&as_encaps, None), Err(SecureError::BadCmac));
    // A first part too short for LEN is not a part.
    assert!(sec_cdm_as_chain_part(&telegram(0x33, &[0x40, 0x00], sender)).is_none());
}

#[test]
fn a_changed_key_file_starts_from_its_own_rlc_and_forget_drops_a_taught_key() {
    use enocean_agent::config::DeviceConfig;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("outbox.db");
    let configured = |key: [u8; 16], rlc: u32| DeviceConfig {
        id: "05100001".into(),
        key: Some(DeviceKey::from_bytes(key)),
        slf: Some(0x8B),
        rlc: Some(rlc),
        ..DeviceConfig::default()
    };
    let mut store = SecureStore::open(&db).unwrap();
    // A rolling code stored for key A.
    store.note_rlc(
        0x0510_0001,
        900,
        enocean_agent::secure::crypto::check_value(&DeviceKey::from_bytes([0xA; 16])),
    );
    store.flush().unwrap();
    let (ring, _) = load(&db, &[configured([0xA; 16], 10)]).unwrap();
    assert_eq!(
        ring.get(0x0510_0001).unwrap().next_rlc,
        Some(900),
        "same key: stored code"
    );
    let (ring, _) = load(&db, &[configured([0xB; 16], 10)]).unwrap();
    assert_eq!(
        ring.get(0x0510_0001).unwrap().next_rlc,
        Some(10),
        "new key: its own code"
    );
    // A device taught in by radio, then `devices forget` (the CLI's path): its key is gone.
    let dev = SecureDevice {
        key: DeviceKey::from_bytes([0xC; 16]),
        slf: Slf(0xF3),
        next_rlc: Some(1),
        ptm: false,
        configured: false,
    };
    store.save_taught(0x0510_0002, &dev).unwrap();
    assert!(load(&db, &[]).unwrap().0.get(0x0510_0002).is_some());
    assert!(enocean_agent::device::forget(&db, 0x0510_0002).unwrap());
    assert!(load(&db, &[]).unwrap().0.get(0x0510_0002).is_none());
    // A configured device's rolling code row stays.
    assert_eq!(store.stored_rlc(0x0510_0001).unwrap(), Some(900));
}
