//! CRC8 as ESP3 uses it for both header and data checks.
//!
//! Besides [`crc8`] over a slice, the decoder keeps the running CRC register after every byte it
//! holds, so that the CRC8 of any range of held bytes costs a few table lookups instead of a pass
//! over the range ([`between`]). That keeps the rescan after a rejected frame start linear in the
//! bytes received, however many false frame starts the stream contains.

/// Lookup table for polynomial 0x07 (x⁸ + x² + x + 1), MSB first.
const TABLE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u8;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 0x80 != 0 {
                (c << 1) ^ 0x07
            } else {
                c << 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// How many powers of two of zero bytes [`ZEROS`] covers: 2¹⁷ > the longest ESP3 body.
const ZERO_POWERS: usize = 17;

/// `ZEROS[k][r]`: the register `r` after 2^k zero bytes. Without an initial value or final XOR
/// the CRC is linear, so the CRC of bytes `i..j` of a stream is
/// `R(j) ^ R(i) advanced over j - i zero bytes`, where `R(n)` is the register after `n` bytes.
const ZEROS: [[u8; 256]; ZERO_POWERS] = {
    let mut zeros = [[0u8; 256]; ZERO_POWERS];
    let mut r = 0;
    while r < 256 {
        zeros[0][r] = TABLE[r];
        r += 1;
    }
    let mut k = 1;
    while k < ZERO_POWERS {
        let mut r = 0;
        while r < 256 {
            zeros[k][r] = zeros[k - 1][zeros[k - 1][r] as usize];
            r += 1;
        }
        k += 1;
    }
    zeros
};

/// `SLICES[k][x]`: `x` run through the table k + 1 times. By linearity the register after four
/// bytes is `SLICES[3][r ^ b0] ^ SLICES[2][b1] ^ SLICES[1][b2] ^ SLICES[0][b3]`: four independent
/// lookups instead of a chain of four, so a data CRC costs less than a byte-at-a-time pass.
const SLICES: [[u8; 256]; 4] = {
    let mut slices = [[0u8; 256]; 4];
    let mut x = 0;
    while x < 256 {
        slices[0][x] = TABLE[x];
        x += 1;
    }
    let mut k = 1;
    while k < 4 {
        let mut x = 0;
        while x < 256 {
            slices[k][x] = TABLE[slices[k - 1][x] as usize];
            x += 1;
        }
        k += 1;
    }
    slices
};

/// The ESP3 CRC8 of `bytes`: polynomial 0x07, initial value 0, no reflection, no final XOR.
pub fn crc8(bytes: &[u8]) -> u8 {
    let mut chunks = bytes.chunks_exact(4);
    let mut r = 0u8;
    for c in &mut chunks {
        r = SLICES[3][(r ^ c[0]) as usize]
            ^ SLICES[2][c[1] as usize]
            ^ SLICES[1][c[2] as usize]
            ^ SLICES[0][c[3] as usize];
    }
    chunks.remainder().iter().fold(r, |c, &b| update(c, b))
}

/// The register after feeding `byte` to register `reg`.
#[inline]
pub(super) fn update(reg: u8, byte: u8) -> u8 {
    TABLE[(reg ^ byte) as usize]
}

/// The CRC8 of the `len` bytes that took the running register from `before` to `after`.
/// `len` must be below 2¹⁷ (any ESP3 body is).
pub(super) fn between(before: u8, after: u8, len: usize) -> u8 {
    debug_assert!(len < 1 << ZERO_POWERS);
    let mut r = before;
    let mut n = len;
    let mut k = 0;
    while n != 0 {
        if n & 1 == 1 {
            r = ZEROS[k][r as usize];
        }
        n >>= 1;
        k += 1;
    }
    after ^ r
}

#[cfg(test)]
mod tests {
    use super::{between, crc8, update};

    #[test]
    fn sliced_and_bytewise_agree_for_every_length() {
        let bytes: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
        for start in 0..4 {
            for end in start..bytes.len() {
                let slow = bytes[start..end].iter().fold(0, |c, &b| update(c, b));
                assert_eq!(crc8(&bytes[start..end]), slow, "{start}..{end}");
            }
        }
    }

    #[test]
    fn check_values() {
        assert_eq!(crc8(b"123456789"), 0xF4);
        assert_eq!(crc8(&[0x00, 0x0A, 0x07, 0x01]), 0xEB);
        assert_eq!(crc8(&[]), 0);
    }

    #[test]
    fn crc_of_a_range_from_running_registers() {
        // A deterministic pseudo-random stream, long enough for every power of two of ZEROS.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let bytes: Vec<u8> = (0..70_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let mut regs = vec![0u8];
        for &b in &bytes {
            regs.push(update(*regs.last().unwrap(), b));
        }
        for (i, j) in [
            (0, 0),
            (0, 1),
            (3, 9),
            (17, 1000),
            (5, 65_542),
            (1, 69_999),
            (4_000, 4_004),
        ] {
            assert_eq!(
                between(regs[i], regs[j], j - i),
                crc8(&bytes[i..j]),
                "{i}..{j}"
            );
        }
    }
}
