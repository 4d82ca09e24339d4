//! `enocean-agent decode`: ESP3 bytes → one JSON object per frame on stdout.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use enocean_agent::chain::{Outcome, Reassembler};
use enocean_agent::erp1::{Telegram, rorg};
use enocean_agent::esp3::{Decoder, Item};
use enocean_agent::inspect;

/// Arguments of `decode`.
#[derive(clap::Args)]
pub struct Args {
    /// Capture file with raw ESP3 bytes, or `-` for stdin.
    #[arg(conflicts_with = "hex", required_unless_present = "hex")]
    input: Option<PathBuf>,
    /// Decode these bytes given as hex (spaces and colons allowed) instead of a file.
    #[arg(long)]
    hex: Option<String>,
    /// Also print decoder events (discarded bytes, CRC mismatches) as JSON lines.
    #[arg(long)]
    events: bool,
    /// Decode radio telegrams with this EEP profile (e.g. A5-02-05).
    #[arg(long, value_name = "RR-FF-TT")]
    eep: Option<String>,
    /// Direction for two-direction profiles (1 = from the device, 2 = to it).
    #[arg(long, value_name = "N", requires = "eep", value_parser = clap::value_parser!(u8).range(1..=2))]
    direction: Option<u8>,
    /// Also load profiles from this directory (adds to or overrides the built-in ones).
    #[arg(long, value_name = "DIR")]
    profiles: Option<PathBuf>,
}

/// Runs `decode`; exit code 0 when at least one frame was found or the input was empty, 2 when
/// bytes were given but no frame was found.
pub fn run(args: Args) -> Result<ExitCode> {
    let bytes = read_input(&args)?;
    let library = crate::cmd::profiles::load_library(args.profiles.as_deref())?;
    let profile = match &args.eep {
        Some(eep) => Some(library.get_str(eep)?),
        None => None,
    };
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
    decoder.feed(&bytes, Instant::now(), |item| {
        if write_err.is_some() {
            return;
        }
        line.clear();
        match item {
            Item::Frame { frame, .. } if is_chain_part(&frame) => {
                let mut obj = inspect::frame_json(&frame);
                if let (Ok(t), Some(tj)) = (Telegram::from_frame(&frame), obj.get_mut("telegram")) {
                    inspect::add_eep_json(tj, &t, writer.profile_for(t.rorg), args.direction);
                    let outcome = chains.push(&t, Instant::now());
                    add_chain_json(tj, &t, outcome, profile, args.direction);
                }
                let _ = serde_json::to_writer(&mut line, &serde_json::Value::Object(obj));
            }
            Item::Frame { frame, .. } => writer.write(&mut line, &frame),
            Item::Event(ev) => {
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
        let clean: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':' && *c != ',')
            .collect();
        if !clean.len().is_multiple_of(2) {
            bail!("--hex: odd number of hex digits ({})", clean.len());
        }
        return hex::decode(&clean).map_err(|e| anyhow::anyhow!("--hex: {e}"));
    }
    let path = args.input.as_ref().expect("clap requires input or --hex");
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
