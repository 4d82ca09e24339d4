//! Loading the configuration file: errors name file, line, column and key.

use std::path::Path;

use enocean_agent::config::Config;

fn parse(text: &str) -> Result<Config, enocean_agent::config::ConfigError> {
    Config::parse(text, Path::new("/etc/enocean-agent/config.toml"))
}

const GOOD: &str = r#"
[gateway]
id = "lobby-pi"
[serial]
port = "/dev/enocean"
[storage]
path = "/tmp/x/outbox.db"
commit_window = "500ms"
max_rows = 1000
[learn]
enabled = true
[log]
level = "info"
[[device]]
id = "0180A3F2"
eep = "A5-04-01"
name = "Office 2.14"
tags = { room = "2.14" }
[[webhook]]
name = "backend"
url = "https://example.invalid/enocean"
auth = { type = "bearer", token = "t" }
signing = { type = "hmac", secret = "s" }
devices = ["0180a3f2"]
backoff_base = "250ms"
"#;

#[test]
fn full_sketch_parses() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.gateway.id, "lobby-pi");
    assert_eq!(c.storage.commit_window.as_millis(), 500);
    assert_eq!(c.webhooks[0].devices.as_ref().unwrap()[0], "0180A3F2");
    assert_eq!(c.webhooks[0].max_retries, 2);
    assert_eq!(c.webhooks[0].deactivate_after, 5);
    assert_eq!(c.webhooks[0].backoff_base.as_millis(), 250);
    assert_eq!(c.devices[0].tags["room"], "2.14");
    assert!(c.learn.enabled);
}

#[test]
fn unknown_key_names_file_line_column_and_key() {
    let text = GOOD.replace("backoff_base = \"250ms\"", "backof_base = \"250ms\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("webhook[0].backof_base"));
    assert_eq!(e.line, 25);
    assert_eq!(e.column, 1);
    let msg = e.to_string();
    assert!(
        msg.starts_with("/etc/enocean-agent/config.toml:25:1: key `webhook[0].backof_base`"),
        "{msg}"
    );
}

#[test]
fn unknown_key_inside_inline_auth_table() {
    let text = GOOD.replace("token = \"t\"", "tokn = \"t\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line, 22);
    assert!(e.to_string().contains("tokn"), "{e}");
}

#[test]
fn unknown_template_reference_is_rejected_with_key() {
    let text = format!("{GOOD}[webhook.payload]\nx = {{ y = \"{{{{sensor.nmae}}}}\" }}\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("webhook[0].payload.x.y"));
    assert!(e.message.contains("sensor.nmae"), "{e}");
    assert!(e.line > 0);
}

#[test]
fn missing_secret_file_and_bad_whsec() {
    let text = GOOD.replace("token = \"t\"", "token_file = \"/nonexistent/token\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("webhook[0].auth.token_file"));
    assert_eq!(e.line, 22);
    let text = GOOD.replace(
        "signing = { type = \"hmac\", secret = \"s\" }",
        "signing = { type = \"standard-webhooks\", secret = \"not-whsec-value\" }",
    );
    let e = parse(&text).unwrap_err();
    assert!(!e.to_string().contains("not-whsec-value"), "{e}");
    assert_eq!(e.key.as_deref(), Some("webhook[0].signing.secret"));
}

#[test]
fn bad_url_route_and_duplicate_name() {
    let e = parse(&GOOD.replace("https://example.invalid/enocean", "ftp://x")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("webhook[0].url"));
    let e = parse(&GOOD.replace("0180a3f2", "xyz")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("webhook[0].devices"));
    let dup = format!("{GOOD}[[webhook]]\nname = \"backend\"\nurl = \"http://127.0.0.1:1/\"\n");
    let e = parse(&dup).unwrap_err();
    assert!(e.message.contains("duplicate"), "{e}");
    assert_eq!(e.line, 27);
}

#[test]
fn wrong_type_names_key() {
    let e = parse(&GOOD.replace("max_rows = 1000", "max_rows = \"many\"")).unwrap_err();
    assert_eq!(e.line, 9);
    assert!(e.to_string().contains("max_rows") || e.key.is_some(), "{e}");
}

#[test]
fn absurd_durations_are_rejected() {
    let e =
        parse(&GOOD.replace("commit_window = \"500ms\"", "commit_window = \"9999h\"")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("storage.commit_window"));
    assert_eq!(e.line, 8);
    let e = parse(&GOOD.replace("backoff_base = \"250ms\"", "backoff_base = \"1000000h\""))
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("webhook[0].backoff_base"));
}

/// 1-based line of the `nth` (0-based) line of `text` that contains `needle`, and the column
/// of `needle` in it.
fn place(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| l.find(needle).map(|c| (i + 1, l[..c].chars().count() + 1)))
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in the text"))
}

/// Issue 15: every problem of a file in one run, each at its exact place, also when the same
/// key is wrong in several `[[webhook]]` tables (a text scan finds only the first).
#[test]
fn every_problem_at_its_exact_place_in_one_run() {
    let text = r#"[gateway]
id = "x"
[storage]
path = "/tmp/never/outbox.db"
max_rowz = 5
commit_batch = 0
[[device]]
id = "XYZ"
[[webhook]]
name = "a"
url = "http://127.0.0.1:1/a"
timeout = "soon"
[[webhook]]
name = "b"
url = "http://127.0.0.1:1/b"
timeout = "soon"
[webhook.auth]
type = "bearer"
token_file = "/nonexistent/token-b"
[[webhook]]
name = "c"
url = "http://127.0.0.1:1/c"
timeout = "soon"
auth = { type = "bearer", token_file = "/nonexistent/token-c" }
signing = { type = "hmac", secret_file = "/nonexistent/hmac-c" }
"#;
    let (_, errors) = Config::check_text(text, Path::new("/etc/enocean-agent/config.toml"));
    let got: Vec<(String, usize, usize)> = errors
        .iter()
        .map(|e| (e.key.clone().unwrap_or_default(), e.line, e.column))
        .collect();
    let timeout = |n: usize| {
        let (l, _) = place(text, "timeout = \"soon\"", n);
        (l, "timeout = ".len() + 1)
    };
    let expected: Vec<(String, (usize, usize))> = vec![
        ("storage.max_rowz".into(), place(text, "max_rowz", 0)),
        (
            "storage.commit_batch".into(),
            place(text, "commit_batch", 0),
        ),
        ("device[0].id".into(), place(text, "id = \"XYZ\"", 0)),
        ("webhook[0].timeout".into(), timeout(0)),
        ("webhook[1].timeout".into(), timeout(1)),
        (
            "webhook[1].auth.token_file".into(),
            place(text, "token_file = \"/nonexistent/token-b\"", 0),
        ),
        ("webhook[2].timeout".into(), timeout(2)),
        (
            "webhook[2].auth.token_file".into(),
            place(text, "token_file = \"/nonexistent/token-c\"", 0),
        ),
        (
            "webhook[2].signing.secret_file".into(),
            place(text, "secret_file", 0),
        ),
    ];
    let expected: Vec<(String, usize, usize)> =
        expected.into_iter().map(|(k, (l, c))| (k, l, c)).collect();
    assert_eq!(got, expected, "{errors:#?}");
    // Each error says what to do.
    let joined: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let joined = joined.join("\n");
    assert!(joined.contains("expected one of"), "{joined}");
    assert!(joined.contains("create it holding the secret"), "{joined}");
    assert!(joined.contains("8 hex digits"), "{joined}");
}

/// A value of the wrong type is reported at the value, its key named, and loading goes on.
#[test]
fn wrong_values_in_sub_tables_and_arrays_are_all_reported() {
    let text = r#"[[webhook]]
name = "a"
url = "http://127.0.0.1:1/a"
devices = ["0180A3F2", 7]
[webhook.auth]
type = "bearer"
tokn = "x"
[[webhook]]
url = "http://127.0.0.1:1/b"
[[webhook]]
name = "c"
url = "ftp://c"
"#;
    let (_, errors) = Config::check_text(text, Path::new("c.toml"));
    let got: Vec<(&str, usize)> = errors
        .iter()
        .map(|e| (e.key.as_deref().unwrap_or(""), e.line))
        .collect();
    assert_eq!(
        got,
        vec![
            ("webhook[0].devices[1]", 4),
            ("webhook[0].auth.tokn", 7),
            ("webhook[1]", 8),
            ("webhook[2].url", 12),
        ],
        "{errors:#?}"
    );
    assert!(
        errors[2].message.contains("missing field `name`"),
        "{errors:#?}"
    );
    // The third webhook is still named by its place in the file after the second was dropped.
    assert!(errors[3].message.contains("http://"), "{errors:#?}");
}

/// Positions stay with the loaded configuration for checks made later (EEP names).
#[test]
fn positions_kept_for_later_checks() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.position("device[0].eep"), place(GOOD, "eep = ", 0));
    assert_eq!(
        c.position("webhook[0].signing.secret"),
        place(GOOD, "secret = ", 0)
    );
    // A key that is not written points at its closest enclosing key.
    assert_eq!(
        c.position("webhook[0].signing.header"),
        place(GOOD, "signing = ", 0)
    );
}

/// A syntax error stops reading but still has its place.
#[test]
fn syntax_error_has_its_place() {
    let (_, errors) = Config::check_text("[gateway]\nid = \"x\n", Path::new("s.toml"));
    assert!(!errors.is_empty());
    assert_eq!(errors[0].line, 2, "{errors:#?}");
    // Several syntax errors in one run; a repeated key is named.
    let text =
        "[gateway]\nid = \"x\n[serial]\nport = /dev/x\n[[webhook]]\nname = \"a\"\nname = \"b\"\n";
    let (_, errors) = Config::check_text(text, Path::new("s.toml"));
    let got: Vec<(usize, Option<&str>)> =
        errors.iter().map(|e| (e.line, e.key.as_deref())).collect();
    assert_eq!(
        got,
        [
            (2, Some("gateway.id")),
            (4, Some("serial.port")),
            (7, Some("name"))
        ],
        "{errors:#?}"
    );
    assert!(errors[2].message.contains("keep one"), "{}", errors[2]);
}

/// Type errors say what to write; a key missing in its own right is reported beside another
/// problem of the same table.
#[test]
fn problems_say_what_to_write() {
    let text = "[storage]\nmax_rows = \"many\"\n[learn]\nenabled = \"yes\"\n[[webhook]]\nurl = \"http://127.0.0.1:1/\"\ntimeout = true\ndevices = \"0180A3F2\"\n";
    let (_, errors) = Config::check_text(text, Path::new("w.toml"));
    let got: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.key.as_deref().unwrap_or(""), e.message.as_str()))
        .collect();
    let find = |key: &str| {
        got.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, m)| *m)
            .unwrap_or_else(|| panic!("{key} not reported: {got:?}"))
    };
    assert!(find("storage.max_rows").contains("whole number without quotes"));
    assert!(find("learn.enabled").contains("true or false"));
    assert!(find("webhook[0]").contains("add `name = …`"));
    assert!(find("webhook[0].timeout").contains("\"30s\""));
    assert!(find("webhook[0].devices").contains("write a list"));
    assert_eq!(errors.len(), 5, "{errors:#?}");
}

/// Health settings: an unknown event name is an error at its place; silence thresholds per
/// device, rockers not watched unless they say so.
#[test]
fn events_and_silence_settings() {
    let text = "[learn]\nsilent_after = \"30m\"\n\
        [[device]]\nid = \"01000001\"\neep = \"A5-02-05\"\n\
        [[device]]\nid = \"01000002\"\neep = \"F6-02-01\"\n\
        [[device]]\nid = \"01000003\"\neep = \"F6-02-01\"\nsilent_after = \"1d\"\n\
        [[device]]\nid = \"01000004\"\nsilent_after = \"0s\"\n\
        [[webhook]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\nevents = [\"all\"]\n\
        [[webhook]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/\"\nevents = [\"telemetry\", \"device.gone\"]\n";
    let (cfg, errors) = Config::check_text(text, Path::new("h.toml"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].key.as_deref(), Some("webhook[1].events"));
    assert_eq!(
        (errors[0].line, errors[0].column),
        place(text, "events = [\"telemetry\"", 0)
    );
    assert!(errors[0].message.contains("device.silent"), "{}", errors[0]);
    let default = cfg.learn.silent_after;
    assert_eq!(default, std::time::Duration::from_secs(1800));
    let thresholds: Vec<Option<u64>> = cfg
        .devices
        .iter()
        .map(|d| d.silence_threshold(default).map(|t| t.as_secs()))
        .collect();
    assert_eq!(thresholds, [Some(1800), None, Some(86_400), None]);
    let accepts = |w: usize, kind: &str| cfg.webhooks[w].filter.accepts(kind);
    assert!(accepts(0, "gateway.status") && accepts(0, "telemetry"));
}
