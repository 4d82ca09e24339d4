//! `enocean-agent check-config`: validates the configuration and prints it as TOML as the agent
//! will use it, defaults filled in and secrets redacted.

use std::process::ExitCode;

use anyhow::Result;

use super::cli::{Help, Parser, UsageError};
use super::context::{CONFIG_OPT, ConfigArg, report_config_errors};

use super::outln;

/// Arguments of `check-config`.
#[derive(Debug, PartialEq)]
pub struct Args {
    pub(crate) config: ConfigArg,
}

/// What `check-config --help` shows.
pub const HELP: Help = Help {
    cmd: "check-config",
    usage: "[OPTIONS]",
    about: "Validate the configuration and print it with secrets redacted",
    commands: &[],
    args: &[],
    options: &[CONFIG_OPT],
};

/// The arguments after `check-config`.
pub fn parse(p: &mut Parser) -> Result<Args, UsageError> {
    Ok(Args {
        config: ConfigArg::parse_only(p, &HELP)?,
    })
}

/// Exit 0 and the effective configuration, or 78 and every problem with its location.
pub fn run(args: Args) -> Result<ExitCode> {
    let path = &args.config.config;
    let (cfg, warnings) = match super::run::checked(path) {
        (cfg, Some((_, warnings)), errors) if errors.is_empty() => (cfg, warnings),
        (_, _, errors) => return Ok(report_config_errors(path, &errors)),
    };
    for w in warnings {
        eprintln!("warning: {w}");
    }
    if cfg.secrets_world_readable(path) {
        eprintln!(
            "warning: {} holds secrets and every user can read it: chmod 640, or move them to *_file",
            path.display()
        );
    }
    // Secrets serialize as "[redacted]", URLs without credentials or query values, secrets read
    // from files as their files only (see enocean_agent::secret and webhook::config).
    let text = toml::to_string_pretty(&cfg)
        .map_err(|e| anyhow::anyhow!("cannot print the configuration as TOML: {e}"))?;
    outln!(
        "# Effective configuration of {} (defaults filled in, secrets redacted)",
        path.display()
    );
    outln!("{}", text.trim_end());
    eprintln!("{}: configuration OK", path.display());
    Ok(ExitCode::SUCCESS)
}
