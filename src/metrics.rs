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
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: default_listen(),
            textfile: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}
