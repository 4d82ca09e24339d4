//! Bit-field extraction from telegram payloads.
//!
//! EEP offsets count from the most significant bit of the first payload byte (offset 0 = DB_n.7 of
//! the first byte on air), which is the order the EnOcean Alliance tables use.

/// Reads `size` bits (1–64) starting at bit `offset`, offset 0 being the most significant bit of
/// `payload[0]`. Returns None when the field does not fit in the payload or the size is invalid.
#[inline]
pub fn extract(payload: &[u8], offset: usize, size: usize) -> Option<u64> {
    if size == 0 || size > 64 {
        return None;
    }
    let end = offset.checked_add(size)?;
    if end > payload.len().checked_mul(8)? {
        return None;
    }
    let first = offset / 8;
    let last = (end - 1) / 8;
    let bytes = payload.get(first..=last)?;
    let n = bytes.len();
    let skip = offset - first * 8;
    if n <= 8 {
        // Fast path: the field lies within 8 bytes; assemble them in a register (copying into a
        // stack buffer and loading it back stalls on store forwarding).
        let mut acc: u64 = 0;
        for &b in bytes {
            acc = (acc << 8) | u64::from(b);
        }
        let shift = n * 8 - skip - size;
        let mask = if size == 64 {
            u64::MAX
        } else {
            (1u64 << size) - 1
        };
        return Some((acc >> shift) & mask);
    }
    let mut acc: u128 = 0;
    for &b in bytes {
        acc = (acc << 8) | u128::from(b);
    }
    let shift = n * 8 - skip - size;
    let mask = if size == 64 {
        u128::from(u64::MAX)
    } else {
        (1u128 << size) - 1
    };
    u64::try_from((acc >> shift) & mask).ok()
}

/// Interprets the low `size` bits of `raw` as a two's complement number.
#[inline]
pub fn sign_extend(raw: u64, size: usize) -> i64 {
    if size == 0 || size >= 64 {
        return raw as i64;
    }
    let shift = 64 - size as u32;
    ((raw << shift) as i64) >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msb_first_offsets() {
        let p = [0b1010_0000, 0xFF, 0x01, 0x80];
        assert_eq!(extract(&p, 0, 1), Some(1));
        assert_eq!(extract(&p, 1, 1), Some(0));
        assert_eq!(extract(&p, 0, 3), Some(0b101));
        assert_eq!(extract(&p, 8, 8), Some(0xFF));
        assert_eq!(extract(&p, 4, 8), Some(0x0F));
        assert_eq!(extract(&p, 23, 2), Some(0b11));
        assert_eq!(extract(&p, 0, 32), Some(0xA0FF_0180));
        assert_eq!(extract(&p, 31, 1), Some(0));
        assert_eq!(extract(&p, 31, 2), None);
        assert_eq!(extract(&p, 0, 0), None);
        assert_eq!(extract(&p, usize::MAX, 8), None);
        let nine = [0xFFu8; 9];
        assert_eq!(extract(&nine, 3, 64), Some(u64::MAX));
    }

    #[test]
    fn sign_extension() {
        assert_eq!(sign_extend(0xFF, 8), -1);
        assert_eq!(sign_extend(0x7F, 8), 127);
        assert_eq!(sign_extend(0x200, 10), -512);
        assert_eq!(sign_extend(5, 64), 5);
    }
}
