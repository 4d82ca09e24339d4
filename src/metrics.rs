//! Metrics for the tools a fleet already runs: an optional Prometheus text endpoint (off by
//! default; bound to 127.0.0.1 by default; a small HTTP server on its own thread) and the
//! node-exporter textfile format (a file rewritten atomically). Both show the same figures as
//! `gateway.status`: counters since start, backlog, per-webhook state and oldest undelivered age.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (Prometheus text format). Default off.
    #[serde(default)]
    pub enabled: bool,
    /// Address of the endpoint; default `127.0.0.1:9464` (this machine only: put a reverse
    /// proxy or an SSH tunnel in front to reach it from elsewhere).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Also write the figures to this file in the node-exporter textfile format (e.g.
    /// `/var/lib/prometheus/node-exporter/enocean_agent.prom`), rewritten atomically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textfile: Option<PathBuf>,
    /// The per-webhook figures read the outbox database (counting what waits scans it): they
    /// are recomputed at most this often (default 30 s); counters are always current.
    #[serde(default = "default_webhook_figures_every", with = "crate::duration")]
    pub webhook_figures_every: std::time::Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: default_listen(),
            textfile: None,
            webhook_figures_every: default_webhook_figures_every(),
        }
    }
}

fn default_webhook_figures_every() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}

/// What the reader publishes for the metrics thread (once per main-loop tick).
#[derive(Debug, Default)]
pub struct Live {
    /// Counters since start (`dropped` holds the hand-off losses; the outbox's own are added
    /// when rendering).
    pub counters: std::sync::Mutex<crate::health::Counters>,
    /// The stick.
    pub stick: std::sync::Mutex<crate::health::StickFacts>,
}

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("metrics: cannot listen on {addr}: {message}")]
    Bind {
        /// The configured address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The thread could not be started.
    #[error("metrics: starting the thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The figures one rendering shows.
pub struct Snapshot<'a> {
    /// Gateway name.
    pub gateway: &'a str,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Reader counters.
    pub counters: crate::health::Counters,
    /// The stick.
    pub stick: crate::health::StickFacts,
    /// Storage writer figures.
    pub storage: &'a crate::storage::Figures,
    /// Per-webhook health (None when the database could not be read).
    pub webhooks: Option<&'a [crate::webhook::health::WebhookHealth]>,
    /// Free bytes on the outbox's file system.
    pub disk_free_bytes: Option<u64>,
    /// Now, unix ms (for ages).
    pub now_ms: i64,
}

/// A label value as the exposition format writes it (backslash, quote and newline escaped).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the Prometheus text exposition format (version 0.0.4), which is also the
/// node-exporter textfile format.
pub fn render(s: &Snapshot<'_>) -> String {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering;
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP enocean_agent_{name} {help}");
        let _ = writeln!(out, "# TYPE enocean_agent_{name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "enocean_agent_{name}{labels} {v}");
        }
    };
    let info = format!(
        "{{version=\"{}\",gateway=\"{}\",base_id=\"{}\",firmware=\"{}\"}}",
        label(env!("CARGO_PKG_VERSION")),
        label(s.gateway),
        label(s.stick.base_id.as_deref().unwrap_or("")),
        label(s.stick.firmware.as_deref().unwrap_or(""))
    );
    metric(
        "info",
        "gauge",
        "Agent version, gateway name, stick base ID and firmware.",
        &[(info, 1.0)],
    );
    let one = |v: u64| vec![(String::new(), v as f64)];
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
        &one(s.uptime_s),
    );
    metric(
        "stick_connected",
        "gauge",
        "1 while the stick's port is open.",
        &one(u64::from(s.stick.connected)),
    );
    let c = &s.counters;
    for (name, v, help) in [
        (
            "telegrams_total",
            c.telegrams,
            "Telegrams received (repeated copies removed).",
        ),
        (
            "decoded_total",
            c.decoded,
            "Telegrams decoded with a known EEP.",
        ),
        (
            "raw_total",
            c.raw,
            "Telegrams forwarded raw (unknown sender or EEP, undecodable).",
        ),
        ("teach_ins_total", c.teach_ins, "Teach-in telegrams seen."),
        (
            "duplicates_total",
            c.duplicates,
            "Repeated copies dropped by deduplication.",
        ),
        (
            "crc_errors_total",
            c.crc_errors,
            "Frames rejected for a header or data CRC mismatch.",
        ),
        (
            "connects_total",
            c.connects,
            "Times the stick was (re)connected.",
        ),
        (
            "secure_verified_total",
            c.secure_verified,
            "Secure telegrams verified (CMAC, rolling code) and decrypted.",
        ),
        (
            "secure_rejected_total",
            c.secure_rejected,
            "Secure telegrams forwarded raw: unknown key, bad CMAC, replay, …",
        ),
        (
            "committed_total",
            s.storage.committed.load(Ordering::Relaxed),
            "Records committed to the outbox.",
        ),
        (
            "outbox_flushes_total",
            s.storage.flushes.load(Ordering::Relaxed),
            "Flushes (fsync) of committed readings that an output had not delivered within a commit window.",
        ),
        (
            "outbox_flushes_skipped_total",
            s.storage.flushes_skipped.load(Ordering::Relaxed),
            "Commit windows whose readings every output had delivered: no flush of the SD card needed.",
        ),
        (
            "dropped_total",
            c.dropped,
            "Records lost: the hand-off to storage was full, or the outbox's overflow policy dropped them.",
        ),
    ] {
        metric(name, "counter", help, &one(v));
    }
    metric(
        "backlog",
        "gauge",
        "Committed readings not yet handed to the slowest webhook (upper bound).",
        &one(s.storage.backlog.load(Ordering::Relaxed)),
    );
    metric(
        "storage_failing",
        "gauge",
        "1 while commits fail (a full disk or a failing card).",
        &one(u64::from(s.storage.failing.load(Ordering::Relaxed))),
    );
    if let Some(free) = s.disk_free_bytes {
        metric(
            "disk_free_bytes",
            "gauge",
            "Free bytes on the outbox's file system.",
            &one(free),
        );
    }
    if let Some(list) = s.webhooks {
        let per = |f: &dyn Fn(&crate::webhook::health::WebhookHealth) -> Option<f64>| {
            list.iter()
                .filter_map(|h| Some((format!("{{webhook=\"{}\"}}", label(&h.name)), f(h)?)))
                .collect::<Vec<_>>()
        };
        let states: Vec<(String, f64)> = list
            .iter()
            .map(|h| {
                (
                    format!(
                        "{{webhook=\"{}\",state=\"{}\"}}",
                        label(&h.name),
                        h.state.as_str()
                    ),
                    1.0,
                )
            })
            .collect();
        metric(
            "webhook_state",
            "gauge",
            "The webhook's state (active, retrying, offline, deactivated-probing, disabled, gone, off-config, new) as a label; always 1.",
            &states,
        );
        metric(
            "webhook_backlog",
            "gauge",
            "Readings waiting for the webhook, plus deliveries waiting for a retry or probe.",
            &per(&|h| Some(h.backlog as f64)),
        );
        metric(
            "webhook_failed",
            "gauge",
            "Failed deliveries kept for a manual resend.",
            &per(&|h| Some(h.failed as f64)),
        );
        metric(
            "webhook_consecutive_failures",
            "gauge",
            "Failed deliveries in a row.",
            &per(&|h| Some(f64::from(h.consecutive_failures))),
        );
        metric(
            "webhook_oldest_undelivered_age_seconds",
            "gauge",
            "Age of the oldest reading not delivered to the webhook yet (absent when none waits).",
            &per(&|h| {
                h.oldest_undelivered_ms
                    .map(|ms| (s.now_ms.saturating_sub(ms).max(0) / 1000) as f64)
            }),
        );
    }
    out
}

/// The metrics thread: serves `GET /metrics` when enabled and rewrites the textfile every
/// `every`. Stopped (and joined) when dropped.
pub struct MetricsServer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    server: Option<std::sync::Arc<tiny_http::Server>>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: Option<std::net::SocketAddr>,
}

/// What the metrics thread reads.
pub struct Sources {
    /// The configuration (gateway name, webhooks, outbox path).
    pub config: crate::config::Config,
    /// The reader's figures.
    pub live: std::sync::Arc<Live>,
    /// The storage writer's figures.
    pub storage: std::sync::Arc<crate::storage::Figures>,
    /// When the agent started.
    pub started: std::time::Instant,
}

impl MetricsServer {
    /// Starts the thread when `[metrics]` asks for the endpoint or the textfile; None when it
    /// asks for neither.
    pub fn start(
        cfg: &MetricsConfig,
        sources: Sources,
        every: std::time::Duration,
    ) -> Result<Option<Self>, MetricsError> {
        if !cfg.enabled && cfg.textfile.is_none() {
            return Ok(None);
        }
        let server = if cfg.enabled {
            let s = tiny_http::Server::http(&cfg.listen).map_err(|e| MetricsError::Bind {
                addr: cfg.listen.clone(),
                message: e.to_string(),
            })?;
            Some(std::sync::Arc::new(s))
        } else {
            None
        };
        let addr = server.as_ref().and_then(|s| s.server_addr().to_ip());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let textfile = cfg.textfile.clone();
        let (srv, flag) = (server.clone(), stop.clone());
        let figures_every = cfg.webhook_figures_every;
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(srv, textfile, sources, flag, every, figures_every))?;
        Ok(Some(Self {
            stop,
            server,
            thread: Some(thread),
            addr,
        }))
    }

    /// The address the endpoint listens on (with the port chosen for `:0`).
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(s) = &self.server {
            s.unblock();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    server: Option<std::sync::Arc<tiny_http::Server>>,
    textfile: Option<PathBuf>,
    src: Sources,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    every: std::time::Duration,
    figures_every: std::time::Duration,
) {
    use std::sync::atomic::Ordering;
    let db = src.config.storage.path.clone();
    let mut store = None;
    let mut last_file: Option<std::time::Instant> = None;
    type Cached = (
        Option<std::time::Instant>,
        Option<Vec<crate::webhook::health::WebhookHealth>>,
    );
    let mut cached: Cached = (None, None);
    let mut text = |store: &mut Option<crate::outbox::Store>| {
        if store.is_none() {
            match crate::outbox::Store::open(&db) {
                Ok(s) => *store = Some(s),
                Err(e) => log::debug!("metrics: outbox: {e}"),
            }
        }
        if cached.0.is_none_or(|t| t.elapsed() >= figures_every)
            && let Some(s) = store.as_ref()
        {
            cached.0 = Some(std::time::Instant::now());
            match crate::mqtt::outputs_health(s, &src.config.webhooks, &src.config.mqtt, &db) {
                Ok(list) => cached.1 = Some(list),
                Err(e) => log::debug!("metrics: webhook figures: {e}"),
            }
        }
        let webhooks = cached.1.clone();
        let mut counters = *src.live.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters.dropped += src.storage.dropped.load(Ordering::Relaxed);
        let stick = src
            .live
            .stick
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        render(&Snapshot {
            gateway: &src.config.gateway.id,
            uptime_s: src.started.elapsed().as_secs(),
            counters,
            stick,
            storage: &src.storage,
            webhooks: webhooks.as_deref(),
            disk_free_bytes: crate::health::disk_free(&db),
            now_ms: jiff::Timestamp::now().as_millisecond(),
        })
    };
    while !stop.load(Ordering::SeqCst) {
        if let Some(path) = &textfile
            && last_file.is_none_or(|t| t.elapsed() >= every)
        {
            last_file = Some(std::time::Instant::now());
            write_textfile(path, &text(&mut store));
        }
        let wait = std::time::Duration::from_millis(500).min(every);
        let Some(server) = &server else {
            std::thread::sleep(wait);
            continue;
        };
        match server.recv_timeout(wait) {
            Ok(Some(req)) => {
                let ok = matches!(req.method(), tiny_http::Method::Get)
                    && req.url().split('?').next() == Some("/metrics");
                let resp = if ok {
                    tiny_http::Response::from_string(text(&mut store)).with_header(
                        tiny_http::Header::from_bytes(
                            "Content-Type",
                            "text/plain; version=0.0.4; charset=utf-8",
                        )
                        .expect("a valid header"),
                    )
                } else {
                    tiny_http::Response::from_string("only GET /metrics is served here\n")
                        .with_status_code(404)
                };
                let _ = req.respond(resp);
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!("metrics: {e}; the endpoint stops");
                break;
            }
        }
    }
    if let Some(path) = &textfile {
        write_textfile(path, &text(&mut store));
    }
}

/// Writes the textfile atomically (a temporary file in the same directory, renamed over it), so
/// node-exporter never reads half a file.
fn write_textfile(path: &std::path::Path, text: &str) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
        log::warn!("metrics: cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of a gateway called `gateway` with these counters (and nothing else to say).
    fn rendered(gateway: &str, counters: crate::health::Counters) -> String {
        let figures = crate::storage::Figures::default();
        render(&Snapshot {
            gateway,
            uptime_s: 5,
            counters,
            stick: crate::health::StickFacts::default(),
            storage: &figures,
            webhooks: None,
            disk_free_bytes: Some(10),
            now_ms: 0,
        })
    }

    #[test]
    fn labels_are_escaped_and_every_sample_has_a_type() {
        let text = rendered("lobby \"pi\"\\2", crate::health::Counters::default());
        assert!(text.contains(r#"gateway="lobby \"pi\"\\2""#), "{text}");
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(typed.contains(&name), "{name} has no TYPE line");
        }
    }

    #[test]
    fn secure_telegrams_are_counted_apart() {
        let text = rendered(
            "g",
            crate::health::Counters {
                secure_verified: 2,
                secure_rejected: 4,
                ..Default::default()
            },
        );
        let sample = |name: &str| {
            text.lines()
                .find(|l| l.split(['{', ' ']).next() == Some(name))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(
            sample("enocean_agent_secure_verified_total").as_deref(),
            Some("2"),
            "{text}"
        );
        assert_eq!(
            sample("enocean_agent_secure_rejected_total").as_deref(),
            Some("4"),
            "{text}"
        );
    }
}
