//! One module per subcommand of the binary. `demo` and `sim` exist only with the default-on `sim`
//! feature (a gateway build, `--no-default-features`, leaves them out).
pub mod check_config;
pub mod cli;
pub mod context;
pub mod decode;
pub mod deliveries;
#[cfg(feature = "sim")]
pub mod demo;
pub mod devices;
pub mod listen;
pub mod logging;
pub mod outbox;
pub mod profiles;
pub mod run;
pub mod signals;
#[cfg(feature = "sim")]
pub mod sim;
pub mod webhook;

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The single-threaded tokio runtime the serial side runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A `--NAME SECONDS` argument as a duration, refusing negative and non-finite numbers.
pub fn seconds(value: Option<f64>, name: &str) -> Result<Option<Duration>> {
    match value {
        Some(d) if !(d >= 0.0 && d.is_finite()) => bail!("--{name} must be a non-negative number"),
        Some(d) => Ok(Some(Duration::from_secs_f64(d))),
        None => Ok(None),
    }
}

/// Prints one line to stdout and returns from the calling function with an error when stdout is
/// gone (`| head`); `main` ends such a run quietly (see [`is_broken_pipe`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}
pub(crate) use outln;

/// True when the error comes from writing to a reader that went away: the command ends quietly
/// then, as `cat` and `grep` do.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
