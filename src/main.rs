//! The `enocean-agent` command line: a thin shell over the library.
#![forbid(unsafe_code)]

mod cmd;

use std::process::ExitCode;

use cmd::cli::{self, Arg, Help, Parser, UsageError};

#[cfg(test)]
mod cli_tests;

/// A command to run, from the command line.
#[derive(Debug, PartialEq)]
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
    Listen(cmd::listen::Args),
    /// List, show and check EEP profiles.
    Profiles(cmd::profiles::Args),
    /// Webhooks: list, test delivery, enable, disable.
    Webhook(cmd::webhook::Args),
    /// The outbox: status, failed deliveries, resend.
    Outbox(cmd::outbox::Args),
    /// The delivery log: one line per attempt, newest first.
    Deliveries(cmd::deliveries::Args),
    /// `--version`, `-V`: print the name and version.
    Version,
}

/// What `enocean-agent --help` shows.
const HELP: Help = Help {
    cmd: "",
    usage: "<COMMAND>",
    about: "Edge agent: EnOcean USB 300 telegrams to signed, reliable webhook deliveries",
    commands: &[
        #[cfg(feature = "sim")]
        ("demo", cmd::demo::HELP.about),
        ("run", cmd::run::HELP.about),
        ("check-config", cmd::check_config::HELP.about),
        ("devices", cmd::devices::HELP.about),
        ("decode", cmd::decode::HELP.about),
        #[cfg(feature = "sim")]
        ("sim", cmd::sim::HELP.about),
        ("listen", cmd::listen::HELP.about),
        ("profiles", cmd::profiles::HELP.about),
        ("webhook", cmd::webhook::HELP.about),
        ("outbox", cmd::outbox::HELP.about),
        ("deliveries", cmd::deliveries::HELP.about),
        ("help", "Print this help or the help of the given command"),
    ],
    args: &[],
    options: &[("-V, --version", "Print version")],
};

/// The command line after the program's name.
fn parse(p: &mut Parser) -> Result<Command, UsageError> {
    let h = &HELP;
    let word = match cli::next(p, h)? {
        Some(Arg::Value(v)) => cli::word(h, v)?,
        Some(Arg::Short('V') | Arg::Long("version")) => return Ok(Command::Version),
        Some(arg) => return Err(cli::unexpected(h, arg)),
        None => return Err(UsageError::Missing(h)),
    };
    Ok(match word.as_str() {
        #[cfg(feature = "sim")]
        "demo" => Command::Demo(cmd::demo::parse(p)?),
        "run" => Command::Run(cmd::run::parse(p)?),
        "check-config" => Command::CheckConfig(cmd::check_config::parse(p)?),
        "devices" => Command::Devices(cmd::devices::parse(p)?),
        "decode" => Command::Decode(cmd::decode::parse(p)?),
        #[cfg(feature = "sim")]
        "sim" => Command::Sim(cmd::sim::parse(p)?),
        "listen" => Command::Listen(cmd::listen::parse(p)?),
        "profiles" => Command::Profiles(cmd::profiles::parse(p)?),
        "webhook" => Command::Webhook(cmd::webhook::parse(p)?),
        "outbox" => Command::Outbox(cmd::outbox::parse(p)?),
        "deliveries" => Command::Deliveries(cmd::deliveries::parse(p)?),
        "help" => return Err(cli::help_for(p, h, parse)),
        #[cfg(not(feature = "sim"))]
        "demo" | "sim" => {
            return Err(cli::invalid(
                h,
                format_args!(
                    "{word}: this build has no simulator (built without the `sim` feature)"
                ),
            ));
        }
        other => return Err(cli::unknown_command(h, other)),
    })
}

/// Prints what a usage error or `--help` says, where it belongs; its exit status.
fn report(e: &UsageError) -> ExitCode {
    let (text, to_stderr, code) = e.report();
    write_out(&text, to_stderr);
    ExitCode::from(code)
}

/// Writes text to stdout or stderr; a reader gone away (`--help | head`) is no failure.
fn write_out(text: &str, to_stderr: bool) {
    use std::io::Write as _;
    let _ = if to_stderr {
        std::io::stderr().lock().write_all(text.as_bytes())
    } else {
        std::io::stdout().lock().write_all(text.as_bytes())
    };
}

fn main() -> ExitCode {
    let command = match parse(&mut Parser::from_env()) {
        Ok(Command::Version) => {
            let version = concat!("enocean-agent ", env!("CARGO_PKG_VERSION"), "\n");
            write_out(version, false);
            return ExitCode::SUCCESS;
        }
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    // `run` and `demo` start their own logging.
    let own_logging = match &command {
        Command::Run(_) => true,
        #[cfg(feature = "sim")]
        Command::Demo(_) => true,
        _ => false,
    };
    if !own_logging {
        cmd::logging::init(None);
    }
    let result = match command {
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
        Command::Version => Ok(ExitCode::SUCCESS),
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
