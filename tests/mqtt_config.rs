//! `[[mqtt]]` in the configuration, through the real binary: `check-config` prints it with the
//! password redacted, and every mistake is exit 78 with the file, line and key.

mod common;

use std::path::Path;

fn check_config(config: &Path) -> (i32, String, String) {
    let out = common::agent_command()
        .args(["check-config", "--config"])
        .arg(config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const HEAD: &str = "[storage]\npath = \"/tmp/never-created/outbox.db\"\n";

#[test]
fn check_config_prints_mqtt_outputs_without_their_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "from-file-77aa\n").unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "{HEAD}\n[[mqtt]]\nname = \"inline\"\nurl = \"mqtt://127.0.0.1\"\nusername = \"u\"\n\
             password = \"inline-secret-91bc\"\n\n[[mqtt]]\nname = \"file\"\n\
             url = \"mqtt://127.0.0.1:1884\"\nusername = \"u\"\npassword_file = \"pw\"\n\
             discovery = true\nprotocol = \"5\"\n"
        ),
    )
    .unwrap();
    let (code, out, err) = check_config(&path);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("inline-secret-91bc") && !err.contains("inline-secret-91bc"));
    assert!(!out.contains("from-file-77aa"));
    let printed: toml::Table = toml::from_str(&out).expect("TOML");
    let mqtt = printed["mqtt"].as_array().unwrap();
    assert_eq!(mqtt[0]["password"].as_str(), Some("[redacted]"));
    assert_eq!(
        mqtt[0]["topic"].as_str(),
        Some("enocean/{gateway}/{sensor_id}")
    );
    assert_eq!(mqtt[1]["password_file"].as_str(), Some("pw"));
    assert_eq!(mqtt[1]["protocol"].as_str(), Some("5"));
    assert_eq!(mqtt[1]["discovery"].as_bool(), Some(true));
}

#[test]
fn mqtt_mistakes_are_errors_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[[mqtt]]\nname = \"m\"\n";
    // (configuration after the head, line, key, a word of the message)
    let cases: &[(&str, usize, &str, &str)] = &[
        ("url = \"http://x\"\n", 5, "url", "mqtt://"),
        ("url = \"mqtt://u:p@x\"\n", 5, "url", "password_file"),
        (
            "url = \"mqtt://x\"\ntopic = \"a/#\"\n",
            6,
            "topic",
            "wildcards",
        ),
        (
            "url = \"mqtt://x\"\ntopic = \"a/{room}\"\n",
            6,
            "topic",
            "placeholder",
        ),
        (
            "url = \"mqtt://x\"\npassword = \"p\"\n",
            3,
            "username",
            "user name",
        ),
        (
            "url = \"mqtt://x\"\nusername = \"u\"\npassword = \"\"\n",
            7,
            "password",
            "empty",
        ),
        (
            "url = \"mqtt://x\"\nusername = \"u\"\npassword_file = \"nope\"\n",
            7,
            "password_file",
            "cannot read",
        ),
        (
            "url = \"mqtt://x\"\nca_file = \"ca.pem\"\n",
            6,
            "ca_file",
            "mqtts://",
        ),
        (
            "url = \"mqtts://x\"\nca_file = \"missing.pem\"\n",
            6,
            "ca_file",
            "cannot read",
        ),
        (
            "url = \"mqtt://x\"\ndiscovery = true\npayload = { v = \"{{values.temperature.value}}\" }\n",
            6,
            "discovery",
            "value_topics",
        ),
        ("url = \"mqtt://x\"\nqos = 2\n", 6, "qos", "unknown field"),
        (
            "url = \"mqtt://x\"\nprotocol = \"4\"\n",
            6,
            "protocol",
            "unknown variant",
        ),
    ];
    for (i, (tail, line, key, word)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, format!("{HEAD}{base}{tail}")).unwrap();
        let (code, out, err) = check_config(&path);
        assert_eq!(code, 78, "case {i}: {out}{err}");
        let place = format!("c{i}.toml:{line}:");
        assert!(err.contains(&place), "case {i}: want {place} in {err}");
        assert!(err.contains(key) && err.contains(word), "case {i}: {err}");
        assert!(out.is_empty(), "case {i}: printed {out}");
    }
    // Names: unique among MQTT outputs; `mqtt:` is not a webhook name.
    let path = dir.path().join("dup.toml");
    std::fs::write(
        &path,
        format!("{HEAD}{base}url = \"mqtt://x\"\n{base}url = \"mqtt://y\"\n"),
    )
    .unwrap();
    let (code, _, err) = check_config(&path);
    assert_eq!(code, 78);
    assert!(
        err.contains("duplicate mqtt name") && err.contains("dup.toml:7:"),
        "{err}"
    );
    let path = dir.path().join("prefix.toml");
    std::fs::write(
        &path,
        format!("{HEAD}[[webhook]]\nname = \"mqtt:x\"\nurl = \"http://127.0.0.1/\"\n"),
    )
    .unwrap();
    let (code, _, err) = check_config(&path);
    assert_eq!(code, 78);
    assert!(err.contains("kept for MQTT outputs"), "{err}");
}

#[test]
fn a_client_key_that_does_not_belong_to_its_certificate_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = rcgen::generate_simple_self_signed(vec!["gateway".to_owned()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["gateway".to_owned()]).unwrap();
    std::fs::write(d.join("client.pem"), a.cert.pem()).unwrap();
    std::fs::write(d.join("other.key"), b.signing_key.serialize_pem()).unwrap();
    std::fs::write(d.join("empty.pem"), "").unwrap();
    let path = d.join("c.toml");
    std::fs::write(
        &path,
        format!(
            "{HEAD}[[mqtt]]\nname = \"m\"\nurl = \"mqtts://broker.lan\"\n\
             client_cert_file = \"client.pem\"\nclient_key_file = \"other.key\"\n"
        ),
    )
    .unwrap();
    let (code, _, err) = check_config(&path);
    assert_eq!(code, 78);
    assert!(
        err.contains("client_key_file") && err.contains("does not belong"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "no key material in messages");
    std::fs::write(
        &path,
        format!(
            "{HEAD}[[mqtt]]\nname = \"m\"\nurl = \"mqtts://broker.lan\"\nca_file = \"empty.pem\"\n"
        ),
    )
    .unwrap();
    let (code, _, err) = check_config(&path);
    assert_eq!(code, 78);
    assert!(
        err.contains("ca_file") && err.contains("no PEM certificate"),
        "{err}"
    );
}
