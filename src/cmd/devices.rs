//! `enocean-agent devices`: configured and learned devices, when they were last heard;
//! `devices forget ID` removes a learned one.

use std::process::ExitCode;

use anyhow::Result;
use enocean_agent::device;

use super::cli::{self, Arg, Help, Parser, UsageError};
use super::context::{CONFIG_OPT, ConfigArg, EXIT_NOT_FOUND, load_config};

use super::outln;

/// Arguments of `devices`.
#[derive(Debug, PartialEq)]
pub struct Args {
    pub(crate) config: ConfigArg,
    pub(crate) action: Option<Action>,
}

/// What `devices` does besides listing.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Remove a learned device (its telegrams become raw telemetry again).
    Forget {
        /// Sender ID, eight hex digits.
        id: String,
    },
}

/// What `devices --help` shows.
pub const HELP: Help = Help {
    cmd: "devices",
    usage: "[OPTIONS] [COMMAND]",
    about: "Configured and learned devices; `devices forget ID`",
    commands: &[(
        "forget",
        "Remove a learned device (its telegrams become raw telemetry again)",
    )],
    args: &[],
    options: &[CONFIG_OPT],
};

/// What `devices forget --help` shows.
pub const FORGET_HELP: Help = Help {
    cmd: "devices forget",
    usage: "[OPTIONS] <ID>",
    about: "Remove a learned device (its telegrams become raw telemetry again)",
    commands: &[],
    args: &[("<ID>", "Sender ID, eight hex digits")],
    options: &[CONFIG_OPT],
};

/// The arguments after `devices`.
pub fn parse(p: &mut Parser) -> Result<Args, UsageError> {
    let h = &HELP;
    let mut config = ConfigArg::default();
    let Some(name) = cli::subcommand(p, h, Some(&mut config))? else {
        return Ok(Args {
            config,
            action: None,
        });
    };
    let action = match name.as_str() {
        "forget" => {
            let h = &FORGET_HELP;
            let mut id = None;
            while let Some(arg) = cli::next(p, h)? {
                match arg {
                    Arg::Short('c') | Arg::Long("config") => config.read(p, h)?,
                    Arg::Value(v) if id.is_none() => id = Some(cli::text(h, v, "ID")?),
                    arg => return Err(cli::unexpected(h, arg)),
                }
            }
            Action::Forget {
                id: cli::required(id, h, "ID")?,
            }
        }
        "help" => return Err(cli::help_for(p, h, parse)),
        other => return Err(cli::unknown_command(h, other)),
    };
    Ok(Args {
        config,
        action: Some(action),
    })
}

/// Lists devices or forgets one.
pub fn run(args: Args) -> Result<ExitCode> {
    let cfg = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let db = &cfg.storage.path;
    match args.action {
        Some(Action::Forget { id }) => {
            let id = device::parse_id(&id)?;
            if device::forget(db, id)? {
                outln!("forgot {id:08X}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("enocean-agent: no stored device {id:08X}");
                Ok(ExitCode::from(EXIT_NOT_FOUND))
            }
        }
        None => {
            // Silence watch: "silent" (reported and not heard since), the threshold of a watched
            // device, "-" for devices not watched (learned ones, rockers without a setting).
            let silent = if db.exists() {
                enocean_agent::health::silent_devices_at(db).unwrap_or_default()
            } else {
                Default::default()
            };
            let watch = |id: u32| {
                if silent.contains(&id) {
                    return "silent".to_owned();
                }
                cfg.devices
                    .iter()
                    .find(|c| device::parse_id(&c.id).ok() == Some(id))
                    .and_then(|c| c.silence_threshold(cfg.learn.silent_after))
                    .map_or_else(|| "-".to_owned(), enocean_agent::duration::format)
            };
            outln!(
                "{:<8}  {:<8}  {:<10}  {:<24}  {:<20}  {:<4}  WATCH",
                "ID",
                "EEP",
                "SOURCE",
                "NAME",
                "LAST SEEN",
                "DBM"
            );
            for d in device::list(db, &cfg.devices)? {
                outln!(
                    "{:08X}  {:<8}  {:<10}  {:<24}  {:<20}  {:<4}  {}",
                    d.id,
                    d.eep.as_deref().unwrap_or("-"),
                    d.source.as_str(),
                    d.name.as_deref().unwrap_or("-"),
                    d.last_seen.map_or_else(
                        || "-".to_owned(),
                        |t| t.to_string().chars().take(19).collect()
                    ),
                    d.last_dbm.map_or("-".into(), |v| v.to_string()),
                    watch(d.id)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
