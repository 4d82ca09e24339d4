//! `enocean-agent webhook list|test|enable|disable`.

use std::process::ExitCode;

use anyhow::Result;
use enocean_agent::telemetry::Gateway;
use enocean_agent::webhook::{self, ManualError, Outcome};

use super::context::{self, ConfigArg, EXIT_ATTEMPT_FAILED, EXIT_NOT_FOUND, EXIT_STATE};

use super::outln;

/// Arguments of `webhook`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
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
                id: ctx.config.gateway.id.clone(),
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
