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
    assert_eq!(e.key.as_deref(), Some("backof_base"));
    assert_eq!(e.line, 25);
    assert_eq!(e.column, 1);
    let msg = e.to_string();
    assert!(
        msg.starts_with("/etc/enocean-agent/config.toml:25:1: key `backof_base`"),
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
