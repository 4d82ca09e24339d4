//! The TLS files an output names — `ca_file`, `client_cert_file`, `client_key_file` — read and
//! checked when the configuration loads, for a webhook and an MQTT output alike: every CA in
//! `ca_file` usable as a root, the certificate and key given together, and the key the first
//! certificate's own (a mismatch would otherwise only show at the first handshake). Errors name
//! the key and the file, never a key's bytes.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::webhook::config::WebhookConfigError;

/// How a caller makes its error for a configuration key (with the output's name and place).
pub(crate) type ErrorFor<'a> = &'a dyn Fn(&str, String) -> WebhookConfigError;

/// The three settings as the configuration gives them (relative paths against its directory; a
/// bare key name may be a systemd credential).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsFiles<'a> {
    pub ca_file: Option<&'a Path>,
    pub client_cert_file: Option<&'a Path>,
    pub client_key_file: Option<&'a Path>,
}

impl TlsFiles<'_> {
    /// Which of the three are set, by key (for "is set but the URL is not …" checks).
    pub(crate) fn set(&self) -> [(&'static str, bool); 3] {
        [
            ("ca_file", self.ca_file.is_some()),
            ("client_cert_file", self.client_cert_file.is_some()),
            ("client_key_file", self.client_key_file.is_some()),
        ]
    }
}

/// What the files hold.
#[derive(Debug, Default)]
pub(crate) struct TlsMaterial {
    /// The certificates of `ca_file`, to be trusted besides the usual roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The client's certificate chain and its key, for mutual TLS.
    pub client: Option<ClientIdentity>,
}

/// A client certificate chain (leaf first) and the leaf's key.
#[derive(Debug)]
pub(crate) struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The key file's PEM as read (ureq takes a key as PEM or with a kind it does not export).
    pub key_pem: Vec<u8>,
}

fn read(path: &Path, key: &str, err: ErrorFor<'_>) -> Result<Vec<u8>, WebhookConfigError> {
    std::fs::read(path).map_err(|e| err(key, format!("cannot read {}: {e}", path.display())))
}

fn certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// Reads and checks the files `files` names.
pub(crate) fn load(
    files: TlsFiles<'_>,
    base_dir: &Path,
    err: ErrorFor<'_>,
) -> Result<TlsMaterial, WebhookConfigError> {
    let mut tls = TlsMaterial::default();
    if let Some(path) = files.ca_file {
        let path = base_dir.join(path);
        tls.extra_roots = certs(&read(&path, "ca_file", err)?);
        if tls.extra_roots.is_empty() {
            return Err(err(
                "ca_file",
                format!("{}: no PEM certificate in it", path.display()),
            ));
        }
        let mut store = rustls::RootCertStore::empty();
        for c in &tls.extra_roots {
            store.add(c.clone()).map_err(|e| {
                err(
                    "ca_file",
                    format!("{}: a certificate is not a usable CA: {e}", path.display()),
                )
            })?;
        }
    }
    match (files.client_cert_file, files.client_key_file) {
        (None, None) => {}
        (Some(_), None) => {
            return Err(err(
                "client_key_file",
                "missing: `client_cert_file` needs its key".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                "client_cert_file",
                "missing: `client_key_file` needs its certificate".into(),
            ));
        }
        (Some(cert), Some(key)) => {
            let cert_path = base_dir.join(cert);
            let chain = certs(&read(&cert_path, "client_cert_file", err)?);
            if chain.is_empty() {
                return Err(err(
                    "client_cert_file",
                    format!("{}: no PEM certificate in it", cert_path.display()),
                ));
            }
            let key_path: PathBuf =
                crate::webhook::config::credential(key).unwrap_or_else(|| base_dir.join(key));
            let pem = read(&key_path, "client_key_file", err)?;
            let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
                err(
                    "client_key_file",
                    format!(
                        "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
                        key_path.display()
                    ),
                )
            })?;
            check_key_pair(&chain, &private).map_err(|m| {
                err(
                    "client_key_file",
                    format!("{} with {}: {m}", key_path.display(), cert_path.display()),
                )
            })?;
            tls.client = Some(ClientIdentity {
                chain,
                key: private,
                key_pem: pem,
            });
        }
    }
    Ok(tls)
}

/// Checks with rustls (ring) that `key` is usable and belongs to the first certificate of
/// `chain`, as the TLS client will when it first connects.
fn check_key_pair(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'_>,
) -> Result<(), String> {
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &provider) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err("the key does not belong to the (first) certificate".into())
        }
        Err(e) => Err(format!("not a usable key pair: {e}")),
    }
}
