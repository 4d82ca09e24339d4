//! `enocean-agent deliveries`: the delivery log (one line per attempt), newest first.

use std::process::ExitCode;

use anyhow::Result;

use super::context::{self, ConfigArg, EXIT_NOT_FOUND};

use super::outln;

/// Arguments of `deliveries`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Only this webhook.
    #[arg(long)]
    webhook: Option<String>,
    /// Only attempts that did not deliver.
    #[arg(long)]
    failed: bool,
    /// At most this many entries.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Also print the start of each response body.
    #[arg(long)]
    verbose: bool,
}

/// Runs `deliveries`.
pub fn run(args: Args) -> Result<ExitCode> {
    let ctx = match context::open(&args.config)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Some(w) = &args.webhook
        && ctx.config.webhook(w).is_none()
        && ctx.store.webhook(w)?.is_none()
    {
        eprintln!("enocean-agent: no webhook named {w:?}");
        return Ok(ExitCode::from(EXIT_NOT_FOUND));
    }
    let list = ctx
        .store
        .attempts(args.webhook.as_deref(), args.failed, args.limit)?;
    outln!(
        "{:<24} {:<16} {:<7} {:<10} {:<20} {:>8} {:>6} {:<12} DELIVERY",
        "TIME",
        "WEBHOOK",
        "TRIGGER",
        "OUTCOME",
        "STATUS/ERROR",
        "LATENCY",
        "ROW",
        "SEQ"
    );
    for l in &list {
        let status = match (l.status, &l.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(e)) => e.clone(),
            _ => "-".into(),
        };
        let seq = match (l.seq_first, l.seq_last) {
            (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
            (Some(a), _) => a.to_string(),
            _ => "-".into(),
        };
        outln!(
            "{:<24} {:<16} {:<7} {:<10} {:<20} {:>6}ms {:>6} {:<12} {}",
            l.at,
            l.webhook,
            l.trigger,
            l.outcome,
            status,
            l.latency_ms,
            l.delivery_row.map_or("-".into(), |r| r.to_string()),
            seq,
            l.delivery_id
        );
        if args.verbose && !l.response.is_empty() {
            outln!("    response: {}", l.response.replace('\n', " "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
