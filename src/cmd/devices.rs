//! `enocean-agent devices`: configured and learned devices, when they were last heard;
//! `devices forget ID` removes a learned one.

use std::process::ExitCode;

use anyhow::Result;
use enocean_agent::device;

use super::context::{ConfigArg, EXIT_NOT_FOUND, load_config};

use super::outln;

/// Arguments of `devices`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Remove a learned device (its telegrams become raw telemetry again).
    Forget {
        /// Sender ID, eight hex digits.
        id: String,
    },
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
