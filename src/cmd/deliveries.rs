//! `enocean-agent deliveries`: the delivery log (one line per attempt), newest first.

use std::process::ExitCode;

use anyhow::Result;

use super::context::{self, CONFIG_OPT, ConfigArg, EXIT_NOT_FOUND};

use super::cli::{self, Arg, Help, Parser, UsageError};
use super::outln;

/// Arguments of `deliveries`.
#[derive(Debug, PartialEq)]
pub struct Args {
    pub(crate) config: ConfigArg,
    /// Only this webhook.
    pub(crate) webhook: Option<String>,
    /// Only attempts that did not deliver.
    pub(crate) failed: bool,
    /// At most this many entries.
    pub(crate) limit: usize,
    /// Also print the start of each response body.
    pub(crate) verbose: bool,
}

/// What `deliveries --help` shows.
pub const HELP: Help = Help {
    cmd: "deliveries",
    usage: "[OPTIONS]",
    about: "The delivery log: one line per attempt, newest first",
    commands: &[],
    args: &[],
    options: &[
        CONFIG_OPT,
        ("--webhook <NAME>", "Only this webhook"),
        ("--failed", "Only attempts that did not deliver"),
        ("--limit <N>", "At most this many entries [default: 20]"),
        ("--verbose", "Also print the start of each response body"),
    ],
};

/// The arguments after `deliveries`.
pub fn parse(p: &mut Parser) -> Result<Args, UsageError> {
    let h = &HELP;
    let mut config = ConfigArg::default();
    let (mut webhook, mut failed, mut limit, mut verbose) = (None, false, None, false);
    while let Some(arg) = cli::next(p, h)? {
        match arg {
            Arg::Short('c') | Arg::Long("config") => config.read(p, h)?,
            Arg::Long("webhook") => cli::once(p, h, "--webhook", &mut webhook)?,
            Arg::Long("failed") => cli::flag(&mut failed, h, "--failed")?,
            Arg::Long("limit") => cli::once(p, h, "--limit", &mut limit)?,
            Arg::Long("verbose") => cli::flag(&mut verbose, h, "--verbose")?,
            arg => return Err(cli::unexpected(h, arg)),
        }
    }
    Ok(Args {
        config,
        webhook,
        failed,
        limit: limit.unwrap_or(20),
        verbose,
    })
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
