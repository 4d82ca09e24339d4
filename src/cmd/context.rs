//! What the outbox and webhook subcommands share: `--config`, loading it, opening the outbox
//! database the daemon uses, and the exit codes scripts rely on.
//!
//! Exit codes: 0 success; 1 other failure (database unreadable, I/O); 2 usage error; 3 unknown
//! webhook name or delivery ID; 4 a delivery attempt (test, resend) did not succeed; 5 not possible
//! in the current state (delivery not failed, clock not synchronised); 78 configuration error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use enocean_agent::config::{Config, ConfigError};
use enocean_agent::outbox::Store;

use super::cli::{self, Arg, Help, Parser, UsageError};

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/enocean-agent/config.toml";

/// Unknown webhook name or delivery ID.
pub const EXIT_NOT_FOUND: u8 = 3;
/// A delivery attempt did not succeed.
pub const EXIT_ATTEMPT_FAILED: u8 = 4;
/// Not possible in the current state.
pub const EXIT_STATE: u8 = 5;
/// Configuration error (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// `-c/--config PATH`, shared by the subcommands. Like clap's `global` option it was, it may stand
/// before or after a subcommand (`outbox -c FILE status`, `outbox status -c FILE`); the last one
/// given counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigArg {
    /// Configuration file.
    pub config: PathBuf,
}

impl Default for ConfigArg {
    fn default() -> Self {
        ConfigArg {
            config: PathBuf::from(DEFAULT_CONFIG),
        }
    }
}

/// The help line of `-c/--config` (its default is [`DEFAULT_CONFIG`]).
pub const CONFIG_OPT: (&str, &str) = (
    "-c, --config <PATH>",
    "Configuration file [default: /etc/enocean-agent/config.toml]",
);

impl ConfigArg {
    /// Reads the value of `-c/--config`, just seen.
    pub fn read(&mut self, p: &mut Parser, h: &'static Help) -> Result<(), UsageError> {
        self.config = cli::raw_value(p, h, "--config")?.into();
        Ok(())
    }

    /// The arguments of a command that takes only `-c/--config`.
    pub fn parse_only(p: &mut Parser, h: &'static Help) -> Result<ConfigArg, UsageError> {
        let mut config = ConfigArg::default();
        config.parse_rest(p, h)?;
        Ok(config)
    }

    /// The rest of a command line that may only hold `-c/--config`.
    pub fn parse_rest(&mut self, p: &mut Parser, h: &'static Help) -> Result<(), UsageError> {
        while let Some(arg) = cli::next(p, h)? {
            match arg {
                Arg::Short('c') | Arg::Long("config") => self.read(p, h)?,
                arg => return Err(cli::unexpected(h, arg)),
            }
        }
        Ok(())
    }
}

/// The loaded configuration and an open outbox.
pub struct Ctx {
    /// The configuration.
    pub config: Config,
    /// The outbox database the daemon uses.
    pub store: Store,
}

/// Loads the configuration; on error prints every problem (see [`report_config_errors`]) and
/// gives the exit code 78.
pub fn load_config(arg: &ConfigArg) -> Result<Config, ExitCode> {
    let (config, errors) = Config::check(&arg.config);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(report_config_errors(&arg.config, &errors))
    }
}

/// Prints every configuration problem, one per line (`FILE:LINE:COLUMN: key `K`: what is wrong
/// and what to do`), then how many there are; gives the exit code 78.
pub fn report_config_errors(path: &std::path::Path, errors: &[ConfigError]) -> ExitCode {
    for e in errors {
        eprintln!("enocean-agent: configuration error: {e}");
    }
    if errors.len() > 1 {
        eprintln!(
            "enocean-agent: {} problems in {}",
            errors.len(),
            path.display()
        );
    }
    ExitCode::from(EXIT_CONFIG)
}

/// Loads the configuration and opens the existing outbox.
pub fn open(arg: &ConfigArg) -> Result<std::result::Result<Ctx, ExitCode>> {
    let config = match load_config(arg) {
        Ok(c) => c,
        Err(code) => return Ok(Err(code)),
    };
    let path = &config.storage.path;
    if !path.exists() {
        bail!(
            "no outbox database at {} (has the agent run yet? see [storage] path)",
            path.display()
        );
    }
    let store = Store::open(path)?;
    Ok(Ok(Ctx { config, store }))
}

/// "3 min ago"-style age of a unix-milliseconds time.
pub fn age_ms(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let now = jiff::Timestamp::now().as_millisecond();
    human((now - ms).max(0) / 1000)
}

/// Seconds as "42s", "3m", "5h", "2d".
pub fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The routes of the webhooks that have them, for routed backlog depths.
pub fn routes(config: &Config) -> Vec<(String, Vec<String>)> {
    config
        .webhooks
        .iter()
        .filter_map(|w| w.devices.clone().map(|d| (w.name.clone(), d)))
        .chain(
            config
                .mqtt
                .iter()
                .filter_map(|m| m.devices.clone().map(|d| (m.output_name(), d))),
        )
        .collect()
}
