//! How a reading's JSON is kept in `telemetry.body`: compressed with LZ4 against a fixed
//! dictionary of typical records, so a stored reading takes about a seventh of its JSON text
//! (about 97 bytes instead of 690 for the simulated building, with its id, time and boot id
//! kept apart: format `0x03` below). Fewer bytes per
//! row means fewer pages per commit and per checkpoint, which is what an SD card sees per
//! reading. The compressor is ours (`lz4.rs`: the dictionary's match index is built once, not
//! per record); `lz4_flex` reads the blocks back, those of earlier versions (its own) alike.
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
//! | `0x03` | as `0x02`, with the values of the first `"received_at"` and `"boot_id"` members emptied; a flags byte (bit 0: time, bit 1: boot id), then the time's nanoseconds since the epoch (i64 little endian, 8 bytes) and the boot id's 16 bytes, each when its flag is set, come after the format byte |
//!
//! Format `0x03` exists for the SD card: the boot id (a random 36 characters, the same in
//! every reading of a boot) and the reception time (30 characters, mostly digits) were the
//! largest pieces of a stored body the dictionary could not shorten; 24 bytes instead of them
//! make a stored reading about a fifth smaller. A value is cut out only when it reads back as
//! the same characters (checked on every record before it is stored), and each row stays
//! readable on its own (no table of boot ids that a damaged page could take with it).
//!
//! The dictionary (`body-dict-v1.txt`) must never change: rows compressed with it would no
//! longer read. A better dictionary is a new format byte beside this one.

use std::ops::Range;
use std::sync::OnceLock;

use rusqlite::types::ValueRef;

use super::lz4;

/// The first byte of a v1 body: LZ4 with dictionary v1.
pub const FORMAT_LZ4_V1: u8 = 0x01;
/// The first byte of a body compressed as v1 without the record's id (a random 36 characters
/// the dictionary cannot shorten, kept once in the row's `id` column).
pub const FORMAT_LZ4_V1_NO_ID: u8 = 0x02;

/// The first byte of a body compressed as [`FORMAT_LZ4_V1_NO_ID`] with the values of its first
/// `"received_at"` and `"boot_id"` members kept in binary before the size (see the module doc).
pub const FORMAT_LZ4_V1_NO_ID_CUT: u8 = 0x03;

/// A member whose value format `0x03` keeps in binary.
#[derive(Debug, Clone, Copy)]
enum Member {
    /// `received_at`, as 8 bytes of nanoseconds.
    Time,
    /// `boot_id`, as its 16 bytes.
    Boot,
}

impl Member {
    /// The member's name with its quotes, the colon and the value's opening quote.
    fn key(self) -> &'static [u8] {
        match self {
            Self::Time => b"\"received_at\":\"",
            Self::Boot => b"\"boot_id\":\"",
        }
    }

    /// Where the value of the first such member in `hay` begins. The searchers are built once:
    /// a record is searched four times on its way in and out.
    fn value_at(self, hay: &[u8]) -> Option<usize> {
        use memchr::memmem::Finder;
        static FINDERS: OnceLock<[Finder<'static>; 2]> = OnceLock::new();
        let finders =
            FINDERS.get_or_init(|| [Member::Time, Member::Boot].map(|m| Finder::new(m.key())));
        Some(finders[self as usize].find(hay)? + self.key().len())
    }
}
/// Format `0x03` flag: a time follows.
const CUT_TIME: u8 = 1;
/// Format `0x03` flag: a boot id follows.
const CUT_BOOT: u8 = 2;

/// Length of a UUID in its hyphenated text form.
const UUID_TEXT: usize = 36;

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
/// when the text begins with it ([`FORMAT_LZ4_V1_NO_ID`]; [`FORMAT_LZ4_V1_NO_ID_CUT`] when it
/// also holds a reception time or a boot id that reads back the same), as it is
/// ([`FORMAT_LZ4_V1`]) otherwise.
pub fn encode_record(json: &str, id: &str) -> Vec<u8> {
    encode_record_bytes(json.as_bytes(), id)
}

/// [`encode_record`] of JSON text given as its bytes (as `serde_json::to_writer` writes it, so
/// the commit path can reuse one buffer for every record).
pub fn encode_record_bytes(json: &[u8], id: &str) -> Vec<u8> {
    let rest = json
        .strip_prefix(b"{\"id\":\"")
        .and_then(|r| r.strip_prefix(id.as_bytes()))
        .and_then(|r| r.strip_prefix(b"\","));
    match rest {
        Some(rest) if !id.contains(['"', '\\']) => match cut_out(rest) {
            // `{` and the text after the id member, its time and boot id cut out, as one text.
            Some((cuts, text)) => {
                let mut head = [0u8; CUTS_MAX];
                let n = cuts.write_into(&mut head);
                compress_with(FORMAT_LZ4_V1_NO_ID_CUT, &head[..n], b"", &text)
            }
            // `{` and the text after the id member, compressed as one text without joining them.
            None => compress(FORMAT_LZ4_V1_NO_ID, b"{", rest),
        },
        _ => compress(FORMAT_LZ4_V1, b"", json),
    }
}

/// Where the writer of a record's JSON put the values format `0x03` keeps out of the text,
/// when it knows they are the first such members and read back as the same characters: the
/// value's byte range within the text (quotes excluded) and the value. A writer that knows this
/// spares [`encode_record_known`] the search and the check of [`encode_record_bytes`]. Only
/// this crate's writer makes them (`Telemetry::write_json`); anyone else has the empty one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownCuts {
    /// The first `"received_at"` value, as [`time_text`] writes the nanoseconds given.
    pub(crate) time: Option<(Range<usize>, i64)>,
    /// The first `"boot_id"` value, a UUID in lowercase hyphenated text, and its 16 bytes.
    pub(crate) boot: Option<(Range<usize>, [u8; 16])>,
}

impl KnownCuts {
    /// True when the writer knew none (the text is then searched).
    pub fn is_empty(&self) -> bool {
        self.time.is_none() && self.boot.is_none()
    }
}

/// True when `range` of `json` is a string value right after `member`'s key (a cheap check
/// that the ranges given belong to this text; the writer's tests check the rest).
fn is_value_of(json: &[u8], range: &Range<usize>, member: Member) -> bool {
    json.get(..range.start)
        .is_some_and(|before| before.ends_with(member.key()))
        && json.get(range.end) == Some(&b'"')
}

/// [`encode_record_bytes`] of a text whose writer says where its cut-out values are (see
/// [`KnownCuts`]): the same bytes, without searching the text for them, parsing them or
/// writing them again to check. `scratch` holds the text without them (reused per record).
/// Without known values, or with a text that does not begin with the id, it is
/// [`encode_record_bytes`] itself.
pub fn encode_record_known(
    json: &[u8],
    id: &str,
    known: &KnownCuts,
    scratch: &mut Vec<u8>,
) -> Vec<u8> {
    let head = 7 + id.len() + 2;
    let begins_with_id = json.len() > head
        && json.starts_with(b"{\"id\":\"")
        && &json[7..7 + id.len()] == id.as_bytes()
        && &json[head - 2..head] == b"\","
        && !id.contains(['"', '\\']);
    let ranges = [
        known.time.as_ref().map(|(r, _)| r.clone()),
        known.boot.as_ref().map(|(r, _)| r.clone()),
    ];
    // Both after the id, in order, apart, within the text, each a value of its member.
    let in_order = match &ranges {
        [None, None] => false,
        [Some(a), None] | [None, Some(a)] => {
            head <= a.start && a.start <= a.end && a.end <= json.len()
        }
        [Some(a), Some(b)] => {
            head <= a.start
                && a.start <= a.end
                && a.end <= b.start
                && b.start <= b.end
                && b.end <= json.len()
        }
    } && ranges[0]
        .as_ref()
        .is_none_or(|r| is_value_of(json, r, Member::Time))
        && ranges[1]
            .as_ref()
            .is_none_or(|r| is_value_of(json, r, Member::Boot));
    if !begins_with_id || !in_order {
        return encode_record_bytes(json, id);
    }
    scratch.clear();
    scratch.push(b'{');
    let mut next = head;
    for r in ranges.iter().flatten() {
        scratch.extend_from_slice(&json[next..r.start]);
        next = r.end;
    }
    scratch.extend_from_slice(&json[next..]);
    let cuts = Cuts {
        time: known.time.as_ref().map(|&(_, t)| t),
        boot: known.boot.as_ref().map(|&(_, b)| b),
    };
    let mut values = [0u8; CUTS_MAX];
    let n = cuts.write_into(&mut values);
    let stored = compress_with(FORMAT_LZ4_V1_NO_ID_CUT, &values[..n], b"", scratch);
    debug_assert_eq!(
        decode_record(ValueRef::Blob(&stored), id)
            .map(String::into_bytes)
            .ok()
            .as_deref(),
        Some(json),
        "a record stored with its writer's cuts reads back as it was written"
    );
    stored
}

/// The 16 bytes of `text` when it is a UUID in lowercase hyphenated form (the form a boot id
/// and a record id are written in, and read back as), else None.
pub fn canonical_uuid(text: &[u8]) -> Option<[u8; 16]> {
    let text: &[u8; UUID_TEXT] = text.try_into().ok()?;
    let mut out = [0u8; 16];
    let mut k = 0;
    let mut i = 0;
    while i < UUID_TEXT {
        if matches!(i, 8 | 13 | 18 | 23) {
            if text[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        out[k] = nibble(text[i])? << 4 | nibble(text[i + 1])?;
        k += 1;
        i += 2;
    }
    Some(out)
}

/// A lowercase hex digit's value.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The values format `0x03` keeps out of the compressed text.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Cuts {
    /// `received_at`, nanoseconds since the Unix epoch.
    time: Option<i64>,
    /// `boot_id`, its 16 bytes.
    boot: Option<[u8; 16]>,
}

/// The most bytes [`Cuts::write_into`] writes: the flags, a time and a boot id.
const CUTS_MAX: usize = 1 + 8 + 16;

impl Cuts {
    /// Writes the flags byte and the values at the start of `out`; returns how many bytes.
    fn write_into(&self, out: &mut [u8; CUTS_MAX]) -> usize {
        out[0] = self.time.map_or(0, |_| CUT_TIME) | self.boot.map_or(0, |_| CUT_BOOT);
        let mut n = 1;
        if let Some(t) = self.time {
            out[n..n + 8].copy_from_slice(&t.to_le_bytes());
            n += 8;
        }
        if let Some(b) = self.boot {
            out[n..n + 16].copy_from_slice(&b);
            n += 16;
        }
        n
    }

    /// The values at the start of `b` and the bytes after them.
    fn read(b: &[u8]) -> Result<(Self, &[u8]), BodyError> {
        let short = || BodyError::Corrupt("cut-out values missing".into());
        let (&flags, mut b) = b.split_first().ok_or_else(short)?;
        if flags & !(CUT_TIME | CUT_BOOT) != 0 {
            return Err(BodyError::Corrupt(format!(
                "unknown cut-out flags {flags:#04x}"
            )));
        }
        let mut cuts = Self::default();
        if flags & CUT_TIME != 0 {
            let (t, rest) = b.split_first_chunk::<8>().ok_or_else(short)?;
            cuts.time = Some(i64::from_le_bytes(*t));
            b = rest;
        }
        if flags & CUT_BOOT != 0 {
            let (boot, rest) = b.split_first_chunk::<16>().ok_or_else(short)?;
            cuts.boot = Some(*boot);
            b = rest;
        }
        Ok((cuts, b))
    }

    /// Puts the values back into `json` (from `from` on): each into the first member of its
    /// name, which must be empty.
    fn restore(&self, json: &mut Vec<u8>, from: usize) -> Result<(), BodyError> {
        if let Some(t) = self.time {
            let (text, n) = time_text(t)
                .ok_or_else(|| BodyError::Corrupt(format!("stored time {t} out of range")))?;
            let at = empty_member(json, from, Member::Time)?;
            insert_at(json, at, &text[..n]);
        }
        if let Some(b) = self.boot {
            let mut text = [0u8; UUID_TEXT];
            uuid::Uuid::from_bytes(b)
                .hyphenated()
                .encode_lower(&mut text);
            let at = empty_member(json, from, Member::Boot)?;
            insert_at(json, at, &text);
        }
        Ok(())
    }
}

/// The most bytes [`Cuts::restore`] puts back: a reader reserves them with the text.
const CUT_MAX: usize = 30 + UUID_TEXT;

/// `bytes` inserted into `v` at `at` (within the capacity a reader reserved: no reallocation).
fn insert_at(v: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let old = v.len();
    v.resize(old + bytes.len(), 0);
    v.copy_within(at..old, at + bytes.len());
    v[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Where the value of the first `member` of `json[from..]` would begin, when it is empty.
fn empty_member(json: &[u8], from: usize, member: Member) -> Result<usize, BodyError> {
    json.get(from..)
        .and_then(|j| member.value_at(j))
        .map(|p| from + p)
        .filter(|&p| json.get(p) == Some(&b'"'))
        .ok_or_else(|| BodyError::Corrupt(format!("no empty {member:?} member")))
}

/// `{` and `rest` with the values of its first time and boot id members cut out, and those
/// values, when there is one that reads back as the same characters. Checked by reading the
/// text back: what is stored is what comes back, whatever `rest` holds.
fn cut_out(rest: &[u8]) -> Option<(Cuts, Vec<u8>)> {
    let mut cuts = Cuts::default();
    let mut ranges = [(0, 0); 2];
    if let Some((at, len, t)) = time_at(rest) {
        cuts.time = Some(t);
        ranges[0] = (at, at + len);
    }
    if let Some((at, uuid)) = boot_id_at(rest) {
        cuts.boot = Some(*uuid.as_bytes());
        ranges[1] = (at, at + UUID_TEXT);
    }
    if cuts == Cuts::default() {
        return None;
    }
    ranges.sort_unstable();
    if ranges[0].1 > ranges[1].0 {
        return None;
    }
    let mut text = Vec::with_capacity(1 + rest.len());
    text.push(b'{');
    let mut next = 0;
    for (a, b) in ranges {
        text.extend_from_slice(&rest[next..a]);
        next = next.max(b);
    }
    text.extend_from_slice(&rest[next..]);
    let mut check = Vec::with_capacity(text.len() + CUT_MAX);
    check.extend_from_slice(&text);
    cuts.restore(&mut check, 0).ok()?;
    (check[1..] == *rest).then_some((cuts, text))
}

/// Where the value of the first `"received_at"` member of `text` begins, its length and the
/// time it names (nanoseconds since the epoch), when [`time_text`] writes it back the same.
fn time_at(text: &[u8]) -> Option<(usize, usize, i64)> {
    let at = Member::Time.value_at(text)?;
    let len = text.get(at..)?.iter().take(40).position(|&c| c == b'"')?;
    let value = &text[at..at + len];
    let t: jiff::Timestamp = std::str::from_utf8(value).ok()?.parse().ok()?;
    let nanos = i64::try_from(t.as_nanosecond()).ok()?;
    let (back, n) = time_text(nanos)?;
    (back[..n] == *value).then_some((at, len, nanos))
}

/// A time as a reading's `received_at` holds it (RFC 3339 in UTC, `Z`, the fraction of a second
/// without trailing zeros, none when whole), for years 0000 to 9999: the text and its length.
/// Written here, not by a library, so stored rows read back the same with any version of it.
pub(crate) fn time_text(nanos: i64) -> Option<([u8; 30], usize)> {
    let t = jiff::Timestamp::from_nanosecond(i128::from(nanos)).ok()?;
    let d = jiff::tz::Offset::UTC.to_datetime(t);
    if !(0..=9999).contains(&d.year()) {
        return None;
    }
    let mut out = [0u8; 30];
    let mut n = 0;
    // `lead` (none when 0), then `v` in `width` digits.
    let mut put = |lead: u8, v: i64, width: u32| {
        if lead != 0 {
            out[n] = lead;
            n += 1;
        }
        let mut v = v;
        for k in (n..n + width as usize).rev() {
            out[k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        n += width as usize;
    };
    put(0, i64::from(d.year()), 4);
    put(b'-', i64::from(d.month()), 2);
    put(b'-', i64::from(d.day()), 2);
    put(b'T', i64::from(d.hour()), 2);
    put(b':', i64::from(d.minute()), 2);
    put(b':', i64::from(d.second()), 2);
    let mut frac = i64::from(d.subsec_nanosecond());
    if frac > 0 {
        let mut width = 9;
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        put(b'.', frac, width);
    }
    put(b'Z', 0, 0);
    Some((out, n))
}

/// Where the value of the first `"boot_id"` member of `text` begins, and that value as a UUID,
/// when it is one written the way it reads back (lowercase, hyphenated).
fn boot_id_at(text: &[u8]) -> Option<(usize, uuid::Uuid)> {
    let at = Member::Boot.value_at(text)?;
    let value = text.get(at..at + UUID_TEXT)?;
    if text.get(at + UUID_TEXT) != Some(&b'"') {
        return None;
    }
    Some((at, uuid::Uuid::from_bytes(canonical_uuid(value)?)))
}

/// The JSON text of a stored body of the record with id `id` (the row's `id` column).
pub fn decode_record(value: ValueRef<'_>, id: &str) -> Result<String, BodyError> {
    let (cuts, rest, spare) = match value {
        ValueRef::Blob([FORMAT_LZ4_V1_NO_ID, rest @ ..]) => (Cuts::default(), rest, 0),
        ValueRef::Blob([FORMAT_LZ4_V1_NO_ID_CUT, rest @ ..]) => {
            let (cuts, rest) = Cuts::read(rest)?;
            (cuts, rest, CUT_MAX)
        }
        _ => return decode(value),
    };
    // `{"id":"<id>"`, then the stored text decompressed right after it, its leading `{` made
    // the `,`, the cut-out values put back: the record in one buffer, without a copy.
    let head: [&[u8]; 3] = [b"{\"id\":\"", id.as_bytes(), b"\""];
    let at: usize = head.iter().map(|h| h.len()).sum();
    let mut json = decompress_after_with(&head, rest, spare)?;
    let object = json.get(at) == Some(&b'{');
    if object {
        json[at] = b',';
        cuts.restore(&mut json, at)?;
    }
    // The same errors, in the same order, as for the stored text alone.
    let json = String::from_utf8(json).map_err(|_| BodyError::NotUtf8)?;
    if !object {
        return Err(BodyError::NotAnObject);
    }
    Ok(json)
}

/// Compresses a record's JSON text for `telemetry.body`.
pub fn encode(json: &str) -> Vec<u8> {
    compress(FORMAT_LZ4_V1, b"", json.as_bytes())
}

/// Dictionary v1 with its match index, built on first use.
fn dict_v1() -> &'static lz4::Dictionary<'static> {
    static INDEX: OnceLock<lz4::Dictionary<'static>> = OnceLock::new();
    INDEX.get_or_init(|| lz4::Dictionary::new(DICT_V1))
}

/// A stored body: `format`, the size of `prefix` + `text` (u32 little endian) and the LZ4 block
/// of the two with dictionary v1, written into one vector. Its capacity is the block's largest
/// possible size (a realistic record uses a seventh of it): a caller that keeps it long
/// shrinks it.
fn compress(format: u8, prefix: &[u8], text: &[u8]) -> Vec<u8> {
    compress_with(format, &[], prefix, text)
}

/// [`compress`] with `extra` bytes between the format byte and the size.
fn compress_with(format: u8, extra: &[u8], prefix: &[u8], text: &[u8]) -> Vec<u8> {
    let n = prefix.len() + text.len();
    let mut out = Vec::with_capacity(5 + extra.len() + lz4::max_block_size(n));
    out.push(format);
    out.extend_from_slice(extra);
    // Past 4 GiB the size is wrong, but such a text is beyond MAX_JSON and unreadable anyway.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    dict_v1().compress_into(prefix, text, &mut out);
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
    String::from_utf8(decompress_after(&[], rest)?).map_err(|_| BodyError::NotUtf8)
}

/// The parts of `head`, then LZ4 with dictionary v1, size prepended, decompressed after them
/// (as `lz4_flex::block::decompress_size_prepended_with_dict` would, into the same vector).
fn decompress_after(head: &[&[u8]], rest: &[u8]) -> Result<Vec<u8>, BodyError> {
    decompress_after_with(head, rest, 0)
}

/// [`decompress_after`] into a vector with room for `spare` more bytes.
fn decompress_after_with(head: &[&[u8]], rest: &[u8], spare: usize) -> Result<Vec<u8>, BodyError> {
    let (size, block) = rest
        .split_first_chunk::<4>()
        .map(|(s, block)| (u32::from_le_bytes(*s) as usize, block))
        .ok_or_else(|| BodyError::Corrupt("no size".into()))?;
    if size > MAX_JSON {
        return Err(BodyError::Corrupt(format!("size {size} too large")));
    }
    let at: usize = head.iter().map(|h| h.len()).sum();
    let mut out = Vec::with_capacity(at + size + spare);
    for h in head {
        out.extend_from_slice(h);
    }
    out.resize(at + size, 0);
    let n = lz4_flex::block::decompress_into_with_dict(block, &mut out[at..], DICT_V1)
        .map_err(|e| BodyError::Corrupt(e.to_string()))?;
    out.truncate(at + n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

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
        // A boot other than the sample's (which the dictionary holds, as no running boot does).
        let line = line.replace(
            "a4fd08b6-33ef-4fa4-b9e6-b05820c6769a",
            "530fc982-8d81-4e82-ae51-865f95a0751f",
        );
        let json = format!("{{\"id\":\"{id}\",{}", &line[1..]);
        let plain = encode(&json);
        // Without a time or boot id member: 0x02.
        let no_boot = json
            .replace("\"boot_id\":\"", "\"boot\":\"")
            .replace("\"received_at\":\"", "\"received\":\"");
        let stored = encode_record(&no_boot, id);
        assert_eq!(stored[0], FORMAT_LZ4_V1_NO_ID);
        assert!(
            stored.len() + 30 <= encode(&no_boot).len(),
            "{} bytes without the id, {} with it",
            stored.len(),
            plain.len()
        );
        assert_eq!(decode_record(ValueRef::Blob(&stored), id).unwrap(), no_boot);
        // With them: 0x03, both cut out, smaller again.
        let with_boot = encode_record(&json, id);
        assert_eq!(with_boot[0], FORMAT_LZ4_V1_NO_ID_CUT);
        assert_eq!(with_boot[1], CUT_TIME | CUT_BOOT);
        assert!(
            with_boot.len() + 15 <= encode_record(&no_boot, id).len(),
            "{} bytes with the time and boot id cut out, {} without such members",
            with_boot.len(),
            stored.len()
        );
        assert_eq!(decode_record(ValueRef::Blob(&with_boot), id).unwrap(), json);
        // Other shapes are stored whole and read back whole, whatever id is given.
        let other = "{\"kind\":\"telemetry\",\"id\":\"x\"}";
        let stored = encode_record(other, "x");
        assert_eq!(stored[0], FORMAT_LZ4_V1);
        assert_eq!(decode_record(ValueRef::Blob(&stored), "y").unwrap(), other);
        assert_eq!(
            decode_record(ValueRef::Text(other.as_bytes()), "y").unwrap(),
            other
        );
        // A v1-only reader (decode) refuses the newer formats instead of misreading them.
        assert!(matches!(
            decode(ValueRef::Blob(&encode_record(&no_boot, id))),
            Err(BodyError::UnknownFormat(FORMAT_LZ4_V1_NO_ID))
        ));
        assert!(matches!(
            decode(ValueRef::Blob(&with_boot)),
            Err(BodyError::UnknownFormat(FORMAT_LZ4_V1_NO_ID_CUT))
        ));
    }

    /// What a writer says of its text is used only where it fits the text: a range that is
    /// not a whole value right after its member's key is not trusted, the text is searched.
    #[test]
    fn known_cuts_that_do_not_fit_the_text_are_not_trusted() {
        let id = "01a244f2-dcf2-7275-a32f-d95055b32d69";
        let time = "2026-12-06T03:04:05Z";
        let json = format!("{{\"id\":\"{id}\",\"received_at\":\"{time}\",\"x\":\"{time}\"}}");
        let nanos =
            i64::try_from(time.parse::<jiff::Timestamp>().unwrap().as_nanosecond()).unwrap();
        let at = json.find(time).unwrap();
        let searched = encode_record_bytes(json.as_bytes(), id);
        assert_eq!(searched[0], FORMAT_LZ4_V1_NO_ID_CUT);
        let mut scratch = Vec::new();
        let known = |r: Range<usize>, t: i64| KnownCuts {
            time: Some((r, t)),
            boot: None,
        };
        let stored = encode_record_known(
            json.as_bytes(),
            id,
            &known(at..at + 20, nanos),
            &mut scratch,
        );
        assert_eq!(stored, searched);
        // Off by one either way, too short, another member's value: searched (a trusted
        // wrong range would store the time 0).
        let x = json.rfind(time).unwrap();
        for wrong in [at + 1..at + 21, at - 1..at + 19, at..at + 19, x..x + 20] {
            let stored =
                encode_record_known(json.as_bytes(), id, &known(wrong.clone(), 0), &mut scratch);
            assert_eq!(stored, searched, "{wrong:?}");
            assert_eq!(decode_record(ValueRef::Blob(&stored), id).unwrap(), json);
        }
        // None known: searched too.
        assert_eq!(
            encode_record_known(json.as_bytes(), id, &KnownCuts::default(), &mut scratch),
            searched
        );
        assert!(KnownCuts::default().is_empty() && !known(at..at + 20, nanos).is_empty());
    }

    /// The boot id is cut out only when it reads back as the same bytes, and only the first
    /// `"boot_id"` member's; everything else round-trips as 0x02.
    #[test]
    fn the_boot_id_is_cut_out_only_where_it_comes_back_the_same() {
        let id = "01a244f2-dcf2-7275-a32f-d95055b32d69";
        let boot = "530fc982-8d81-4e82-ae51-865f95a0751f";
        let record = |rest: &str| format!("{{\"id\":\"{id}\",{rest}");
        let cases = [
            // (text after the id, format expected)
            (
                format!("\"m\":{{\"boot_id\":\"{boot}\",\"ms\":1}}}}"),
                FORMAT_LZ4_V1_NO_ID_CUT,
            ),
            // Two members: the first is cut out, the second stays as it is.
            (
                format!("\"a\":{{\"boot_id\":\"{boot}\"}},\"b\":{{\"boot_id\":\"{boot}\"}}}}"),
                FORMAT_LZ4_V1_NO_ID_CUT,
            ),
            // An empty second member after the cut one.
            (
                format!("\"boot_id\":\"{boot}\",\"x\":{{\"boot_id\":\"\"}}}}"),
                FORMAT_LZ4_V1_NO_ID_CUT,
            ),
            // Upper case, braces, no hyphens, too short, too long, not hex: kept in the text.
            (
                format!("\"boot_id\":\"{}\"}}", boot.to_uppercase()),
                FORMAT_LZ4_V1_NO_ID,
            ),
            (
                format!("\"boot_id\":\"{}\"}}", boot.replace('-', "")),
                FORMAT_LZ4_V1_NO_ID,
            ),
            (
                format!("\"boot_id\":\"{}\"}}", &boot[1..]),
                FORMAT_LZ4_V1_NO_ID,
            ),
            (format!("\"boot_id\":\"{boot}0\"}}"), FORMAT_LZ4_V1_NO_ID),
            (
                format!("\"boot_id\":\"{}x\"}}", &boot[1..]),
                FORMAT_LZ4_V1_NO_ID,
            ),
            // The first member is not a UUID: none is cut out, even a later good one.
            (
                format!("\"boot_id\":\"\",\"b\":{{\"boot_id\":\"{boot}\"}}}}"),
                FORMAT_LZ4_V1_NO_ID,
            ),
            // At the very end, without a closing quote.
            (format!("\"boot_id\":\"{boot}"), FORMAT_LZ4_V1_NO_ID),
            // Escaped inside a string: not a member.
            (
                format!("\"n\":\"\\\"boot_id\\\":\\\"{boot}\\\"\"}}"),
                FORMAT_LZ4_V1_NO_ID,
            ),
        ];
        for (rest, format) in cases {
            let json = record(&rest);
            let stored = encode_record(&json, id);
            assert_eq!(stored[0], format, "{json}");
            assert_eq!(decode_record(ValueRef::Blob(&stored), id).unwrap(), json);
        }
        // Times: cut out when they read back the same, whole seconds and every fraction length.
        for (time, cut) in [
            ("2026-12-06T00:10:50.833241385Z", true),
            ("2026-12-05T03:47:47.01958677Z", true),
            ("2027-01-01T00:00:00Z", true),
            ("2027-01-01T00:00:00.1Z", true),
            ("1970-01-01T00:00:00.000000001Z", true),
            ("1969-12-31T23:59:59.999999999Z", true),
            ("2262-04-11T23:47:16.854775807Z", true),
            // Past i64 nanoseconds, another spelling of the same time, an offset, trailing
            // zeros, lower case, not a time: kept in the text.
            ("2262-04-11T23:47:16.854775808Z", false),
            ("2027-01-01T00:00:00.100Z", false),
            ("2027-01-01T01:00:00+01:00", false),
            ("2027-01-01T00:00:00.000Z", false),
            ("2027-01-01t00:00:00z", false),
            ("2027-01-01 00:00:00Z", false),
            ("yesterday", false),
            ("", false),
        ] {
            let json = record(&format!("\"received_at\":\"{time}\",\"k\":1}}"));
            let stored = encode_record(&json, id);
            let want = if cut {
                FORMAT_LZ4_V1_NO_ID_CUT
            } else {
                FORMAT_LZ4_V1_NO_ID
            };
            assert_eq!(stored[0], want, "{time}");
            if cut {
                assert_eq!(stored[1], CUT_TIME, "{time}");
            }
            assert_eq!(decode_record(ValueRef::Blob(&stored), id).unwrap(), json);
        }
        // Both, in either order, and a second time member left as it is.
        for rest in [
            format!(
                "\"received_at\":\"2027-01-01T00:00:00.5Z\",\"m\":{{\"boot_id\":\"{boot}\"}},\"received_at\":\"2027-01-01T00:00:00.5Z\"}}"
            ),
            format!(
                "\"m\":{{\"boot_id\":\"{boot}\"}},\"received_at\":\"2027-01-01T00:00:00.5Z\"}}"
            ),
        ] {
            let json = record(&rest);
            let stored = encode_record(&json, id);
            assert_eq!(stored[..2], [FORMAT_LZ4_V1_NO_ID_CUT, CUT_TIME | CUT_BOOT]);
            assert_eq!(decode_record(ValueRef::Blob(&stored), id).unwrap(), json);
        }
        // Flags this version does not know, or values missing: an error.
        let mut unknown = encode_record(&record("\"received_at\":\"2027-01-01T00:00:00Z\"}"), id);
        unknown[1] |= 0x80;
        assert!(matches!(
            decode_record(ValueRef::Blob(&unknown), id),
            Err(BodyError::Corrupt(_))
        ));
        // A record whose id is stored whole keeps its boot id too (format 0x01).
        let json = format!("{{\"id\":\"a\\\"b\",\"boot_id\":\"{boot}\"}}");
        let stored = encode_record(&json, "a\"b");
        assert_eq!(stored[0], FORMAT_LZ4_V1);
        assert_eq!(
            decode_record(ValueRef::Blob(&stored), "a\"b").unwrap(),
            json
        );
        // 0x03 with its member damaged or missing is an error, never a wrong text or a panic.
        let good = encode_record(&record(&format!("\"boot_id\":\"{boot}\"}}")), id);
        let mut no_member = good.clone();
        no_member.truncate(18);
        no_member.extend_from_slice(&compress(0, b"", b"{\"x\":1}")[1..]);
        assert!(matches!(
            decode_record(ValueRef::Blob(&no_member), id),
            Err(BodyError::Corrupt(_))
        ));
        for cut in 0..good.len() {
            let _ = decode_record(ValueRef::Blob(&good[..cut]), id);
        }
        for i in 1..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                let _ = decode_record(ValueRef::Blob(&bad), id);
            }
        }
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

    /// Readings as the agent commits them ([`crate::sim::sample_readings`]: the simulated
    /// building's telegrams decoded with the built-in profiles, 2 000 a second): (id, JSON text).
    /// Fixed times, and so ids: the same records every run.
    #[cfg(feature = "sim")]
    fn building(n: usize) -> Vec<(String, String)> {
        let start = "2027-03-14T09:26:53.589793238Z".parse().unwrap();
        let step = jiff::SignedDuration::from_nanos(500_123);
        crate::sim::sample_readings(n, start, step)
            .into_iter()
            .map(|tm| (tm.id.clone(), serde_json::to_string(&tm).unwrap()))
            .collect()
    }

    /// Our encoder against `lz4_flex`'s (what stored bodies were before): every reading of the
    /// simulated building reads back through the v2 reader, and the total is no larger.
    #[cfg(feature = "sim")]
    #[test]
    fn realistic_readings_round_trip_no_larger_than_lz4_flex() {
        let records = building(3_000);
        let (mut ours, mut theirs, mut json) = (0, 0, 0);
        let (mut whole_ours, mut whole_theirs) = (0, 0);
        let mut with_boot_cut = 0;
        for (id, text) in &records {
            // Every reading is stored without its id and boot id, and reads back the same.
            let stored = encode_record(text, id);
            assert_eq!(stored[..2], [FORMAT_LZ4_V1_NO_ID_CUT, CUT_TIME | CUT_BOOT]);
            assert_eq!(&decode_record(ValueRef::Blob(&stored), id).unwrap(), text);
            with_boot_cut += stored.len();
            // Format 0x02 (what encode_record stored before), ours and lz4_flex's.
            let rest = &text[format!("{{\"id\":\"{id}\",").len()..];
            let stored = compress(FORMAT_LZ4_V1_NO_ID, b"{", rest.as_bytes());
            assert_eq!(&decode_record(ValueRef::Blob(&stored), id).unwrap(), text);
            let old = lz4_flex::block::compress_prepend_size_with_dict(
                format!("{{{rest}").as_bytes(),
                DICT_V1,
            );
            ours += stored.len();
            theirs += old.len() + 1;
            json += text.len();
            // Rows stored by the earlier encoder read as before.
            let old = [&[FORMAT_LZ4_V1_NO_ID][..], &old].concat();
            assert_eq!(&decode_record(ValueRef::Blob(&old), id).unwrap(), text);
            // The whole text (format 0x01) too, both ways.
            let whole = encode(text);
            assert_eq!(decode_blob(&whole).unwrap(), *text);
            let old = lz4_flex::block::compress_prepend_size_with_dict(text.as_bytes(), DICT_V1);
            let old = [&[FORMAT_LZ4_V1][..], &old].concat();
            assert_eq!(decode_blob(&old).unwrap(), *text);
            whole_ours += whole.len();
            whole_theirs += old.len();
        }
        let per = |b: usize| b as f64 / records.len() as f64;
        eprintln!(
            "{} readings, {:.1} B of JSON each: stored {:.2} B each (lz4_flex: {:.2} B)",
            records.len(),
            per(json),
            per(ours),
            per(theirs)
        );
        eprintln!(
            "with the id (format 0x01): {:.2} B each (lz4_flex: {:.2} B)",
            per(whole_ours),
            per(whole_theirs)
        );
        eprintln!(
            "without the id, the time and the boot id (format 0x03): {:.2} B each",
            per(with_boot_cut)
        );
        // 16 bytes instead of a 36-character literal: about 20 bytes fewer per reading.
        assert!(
            with_boot_cut + 15 * records.len() <= ours,
            "{with_boot_cut} bytes with the boot id cut out, {ours} without"
        );
        assert!(ours <= theirs, "{ours} bytes stored, lz4_flex {theirs}");
        assert!(
            whole_ours <= whole_theirs,
            "{whole_ours} bytes, lz4_flex {whole_theirs}"
        );
    }

    proptest::proptest! {
        /// Our text of a time is jiff's (what serde writes for `received_at`), for every time
        /// format 0x03 can hold.
        #[test]
        fn time_text_is_jiffs(nanos in proptest::prop_oneof![
            proptest::num::i64::ANY,
            (-1_000_000_000i64..1_000_000_000).prop_map(|s| s * 1_000_000_000),
            (0i64..10_000_000_000).prop_map(|ms| ms * 1_000_000),
        ]) {
            let t = jiff::Timestamp::from_nanosecond(i128::from(nanos)).unwrap();
            let (text, n) = time_text(nanos).unwrap();
            proptest::prop_assert_eq!(std::str::from_utf8(&text[..n]).unwrap(), t.to_string());
            let json = serde_json::to_string(&t).unwrap();
            proptest::prop_assert_eq!(&json[1..json.len() - 1], t.to_string());
        }

        /// A UUID's bytes exactly when the uuid crate reads the text as one it writes back
        /// the same (lowercase, hyphenated).
        #[test]
        fn canonical_uuid_is_the_uuid_crates(text in proptest::prop_oneof![
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[0-9a-fA-F-]{36}",
            "[0-9a-gA-G{}-]{30,40}",
            ".{0,40}",
        ]) {
            let theirs = uuid::Uuid::try_parse(&text)
                .ok()
                .filter(|u| u.hyphenated().to_string() == text)
                .map(|u| *u.as_bytes());
            proptest::prop_assert_eq!(canonical_uuid(text.as_bytes()), theirs);
        }

        /// Any text, with any id, reads back as it was given (stored without the id or whole).
        #[test]
        fn any_text_round_trips(json in ".*", id in ".*") {
            proptest::prop_assert_eq!(decode_blob(&encode(&json)).unwrap(), json.clone());
            let stored = encode_record(&json, &id);
            proptest::prop_assert_eq!(decode_record(ValueRef::Blob(&stored), &id).unwrap(), json);
        }

        /// Records that begin with their id, the rest made of the dictionary's pieces and other
        /// text: without the id unless the id needs escaping.
        #[test]
        fn records_round_trip(
            id in proptest::prop_oneof!["[0-9a-f-]{36}", ".{0,40}"],
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    (0..DICT_V1.len(), 0..300usize).prop_map(|(at, n)| {
                        String::from_utf8_lossy(&DICT_V1[at..(at + n).min(DICT_V1.len())]).into_owned()
                    }),
                    ".{0,30}",
                    // Boot id members, well-formed or not, and a member's bare start.
                    "[0-9a-fA-F]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{11,13}\"?"
                        .prop_map(|v| format!("\"boot_id\":\"{v}")),
                    proptest::strategy::Just("\"boot_id\":\"".to_owned()),
                    // Time members: as serde writes them, and bare starts.
                    proptest::num::i64::ANY.prop_map(|n| {
                        format!("\"received_at\":{}", serde_json::to_string(
                            &jiff::Timestamp::from_nanosecond(i128::from(n)).unwrap()).unwrap())
                    }),
                    proptest::strategy::Just("\"received_at\":\"".to_owned()),
                ],
                0..10,
            ),
        ) {
            let json = format!("{{\"id\":\"{id}\",{}", pieces.concat());
            let stored = encode_record(&json, &id);
            if id.contains(['"', '\\']) {
                proptest::prop_assert_eq!(stored[0], FORMAT_LZ4_V1);
            } else {
                proptest::prop_assert!([FORMAT_LZ4_V1_NO_ID, FORMAT_LZ4_V1_NO_ID_CUT].contains(&stored[0]));
            }
            proptest::prop_assert_eq!(decode_record(ValueRef::Blob(&stored), &id).unwrap(), json);
        }
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
