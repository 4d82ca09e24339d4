//! `check-config` prints the effective configuration as TOML with every secret redacted, and an
//! empty inline secret is a configuration error with its place. Runs the real binary.

mod common;

use std::path::Path;

use enocean_agent::config::Config;
use enocean_agent::webhook::config::{AuthConfig, SigningConfig};

/// Every secret of the configuration below; none may appear in the output, as text or hex.
const SECRETS: &[&str] = &[
    "urlpw-31c7",
    "qval-77d0",
    "bearer-5e2a",
    "hmackey-90b1",
    "basicpw-4f6c",
    "hdrval-12ae",
    "fromfile-6b3d",
    // The base64 part of the whsec_ secrets.
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "c2Vjb25kLXNlY3JldC1rZXktMTIz",
];

fn config_text(dir: &Path) -> String {
    format!(
        r#"
[gateway]
id = "lobby-pi"
[serial]
port = "/dev/ttyUSB7"
dedup_window = "1500ms"
[storage]
path = "{db}"
commit_window = "250ms"
delivered_retention = "2d"
overflow = "drop-newest"
[[device]]
id = "0180A3F2"
eep = "A5-02-05"
name = "Office 2.14"
tags = {{ room = "2.14" }}
[learn]
enabled = true
[log]
level = "debug"

[[webhook]]
name = "bearer"
url = "https://ops:urlpw-31c7@hooks.example.org:8443/in/v1?token=qval-77d0&site=7"
timeout = "90s"
batch_max = 20
devices = ["0180a3f2"]
auth = {{ type = "bearer", token = "bearer-5e2a" }}
signing = {{ type = "hmac", secret = "hmackey-90b1", header = "X-Sig", prefix = "sha256=", encoding = "base64" }}

[[webhook]]
name = "basic"
url = "http://127.0.0.1:9/basic"
[webhook.auth]
type = "basic"
username = "gateway-user"
password = "basicpw-4f6c"
[webhook.signing]
type = "standard-webhooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
previous_secret = "whsec_c2Vjb25kLXNlY3JldC1rZXktMTIz"

[[webhook]]
name = "header"
url = "http://127.0.0.1:9/header"
auth = {{ type = "header", name = "X-Api-Key", value = "hdrval-12ae" }}

[[webhook]]
name = "file"
url = "http://127.0.0.1:9/file"
enabled = false
auth = {{ type = "bearer", token_file = "token" }}
"#,
        db = dir.join("outbox.db").display()
    )
}

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

fn hex_squeezed(text: &str) -> String {
    text.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect()
}

#[test]
fn effective_configuration_is_toml_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "fromfile-6b3d\n").unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config_text(dir.path())).unwrap();
    let (code, out, err) = check_config(&path);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("configuration OK"), "{err}");

    // No secret, as text or as hex.
    let all = format!("{out}\n{err}");
    let squeezed = hex_squeezed(&all);
    for s in SECRETS {
        assert!(!all.contains(s), "{s} printed:\n{all}");
        assert!(
            !squeezed.contains(&hex::encode(s.as_bytes())),
            "{s} printed as hex"
        );
    }
    assert!(
        !out.contains("Some(") && !out.contains("WebhookConfig {"),
        "a Debug dump:\n{out}"
    );

    // Valid TOML, and every key in it is a key of the configuration file.
    let printed: Config = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let loaded = Config::load(&path).unwrap();

    // Non-secret values survive, defaults are filled in.
    assert_eq!(printed.gateway.id, "lobby-pi");
    assert_eq!(
        printed.serial.port,
        enocean_agent::serial::PortChoice::Device("/dev/ttyUSB7".into())
    );
    assert_eq!(printed.serial.dedup_window, loaded.serial.dedup_window);
    assert_eq!(printed.storage.path, loaded.storage.path);
    assert_eq!(printed.storage.commit_window, loaded.storage.commit_window);
    assert_eq!(printed.storage.ack_window, loaded.storage.ack_window);
    assert_eq!(
        printed.storage.delivered_retention,
        loaded.storage.delivered_retention
    );
    assert_eq!(printed.storage.log_retention, loaded.storage.log_retention);
    assert_eq!(printed.storage.overflow, loaded.storage.overflow);
    assert_eq!(printed.storage.max_bytes, loaded.storage.max_bytes);
    assert!(out.contains("commit_window = \"250ms\""), "{out}");
    assert!(out.contains("delivered_retention = \"2d\""), "{out}");
    assert_eq!(printed.devices.len(), 1);
    assert_eq!(printed.devices[0].name.as_deref(), Some("Office 2.14"));
    assert_eq!(printed.devices[0].tags["room"], "2.14");
    assert!(printed.learn.enabled);
    assert_eq!(printed.log.level.as_deref(), Some("debug"));
    assert_eq!(printed.webhooks.len(), loaded.webhooks.len());
    for (p, l) in printed.webhooks.iter().zip(&loaded.webhooks) {
        assert_eq!(p.name, l.name);
        assert_eq!(p.enabled, l.enabled);
        assert_eq!(p.devices, l.devices);
        assert_eq!(
            (p.timeout, p.connect_timeout, p.backoff_base, p.backoff_max),
            (l.timeout, l.connect_timeout, l.backoff_base, l.backoff_max)
        );
        assert_eq!(
            (p.retry_after_max, p.probe_base, p.probe_max),
            (l.retry_after_max, l.probe_base, l.probe_max)
        );
        assert_eq!(
            (p.batch_max, p.max_retries, p.deactivate_after, p.jitter),
            (l.batch_max, l.max_retries, l.deactivate_after, l.jitter)
        );
    }
    // The URL keeps scheme, host, port, path and query keys; not user, password or values.
    assert_eq!(
        printed.webhooks[0].url,
        "https://***@hooks.example.org:8443/in/v1?token=***&site=***"
    );
    assert_eq!(printed.webhooks[0].devices, Some(vec!["0180A3F2".into()]));
    match &printed.webhooks[0].signing {
        Some(SigningConfig::Hmac {
            secret,
            header,
            prefix,
            ..
        }) => {
            assert_eq!(secret.as_ref().map(|s| s.expose()), Some("[redacted]"));
            assert_eq!((header.as_str(), prefix.as_str()), ("X-Sig", "sha256="));
        }
        other => panic!("{other:?}"),
    }
    assert!(out.contains("encoding = \"base64\""), "{out}");
    match &printed.webhooks[1].auth {
        AuthConfig::Basic {
            username, password, ..
        } => {
            assert_eq!(username, "gateway-user");
            assert_eq!(password.as_ref().map(|s| s.expose()), Some("[redacted]"));
        }
        other => panic!("{other:?}"),
    }
    match &printed.webhooks[1].signing {
        Some(SigningConfig::StandardWebhooks {
            secret,
            previous_secret,
            ..
        }) => {
            assert_eq!(secret.as_ref().map(|s| s.expose()), Some("[redacted]"));
            assert_eq!(
                previous_secret.as_ref().map(|s| s.expose()),
                Some("[redacted]")
            );
        }
        other => panic!("{other:?}"),
    }
    match &printed.webhooks[2].auth {
        AuthConfig::Header { name, value, .. } => {
            assert_eq!(name, "X-Api-Key");
            assert_eq!(value.as_ref().map(|s| s.expose()), Some("[redacted]"));
        }
        other => panic!("{other:?}"),
    }
    // A secret read from a file shows as its file only, not as a value.
    match &printed.webhooks[3].auth {
        AuthConfig::Bearer { token, token_file } => {
            assert!(token.is_none(), "{out}");
            assert_eq!(token_file.as_deref(), Some(Path::new("token")));
        }
        other => panic!("{other:?}"),
    }
    assert!(!printed.webhooks[3].enabled);
}

#[test]
fn empty_inline_secrets_are_errors_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let head = "[storage]\npath = \"/tmp/never-created/outbox.db\"\n[[webhook]]\nname = \"w\"\nurl = \"http://127.0.0.1:9/\"\n";
    // (configuration after the head, line of the empty secret, its key)
    let cases: &[(&str, usize, &str)] = &[
        (
            "auth = { type = \"bearer\", token = \"\" }\n",
            6,
            "auth.token",
        ),
        (
            "auth = { type = \"basic\", username = \"u\", password = \"\" }\n",
            6,
            "auth.password",
        ),
        (
            "auth = { type = \"header\", name = \"X-Key\", value = \"  \" }\n",
            6,
            "auth.value",
        ),
        (
            "timeout = \"5s\"\nsigning = { type = \"hmac\", secret = \"\" }\n",
            7,
            "signing.secret",
        ),
        (
            "[webhook.signing]\ntype = \"hmac\"\nheader = \"X-Sig\"\nsecret = \"\"\n",
            9,
            "signing.secret",
        ),
        (
            "[webhook.auth]\ntype = \"bearer\"\ntoken = \"\"\n",
            8,
            "auth.token",
        ),
        (
            "signing = { type = \"standard-webhooks\", secret = \"\" }\n",
            6,
            "signing.secret",
        ),
    ];
    for (i, (tail, line, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, format!("{head}{tail}")).unwrap();
        let (code, out, err) = check_config(&path);
        assert_eq!(code, 78, "case {i}: {out}{err}");
        let place = format!("c{i}.toml:{line}:");
        assert!(err.contains(&place), "case {i}: want {place} in {err}");
        assert!(
            err.contains(key) && err.contains("empty"),
            "case {i}: {err}"
        );
        assert!(out.is_empty(), "case {i}: printed {out}");
    }
}
