//! One HTTP attempt with blocking ureq (rustls only): POST the body with its headers, classify the
//! result. Redirects are never followed; 4xx/5xx are responses, not errors.

use std::io;
use std::time::{Duration, Instant};

use super::config::WebhookConfig;

/// How much of a response body the delivery log keeps.
pub const RESPONSE_PREFIX_MAX: usize = 2048;

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// The endpoint failed (5xx, 408, 425, 429, 3xx, refused, reset, timeout, TLS, protocol…):
    /// the delivery is retried.
    Failed,
    /// The endpoint refused this body (a 4xx other than 408, 410, 425 and 429): retrying the
    /// same bytes cannot help.
    Rejected,
    /// 410 Gone: the endpoint asks to stop; deactivate at once.
    Gone,
    /// The gateway has no network (DNS failure, no route): not the endpoint's fault.
    Offline,
}

impl Outcome {
    /// Short name stored in the delivery log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
            Outcome::Gone => "gone",
            Outcome::Offline => "offline",
        }
    }
}

/// The result of one attempt.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// Classification.
    pub outcome: Outcome,
    /// HTTP status when a response arrived.
    pub status: Option<u16>,
    /// Error class when no (acceptable) response arrived: `timeout`, `connection_refused`,
    /// `dns`, `no_route`, `tls`, `protocol`, `redirect`, `io`, `http_<status>`.
    pub error: Option<String>,
    /// Time from sending to the end of the response.
    pub latency: Duration,
    /// The first 2 KiB of the response body (lossy UTF-8).
    pub response: String,
    /// `Retry-After` on 429/503, capped by the configuration.
    pub retry_after: Option<Duration>,
}

/// Builds the agent for one webhook: its timeouts, no redirects, statuses as responses.
pub fn agent(cfg: &WebhookConfig) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(cfg.timeout))
        .timeout_connect(Some(cfg.connect_timeout))
        .user_agent(concat!("enocean-agent/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(config)
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
        ureq::Error::Protocol(_) => (Outcome::Failed, "protocol"),
        ureq::Error::RedirectFailed | ureq::Error::TooManyRedirects => {
            (Outcome::Failed, "redirect")
        }
        ureq::Error::ConnectionFailed => (Outcome::Failed, "connection_failed"),
        _ => (Outcome::Failed, "other"),
    }
}

fn classify_io(e: &io::Error) -> (Outcome, &'static str) {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => (Outcome::Failed, "connection_refused"),
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
            (Outcome::Offline, "no_route")
        }
        io::ErrorKind::NetworkDown => (Outcome::Offline, "network_down"),
        // std reports a failed getaddrinfo as an uncategorised error with this text.
        _ if e.to_string().contains("lookup address") => (Outcome::Offline, "dns"),
        io::ErrorKind::TimedOut => (Outcome::Failed, "timeout"),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            (Outcome::Failed, "connection_reset")
        }
        _ => (Outcome::Failed, "io"),
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
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
