//! `enocean-agent outbox status|failed|resend|salvage`.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use enocean_agent::outbox::UnixMs;
use enocean_agent::webhook::{self, ManualError, Outcome};

use super::cli::{self, Arg, Help, Parser, UsageError};
use super::context::{
    self, CONFIG_OPT, ConfigArg, EXIT_ATTEMPT_FAILED, EXIT_NOT_FOUND, EXIT_STATE, age_ms,
};

use super::outln;

/// Arguments of `outbox`.
#[derive(Debug, PartialEq)]
pub struct Args {
    pub(crate) config: ConfigArg,
    pub(crate) action: Action,
}

/// What `outbox` does.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Depth per webhook, oldest pending age, sizes, drops.
    Status,
    /// Failed deliveries kept for resending.
    Failed {
        /// Only this webhook.
        webhook: Option<String>,
    },
    /// Resend failed deliveries once each (same body, same delivery id).
    Resend {
        /// Delivery IDs (from `outbox failed`); none with `failed`.
        ids: Vec<i64>,
        /// Resend every failed delivery (with `since` / `webhook` to narrow).
        failed: bool,
        /// Only deliveries created since this time (RFC 3339) or this long ago ("2h", "30m").
        since: Option<String>,
        /// Only this webhook.
        webhook: Option<String>,
    },
    /// Import the undelivered readings still readable from an outbox moved aside as corrupt
    /// (`outbox.db.corrupt-<time>`); they are delivered again with their ids.
    Salvage {
        /// The moved-aside database file.
        file: std::path::PathBuf,
    },
}

/// What `outbox --help` shows.
pub const HELP: Help = Help {
    cmd: "outbox",
    usage: "[OPTIONS] <COMMAND>",
    about: "The outbox: status, failed deliveries, resend",
    commands: &[
        ("status", STATUS_HELP.about),
        ("failed", FAILED_HELP.about),
        ("resend", RESEND_HELP.about),
        ("salvage", SALVAGE_HELP.about),
    ],
    args: &[],
    options: &[CONFIG_OPT],
};

/// What `outbox status --help` shows.
pub const STATUS_HELP: Help = Help {
    cmd: "outbox status",
    usage: "[OPTIONS]",
    about: "Depth per webhook, oldest pending age, sizes, drops",
    commands: &[],
    args: &[],
    options: &[CONFIG_OPT],
};

/// What `outbox failed --help` shows.
pub const FAILED_HELP: Help = Help {
    cmd: "outbox failed",
    usage: "[OPTIONS]",
    about: "Failed deliveries kept for resending",
    commands: &[],
    args: &[],
    options: &[CONFIG_OPT, ("--webhook <NAME>", "Only this webhook")],
};

/// What `outbox resend --help` shows.
pub const RESEND_HELP: Help = Help {
    cmd: "outbox resend",
    usage: "[OPTIONS] <IDS>... | --failed [--since WHEN] [--webhook NAME]",
    about: "Resend failed deliveries once each (same body, same delivery id)",
    commands: &[],
    args: &[("<IDS>...", "Delivery IDs (from `outbox failed`)")],
    options: &[
        CONFIG_OPT,
        (
            "--failed",
            "Resend every failed delivery (with --since / --webhook to narrow)",
        ),
        (
            "--since <WHEN>",
            "Only deliveries created since this time (RFC 3339) or this long ago (\"2h\", \"30m\")",
        ),
        ("--webhook <NAME>", "Only this webhook"),
    ],
};

/// What `outbox salvage --help` shows.
pub const SALVAGE_HELP: Help = Help {
    cmd: "outbox salvage",
    usage: "[OPTIONS] <FILE>",
    about: "Import the undelivered readings still readable from an outbox moved aside as corrupt \
            (`outbox.db.corrupt-<time>`); they are delivered again with their ids",
    commands: &[],
    args: &[("<FILE>", "The moved-aside database file")],
    options: &[CONFIG_OPT],
};

/// The arguments after `outbox`.
pub fn parse(p: &mut Parser) -> Result<Args, UsageError> {
    let h = &HELP;
    let mut config = ConfigArg::default();
    let name = cli::subcommand(p, h, Some(&mut config))?.ok_or(UsageError::Missing(h))?;
    let action = match name.as_str() {
        "status" => {
            config.parse_rest(p, &STATUS_HELP)?;
            Action::Status
        }
        "failed" => {
            let h = &FAILED_HELP;
            let mut webhook = None;
            while let Some(arg) = cli::next(p, h)? {
                match arg {
                    Arg::Short('c') | Arg::Long("config") => config.read(p, h)?,
                    Arg::Long("webhook") => cli::once(p, h, "--webhook", &mut webhook)?,
                    arg => return Err(cli::unexpected(h, arg)),
                }
            }
            Action::Failed { webhook }
        }
        "resend" => parse_resend(p, &mut config)?,
        "salvage" => {
            let h = &SALVAGE_HELP;
            let mut file = None;
            while let Some(arg) = cli::next(p, h)? {
                match arg {
                    Arg::Short('c') | Arg::Long("config") => config.read(p, h)?,
                    Arg::Value(v) if file.is_none() => file = Some(v.into()),
                    arg => return Err(cli::unexpected(h, arg)),
                }
            }
            Action::Salvage {
                file: cli::required(file, h, "FILE")?,
            }
        }
        "help" => return Err(cli::help_for(p, h, parse)),
        other => return Err(cli::unknown_command(h, other)),
    };
    Ok(Args { config, action })
}

/// The arguments after `outbox resend`.
fn parse_resend(p: &mut Parser, config: &mut ConfigArg) -> Result<Action, UsageError> {
    let h = &RESEND_HELP;
    let (mut ids, mut failed, mut since, mut webhook) = (Vec::new(), false, None, None);
    while let Some(arg) = cli::next(p, h)? {
        match arg {
            Arg::Short('c') | Arg::Long("config") => config.read(p, h)?,
            Arg::Long("failed") => cli::flag(&mut failed, h, "--failed")?,
            Arg::Long("since") => cli::once(p, h, "--since", &mut since)?,
            Arg::Long("webhook") => cli::once(p, h, "--webhook", &mut webhook)?,
            Arg::Value(v) => ids.push(cli::parse_value(h, v, "a delivery ID")?),
            arg => return Err(cli::unexpected(h, arg)),
        }
    }
    if failed && !ids.is_empty() {
        return Err(cli::invalid(h, "delivery IDs cannot be used with --failed"));
    }
    if !failed && ids.is_empty() {
        return Err(cli::invalid(
            h,
            "give delivery IDs (from `outbox failed`) or --failed",
        ));
    }
    for (set, name) in [
        (since.is_some(), "--since"),
        (webhook.is_some(), "--webhook"),
    ] {
        if set && !failed {
            return Err(cli::invalid(h, format_args!("{name} requires --failed")));
        }
    }
    Ok(Action::Resend {
        ids,
        failed,
        since,
        webhook,
    })
}

/// Runs `outbox`.
pub fn run(args: Args) -> Result<ExitCode> {
    let mut ctx = match context::open(&args.config)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match args.action {
        Action::Status => status(&ctx),
        Action::Salvage { file } => {
            if !file.exists() {
                eprintln!("enocean-agent: no file {}", file.display());
                return Ok(ExitCode::from(EXIT_NOT_FOUND));
            }
            let r = ctx.store.salvage(&file)?;
            outln!(
                "salvaged {} readings from {} (after seq {}); {} already here, {} unreadable rows, {} damaged ranges stepped over",
                r.imported,
                file.display(),
                r.from_seq,
                r.already_here,
                r.unreadable,
                r.skipped_ranges
            );
            Ok(ExitCode::SUCCESS)
        }
        Action::Failed { webhook } => {
            outln!(
                "{:>6} {:<20} {:<24} {:>8} {:<16} RECORDS",
                "ID",
                "WEBHOOK",
                "CREATED",
                "ATTEMPTS",
                "LAST ERROR"
            );
            // Streamed: one row (without its body) in memory at a time.
            let n = ctx
                .store
                .for_each_failed(webhook.as_deref(), None, |d| -> Result<()> {
                    let seqs = match (d.seq_first, d.seq_last) {
                        (Some(a), Some(b)) if a != b => format!("seq {a}-{b}"),
                        (Some(a), _) => format!("seq {a}"),
                        _ => "-".into(),
                    };
                    outln!(
                        "{:>6} {:<20} {:<24} {:>8} {:<16} {}",
                        d.row,
                        d.webhook,
                        d.created_at,
                        d.attempts,
                        d.last_error.as_deref().unwrap_or("-"),
                        seqs
                    );
                    Ok(())
                })?;
            eprintln!("{n} failed deliveries");
            Ok(ExitCode::SUCCESS)
        }
        Action::Resend {
            ids,
            failed,
            since,
            webhook,
        } => {
            let ids = if failed {
                let since = since.as_deref().map(parse_since).transpose()?;
                if let Some(w) = &webhook
                    && ctx.config.webhook(w).is_none()
                {
                    eprintln!("enocean-agent: no webhook named {w:?} in the configuration");
                    return Ok(ExitCode::from(EXIT_NOT_FOUND));
                }
                // Ids only; each body is read when its turn comes.
                ctx.store.failed_ids(webhook.as_deref(), since)?
            } else {
                ids
            };
            resend(&ctx, &ids)
        }
    }
}

fn parse_since(s: &str) -> Result<UnixMs> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(UnixMs::from(t));
    }
    let d = enocean_agent::duration::parse(s)
        .map_err(|e| anyhow!("--since: not an RFC 3339 time or a duration: {e}"))?;
    let sd = jiff::SignedDuration::try_from(d)?;
    let t = jiff::Timestamp::now().checked_sub(sd)?;
    Ok(UnixMs::from(t))
}

fn resend(ctx: &context::Ctx, ids: &[i64]) -> Result<ExitCode> {
    let clock = enocean_agent::clock::system_clock_check();
    let (mut ok, mut failed, mut missing, mut refused) = (0, 0, 0, 0);
    for &id in ids {
        match webhook::resend(&ctx.config.webhooks, &ctx.store, id, &clock) {
            Ok(r) => {
                let what = match (r.status, &r.error) {
                    (Some(s), _) => format!("HTTP {s}"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "-".into(),
                };
                if r.outcome == Outcome::Delivered {
                    ok += 1;
                    outln!("{id}: delivered ({what})");
                } else {
                    failed += 1;
                    outln!("{id}: failed ({what})");
                }
            }
            Err(ManualError::NotFound(_)) => {
                missing += 1;
                outln!("{id}: not found");
            }
            Err(e @ (ManualError::NotFailed { .. } | ManualError::ClockNotSynchronised)) => {
                refused += 1;
                outln!("{id}: not resent: {e}");
            }
            Err(ManualError::UnknownWebhook { webhook, .. }) => {
                missing += 1;
                outln!("{id}: webhook {webhook:?} is not in the configuration");
            }
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!(
        "resent {}: {ok} delivered, {failed} failed, {missing} not found, {refused} not resendable",
        ids.len()
    );
    Ok(if missing > 0 {
        ExitCode::from(EXIT_NOT_FOUND)
    } else if failed > 0 {
        ExitCode::from(EXIT_ATTEMPT_FAILED)
    } else if refused > 0 {
        ExitCode::from(EXIT_STATE)
    } else {
        ExitCode::SUCCESS
    })
}

fn status(ctx: &context::Ctx) -> Result<ExitCode> {
    let s = ctx
        .store
        .status_routed(&ctx.config.storage.path, &context::routes(&ctx.config))?;
    let lim = &ctx.config.storage;
    outln!("database      {}", lim.path.display());
    outln!(
        "telemetry     {} rows (max {}), {} bytes (max {}), file {} bytes",
        s.rows,
        lim.max_rows,
        s.bytes,
        lim.max_bytes,
        s.file_bytes
    );
    outln!(
        "last seq      {}   oldest stored {}",
        s.max_seq,
        age_ms(s.oldest_committed_ms.map(UnixMs::as_millis))
    );
    outln!(
        "{:<20} {:>8} {:>8} {:>7} {:>14}",
        "WEBHOOK",
        "DEPTH",
        "RETRYING",
        "FAILED",
        "OLDEST PENDING"
    );
    for w in &s.webhooks {
        outln!(
            "{:<20} {:>8} {:>8} {:>7} {:>14}",
            w.name,
            w.depth,
            w.retrying,
            w.failed,
            age_ms(w.oldest_pending_ms.map(UnixMs::as_millis))
        );
    }
    let counter = |n: &str| s.counters.iter().find(|c| c.0 == n).map_or(0, |c| c.1);
    outln!(
        "dropped       {} undelivered telemetry, {} failed deliveries; disk full {} times (stored counters)",
        counter("dropped"),
        counter("failed_dropped"),
        counter("disk_full")
    );
    let (unreadable, first) = ctx.store.unreadable(10)?;
    if unreadable > 0 {
        let seqs: Vec<String> = first.iter().map(|(seq, _, _)| seq.to_string()).collect();
        outln!(
            "unreadable    {unreadable} stored readings cannot be read and are not delivered: seq {}{}",
            seqs.join(", "),
            if unreadable > 10 { ", …" } else { "" }
        );
    }
    // The running daemon's live figures: right even while the disk is full.
    match enocean_agent::storage::status_path() {
        Some(path) => match std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<enocean_agent::storage::RuntimeStatus>(&t).ok())
        {
            Some(r) => {
                outln!(
                    "daemon        pid {}, figures of {}{}",
                    r.pid,
                    r.updated_at,
                    if r.disk_full_now {
                        ", DISK FULL NOW"
                    } else if r.failing {
                        ", COMMITS FAILING NOW"
                    } else {
                        ""
                    }
                );
                outln!(
                    "              this run: {} committed, {} waiting in memory, {} dropped (policy), disk full {} times, {} failed commits, {} lost at hand-off, {} not committed",
                    r.committed,
                    r.buffered,
                    r.dropped,
                    r.disk_full_episodes,
                    r.failed_commits,
                    r.handoff_dropped,
                    r.not_committed
                );
                for w in &r.webhooks {
                    outln!(
                        "              webhook {}: {}, backlog {}, {} failed in a row{}",
                        w.name,
                        w.state,
                        w.backlog,
                        w.consecutive_failures,
                        w.last_failure_reason
                            .as_deref()
                            .map_or(String::new(), |r| format!(", last failure {r}"))
                    );
                }
            }
            None => outln!("daemon        no live figures in {}", path.display()),
        },
        None => {
            outln!("daemon        no runtime directory (RUNTIME_DIRECTORY or /run/enocean-agent)")
        }
    }
    Ok(ExitCode::SUCCESS)
}
