//! `enocean-agent webhook list|test|enable|disable`.

use std::process::ExitCode;

use anyhow::Result;
use enocean_agent::telemetry::Gateway;
use enocean_agent::webhook::{self, ManualError, Outcome};

use super::cli::{self, Arg, Help, Parser, UsageError};
use super::context::{
    self, CONFIG_OPT, ConfigArg, EXIT_ATTEMPT_FAILED, EXIT_NOT_FOUND, EXIT_STATE,
};

use super::outln;

/// Arguments of `webhook`.
#[derive(Debug, PartialEq)]
pub struct Args {
    pub(crate) config: ConfigArg,
    pub(crate) action: Action,
}

/// What `webhook` does.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Health of every webhook: state, backlog, oldest undelivered reading, failed deliveries,
    /// failures in a row, next retry or probe, last success, last failure with its reason.
    List,
    /// Send one test delivery (`event: "test"`) through the real payload, auth and signing.
    Test {
        /// Webhook name.
        name: String,
    },
    /// Switch a webhook on; clears a deactivation and the failure count. The backlog drains.
    Enable {
        /// Webhook name.
        name: String,
    },
    /// Switch a webhook off; telemetry keeps queueing for it.
    Disable {
        /// Webhook name.
        name: String,
    },
}

/// What `webhook --help` shows.
pub const HELP: Help = Help {
    cmd: "webhook",
    usage: "[OPTIONS] <COMMAND>",
    about: "Webhooks: list, test delivery, enable, disable",
    commands: &[
        ("list", LIST_HELP.about),
        ("test", TEST_HELP.about),
        ("enable", ENABLE_HELP.about),
        ("disable", DISABLE_HELP.about),
    ],
    args: &[],
    options: &[CONFIG_OPT],
};

/// What `webhook list --help` shows.
pub const LIST_HELP: Help = Help {
    cmd: "webhook list",
    usage: "[OPTIONS]",
    about: "Health of every webhook: state, backlog, oldest undelivered reading, failed \
            deliveries, failures in a row, next retry or probe, last success, last failure",
    commands: &[],
    args: &[],
    options: &[CONFIG_OPT],
};

/// The argument of `webhook test|enable|disable`.
const NAME_ARG: (&str, &str) = ("<NAME>", "Webhook name");

/// What `webhook test --help` shows.
pub const TEST_HELP: Help = Help {
    cmd: "webhook test",
    usage: "[OPTIONS] <NAME>",
    about: "Send one test delivery (`event: \"test\"`) through the real payload, auth and signing",
    commands: &[],
    args: &[NAME_ARG],
    options: &[CONFIG_OPT],
};

/// What `webhook enable --help` shows.
pub const ENABLE_HELP: Help = Help {
    cmd: "webhook enable",
    usage: "[OPTIONS] <NAME>",
    about: "Switch a webhook on; clears a deactivation and the failure count. The backlog drains",
    commands: &[],
    args: &[NAME_ARG],
    options: &[CONFIG_OPT],
};

/// What `webhook disable --help` shows.
pub const DISABLE_HELP: Help = Help {
    cmd: "webhook disable",
    usage: "[OPTIONS] <NAME>",
    about: "Switch a webhook off; telemetry keeps queueing for it",
    commands: &[],
    args: &[NAME_ARG],
    options: &[CONFIG_OPT],
};

/// The arguments after `webhook`.
pub fn parse(p: &mut Parser) -> Result<Args, UsageError> {
    let h = &HELP;
    let mut config = ConfigArg::default();
    let word = cli::subcommand(p, h, Some(&mut config))?.ok_or(UsageError::Missing(h))?;
    let action = match word.as_str() {
        "list" => {
            config.parse_rest(p, &LIST_HELP)?;
            Action::List
        }
        "test" => Action::Test {
            name: parse_name(p, &TEST_HELP, &mut config)?,
        },
        "enable" => Action::Enable {
            name: parse_name(p, &ENABLE_HELP, &mut config)?,
        },
        "disable" => Action::Disable {
            name: parse_name(p, &DISABLE_HELP, &mut config)?,
        },
        "help" => return Err(cli::help_for(p, h, parse)),
        other => return Err(cli::unknown_command(h, other)),
    };
    Ok(Args { config, action })
}

/// The webhook name (and `-c/--config`) after `webhook test|enable|disable`.
fn parse_name(
    p: &mut Parser,
    h: &'static Help,
    config: &mut ConfigArg,
) -> Result<String, UsageError> {
    let mut name = None;
    while let Some(arg) = cli::next(p, h)? {
        match arg {
            Arg::Short('c') | Arg::Long("config") => config.read(p, h)?,
            Arg::Value(v) if name.is_none() => name = Some(cli::text(h, v, "NAME")?),
            arg => return Err(cli::unexpected(h, arg)),
        }
    }
    cli::required(name, h, "NAME")
}

/// Runs `webhook`.
pub fn run(args: Args) -> Result<ExitCode> {
    let mut ctx = match context::open(&args.config)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match args.action {
        Action::List => list(&ctx),
        Action::Test { name } => {
            let Some(cfg) = ctx.config.webhook(&name) else {
                return Ok(unknown(&name));
            };
            let gw = Gateway {
                id: ctx.config.gateway.id.as_str().into(),
                base_id: None,
            };
            match webhook::send_test(
                cfg,
                &ctx.store,
                gw,
                &enocean_agent::clock::system_clock_check(),
            ) {
                Ok(r) => {
                    let what = match (r.status, &r.error) {
                        (Some(s), _) => format!("HTTP {s}"),
                        (None, Some(e)) => e.clone(),
                        (None, None) => "-".into(),
                    };
                    let ms = r.latency.as_millis();
                    if r.outcome == Outcome::Delivered {
                        outln!("test delivery to {name}: delivered ({what}, {ms} ms)");
                        Ok(ExitCode::SUCCESS)
                    } else {
                        outln!(
                            "test delivery to {name}: {} ({what}, {ms} ms)",
                            r.outcome.as_str()
                        );
                        if !r.response.is_empty() {
                            outln!("response: {}", r.response);
                        }
                        Ok(ExitCode::from(EXIT_ATTEMPT_FAILED))
                    }
                }
                Err(ManualError::ClockNotSynchronised) => {
                    eprintln!(
                        "enocean-agent: {name}: the clock is not synchronised; Standard Webhooks timestamps would be wrong"
                    );
                    Ok(ExitCode::from(EXIT_STATE))
                }
                Err(e) => Err(e.into()),
            }
        }
        Action::Enable { name } => switch(&mut ctx, &name, true),
        Action::Disable { name } => switch(&mut ctx, &name, false),
    }
}

fn unknown(name: &str) -> ExitCode {
    eprintln!("enocean-agent: no webhook named {name:?} in the configuration");
    ExitCode::from(EXIT_NOT_FOUND)
}

fn switch(ctx: &mut context::Ctx, name: &str, on: bool) -> Result<ExitCode> {
    let mqtt = name
        .strip_prefix(enocean_agent::mqtt::OUTPUT_PREFIX)
        .is_some_and(|n| ctx.config.mqtt.iter().any(|m| m.name == n));
    if ctx.config.webhook(name).is_none() && !mqtt {
        return Ok(unknown(name));
    }
    ctx.store.ensure_webhook(name)?;
    if on {
        ctx.store.enable(name)?;
        outln!("webhook {name} enabled (deactivation and failure count cleared)");
    } else {
        ctx.store.disable(name)?;
        outln!("webhook {name} disabled (telemetry keeps queueing)");
    }
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &context::Ctx) -> Result<ExitCode> {
    let mut all =
        webhook::health::health(&ctx.store, &ctx.config.webhooks, &ctx.config.storage.path)?;
    // MQTT outputs (`mqtt:NAME`) keep the same figures; `webhook enable|disable mqtt:NAME` works.
    all.extend(enocean_agent::mqtt::health(
        &ctx.store,
        &ctx.config.mqtt,
        &ctx.config.storage.path,
    )?);
    outln!(
        "{:<16} {:<19} {:>7} {:>6} {:>6} {:>6} {:>7} {:>7}  {:<20} URL",
        "NAME",
        "STATE",
        "BACKLOG",
        "OLDEST",
        "FAILED",
        "CONSEC",
        "NEXT",
        "LAST-OK",
        "LAST-FAILURE"
    );
    for h in &all {
        let failure = match (&h.last_failure, &h.last_failure_reason) {
            (Some(at), Some(why)) => format!("{} {why}", ago(at)),
            (Some(at), None) => ago(at),
            _ => "-".into(),
        };
        outln!(
            "{:<16} {:<19} {:>7} {:>6} {:>6} {:>6} {:>7} {:>7}  {:<20} {}",
            h.name,
            h.state.as_str(),
            h.backlog,
            context::age_ms(h.oldest_undelivered_ms),
            h.failed,
            h.consecutive_failures,
            h.next_attempt_ms.map_or_else(|| "-".into(), until),
            h.last_success.as_deref().map_or_else(|| "-".into(), ago),
            failure,
            h.url
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// "42s"-style age of an RFC 3339 time.
fn ago(t: &str) -> String {
    context::age_ms(
        t.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_millisecond()),
    )
}

/// "in 28s"-style delay until a unix-ms time ("now" when due).
fn until(ms: i64) -> String {
    let left = (ms - jiff::Timestamp::now().as_millisecond()) / 1000;
    if left <= 0 {
        "now".into()
    } else {
        format!("in {}", context::human(left))
    }
}
