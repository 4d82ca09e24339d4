//! `enocean-agent decode`: ESP3 bytes → one JSON object per frame on stdout; or a bare radio
//! payload (`--payload "A5 00 FA FA 0A"`, as FHEM and openHAB logs and the EEP documents show
//! telegrams) → the same JSON object, as if the stick had received it.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use enocean_agent::chain::{Outcome, Reassembler};
use enocean_agent::erp1::{Telegram, rorg};
use enocean_agent::esp3::{Decoder, Frame, HEADER_LEN, LentItem, PacketType};
use enocean_agent::inspect;

use super::cli::{self, Arg, Help, Parser, UsageError};

/// Arguments of `decode`.
#[derive(Debug, Default, PartialEq)]
pub struct Args {
    /// Capture file with raw ESP3 bytes, or `-` for stdin.
    pub(crate) input: Option<PathBuf>,
    /// Decode these ESP3 bytes (whole frames, starting with 55) given as hex (spaces, colons,
    /// commas and 0x prefixes allowed) instead of a file.
    pub(crate) hex: Option<String>,
    /// Decode a bare radio telegram: RORG and data bytes in hex (`"A5 00 FA FA 0A"`), optionally
    /// followed by the sender ID and status (the ERP1 data as FHEM logs it; 4BS, 1BS and RPS
    /// only, whose length is fixed); or give those with --sender and --status.
    pub(crate) payload: Option<String>,
    /// Sender ID of a --payload telegram (8 hex digits; default 00000000).
    pub(crate) sender: Option<String>,
    /// Status byte of a --payload telegram in hex (default 00; RPS rockers often need 30).
    pub(crate) status: Option<String>,
    /// Also print decoder events (discarded bytes, CRC mismatches) as JSON lines.
    pub(crate) events: bool,
    /// Decode radio telegrams with this EEP profile (e.g. A5-02-05).
    pub(crate) eep: Option<String>,
    /// Direction for two-direction profiles (1 = from the device, 2 = to it).
    pub(crate) direction: Option<u8>,
    /// Also load profiles from this directory (adds to or overrides the built-in ones).
    pub(crate) profiles: Option<PathBuf>,
}

/// What `decode --help` shows.
pub const HELP: Help = Help {
    cmd: "decode",
    usage: "[OPTIONS] <INPUT | --hex HEX | --payload HEX>",
    about: "Decode ESP3 bytes from a capture file, stdin or hex into JSON Lines",
    commands: &[],
    args: &[(
        "<INPUT>",
        "Capture file with raw ESP3 bytes, or `-` for stdin",
    )],
    options: &[
        (
            "--hex <HEX>",
            "Decode these ESP3 bytes (whole frames, starting with 55) given as hex \
             (spaces, colons, commas and 0x prefixes allowed) instead of a file",
        ),
        (
            "--payload <HEX>",
            "Decode a bare radio telegram: RORG and data bytes in hex (`\"A5 00 FA FA 0A\"`), \
             optionally followed by the sender ID and status (4BS, 1BS and RPS only), \
             or give those with --sender and --status",
        ),
        (
            "--sender <ID>",
            "Sender ID of a --payload telegram (8 hex digits) [default: 00000000]",
        ),
        (
            "--status <HEX>",
            "Status byte of a --payload telegram in hex (RPS rockers often need 30) [default: 00]",
        ),
        (
            "--events",
            "Also print decoder events (discarded bytes, CRC mismatches) as JSON lines",
        ),
        (
            "--eep <RR-FF-TT>",
            "Decode radio telegrams with this EEP profile (e.g. A5-02-05)",
        ),
        (
            "--direction <N>",
            "Direction for two-direction profiles (1 = from the device, 2 = to it); needs --eep",
        ),
        (
            "--profiles <DIR>",
            "Also load profiles from this directory (adds to or overrides the built-in ones)",
        ),
    ],
};

/// The arguments after `decode`.
pub fn parse(p: &mut Parser) -> Result<Args, UsageError> {
    let h = &HELP;
    let mut a = Args::default();
    while let Some(arg) = cli::next(p, h)? {
        match arg {
            Arg::Long("hex") => cli::once(p, h, "--hex", &mut a.hex)?,
            Arg::Long("payload") => cli::once(p, h, "--payload", &mut a.payload)?,
            Arg::Long("sender") => cli::once(p, h, "--sender", &mut a.sender)?,
            Arg::Long("status") => cli::once(p, h, "--status", &mut a.status)?,
            Arg::Long("events") => cli::flag(&mut a.events, h, "--events")?,
            Arg::Long("eep") => cli::once(p, h, "--eep", &mut a.eep)?,
            Arg::Long("direction") => {
                let d = match cli::value::<i64>(p, h, "--direction")? {
                    d @ 1..=2 => d as u8,
                    d => {
                        return Err(cli::invalid(
                            h,
                            format_args!("--direction is 1 or 2, not {d}"),
                        ));
                    }
                };
                cli::set(&mut a.direction, d, h, "--direction")?;
            }
            Arg::Long("profiles") => cli::once_path(p, h, "--profiles", &mut a.profiles)?,
            Arg::Value(v) if a.input.is_none() => a.input = Some(v.into()),
            arg => return Err(cli::unexpected(h, arg)),
        }
    }
    let conflict = |x: &str, y: &str| cli::invalid(h, format_args!("{x} cannot be used with {y}"));
    if a.input.is_some() && a.hex.is_some() {
        return Err(conflict("INPUT", "--hex"));
    }
    if a.input.is_some() && a.payload.is_some() {
        return Err(conflict("INPUT", "--payload"));
    }
    if a.hex.is_some() && a.payload.is_some() {
        return Err(conflict("--hex", "--payload"));
    }
    if a.input.is_none() && a.hex.is_none() && a.payload.is_none() {
        return Err(cli::invalid(
            h,
            "give a capture file (INPUT, `-` for stdin), --hex or --payload",
        ));
    }
    for (set, name) in [
        (a.sender.is_some(), "--sender"),
        (a.status.is_some(), "--status"),
    ] {
        if set && a.payload.is_none() {
            return Err(cli::invalid(h, format_args!("{name} requires --payload")));
        }
    }
    if a.direction.is_some() && a.eep.is_none() {
        return Err(cli::invalid(h, "--direction requires --eep"));
    }
    Ok(a)
}

/// Runs `decode`; exit code 0 when at least one frame was found or the input was empty, 2 when
/// bytes were given but no frame was found.
pub fn run(args: Args) -> Result<ExitCode> {
    let bytes = match &args.payload {
        Some(text) => {
            let t = payload_telegram(text, args.sender.as_deref(), args.status.as_deref())?;
            let mut data = vec![t.rorg];
            data.extend_from_slice(&t.payload);
            data.extend_from_slice(&t.sender.to_be_bytes());
            data.push(t.status);
            Frame::new(PacketType::RadioErp1, &data, &[])
                .context("--payload: too long for a radio telegram")?
                .encode()
        }
        None => read_input(&args)?,
    };
    let library = crate::cmd::profiles::load_library(args.profiles.as_deref())?;
    let profile = match &args.eep {
        Some(eep) => Some(library.get_str(eep)?),
        None => None,
    };
    // A bare payload whose RORG the profile does not decode: say so instead of printing no values.
    if let (Some(p), Some(rorg)) = (profile, bytes.get(HEADER_LEN))
        && args.payload.is_some()
        && p.id.rorg != *rorg
    {
        eprintln!(
            "warning: {} decodes RORG {:02X} telegrams, this payload is RORG {rorg:02X}: no values",
            p.eep, p.id.rorg
        );
    }
    // Signal telegrams (RORG D0) come from any device whatever its EEP.
    let signal = library.get(enocean_agent::eep::EepId::new(0xD0, 0, 0));
    let mut decoder = Decoder::new();
    // Chained data messages (RORG 0x40) are put back together and decoded by their inner RORG.
    let mut chains = Reassembler::default();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut write_err = None;
    // Every other frame is written straight from its decoded fields into one reused line.
    let mut writer = inspect::FrameWriter::new(profile, signal, args.direction);
    let mut line = Vec::with_capacity(1024);
    // Whole captures are decoded as one arrival: timing gaps are unknown in a file.
    // Each frame is lent by the decoder and done with before the next: none is allocated.
    decoder.feed_lent(&bytes, Instant::now(), |item| {
        if write_err.is_some() {
            return;
        }
        line.clear();
        match item {
            LentItem::Frame { frame, .. } if is_chain_part(frame) => {
                let mut obj = inspect::frame_json(frame);
                if let (Ok(t), Some(tj)) = (Telegram::from_frame(frame), obj.get_mut("telegram")) {
                    inspect::add_eep_json(tj, &t, writer.profile_for(t.rorg), args.direction);
                    let outcome = chains.push(&t, Instant::now());
                    add_chain_json(tj, &t, outcome, profile, args.direction);
                }
                let _ = serde_json::to_writer(&mut line, &serde_json::Value::Object(obj));
            }
            LentItem::Frame { frame, .. } => writer.write(&mut line, frame),
            LentItem::Event(ev) => {
                if !args.events {
                    return;
                }
                let _ = serde_json::to_writer(&mut line, &inspect::event_json(&ev));
            }
        };
        line.push(b'\n');
        if let Err(e) = out.write_all(&line) {
            write_err = Some(e);
        }
    });
    if let Some(e) = write_err {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(e).context("writing to stdout");
    }
    out.flush().context("writing to stdout")?;
    let c = decoder.counters();
    let pending = decoder.pending().len();
    if args.payload.is_some() {
        if args.eep.is_none() {
            eprintln!(
                "decoded one radio telegram; its values need the sensor's EEP: add --eep RR-FF-TT (e.g. --eep A5-02-05)"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "decoded {} frames from {} bytes ({} discarded, {} header CRC errors, {} data CRC errors, {} empty headers, {} bytes incomplete at end)",
        c.frames,
        c.bytes,
        c.discarded_bytes,
        c.header_crc_errors,
        c.data_crc_errors,
        c.empty_frames,
        pending
    );
    let cc = chains.counters();
    if cc.parts + cc.rejected + cc.duplicates > 0 {
        eprintln!(
            "chained messages: {} parts, {} reassembled, {} incomplete ({} still waiting at end), {} parts rejected, {} repeated",
            cc.parts,
            cc.completed,
            cc.incomplete() + chains.pending() as u64,
            chains.pending(),
            cc.rejected,
            cc.duplicates
        );
    }
    if c.bytes > 0 && c.frames == 0 {
        eprintln!(
            "{}",
            no_frame_hint(&bytes, args.hex.is_some(), args.eep.as_deref())
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// True for a RADIO_ERP1 frame carrying a chained-message part (RORG 0x40).
fn is_chain_part(frame: &enocean_agent::esp3::Frame) -> bool {
    frame.packet_type() == enocean_agent::esp3::PacketType::RadioErp1
        && frame.data().first() == Some(&rorg::CDM)
}

/// Adds `chain` to the JSON of a 0x40 part: its SEQ and IDX and what the reassembler made of it
/// (`pending`, `duplicate`, `rejected` with `error`, or `complete` with the reassembled telegram
/// under `reassembled`, decoded like any telegram).
fn add_chain_json(
    tj: &mut serde_json::Value,
    t: &Telegram,
    outcome: Outcome,
    profile: Option<&enocean_agent::eep::Profile>,
    direction: Option<u8>,
) {
    let first = t.payload.first().copied();
    let mut chain = serde_json::json!({
        "seq": first.map(|b| b >> 6),
        "idx": first.map(|b| b & 0x3F),
    });
    match outcome {
        Outcome::Pending => chain["result"] = "pending".into(),
        Outcome::Duplicate => chain["result"] = "duplicate".into(),
        Outcome::Rejected(e) => {
            chain["result"] = "rejected".into();
            chain["error"] = e.to_string().into();
        }
        Outcome::Complete(inner) => {
            chain["result"] = "complete".into();
            let mut rj = inspect::telegram_json(&inner);
            inspect::add_eep_json(&mut rj, &inner, profile, direction);
            chain["reassembled"] = rj;
        }
    }
    tj["chain"] = chain;
}

fn read_input(args: &Args) -> Result<Vec<u8>> {
    if let Some(text) = &args.hex {
        return parse_hex(text).map_err(|e| anyhow::anyhow!("--hex: {e}"));
    }
    let Some(path) = &args.input else {
        bail!("give a capture file, - for stdin, --hex or --payload");
    };
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        io::stdin()
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
    } else {
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(bytes)
}

/// Bytes from hex as users paste it: `55 00 0A`, `55:00:0A`, `0x55, 0x00`, `55000A`. An error
/// names the first character that is not a hex digit and its position (1-based, in characters),
/// or says that a digit is missing.
pub(crate) fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let mut digits = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let token_start = i == 0 || is_separator(chars[i - 1]);
        if is_separator(c) {
            i += 1;
            continue;
        }
        if token_start && c == '0' && matches!(chars.get(i + 1), Some('x' | 'X')) {
            i += 2;
            continue;
        }
        if !c.is_ascii_hexdigit() {
            return Err(format!(
                "{c:?} at position {} is not a hex digit (0-9, A-F){}",
                i + 1,
                if c.is_ascii_alphanumeric() {
                    ""
                } else {
                    "; separate bytes with spaces, colons or commas"
                }
            ));
        }
        digits.push(c);
        i += 1;
    }
    if digits.is_empty() {
        return Err("no hex digits".into());
    }
    if !digits.len().is_multiple_of(2) {
        return Err(format!(
            "{} hex digits, an odd number: every byte is two digits (write 05, not 5)",
            digits.len()
        ));
    }
    hex::decode(&digits).map_err(|e| e.to_string())
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || c == ':' || c == ','
}

/// A telegram from a bare radio payload: RORG and data bytes, optionally followed by the sender
/// ID and status when the RORG's length is fixed (4BS, 1BS, RPS); `--sender` and `--status`
/// otherwise (default 00000000 and 00).
fn payload_telegram(text: &str, sender: Option<&str>, status: Option<&str>) -> Result<Telegram> {
    let bytes = parse_hex(text).map_err(|e| anyhow::anyhow!("--payload: {e}"))?;
    let Some((&rorg_byte, data)) = bytes.split_first() else {
        bail!("--payload: empty");
    };
    let fixed = match rorg_byte {
        rorg::BS4 => Some(4),
        rorg::BS1 | rorg::RPS => Some(1),
        _ => None,
    };
    let (data, trailing) = match fixed {
        Some(n) if data.len() == n + 5 => (&data[..n], Some(&data[n..])),
        _ => (data, None),
    };
    if let Some(n) = fixed
        && data.len() != n
    {
        bail!(
            "--payload: RORG {rorg_byte:02X} ({}) carries {n} data byte(s), {} given: write RORG and {n} data byte(s), optionally followed by the sender ID (4 bytes) and status",
            enocean_agent::erp1::rorg::name(rorg_byte).unwrap_or("?"),
            data.len()
        );
    }
    if data.is_empty() {
        bail!("--payload: only a RORG; write the data bytes after it");
    }
    let mut sender_id = 0u32;
    let mut status_byte = 0u8;
    if let Some(t) = trailing {
        sender_id = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
        status_byte = t[4];
        if sender.is_some() || status.is_some() {
            bail!(
                "--payload already ends with a sender ID and status: leave out --sender and --status"
            );
        }
    }
    if let Some(s) = sender {
        sender_id = enocean_agent::device::parse_id(s)
            .map_err(|e| anyhow::anyhow!("--sender: {e} (8 hex digits, e.g. 0180A3F2)"))?;
    }
    if let Some(s) = status {
        let b = parse_hex(s).map_err(|e| anyhow::anyhow!("--status: {e}"))?;
        let [b] = b[..] else {
            bail!(
                "--status: one byte in hex (e.g. 00 or 30), {} given",
                b.len()
            );
        };
        status_byte = b;
    }
    let mut erp1 = vec![rorg_byte];
    erp1.extend_from_slice(data);
    erp1.extend_from_slice(&sender_id.to_be_bytes());
    erp1.push(status_byte);
    Telegram::from_parts(&erp1, &[]).map_err(|e| anyhow::anyhow!("--payload: {e}"))
}

/// What to say when bytes were given but no ESP3 frame was in them.
fn no_frame_hint(bytes: &[u8], from_hex: bool, eep: Option<&str>) -> String {
    let mut msg = format!(
        "no ESP3 frame in these {} bytes (a frame starts with 55 and its header CRC must match)",
        bytes.len()
    );
    if let Some(name) = bytes
        .first()
        .filter(|_| from_hex && bytes.len() <= 32)
        .and_then(|&b| enocean_agent::erp1::rorg::name(b))
    {
        let spaced: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
        msg.push_str(&format!(
            "; this looks like a radio payload (RORG {:02X}, {name}): try --payload \"{}\" --eep {}",
            bytes[0],
            spaced.join(" "),
            eep.unwrap_or("RR-FF-TT")
        ));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_as_users_paste_it() {
        assert_eq!(
            parse_hex("A5 00:fa,0xFA 0a"),
            Ok(vec![0xA5, 0, 0xFA, 0xFA, 0x0A])
        );
        assert_eq!(parse_hex("55000A"), Ok(vec![0x55, 0, 0x0A]));
        let e = parse_hex("55Z").unwrap_err();
        assert!(e.contains("'Z' at position 3"), "{e}");
        let e = parse_hex("55 0").unwrap_err();
        assert!(e.contains("odd number"), "{e}");
        assert!(parse_hex(" ").is_err());
    }

    #[test]
    fn payload_with_or_without_sender_and_status() {
        let t = payload_telegram("A5 00 FA FA 0A", None, None).unwrap();
        assert_eq!(
            (t.rorg, t.payload.as_slice(), t.sender, t.status),
            (0xA5, &[0, 0xFA, 0xFA, 0x0A][..], 0, 0)
        );
        let t = payload_telegram("A5 00 FA FA 0A 01 23 45 67 80", None, None).unwrap();
        assert_eq!((t.sender, t.status), (0x0123_4567, 0x80));
        let t = payload_telegram("F6 50", Some("FEF1A2B3"), Some("30")).unwrap();
        assert_eq!(
            (t.sender, t.status, t.payload.as_slice()),
            (0xFEF1_A2B3, 0x30, &[0x50][..])
        );
        assert!(payload_telegram("A5 00 FA", None, None).is_err());
        assert!(payload_telegram("A5", None, None).is_err());
        assert!(payload_telegram("A5 00 FA FA 0A 01 23 45 67 80", Some("01020304"), None).is_err());
        let t = payload_telegram("D2 04 60 80", Some("01020304"), None).unwrap();
        assert_eq!(t.payload, vec![0x04, 0x60, 0x80]);
    }
}
