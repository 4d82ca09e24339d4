//! `enocean-agent listen`: decoded telegrams live on the terminal, one line each, teach-ins
//! highlighted, for installers pairing sensors. Nothing is stored or delivered.
//!
//! A telegram is decoded with the EEP of its sender as far as `listen` knows it: `--eep ID=EEP`
//! first, then the configuration's `[[device]]` entries (when the configuration file exists), then
//! a teach-in seen while listening. For an unknown sender the line says what can be told (the
//! RORG) and how to learn more.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use enocean_agent::eep::{self, TeachIn};
use enocean_agent::erp1::{Telegram, rorg};
use enocean_agent::serial::{self, PortChoice, PortConfig, SerialEvent};
#[cfg(feature = "sim")]
use enocean_agent::sim::building::ScriptOptions;
#[cfg(feature = "sim")]
use enocean_agent::sim::{SimConfig, SimStick};
use tokio::sync::mpsc;

use super::cli::{self, Arg, Help, Parser, UsageError};

/// Arguments of `listen`.
#[derive(Debug, PartialEq)]
pub struct Args {
    /// Serial port of the stick, or `sim` for the built-in simulated stick.
    pub(crate) port: PortChoice,
    /// Stop after this many seconds (default: until Ctrl-C).
    pub(crate) duration: Option<f64>,
    /// Show repeated copies too (normally a telegram repeated within 2 s is shown once).
    pub(crate) all: bool,
    /// With `--port sim`: telegrams per second of the simulated stick.
    #[cfg(feature = "sim")]
    pub(crate) sim_rate: f64,
    /// With `--port sim`: seed of the simulated building.
    #[cfg(feature = "sim")]
    pub(crate) sim_seed: u64,
    /// Decode this sender's telegrams with this EEP, e.g. `--eep 0180A3F2=A5-04-01` (repeatable).
    pub(crate) eep: Vec<String>,
    /// Configuration whose `[[device]]` EEPs are used (skipped when the default file is missing).
    pub(crate) config: PathBuf,
}

/// What `listen --help` shows.
pub const HELP: Help = Help {
    cmd: "listen",
    usage: "[OPTIONS]",
    #[cfg(feature = "sim")]
    about: "Show received telegrams live (teach-ins highlighted); `--port sim` uses the simulator",
    #[cfg(not(feature = "sim"))]
    about: "Show received telegrams live (teach-ins highlighted)",
    commands: &[],
    args: &[],
    options: &[
        #[cfg(feature = "sim")]
        (
            "--port <PORT>",
            "Serial port of the stick, or `sim` for the built-in simulated stick \
             [default: /dev/enocean]",
        ),
        #[cfg(not(feature = "sim"))]
        (
            "--port <PORT>",
            "Serial port of the stick [default: /dev/enocean]",
        ),
        (
            "--duration <SECONDS>",
            "Stop after this many seconds (default: until Ctrl-C)",
        ),
        (
            "--all",
            "Show repeated copies too (normally a telegram repeated within 2 s is shown once)",
        ),
        #[cfg(feature = "sim")]
        (
            "--sim-rate <N>",
            "With `--port sim`: telegrams per second of the simulated stick [default: 2]",
        ),
        #[cfg(feature = "sim")]
        (
            "--sim-seed <N>",
            "With `--port sim`: seed of the simulated building [default: 1]",
        ),
        (
            "--eep <ID=EEP>",
            "Decode this sender's telegrams with this EEP, e.g. `--eep 0180A3F2=A5-04-01` (repeatable)",
        ),
        (
            "-c, --config <PATH>",
            "Configuration whose `[[device]]` EEPs are used (skipped when the default file is \
             missing) [default: /etc/enocean-agent/config.toml]",
        ),
    ],
};

/// The arguments after `listen`.
pub fn parse(p: &mut Parser) -> Result<Args, UsageError> {
    let h = &HELP;
    let (mut port, mut duration, mut all, mut eep, mut config) =
        (None, None, false, Vec::new(), None);
    #[cfg(feature = "sim")]
    let (mut sim_rate, mut sim_seed) = (None, None);
    while let Some(arg) = cli::next(p, h)? {
        match arg {
            Arg::Long("port") => {
                // Any bytes make a device path; `sim` is the simulator (PortChoice::parse).
                let v = cli::raw_value(p, h, "--port")?;
                let choice = if v == PortChoice::SIMULATED {
                    PortChoice::Simulated
                } else {
                    PortChoice::Device(v.into())
                };
                cli::set(&mut port, choice, h, "--port")?;
            }
            Arg::Long("duration") => cli::once(p, h, "--duration", &mut duration)?,
            Arg::Long("all") => cli::flag(&mut all, h, "--all")?,
            #[cfg(feature = "sim")]
            Arg::Long("sim-rate") => cli::once(p, h, "--sim-rate", &mut sim_rate)?,
            #[cfg(feature = "sim")]
            Arg::Long("sim-seed") => cli::once(p, h, "--sim-seed", &mut sim_seed)?,
            Arg::Long("eep") => eep.push(cli::value(p, h, "--eep")?),
            Arg::Short('c') | Arg::Long("config") => {
                cli::once_path(p, h, "--config", &mut config)?;
            }
            arg => return Err(cli::unexpected(h, arg)),
        }
    }
    Ok(Args {
        port: port.unwrap_or_default(),
        duration,
        all,
        #[cfg(feature = "sim")]
        sim_rate: sim_rate.unwrap_or(2.0),
        #[cfg(feature = "sim")]
        sim_seed: sim_seed.unwrap_or(1),
        eep,
        config: config.unwrap_or_else(|| PathBuf::from(super::context::DEFAULT_CONFIG)),
    })
}

/// What `listen` knows to decode with: the library and an EEP per sender.
struct Knowledge {
    library: enocean_agent::eep::Library,
    eeps: HashMap<u32, String>,
    names: HashMap<u32, String>,
}

impl Knowledge {
    fn load(args: &Args) -> Result<Self> {
        let mut eeps = HashMap::new();
        let mut names = HashMap::new();
        let explicit = args.config.as_os_str() != super::context::DEFAULT_CONFIG;
        let mut library = None;
        if explicit || args.config.exists() {
            let cfg = enocean_agent::config::Config::load(&args.config)
                .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
            let (lib, warnings) =
                super::run::library_for(&cfg, &args.config).map_err(|errors| {
                    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                    anyhow::anyhow!("configuration error: {}", lines.join("\n"))
                })?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            library = Some(lib);
            for d in &cfg.devices {
                let id = enocean_agent::device::parse_id(&d.id)?;
                if let Some(eep) = &d.eep {
                    eeps.insert(id, eep.clone());
                }
                if let Some(name) = &d.name {
                    names.insert(id, name.clone());
                }
            }
        }
        let library = match library {
            Some(l) => l,
            None => enocean_agent::eep::Library::builtin()
                .map_err(|e| anyhow::anyhow!("built-in EEP profiles: {e}"))?,
        };
        for pair in &args.eep {
            let (id, eep) = pair.split_once('=').with_context(|| {
                format!("--eep {pair:?}: expected ID=EEP, e.g. 0180A3F2=A5-04-01")
            })?;
            let id =
                enocean_agent::device::parse_id(id).with_context(|| format!("--eep {pair:?}"))?;
            library
                .get_str(eep)
                .with_context(|| format!("--eep {pair:?}"))?;
            eeps.insert(id, eep.trim().to_uppercase());
        }
        Ok(Self {
            library,
            eeps,
            names,
        })
    }

    /// The decoded part of a telegram's line: `A5-04-01: temperature 21.4 °C, humidity 48 %`,
    /// or what can be told of an unknown sender.
    fn decoded(&self, t: &Telegram) -> String {
        if t.rorg == rorg::SIGNAL
            && let Some(p) = self.library.get(eep::EepId::new(0xD0, 0, 0))
            && let Ok(d) = eep::decode(p, t)
        {
            return format!("signal: {}", values(&d.readings()));
        }
        let Some(eep) = self.eeps.get(&t.sender) else {
            return format!(
                "unknown sender ({}); a teach-in tells its EEP, or give --eep {}=RR-FF-TT",
                rorg::name(t.rorg).unwrap_or("?"),
                t.sender_hex()
            );
        };
        match self.library.get_str(eep) {
            Err(e) => format!("{eep}: {e}"),
            Ok(p) => match eep::decode(p, t) {
                Ok(d) => format!("{eep}: {}", values(&d.readings())),
                Err(e) => format!("{eep}: not decodable ({e})"),
            },
        }
    }
}

/// `temperature 21.4 °C, humidity 48 %` from decoded readings.
fn values(
    readings: &std::collections::BTreeMap<
        std::borrow::Cow<'static, str>,
        enocean_agent::telemetry::Reading,
    >,
) -> String {
    if readings.is_empty() {
        return "no values".into();
    }
    readings
        .iter()
        .map(|(k, r)| {
            let v = match &r.value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => r.status.clone().unwrap_or_else(|| "none".into()),
                v => v.to_string(),
            };
            match &r.unit {
                Some(u) => format!("{k} {v} {u}"),
                None => format!("{k} {v}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `listen` until Ctrl-C/SIGTERM or `--duration`.
pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(e) = args.port.unavailable() {
        bail!("--port {}: {e}", args.port);
    }
    let duration = super::seconds(args.duration, "duration")?;
    let rt = super::runtime()?;
    rt.block_on(listen(args, duration))
}

async fn listen(args: Args, duration: Option<Duration>) -> Result<ExitCode> {
    let mut know = Knowledge::load(&args)?;
    #[cfg(feature = "sim")]
    let (sim, path) = match &args.port {
        PortChoice::Simulated => {
            let sim = SimStick::start(SimConfig {
                rate: args.sim_rate,
                script: ScriptOptions {
                    seed: args.sim_seed,
                    ..ScriptOptions::default()
                },
                ..SimConfig::default()
            })
            .context("starting the simulated stick")?;
            let path = sim.path().to_path_buf();
            (Some(sim), path)
        }
        PortChoice::Device(path) => (None, path.clone()),
    };
    #[cfg(not(feature = "sim"))]
    let path = match &args.port {
        PortChoice::Device(path) => path.clone(),
        // Refused before the configuration was read.
        PortChoice::Simulated => bail!("--port sim: {}", serial::NoSimulator),
    };
    let mut config = PortConfig::new(path);
    config.fail_on_first_open = true;
    if args.all {
        config.dedup_window = Duration::ZERO;
    }
    let (tx, mut rx) = mpsc::channel(256);
    // The printer says when stdout is gone (`| head`), which ends the listening too.
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        let gone = async {
            let _ = gone_rx.await;
        };
        match duration {
            Some(d) => tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = super::signals::terminated() => {}
                _ = gone => {}
            },
            None => tokio::select! {
                _ = super::signals::terminated() => {}
                _ = gone => {}
            },
        }
    };
    let runtime = serial::run(config, tx, stop);
    let printer = async {
        let color = std::io::stdout().is_terminal();
        let mut out = std::io::stdout().lock();
        // Telegram lines wait (a little) for the stick's identification, so the stick line
        // comes first.
        let mut identified = false;
        let mut held: Vec<String> = Vec::new();
        'events: while let Some(ev) = rx.recv().await {
            if matches!(
                ev,
                SerialEvent::StickInfo(_) | SerialEvent::HandshakeFailed { .. }
            ) {
                identified = true;
            }
            let Some(line) = describe(&ev, color, &mut know) else {
                continue;
            };
            let is_telegram = matches!(ev, SerialEvent::Telegram { .. });
            if is_telegram && !identified && held.len() < 100 {
                held.push(line);
                continue;
            }
            for line in std::iter::once(line).chain(held.drain(..)) {
                // A closed stdout (e.g. `| head`) ends the listing quietly.
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                    break 'events;
                }
            }
        }
        for line in held.drain(..) {
            if writeln!(out, "{line}").is_err() {
                break;
            }
        }
        drop(gone_tx);
        // Keeps draining so the serial side never waits on a full channel while it stops.
        while rx.recv().await.is_some() {}
    };
    let (result, ()) = tokio::join!(runtime, printer);
    #[cfg(feature = "sim")]
    if let Some(sim) = sim {
        sim.stop().await;
    }
    let stats = match result {
        Ok(stats) => stats,
        Err(serial::SerialError::Open(e)) if e.is_missing() => {
            let found = usb_serial_ports();
            if found.is_empty() {
                bail!("{e}; no USB serial ports found");
            }
            bail!("{e}; USB serial ports found:\n{}", found.join("\n"));
        }
        Err(e) => return Err(e.into()),
    };
    eprintln!(
        "listen: {} telegrams, {} repeated copies hidden, {} bytes of noise, {} CRC errors",
        stats.telegrams,
        stats.duplicates,
        stats.decoder.discarded_bytes,
        stats.decoder.data_crc_errors + stats.decoder.header_crc_errors
    );
    Ok(ExitCode::SUCCESS)
}

/// USB serial ports present (path, VID:PID, product), to help an installer pick the right one.
fn usb_serial_ports() -> Vec<String> {
    let ports = tokio_serial::available_ports().unwrap_or_default();
    ports
        .into_iter()
        .filter_map(|p| match p.port_type {
            tokio_serial::SerialPortType::UsbPort(u) => Some(format!(
                "  {}  {:04x}:{:04x}  {} {}",
                p.port_name,
                u.vid,
                u.pid,
                u.manufacturer.unwrap_or_default(),
                u.product.unwrap_or_default()
            )),
            _ => None,
        })
        .collect()
}

/// One terminal line for an event, or nothing for events not worth a line. A teach-in teaches
/// `know` the sender's EEP for the rest of the session.
fn describe(ev: &SerialEvent, color: bool, know: &mut Knowledge) -> Option<String> {
    let (bold, reset) = if color {
        ("\x1b[1;33m", "\x1b[0m")
    } else {
        ("", "")
    };
    match ev {
        SerialEvent::Connected { path } => Some(format!("# connected to {}", path.display())),
        SerialEvent::StickInfo(info) => Some(format!("# stick: {info}")),
        SerialEvent::HandshakeFailed { reason } => Some(format!(
            "# stick did not identify itself ({reason}); listening anyway"
        )),
        SerialEvent::Disconnected { reason } => {
            Some(format!("# disconnected ({reason}); waiting for the stick"))
        }
        SerialEvent::Telegram {
            telegram: t,
            received_at,
            ..
        } => {
            let time = format!("{received_at:.3}");
            let mut line = format!(
                "{time}  {}  {:02X} {:<4} {:<16}  {:>9}  rep {}",
                t.sender_hex(),
                t.rorg,
                rorg::name(t.rorg).unwrap_or("?"),
                if t.carries_key() {
                    "(key withheld)".to_owned()
                } else {
                    t.payload_hex()
                },
                t.dbm().map_or("-".into(), |d| format!("{d} dBm")),
                t.repeater_count(),
            );
            if let Some(teach) = teach_in(t) {
                if let Some(eep::TeachIn::FourBs { eep: Some(e), .. }) = eep::teach_in(t) {
                    know.eeps.entry(t.sender).or_insert_with(|| e.to_string());
                } else if let Some(eep::TeachIn::Ute(q)) = eep::teach_in(t) {
                    know.eeps
                        .entry(t.sender)
                        .or_insert_with(|| q.eep.to_string());
                } else if let Some(eep::TeachIn::OneBs) = eep::teach_in(t) {
                    know.eeps
                        .entry(t.sender)
                        .or_insert_with(|| "D5-00-01".into());
                }
                line = format!("{bold}{line}  TEACH-IN {teach}{reset}");
            } else if t.carries_key() {
                line = format!("{bold}{line}  SECURE TEACH-IN (key withheld){reset}");
            } else {
                if let Some(name) = know.names.get(&t.sender) {
                    line = format!("{line}  {name}");
                }
                line = format!("{line}  {}", know.decoded(t));
            }
            Some(line)
        }
        SerialEvent::StickEvent(e) => Some(format!("# stick event {}", e.name())),
        SerialEvent::Frame(_) | SerialEvent::Decoder(_) => None,
    }
}

/// What a teach-in telegram announces, as the EEP engine reads it (None for readings).
fn teach_in(t: &Telegram) -> Option<String> {
    Some(match eep::teach_in(t)? {
        TeachIn::FourBs {
            eep: Some(eep),
            manufacturer,
        } => format!(
            "4BS EEP {eep} manufacturer {}",
            manufacturer.map_or("?".into(), |m| format!("{m:03X}"))
        ),
        TeachIn::FourBs { eep: None, .. } => "4BS (no EEP announced)".into(),
        TeachIn::OneBs => "1BS (D5-00-01)".into(),
        TeachIn::Ute(q) => format!(
            "UTE EEP {} manufacturer {:03X} channel {}{}",
            q.eep,
            q.manufacturer,
            q.channel,
            if q.response_expected {
                " (asks for a reply; this gateway only receives)"
            } else {
                ""
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telegram(data: &[u8]) -> Telegram {
        Telegram::from_parts(data, &[1, 0xFF, 0xFF, 0xFF, 0xFF, 0x40, 0]).unwrap()
    }

    #[test]
    fn teach_ins_are_recognised() {
        let t = telegram(&[0xA5, 0x08, 0x28, 0x0D, 0x80, 1, 2, 3, 4, 0]);
        assert_eq!(
            teach_in(&t).as_deref(),
            Some("4BS EEP A5-02-05 manufacturer 00D")
        );
        let data = telegram(&[0xA5, 0x00, 0x00, 0x80, 0x08, 1, 2, 3, 4, 0]);
        assert_eq!(teach_in(&data), None);
        assert!(teach_in(&telegram(&[0xD5, 0x00, 1, 2, 3, 4, 0])).is_some());
        assert!(teach_in(&telegram(&[0xD5, 0x09, 1, 2, 3, 4, 0])).is_none());
        assert!(teach_in(&telegram(&[0xF6, 0x30, 1, 2, 3, 4, 0x30])).is_none());
    }
}
