//! TLS to the broker: rustls with the ring provider only (no aws-lc, so ARM cross builds need no
//! cmake or clang). Trusted roots are those of [`crate::tls_roots`] and
//! the output's `ca_file`; a client certificate is presented when `client_cert_file` is set. The
//! files are read and checked when the configuration loads, like a webhook's.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::config::MqttConfig;
use crate::webhook::config::WebhookConfigError;

fn read(
    path: &Path,
    key: &str,
    err: &dyn Fn(&str, String) -> WebhookConfigError,
) -> Result<Vec<u8>, WebhookConfigError> {
    std::fs::read(path).map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))
}

fn certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// The rustls client settings of an `mqtts://` output.
pub fn client_config(
    cfg: &MqttConfig,
    base_dir: &Path,
    err: &dyn Fn(&str, String) -> WebhookConfigError,
) -> Result<rustls::ClientConfig, WebhookConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(crate::tls_roots::system().iter().cloned());
    if let Some(path) = &cfg.ca_file {
        let path = base_dir.join(path);
        let extra = certs(&read(&path, "ca_file", err)?);
        if extra.is_empty() {
            return Err(err(
                "ca_file",
                format!("{}: no PEM certificate in it", path.display()),
            ));
        }
        for c in extra {
            roots.add(c).map_err(|e| {
                err(
                    "ca_file",
                    format!("{}: a certificate is not a usable CA: {e}", path.display()),
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("url", format!("TLS: {e}")))?
        .with_root_certificates(roots);
    match (&cfg.client_cert_file, &cfg.client_key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(err(
            "client_key_file",
            "missing: `client_cert_file` needs its key".into(),
        )),
        (None, Some(_)) => Err(err(
            "client_cert_file",
            "missing: `client_key_file` needs its certificate".into(),
        )),
        (Some(cert), Some(key)) => {
            let cert_path = base_dir.join(cert);
            let chain = certs(&read(&cert_path, "client_cert_file", err)?);
            if chain.is_empty() {
                return Err(err(
                    "client_cert_file",
                    format!("{}: no PEM certificate in it", cert_path.display()),
                ));
            }
            let key_path =
                crate::webhook::config::credential(key).unwrap_or_else(|| base_dir.join(key));
            let pem = read(&key_path, "client_key_file", err)?;
            // The key's bytes never reach a message: only the file and what is wrong.
            let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
                err(
                    "client_key_file",
                    format!(
                        "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
                        key_path.display()
                    ),
                )
            })?;
            builder.with_client_auth_cert(chain, private).map_err(|e| {
                let why = match e {
                    rustls::Error::InconsistentKeys(_) => {
                        "the key does not belong to the certificate".to_owned()
                    }
                    other => other.to_string(),
                };
                err(
                    "client_key_file",
                    format!("{} with {}: {why}", key_path.display(), cert_path.display()),
                )
            })
        }
    }
}
