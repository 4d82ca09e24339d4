//! The `decode` command as a user runs it: the real binary on files, stdin and hex.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::Value;

fn agent(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = common::agent_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is JSON"))
        .collect()
}

#[test]
fn decodes_the_sample_capture() {
    let path = common::data_path("sample.esp3");
    let out = agent(&["decode", path.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = lines(&out);
    assert_eq!(frames.len(), 20);
    for f in &frames {
        assert_eq!(f["packet_type"], 1);
        assert_eq!(f["packet_type_name"], "RADIO_ERP1");
        let t = &f["telegram"];
        for key in [
            "rorg",
            "sender",
            "status",
            "repeater_count",
            "payload",
            "dbm",
            "destination",
            "sub_telegrams",
            "security_level",
        ] {
            assert!(t.get(key).is_some(), "missing {key} in {t}");
        }
        assert_eq!(t["sender"].as_str().unwrap().len(), 8);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("decoded 20 frames"), "{stderr}");
}

#[test]
fn hex_argument_and_stdin_give_the_same_output() {
    let hex = "55000A0701EBA5000055080181B7440001FFFFFFFF2D0075";
    let a = agent(&["decode", "--hex", hex], None);
    let b = agent(&["decode", "-"], Some(&hex::decode(hex).unwrap()));
    assert!(a.status.success() && b.status.success());
    assert_eq!(a.stdout, b.stdout);
    let v = &lines(&a)[0];
    assert_eq!(v["data"], "A5000055080181B74400");
    assert_eq!(v["optional"], "01FFFFFFFF2D00");
    assert_eq!(v["telegram"]["rorg"], "A5");
    assert_eq!(v["telegram"]["sender"], "0181B744");
    assert_eq!(v["telegram"]["payload"], "00005508");
    assert_eq!(v["telegram"]["dbm"], -45);
    assert_eq!(v["telegram"]["destination"], "FFFFFFFF");
}

#[test]
fn send_case_dbm_is_null_and_non_radio_frames_have_no_telegram() {
    // A RESPONSE RET_OK, then an RPS telegram whose dBm byte is the 0xFF send-case value.
    let out = agent(
        &[
            "decode",
            "--hex",
            "55 00 01 00 02 65 00 00 55000707017AF6000181B7440003FFFFFFFFFF0001",
        ],
        None,
    );
    let v = lines(&out);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["packet_type_name"], "RESPONSE");
    assert!(v[0].get("telegram").is_none());
    assert_eq!(v[1]["telegram"]["dbm"], Value::Null);
}

#[test]
fn events_flag_reports_garbage_and_crc_errors() {
    let out = agent(&["decode", "--events", "--hex", "0102 55000A0701EC"], None);
    let v = lines(&out);
    assert_eq!(v[0]["event"], "discarded_non_sync_bytes");
    assert_eq!(v[0]["count"], 2);
    assert_eq!(v[1]["event"], "header_crc8_mismatch");
    assert_eq!(v[1]["offset"], 2);
    // Bytes in, no frame out: exit code 2, so scripts can tell.
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let out = agent(&["decode", "--hex", "55Z"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--hex"));
    let out = agent(&["decode", "/nonexistent/capture.esp3"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/capture.esp3"));
}

/// The example of the docs: a bare radio payload, as FHEM and the EEP documents show telegrams.
#[test]
fn payload_as_logs_show_it_is_decoded() {
    let out = agent(
        &["decode", "--payload", "A5 00 FA FA 0A", "--eep", "A5-04-01"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = &lines(&out)[0]["telegram"];
    assert_eq!(v["rorg"], "A5");
    assert_eq!(v["payload"], "00FAFA0A");
    assert_eq!(v["sender"], "00000000");
    assert_eq!(v["eep"], "A5-04-01");
    assert_eq!(v["values"]["humidity"]["value"], 100.0);
    assert_eq!(v["values"]["temperature"]["raw"], 250);

    // Sender and status: appended to the payload, or given as options — the same telegram.
    let a = agent(
        &[
            "decode",
            "--payload",
            "A5 00 FA FA 0A 01 80 A3 F2 00",
            "--eep",
            "A5-04-01",
        ],
        None,
    );
    let b = agent(
        &[
            "decode",
            "--payload",
            "A500FAFA0A",
            "--sender",
            "0180a3f2",
            "--status",
            "00",
            "--eep",
            "A5-04-01",
        ],
        None,
    );
    assert!(a.status.success() && b.status.success());
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(lines(&a)[0]["telegram"]["sender"], "0180A3F2");

    // An RPS rocker needs its status byte (T21, NU).
    let out = agent(
        &[
            "decode",
            "--payload",
            "F6 50",
            "--status",
            "30",
            "--eep",
            "F6-02-01",
        ],
        None,
    );
    let v = &lines(&out)[0]["telegram"];
    assert_eq!(v["status"], 0x30);
    assert_eq!(v["values"]["pressed"]["value"], true);

    // A profile of another RORG: a warning instead of silently empty values.
    let out = agent(&["decode", "--payload", "F6 50", "--eep", "A5-04-01"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("decodes RORG A5 telegrams, this payload is RORG F6"),
        "{err}"
    );

    // A wrong length for a fixed-length RORG says what is expected.
    let out = agent(
        &["decode", "--payload", "A5 00 FA", "--eep", "A5-04-01"],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 data byte(s), 2 given"), "{err}");
}

#[test]
fn hex_without_a_frame_suggests_payload() {
    let out = agent(
        &["decode", "--hex", "A5 00 FA FA 0A", "--eep", "A5-04-01"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("this looks like a radio payload")
            && err.contains("--payload \"A5 00 FA FA 0A\" --eep A5-04-01"),
        "{err}"
    );
}

#[test]
fn hex_errors_name_the_character_and_its_place() {
    let out = agent(&["decode", "--hex", "55Z"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'Z' at position 3 is not a hex digit"),
        "{err}"
    );
    let out = agent(&["decode", "--hex", "55 00 0"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("odd number"), "{err}");
    let out = agent(&["decode", "--payload", "A5 00 FA FA 0G"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--payload: 'G' at position 14"), "{err}");
}
