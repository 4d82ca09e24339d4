//! How a reading's JSON is kept in `telemetry.body`: compressed with LZ4 against a fixed
//! dictionary of typical records, so a stored reading takes about a seventh of its JSON text
//! (about 110 bytes instead of 730 for the simulated building). Fewer bytes per row means fewer
//! pages per commit and per checkpoint, which is what an SD card sees per reading.
//!
//! The JSON text is what is compressed, so the bytes a sender renders from a stored row are the
//! bytes that were committed (the byte-identical re-send guarantee does not depend on the
//! decoder or its profiles). Rows written by older versions hold the JSON as TEXT and stay
//! readable; new rows are a BLOB whose first byte names the format:
//!
//! | first byte | format |
//! |---|---|
//! | `0x01` | LZ4 block, uncompressed size prepended (u32 little endian), dictionary v1 |
//! | `0x02` | as `0x01`, of the JSON without its leading `"id":"…",` member: the row's `id` column holds it |
//!
//! The dictionary (`body-dict-v1.txt`) must never change: rows compressed with it would no
//! longer read. A better dictionary is a new format byte beside this one.

use rusqlite::types::ValueRef;

/// The first byte of a v1 body: LZ4 with dictionary v1.
pub const FORMAT_LZ4_V1: u8 = 0x01;
/// The first byte of a body compressed as v1 without the record's id (a random 36 characters
/// the dictionary cannot shorten, kept once in the row's `id` column).
pub const FORMAT_LZ4_V1_NO_ID: u8 = 0x02;

/// Dictionary v1: sample records of the simulated building (one per line). Fixed forever.
pub const DICT_V1: &[u8] = include_bytes!("body-dict-v1.txt");

/// Largest JSON text a stored body may expand to (a record is a few KiB at most; this only
/// keeps a corrupt size prefix from asking for gigabytes).
const MAX_JSON: usize = 1 << 20;

/// Why a stored body could not be read back as JSON text.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The BLOB's format byte is none this version knows (written by a newer version?).
    #[error("stored body format {0:#04x} is unknown to this version")]
    UnknownFormat(u8),
    /// The BLOB is empty.
    #[error("stored body is empty")]
    Empty,
    /// The compressed bytes are damaged.
    #[error("stored body does not decompress: {0}")]
    Corrupt(String),
    /// The column holds neither TEXT nor BLOB.
    #[error("stored body is not text or blob")]
    WrongType,
    /// The text is not UTF-8.
    #[error("stored body is not UTF-8")]
    NotUtf8,
    /// A body stored without its id does not begin as a JSON object.
    #[error("stored body without its id is not a JSON object")]
    NotAnObject,
}

/// Compresses the JSON text of the record with id `id` for `telemetry.body`: without the id
/// ([`FORMAT_LZ4_V1_NO_ID`]) when the text begins with it, as it is ([`FORMAT_LZ4_V1`]) otherwise.
pub fn encode_record(json: &str, id: &str) -> Vec<u8> {
    let rest = json
        .strip_prefix("{\"id\":\"")
        .and_then(|r| r.strip_prefix(id))
        .and_then(|r| r.strip_prefix("\","));
    match rest {
        Some(rest) if !id.contains(['"', '\\']) => {
            let mut text = String::with_capacity(rest.len() + 1);
            text.push('{');
            text.push_str(rest);
            let mut out = encode(&text);
            out[0] = FORMAT_LZ4_V1_NO_ID;
            out
        }
        _ => encode(json),
    }
}

/// The JSON text of a stored body of the record with id `id` (the row's `id` column).
pub fn decode_record(value: ValueRef<'_>, id: &str) -> Result<String, BodyError> {
    match value {
        ValueRef::Blob(b) if b.first() == Some(&FORMAT_LZ4_V1_NO_ID) => {
            let text = decompress(&b[1..])?;
            let rest = text.strip_prefix('{').ok_or(BodyError::NotAnObject)?;
            Ok(["{\"id\":\"", id, "\",", rest].concat())
        }
        _ => decode(value),
    }
}

/// Compresses a record's JSON text for `telemetry.body`.
pub fn encode(json: &str) -> Vec<u8> {
    let compressed = lz4_flex::block::compress_prepend_size_with_dict(json.as_bytes(), DICT_V1);
    let mut out = Vec::with_capacity(compressed.len() + 1);
    out.push(FORMAT_LZ4_V1);
    out.extend_from_slice(&compressed);
    out
}

/// The JSON text of a stored body: a TEXT row as it is, a BLOB row decompressed.
pub fn decode(value: ValueRef<'_>) -> Result<String, BodyError> {
    match value {
        ValueRef::Text(t) => std::str::from_utf8(t)
            .map(str::to_owned)
            .map_err(|_| BodyError::NotUtf8),
        ValueRef::Blob(b) => decode_blob(b),
        _ => Err(BodyError::WrongType),
    }
}

/// The JSON text of a BLOB body.
pub fn decode_blob(b: &[u8]) -> Result<String, BodyError> {
    let (&format, rest) = b.split_first().ok_or(BodyError::Empty)?;
    if format != FORMAT_LZ4_V1 {
        return Err(BodyError::UnknownFormat(format));
    }
    decompress(rest)
}

/// LZ4 with dictionary v1, size prepended, to UTF-8 text.
fn decompress(rest: &[u8]) -> Result<String, BodyError> {
    let size = rest
        .get(..4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .ok_or_else(|| BodyError::Corrupt("no size".into()))?;
    if size > MAX_JSON {
        return Err(BodyError::Corrupt(format!("size {size} too large")));
    }
    let json = lz4_flex::block::decompress_size_prepended_with_dict(rest, DICT_V1)
        .map_err(|e| BodyError::Corrupt(e.to_string()))?;
    String::from_utf8(json).map_err(|_| BodyError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_smaller() {
        for line in std::str::from_utf8(DICT_V1).unwrap().lines() {
            // A record like the samples, with other values.
            let json = line.replace("0180A3F3", "0299AB12").replace("-72", "-81");
            let stored = encode(&json);
            assert_eq!(stored[0], FORMAT_LZ4_V1);
            assert!(
                stored.len() * 4 < json.len(),
                "{} bytes stored for {} of JSON",
                stored.len(),
                json.len()
            );
            assert_eq!(decode(ValueRef::Blob(&stored)).unwrap(), json);
        }
        // Text that looks like nothing in the dictionary still round-trips.
        let odd = "{\"ü\":\"\u{1F600}\",\"x\":[1,2,3]}".repeat(50);
        assert_eq!(decode_blob(&encode(&odd)).unwrap(), odd);
    }

    #[test]
    fn a_record_is_stored_without_its_id_and_read_back_with_it() {
        let id = "01a244f2-dcf2-7275-a32f-d95055b32d69";
        let line = std::str::from_utf8(DICT_V1)
            .unwrap()
            .lines()
            .next()
            .unwrap();
        let json = format!("{{\"id\":\"{id}\",{}", &line[1..]);
        let plain = encode(&json);
        let stored = encode_record(&json, id);
        assert_eq!(stored[0], FORMAT_LZ4_V1_NO_ID);
        assert!(
            stored.len() + 30 <= plain.len(),
            "{} bytes without the id, {} with it",
            stored.len(),
            plain.len()
        );
        assert_eq!(decode_record(ValueRef::Blob(&stored), id).unwrap(), json);
        // Other shapes are stored whole and read back whole, whatever id is given.
        let other = "{\"kind\":\"telemetry\",\"id\":\"x\"}";
        let stored = encode_record(other, "x");
        assert_eq!(stored[0], FORMAT_LZ4_V1);
        assert_eq!(decode_record(ValueRef::Blob(&stored), "y").unwrap(), other);
        assert_eq!(
            decode_record(ValueRef::Text(other.as_bytes()), "y").unwrap(),
            other
        );
        // A v1-only reader (decode) refuses the new format instead of misreading it.
        assert!(matches!(
            decode(ValueRef::Blob(&encode_record(&json, id))),
            Err(BodyError::UnknownFormat(FORMAT_LZ4_V1_NO_ID))
        ));
    }

    #[test]
    fn older_text_rows_read_as_they_are() {
        assert_eq!(decode(ValueRef::Text(b"{\"a\":1}")).unwrap(), "{\"a\":1}");
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        let good = encode(
            std::str::from_utf8(DICT_V1)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        );
        assert!(matches!(decode_blob(&[]), Err(BodyError::Empty)));
        assert!(matches!(
            decode_blob(&[0x7F, 1, 2]),
            Err(BodyError::UnknownFormat(0x7F))
        ));
        assert!(matches!(
            decode(ValueRef::Integer(3)),
            Err(BodyError::WrongType)
        ));
        // Every truncation and every single-byte change either fails cleanly or decodes to
        // something (a flipped literal byte): never a panic.
        for cut in 0..good.len() {
            let _ = decode_blob(&good[..cut]);
        }
        for i in 1..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                let _ = decode_blob(&bad);
            }
        }
        let mut huge = good.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_blob(&huge), Err(BodyError::Corrupt(_))));
    }

    /// The dictionary is part of the stored format: changing it makes every stored row
    /// unreadable. This pins its bytes.
    #[test]
    fn dictionary_v1_never_changes() {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(DICT_V1);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex, DICT_V1_SHA256,
            "body-dict-v1.txt changed: add a v2 instead"
        );
    }

    const DICT_V1_SHA256: &str = "de1ac70873b8b0421eb2be6d9e0c72450403ee88221f8dedcdb4f6e429d89bfa";
}
