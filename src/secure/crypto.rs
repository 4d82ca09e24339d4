//! The two primitives of the EnOcean security specification, on RustCrypto's `aes` and `cmac`:
//! VAES (the data XORed with AES-128 of the rolling code mixed into a public constant) and the
//! AES-128 CMAC over `RORG | data | RLC`, truncated to the MAC length.
//!
//! Facts checked against the published PTM 215 example (see `super` tests): the VAES input is
//! the RLC big-endian, left-aligned and zero-padded to 16 bytes, XORed with
//! `3410DE8F1ABA3EFF9F5A117172EACABD`; the CMAC message is the RORG byte, the data as sent
//! (encrypted) and the RLC bytes, whether or not the RLC is transmitted.

use aes::Aes128;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use cmac::{Cmac, Mac};

use super::DeviceKey;

/// The public constant VAES mixes the rolling code into.
pub const VAES_INIT: [u8; 16] = [
    0x34, 0x10, 0xDE, 0x8F, 0x1A, 0xBA, 0x3E, 0xFF, 0x9F, 0x5A, 0x11, 0x71, 0x72, 0xEA, 0xCA, 0xBD,
];

/// Largest data VAES handles here: one AES block. A radio telegram carries at most 14 payload
/// bytes, RLC and MAC included, so only a chained secure message could be longer.
pub const VAES_MAX: usize = 16;

/// The RLC as sent: big-endian, `len` bytes (0, 2, 3 or 4).
pub fn rlc_bytes(rlc: u32, len: usize) -> ([u8; 4], usize) {
    let all = rlc.to_be_bytes();
    let mut out = [0; 4];
    out[..len].copy_from_slice(&all[4 - len..]);
    (out, len)
}

/// Encrypts or decrypts (the same operation) `data` in place with VAES for rolling code `rlc`
/// of `rlc_len` bytes. `data` must be at most [`VAES_MAX`] bytes (the caller checks).
pub fn vaes(key: &DeviceKey, rlc: u32, rlc_len: usize, data: &mut [u8]) {
    debug_assert!(data.len() <= VAES_MAX);
    let mut block = VAES_INIT;
    let (r, n) = rlc_bytes(rlc, rlc_len);
    for (b, x) in block.iter_mut().zip(&r[..n]) {
        *b ^= x;
    }
    let cipher = Aes128::new(&(*key.bytes()).into());
    let mut block = block.into();
    cipher.encrypt_block(&mut block);
    for (d, k) in data.iter_mut().zip(block.iter()) {
        *d ^= k;
    }
}

/// A CMAC keyed once per device; a clone of the keyed MAC per candidate RLC keeps a window
/// search cheap.
#[derive(Clone)]
pub struct Signer(Cmac<Aes128>);

impl Signer {
    /// The CMAC state for `key`.
    pub fn new(key: &DeviceKey) -> Self {
        Self(<Cmac<Aes128> as KeyInit>::new(&(*key.bytes()).into()))
    }

    /// The full 16-byte CMAC of `rorg | data | rlc` (`rlc_len` bytes of it).
    pub fn mac(&self, rorg: u8, data: &[u8], rlc: u32, rlc_len: usize) -> [u8; 16] {
        let mut m = self.0.clone();
        m.update(&[rorg]);
        m.update(data);
        let (r, n) = rlc_bytes(rlc, rlc_len);
        m.update(&r[..n]);
        m.finalize().into_bytes().into()
    }

    /// True when `tag` (3 or 4 bytes; 0 accepts anything) is the truncated CMAC, compared in
    /// constant time.
    pub fn verify(&self, rorg: u8, data: &[u8], rlc: u32, rlc_len: usize, tag: &[u8]) -> bool {
        let full = self.mac(rorg, data, rlc, rlc_len);
        let mut diff = 0u8;
        for (a, b) in full.iter().zip(tag) {
            diff |= a ^ b;
        }
        diff == 0 && tag.len() <= 16
    }
}

/// The key check value of `key`: the first 4 bytes of AES-128 of a zero block under it. It
/// tells whether a stored rolling code belongs to the key configured now, and says nothing
/// useful about the key.
pub fn check_value(key: &DeviceKey) -> [u8; 4] {
    let mut block = [0u8; 16].into();
    Aes128::new(&(*key.bytes()).into()).encrypt_block(&mut block);
    [block[0], block[1], block[2], block[3]]
}

/// Seals device keys for storage under the gateway's sealing key: AES-128 of the key (one
/// block) and a 4-byte CMAC tag over the device ID and that block, so a key is never stored in
/// the clear and a wrong sealing key or a moved row is detected.
pub struct Sealer {
    cipher: Aes128,
    signer: Signer,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// A sealer for the 16-byte sealing key.
    pub fn new(sealing_key: &DeviceKey) -> Self {
        Self {
            cipher: Aes128::new(&(*sealing_key.bytes()).into()),
            signer: Signer::new(sealing_key),
        }
    }

    /// The 20 bytes stored for device `id`'s key.
    pub fn seal(&self, id: u32, key: &DeviceKey) -> Vec<u8> {
        let mut block = (*key.bytes()).into();
        self.cipher.encrypt_block(&mut block);
        let mut out = block.to_vec();
        let tag = self
            .signer
            .mac(0, &[id.to_be_bytes().as_slice(), &out].concat(), 0, 0);
        out.extend_from_slice(&tag[..4]);
        out
    }

    /// The key sealed for device `id`; None when the bytes were not sealed for it under this
    /// sealing key.
    pub fn unseal(&self, id: u32, sealed: &[u8]) -> Option<DeviceKey> {
        if sealed.len() != 20 {
            return None;
        }
        let (block, tag) = sealed.split_at(16);
        if !self
            .signer
            .verify(0, &[id.to_be_bytes().as_slice(), block].concat(), 0, 0, tag)
        {
            return None;
        }
        let mut b: [u8; 16] = block.try_into().ok()?;
        let mut arr = b.into();
        self.cipher.decrypt_block(&mut arr);
        b.copy_from_slice(&arr);
        Some(DeviceKey::from_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4493, section 4: AES-CMAC of the empty message and of one 16-byte block.
    #[test]
    fn cmac_matches_rfc_4493() {
        let key = DeviceKey::from_hex("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let s = Signer::new(&key);
        let mut m = s.0.clone();
        m.update(&hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap());
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "070a16b46b4d4144f79bdd9dd04a287c"
        );
        let m = s.0.clone();
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "bb1d6929e95937287fa37d129b756746"
        );
    }

    #[test]
    fn sealed_keys_unseal_only_for_their_device_and_sealing_key() {
        let sealer = Sealer::new(&DeviceKey::from_bytes([9; 16]));
        let key = DeviceKey::from_bytes(*b"EnOcean GmbH.13\0");
        let sealed = sealer.seal(0x019E_B63B, &key);
        assert_eq!(sealed.len(), 20);
        assert!(
            !sealed
                .windows(5)
                .any(|w| key.bytes().windows(5).any(|k| k == w))
        );
        assert_eq!(sealer.unseal(0x019E_B63B, &sealed), Some(key));
        assert_eq!(sealer.unseal(0x019E_B63C, &sealed), None);
        let other = Sealer::new(&DeviceKey::from_bytes([8; 16]));
        assert_eq!(other.unseal(0x019E_B63B, &sealed), None);
        assert_eq!(sealer.unseal(0x019E_B63B, &sealed[..19]), None);
    }

    #[test]
    fn vaes_is_its_own_inverse_and_depends_on_the_rlc() {
        let key = DeviceKey::from_bytes([7; 16]);
        let plain = *b"0123456789abcdef";
        let mut d = plain;
        vaes(&key, 0x1234, 2, &mut d);
        assert_ne!(d, plain);
        let mut other = plain;
        vaes(&key, 0x1235, 2, &mut other);
        assert_ne!(d, other);
        vaes(&key, 0x1234, 2, &mut d);
        assert_eq!(d, plain);
    }
}
