//! `enocean-agent check-config`: validates the configuration and prints it as TOML as the agent
//! will use it, defaults filled in and secrets redacted.

use std::process::ExitCode;

use anyhow::Result;

use super::context::{ConfigArg, report_config_errors};

use super::outln;

/// Arguments of `check-config`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
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
