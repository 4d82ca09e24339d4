//! The roots every TLS connection (webhooks, MQTT brokers) trusts before an output's own
//! `ca_file`: Mozilla's set built into the binary (the default `bundled-roots` feature) and the
//! operating system's store (`/etc/ssl/certs`, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
//!
//! A gateway build without `bundled-roots` (`--no-default-features`, about 170 kB smaller on
//! ARM) trusts the operating system's store only: on Raspberry Pi OS and Debian that is the
//! `ca-certificates` package.

use std::sync::OnceLock;

use rustls::pki_types::CertificateDer;

/// The built-in and operating-system roots, read once per process and kept for its lifetime
/// (built-in ones are borrowed from the binary, not copied).
pub fn system() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots: Vec<CertificateDer<'static>> = built_in().to_vec();
        let builtin = roots.len();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            log::warn!("tls: part of the operating system's certificate store: {e}");
        }
        let os = native.certs.len();
        roots.extend(native.certs);
        log::debug!("tls: {builtin} built-in roots, {os} from the operating system's store");
        if roots.is_empty() {
            log::warn!(
                "tls: no trusted roots: this build has none built in and the operating system's \
                 store is empty (install ca-certificates, or give the output a ca_file)"
            );
        }
        roots
    })
}

/// Mozilla's roots as built into this binary (none without the `bundled-roots` feature).
pub fn built_in() -> &'static [CertificateDer<'static>] {
    #[cfg(feature = "bundled-roots")]
    {
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
    }
    #[cfg(not(feature = "bundled-roots"))]
    {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_roots_follow_the_feature() {
        assert_eq!(
            built_in().is_empty(),
            !cfg!(feature = "bundled-roots"),
            "built-in roots present exactly when the bundled-roots feature is on"
        );
        // The system set always holds the built-in ones first.
        let all = system();
        assert!(all.len() >= built_in().len());
        assert!(all.iter().zip(built_in()).all(|(a, b)| a == b));
    }
}
