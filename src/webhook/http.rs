//! One HTTP attempt with blocking ureq (rustls with ring): POST the body with its headers,
//! classify the result. Redirects are never followed; 4xx/5xx are responses, not errors.
//!
//! TLS trusts the roots of [`crate::tls_roots`] (Mozilla's when built in, the operating system's
//! store) and the webhook's `ca_file`;
//! a client certificate is presented when the webhook has one. A handshake that fails is an
//! endpoint failure with a class that says why (`tls_unknown_ca`, `tls_client_cert_refused`, …).

use std::io;
use std::time::{Duration, Instant};

use super::config::WebhookConfig;

/// How much of a response body the delivery log keeps.
pub const RESPONSE_PREFIX_MAX: usize = 2048;

/// What one attempt came to (shared with every output; see [`crate::delivery`]).
pub use crate::delivery::Outcome;

/// The result of one attempt.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// Classification.
    pub outcome: Outcome,
    /// HTTP status when a response arrived.
    pub status: Option<u16>,
    /// Error class when no (acceptable) response arrived: `timeout`, `connection_refused`,
    /// `dns`, `no_route`, `tls_*` (see [`tls_class`]), `protocol`, `redirect`, `io`,
    /// `http_<status>`.
    pub error: Option<String>,
    /// Time from sending to the end of the response.
    pub latency: Duration,
    /// The first 2 KiB of the response body (lossy UTF-8).
    pub response: String,
    /// `Retry-After` on 429/503, capped by the configuration.
    pub retry_after: Option<Duration>,
}

/// The TLS settings of one webhook: built-in, OS and `ca_file` roots, its client certificate.
pub fn tls_config(cfg: &WebhookConfig) -> ureq::tls::TlsConfig {
    let mut roots: Vec<ureq::tls::Certificate<'static>> = crate::tls_roots::system()
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()))
        .collect();
    roots.extend(cfg.tls.extra_roots.iter().cloned());
    ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::from(roots))
        .client_cert(cfg.tls.client.clone())
        .build()
}

/// Builds the agent for one webhook: its timeouts and TLS, no redirects, statuses as responses.
pub fn agent(cfg: &WebhookConfig) -> ureq::Agent {
    let mut builder = ureq::Agent::config_builder();
    if cfg.url.to_ascii_lowercase().starts_with("https://") {
        builder = builder.tls_config(tls_config(cfg));
    }
    let config = builder
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(cfg.timeout))
        .timeout_connect(Some(cfg.connect_timeout))
        .user_agent(concat!("enocean-agent/", env!("CARGO_PKG_VERSION")))
        .build();
    // A leaner TCP transport than ureq's (transport.rs); the resolver caches (a thread per POST
    // otherwise: see resolve.rs).
    ureq::Agent::with_parts(
        config,
        super::transport::connector(),
        super::resolve::CachedResolver::default(),
    )
}

/// Sends one POST and classifies it. Never panics; secrets stay in the headers.
pub fn post(
    agent: &ureq::Agent,
    cfg: &WebhookConfig,
    headers: &[(String, String)],
    body: &[u8],
) -> AttemptResult {
    let start = Instant::now();
    let mut req = agent
        .post(&cfg.url)
        .header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    match req.send(body) {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after = if status == 429 || status == 503 {
                resp.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
                    .map(|d| d.min(cfg.retry_after_max))
            } else {
                None
            };
            let response = read_prefix(&mut resp);
            let latency = start.elapsed();
            let (outcome, error) = match status {
                200..=299 => (Outcome::Delivered, None),
                300..=399 => (Outcome::Failed, Some("redirect".to_owned())),
                s => (classify_status(s), Some(format!("http_{s}"))),
            };
            AttemptResult {
                outcome,
                status: Some(status),
                error,
                latency,
                response,
                retry_after,
            }
        }
        Err(e) => {
            let (outcome, class) = classify(&e);
            AttemptResult {
                outcome,
                status: None,
                error: Some(class.to_owned()),
                latency: start.elapsed(),
                response: String::new(),
                retry_after: None,
            }
        }
    }
}

/// The class of a non-2xx, non-3xx status: 410 is Gone; 408 (request timeout), 425 (too early)
/// and 429 (too many requests) say "not now" and are retried like 5xx; any other 4xx refuses the
/// body.
pub fn classify_status(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        410 => Outcome::Gone,
        408 | 425 | 429 => Outcome::Failed,
        400..=499 => Outcome::Rejected,
        _ => Outcome::Failed,
    }
}

fn read_prefix(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    use std::io::Read;
    let mut buf = Vec::with_capacity(256);
    let reader = resp.body_mut().as_reader();
    let _ = reader
        .take(RESPONSE_PREFIX_MAX as u64)
        .read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Error class of a transport error and whether it means the gateway is offline.
fn classify(e: &ureq::Error) -> (Outcome, &'static str) {
    match e {
        ureq::Error::HostNotFound => (Outcome::Offline, "dns"),
        ureq::Error::Timeout(ureq::Timeout::Resolve) => (Outcome::Offline, "dns"),
        ureq::Error::Timeout(_) => (Outcome::Failed, "timeout"),
        ureq::Error::Io(io) => classify_io(io),
        ureq::Error::Tls(_) => (Outcome::Failed, "tls"),
        ureq::Error::Rustls(e) => (Outcome::Failed, tls_class(e)),
        ureq::Error::Protocol(_) => (Outcome::Failed, "protocol"),
        ureq::Error::RedirectFailed | ureq::Error::TooManyRedirects => {
            (Outcome::Failed, "redirect")
        }
        ureq::Error::ConnectionFailed => (Outcome::Failed, "connection_failed"),
        _ => (Outcome::Failed, "other"),
    }
}

fn classify_io(e: &io::Error) -> (Outcome, &'static str) {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return (Outcome::Failed, tls_class(tls));
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => (Outcome::Failed, "connection_refused"),
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
            (Outcome::Offline, "no_route")
        }
        io::ErrorKind::NetworkDown => (Outcome::Offline, "network_down"),
        // std reports a failed getaddrinfo as an uncategorised error with this text.
        _ if e.to_string().contains("lookup address") => (Outcome::Offline, "dns"),
        io::ErrorKind::TimedOut => (Outcome::Failed, "timeout"),
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => (Outcome::Failed, "connection_reset"),
        _ => (Outcome::Failed, "io"),
    }
}

/// The error class of a failed TLS handshake or session, as the delivery log shows it:
/// - `tls_unknown_ca`: the server's certificate is not signed by a trusted CA (set `ca_file`);
/// - `tls_wrong_name`: the certificate is not for the URL's host;
/// - `tls_cert_expired` / `tls_cert_not_yet_valid`: outside its validity (a clock that is not
///   set yet shows as the second);
/// - `tls_bad_certificate`: any other problem with the server's certificate;
/// - `tls_client_cert_refused`: the server wants a client certificate that it did not get or
///   does not accept (`client_cert_file`);
/// - `tls_refused`: the server ended the handshake with another alert;
/// - `tls`: anything else.
pub fn tls_class(e: &rustls::Error) -> &'static str {
    use rustls::{AlertDescription as A, CertificateError as C};
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "tls_unknown_ca",
            C::NotValidForName | C::NotValidForNameContext { .. } => "tls_wrong_name",
            C::Expired | C::ExpiredContext { .. } => "tls_cert_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "tls_cert_not_yet_valid",
            _ => "tls_bad_certificate",
        },
        rustls::Error::AlertReceived(a) => match a {
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::AccessDenied => "tls_client_cert_refused",
            _ => "tls_refused",
        },
        _ => "tls",
    }
}

/// Parses `Retry-After`: delay seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let d = when.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(d).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        for (s, o) in [
            (200, Outcome::Delivered),
            (204, Outcome::Delivered),
            (400, Outcome::Rejected),
            (401, Outcome::Rejected),
            (404, Outcome::Rejected),
            (422, Outcome::Rejected),
            (408, Outcome::Failed),
            (425, Outcome::Failed),
            (429, Outcome::Failed),
            (410, Outcome::Gone),
            (500, Outcome::Failed),
            (503, Outcome::Failed),
            (599, Outcome::Failed),
        ] {
            assert_eq!(classify_status(s), o, "{s}");
        }
    }

    #[test]
    fn tls_failures_say_why() {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        for (e, class) in [
            (E::InvalidCertificate(C::UnknownIssuer), "tls_unknown_ca"),
            (E::InvalidCertificate(C::NotValidForName), "tls_wrong_name"),
            (E::InvalidCertificate(C::Expired), "tls_cert_expired"),
            (
                E::InvalidCertificate(C::NotValidYet),
                "tls_cert_not_yet_valid",
            ),
            (
                E::InvalidCertificate(C::BadSignature),
                "tls_bad_certificate",
            ),
            (
                E::AlertReceived(A::CertificateRequired),
                "tls_client_cert_refused",
            ),
            (E::AlertReceived(A::UnknownCA), "tls_client_cert_refused"),
            (E::AlertReceived(A::HandshakeFailure), "tls_refused"),
            (E::DecryptError, "tls"),
        ] {
            assert_eq!(tls_class(&e), class, "{e:?}");
            let io = io::Error::new(io::ErrorKind::InvalidData, e);
            assert_eq!(classify_io(&io), (Outcome::Failed, class));
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
