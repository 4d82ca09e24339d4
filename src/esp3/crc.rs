//! CRC8 as ESP3 uses it for both header and data checks.

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

/// The ESP3 CRC8 of `bytes`: polynomial 0x07, initial value 0, no reflection, no final XOR.
pub fn crc8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |c, &b| TABLE[(c ^ b) as usize])
}

#[cfg(test)]
mod tests {
    use super::crc8;

    #[test]
    fn check_values() {
        assert_eq!(crc8(b"123456789"), 0xF4);
        assert_eq!(crc8(&[0x00, 0x0A, 0x07, 0x01]), 0xEB);
        assert_eq!(crc8(&[]), 0);
    }
}
