//! Every auth and signing mode end to end, configured from TOML like an operator would, checked
//! by a loopback receiver that recomputes the signatures itself.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use enocean_agent::config::Config;
use enocean_agent::outbox::Store;
use enocean_agent::webhook::Sender;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

fn mac(key: &[u8], msg: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m
}

/// Loads `[[webhook]]` TOML (URL substituted), delivers `n` telemetry, returns the requests.
fn deliver(webhook_toml: &str, n: u32) -> (Vec<Received>, Config) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "file-token\n").unwrap();
    let rx = Receiver::start(|_, _| Reply::ok());
    let text = format!(
        "[storage]\npath = {:?}\ncommit_window = \"10ms\"\nmin_free_bytes = 0\n\n{}",
        dir.path().join("outbox.db"),
        webhook_toml.replace("URL", &rx.url)
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = Config::load(&path).unwrap();
    let mut ob = open_outbox(&cfg.storage, &cfg.webhooks);
    let sender = Sender::spawn(
        &cfg.webhooks,
        &cfg.storage.path,
        fast_options(),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    // A webhook that reads rows' heads asks the storage thread to remember them; one with a
    // template parses every row whole and does not.
    assert_eq!(
        sender.waker().recent().wanted(),
        cfg.webhooks.iter().any(|w| w.template.is_none()),
        "remembered heads wanted"
    );
    ob.set_waker(sender.waker());
    enqueue_n(&mut ob, "0180A3F2", n);
    assert!(wait_for(WAIT, || rx.count() == n as usize));
    sender.stop();
    let store = Store::open(&cfg.storage.path).unwrap();
    assert!(store.failed(None, None).unwrap().is_empty());
    (rx.requests(), cfg)
}

#[test]
fn hmac_hex_default_header_with_bearer_auth() {
    let (reqs, cfg) = deliver(
        r#"
[[webhook]]
name = "backend"
url = "URL"
auth = { type = "bearer", token = "tok-123" }
signing = { type = "hmac", secret = "s3cret" }
"#,
        3,
    );
    for r in &reqs {
        assert_eq!(r.header("Authorization"), Some("Bearer tok-123"));
        let sig = hex::decode(r.header("Signature").unwrap()).unwrap();
        mac(b"s3cret", &r.body).verify_slice(&sig).unwrap();
        let v = r.json();
        assert_eq!(v["version"], "1.0");
        assert_eq!(v["event"], "telemetry");
        assert_eq!(v["gateway"]["id"], "test-gw");
        assert_eq!(v["records"].as_array().unwrap().len(), 1);
        assert!(v["id"].as_str().unwrap().len() == 36);
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // Secrets never show in Debug output.
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("tok-123") && !dbg.contains("s3cret"), "{dbg}");
}

#[test]
fn hmac_base64_prefix_custom_header_with_basic_auth() {
    let (reqs, _) = deliver(
        r#"
[[webhook]]
name = "b"
url = "URL"
auth = { type = "basic", username = "user", password = "pa:ss" }
signing = { type = "hmac", secret = "k", header = "X-Hub-Signature-256", prefix = "sha256=", encoding = "base64" }
"#,
        1,
    );
    let r = &reqs[0];
    assert_eq!(
        r.header("Authorization").unwrap(),
        format!("Basic {}", STANDARD.encode("user:pa:ss"))
    );
    let v = r.header("X-Hub-Signature-256").unwrap();
    let sig = STANDARD.decode(v.strip_prefix("sha256=").unwrap()).unwrap();
    mac(b"k", &r.body).verify_slice(&sig).unwrap();
    assert!(r.header("Signature").is_none());
}

#[test]
fn custom_header_auth_from_file_and_no_signing() {
    let (reqs, _) = deliver(
        r#"
[[webhook]]
name = "c"
url = "URL"
auth = { type = "header", name = "X-Api-Key", value_file = "token" }
"#,
        1,
    );
    assert_eq!(reqs[0].header("X-Api-Key"), Some("file-token"));
    assert!(reqs[0].header("Authorization").is_none());
}

#[test]
fn standard_webhooks_two_secrets_during_rotation() {
    let k1 = STANDARD.encode(b"first-key-0123456789");
    let k2 = STANDARD.encode(b"second-key-abcdefghij");
    let (reqs, _) = deliver(
        &format!(
            r#"
[[webhook]]
name = "sw"
url = "URL"
signing = {{ type = "standard-webhooks", secret = "whsec_{k1}", previous_secret = "whsec_{k2}" }}
"#
        ),
        2,
    );
    for r in &reqs {
        let id = r.header("webhook-id").unwrap();
        let ts = r.header("webhook-timestamp").unwrap();
        assert!(ts.parse::<i64>().unwrap() > 1_700_000_000);
        assert_eq!(id, r.json()["id"].as_str().unwrap());
        let mut signed = format!("{id}.{ts}.").into_bytes();
        signed.extend_from_slice(&r.body);
        let sigs: Vec<&str> = r.header("webhook-signature").unwrap().split(' ').collect();
        assert_eq!(sigs.len(), 2);
        for (sig, key) in sigs.iter().zip([&k1, &k2]) {
            let raw = STANDARD.decode(sig.strip_prefix("v1,").unwrap()).unwrap();
            mac(&STANDARD.decode(key).unwrap(), &signed)
                .verify_slice(&raw)
                .unwrap();
        }
    }
}

#[test]
fn template_keeps_types_nests_and_adds_statics() {
    let (reqs, _) = deliver(
        r#"
[[webhook]]
name = "t"
url = "URL"
[webhook.payload]
source = "enocean"
schema = 2
live = true
device = "{{sensor.id}}"
label = "{{sensor.name}} ({{sensor.eep}})"
reading = { celsius = "{{values.temperature.value}}", unit = "{{values.temperature.unit}}", missing = "{{values.humidity.value}}" }
meta = { rssi = "{{signal.dbm}}", seq = "{{seq}}", event = "{{event}}", nested = { id = "{{id}}" } }
"#,
        1,
    );
    let v = reqs[0].json();
    assert_eq!(v["source"], "enocean");
    assert_eq!(v["schema"], 2);
    assert_eq!(v["live"], true);
    assert_eq!(v["device"], "0180A3F2");
    assert_eq!(v["label"], "Office 2.14 (A5-02-05)");
    assert!(v["reading"]["celsius"].is_number());
    assert_eq!(v["reading"]["celsius"], 0.0);
    assert_eq!(v["reading"]["unit"], "°C");
    assert!(v["reading"]["missing"].is_null());
    assert_eq!(v["meta"]["rssi"], -68);
    assert!(v["meta"]["seq"].as_u64().unwrap() >= 1);
    assert_eq!(v["meta"]["event"], "telemetry");
    assert_eq!(v["meta"]["nested"]["id"].as_str().unwrap().len(), 36);
}
