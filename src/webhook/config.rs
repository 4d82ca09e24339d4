//! The `[[webhook]]` configuration: where to deliver, how to authenticate and sign, how to retry,
//! and the payload shape. Parsed by serde (unknown keys are errors) and then validated by
//! [`WebhookConfig::validate`], which reads secret files and compiles the payload template.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::template::Template;
use crate::secret::Secret;

/// One `[[webhook]]` entry. Serialized (by `check-config`) with every secret redacted: the URL's
/// user information and query values, inline secrets; a secret read from a file shows the file.
/// `Debug` shows the URL redacted too.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Unique name, used by the command line and in the delivery log.
    pub name: String,
    /// Target URL (`http://` or `https://`).
    #[serde(serialize_with = "crate::secret::serialize_url")]
    pub url: String,
    /// Configuration switch; a disabled webhook queues nothing and sends nothing.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Routes: sender IDs (8 hex digits) this webhook receives; every device when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    /// Record kinds this webhook receives, by `event` name (`telemetry`, `teach_in`,
    /// `gateway.status`, `device.silent`, `device.back`, or `all`); default `telemetry` and
    /// `teach_in` (see [`crate::health::EventFilter`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// The parsed `events`, set by [`WebhookConfig::validate`].
    #[serde(skip)]
    pub filter: crate::health::EventFilter,
    /// Whole-request timeout.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Connect timeout.
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// At most this many telemetry records per POST (default 1).
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Retries after the first attempt of a delivery (default 2: three attempts in all).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First retry delay; doubled for every further retry.
    #[serde(default = "default_backoff_base", with = "duration")]
    pub backoff_base: Duration,
    /// Upper bound of the retry delay.
    #[serde(default = "default_backoff_max", with = "duration")]
    pub backoff_max: Duration,
    /// Random spread of each delay as a fraction (0.2 = ±20 %).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Upper bound for a server's `Retry-After`.
    #[serde(default = "default_retry_after_max", with = "duration")]
    pub retry_after_max: Duration,
    /// Deactivate after this many consecutive failed deliveries (default 5; 0 = never).
    #[serde(default = "default_deactivate_after")]
    pub deactivate_after: u32,
    /// Delay of the first probe of a deactivated webhook (default 30 s); doubled per failed probe.
    #[serde(default = "default_probe_base", with = "duration")]
    pub probe_base: Duration,
    /// Upper bound of the probe delay (default 3 min): after an outage of any length the
    /// backlog starts draining within this long of the endpoint's recovery.
    #[serde(default = "default_probe_max", with = "duration")]
    pub probe_max: Duration,
    /// A PEM file of CA certificates trusted for this webhook's server in addition to the built-in
    /// (Mozilla) roots and the operating system's store: a building owner's private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A PEM certificate chain (leaf first) this gateway presents for mutual TLS; needs
    /// `client_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// The PEM private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1); a secret, so a bare
    /// name may be a systemd credential like the `*_file` secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// Authentication sent with every request.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Body signing, independent of auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningConfig>,
    /// Custom payload template (a table); the default envelope when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<toml::Table>,
    /// The compiled payload template, set by [`WebhookConfig::validate`].
    #[serde(skip)]
    pub template: Option<Template>,
    /// The certificates and key of `ca_file`, `client_cert_file` and `client_key_file`, read by
    /// [`WebhookConfig::validate`].
    #[serde(skip)]
    pub tls: TlsMaterial,
}

/// TLS material read from the files a webhook names: extra trusted CAs and a client certificate.
#[derive(Clone, Default)]
pub struct TlsMaterial {
    /// CA certificates of `ca_file` (DER), added to the trusted roots.
    pub extra_roots: Vec<ureq::tls::Certificate<'static>>,
    /// Certificate chain and key for mutual TLS.
    pub client: Option<ureq::tls::ClientCert>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("extra_roots", &self.extra_roots.len())
            .field(
                "client_chain",
                &self.client.as_ref().map(|c| c.certs().len()),
            )
            .finish()
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.display_url())
            .field("enabled", &self.enabled)
            .field("devices", &self.devices)
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("batch_max", &self.batch_max)
            .field("max_retries", &self.max_retries)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("jitter", &self.jitter)
            .field("retry_after_max", &self.retry_after_max)
            .field("deactivate_after", &self.deactivate_after)
            .field("probe_base", &self.probe_base)
            .field("probe_max", &self.probe_max)
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field("tls", &self.tls)
            .field("auth", &self.auth)
            .field("signing", &self.signing)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    deny_unknown_fields,
    into = "AuthConfigView"
)]
pub enum AuthConfig {
    /// No authentication header.
    #[default]
    None,
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password inline.
        #[serde(default)]
        password: Option<Secret>,
        /// Password read from this file.
        #[serde(default)]
        password_file: Option<PathBuf>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// Token inline.
        #[serde(default)]
        token: Option<Secret>,
        /// Token read from this file.
        #[serde(default)]
        token_file: Option<PathBuf>,
    },
    /// A custom header with a secret value.
    Header {
        /// Header name.
        name: String,
        /// Value inline.
        #[serde(default)]
        value: Option<Secret>,
        /// Value read from this file.
        #[serde(default)]
        value_file: Option<PathBuf>,
    },
}

/// How the body is signed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    deny_unknown_fields,
    into = "SigningConfigView"
)]
pub enum SigningConfig {
    /// HMAC-SHA256 of the exact body in one header.
    Hmac {
        /// Key inline.
        #[serde(default)]
        secret: Option<Secret>,
        /// Key read from this file.
        #[serde(default)]
        secret_file: Option<PathBuf>,
        /// Header name (default `Signature`).
        #[serde(default = "default_signature_header")]
        header: String,
        /// Text put before the digest (e.g. `sha256=`).
        #[serde(default)]
        prefix: String,
        /// Digest encoding.
        #[serde(default)]
        encoding: DigestEncoding,
    },
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks {
        /// Current `whsec_…` secret inline.
        #[serde(default)]
        secret: Option<Secret>,
        /// Current secret read from this file.
        #[serde(default)]
        secret_file: Option<PathBuf>,
        /// Previous secret, also signed with during a rotation.
        #[serde(default)]
        previous_secret: Option<Secret>,
        /// Previous secret read from this file.
        #[serde(default)]
        previous_secret_file: Option<PathBuf>,
    },
}

/// Encoding of an HMAC digest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestEncoding {
    /// Lowercase hex (default).
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// How [`AuthConfig`] is printed: an inline secret as `[redacted]`, a secret read from a file
/// only as its file (the value loaded from it is not shown at all).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum AuthConfigView {
    None,
    Basic {
        username: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        password: Option<Secret>,
        #[serde(skip_serializing_if = "Option::is_none")]
        password_file: Option<PathBuf>,
    },
    Bearer {
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
        #[serde(skip_serializing_if = "Option::is_none")]
        token_file: Option<PathBuf>,
    },
    Header {
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<Secret>,
        #[serde(skip_serializing_if = "Option::is_none")]
        value_file: Option<PathBuf>,
    },
}

/// The inline secret to show: none when it was read from `file`.
fn shown(inline: Option<Secret>, file: &Option<PathBuf>) -> Option<Secret> {
    if file.is_some() { None } else { inline }
}

impl From<AuthConfig> for AuthConfigView {
    fn from(a: AuthConfig) -> Self {
        match a {
            AuthConfig::None => Self::None,
            AuthConfig::Basic {
                username,
                password,
                password_file,
            } => Self::Basic {
                username,
                password: shown(password, &password_file),
                password_file,
            },
            AuthConfig::Bearer { token, token_file } => Self::Bearer {
                token: shown(token, &token_file),
                token_file,
            },
            AuthConfig::Header {
                name,
                value,
                value_file,
            } => Self::Header {
                name,
                value: shown(value, &value_file),
                value_file,
            },
        }
    }
}

/// How [`SigningConfig`] is printed (secrets as in [`AuthConfigView`]).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum SigningConfigView {
    Hmac {
        #[serde(skip_serializing_if = "Option::is_none")]
        secret: Option<Secret>,
        #[serde(skip_serializing_if = "Option::is_none")]
        secret_file: Option<PathBuf>,
        header: String,
        prefix: String,
        encoding: DigestEncoding,
    },
    StandardWebhooks {
        #[serde(skip_serializing_if = "Option::is_none")]
        secret: Option<Secret>,
        #[serde(skip_serializing_if = "Option::is_none")]
        secret_file: Option<PathBuf>,
        #[serde(skip_serializing_if = "Option::is_none")]
        previous_secret: Option<Secret>,
        #[serde(skip_serializing_if = "Option::is_none")]
        previous_secret_file: Option<PathBuf>,
    },
}

impl From<SigningConfig> for SigningConfigView {
    fn from(s: SigningConfig) -> Self {
        match s {
            SigningConfig::Hmac {
                secret,
                secret_file,
                header,
                prefix,
                encoding,
            } => Self::Hmac {
                secret: shown(secret, &secret_file),
                secret_file,
                header,
                prefix,
                encoding,
            },
            SigningConfig::StandardWebhooks {
                secret,
                secret_file,
                previous_secret,
                previous_secret_file,
            } => Self::StandardWebhooks {
                secret: shown(secret, &secret_file),
                secret_file,
                previous_secret: shown(previous_secret, &previous_secret_file),
                previous_secret_file,
            },
        }
    }
}

/// A webhook configuration that does not hold together.
#[derive(Debug, thiserror::Error)]
#[error("webhook {webhook:?}: `{key}`: {message}")]
pub struct WebhookConfigError {
    /// The webhook's name.
    pub webhook: String,
    /// The offending key (dotted path).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl WebhookConfig {
    /// True when a secret is written in the configuration itself (not in a file).
    pub fn has_inline_secret(&self) -> bool {
        let auth = match &self.auth {
            AuthConfig::None => false,
            AuthConfig::Basic { password, .. } => password.is_some(),
            AuthConfig::Bearer { token, .. } => token.is_some(),
            AuthConfig::Header { value, .. } => value.is_some(),
        };
        let signing = match &self.signing {
            None => false,
            Some(SigningConfig::Hmac { secret, .. }) => secret.is_some(),
            Some(SigningConfig::StandardWebhooks {
                secret,
                previous_secret,
                ..
            }) => secret.is_some() || previous_secret.is_some(),
        };
        auth || signing
    }

    /// A webhook with defaults for everything but name and URL (for tests and the demo).
    pub fn new(name: &str, url: &str) -> Self {
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            enabled: true,
            devices: None,
            events: None,
            filter: Default::default(),
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            batch_max: default_batch_max(),
            max_retries: default_max_retries(),
            backoff_base: default_backoff_base(),
            backoff_max: default_backoff_max(),
            jitter: default_jitter(),
            retry_after_max: default_retry_after_max(),
            deactivate_after: default_deactivate_after(),
            probe_base: default_probe_base(),
            probe_max: default_probe_max(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            auth: AuthConfig::None,
            signing: None,
            payload: None,
            template: None,
            tls: TlsMaterial::default(),
        }
    }

    /// Checks the values, reads secret files (relative paths from `base_dir`), normalises routes
    /// and compiles the payload template. The first problem, with its key; see
    /// [`WebhookConfig::validate_all`] for every problem.
    pub fn validate(&mut self, base_dir: &Path) -> Result<(), WebhookConfigError> {
        match self.validate_all(base_dir).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Like [`WebhookConfig::validate`], but reports every problem: each check runs whatever an
    /// earlier one found (every missing secret file is named, not only the first).
    pub fn validate_all(&mut self, base_dir: &Path) -> Vec<WebhookConfigError> {
        let name = self.name.clone();
        let err = |key: &str, message: String| WebhookConfigError {
            webhook: name.clone(),
            key: key.to_owned(),
            message,
        };
        let mut errors = Vec::new();
        let mut check = |r: Result<(), WebhookConfigError>| {
            if let Err(e) = r {
                errors.push(e);
            }
        };
        if self.name.trim().is_empty() {
            check(Err(err("name", "must not be empty".into())));
        }
        let lower = self.url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            check(Err(err(
                "url",
                "must start with http:// or https://".into(),
            )));
        } else if self.url.parse::<ureq::http::Uri>().is_err() || self.url.len() <= "https://".len()
        {
            check(Err(err("url", "not a valid URL".into())));
        }
        if self.batch_max == 0 || self.batch_max > 1000 {
            check(Err(err("batch_max", "must be between 1 and 1000".into())));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            check(Err(err("jitter", "must be between 0.0 and 1.0".into())));
        }
        for (key, d) in [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
            ("backoff_base", self.backoff_base),
            ("backoff_max", self.backoff_max),
            ("retry_after_max", self.retry_after_max),
            ("probe_base", self.probe_base),
            ("probe_max", self.probe_max),
        ] {
            if d > MAX_DURATION {
                check(Err(err(key, "must be at most 7 days".into())));
            }
        }
        if self.timeout.is_zero() {
            check(Err(err("timeout", "must be more than 0".into())));
        }
        if self.probe_base.is_zero() {
            check(Err(err("probe_base", "must be more than 0".into())));
        } else if self.probe_max < self.probe_base {
            check(Err(err(
                "probe_max",
                "must not be less than `probe_base`".into(),
            )));
        }
        if let Some(devices) = &mut self.devices {
            for d in devices.iter_mut() {
                let up = d.trim().to_ascii_uppercase();
                if up.len() != 8 || !up.chars().all(|c| c.is_ascii_hexdigit()) {
                    check(Err(err(
                        "devices",
                        format!("{d:?} is not a sender ID (8 hex digits)"),
                    )));
                } else {
                    *d = up;
                }
            }
        }
        match &self.events {
            Some(list) => match crate::health::EventFilter::parse(list) {
                Ok(f) => self.filter = f,
                Err(m) => check(Err(err("events", m))),
            },
            // The effective list, so `check-config` shows what the webhook receives.
            None => self.events = Some(self.filter.names().to_vec()),
        }
        match &mut self.auth {
            AuthConfig::None => {}
            AuthConfig::Basic {
                password,
                password_file,
                ..
            } => check(resolve(
                password,
                password_file,
                "auth.password",
                base_dir,
                &err,
            )),
            AuthConfig::Bearer { token, token_file } => {
                check(resolve(token, token_file, "auth.token", base_dir, &err))
            }
            AuthConfig::Header {
                name: hname,
                value,
                value_file,
            } => {
                if ureq::http::HeaderName::from_bytes(hname.as_bytes()).is_err() {
                    check(Err(err(
                        "auth.name",
                        format!("{hname:?} is not a header name"),
                    )));
                }
                check(resolve(value, value_file, "auth.value", base_dir, &err))
            }
        }
        match &mut self.signing {
            None => {}
            Some(SigningConfig::Hmac {
                secret,
                secret_file,
                header,
                ..
            }) => {
                if ureq::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    check(Err(err(
                        "signing.header",
                        format!("{header:?} is not a header name"),
                    )));
                }
                check(resolve(
                    secret,
                    secret_file,
                    "signing.secret",
                    base_dir,
                    &err,
                ))
            }
            Some(SigningConfig::StandardWebhooks {
                secret,
                secret_file,
                previous_secret,
                previous_secret_file,
            }) => {
                check(
                    resolve(secret, secret_file, "signing.secret", base_dir, &err)
                        .and_then(|()| check_whsec(secret.as_ref(), "signing.secret", &err)),
                );
                if previous_secret.is_some() || previous_secret_file.is_some() {
                    check(
                        resolve(
                            previous_secret,
                            previous_secret_file,
                            "signing.previous_secret",
                            base_dir,
                            &err,
                        )
                        .and_then(|()| {
                            check_whsec(previous_secret.as_ref(), "signing.previous_secret", &err)
                        }),
                    );
                }
            }
        }
        match self.load_tls(base_dir, &err) {
            Ok(tls) => self.tls = tls,
            Err(e) => check(Err(e)),
        }
        if let Some(table) = &self.payload {
            match Template::compile(table) {
                Ok(t) => self.template = Some(t),
                Err(e) => check(Err(err(&format!("payload.{}", e.key), e.message))),
            }
        }
        errors
    }

    /// The TLS files this webhook names (see [`crate::tls_files`]).
    fn tls_files(&self) -> crate::tls_files::TlsFiles<'_> {
        crate::tls_files::TlsFiles {
            ca_file: self.ca_file.as_deref(),
            client_cert_file: self.client_cert_file.as_deref(),
            client_key_file: self.client_key_file.as_deref(),
        }
    }

    /// Reads `ca_file`, `client_cert_file` and `client_key_file` and checks them
    /// ([`crate::tls_files::load`]), in the types ureq takes.
    fn load_tls(
        &self,
        base_dir: &Path,
        err: &dyn Fn(&str, String) -> WebhookConfigError,
    ) -> Result<TlsMaterial, WebhookConfigError> {
        let files = self.tls_files();
        let https = self.url.to_ascii_lowercase().starts_with("https://");
        for (key, set) in files.set() {
            if set && !https {
                return Err(err(
                    key,
                    "is set but the URL is not https://: nothing would be encrypted".into(),
                ));
            }
        }
        let loaded = crate::tls_files::load(files, base_dir, err)?;
        let ureq_cert = |c: &rustls::pki_types::CertificateDer<'_>| {
            ureq::tls::Certificate::from_der(c.as_ref()).to_owned()
        };
        let client = match loaded.client {
            None => None,
            Some(id) => {
                let chain: Vec<_> = id.chain.iter().map(ureq_cert).collect();
                // The same PEM rustls read the key from; its bytes never reach a message.
                let key = ureq::tls::PrivateKey::from_pem(&id.key_pem).map_err(|_| {
                    err(
                        "client_key_file",
                        "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it".into(),
                    )
                })?;
                Some(ureq::tls::ClientCert::new_with_certs(&chain, key))
            }
        };
        Ok(TlsMaterial {
            extra_roots: loaded.extra_roots.iter().map(ureq_cert).collect(),
            client,
        })
    }

    /// The URL for listings and logs, without user, password, query values or fragment.
    pub fn display_url(&self) -> String {
        crate::secret::redact_url(&self.url)
    }

    /// True when this record goes to this webhook: its kind is in `events`, and its device in
    /// `devices` (a `gateway.status` concerns no device and goes to every webhook that asks for
    /// it).
    pub fn accepts(&self, t: &crate::telemetry::Telemetry) -> bool {
        self.accepts_from(t.kind, &t.sensor.id)
    }

    /// [`Self::accepts`] of a record of `kind` from the sender ID `device`.
    pub fn accepts_from(&self, kind: crate::telemetry::Kind, device: &str) -> bool {
        self.filter.accepts(kind.as_str())
            && (kind == crate::telemetry::Kind::GatewayStatus || self.routes(device))
    }

    /// True when telemetry from this sender ID goes to this webhook.
    pub fn routes(&self, device: &str) -> bool {
        match &self.devices {
            None => true,
            Some(list) => list.iter().any(|d| d.eq_ignore_ascii_case(device)),
        }
    }

    /// True when deliveries carry a Standard Webhooks timestamp (held until the clock is set).
    pub fn needs_clock(&self) -> bool {
        matches!(self.signing, Some(SigningConfig::StandardWebhooks { .. }))
    }
}

/// A bare file name (`token_file = "webhook-token"`) names a systemd credential when the service
/// has one of that name: `$CREDENTIALS_DIRECTORY/NAME`, or `enocean-agent_NAME` as
/// `LoadCredential=enocean-agent:DIR` names the files of a directory.
pub(crate) fn credential(name: &Path) -> Option<PathBuf> {
    if name.is_absolute() || name.components().count() != 1 {
        return None;
    }
    let dir = PathBuf::from(std::env::var_os("CREDENTIALS_DIRECTORY")?);
    let mut prefixed = std::ffi::OsString::from("enocean-agent_");
    prefixed.push(name.as_os_str());
    [dir.join(name), dir.join(prefixed)]
        .into_iter()
        .find(|p| p.is_file())
}

/// Fills an inline secret from its `*_file` (a systemd credential when the name is bare); every
/// error names the key and never the value.
pub(crate) fn resolve(
    inline: &mut Option<Secret>,
    file: &Option<PathBuf>,
    key: &str,
    base_dir: &Path,
    err: &dyn Fn(&str, String) -> WebhookConfigError,
) -> Result<(), WebhookConfigError> {
    match (inline.is_some(), file) {
        (true, Some(_)) => Err(err(
            key,
            format!("set either `{key}` or `{key}_file`, not both"),
        )),
        (false, None) => Err(err(key, format!("missing: set `{key}` or `{key}_file`"))),
        (true, None)
            if inline
                .as_ref()
                .is_some_and(|s| s.expose().trim().is_empty()) =>
        {
            Err(err(
                key,
                format!("is empty: set the secret, or read it from a file with `{key}_file`"),
            ))
        }
        (true, None) => Ok(()),
        (false, Some(path)) => {
            let path = credential(path).unwrap_or_else(|| base_dir.join(path));
            let s = Secret::from_file(&path).map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    format!("; create it holding the secret (chmod 600), or set `{key}` inline")
                } else {
                    String::new()
                };
                err(
                    &format!("{key}_file"),
                    format!("cannot read {}: {e}{hint}", path.display()),
                )
            })?;
            if s.is_empty() {
                return Err(err(
                    &format!("{key}_file"),
                    format!("{} is empty", path.display()),
                ));
            }
            *inline = Some(s);
            Ok(())
        }
    }
}

fn check_whsec(
    s: Option<&Secret>,
    key: &str,
    err: &dyn Fn(&str, String) -> WebhookConfigError,
) -> Result<(), WebhookConfigError> {
    let Some(s) = s else { return Ok(()) };
    if super::sign::whsec_key(s).is_none() {
        return Err(err(
            key,
            "must be `whsec_` followed by base64 (the value is not shown)".into(),
        ));
    }
    Ok(())
}

/// The longest duration any setting accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

fn default_true() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(crate) fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_batch_max() -> usize {
    1
}
pub(crate) fn default_max_retries() -> u32 {
    2
}
pub(crate) fn default_backoff_base() -> Duration {
    Duration::from_secs(2)
}
pub(crate) fn default_backoff_max() -> Duration {
    Duration::from_secs(300)
}
pub(crate) fn default_jitter() -> f64 {
    0.2
}
fn default_retry_after_max() -> Duration {
    Duration::from_secs(3600)
}
pub(crate) fn default_deactivate_after() -> u32 {
    5
}
pub(crate) fn default_probe_base() -> Duration {
    Duration::from_secs(30)
}
pub(crate) fn default_probe_max() -> Duration {
    Duration::from_secs(180)
}
fn default_signature_header() -> String {
    "Signature".into()
}

use crate::duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_url_credentials_and_secrets() {
        let mut w = WebhookConfig::new("w", "https://u:pw-77@h.example/p?token=q-88");
        w.auth = AuthConfig::Bearer {
            token: Some(Secret::new("tok-99")),
            token_file: None,
        };
        let text = format!("{w:?}");
        for s in ["pw-77", "q-88", "tok-99"] {
            assert!(!text.contains(s), "{s} in {text}");
        }
        assert!(text.contains("h.example/p?token=***"), "{text}");
    }

    #[test]
    fn probe_schedule_defaults_and_checks() {
        let dir = Path::new(".");
        let mut w = WebhookConfig::new("w", "http://127.0.0.1/hook");
        assert_eq!(
            (w.probe_base, w.probe_max),
            (Duration::from_secs(30), Duration::from_secs(180))
        );
        assert!(w.validate(dir).is_ok());
        w.probe_max = Duration::from_secs(10);
        let e = w.validate(dir).unwrap_err();
        assert_eq!(e.key, "probe_max");
        w.probe_max = Duration::from_secs(60);
        w.probe_base = Duration::ZERO;
        assert_eq!(w.validate(dir).unwrap_err().key, "probe_base");
        let parsed: WebhookConfig = toml::from_str(
            "name = \"w\"\nurl = \"http://127.0.0.1/\"\nprobe_base = \"5s\"\nprobe_max = \"1m\"\n",
        )
        .unwrap();
        assert_eq!(
            (parsed.probe_base, parsed.probe_max),
            (Duration::from_secs(5), Duration::from_secs(60))
        );
    }
}
