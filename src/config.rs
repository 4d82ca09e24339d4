//! The configuration file (TOML): `[gateway]`, `[serial]`, `[storage]`, `[[device]]`, `[learn]`,
//! `[log]` and `[[webhook]]`. Unknown keys are errors; every error names the file, line, column and
//! key. Secret files are read while loading, so a missing one stops the start, not a delivery.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// `[[webhook]]` entries.
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
    /// `[[mqtt]]` entries: MQTT outputs (see [`crate::mqtt`]).
    #[serde(default, rename = "mqtt", skip_serializing_if = "Vec::is_empty")]
    pub mqtt: Vec<MqttConfig>,
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
    pub port: String,
    /// Copies of one telegram (same sender and payload) within this window are delivered once.
    #[serde(
        default = "default_dedup_window",
        with = "crate::webhook::config::duration"
    )]
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

fn default_port() -> String {
    "/dev/enocean".into()
}

/// `[[device]]`: a configured device.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
}

impl Default for LearnConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_devices: default_max_devices(),
        }
    }
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
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)?;
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

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text` as if read from `path` (secret files relative to its
    /// directory).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            let key = e
                .span()
                .and_then(|s| key_of_value(text, s.start))
                .or_else(|| e.span().and_then(|s| text.get(s)).map(str::to_owned))
                .as_deref()
                .map(|s| s.trim().trim_matches('"'))
                .filter(|s| is_bare_key(s))
                .map(str::to_owned)
                .or_else(|| backticked(e.message()));
            ConfigError {
                file: path.to_path_buf(),
                line,
                column,
                key,
                message: e.message().trim().to_owned(),
            }
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        cfg.inline_secrets = cfg.webhooks.iter().any(|w| w.has_inline_secret())
            || cfg.mqtt.iter().any(|m| m.has_inline_secret());
        let mut seen = std::collections::HashSet::new();
        for (i, w) in cfg.webhooks.iter_mut().enumerate() {
            let at = |key: &str, message: String| {
                let (line, column) = locate(text, i, key);
                ConfigError {
                    file: path.to_path_buf(),
                    line,
                    column,
                    key: Some(format!("webhook[{i}].{key}")),
                    message,
                }
            };
            if !seen.insert(w.name.clone()) {
                return Err(at("name", format!("duplicate webhook name {:?}", w.name)));
            }
            if w.name.starts_with(crate::mqtt::OUTPUT_PREFIX) {
                return Err(at(
                    "name",
                    format!("{:?}: the prefix `mqtt:` is kept for MQTT outputs", w.name),
                ));
            }
            w.validate(base).map_err(|e| at(&e.key, e.message))?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, m) in cfg.mqtt.iter_mut().enumerate() {
            let at = |key: &str, message: String| {
                let (line, column) = locate_in(text, "mqtt", i, key);
                ConfigError {
                    file: path.to_path_buf(),
                    line,
                    column,
                    key: Some(format!("mqtt[{i}].{key}")),
                    message,
                }
            };
            if !seen.insert(m.name.clone()) {
                return Err(at("name", format!("duplicate mqtt name {:?}", m.name)));
            }
            m.validate(base).map_err(|e| at(&e.key, e.message))?;
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
                let (line, column) = find_key(text, key).unwrap_or((0, 0));
                return Err(ConfigError {
                    file: path.to_path_buf(),
                    line,
                    column,
                    key: Some(format!("storage.{key}")),
                    message: format!("must be at most {}", human_secs(max)),
                });
            }
        }
        if cfg.storage.commit_batch == 0 {
            let (line, column) = find_key(text, "commit_batch").unwrap_or((0, 0));
            return Err(ConfigError {
                file: path.to_path_buf(),
                line,
                column,
                key: Some("storage.commit_batch".into()),
                message: "must be at least 1".into(),
            });
        }
        Ok(cfg)
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

/// The key of a `key = value` line when `offset` points into the value (type errors point at the
/// value, but the user needs the key).
fn key_of_value(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let before = text.get(start..offset)?;
    let (key, _) = before.split_once('=')?;
    let key = key.trim().trim_matches('"');
    is_bare_key(key).then(|| key.to_owned())
}

fn human_secs(s: u64) -> String {
    if s >= 86_400 {
        format!("{} days", s / 86_400)
    } else {
        format!("{} s", s)
    }
}

fn is_bare_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_owned())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Line and column of `key` inside the `nth` `[[webhook]]` table, its `[webhook.*]` sub-tables
/// included (best effort). A dotted key (`auth.token`) is looked for after the place of its first
/// part (`auth = {…}`, `auth.token =` or `[webhook.auth]`); the first part's place, then the
/// table's line, when the last part is not found.
fn locate(text: &str, nth: usize, key: &str) -> (usize, usize) {
    locate_in(text, "webhook", nth, key)
}

/// [`locate`] in the `nth` `[[table]]` (`webhook`, `mqtt`).
fn locate_in(text: &str, table: &str, nth: usize, key: &str) -> (usize, usize) {
    let mut parts = key.split('.');
    let first = parts.next().unwrap_or(key);
    let last = parts.next_back();
    let mut count = 0usize;
    let mut inside = false;
    let mut table_line = (0, 0);
    let mut first_at: Option<(usize, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let header: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            if inside && header.starts_with(&format!("[{table}.")) {
                if first_at.is_some() {
                    // The sub-table of the first part ended without the last part.
                    break;
                }
                if header == format!("[{table}.{first}]") {
                    first_at = Some((i + 1, 1));
                }
                continue;
            }
            if inside {
                break;
            }
            if header.starts_with(&format!("[[{table}]]")) {
                if count == nth {
                    inside = true;
                    table_line = (i + 1, 1);
                }
                count += 1;
            }
            continue;
        }
        if !inside {
            continue;
        }
        match (last, first_at) {
            (None, _) => {
                if let Some(col) = key_pos(line, first) {
                    return (i + 1, col);
                }
            }
            (Some(last), None) => {
                if let Some(at) = key_byte(line, first) {
                    first_at = Some((i + 1, column(line, at)));
                    let from = at + first.len();
                    if let Some(b) = key_byte(&line[from..], last) {
                        return (i + 1, column(line, from + b));
                    }
                }
            }
            (Some(last), Some(_)) => {
                if let Some(col) = key_pos(line, last) {
                    return (i + 1, col);
                }
            }
        }
    }
    first_at.unwrap_or(table_line)
}

fn find_key(text: &str, key: &str) -> Option<(usize, usize)> {
    text.lines()
        .enumerate()
        .find_map(|(i, l)| key_pos(l, key).map(|c| (i + 1, c)))
}

fn key_pos(line: &str, key: &str) -> Option<usize> {
    key_byte(line, key).map(|at| column(line, at))
}

/// 1-based column of the byte offset `at` in `line`.
fn column(line: &str, at: usize) -> usize {
    line[..at].chars().count() + 1
}

/// Byte offset of `key` used as a key in `line` (followed by `=` or `.`).
fn key_byte(line: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = line[from..].find(key) {
        let at = from + p;
        let before_ok = at == 0
            || !line[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let rest = line[at + key.len()..].trim_start();
        if before_ok && (rest.starts_with('=') || rest.starts_with('.')) {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}
