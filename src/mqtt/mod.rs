//! MQTT outputs (`[[mqtt]]`): the same durable outbox as the webhooks, delivered to an existing
//! broker (Mosquitto, EMQX, a cloud IoT broker) with QoS 1, optionally with Home Assistant
//! discovery.
//!
//! Each output keeps its own cursor and health in the outbox's outputs table under the name
//! `mqtt:NAME` (beside the webhooks, so pruning, `outbox status` and the health figures count
//! it), routes by device like a webhook, and moves its cursor past a record only after the
//! broker's PUBACK. The delivery policy (retries, backoff, offline, deactivation, probes) is the
//! webhooks' own ([`crate::webhook::policy`]); `sender.rs` says where MQTT differs.
//!
//! - `config.rs`: the `[[mqtt]]` section;
//! - `topic.rs`: topic templates and the messages of a record (sans-IO);
//! - `discovery.rs`: Home Assistant discovery configs, from [`crate::eep::ha`];
//! - `tls.rs`: rustls (ring) client settings;
//! - `session.rs`: one rumqttc connection, MQTT 3.1.1 or 5;
//! - `sender.rs`: the output threads.
//!
//! The client (`session.rs`, `sender.rs`, rumqttc) is only in a build with the default-on `mqtt`
//! feature. The rest (the configuration and its checks, topics, discovery, health) is in every
//! build, so `[[mqtt]]` is read the same everywhere and a build without the client refuses it
//! where it would be used ([`unavailable`]); rows named `mqtt:NAME` in an outbox stay as they
//! are, just not delivered.

pub mod config;
pub mod discovery;
#[cfg(feature = "mqtt")]
pub mod sender;
#[cfg(feature = "mqtt")]
pub mod session;
pub mod tls;
pub mod topic;

pub use config::MqttConfig;
#[cfg(feature = "mqtt")]
pub use sender::{MqttHandle, MqttSender};

/// True when this build has the MQTT client (the default-on `mqtt` feature).
pub const BUILT_IN: bool = cfg!(feature = "mqtt");

/// Why this build cannot run `[[mqtt]]` outputs ([`NoMqtt`] in a build without the `mqtt`
/// feature); None when it can.
pub fn unavailable() -> Option<NoMqtt> {
    unavailable_in(BUILT_IN)
}

/// [`unavailable`] in a build that has the MQTT client or not.
fn unavailable_in(built_in: bool) -> Option<NoMqtt> {
    (!built_in).then_some(NoMqtt)
}

/// An `[[mqtt]]` table in a build without the MQTT client (built with `--no-default-features`
/// and without `--features mqtt`, as a webhook-only gateway build is). The configuration check
/// and the agent's start report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this build has no MQTT output (built without the `mqtt` feature): remove the `[[mqtt]]` \
     tables, or use a build with the default features"
)]
pub struct NoMqtt;

/// Prefix of an MQTT output's name in the outbox's outputs table (`mqtt:NAME`); webhook names
/// may not start with it.
pub const OUTPUT_PREFIX: &str = "mqtt:";

/// The health of every output: the webhooks, then the MQTT outputs (as `mqtt:NAME`), with the
/// same figures (what `webhook list`, the runtime status file, `gateway.status` and the metrics
/// show).
pub fn outputs_health(
    store: &crate::outbox::Store,
    webhooks: &[crate::webhook::WebhookConfig],
    mqtt: &[MqttConfig],
    db_path: &std::path::Path,
) -> Result<Vec<crate::webhook::health::WebhookHealth>, crate::outbox::OutboxError> {
    let mut all = crate::webhook::health::health(store, webhooks, db_path)?;
    all.extend(health(store, mqtt, db_path)?);
    Ok(all)
}

/// The health of the MQTT outputs (named `mqtt:NAME`), with the same figures as webhooks'.
pub fn health(
    store: &crate::outbox::Store,
    outputs: &[MqttConfig],
    db_path: &std::path::Path,
) -> Result<Vec<crate::webhook::health::WebhookHealth>, crate::outbox::OutboxError> {
    let refs: Vec<crate::webhook::health::OutputRef<'_>> = outputs
        .iter()
        .map(|m| crate::webhook::health::OutputRef {
            name: m.output_name(),
            enabled: m.enabled,
            devices: m.devices.as_deref(),
            url: m.url.clone(),
        })
        .collect();
    crate::webhook::health::health_of(store, &refs, db_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_is_refused_only_by_a_build_without_the_client() {
        assert_eq!(unavailable_in(true), None);
        let text = unavailable_in(false).unwrap().to_string();
        assert!(
            text.contains("no MQTT output") && text.contains("built without the `mqtt` feature"),
            "{text}"
        );
        assert_eq!(unavailable().is_none(), BUILT_IN);
    }
}
