//! `check-config` on the real binary: every problem in one run, the shipped example validates once
//! its secret files exist, and a missing file says where it looked.

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

fn example() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/config.example.toml"),
    )
    .unwrap()
}

/// `FILE:LINE:COLUMN` of the line of `text` holding `needle`, at `key`'s column.
fn place_of(file: &Path, text: &str, needle: &str, key: &str) -> String {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle) && !l.trim_start().starts_with('#'))
        .unwrap();
    let col = line[..line.find(key).unwrap()].chars().count() + 1;
    format!("{}:{}:{}", file.display(), i + 1, col)
}

#[test]
fn shipped_example_reports_both_missing_secrets_then_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = example();
    std::fs::write(&path, &text).unwrap();

    let (code, out, err) = check_config(&path);
    assert_eq!(code, 78, "{err}");
    assert!(out.is_empty(), "{out}");
    let token = place_of(&path, &text, "token_file = \"webhook-token\"", "token_file");
    let hmac = place_of(
        &path,
        &text,
        "secret_file = \"webhook-hmac\"",
        "secret_file",
    );
    for (at, key, file) in [
        (&token, "webhook[0].auth.token_file", "webhook-token"),
        (&hmac, "webhook[0].signing.secret_file", "webhook-hmac"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("{key} not reported:\n{err}"));
        assert!(line.contains(&format!("{at}: key `{key}`")), "{line}");
        assert!(line.contains(file), "{line}");
        assert!(line.contains("create it"), "{line}");
    }
    assert!(err.contains("2 problems"), "{err}");

    std::fs::write(dir.path().join("webhook-token"), "token-3f9a\n").unwrap();
    std::fs::write(dir.path().join("webhook-hmac"), "hmac-81c2\n").unwrap();
    let (code, out, err) = check_config(&path);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("configuration OK"), "{err}");
    assert!(
        !out.contains("token-3f9a") && !out.contains("hmac-81c2"),
        "{out}"
    );
    let printed: enocean_agent::config::Config = toml::from_str(&out).unwrap();
    assert_eq!(printed.gateway.id, "lobby-pi");
    assert_eq!(printed.devices.len(), 2);
}

#[test]
fn every_problem_of_a_broken_file_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    // The same mistakes in two webhooks, a bad device and an EEP that is not one.
    let text = "\
[gateway]
id = \"gw\"
[[device]]
id = \"0180A3F2\"
eep = \"A5-02\"
[[device]]
id = \"0180A3\"
[[webhook]]
name = \"one\"
url = \"http://127.0.0.1:9/one\"
batch_max = 0
[[webhook]]
name = \"two\"
url = \"http://127.0.0.1:9/two\"
batch_max = 0
";
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = check_config(&path);
    assert_eq!(code, 78, "{err}");
    assert!(out.is_empty(), "{out}");
    let p = path.display();
    for expected in [
        format!("{p}:5:1: key `device[0].eep`"),
        format!("{p}:7:1: key `device[1].id`"),
        format!("{p}:11:1: key `webhook[0].batch_max`"),
        format!("{p}:15:1: key `webhook[1].batch_max`"),
    ] {
        assert!(err.contains(&expected), "{expected} missing:\n{err}");
    }
    assert!(err.contains("4 problems"), "{err}");

    // `run` reports the same problems (all of them) and starts nothing.
    let out = common::agent_command()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let run_err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{run_err}");
    assert!(
        run_err.contains(&format!("{p}:11:1: key `webhook[0].batch_max`")),
        "{run_err}"
    );
    assert!(
        run_err.contains(&format!("{p}:15:1: key `webhook[1].batch_max`")),
        "{run_err}"
    );
    assert!(
        run_err.contains(&format!("{p}:5:1: key `device[0].eep`")),
        "{run_err}"
    );
}

#[test]
fn missing_file_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere.toml");
    let (code, _, err) = check_config(&path);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("looked for the configuration"), "{err}");
    assert!(!err.contains(":0:0"), "{err}");
}
