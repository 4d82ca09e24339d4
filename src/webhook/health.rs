//! Health at a glance: for every configured webhook its state, backlog, oldest undelivered
//! reading, last success, last failure with its reason, consecutive failed deliveries and the
//! next retry or probe. Read from the outbox database (what the sender threads persist), so
//! `webhook list`, the daemon's status line and any other view show the same figures.

use std::fmt;
use std::path::Path;

use super::config::WebhookConfig;
use crate::outbox::{OutboxError, Phase, Store, UnixMs};

/// The state of a webhook as an operator sees it (serialised as [`State::as_str`] writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Delivering (or nothing to deliver).
    Active,
    /// The head of the queue failed and is retried; nothing behind it is sent.
    Retrying,
    /// The gateway's own network is down; deliveries are held, failures not counted.
    Offline,
    /// Deactivated after consecutive failed deliveries; probed, resumes by itself.
    DeactivatedProbing,
    /// Switched off by `webhook disable`; not probed until `webhook enable`.
    Disabled,
    /// The endpoint answered 410 Gone; not probed until `webhook enable`.
    Gone,
    /// `enabled = false` in the configuration: nothing is queued for it.
    OffConfig,
    /// Configured but the daemon has not registered it yet.
    New,
}

impl State {
    /// The name shown by `webhook list`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Retrying => "retrying",
            State::Offline => "offline",
            State::DeactivatedProbing => "deactivated-probing",
            State::Disabled => "disabled",
            State::Gone => "gone",
            State::OffConfig => "off-config",
            State::New => "new",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health of one webhook (also written to the runtime status file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookHealth {
    /// Name.
    pub name: String,
    /// State.
    pub state: State,
    /// Readings waiting for a first delivery (routed devices only) plus stored deliveries
    /// waiting for a retry or probe.
    pub backlog: u64,
    /// Failed deliveries kept for `outbox resend` (rejected bodies, 410 Gone).
    pub failed: u64,
    /// Commit time (unix ms) of the oldest reading not delivered yet.
    pub oldest_undelivered_ms: Option<i64>,
    /// Last successful attempt (RFC 3339).
    pub last_success: Option<String>,
    /// Last failed attempt (RFC 3339).
    pub last_failure: Option<String>,
    /// Its error class (`http_503`, `timeout`, `connection_refused`…).
    pub last_failure_reason: Option<String>,
    /// Failed deliveries in a row.
    pub consecutive_failures: u32,
    /// Next retry or probe (unix ms), when one is scheduled.
    pub next_attempt_ms: Option<i64>,
    /// Why it is deactivated, when it is.
    pub deactivated_reason: Option<String>,
    /// The URL with credentials hidden.
    pub url: String,
}

/// One output as the health view needs it (a webhook, or an MQTT output as `mqtt:NAME`).
#[derive(Debug, Clone)]
pub struct OutputRef<'a> {
    /// Its name in the outputs table.
    pub name: String,
    /// `enabled` in the configuration.
    pub enabled: bool,
    /// Its routes, when it has some.
    pub devices: Option<&'a [String]>,
    /// Where it delivers, with credentials hidden.
    pub url: String,
}

/// The health of every configured webhook, in configuration order. `db_path` is the outbox file
/// (for its size in the status figures).
pub fn health(
    store: &Store,
    webhooks: &[WebhookConfig],
    db_path: &Path,
) -> Result<Vec<WebhookHealth>, OutboxError> {
    let outputs: Vec<OutputRef<'_>> = webhooks
        .iter()
        .map(|w| OutputRef {
            name: w.name.clone(),
            enabled: w.enabled,
            devices: w.devices.as_deref(),
            url: w.display_url(),
        })
        .collect();
    health_of(store, &outputs, db_path)
}

/// The health of these outputs, in order: the same figures for every kind of output.
pub fn health_of(
    store: &Store,
    outputs: &[OutputRef<'_>],
    db_path: &Path,
) -> Result<Vec<WebhookHealth>, OutboxError> {
    let webhooks = outputs;
    let routes: Vec<(String, Vec<String>)> = webhooks
        .iter()
        .filter_map(|w| w.devices.map(|d| (w.name.clone(), d.to_vec())))
        .collect();
    let status = store.status_routed(db_path, &routes)?;
    let mut out = Vec::with_capacity(webhooks.len());
    for w in webhooks {
        let st = store.webhook(&w.name)?;
        let depth = status.webhooks.iter().find(|d| d.name == w.name);
        let state = match &st {
            _ if !w.enabled => State::OffConfig,
            None => State::New,
            Some(s) if !s.enabled => State::Disabled,
            Some(s) => match s.phase {
                Phase::Gone => State::Gone,
                Phase::Probing => State::DeactivatedProbing,
                _ if s.deactivated_at.is_some() => State::DeactivatedProbing,
                Phase::Offline => State::Offline,
                Phase::Retrying => State::Retrying,
                Phase::Active => State::Active,
            },
        };
        let scheduled = matches!(
            state,
            State::Retrying | State::Offline | State::DeactivatedProbing
        );
        out.push(WebhookHealth {
            name: w.name.clone(),
            state,
            backlog: depth.map_or(0, |d| d.depth + d.retrying),
            failed: depth.map_or(0, |d| d.failed),
            oldest_undelivered_ms: depth
                .and_then(|d| d.oldest_pending_ms)
                .map(UnixMs::as_millis),
            last_success: st
                .as_ref()
                .and_then(|s| s.last_success)
                .map(|t| t.to_string()),
            last_failure: st
                .as_ref()
                .and_then(|s| s.last_failure)
                .map(|t| t.to_string()),
            last_failure_reason: st.as_ref().and_then(|s| s.last_failure_reason.clone()),
            consecutive_failures: st.as_ref().map_or(0, |s| s.consecutive_failures),
            next_attempt_ms: st
                .as_ref()
                .and_then(|s| s.next_attempt_ms)
                .filter(|_| scheduled)
                .map(UnixMs::as_millis),
            deactivated_reason: st.as_ref().and_then(|s| s.deactivated_reason.clone()),
            url: w.url.clone(),
        });
    }
    Ok(out)
}

/// One line per webhook for a status notice: `backend deactivated-probing backlog 12`.
pub fn summary(health: &[WebhookHealth]) -> String {
    health
        .iter()
        .map(|h| format!("{} {} backlog {}", h.name, h.state, h.backlog))
        .collect::<Vec<_>>()
        .join(", ")
}
