//! `enocean-agent sim`: runs the simulated USB 300 standalone behind a pseudo-terminal and links
//! it at a fixed path, so an agent (or any serial tool) can open it like a real stick.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use enocean_agent::sim::building::ScriptOptions;
use enocean_agent::sim::{SIM_BASE_ID, SimConfig, SimStick};

use super::cli::{self, Arg, Help, Parser, UsageError};

/// Arguments of `sim`.
#[derive(Debug, PartialEq)]
pub struct Args {
    /// Where to create the symlink to the simulated stick's pty (e.g. /tmp/enocean-sim).
    pub(crate) link: PathBuf,
    /// Original telegrams per second; 0 means as fast as the reader takes them.
    pub(crate) rate: f64,
    /// Seed of the simulated building: the same seed gives the same telegrams.
    pub(crate) seed: u64,
    /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
    pub(crate) duration: Option<f64>,
    /// Stop after this many original telegrams, once the host has closed the port (at most 10 s
    /// later), so closing the pty does not discard bytes the host has not read yet.
    pub(crate) count: Option<u64>,
}

/// What `sim --help` shows.
pub const HELP: Help = Help {
    cmd: "sim",
    usage: "--link <PATH> [OPTIONS]",
    about: "Run the simulated USB 300 stick behind a pseudo-terminal linked at --link PATH",
    commands: &[],
    args: &[],
    options: &[
        (
            "--link <PATH>",
            "Where to create the symlink to the simulated stick's pty (e.g. /tmp/enocean-sim); required",
        ),
        (
            "--rate <N>",
            "Original telegrams per second; 0 means as fast as the reader takes them [default: 5]",
        ),
        (
            "--seed <N>",
            "Seed of the simulated building: the same seed gives the same telegrams [default: 1]",
        ),
        (
            "--duration <SECONDS>",
            "Stop after this many seconds (default: until Ctrl-C or SIGTERM)",
        ),
        (
            "--count <N>",
            "Stop after this many original telegrams, once the host has closed the port (at most 10 s later)",
        ),
    ],
};

/// The arguments after `sim`.
pub fn parse(p: &mut Parser) -> Result<Args, UsageError> {
    let h = &HELP;
    let (mut link, mut rate, mut seed, mut duration, mut count) = (None, None, None, None, None);
    while let Some(arg) = cli::next(p, h)? {
        match arg {
            Arg::Long("link") => cli::once_path(p, h, "--link", &mut link)?,
            Arg::Long("rate") => cli::once(p, h, "--rate", &mut rate)?,
            Arg::Long("seed") => cli::once(p, h, "--seed", &mut seed)?,
            Arg::Long("duration") => cli::once(p, h, "--duration", &mut duration)?,
            Arg::Long("count") => cli::once(p, h, "--count", &mut count)?,
            arg => return Err(cli::unexpected(h, arg)),
        }
    }
    Ok(Args {
        link: cli::required(link, h, "--link")?,
        rate: rate.unwrap_or(5.0),
        seed: seed.unwrap_or(1),
        duration,
        count,
    })
}

/// How long `--count` keeps the port open for the host after the last telegram.
const LINGER: Duration = Duration::from_secs(10);
/// How often the host's presence is checked meanwhile.
const LINGER_POLL: Duration = Duration::from_millis(20);

/// Runs `sim` until Ctrl-C/SIGTERM, `--duration` or `--count`; prints a summary on stderr.
pub fn run(args: Args) -> Result<ExitCode> {
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a non-negative number");
    }
    let duration = super::seconds(args.duration, "duration")?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let mut sim = SimStick::start(SimConfig {
            rate: args.rate,
            script: ScriptOptions {
                seed: args.seed,
                ..ScriptOptions::default()
            },
            max_telegrams: args.count,
            link: Some(args.link.clone()),
            ..SimConfig::default()
        })
        .with_context(|| format!("starting the simulated stick at {}", args.link.display()))?;
        eprintln!(
            "simulated USB 300 (base ID {SIM_BASE_ID:08X}) at {} -> {}; {} telegrams/s, seed {}",
            args.link.display(),
            sim.slave_path().display(),
            if args.rate > 0.0 {
                args.rate.to_string()
            } else {
                "unlimited".into()
            },
            args.seed
        );
        let deadline = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let stop = super::signals::terminated();
        tokio::pin!(stop, deadline);
        let finished = tokio::select! {
            _ = &mut stop => false,
            _ = &mut deadline => false,
            _ = sim.wait_finished() => true,
        };
        if finished {
            // A pty discards what its reader has not read when the master closes, and the master
            // cannot tell what is still unread: wait for the host to close the port.
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            while sim.host_connected() {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = &mut deadline => break,
                    _ = &mut linger => break,
                    _ = tokio::time::sleep(LINGER_POLL) => {}
                }
            }
        }
        let s = sim.stats();
        eprintln!(
            "sim: {} telegrams ({} teach-in), {} repeated copies, {} noise bursts, {} bad-CRC frames; \
             {} telegrams ({} bytes) could not be written; writes waited {:.1} s for a reader \
             (longest {:.1} s)",
            s.telegrams,
            s.teach_ins,
            s.copies,
            s.noise_chunks,
            s.bad_crc_frames,
            s.unwritten_telegrams,
            s.unwritten_bytes,
            s.write_blocked.as_secs_f64(),
            s.longest_write_block.as_secs_f64()
        );
        sim.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}
