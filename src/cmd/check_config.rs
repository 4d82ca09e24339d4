//! `enocean-agent check-config`: validates the configuration and prints it as the agent will use
//! it, defaults filled in and secrets redacted.

use std::process::ExitCode;

use anyhow::Result;

use super::context::{ConfigArg, EXIT_CONFIG, load_config};

use super::outln;

/// Arguments of `check-config`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

/// Exit 0 and the effective configuration, or 78 and the error with its location.
pub fn run(args: Args) -> Result<ExitCode> {
    let cfg = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match super::run::library_for(&cfg, &args.config.config) {
        Ok((_, warnings)) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
        }
        Err(msg) => {
            eprintln!("enocean-agent: configuration error: {msg}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    }
    if cfg.secrets_world_readable(&args.config.config) {
        eprintln!(
            "warning: {} holds secrets and every user can read it: chmod 640, or move them to *_file",
            args.config.config.display()
        );
    }
    // Secrets print as "<redacted>" (see enocean_agent::secret).
    outln!("{cfg:#?}");
    eprintln!("{}: configuration OK", args.config.config.display());
    Ok(ExitCode::SUCCESS)
}
