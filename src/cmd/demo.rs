//! `enocean-agent demo`: the whole pipeline on this machine with nothing to set up. A simulated
//! stick on a pseudo-terminal, a temporary outbox, a receiver on 127.0.0.1 that verifies each
//! delivery's HMAC signature itself, and the real agent in between; every delivery is printed as
//! it arrives, then a summary.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use enocean_agent::agent::{self, Options};
use enocean_agent::config::Config;
use enocean_agent::eep::Library;
use enocean_agent::sim::SimConfig;
use enocean_agent::sim::building::DEVICES;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::cli::{self, Arg, Help, Parser, UsageError};
use super::outln;

/// Arguments of `demo`.
#[derive(Debug, PartialEq)]
pub struct Args {
    /// How long to run, in seconds (Ctrl-C stops earlier).
    pub(crate) duration: u64,
    /// Telegrams per second from the simulated stick.
    pub(crate) rate: f64,
    /// Seed of the simulated building (same seed, same telegrams).
    pub(crate) seed: u64,
    /// Also publish to this MQTT broker (e.g. `mqtt://127.0.0.1:1883`, a local Mosquitto) with
    /// Home Assistant discovery; watch with `mosquitto_sub -t 'enocean/#' -v`. Only in a build
    /// with the `mqtt` feature.
    #[cfg(feature = "mqtt")]
    pub(crate) mqtt: Option<String>,
}

/// What `demo --help` shows.
pub const HELP: Help = Help {
    cmd: "demo",
    usage: "[OPTIONS]",
    about: "The whole pipeline on this machine: simulated stick, outbox, a local verifying receiver",
    commands: &[],
    args: &[],
    options: &[
        (
            "--duration <SECONDS>",
            "How long to run (Ctrl-C stops earlier) [default: 15]",
        ),
        (
            "--rate <N>",
            "Telegrams per second from the simulated stick [default: 4]",
        ),
        (
            "--seed <N>",
            "Seed of the simulated building (same seed, same telegrams) [default: 1]",
        ),
        #[cfg(feature = "mqtt")]
        (
            "--mqtt <URL>",
            "Also publish to this MQTT broker (e.g. `mqtt://127.0.0.1:1883`) with Home Assistant \
             discovery; watch with `mosquitto_sub -t 'enocean/#' -v`",
        ),
    ],
};

/// The arguments after `demo`.
pub fn parse(p: &mut Parser) -> Result<Args, UsageError> {
    let h = &HELP;
    let (mut duration, mut rate, mut seed) = (None, None, None);
    #[cfg(feature = "mqtt")]
    let mut mqtt = None;
    while let Some(arg) = cli::next(p, h)? {
        match arg {
            Arg::Long("duration") => cli::once(p, h, "--duration", &mut duration)?,
            Arg::Long("rate") => cli::once(p, h, "--rate", &mut rate)?,
            Arg::Long("seed") => cli::once(p, h, "--seed", &mut seed)?,
            #[cfg(feature = "mqtt")]
            Arg::Long("mqtt") => cli::once(p, h, "--mqtt", &mut mqtt)?,
            #[cfg(not(feature = "mqtt"))]
            Arg::Long("mqtt") => {
                return Err(cli::invalid(
                    h,
                    "--mqtt: this build has no MQTT client (built without the `mqtt` feature)",
                ));
            }
            arg => return Err(cli::unexpected(h, arg)),
        }
    }
    Ok(Args {
        duration: duration.unwrap_or(15),
        rate: rate.unwrap_or(4.0),
        seed: seed.unwrap_or(1),
        #[cfg(feature = "mqtt")]
        mqtt,
    })
}

impl Args {
    /// `--mqtt URL`; always None in a build without the MQTT client.
    fn mqtt(&self) -> Option<&str> {
        #[cfg(feature = "mqtt")]
        {
            self.mqtt.as_deref()
        }
        #[cfg(not(feature = "mqtt"))]
        {
            None
        }
    }
}

#[derive(Default)]
struct Tally {
    deliveries: AtomicU64,
    verified: AtomicU64,
    rejected: AtomicU64,
    records: AtomicU64,
}

/// Runs the demo and prints what the receiver got.
pub fn run(args: Args) -> Result<ExitCode> {
    super::logging::init(Some("warn"));
    let dir = tempfile::Builder::new()
        .prefix("enocean-agent-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let secret = format!("demo-{:016x}", fastrand::u64(..));
    let server = tiny_http::Server::http("127.0.0.1:0")
        .map_err(|e| anyhow::anyhow!("starting the local receiver: {e}"))?;
    let port = server
        .server_addr()
        .to_ip()
        .context("receiver address")?
        .port();
    let tally = Arc::new(Tally::default());
    let receiver = spawn_receiver(server, secret.clone(), tally.clone());

    let config_path = dir.path().join("config.toml");
    let mut text = demo_config(dir.path(), port, &secret);
    if let Some(url) = args.mqtt() {
        let _ = write!(
            text,
            "\n[[mqtt]]\nname = \"demo\"\nurl = {url:?}\ndiscovery = true\nretain = true\n"
        );
    }
    std::fs::write(&config_path, text)?;
    let cfg = Config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let library = Library::builtin().map_err(|e| anyhow::anyhow!("{e}"))?;

    outln!(
        "demo: simulated stick ({} devices), outbox {}, receiver http://127.0.0.1:{port}/enocean verifying HMAC-SHA256",
        DEVICES.len(),
        cfg.storage.path.display()
    );
    if let Some(url) = args.mqtt() {
        outln!(
            "demo: also publishing to {url}: readings on enocean/demo-gateway/<sensor>, Home Assistant discovery on homeassistant/# (watch: mosquitto_sub -h HOST -t 'enocean/#' -t 'homeassistant/#' -v)"
        );
    }
    outln!(
        "demo: running for {} s (Ctrl-C stops earlier). Each telegram: stick → decoded → committed (seq) → POST (status, ms since reception) → signature checked by the receiver\n",
        args.duration
    );
    outln!("{HEADER}");
    let options = Options {
        sim: SimConfig {
            rate: args.rate,
            script: enocean_agent::sim::building::ScriptOptions {
                seed: args.seed,
                ..Default::default()
            },
            ..SimConfig::default()
        },
        ..Options::default()
    };
    let rt = super::runtime()?;
    let duration = Duration::from_secs(args.duration);
    let report = rt.block_on(agent::run(
        &cfg,
        &library,
        options,
        async move {
            tokio::select! {
                () = tokio::time::sleep(duration) => {}
                () = super::signals::terminated() => {}
            }
        },
        &mut |_| {},
    ))?;
    // The agent has stopped and waited for its in-flight requests; give the receiver a moment
    // to print the last one.
    std::thread::sleep(Duration::from_millis(200));
    drop(receiver);
    let delivered = tally.records.load(Ordering::Relaxed);
    let verified = tally.verified.load(Ordering::Relaxed);
    let rejected = tally.rejected.load(Ordering::Relaxed);
    outln!(
        "\ndemo summary: {} telegrams received ({} decoded, {} raw, {} teach-ins, {} devices learned), {} committed to the outbox",
        report.telegrams,
        report.decoded,
        report.raw,
        report.teach_ins,
        report.learned,
        report.committed
    );
    outln!(
        "              {} deliveries with {delivered} records arrived; {verified} signatures verified, {rejected} rejected",
        tally.deliveries.load(Ordering::Relaxed)
    );
    if args.mqtt().is_some() {
        let store = enocean_agent::outbox::Store::open(&cfg.storage.path)?;
        let max_seq = store.status(&cfg.storage.path)?.max_seq;
        match store.webhook("mqtt:demo")? {
            Some(s) => outln!(
                "              MQTT: acknowledged by the broker (PUBACK) up to seq {} of {max_seq}{}",
                s.cursor,
                s.last_failure_reason
                    .map_or(String::new(), |r| format!("; last failure: {r}"))
            ),
            None => outln!("              MQTT: the output did not start"),
        }
    }
    let learned: Vec<String> = enocean_agent::device::list(&cfg.storage.path, &cfg.devices)
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.source == enocean_agent::device::Source::Learned)
        .map(|d| {
            format!(
                "{:08X} as {} (teach-in, manufacturer {})",
                d.id,
                d.eep.as_deref().unwrap_or("?"),
                d.manufacturer.map_or("?".into(), |m| format!("{m:03X}"))
            )
        })
        .collect();
    if !learned.is_empty() {
        outln!("              learned: {}", learned.join(", "));
    }
    outln!(
        "\nnext steps:\n  with a USB 300 stick:  enocean-agent listen --port /dev/ttyUSB0   (press a sensor's learn button to see its EEP)\n  your configuration:   start from systemd/config.example.toml, then enocean-agent check-config --config FILE\n  on a Raspberry Pi:    README.md, section \"Install on a Raspberry Pi\""
    );
    if rejected > 0 {
        bail!("{rejected} deliveries had a bad signature");
    }
    Ok(ExitCode::SUCCESS)
}

fn demo_config(dir: &std::path::Path, port: u16, secret: &str) -> String {
    let mut devices = String::new();
    // The simulated building's devices, as an installer would configure them; the last one is
    // left out: it announces itself with a teach-in and is learned.
    for d in &DEVICES[..DEVICES.len() - 1] {
        let _ = write!(
            devices,
            "\n[[device]]\nid = \"{:08X}\"\neep = \"{}\"\nname = \"{}\"\n",
            d.id, d.eep, d.name
        );
    }
    format!(
        r#"[gateway]
id = "demo-gateway"

[serial]
port = "sim"

[storage]
path = "{}"
commit_window = "200ms"

[learn]
enabled = true
{devices}
[[webhook]]
name = "local"
url = "http://127.0.0.1:{port}/enocean"
timeout = "2s"
signing = {{ type = "hmac", secret = "{secret}" }}
"#,
        dir.join("outbox.db").display()
    )
}

struct ReceiverGuard {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ReceiverGuard {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spawn_receiver(server: tiny_http::Server, secret: String, tally: Arc<Tally>) -> ReceiverGuard {
    let server = Arc::new(server);
    let s = server.clone();
    let print = Mutex::new(());
    let thread = std::thread::spawn(move || {
        for mut req in s.incoming_requests() {
            let mut body = Vec::new();
            let _ = std::io::Read::read_to_end(req.as_reader(), &mut body);
            let sig = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Signature"))
                .map(|h| h.value.as_str().to_string());
            let ok = sig.is_some_and(|s| verify(&secret, &body, &s));
            tally.deliveries.fetch_add(1, Ordering::Relaxed);
            if ok {
                tally.verified.fetch_add(1, Ordering::Relaxed);
            } else {
                tally.rejected.fetch_add(1, Ordering::Relaxed);
            }
            use std::io::Write as _;
            let _guard = print.lock();
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) => {
                    for r in v["records"].as_array().into_iter().flatten() {
                        tally.records.fetch_add(1, Ordering::Relaxed);
                        let status = if ok { 200 } else { 401 };
                        let _ = writeln!(std::io::stdout().lock(), "{}", describe(r, ok, status));
                    }
                }
                Err(_) => {
                    let _ = writeln!(
                        std::io::stdout().lock(),
                        "!! delivery that is not JSON ({} bytes)",
                        body.len()
                    );
                }
            }
            let status = if ok { 200 } else { 401 };
            let _ = req.respond(tiny_http::Response::empty(status));
        }
    });
    ReceiverGuard {
        server,
        thread: Some(thread),
    }
}

/// Constant-time check of a hex HMAC-SHA256 of the body.
fn verify(secret: &str, body: &[u8], signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The column header of the per-telegram lines.
const HEADER: &str =
    "  seq  sensor    name                  EEP       dBm  POST            signature";

/// Two lines for one delivered record: the chain (sensor, EEP, dBm → committed seq → POST status
/// and milliseconds since reception → signature), then its decoded values.
fn describe(r: &serde_json::Value, ok: bool, status: u16) -> String {
    let name = r["sensor"]["name"].as_str().map_or_else(
        || {
            if r["sensor"]["eep"].is_string() {
                "(learned)".to_owned()
            } else {
                "(unknown)".to_owned()
            }
        },
        |n| n.chars().take(20).collect(),
    );
    let ms = r["received_at"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| jiff::Timestamp::now().duration_since(t).as_millis().max(0));
    let mut line = format!(
        "{:>5}  {:<8}  {:<20}  {:<8}  {:>4}  {status} {:<10}  {}",
        r["seq"].as_u64().unwrap_or(0),
        r["sensor"]["id"].as_str().unwrap_or("?"),
        name,
        r["sensor"]["eep"].as_str().unwrap_or("raw"),
        r["signal"]["dbm"]
            .as_i64()
            .map_or("-".to_owned(), |d| d.to_string()),
        ms.map_or(String::new(), |ms| format!("{ms} ms")),
        if ok {
            "✓ verified"
        } else {
            "✗ BAD SIGNATURE"
        },
    );
    let values = r["values"].as_object();
    let mut parts = Vec::new();
    if r["kind"] == "teach_in" {
        parts.push("teach-in (key withheld)".to_owned());
    } else if values.is_none_or(|v| v.is_empty()) {
        parts.push(format!(
            "raw payload {}",
            r["raw"]["payload"].as_str().unwrap_or("")
        ));
    }
    for (key, v) in values.into_iter().flatten() {
        let value = match &v["value"] {
            serde_json::Value::Number(n) => n.as_f64().map_or(n.to_string(), |f| {
                format!("{}", (f * 100.0).round() / 100.0)
            }),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let unit = v["unit"].as_str().unwrap_or("");
        parts.push(format!(
            "{key} {value}{}{unit}",
            if unit.is_empty() { "" } else { " " }
        ));
    }
    let _ = write!(line, "\n       {}", parts.join(" · "));
    line
}
