//! TLS to the broker: rustls with the ring provider only (no aws-lc, so ARM cross builds need no
//! cmake or clang). Trusted roots are those of [`crate::tls_roots`] and
//! the output's `ca_file`; a client certificate is presented when `client_cert_file` is set. The
//! files are read and checked when the configuration loads, like a webhook's.

use std::path::Path;
use std::sync::Arc;

use super::config::MqttConfig;
use crate::tls_files::{TlsFiles, load};
use crate::webhook::config::WebhookConfigError;

/// The TLS files this output names (see [`crate::tls_files`]).
pub(crate) fn files(cfg: &MqttConfig) -> TlsFiles<'_> {
    TlsFiles {
        ca_file: cfg.ca_file.as_deref(),
        client_cert_file: cfg.client_cert_file.as_deref(),
        client_key_file: cfg.client_key_file.as_deref(),
    }
}

/// The rustls client settings of an `mqtts://` output.
pub fn client_config(
    cfg: &MqttConfig,
    base_dir: &Path,
    err: &dyn Fn(&str, String) -> WebhookConfigError,
) -> Result<rustls::ClientConfig, WebhookConfigError> {
    let loaded = load(files(cfg), base_dir, err)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(crate::tls_roots::system().iter().cloned());
    // `load` checked that every one of them is a usable root.
    roots.add_parsable_certificates(loaded.extra_roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("url", format!("TLS: {e}")))?
        .with_root_certificates(roots);
    match loaded.client {
        None => Ok(builder.with_no_client_auth()),
        // `load` checked the pair the way rustls does here.
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| err("client_key_file", format!("not a usable key pair: {e}"))),
    }
}
