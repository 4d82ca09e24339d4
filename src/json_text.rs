//! JSON text written by hand, byte for byte as `serde_json` writes it: the pieces the two hand
//! writers share (a record's JSON as the outbox commits it, `telemetry/json.rs`; the `decode`
//! command's lines, `inspect.rs`), each written without serde's machinery where that is cheap
//! and by `serde_json` itself where it is not.

/// A JSON string: copied between quotes when nothing in it needs escaping, else escaped by
/// `serde_json` (so every escape is its own).
pub(crate) fn text(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // Writing into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
        return;
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// A JSON string, or `null`.
pub(crate) fn opt_text(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => text(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// An integer in decimal (`serde_json` writes integers with `itoa` too).
pub(crate) fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// An integer, or `null`.
pub(crate) fn opt_int(out: &mut Vec<u8>, v: Option<impl itoa::Integer>) {
    match v {
        Some(v) => int(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// True when JSON needs an escape for some byte of `b` (a quote, a backslash or a control
/// character: what `serde_json` escapes). Looks at every byte without stopping early, which
/// compilers turn into a few wide comparisons per 16 bytes.
fn needs_escape(b: &[u8]) -> bool {
    b.iter().fold(false, |acc, &c| {
        acc | (c < 0x20) | (c == b'"') | (c == b'\\')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any text and any integer: the bytes `serde_json` writes.
        #[test]
        fn texts_and_integers_are_written_as_serde_writes_them(
            s in ".{0,40}",
            raw in proptest::collection::vec(0u8..0x80, 0..20),
            i in proptest::num::i64::ANY,
            u in proptest::num::u64::ANY,
        ) {
            // Every ASCII byte, control characters included.
            let ascii = String::from_utf8(raw).unwrap();
            for s in [s.as_str(), ascii.as_str()] {
                let mut out = Vec::new();
                text(&mut out, s);
                proptest::prop_assert_eq!(out, serde_json::to_vec(s).unwrap());
            }
            let mut out = Vec::new();
            int(&mut out, i);
            out.push(b' ');
            int(&mut out, u);
            proptest::prop_assert_eq!(out, format!("{} {}", serde_json::to_string(&i).unwrap(), serde_json::to_string(&u).unwrap()).into_bytes());
        }
    }

    #[test]
    fn nothing_is_written_as_null() {
        let mut out = Vec::new();
        opt_text(&mut out, None);
        opt_int(&mut out, None::<u8>);
        opt_int(&mut out, Some(-3i16));
        assert_eq!(out, b"nullnull-3");
    }
}
