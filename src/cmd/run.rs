//! `enocean-agent run`: the daemon. SIGTERM and SIGINT stop it cleanly; under systemd it speaks
//! sd_notify (READY, STATUS, WATCHDOG, STOPPING).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use enocean_agent::agent::{self, Notice, Options};
use enocean_agent::config::{Config, ConfigError};
use enocean_agent::eep::{Library, LookupError};
use sd_notify::NotifyState;

use super::cli::{Help, Parser, UsageError};
use super::context::{CONFIG_OPT, ConfigArg, report_config_errors};

/// Arguments of `run`.
#[derive(Debug, PartialEq)]
pub struct Args {
    pub(crate) config: ConfigArg,
}

/// What `run --help` shows.
pub const HELP: Help = Help {
    cmd: "run",
    usage: "[OPTIONS]",
    about: "Run the agent (the daemon); SIGTERM stops it cleanly",
    commands: &[],
    args: &[],
    options: &[CONFIG_OPT],
};

/// The arguments after `run`.
pub fn parse(p: &mut Parser) -> Result<Args, UsageError> {
    Ok(Args {
        config: ConfigArg::parse_only(p, &HELP)?,
    })
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(args: Args) -> Result<ExitCode> {
    let path = &args.config.config;
    let (cfg, library) = match checked(path) {
        (cfg, Some((library, warnings)), errors) if errors.is_empty() => {
            super::logging::init(cfg.log.level.as_deref());
            for w in warnings {
                log::warn!("{w}");
            }
            (cfg, library)
        }
        (_, _, errors) => return Ok(report_config_errors(path, &errors)),
    };
    if cfg.secrets_world_readable(path) {
        log::warn!(
            "{} holds secrets and every user can read it: chmod 640, or move them to *_file",
            path.display()
        );
    }
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

/// An EEP library and the warnings about it (unknown-but-well-formed EEPs and the like).
pub type LibraryWithWarnings = (Library, Vec<String>);

/// The configuration at `path`, its EEP library with the warnings about it, and every problem of
/// both: what `check-config` prints and `run` refuses to start with (all problems, not only the
/// first). The library is checked even when the file has other problems, so one run lists them
/// all.
pub fn checked(path: &Path) -> (Config, Option<LibraryWithWarnings>, Vec<ConfigError>) {
    let (cfg, mut errors) = Config::check(path);
    if !path.is_file() {
        return (cfg, None, errors);
    }
    let library = match library_for(&cfg, path) {
        Ok(l) => Some(l),
        Err(more) => {
            errors.extend(more);
            errors.sort_by_key(|e| (e.line == 0, e.line, e.column));
            None
        }
    };
    (cfg, library, errors)
}

/// The built-in EEP profiles (plus `[eep] profiles_dir`), checked against the configured
/// devices. A malformed EEP or an unreadable profile directory is a configuration error with the
/// file, line, column and key (every one of them is returned); a well-formed EEP that no profile
/// decodes is a warning (returned beside the library): the device is kept and its telegrams are
/// forwarded raw with that EEP named, so one config pushed to a fleet, or an older agent lacking
/// one profile, never takes a gateway down. Device IDs are checked by [`Config::check`].
pub fn library_for(cfg: &Config, path: &Path) -> Result<(Library, Vec<String>), Vec<ConfigError>> {
    let error = |key: String, message: String| {
        let (line, column) = cfg.position(&key);
        ConfigError {
            file: path.to_path_buf(),
            line,
            column,
            key: Some(key),
            message,
        }
    };
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let mut library = Library::builtin()
        .map_err(|e| vec![error(String::new(), format!("built-in EEP profiles: {e}"))])?;
    if let Some(dir) = &cfg.eep.profiles_dir {
        let base = path.parent().unwrap_or(Path::new("."));
        let dir = base.join(dir);
        match library.load_dir(&dir) {
            Ok(loaded) => log::info!("{} EEP profile(s) from {}", loaded.len(), dir.display()),
            Err(e) => errors.push(error("eep.profiles_dir".into(), e.to_string())),
        }
    }
    for (i, d) in cfg.devices.iter().enumerate() {
        if let Some(eep) = &d.eep {
            let key = format!("device[{i}].eep");
            match library.get_str(eep) {
                Ok(_) => {}
                Err(e @ LookupError::Unknown(_)) => {
                    let w = error(key, format!(
                        "{e}; device {} is kept and its telegrams are forwarded raw",
                        d.id
                    ));
                    warnings.push(w.to_string());
                }
                Err(e) => errors.push(error(
                    key,
                    format!("{e}: write it as RORG-FUNC-TYPE, e.g. \"A5-02-05\" (see `enocean-agent profiles`)"),
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok((library, warnings))
    } else {
        Err(errors)
    }
}
