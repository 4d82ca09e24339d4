//! No log level prints a credential: the agent runs at trace level (every dependency too) with a
//! bearer token, an HMAC key, a URL password and a query token, delivers to a loopback receiver,
//! and every line it wrote is searched for each secret, as text and as hex (hex dumps are
//! reassembled by dropping their separators).

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enocean_agent::sim::{SimConfig, SimStick};

const SECRETS: &[&str] = &[
    "urlpass-5d1",
    "qtoken-8e2",
    "bearer-tok-7c3",
    "hmac-key-9a4",
];

fn hex_squeezed(text: &str) -> String {
    text.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect()
}

#[test]
fn trace_logging_never_shows_a_secret() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let auth_seen = Arc::new(Mutex::new(Vec::new()));
    let (s, seen) = (server.clone(), auth_seen.clone());
    std::thread::spawn(move || {
        for req in s.incoming_requests() {
            let auth = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Authorization"))
                .map(|h| h.value.as_str().to_owned());
            seen.lock().unwrap().push(auth);
            let _ = req.respond(tiny_http::Response::empty(200));
        }
    });
    let link = dir.path().join("stick");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[serial]
port = "{}"
[storage]
path = "{}"
[[webhook]]
name = "main"
url = "http://user:{}@127.0.0.1:{port}/in?token={}"
auth = {{ type = "bearer", token = "{}" }}
signing = {{ type = "hmac", secret = "{}" }}
"#,
            link.display(),
            dir.path().join("outbox.db").display(),
            SECRETS[0],
            SECRETS[1],
            SECRETS[2],
            SECRETS[3],
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let log = dir.path().join("agent.log");
    let out = dir.path().join("agent.out");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut agent = common::Reaper(
            common::agent_command()
                .args(["run", "--config"])
                .arg(&config)
                .env("RUST_LOG", "trace")
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(&log).unwrap())
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let sim = SimStick::start(SimConfig {
            rate: 20.0,
            link: Some(link.clone()),
            ..SimConfig::default()
        })
        .unwrap();
        // Deliveries that carried the bearer token, i.e. the secrets were really in use.
        let until = Instant::now() + Duration::from_secs(60);
        while auth_seen.lock().unwrap().len() < 5 {
            assert!(Instant::now() < until, "no deliveries arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            auth_seen
                .lock()
                .unwrap()
                .iter()
                .all(|a| a.as_deref() == Some(&format!("Bearer {}", SECRETS[2]))),
        );
        // SIGTERM and a bounded wait (the agent needs nothing from this runtime to stop).
        agent.terminate();
        sim.stop().await;
    });
    let text = std::fs::read_to_string(&log).unwrap() + &std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains(" TRACE "),
        "trace logging was not on:\n{text}"
    );
    let squeezed = hex_squeezed(&text);
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in the log");
        let as_hex = hex::encode(secret.as_bytes());
        assert!(
            !squeezed.contains(&as_hex[..20]),
            "{secret} as hex in the log"
        );
    }
}
