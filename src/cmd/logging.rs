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
    let _ = b.try_init();
}
