//! `decode` writes its JSON lines straight from the decoded fields (`inspect::FrameWriter`); its
//! output must stay byte for byte what the `serde_json::Value` views (`inspect::frame_json` +
//! `inspect::add_eep_json`, serialised) give, for every EEP, over frames of every kind.

mod common;

use enocean_agent::eep::{EepId, Library, Profile};
use enocean_agent::erp1::{Telegram, rorg};
use enocean_agent::esp3::{Decoder, Frame, Item, PacketType};
use enocean_agent::inspect;

/// Every frame of the shared vector files (all EEPs, teach-ins, signal and secure telegrams,
/// odd lengths), decoded from one stream.
fn frames() -> (Vec<u8>, Vec<Frame>) {
    let mut bytes = Vec::new();
    for line in include_str!("data/eep_vectors.jsonl").lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(h) = v["esp3_hex"].as_str() {
            bytes.extend(common::unhex(h));
        }
    }
    for line in include_str!("data/frames.jsonl").lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        bytes.extend(common::unhex(v["stream_hex"].as_str().unwrap()));
    }
    // Every golden vector of every profile, as a received telegram.
    let lib = Library::builtin().unwrap();
    for p in lib.iter() {
        for v in &p.vectors {
            let mut data = vec![p.id.rorg];
            data.extend(common::unhex(&v.payload.replace(' ', "")));
            data.extend([0x01, 0x02, 0x03, 0x04, v.status]);
            let optional = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x40, 0x00];
            Frame::new(PacketType::RadioErp1, &data, &optional)
                .unwrap()
                .encode_into(&mut bytes);
        }
    }
    let mut frames = Vec::new();
    Decoder::new().feed(&bytes, std::time::Instant::now(), |item| {
        if let Item::Frame { frame, .. } = item {
            frames.push(frame);
        }
    });
    (bytes, frames)
}

/// The reference: the `Value` views, as `decode` printed them before.
fn reference(
    frame: &Frame,
    profile: Option<&Profile>,
    signal: Option<&Profile>,
    dir: Option<u8>,
) -> String {
    let mut obj = inspect::frame_json(frame);
    if let (Ok(t), Some(tj)) = (Telegram::from_frame(frame), obj.get_mut("telegram")) {
        let p = if t.rorg == rorg::SIGNAL {
            signal
        } else {
            profile
        };
        inspect::add_eep_json(tj, &t, p, dir);
    }
    serde_json::Value::Object(obj).to_string()
}

#[test]
fn written_json_is_the_value_views_byte_for_byte_for_every_profile() {
    let lib = Library::builtin().unwrap();
    let signal = lib.get(EepId::new(0xD0, 0, 0));
    let (_, frames) = frames();
    assert!(frames.len() > 1000, "{} frames", frames.len());
    let mut line = Vec::new();
    let mut compared = 0;
    let mut decoded = 0;
    let profiles: Vec<&Profile> = lib.iter().collect();
    let mut check = |profile: Option<&Profile>, dir: Option<u8>, frame: &Frame| {
        let mut writer = inspect::FrameWriter::new(profile, signal, dir);
        line.clear();
        writer.write(&mut line, frame);
        let want = reference(frame, profile, signal, dir);
        assert_eq!(
            String::from_utf8_lossy(&line),
            want,
            "{:?} direction {dir:?}",
            profile.map(|p| &p.eep)
        );
        compared += 1;
        decoded += usize::from(want.contains("\"values\":{\""));
    };
    for (i, frame) in frames.iter().enumerate() {
        check(None, None, frame);
        let r = frame.data().first().copied();
        // Every profile of the frame's RORG over a share of the frames, its own among them.
        for (j, p) in profiles.iter().enumerate() {
            if Some(p.id.rorg) == r && (i + j) % 7 == 0 {
                check(Some(p), None, frame);
                if p.has_directions() {
                    check(Some(p), Some(2), frame);
                }
            }
        }
    }
    // One writer reused over all frames keeps no state from one frame to the next.
    let p = lib.get_str("A5-04-01").unwrap();
    let mut writer = inspect::FrameWriter::new(Some(p), signal, None);
    for frame in &frames {
        line.clear();
        writer.write(&mut line, frame);
        assert_eq!(
            String::from_utf8_lossy(&line),
            reference(frame, Some(p), signal, None)
        );
    }
    assert!(
        decoded > 500,
        "only {decoded} of {compared} lines had values"
    );
}

#[test]
fn decode_cli_prints_the_value_views_byte_for_byte() {
    let lib = Library::builtin().unwrap();
    let signal = lib.get(EepId::new(0xD0, 0, 0));
    let (bytes, frames) = frames();
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("vectors.esp3");
    std::fs::write(&capture, &bytes).unwrap();
    for eep in ["A5-04-01", "D2-01-12", "F6-02-01", "D5-00-01"] {
        let out = common::agent_command()
            .args(["decode", "--eep", eep])
            .arg(&capture)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = lib.get_str(eep).unwrap();
        let want: String = frames
            .iter()
            .map(|f| reference(f, Some(p), signal, None) + "\n")
            .collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "--eep {eep}");
    }
}
