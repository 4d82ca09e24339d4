//! The serial runtime: opens the USB 300 by path, reads and decodes its byte stream, performs the
//! start-up handshake and survives unplugging.
//!
//! [`run`] is what the daemon calls. It keeps the port open (57 600 baud 8N1, exclusive), feeds
//! every read to an [`esp3::Decoder`] and sends what comes out as
//! [`SerialEvent`]s over a tokio channel. After each (re)connect it asks the stick for its version
//! and base ID (CO_RD_VERSION, CO_RD_IDBASE) without ever pausing reception. Repeated copies of a
//! telegram are dropped by [`Dedup`]. When the stick disappears it retries
//! with a growing backoff and watches for the device path to come back.
//!
//! The agent never transmits radio telegrams: the two handshake commands are the only bytes
//! written to the stick.

mod handshake;
mod open;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_serial::SerialStream;

use crate::dedup::Dedup;
use crate::erp1::Telegram;
use crate::esp3::event::StickEvent;
use crate::esp3::{self, Counters, Decoder, Frame, GAP_TIMEOUT, Item, PacketType};

pub use handshake::StickInfo;
pub use open::{BAUD_RATE, OpenError, open};

/// How the runtime opens and watches the port. [`PortConfig::new`] gives the production values;
/// tests shorten the durations.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// Device path (`/dev/enocean`, `/dev/serial/by-id/…`, a pty or a symlink to one).
    pub path: PathBuf,
    /// First delay before reopening after a failed open or a lost connection (default 1 s);
    /// doubles on each further failure up to `backoff_max`. A connection that lasted at least
    /// `backoff_max`, or the device path disappearing, starts again from this value.
    pub backoff_initial: Duration,
    /// Longest delay between open attempts (default 30 s).
    pub backoff_max: Duration,
    /// While the device path does not exist, how often to look for it (default 250 ms), so
    /// reception resumes quickly when the stick is plugged back in.
    pub presence_poll: Duration,
    /// How long to wait for the stick's answer to a command (ESP3: 500 ms).
    pub response_timeout: Duration,
    /// Attempts per handshake command (default 3).
    pub handshake_attempts: u32,
    /// Window in which identical telegrams from one sender count as copies (default 2 s);
    /// `Duration::ZERO` delivers every copy.
    pub dedup_window: Duration,
    /// Return [`OpenError`] if the first open fails instead of waiting for the port (for
    /// interactive commands; the daemon waits).
    pub fail_on_first_open: bool,
}

impl PortConfig {
    /// Production settings for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            presence_poll: Duration::from_millis(250),
            response_timeout: Duration::from_millis(500),
            handshake_attempts: 3,
            dedup_window: Duration::from_secs(2),
            fail_on_first_open: false,
        }
    }
}

/// What the serial runtime reports to the rest of the agent, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum SerialEvent {
    /// The port was opened; reception has started (the handshake runs alongside).
    Connected {
        /// The configured path.
        path: PathBuf,
    },
    /// The handshake after a connect succeeded (fully or partly, see [`StickInfo`]).
    StickInfo(StickInfo),
    /// The stick answered neither handshake command; reception goes on regardless.
    HandshakeFailed {
        /// Why, for the log.
        reason: String,
    },
    /// A radio telegram (first copy only when deduplication is on).
    Telegram {
        /// The decoded RADIO_ERP1 telegram.
        telegram: Telegram,
        /// Wall-clock arrival time.
        received_at: jiff::Timestamp,
        /// Monotonic arrival time, for latency measurements.
        monotonic: std::time::Instant,
    },
    /// An EVENT packet from the stick (CO_READY, duty-cycle limit, …).
    StickEvent(StickEvent),
    /// Any other frame (an unsolicited RESPONSE, unknown packet types, a malformed ERP1).
    Frame(Frame),
    /// Something the decoder noticed: discarded bytes, CRC mismatches, gap timeouts.
    Decoder(esp3::Event),
    /// The port was lost (unplugged, read error); reconnecting follows.
    Disconnected {
        /// Why, for the log.
        reason: String,
    },
}

/// Totals of a whole [`run`], returned when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Successful opens.
    pub connects: u64,
    /// Decoder totals over all connections.
    pub decoder: Counters,
    /// Telegrams delivered.
    pub telegrams: u64,
    /// Copies dropped by deduplication.
    pub duplicates: u64,
}

/// Errors that end [`run`].
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// The first open failed and [`PortConfig::fail_on_first_open`] was set.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Why one connection ended.
enum End {
    Shutdown,
    ReceiverGone,
    Lost(String),
}

/// Runs the serial side until `shutdown` completes or `tx`'s receiver is dropped: open, read,
/// handshake, reconnect. Returns the totals. Only fails when `fail_on_first_open` is set and the
/// first open fails.
///
/// Events are sent with back-pressure: while the channel is full, reading pauses and the bytes
/// wait in the kernel's tty buffer (a few KiB, about a second of a busy radio channel). Give the
/// channel a few hundred slots and keep the consumer quick (hand slow work such as database
/// commits to another task).
pub async fn run(
    config: PortConfig,
    tx: mpsc::Sender<SerialEvent>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunStats, SerialError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut stats = RunStats::default();
    let mut dedup = Dedup::new(config.dedup_window);
    let mut backoff = config.backoff_initial;
    let mut first = true;
    let mut last_error: Option<String> = None;
    let path = config.path.clone();
    loop {
        match open(&path) {
            Ok(stream) => {
                first = false;
                last_error = None;
                stats.connects += 1;
                let opened = Instant::now();
                log::info!("serial: {} opened, receiving", path.display());
                if tx
                    .send(SerialEvent::Connected { path: path.clone() })
                    .await
                    .is_err()
                {
                    return Ok(stats);
                }
                let end =
                    session(stream, &config, &tx, &mut dedup, &mut stats, &mut shutdown).await;
                match end {
                    End::Shutdown | End::ReceiverGone => {
                        log::info!("serial: {} closed", path.display());
                        return Ok(stats);
                    }
                    End::Lost(reason) => {
                        log::warn!("serial: {} lost: {reason}", path.display());
                        if tx.send(SerialEvent::Disconnected { reason }).await.is_err() {
                            return Ok(stats);
                        }
                        // A pause before reopening: short after a connection that lasted, growing
                        // when the port keeps failing soon after opening (no spinning, no log
                        // flood from a flapping device).
                        if opened.elapsed() >= config.backoff_max {
                            backoff = config.backoff_initial;
                        }
                        let pause = backoff;
                        backoff = next_backoff(backoff, config.backoff_max);
                        if sleep_or_shutdown(pause, &mut shutdown).await {
                            return Ok(stats);
                        }
                    }
                }
            }
            Err(e) => {
                if first && config.fail_on_first_open {
                    return Err(e.into());
                }
                first = false;
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    if e.is_missing() {
                        log::warn!("serial: {text}; waiting for it to appear");
                    } else {
                        log::warn!("serial: {text}; retrying with backoff");
                    }
                    last_error = Some(text);
                }
                let stopped = if e.is_missing() {
                    backoff = config.backoff_initial;
                    wait_for_path(&config, &mut shutdown).await
                } else {
                    let d = backoff;
                    backoff = next_backoff(backoff, config.backoff_max);
                    sleep_or_shutdown(d, &mut shutdown).await
                };
                if stopped || tx.is_closed() {
                    return Ok(stats);
                }
            }
        }
    }
}

/// The delay after `current`: doubled, capped at `max`.
fn next_backoff(current: Duration, max: Duration) -> Duration {
    current.saturating_mul(2).min(max)
}

/// Sleeps for `d`; true when shutdown came first.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut std::pin::Pin<&mut impl Future>) -> bool {
    tokio::select! {
        _ = shutdown.as_mut() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// Polls until the device path exists; true when shutdown came first.
async fn wait_for_path(
    config: &PortConfig,
    shutdown: &mut std::pin::Pin<&mut impl Future>,
) -> bool {
    loop {
        if sleep_or_shutdown(config.presence_poll, shutdown).await {
            return true;
        }
        if config.path.exists() {
            return false;
        }
    }
}

/// One connection: read and decode until the port is lost or the run ends.
async fn session(
    mut stream: SerialStream,
    config: &PortConfig,
    tx: &mpsc::Sender<SerialEvent>,
    dedup: &mut Dedup,
    stats: &mut RunStats,
    shutdown: &mut std::pin::Pin<&mut impl Future>,
) -> End {
    // A fresh decoder per connection: bytes of a frame cut by an unplug never join new ones.
    let mut decoder = Decoder::new();
    let mut hs = handshake::Handshake::new(config.response_timeout, config.handshake_attempts);
    let mut buf = vec![0u8; 4096];
    let mut items = Vec::new();
    let end = loop {
        let now = Instant::now();
        if let Some(cmd) = hs.poll_send(now) {
            // No flush(): on a tty it is tcdrain(), a blocking call that would stall the runtime.
            let bytes = cmd.frame().encode();
            let write = tokio::time::timeout(config.response_timeout, stream.write_all(&bytes));
            match write.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break End::Lost(format!("write failed: {e}")),
                Err(_) => break End::Lost("write timed out".into()),
            }
        }
        if let Some(outcome) = hs.take_outcome() {
            let event = match outcome {
                Ok(info) => {
                    log::info!("serial: stick {info}");
                    SerialEvent::StickInfo(info)
                }
                Err(reason) => {
                    log::warn!("serial: handshake failed ({reason}); receiving anyway");
                    SerialEvent::HandshakeFailed { reason }
                }
            };
            if tx.send(event).await.is_err() {
                break End::ReceiverGone;
            }
        }
        let gap =
            (!decoder.pending().is_empty()).then(|| now + GAP_TIMEOUT + Duration::from_millis(1));
        let wake = match (hs.deadline(), gap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            biased;
            _ = shutdown.as_mut() => break End::Shutdown,
            r = stream.read(&mut buf) => match r {
                Ok(0) => break End::Lost("end of file (device gone)".into()),
                Ok(n) => {
                    let arrived = std::time::Instant::now();
                    decoder.feed(&buf[..n], arrived, |item| items.push(item));
                }
                Err(e) => break End::Lost(e.to_string()),
            },
            _ = sleep_opt(wake), if wake.is_some() => {
                decoder.expire(std::time::Instant::now(), |item| items.push(item));
            }
        }
        let mut receiver_gone = false;
        for item in items.drain(..) {
            let event = match item {
                Item::Event(e) => Some(SerialEvent::Decoder(e)),
                Item::Frame { frame, .. } => route(frame, &mut hs, dedup, stats),
            };
            if let Some(event) = event
                && tx.send(event).await.is_err()
            {
                receiver_gone = true;
                break;
            }
        }
        if receiver_gone {
            break End::ReceiverGone;
        }
    };
    let c = decoder.counters();
    let d = &mut stats.decoder;
    d.bytes += c.bytes;
    d.frames += c.frames;
    d.discarded_bytes += c.discarded_bytes;
    d.header_crc_errors += c.header_crc_errors;
    d.data_crc_errors += c.data_crc_errors;
    d.empty_frames += c.empty_frames;
    d.gap_timeouts += c.gap_timeouts;
    end
}

/// Turns one decoded frame into the event to send, if any.
fn route(
    frame: Frame,
    hs: &mut handshake::Handshake,
    dedup: &mut Dedup,
    stats: &mut RunStats,
) -> Option<SerialEvent> {
    match frame.packet_type() {
        PacketType::RadioErp1 => match Telegram::from_frame(&frame) {
            Ok(telegram) => {
                let monotonic = std::time::Instant::now();
                if !dedup.accept(&telegram, monotonic) {
                    stats.duplicates += 1;
                    return None;
                }
                stats.telegrams += 1;
                Some(SerialEvent::Telegram {
                    telegram,
                    received_at: jiff::Timestamp::now(),
                    monotonic,
                })
            }
            Err(_) => Some(SerialEvent::Frame(frame)),
        },
        PacketType::Response => hs.on_response(frame).map(SerialEvent::Frame),
        PacketType::Event => match StickEvent::parse(&frame) {
            Ok(ev) => Some(SerialEvent::StickEvent(ev)),
            Err(_) => Some(SerialEvent::Frame(frame)),
        },
        _ => Some(SerialEvent::Frame(frame)),
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_from_one_to_thirty_seconds() {
        let c = PortConfig::new("/dev/enocean");
        let mut d = c.backoff_initial;
        let mut seen = vec![d.as_secs()];
        for _ in 0..7 {
            d = next_backoff(d, c.backoff_max);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(c.response_timeout, Duration::from_millis(500));
        assert_eq!(c.dedup_window, Duration::from_secs(2));
    }
}
