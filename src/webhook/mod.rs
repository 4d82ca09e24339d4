//! Webhook delivery: configuration, payload rendering, auth and signing, the HTTP attempt, the
//! sender threads with their retry and deactivation policy, and the one-attempt operations of the
//! command line (test delivery, manual resend).
//!
//! How the daemon wires the outbox and the sender:
//!
//! ```no_run
//! use std::sync::{Arc, atomic::AtomicBool};
//! use std::time::Instant;
//!
//! use enocean_agent::config::Config;
//! use enocean_agent::outbox::Outbox;
//! use enocean_agent::webhook::{Sender, SenderOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load("/etc/enocean-agent/config.toml".as_ref())?;
//! let mut outbox = Outbox::open(&config.storage, &config.enabled_webhooks())?;
//! let shutdown = Arc::new(AtomicBool::new(false));
//! let sender = Sender::spawn(
//!     &config.webhooks,
//!     &config.storage.path,
//!     SenderOptions::from_storage(&config.storage),
//!     shutdown,
//! )?;
//! outbox.set_waker(sender.waker());
//! // For each telemetry: `outbox.enqueue(t)?` returns the records it committed (if any).
//! // On a timer (at `outbox.commit_due()`, or every 100 ms): `outbox.poll(Instant::now())?`.
//! let _committed = outbox.poll(Instant::now())?;
//! // On SIGTERM: commit what is waiting, then let the in-flight requests finish.
//! outbox.flush()?;
//! sender.stop();
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod health;
pub mod http;
pub mod policy;
pub mod render;
pub mod resolve;
pub mod sender;
pub mod sign;
pub mod template;
pub mod transport;

/// The clock moved to [`crate::clock`]; these paths stay for existing callers.
use crate::clock::ClockCheck;
pub use config::WebhookConfig;
pub use http::{AttemptResult, Outcome};
pub use sender::{Sender, SenderHandle, SenderOptions};

use crate::outbox::{DeliveryState, OutboxError, Store, Trigger};
use crate::telemetry::Gateway;

/// Why a one-off attempt (test, resend) was not made.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    /// The outbox could not be read or written.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The body could not be rendered.
    #[error("rendering the body: {0}")]
    Render(#[from] serde_json::Error),
    /// No such delivery.
    #[error("delivery {0} not found")]
    NotFound(i64),
    /// The delivery is not in the `failed` state.
    #[error("delivery {row} is {state}, only failed deliveries can be resent")]
    NotFailed {
        /// Row id.
        row: i64,
        /// Its state.
        state: DeliveryState,
    },
    /// The delivery belongs to a webhook that is not configured.
    #[error("delivery {row} belongs to webhook {webhook:?}, which is not in the configuration")]
    UnknownWebhook {
        /// Row id.
        row: i64,
        /// Webhook name.
        webhook: String,
    },
    /// Standard Webhooks signing needs a synchronised clock.
    #[error("the clock is not synchronised; Standard Webhooks deliveries are held")]
    ClockNotSynchronised,
}

/// Sends one test delivery (`event: "test"`, a sample telemetry through the real payload, auth and
/// signing), logs it with trigger `test`. Allowed while deactivated; the health count is not
/// changed.
pub fn send_test(
    cfg: &WebhookConfig,
    store: &Store,
    gateway: Gateway,
    clock: &ClockCheck,
) -> Result<AttemptResult, ManualError> {
    if cfg.needs_clock() && !clock.synchronized() {
        return Err(ManualError::ClockNotSynchronised);
    }
    let now = jiff::Timestamp::now();
    let sample = render::sample_telemetry(gateway, now);
    let id = crate::telemetry::fresh_id();
    let body = render::render(
        cfg,
        render::Event::Test,
        &id,
        now,
        std::slice::from_ref(&sample),
    )?;
    let agent = http::agent(cfg);
    let r = sender::attempt(&agent, cfg, &sign::Signer::new(cfg), &id, &body);
    let entry = manual_entry(cfg, &id, None, (None, None), Trigger::Test, &r);
    store.log_attempt(&entry)?;
    Ok(r)
}

/// Resends one failed delivery once with its stored body (same delivery id), logs it with trigger
/// `manual`. Success marks it delivered; failure leaves it failed. The health count is not changed.
pub fn resend(
    webhooks: &[WebhookConfig],
    store: &Store,
    row: i64,
    clock: &ClockCheck,
) -> Result<AttemptResult, ManualError> {
    let d = store.delivery(row)?.ok_or(ManualError::NotFound(row))?;
    if d.state != DeliveryState::Failed {
        return Err(ManualError::NotFailed {
            row,
            state: d.state,
        });
    }
    let cfg = webhooks
        .iter()
        .find(|w| w.name == d.webhook)
        .ok_or_else(|| ManualError::UnknownWebhook {
            row,
            webhook: d.webhook.clone(),
        })?;
    if cfg.needs_clock() && !clock.synchronized() {
        return Err(ManualError::ClockNotSynchronised);
    }
    let agent = http::agent(cfg);
    let r = sender::attempt(&agent, cfg, &sign::Signer::new(cfg), &d.uuid, &d.body);
    let entry = manual_entry(
        cfg,
        &d.uuid,
        Some(row),
        (d.seq_first, d.seq_last),
        Trigger::Manual,
        &r,
    );
    store.log_attempt(&entry)?;
    let state = if r.outcome == Outcome::Delivered {
        DeliveryState::Delivered
    } else {
        DeliveryState::Failed
    };
    store.update_delivery(row, state, d.attempts + 1, r.status, r.error.as_deref())?;
    Ok(r)
}

fn manual_entry(
    cfg: &WebhookConfig,
    id: &str,
    row: Option<i64>,
    seqs: (Option<u64>, Option<u64>),
    trigger: Trigger,
    r: &AttemptResult,
) -> crate::outbox::LogEntry {
    sender::log_entry(&cfg.name, id, row, seqs, trigger, r)
}
