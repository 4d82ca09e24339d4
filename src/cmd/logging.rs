//! Logging setup: `log` + `env_logger` to stderr; `RUST_LOG` wins over `[log] level`; under
//! systemd (`JOURNAL_STREAM` set) lines carry `<N>` priority prefixes instead of timestamps.

use std::io::Write;

use log::{Level, LevelFilter};

/// Starts logging at `level` (default `info`) unless `RUST_LOG` says otherwise.
pub fn init(level: Option<&str>) {
    let mut b = env_logger::Builder::new();
    b.filter_level(
        level
            .and_then(|l| l.parse::<LevelFilter>().ok())
            .unwrap_or(LevelFilter::Info),
    );
    if let Ok(filters) = std::env::var("RUST_LOG") {
        b.parse_filters(&filters);
    }
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.format(|buf, rec| {
            let prio = match rec.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            writeln!(buf, "<{prio}>{}: {}", rec.target(), rec.args())
        });
    }
    let inner = b.build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Guarded(inner))).is_ok() {
        log::set_max_level(max);
    }
}

/// Targets that print request lines, headers or hex dumps of the bytes sent at debug and trace
/// level (URLs with query tokens, `authorization` headers, signatures): held at info whatever
/// `RUST_LOG` or `[log] level` say, so no level makes the agent log a credential.
const CHATTY_TARGETS: &[&str] = &["ureq", "ureq_proto", "rustls", "tiny_http"];

/// The env_logger with [`CHATTY_TARGETS`] capped at info.
struct Guarded(env_logger::Logger);

impl Guarded {
    fn allowed(meta: &log::Metadata<'_>) -> bool {
        meta.level() <= Level::Info
            || !CHATTY_TARGETS.iter().any(|t| {
                meta.target()
                    .strip_prefix(t)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
    }
}

impl log::Log for Guarded {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        Self::allowed(meta) && self.0.enabled(meta)
    }

    fn log(&self, record: &log::Record<'_>) {
        if Self::allowed(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}
