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
    /// State, consecutive failures, backlog and last success of every webhook.
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
    let ctx = match context::open(&args.config)? {
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
            match webhook::send_test(cfg, &ctx.store, gw, &webhook::system_clock_check()) {
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
        Action::Enable { name } => switch(&ctx, &name, true),
        Action::Disable { name } => switch(&ctx, &name, false),
    }
}

fn unknown(name: &str) -> ExitCode {
    eprintln!("enocean-agent: no webhook named {name:?} in the configuration");
    ExitCode::from(EXIT_NOT_FOUND)
}

fn switch(ctx: &context::Ctx, name: &str, on: bool) -> Result<ExitCode> {
    if ctx.config.webhook(name).is_none() {
        return Ok(unknown(name));
    }
    ctx.store.ensure_webhook(name)?;
    if on {
        ctx.store.enable(name)?;
        outln!("webhook {name} enabled");
    } else {
        ctx.store.disable(name)?;
        outln!("webhook {name} disabled (telemetry keeps queueing)");
    }
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &context::Ctx) -> Result<ExitCode> {
    let status = ctx
        .store
        .status_routed(&ctx.config.storage.path, &context::routes(&ctx.config))?;
    outln!(
        "{:<20} {:<12} {:>8} {:>8} {:>7} {:<24} URL",
        "NAME",
        "STATE",
        "FAILURES",
        "BACKLOG",
        "FAILED",
        "LAST SUCCESS"
    );
    for w in &ctx.config.webhooks {
        let st = ctx.store.webhook(&w.name)?;
        let depth = status.webhooks.iter().find(|d| d.name == w.name);
        let state = match &st {
            _ if !w.enabled => "off-config",
            None => "new",
            Some(s) if s.deactivated_at.is_some() => "deactivated",
            Some(s) if !s.enabled => "disabled",
            Some(_) => "active",
        };
        outln!(
            "{:<20} {:<12} {:>8} {:>8} {:>7} {:<24} {}",
            w.name,
            state,
            st.as_ref().map_or(0, |s| s.consecutive_failures),
            depth.map_or(0, |d| d.depth + d.retrying),
            depth.map_or(0, |d| d.failed),
            st.as_ref()
                .and_then(|s| s.last_success.clone())
                .unwrap_or_else(|| "-".into()),
            w.display_url()
        );
    }
    Ok(ExitCode::SUCCESS)
}
