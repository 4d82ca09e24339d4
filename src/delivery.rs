//! What every output (webhook, MQTT) shares with the delivery policy: the outcome of one
//! attempt, classified the same way whatever the transport, so one policy
//! ([`crate::webhook::policy::Policy`]) drives retries, backoff, offline, deactivation and probes
//! for all of them.

/// What one delivery attempt came to, for the delivery policy.
///
/// Each output maps its transport onto these classes: webhooks from HTTP statuses and transport
/// errors (`webhook::http`), MQTT from the broker's acknowledgements and connection errors
/// (`mqtt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged by the receiver (HTTP 2xx, MQTT PUBACK).
    Delivered,
    /// The receiver failed or could not be reached (HTTP 5xx, 408, 425, 429, 3xx; refused,
    /// reset, timeout, TLS, protocol; a broker that is away or refuses the connection): the
    /// delivery is retried.
    Failed,
    /// The receiver refused this body (HTTP: a 4xx other than 408, 410, 425 and 429): retrying
    /// the same bytes cannot help.
    Rejected,
    /// HTTP 410 Gone: the endpoint asks to stop; deactivate at once.
    Gone,
    /// The gateway has no network (DNS failure, no route): not the receiver's fault.
    Offline,
}

impl Outcome {
    /// Short name stored in the delivery log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
            Outcome::Gone => "gone",
            Outcome::Offline => "offline",
        }
    }
}
