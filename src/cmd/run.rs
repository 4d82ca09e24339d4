//! `enocean-agent run`: the daemon. SIGTERM and SIGINT stop it cleanly; under systemd it speaks
//! sd_notify (READY, STATUS, WATCHDOG, STOPPING).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use enocean_agent::agent::{self, Notice, Options};
use enocean_agent::config::Config;
use enocean_agent::eep::{Library, LookupError};
use sd_notify::NotifyState;

use super::context::{ConfigArg, EXIT_CONFIG, load_config};

/// Arguments of `run`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(args: Args) -> Result<ExitCode> {
    let cfg = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    super::logging::init(cfg.log.level.as_deref());
    if cfg.secrets_world_readable(&args.config.config) {
        log::warn!(
            "{} holds secrets and every user can read it: chmod 640, or move them to *_file",
            args.config.config.display()
        );
    }
    let library = match library_for(&cfg, &args.config.config) {
        Ok((l, warnings)) => {
            for w in warnings {
                log::warn!("{w}");
            }
            l
        }
        Err(msg) => {
            eprintln!("enocean-agent: configuration error: {msg}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let rt = super::runtime()?;
    let options = Options {
        watchdog: sd_notify::watchdog_enabled().map(|d| d / 2),
        ..Options::default()
    };
    let report = rt.block_on(async {
        // Installed before any start-up work, so an early SIGTERM still stops cleanly.
        let stop = super::signals::terminated();
        agent::run(&cfg, &library, options, stop, &mut systemd_notify).await
    });
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    report.context("agent stopped with an error")?;
    Ok(ExitCode::SUCCESS)
}

fn systemd_notify(n: Notice) {
    let _ = match n {
        Notice::Ready(s) => sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&s)]),
        Notice::Status(s) => sd_notify::notify(&[NotifyState::Status(&s)]),
        Notice::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
        Notice::Stopping => sd_notify::notify(&[NotifyState::Stopping]),
    };
}

/// The built-in EEP profiles, checked against the configured devices. A bad device ID or a
/// malformed EEP is a configuration error with the file, line and key; a well-formed EEP that no
/// profile decodes is a warning (returned beside the library): the device is kept and its
/// telegrams are forwarded raw with that EEP named, so one config pushed to a fleet, or an older
/// agent lacking one profile, never takes a gateway down.
pub fn library_for(cfg: &Config, path: &Path) -> Result<(Library, Vec<String>), String> {
    let mut warnings = Vec::new();
    let mut library = Library::builtin().map_err(|e| format!("built-in EEP profiles: {e}"))?;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if let Some(dir) = &cfg.eep.profiles_dir {
        let base = path.parent().unwrap_or(Path::new("."));
        let dir = base.join(dir);
        let loaded = library.load_dir(&dir).map_err(|e| {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("profiles_dir"))
                .map_or(String::new(), |n| format!(":{}", n + 1));
            format!("{}{line}: eep.profiles_dir: {e}", path.display())
        })?;
        log::info!("{} EEP profile(s) from {}", loaded.len(), dir.display());
    }
    for (i, d) in cfg.devices.iter().enumerate() {
        let at = |needle: &str| {
            text.lines()
                .position(|l| l.contains(needle))
                .map_or(String::new(), |n| format!(":{}", n + 1))
        };
        if let Err(e) = enocean_agent::device::parse_id(&d.id) {
            return Err(format!(
                "{}{}: device[{i}].id: {e}",
                path.display(),
                at(&format!("\"{}\"", d.id))
            ));
        }
        if let Some(eep) = &d.eep {
            match library.get_str(eep) {
                Ok(_) => {}
                Err(e @ LookupError::Unknown(_)) => warnings.push(format!(
                    "{}{}: device[{i}].eep: {e}; device {} is kept and its telegrams are forwarded raw",
                    path.display(),
                    at(&format!("\"{eep}\"")),
                    d.id
                )),
                Err(e) => {
                    return Err(format!(
                        "{}{}: device[{i}].eep: {e}",
                        path.display(),
                        at(&format!("\"{eep}\""))
                    ));
                }
            }
        }
    }
    Ok((library, warnings))
}
