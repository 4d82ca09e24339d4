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
    /// The whole pipeline on this machine: simulated stick, outbox, a local verifying receiver.
    #[cfg(feature = "sim")]
    Demo(cmd::demo::Args),
    /// Run the agent (the daemon); SIGTERM stops it cleanly.
    Run(cmd::run::Args),
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig(cmd::check_config::Args),
    /// Configured and learned devices; `devices forget ID`.
    Devices(cmd::devices::Args),
    /// Decode ESP3 bytes from a capture file, stdin or hex into JSON Lines.
    Decode(cmd::decode::Args),
    /// Run the simulated USB 300 stick behind a pseudo-terminal linked at --link PATH.
    #[cfg(feature = "sim")]
    Sim(cmd::sim::Args),
    /// Show received telegrams live (teach-ins highlighted); `--port sim` uses the simulator.
    #[cfg_attr(
        not(feature = "sim"),
        command(about = "Show received telegrams live (teach-ins highlighted)")
    )]
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
    let cli = Cli::parse();
    // `run` and `demo` start their own logging.
    let own_logging = match &cli.command {
        Command::Run(_) => true,
        #[cfg(feature = "sim")]
        Command::Demo(_) => true,
        _ => false,
    };
    if !own_logging {
        cmd::logging::init(None);
    }
    let result = match cli.command {
        #[cfg(feature = "sim")]
        Command::Demo(args) => cmd::demo::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::CheckConfig(args) => cmd::check_config::run(args),
        Command::Devices(args) => cmd::devices::run(args),
        Command::Decode(args) => cmd::decode::run(args),
        #[cfg(feature = "sim")]
        Command::Sim(args) => cmd::sim::run(args),
        Command::Listen(args) => cmd::listen::run(args),
        Command::Profiles(args) => cmd::profiles::run(args),
        Command::Webhook(args) => cmd::webhook::run(args),
        Command::Outbox(args) => cmd::outbox::run(args),
        Command::Deliveries(args) => cmd::deliveries::run(args),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): end quietly, as `cat` and `grep` do.
        Err(e) if cmd::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enocean-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}
