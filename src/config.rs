//! The configuration file (TOML): `[gateway]`, `[serial]`, `[storage]`, `[[device]]`, `[learn]`,
//! `[log]`, `[[webhook]]` and `[[mqtt]]`. Unknown keys are errors. [`Config::check`] reports every problem
//! of a file in one run, each with the file, line, column (from the TOML parser's spans, see
//! `spans.rs`) and key path (`webhook[1].auth.token_file`). Secret files are read while loading,
//! so a missing one stops the start, not a delivery.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod spans;

pub use spans::Positions;

use crate::mqtt::MqttConfig;
use crate::outbox::StorageConfig;
use crate::webhook::WebhookConfig;

/// The whole configuration. Serialized (by `check-config`) as TOML with defaults filled in and
/// every secret redacted.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// True when the file itself holds a secret (the daemon warns if others can read it).
    #[serde(skip)]
    pub inline_secrets: bool,
    /// `[gateway]`.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// `[serial]`.
    #[serde(default)]
    pub serial: SerialConfig,
    /// `[storage]`.
    #[serde(default)]
    pub storage: StorageConfig,
    /// `[[device]]` entries.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceConfig>,
    /// `[learn]`.
    #[serde(default)]
    pub learn: LearnConfig,
    /// `[eep]`.
    #[serde(default)]
    pub eep: EepConfig,
    /// `[log]`.
    #[serde(default)]
    pub log: LogConfig,
    /// `[health]`: the periodic `gateway.status` event.
    #[serde(default)]
    pub health: crate::health::HealthConfig,
    /// `[metrics]`: the Prometheus endpoint and the node-exporter textfile.
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
    /// `[[webhook]]` entries.
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
    /// `[[mqtt]]` entries: MQTT outputs (see [`crate::mqtt`]).
    #[serde(default, rename = "mqtt", skip_serializing_if = "Vec::is_empty")]
    pub mqtt: Vec<MqttConfig>,
    /// Where each key is written in the file (from the TOML parser's spans), for problems found
    /// after loading ([`Config::position`]).
    #[serde(skip)]
    pub positions: Positions,
}

/// `[gateway]`: how this gateway names itself in telemetry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Gateway name (`gateway.id` in telemetry).
    #[serde(default = "default_gateway_id")]
    pub id: String,
    /// When the wall clock counts as synchronised (`auto`, `ntp`, `floor`; see
    /// [`crate::clock`]): readings received before that are stamped once it is.
    #[serde(default)]
    pub clock_sync: crate::clock::ClockRule,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            id: default_gateway_id(),
            clock_sync: Default::default(),
        }
    }
}

fn default_gateway_id() -> String {
    "enocean-agent".into()
}

/// `[serial]`: the stick.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// Device path, or `sim` for the simulated stick.
    #[serde(default = "default_port")]
    pub port: crate::serial::PortChoice,
    /// Copies of one telegram (same sender and payload) within this window are delivered once.
    #[serde(default = "default_dedup_window", with = "crate::duration")]
    pub dedup_window: std::time::Duration,
}

impl Default for SerialConfig {
    fn default() -> Self {
        Self {
            port: default_port(),
            dedup_window: default_dedup_window(),
        }
    }
}

fn default_dedup_window() -> std::time::Duration {
    std::time::Duration::from_secs(2)
}

fn default_port() -> crate::serial::PortChoice {
    crate::serial::PortChoice::default()
}

/// `[[device]]`: a configured device.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Sender ID (8 hex digits).
    pub id: String,
    /// EEP as `RR-FF-TT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eep: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tags copied into telemetry.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Report `device.silent` when not heard for this long (`"0s"`: never); default
    /// `[learn] silent_after`, except for rockers (RORG F6), which send only when pressed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration::option"
    )]
    pub silent_after: Option<std::time::Duration>,
    /// A secure device taught in elsewhere: the file holding its AES-128 key as 32 hex digits
    /// (relative to the configuration file). Read at load, never logged or printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// With `key_file`: the security level format byte (e.g. `0x4B`, see [`crate::secure::Slf`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slf: Option<u8>,
    /// With `key_file`: the rolling code the device uses next (needed when it does not send
    /// it); a rolling code stored by an earlier run for the same key wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rlc: Option<u32>,
    /// The key read from `key_file`.
    #[serde(skip)]
    pub key: Option<crate::secure::DeviceKey>,
}

impl DeviceConfig {
    /// How long the device may stay unheard before `device.silent`; None when it is not
    /// watched (`"0s"`, or a rocker without its own setting).
    pub fn silence_threshold(&self, default: std::time::Duration) -> Option<std::time::Duration> {
        let rocker = self
            .eep
            .as_deref()
            .is_some_and(|e| e.to_ascii_uppercase().starts_with("F6"));
        let after = match self.silent_after {
            Some(d) => d,
            None if rocker => return None,
            None => default,
        };
        (!after.is_zero()).then_some(after)
    }
}

/// `[eep]`: where profiles come from besides the built-in ones.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EepConfig {
    /// A directory of `RR-FF-TT.toml` profiles that add to or override the built-in ones
    /// (relative to the configuration file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles_dir: Option<PathBuf>,
}

/// `[learn]`: passive learning from teach-in telegrams.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LearnConfig {
    /// Register devices announcing their EEP in a teach-in.
    #[serde(default)]
    pub enabled: bool,
    /// At most this many devices that are not configured (learned, or only heard) are kept in
    /// memory and in the database; the least recently heard go first.
    #[serde(default = "default_max_devices")]
    pub max_devices: usize,
    /// Configured devices not heard for this long are reported `device.silent` (each
    /// `[[device]]` may set its own; `"0s"`: never). Learned devices are not watched: learning
    /// is passive and also takes in a neighbour's sensors. Default 2 h.
    #[serde(default = "default_silent_after", with = "crate::duration")]
    pub silent_after: std::time::Duration,
}

impl Default for LearnConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_devices: default_max_devices(),
            silent_after: default_silent_after(),
        }
    }
}

fn default_silent_after() -> std::time::Duration {
    crate::health::DEFAULT_SILENT_AFTER
}

fn default_max_devices() -> usize {
    crate::device::DEFAULT_MAX_DEVICES
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Level filter (`error`…`trace`); `RUST_LOG` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// A configuration error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// The key concerned, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Config {
    /// True when the file at `path` holds an inline secret and every user may read it.
    pub fn secrets_world_readable(&self, path: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        self.inline_secrets
            && std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
    }

    /// Reads, parses and validates the file at `path`; the first problem (see [`Config::check`]
    /// for all of them).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (cfg, mut errors) = Self::check(path);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors.remove(0))
        }
    }

    /// Reads, parses and validates the file at `path` and reports every problem, each with its
    /// place: the configuration as far as it could be read (a wrong value replaced by its
    /// default, a table that could not be read left out) and the problems, in file order. The
    /// configuration is usable only when there is no problem.
    pub fn check(path: &Path) -> (Self, Vec<ConfigError>) {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::check_text(&text, path),
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    "no configuration file there: pass --config PATH, or copy \
                     systemd/config.example.toml (installed as \
                     /usr/share/doc/enocean-agent/config.example.toml) there"
                        .to_owned()
                } else {
                    format!("cannot read it: {e}")
                };
                let message = format!("looked for the configuration here: {hint}");
                (
                    Self::default(),
                    vec![ConfigError {
                        file: path.to_path_buf(),
                        line: 0,
                        column: 0,
                        key: None,
                        message,
                    }],
                )
            }
        }
    }

    /// Parses and validates `text` as if read from `path` (secret files relative to its
    /// directory); the first problem.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let (cfg, mut errors) = Self::check_text(text, path);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors.remove(0))
        }
    }

    /// [`Config::check`] of `text` as if read from `path`.
    pub fn check_text(text: &str, path: &Path) -> (Self, Vec<ConfigError>) {
        let at = |lines: &spans::LineIndex, p: spans::Problem| {
            let (line, column) = p.at.map_or((0, 0), |o| lines.line_col(o));
            ConfigError {
                file: path.to_path_buf(),
                line,
                column,
                key: (!p.path.is_empty()).then_some(p.path),
                message: p.message,
            }
        };
        let doc = match spans::Document::parse(text) {
            Ok(d) => d,
            Err(problems) => {
                let lines = spans::LineIndex::new(text);
                let errors = problems.into_iter().map(|p| at(&lines, p)).collect();
                return (Self::default(), errors);
            }
        };
        let (cfg, problems, kept) =
            spans::deserialize_all::<Config>(&doc, &["webhook", "device", "mqtt"]);
        let reported: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
        let mut errors: Vec<ConfigError> =
            problems.into_iter().map(|p| at(&doc.lines, p)).collect();
        // A sub-table (`auth`, `signing`) that lost an entry to a reported problem is not
        // reported again for what that entry would have set.
        let consequence = |key: &str| {
            key.rsplit_once('.')
                .filter(|(parent, _)| parent.contains('.'))
                .is_some_and(|(parent, _)| {
                    reported
                        .iter()
                        .any(|r| r == parent || r.starts_with(&format!("{parent}.")))
                })
        };
        let Some(mut cfg) = cfg else {
            return (Self::default(), errors);
        };
        cfg.positions = doc.positions.clone();
        let positions = &doc.positions;
        let error = |key: String, message: String| {
            let (line, column) = positions.nearest(&key);
            ConfigError {
                file: path.to_path_buf(),
                line,
                column,
                key: Some(key),
                message,
            }
        };
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        cfg.inline_secrets = cfg.webhooks.iter().any(|w| w.has_inline_secret())
            || cfg.mqtt.iter().any(|m| m.has_inline_secret());
        let webhook_index = kept.get("webhook").cloned().unwrap_or_default();
        let mut seen = std::collections::HashMap::new();
        for (j, w) in cfg.webhooks.iter_mut().enumerate() {
            let i = webhook_index.get(j).copied().unwrap_or(j);
            if let Some(first) = seen.insert(w.name.clone(), i) {
                errors.push(error(
                    format!("webhook[{i}].name"),
                    format!(
                        "duplicate webhook name {:?} (webhook[{first}] has it too): names must be unique",
                        w.name
                    ),
                ));
            }
            if w.name.starts_with(crate::mqtt::OUTPUT_PREFIX) {
                errors.push(error(
                    format!("webhook[{i}].name"),
                    format!("{:?}: the prefix `mqtt:` is kept for MQTT outputs", w.name),
                ));
            }
            for e in w.validate_all(base) {
                let key = format!("webhook[{i}].{}", e.key);
                if !consequence(&key) {
                    errors.push(error(key, e.message));
                }
            }
        }
        let mqtt_index = kept.get("mqtt").cloned().unwrap_or_default();
        let mut seen = std::collections::HashMap::new();
        for (j, m) in cfg.mqtt.iter_mut().enumerate() {
            let i = mqtt_index.get(j).copied().unwrap_or(j);
            if let Some(first) = seen.insert(m.name.clone(), i) {
                errors.push(error(
                    format!("mqtt[{i}].name"),
                    format!(
                        "duplicate mqtt name {:?} (mqtt[{first}] has it too): names must be unique",
                        m.name
                    ),
                ));
            }
            // Read the same in every build, refused by one without the client (`mqtt` feature);
            // its files (password, TLS) are then not read.
            if let Some(e) = crate::mqtt::unavailable() {
                errors.push(error(format!("mqtt[{i}]"), e.to_string()));
                continue;
            }
            if let Err(e) = m.validate(base) {
                let key = format!("mqtt[{i}].{}", e.key);
                if !consequence(&key) {
                    errors.push(error(key, e.message));
                }
            }
        }
        let device_index = kept.get("device").cloned().unwrap_or_default();
        for (j, d) in cfg.devices.iter().enumerate() {
            let i = device_index.get(j).copied().unwrap_or(j);
            if let Err(e) = crate::device::parse_id(&d.id) {
                errors.push(error(
                    format!("device[{i}].id"),
                    format!("{e}: write the sender ID as 8 hex digits, e.g. \"0180A3F2\""),
                ));
            }
        }
        for (j, d) in cfg.devices.iter_mut().enumerate() {
            let i = device_index.get(j).copied().unwrap_or(j);
            if let Err((key, message)) = crate::secure::config::load_device_key(d, base) {
                errors.push(error(format!("device[{i}].{key}"), message));
            }
        }
        for (key, d, max) in [
            ("commit_window", cfg.storage.commit_window, 3600),
            ("ack_window", cfg.storage.ack_window, 3600),
            (
                "delivered_retention",
                cfg.storage.delivered_retention,
                10 * 365 * 86_400,
            ),
            (
                "log_retention",
                cfg.storage.log_retention,
                10 * 365 * 86_400,
            ),
        ] {
            if d > std::time::Duration::from_secs(max) {
                errors.push(error(
                    format!("storage.{key}"),
                    format!("must be at most {}", human_secs(max)),
                ));
            }
        }
        // Read the same in every build, refused by one without the simulator (`sim` feature).
        if let Some(e) = cfg.serial.port.unavailable() {
            errors.push(error("serial.port".into(), e.to_string()));
        }
        if cfg.storage.commit_batch == 0 {
            errors.push(error(
                "storage.commit_batch".into(),
                "must be at least 1".into(),
            ));
        }
        errors.sort_by_key(|e| (e.line == 0, e.line, e.column));
        (cfg, errors)
    }

    /// Line and column of the key at `path` (`device[2].eep`) in the file this configuration was
    /// read from, else of its closest enclosing key; `(0, 0)` when unknown.
    pub fn position(&self, path: &str) -> (usize, usize) {
        self.positions.nearest(path)
    }

    /// The webhook named `name`.
    pub fn webhook(&self, name: &str) -> Option<&WebhookConfig> {
        self.webhooks.iter().find(|w| w.name == name)
    }

    /// Names of the webhooks enabled in the configuration (what the outbox registers).
    pub fn enabled_webhooks(&self) -> Vec<&str> {
        self.webhooks
            .iter()
            .filter(|w| w.enabled)
            .map(|w| w.name.as_str())
            .collect()
    }
}

fn human_secs(s: u64) -> String {
    if s >= 86_400 {
        format!("{} days", s / 86_400)
    } else {
        format!("{} s", s)
    }
}
