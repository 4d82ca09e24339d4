//! enocean-agent: turns EnOcean radio telegrams received by a USB 300 stick into telemetry that is
//! committed locally and delivered to webhooks.
//!
//! The library holds every part that can be tested without hardware; the `enocean-agent` binary is a
//! thin command-line shell around it. See `ARCHITECTURE.md` for the data flow.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
pub mod agent;
pub mod chain;
pub mod clock;
pub mod config;
pub mod dedup;
pub mod delivery;
pub mod device;
pub mod duration;
pub mod eep;
pub mod erp1;
pub mod esp3;
pub mod health;
pub mod inspect;
mod json_text;
pub mod metrics;
pub mod mqtt;
pub mod outbox;
pub mod secret;
pub mod secure;
pub mod serial;
// The simulated stick: only with the default-on `sim` feature (its module documentation says so).
#[cfg(feature = "sim")]
pub mod sim;
pub mod storage;
pub mod telemetry;
mod tls_files;
pub mod tls_roots;
pub mod webhook;
