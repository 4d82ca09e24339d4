//! The `[[mqtt]]` configuration: which broker, how to log in, topics and payloads, retained state,
//! Home Assistant discovery, and the delivery policy's settings (the same keys and defaults as
//! `[[webhook]]`). Parsed by serde (unknown keys are errors), then checked by
//! [`MqttConfig::validate`], which reads secret and TLS files and compiles templates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::topic::TopicTemplate;
use crate::duration;
use crate::secret::Secret;
use crate::webhook::config::{
    MAX_DURATION, WebhookConfigError, default_backoff_base, default_backoff_max,
    default_connect_timeout, default_deactivate_after, default_jitter, default_max_retries,
    default_probe_base, default_probe_max,
};
use crate::webhook::policy::PolicyConfig;
use crate::webhook::template::Template;

/// The MQTT protocol version spoken to the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Protocol {
    /// MQTT 3.1.1 (the default: every broker speaks it).
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5 (PUBACK reason codes: a broker that refuses a message says so).
    #[serde(rename = "5")]
    V5,
}

/// One `[[mqtt]]` entry. Serialized (by `check-config`) with the password redacted.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Unique name among the MQTT outputs (its cursor and health are kept as `mqtt:NAME`).
    pub name: String,
    /// The broker: `mqtt://host[:port]` (1883) or `mqtts://host[:port]` (8883, TLS).
    pub url: String,
    /// Configuration switch.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `3.1.1` (default) or `5`.
    #[serde(default)]
    pub protocol: Protocol,
    /// MQTT client id; `enocean-agent-<gateway>-<name>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Routes: sender IDs (8 hex digits) this output receives; every device when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    /// Record kinds published (`telemetry`, `teach_in`, `gateway.status`, `device.silent`,
    /// `device.back`, or `"all"`). Default: all of them (each kind other than readings on
    /// `event_topic`); with a custom `payload`, `telemetry` and `teach_in` only, as for webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// The parsed `events`, set by [`MqttConfig::validate`].
    #[serde(skip)]
    pub filter: crate::health::EventFilter,
    /// Topic of a reading. Placeholders: `{gateway}`, `{sensor_id}`, `{eep}`, `{kind}`, `{name}`
    /// (the sensor's name, or its id), `{output}`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Topic of the other records (teach-ins, and events such as `gateway.status`,
    /// `device.silent`, `device.back`): `{kind}` is the record's kind.
    #[serde(default = "default_event_topic")]
    pub event_topic: String,
    /// Gateway availability: `online` (retained) after connecting, `offline` as the Last Will
    /// and on a clean stop.
    #[serde(default = "default_status_topic")]
    pub status_topic: String,
    /// Also publish every value alone to `<topic>/<key>` (the plain value, e.g. `21.4`).
    #[serde(default)]
    pub value_topics: bool,
    /// Publish readings (and value topics) retained: a new subscriber gets the last state.
    #[serde(default)]
    pub retain: bool,
    /// User name for the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password (prefer `password_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// File holding the password (a bare name may be a systemd credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for the broker besides the built-in and OS roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; needs `client_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `client_cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// MQTT keep-alive interval.
    #[serde(default = "default_keep_alive", with = "duration")]
    pub keep_alive: Duration,
    /// Time allowed for TCP, TLS and CONNACK.
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// A PUBACK must arrive within this long, else the connection is counted as failed and
    /// dropped, and what was not acknowledged is sent again.
    #[serde(default = "default_ack_timeout", with = "duration")]
    pub ack_timeout: Duration,
    /// Readings published but not yet acknowledged, at most.
    #[serde(default = "default_inflight")]
    pub inflight: usize,
    /// Custom payload template (the same engine as webhook payloads); the record JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<toml::Table>,
    /// Home Assistant MQTT discovery.
    #[serde(default)]
    pub discovery: bool,
    /// Home Assistant's discovery prefix.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Retries after the first failed attempt of a round.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First retry delay; doubled for every further retry.
    #[serde(default = "default_backoff_base", with = "duration")]
    pub backoff_base: Duration,
    /// Upper bound of the retry delay.
    #[serde(default = "default_backoff_max", with = "duration")]
    pub backoff_max: Duration,
    /// Random spread of each delay as a fraction.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Deactivate (and probe) after this many consecutive failed rounds (0 = never).
    #[serde(default = "default_deactivate_after")]
    pub deactivate_after: u32,
    /// First probe delay of a deactivated output.
    #[serde(default = "default_probe_base", with = "duration")]
    pub probe_base: Duration,
    /// Upper bound of the probe delay.
    #[serde(default = "default_probe_max", with = "duration")]
    pub probe_max: Duration,
    /// Compiled `payload`, set by [`MqttConfig::validate`].
    #[serde(skip)]
    pub template: Option<Template>,
    /// Compiled topics, set by [`MqttConfig::validate`].
    #[serde(skip)]
    pub topics: Topics,
    /// TLS client settings (rustls with ring), set by [`MqttConfig::validate`] for `mqtts://`.
    #[serde(skip)]
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// The compiled topic templates of one output.
#[derive(Debug, Clone, Default)]
pub struct Topics {
    /// Readings.
    pub reading: TopicTemplate,
    /// Other records.
    pub event: TopicTemplate,
    /// Availability (no placeholders but `{gateway}` and `{output}`).
    pub status: TopicTemplate,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("enabled", &self.enabled)
            .field("protocol", &self.protocol)
            .field("client_id", &self.client_id)
            .field("devices", &self.devices)
            .field("topic", &self.topic)
            .field("event_topic", &self.event_topic)
            .field("status_topic", &self.status_topic)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("discovery", &self.discovery)
            .finish_non_exhaustive()
    }
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`: TLS.
    pub tls: bool,
}

fn default_true() -> bool {
    true
}
fn default_topic() -> String {
    "enocean/{gateway}/{sensor_id}".into()
}
fn default_event_topic() -> String {
    "enocean/{gateway}/events/{kind}".into()
}
fn default_status_topic() -> String {
    "enocean/{gateway}/status".into()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_inflight() -> usize {
    16
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}

impl MqttConfig {
    /// An output with defaults for everything but name and broker URL (tests, the demo).
    pub fn new(name: &str, url: &str) -> Self {
        let mut c: MqttConfig = toml::from_str(&format!("name = {name:?}\nurl = {url:?}\n"))
            .expect("defaults deserialize");
        c.name = name.to_owned();
        c
    }

    /// The name its cursor and health carry in the outbox (`mqtt:NAME`), apart from webhooks.
    pub fn output_name(&self) -> String {
        format!("{}{}", super::OUTPUT_PREFIX, self.name)
    }

    /// True when a secret is written in the configuration itself.
    pub fn has_inline_secret(&self) -> bool {
        self.password.is_some() && self.password_file.is_none()
    }

    /// The policy settings of this output.
    pub fn policy(&self) -> PolicyConfig {
        PolicyConfig {
            max_retries: self.max_retries,
            backoff_base: self.backoff_base,
            backoff_max: self.backoff_max,
            jitter: self.jitter,
            deactivate_after: self.deactivate_after,
            probe_base: self.probe_base,
            probe_max: self.probe_max,
        }
    }

    /// True when this record goes to this output: its kind is in `events`, and its device in
    /// `devices` (a `gateway.status` concerns no device).
    pub fn accepts(&self, t: &crate::telemetry::Telemetry) -> bool {
        self.filter.accepts(t.kind.as_str())
            && (t.kind == crate::telemetry::Kind::GatewayStatus || self.routes(&t.sensor.id))
    }

    /// True when records from this sender ID go to this output.
    pub fn routes(&self, device: &str) -> bool {
        match &self.devices {
            None => true,
            Some(list) => list.iter().any(|d| d.eq_ignore_ascii_case(device)),
        }
    }

    /// The broker's host, port and transport, from `url`.
    pub fn broker(&self) -> Result<Broker, String> {
        parse_url(&self.url)
    }

    /// Checks the values, reads the password and TLS files (relative to `base_dir`), compiles
    /// the topics and the payload template. Every error names the key.
    pub fn validate(&mut self, base_dir: &Path) -> Result<(), WebhookConfigError> {
        let name = self.name.clone();
        let err = |key: &str, message: String| WebhookConfigError {
            webhook: name.clone(),
            key: key.to_owned(),
            message,
        };
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        let broker = parse_url(&self.url).map_err(|m| err("url", m))?;
        if self.inflight == 0 || self.inflight > 1000 {
            return Err(err("inflight", "must be between 1 and 1000".into()));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(err("jitter", "must be between 0.0 and 1.0".into()));
        }
        for (key, d) in [
            ("keep_alive", self.keep_alive),
            ("connect_timeout", self.connect_timeout),
            ("ack_timeout", self.ack_timeout),
            ("backoff_base", self.backoff_base),
            ("backoff_max", self.backoff_max),
            ("probe_base", self.probe_base),
            ("probe_max", self.probe_max),
        ] {
            if d > MAX_DURATION {
                return Err(err(key, "must be at most 7 days".into()));
            }
        }
        if self.keep_alive < Duration::from_secs(5) || self.keep_alive > Duration::from_secs(65535)
        {
            return Err(err(
                "keep_alive",
                "must be between 5 s and 18 h (65535 s)".into(),
            ));
        }
        for (key, d) in [
            ("connect_timeout", self.connect_timeout),
            ("ack_timeout", self.ack_timeout),
            ("probe_base", self.probe_base),
        ] {
            if d.is_zero() {
                return Err(err(key, "must be more than 0".into()));
            }
        }
        if self.probe_max < self.probe_base {
            return Err(err(
                "probe_max",
                "must not be less than `probe_base`".into(),
            ));
        }
        if let Some(devices) = &mut self.devices {
            for d in devices.iter_mut() {
                let up = d.trim().to_ascii_uppercase();
                if up.len() != 8 || !up.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(err(
                        "devices",
                        format!("{d:?} is not a sender ID (8 hex digits)"),
                    ));
                }
                *d = up;
            }
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 65535)
        {
            return Err(err("client_id", "must not be empty".into()));
        }
        self.topics = Topics {
            reading: TopicTemplate::compile(&self.topic).map_err(|m| err("topic", m))?,
            event: TopicTemplate::compile(&self.event_topic).map_err(|m| err("event_topic", m))?,
            status: TopicTemplate::compile(&self.status_topic)
                .map_err(|m| err("status_topic", m))?,
        };
        if self.topics.status.uses_record() {
            return Err(err(
                "status_topic",
                "may only use {gateway} and {output}".into(),
            ));
        }
        if self.discovery {
            let p = &self.discovery_prefix;
            if p.is_empty() || p.contains(['+', '#']) || p.starts_with('/') || p.ends_with('/') {
                return Err(err(
                    "discovery_prefix",
                    "must be a topic without wildcards or leading/trailing '/'".into(),
                ));
            }
            if self.payload.is_some() && !self.value_topics {
                return Err(err(
                    "discovery",
                    "needs the record JSON as payload or `value_topics = true` (a custom payload \
                     hides where each value is)"
                        .into(),
                ));
            }
        }
        match (
            &self.username,
            self.password.is_some() || self.password_file.is_some(),
        ) {
            (None, true) => {
                return Err(err(
                    "username",
                    "missing: a password needs a user name".into(),
                ));
            }
            (Some(u), _) if u.is_empty() => {
                return Err(err("username", "must not be empty".into()));
            }
            (Some(_), true) => crate::webhook::config::resolve(
                &mut self.password,
                &self.password_file,
                "password",
                base_dir,
                &err,
            )?,
            _ => {}
        }
        let all = [String::from("all")];
        let default_events: &[String] = if self.payload.is_some() { &[] } else { &all };
        self.filter = match &self.events {
            Some(list) => crate::health::EventFilter::parse(list).map_err(|m| err("events", m))?,
            None if default_events.is_empty() => crate::health::EventFilter::default(),
            None => {
                crate::health::EventFilter::parse(default_events).map_err(|m| err("events", m))?
            }
        };
        if let Some(table) = &self.payload {
            let t = Template::compile(table)
                .map_err(|e| err(&format!("payload.{}", e.key), e.message))?;
            self.template = Some(t);
        }
        for (key, set) in super::tls::files(self).set() {
            if set && !broker.tls {
                return Err(err(
                    key,
                    "is set but the URL is not mqtts://: nothing would be encrypted".into(),
                ));
            }
        }
        if broker.tls {
            self.tls = Some(Arc::new(super::tls::client_config(self, base_dir, &err)?));
        }
        Ok(())
    }
}

/// Parses `mqtt://host[:port]` or `mqtts://host[:port]` (an IPv6 address in brackets).
pub fn parse_url(url: &str) -> Result<Broker, String> {
    let lower = url.to_ascii_lowercase();
    let (tls, rest) = if let Some(r) = lower.strip_prefix("mqtts://") {
        (true, &url[url.len() - r.len()..])
    } else if let Some(r) = lower.strip_prefix("mqtt://") {
        (false, &url[url.len() - r.len()..])
    } else {
        return Err("must start with mqtt:// or mqtts://".into());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(
            "only a host and port: put user and password in `username` and `password_file`".into(),
        );
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r
            .split_once(']')
            .ok_or_else(|| "an IPv6 address needs its closing ']'".to_owned())?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("not a valid host and port".into()),
        };
        (h.to_owned(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{p:?} is not a port"))?,
    };
    Ok(Broker { host, port, tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1").unwrap(),
            Broker {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false
            }
        );
        assert_eq!(parse_url("MQTTS://broker.lan:8884/").unwrap().port, 8884);
        assert!(parse_url("mqtts://broker.lan").unwrap().tls);
        assert_eq!(parse_url("mqtt://[::1]:1884").unwrap().host, "::1");
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("mqtt://u:p@x").is_err());
        assert!(parse_url("mqtt://x:0").is_err());
        assert!(parse_url("mqtt://:1883").is_err());
    }

    #[test]
    fn defaults_and_errors_name_the_key() {
        let mut c = MqttConfig::new("home", "mqtt://127.0.0.1:1883");
        c.validate(Path::new(".")).unwrap();
        assert_eq!(c.topic, "enocean/{gateway}/{sensor_id}");
        assert_eq!(c.output_name(), "mqtt:home");
        let mut c = MqttConfig::new("home", "mqtt://127.0.0.1");
        c.topic = "a/+/b".into();
        assert_eq!(c.validate(Path::new(".")).unwrap_err().key, "topic");
        let mut c = MqttConfig::new("home", "mqtt://127.0.0.1");
        c.password = Some(Secret::new("x"));
        assert_eq!(c.validate(Path::new(".")).unwrap_err().key, "username");
        let mut c = MqttConfig::new("home", "mqtt://127.0.0.1");
        c.ca_file = Some("ca.pem".into());
        assert_eq!(c.validate(Path::new(".")).unwrap_err().key, "ca_file");
    }
}
