//! One module per subcommand of the binary.
pub mod check_config;
pub mod context;
pub mod decode;
pub mod deliveries;
pub mod demo;
pub mod devices;
pub mod listen;
pub mod logging;
pub mod outbox;
pub mod profiles;
pub mod run;
pub mod signals;
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
