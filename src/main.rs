//! The `enocean-agent` command line: a thin shell over the library.
#![forbid(unsafe_code)]

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// EnOcean USB 300 telegrams to signed, reliable webhook deliveries.
#[derive(Parser)]
#[command(name = "enocean-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode ESP3 bytes from a capture file, stdin or hex into JSON Lines.
    Decode(cmd::decode::Args),
    /// Run the simulated USB 300 stick behind a pseudo-terminal linked at --link PATH.
    Sim(cmd::sim::Args),
    /// Show received telegrams live (teach-ins highlighted); `--port sim` uses the simulator.
    Listen(cmd::listen::Args),
    /// List, show and check EEP profiles.
    Profiles(cmd::profiles::Args),
    /// Webhooks: list, test delivery, enable, disable.
    Webhook(cmd::webhook::Args),
    /// The outbox: status, failed deliveries, resend.
    Outbox(cmd::outbox::Args),
    /// The delivery log: one line per attempt, newest first.
    Deliveries(cmd::deliveries::Args),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => cmd::decode::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Listen(args) => cmd::listen::run(args),
        Command::Profiles(args) => cmd::profiles::run(args),
        Command::Webhook(args) => cmd::webhook::run(args),
        Command::Outbox(args) => cmd::outbox::run(args),
        Command::Deliveries(args) => cmd::deliveries::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("enocean-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}
