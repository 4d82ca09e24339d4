//! The built binary: `decode --eep` and `profiles check|show|list`.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enocean-agent"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eep-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// A5-02-05 data telegram with DB1 = 0xFF (0 °C), then its teach-in (variant 2, manufacturer 03E).
const DATA: &str = "55000A0701EBA50000FF08DEADBEEF0003FFFFFFFFFF0068";
const TEACH_IN: &str = "55000A0701EBA508283E80FF9B12800001FFFFFFFF440099";

fn decode(args: &[&str]) -> Vec<serde_json::Value> {
    let out = bin().arg("decode").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn decode_with_eep_gives_values_and_teach_in() {
    let hex = format!("{DATA}{TEACH_IN}");
    let lines = decode(&["--eep", "A5-02-05", "--hex", &hex]);
    assert_eq!(lines.len(), 2);
    let t = &lines[0]["telegram"];
    assert_eq!(t["eep"], "A5-02-05");
    assert_eq!(t["values"]["temperature"]["value"], 0.0);
    assert_eq!(t["values"]["temperature"]["unit"], "°C");
    assert_eq!(t["values"]["temperature"]["shortcut"], "TMP");
    assert_eq!(t["values"]["temperature"]["raw"], 255);
    assert!(t["teach_in"].is_null());
    let ti = &lines[1]["telegram"];
    assert_eq!(ti["teach_in"]["eep"], "A5-02-05");
    assert_eq!(ti["teach_in"]["manufacturer"], "03E");
    assert_eq!(ti["values"], serde_json::json!({}));
    assert!(ti["eep"].is_null(), "a teach-in is never a reading");
}

#[test]
fn decode_without_eep_still_finds_teach_in() {
    let lines = decode(&["--hex", &format!("{DATA}{TEACH_IN}")]);
    assert!(lines[0]["telegram"]["eep"].is_null());
    assert_eq!(lines[0]["telegram"]["values"], serde_json::json!({}));
    assert_eq!(lines[1]["telegram"]["teach_in"]["func"], "02");
    assert_eq!(lines[1]["telegram"]["teach_in"]["type"], "05");
}

#[test]
fn decode_rejects_an_unknown_eep() {
    let out = bin()
        .args(["decode", "--eep", "A5-7F-7F", "--hex", DATA])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("A5-7F-7F"));
}

#[test]
fn profiles_check_names_file_and_field() {
    let dir = temp_dir("check");
    std::fs::write(
        dir.join("A5-02-05.toml"),
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/eep-profiles/A5-02-05.toml"
        ))
        .unwrap(),
    )
    .unwrap();
    let ok = bin()
        .args(["profiles", "check"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let bad = r#"
eep = "A5-02-01"
title = "broken"
[[case]]
[[case.field]]
shortcut = "TMP"
key = "temprature"
offset = 16
size = 8
"#;
    std::fs::write(dir.join("A5-02-01.toml"), bad).unwrap();
    let wrong_vector = r#"
eep = "A5-02-02"
title = "wrong vector"
[[case]]
[[case.field]]
shortcut = "TMP"
key = "temperature"
offset = 16
size = 8
scale = { raw = [255, 0], value = [-30, 10] }
[[vector]]
payload = "0000FF08"
expect = { temperature = -29.0 }
[[vector]]
payload = "00000008"
expect = { temperature = 10.0 }
"#;
    std::fs::write(dir.join("A5-02-02.toml"), wrong_vector).unwrap();
    let out = bin()
        .args(["profiles", "check"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("A5-02-01.toml") && text.contains("field TMP") && text.contains("temprature"),
        "{text}"
    );
    assert!(
        text.contains("A5-02-02.toml") && text.contains("vector[0] key temperature"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn profiles_list_and_show() {
    let out = bin().args(["profiles", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() >= 100, "{text}");
    assert!(text.contains("A5-04-01\t"));
    // The count and the families, on stderr.
    let lib = enocean_agent::eep::Library::builtin().unwrap();
    let fams = lib.families();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let head = format!("{} profiles in {} families", lib.len(), fams.len());
    assert!(stderr.starts_with(&head), "{stderr}");
    assert!(
        stderr.contains("A5-02 (25)") && stderr.contains("D2-50 (2)"),
        "{stderr}"
    );
    // `--families`: family, profiles, vectors, title.
    let out = bin()
        .args(["profiles", "list", "--families"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), fams.len());
    assert!(text.contains("A5-38\t2\t"), "{text}");
    assert!(text.contains("\tHeat Recovery Ventilation\n"), "{text}");
    let out = bin()
        .args(["profiles", "show", "A5-04-01"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("HUM") && text.contains("humidity") && text.contains("[%]"),
        "{text}"
    );
}

#[test]
fn signal_telegrams_are_decoded_for_any_device() {
    // D0 energy status (MID 6) of 80 %, with or without --eep for the sender's own profile.
    let frame = "55000807013DD00650010203040001FFFFFFFF4000E7";
    for args in [
        vec!["--hex", frame],
        vec!["--eep", "A5-02-05", "--hex", frame],
    ] {
        let lines = decode(&args);
        let t = &lines[0]["telegram"];
        assert_eq!(t["eep"], "D0-00-00");
        assert_eq!(t["values"]["energy_level"]["value"], 80.0);
        assert_eq!(t["values"]["message_id"]["value"], 6);
    }
}

/// A chained VLD message (two RORG 0x40 telegrams) printed by `decode`: the first part is
/// pending, the second completes it, and the reassembled D2-50 telegram is decoded.
#[test]
fn decode_reassembles_chained_messages() {
    use enocean_agent::chain;
    use enocean_agent::esp3::{Frame, PacketType};
    // D2-50 basic status: exhaust air only, outdoor air raw 127 (+63 °C), 14 bytes.
    let status = [
        0x4E, 0x0F, 0xFF, 0xE4, 0x7F, 0xFF, 0x52, 0x55, 0x46, 0xFF, 0xD2, 0xC0, 0xFF, 0xF4,
    ];
    let mut bytes = Vec::new();
    for part in chain::split(0xD2, &status, 1, 10, 13).unwrap() {
        let mut data = vec![0x40];
        data.extend_from_slice(&part);
        data.extend_from_slice(&[0x01, 0x90, 0x00, 0x01, 0x00]);
        let frame = Frame::new(
            PacketType::RadioErp1,
            &data,
            &[1, 0xFF, 0xFF, 0xFF, 0xFF, 0x40, 0],
        );
        bytes.extend(frame.unwrap().encode());
    }
    // A lone part of another chain that never completes.
    let mut data = vec![0x40, 0x80, 0x00, 0x20, 0xD2, 1, 2, 3];
    data.extend_from_slice(&[0x01, 0x90, 0x00, 0x02, 0x00]);
    bytes.extend(
        Frame::new(PacketType::RadioErp1, &data, &[])
            .unwrap()
            .encode(),
    );
    let hex = hex::encode(&bytes);
    let out = bin()
        .args(["decode", "--eep", "D2-50-00", "--hex", &hex])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let first = &lines[0]["telegram"]["chain"];
    assert_eq!(first["result"], "pending");
    assert_eq!(
        (first["seq"].as_u64(), first["idx"].as_u64()),
        (Some(1), Some(0))
    );
    let second = &lines[1]["telegram"]["chain"];
    assert_eq!(second["result"], "complete");
    let inner = &second["reassembled"];
    assert_eq!(inner["rorg"], "D2");
    assert_eq!(inner["payload"], hex::encode_upper(status));
    assert_eq!(inner["eep"], "D2-50-00");
    assert_eq!(inner["values"]["outdoor_air_temperature"]["value"], 63.0);
    assert_eq!(
        inner["values"]["ventilation_mode"]["value"],
        "exhaust_air_only"
    );
    assert_eq!(lines[2]["telegram"]["chain"]["result"], "pending");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "chained messages: 3 parts, 1 reassembled, 1 incomplete (1 still waiting at end)"
        ),
        "{stderr}"
    );
}

#[test]
fn decode_with_a_manufacturer_variant_uses_its_own_profile() {
    // The same 4BS bytes: the EEP reads DB3 as the supply voltage and RS = 0 (ILL1, DB1); the
    // Eltako variant reads DB3 as the low illuminance because DB2 = 0.
    let eep = decode(&["--payload", "A5 FF 00 00 08", "--eep", "A5-06-01"]);
    let eltako = decode(&["--payload", "A5 FF 00 00 08", "--eep", "a5-06-01-eltako"]);
    let (e, v) = (&eep[0]["telegram"], &eltako[0]["telegram"]);
    assert_eq!(e["values"]["supply_voltage"]["value"], 5.1);
    assert_eq!(e["values"]["illuminance"]["value"], 600.0);
    assert_eq!(v["eep"], "A5-06-01-ELTAKO");
    assert_eq!(v["values"]["illuminance"]["value"], 100.0);
    assert!(v["values"].get("supply_voltage").is_none(), "{v}");
    // RPS status telegrams of an Eltako shutter actuator.
    let fsb = decode(&[
        "--payload",
        "F6 50",
        "--status",
        "30",
        "--eep",
        "F6-3F-7F-ELTAKO_FSB",
    ]);
    assert_eq!(
        fsb[0]["telegram"]["values"]["end_position"]["value"],
        "closed"
    );
    // A variant that does not exist is named.
    let out = bin()
        .args(["decode", "--payload", "F6 50", "--eep", "F6-3F-7F-NOSUCH"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("F6-3F-7F-NOSUCH"), "{text}");
}
