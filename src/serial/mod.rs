//! The serial runtime: opens the USB 300 by path, reads and decodes its byte stream, performs the
//! start-up handshake, proves the stick alive while the radio is quiet and survives unplugging.
//!
//! [`run`] is what the daemon calls. It keeps the port open (57 600 baud 8N1, exclusive), feeds
//! every read to an [`esp3::Decoder`] and sends what comes out as
//! [`SerialEvent`]s over a tokio channel. After each (re)connect it asks the stick for its version
//! and base ID (CO_RD_VERSION, CO_RD_IDBASE) without ever pausing reception. Repeated copies of a
//! telegram are dropped by [`Dedup`]. When the stick disappears it retries
//! with a growing backoff and watches for the device path to come back.
//!
//! A stick that stops talking is noticed: when no frame has arrived for
//! [`PortConfig::keepalive`], the runtime sends CO_RD_VERSION; with no frame back after
//! [`PortConfig::handshake_attempts`] tries of [`PortConfig::response_timeout`] each, it logs a
//! warning and reopens the port (a [`SerialEvent::Disconnected`] whose reason says so).
//!
//! Rejected input (discarded bytes, CRC errors, gap timeouts) is reported as
//! [`SerialEvent::Decoder`] events, counted in [`RunStats::decoder`] (live through [`Monitor`]) and
//! summarised in the log at most once a minute.
//!
//! The agent never transmits radio telegrams: the two handshake commands and the keep-alive
//! CO_RD_VERSION are the only bytes written to the stick.

mod choice;
mod handshake;
mod keepalive;
mod open;
mod port;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::dedup::Dedup;
use crate::erp1::Telegram;
use crate::esp3::command::CommonCommand;
use crate::esp3::event::StickEvent;
use crate::esp3::{self, Counters, Decoder, Frame, GAP_TIMEOUT, Item, PacketType};

pub use choice::{NoSimulator, PortChoice};
pub use handshake::StickInfo;
pub use open::{BAUD_RATE, OpenError, open};
pub use port::Port;

/// Shortest time between two log summaries of rejected input.
pub const LINE_REPORT_INTERVAL: Duration = Duration::from_secs(60);

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
    /// Attempts per handshake command and per keep-alive probe (default 3).
    pub handshake_attempts: u32,
    /// After this long without a frame from the stick (default 60 s), send CO_RD_VERSION; if no
    /// frame comes back after `handshake_attempts` tries of `response_timeout`, the stick (or
    /// the port) is considered dead and reopened. `Duration::ZERO` turns the probe off.
    pub keepalive: Duration,
    /// Window in which identical telegrams from one sender count as copies (default 2 s);
    /// `Duration::ZERO` delivers every copy.
    pub dedup_window: Duration,
    /// Return [`OpenError`] if the first open fails instead of waiting for the port (for
    /// interactive commands; the daemon waits).
    pub fail_on_first_open: bool,
    /// After a read of less than half the read buffer (2 KiB), the next one waits at least this
    /// long (default 20 ms), the port out of the reactor (see [`Port::rest`]): a busy line is read
    /// in chunks of several telegrams, one wake-up of the reader each, instead of one per
    /// telegram. The first telegram after a quieter spell is read at once; in a burst a
    /// telegram waits at most this long, and its `received_at` is stamped when it is read.
    /// `Duration::ZERO` reads as soon as bytes arrive.
    pub gather: Duration,
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
            keepalive: Duration::from_secs(60),
            dedup_window: Duration::from_secs(2),
            fail_on_first_open: false,
            gather: Duration::from_millis(20),
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
    /// The port was lost (unplugged, read error, or a stick that answered no keep-alive
    /// probe); reconnecting follows.
    Disconnected {
        /// Why, for the log.
        reason: String,
    },
}

/// Totals of a whole [`run`]: returned when it ends, and readable live through [`Monitor`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Successful opens.
    pub connects: u64,
    /// Decoder totals over all connections (discarded bytes, CRC errors, gap timeouts …).
    pub decoder: Counters,
    /// Telegrams delivered.
    pub telegrams: u64,
    /// Copies dropped by deduplication.
    pub duplicates: u64,
    /// Keep-alive CO_RD_VERSION commands sent because the line was quiet.
    pub keepalive_probes: u64,
    /// Connections given up because the stick answered no keep-alive probe.
    pub unresponsive: u64,
}

/// A live view of a running [`run_with_monitor`]: its totals and whether the port is open, for a
/// status line, a status file or a watchdog. Clones share the same figures; reading takes a short
/// lock and never waits for the serial side.
#[derive(Debug, Clone, Default)]
pub struct Monitor(Arc<Mutex<MonitorState>>);

#[derive(Debug, Default)]
struct MonitorState {
    stats: RunStats,
    connected: bool,
    active: Option<std::time::Instant>,
}

impl Monitor {
    /// A monitor to hand to [`run_with_monitor`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The totals so far, the connection in progress included.
    pub fn snapshot(&self) -> RunStats {
        self.lock().stats
    }

    /// True while the port is open.
    pub fn connected(&self) -> bool {
        self.lock().connected
    }

    /// When the serial loop last made progress (read, timer, reconnect attempt). It wakes at
    /// least every [`PortConfig::keepalive`] plus the probe's tries while connected, and every
    /// backoff or presence poll while not, so an instant much older than that means the reader
    /// itself is stuck (a watchdog should then stop being fed). `None` before the run starts.
    pub fn last_activity(&self) -> Option<std::time::Instant> {
        self.lock().active
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MonitorState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, stats: &RunStats, live: Option<&Counters>) {
        let mut s = self.lock();
        s.stats = *stats;
        if let Some(c) = live {
            s.stats.decoder.add(c);
        }
        s.connected = live.is_some();
        s.active = Some(std::time::Instant::now());
    }
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
/// handshake, keep-alive, reconnect. Returns the totals. Only fails when `fail_on_first_open` is
/// set and the first open fails.
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
    run_with_monitor(config, tx, shutdown, Monitor::new()).await
}

/// [`run`], keeping `monitor` up to date with the totals as they change.
pub async fn run_with_monitor(
    config: PortConfig,
    tx: mpsc::Sender<SerialEvent>,
    shutdown: impl Future<Output = ()>,
    monitor: Monitor,
) -> Result<RunStats, SerialError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut stats = RunStats::default();
    let mut dedup = Dedup::new(config.dedup_window);
    let mut report = LineReport::new(LINE_REPORT_INTERVAL);
    let mut backoff = config.backoff_initial;
    let mut first = true;
    let mut last_error: Option<String> = None;
    let path = config.path.clone();
    monitor.publish(&stats, None);
    loop {
        match open(&path) {
            Ok(stream) => {
                first = false;
                last_error = None;
                stats.connects += 1;
                monitor.publish(&stats, Some(&Counters::default()));
                let opened = Instant::now();
                log::info!("serial: {} opened, receiving", path.display());
                if tx
                    .send(SerialEvent::Connected { path: path.clone() })
                    .await
                    .is_err()
                {
                    return Ok(stats);
                }
                let mut session = Session {
                    config: &config,
                    tx: &tx,
                    dedup: &mut dedup,
                    stats: &mut stats,
                    report: &mut report,
                    monitor: &monitor,
                };
                let end = session.run(stream, &mut shutdown).await;
                monitor.publish(&stats, None);
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
                    wait_for_path(&config, &monitor, &stats, &mut shutdown).await
                } else {
                    let d = backoff;
                    backoff = next_backoff(backoff, config.backoff_max);
                    sleep_or_shutdown(d, &mut shutdown).await
                };
                monitor.publish(&stats, None);
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
async fn sleep_or_shutdown(d: Duration, shutdown: &mut Pin<&mut impl Future>) -> bool {
    tokio::select! {
        _ = shutdown.as_mut() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// Polls until the device path exists; true when shutdown came first.
async fn wait_for_path(
    config: &PortConfig,
    monitor: &Monitor,
    stats: &RunStats,
    shutdown: &mut Pin<&mut impl Future>,
) -> bool {
    loop {
        if sleep_or_shutdown(config.presence_poll, shutdown).await {
            return true;
        }
        monitor.publish(stats, None);
        if config.path.exists() {
            return false;
        }
    }
}

/// One connection's borrowed state.
struct Session<'a> {
    config: &'a PortConfig,
    tx: &'a mpsc::Sender<SerialEvent>,
    dedup: &'a mut Dedup,
    stats: &'a mut RunStats,
    report: &'a mut LineReport,
    monitor: &'a Monitor,
}

impl Session<'_> {
    /// Reads and decodes until the port is lost or the run ends.
    async fn run(&mut self, mut port: Port, shutdown: &mut Pin<&mut impl Future>) -> End {
        let config = self.config;
        // A fresh decoder per connection: bytes of a frame cut by an unplug never join new ones.
        let mut decoder = Decoder::new();
        let mut hs = handshake::Handshake::new(config.response_timeout, config.handshake_attempts);
        let mut alive = keepalive::KeepAlive::new(
            config.keepalive,
            config.response_timeout,
            config.handshake_attempts,
            Instant::now(),
        );
        let mut clock = LineClock::new();
        let mut buf = vec![0u8; 4096];
        let mut items = Vec::new();
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        // Whether this loop saw the timer fire (not `Sleep::is_elapsed`, which is also true for
        // a deadline reset into the past that the driver expired before the branch was polled:
        // the branch must still run for it).
        let mut timer_fired = true;
        // No read before this moment (see `PortConfig::gather`).
        let mut pace: Option<Instant> = None;
        let end = loop {
            let now = Instant::now();
            if pace.is_some_and(|p| now >= p) {
                pace = None;
                if let Err(e) = port.watch() {
                    break End::Lost(e.to_string());
                }
            }
            let pacing = pace.is_some();
            if let Some(cmd) = hs.poll_send(now)
                && let Err(end) = send(&mut port, cmd, config.response_timeout).await
            {
                break end;
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
                if self.tx.send(event).await.is_err() {
                    break End::ReceiverGone;
                }
            }
            // The keep-alive starts once the handshake is over (it has its own tries).
            if hs.finished() {
                match alive.poll(now) {
                    keepalive::Action::Wait => {}
                    keepalive::Action::Probe { attempt } => {
                        self.stats.keepalive_probes += 1;
                        log::debug!(
                            "serial: no frame for a while; CO_RD_VERSION keep-alive, try {attempt}"
                        );
                        let cmd = CommonCommand::ReadVersion;
                        if let Err(end) = send(&mut port, cmd, config.response_timeout).await {
                            break end;
                        }
                    }
                    keepalive::Action::Dead { silent_for } => {
                        self.stats.unresponsive += 1;
                        break End::Lost(format!(
                            "the stick sent nothing for {:.1} s and answered none of {} \
                             CO_RD_VERSION keep-alive tries",
                            silent_for.as_secs_f64(),
                            config.handshake_attempts.max(1)
                        ));
                    }
                }
            }
            if let Some((message, serious)) = self.report.poll(now, &self.totals(&decoder)) {
                if serious {
                    log::warn!("serial: {message}");
                } else {
                    log::info!("serial: {message}");
                }
            }
            let gap = (!decoder.pending().is_empty()).then(|| clock.gap_deadline());
            let wake = [
                hs.deadline(),
                gap,
                hs.finished().then(|| alive.deadline()).flatten(),
                self.report.deadline(),
                pace,
            ]
            .into_iter()
            .flatten()
            .min();
            // One timer for the loop, moved only when it would wake too late or has fired: a
            // deadline that moved later (a frame came) costs an early wake at most, which
            // finds nothing to do, instead of a timer set and cancelled per frame.
            if let Some(w) = wake
                && (timer_fired || timer.deadline() > w)
            {
                timer.as_mut().reset(w);
                timer_fired = false;
            }
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => break End::Shutdown,
                (r, empty) = read_noting_empty(&mut port, &mut buf), if !pacing => match r {
                    Ok(0) => break End::Lost("end of file (device gone)".into()),
                    Ok(n) => {
                        clock.saw_empty(empty);
                        decoder.feed(&buf[..n], clock.read(), |item| items.push(item));
                        // A read of half the buffer or more (a tty's line discipline holds
                        // 4 KiB) may have left more behind, and a gather would only make the
                        // writer wait for room: the next read follows at once.
                        if n < buf.len() / 2 && !config.gather.is_zero() {
                            pace = Some(Instant::now() + config.gather);
                            port.rest();
                        }
                    }
                    Err(e) => break End::Lost(e.to_string()),
                },
                () = &mut timer, if wake.is_some() && !timer_fired => {
                    timer_fired = true;
                    // The read was polled just before and found nothing: the port is empty
                    // now. While pacing it was not polled, so nothing was witnessed: the next
                    // turn reads (or finds the port empty and expires what timed out).
                    if !pacing {
                        clock.saw_empty(Some(std::time::Instant::now()));
                        decoder.expire(clock.idle(), |item| items.push(item));
                    }
                }
            }
            let now = Instant::now();
            let mut receiver_gone = false;
            for item in items.drain(..) {
                let event = match item {
                    Item::Event(e) => Some(SerialEvent::Decoder(e)),
                    Item::Frame { frame, .. } => {
                        let keepalive_answer = frame.packet_type() == PacketType::Response
                            && hs.finished()
                            && alive.take_answer();
                        alive.frame_received(now);
                        if keepalive_answer {
                            log::debug!("serial: the stick answered the keep-alive");
                            None
                        } else {
                            route(frame, &mut hs, self.dedup, self.stats)
                        }
                    }
                };
                if let Some(event) = event
                    && self.tx.send(event).await.is_err()
                {
                    receiver_gone = true;
                    break;
                }
            }
            self.monitor.publish(self.stats, Some(&decoder.counters()));
            if receiver_gone {
                break End::ReceiverGone;
            }
        };
        self.stats.decoder.add(&decoder.counters());
        end
    }

    /// Decoder totals of the run with this connection's so far.
    fn totals(&self, decoder: &Decoder) -> Counters {
        let mut t = self.stats.decoder;
        t.add(&decoder.counters());
        t
    }
}

/// Writes one command to the stick. No flush(): on a tty it is tcdrain(), a blocking call that
/// would stall the runtime.
async fn send(port: &mut Port, cmd: CommonCommand, timeout: Duration) -> Result<(), End> {
    let bytes = cmd.frame().encode();
    match tokio::time::timeout(timeout, port.write_all(&bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(End::Lost(format!("write failed: {e}"))),
        Err(_) => Err(End::Lost("write timed out".into())),
    }
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

/// Reads from the port like `AsyncReadExt::read`, also returning the last moment it found no
/// bytes waiting (`None` when bytes were there at once).
fn read_noting_empty<'a>(
    port: &'a mut Port,
    buf: &'a mut [u8],
) -> impl Future<Output = (std::io::Result<usize>, Option<std::time::Instant>)> + 'a {
    let mut empty = None;
    std::future::poll_fn(move |cx: &mut Context<'_>| match port.poll_read(cx, buf) {
        Poll::Ready(r) => Poll::Ready((r, empty)),
        Poll::Pending => {
            empty = Some(std::time::Instant::now());
            Poll::Pending
        }
    })
}

/// The time the gap rule sees. Only silence the reader has witnessed counts: from the end of the
/// previous read to the last moment the port had no bytes waiting. Time the reader spent
/// elsewhere (sending events to a slow consumer, a busy CPU, another task holding the thread)
/// never looks like a pause on the line, so a late read cannot break a frame; a real pause of
/// the stick is seen as soon as the reader waits through it.
struct LineClock {
    /// The line time given to the decoder with the last read.
    line: std::time::Instant,
    /// When the last read returned.
    last_read: std::time::Instant,
    /// The last moment since then the port was found empty.
    empty: Option<std::time::Instant>,
}

impl LineClock {
    fn new() -> Self {
        let now = std::time::Instant::now();
        Self {
            line: now,
            last_read: now,
            empty: None,
        }
    }

    /// Notes that the port had no bytes waiting at `at`.
    fn saw_empty(&mut self, at: Option<std::time::Instant>) {
        self.empty = self.empty.max(at);
    }

    /// Witnessed silence since the last read.
    fn silence(&self) -> Duration {
        self.empty.map_or(Duration::ZERO, |e| {
            e.saturating_duration_since(self.last_read)
        })
    }

    /// Line time of bytes just read.
    fn read(&mut self) -> std::time::Instant {
        self.line += self.silence();
        self.last_read = std::time::Instant::now();
        self.empty = None;
        self.line
    }

    /// Line time now, while no bytes came.
    fn idle(&self) -> std::time::Instant {
        self.line + self.silence()
    }

    /// When a pending frame runs out of time if the port stays empty.
    fn gap_deadline(&self) -> Instant {
        Instant::from_std(self.last_read) + GAP_TIMEOUT + Duration::from_millis(1)
    }
}

/// Log summaries of rejected input: the first as soon as it happens, then at most one per
/// interval with what came in between (never a line per byte or per frame).
#[derive(Debug)]
struct LineReport {
    interval: Duration,
    /// Totals at the last summary.
    logged: Counters,
    last_log: Option<Instant>,
    /// Totals seen at the last poll.
    seen: Counters,
}

impl LineReport {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            logged: Counters::default(),
            last_log: None,
            seen: Counters::default(),
        }
    }

    fn unreported(&self) -> bool {
        self.seen.discarded_bytes > self.logged.discarded_bytes
            || self.seen.rejections() > self.logged.rejections()
    }

    /// Takes the current totals; returns the summary to log now, if one is due, and whether it
    /// is serious (CRC errors or gap timeouts: frames may have been lost) or only skipped bytes.
    fn poll(&mut self, now: Instant, totals: &Counters) -> Option<(String, bool)> {
        self.seen = *totals;
        if !self.unreported() || self.last_log.is_some_and(|t| now < t + self.interval) {
            return None;
        }
        let (t, l) = (&self.seen, &self.logged);
        let since = self.last_log.map_or(String::new(), |at| {
            format!(
                " in the last {} s",
                now.saturating_duration_since(at).as_secs()
            )
        });
        let message = format!(
            "rejected input on the line{since}: {} bytes skipped, {} false sync bytes (header \
             CRC), {} data CRC errors, {} empty headers, {} gap timeouts; {} good frames",
            t.discarded_bytes - l.discarded_bytes,
            t.header_crc_errors - l.header_crc_errors,
            t.data_crc_errors - l.data_crc_errors,
            t.empty_frames - l.empty_frames,
            t.gap_timeouts - l.gap_timeouts,
            t.frames - l.frames,
        );
        let serious = t.data_crc_errors > l.data_crc_errors
            || t.gap_timeouts > l.gap_timeouts
            || t.header_crc_errors > l.header_crc_errors;
        self.logged = self.seen;
        self.last_log = Some(now);
        Some((message, serious))
    }

    /// When a summary of what is not reported yet becomes due.
    fn deadline(&self) -> Option<Instant> {
        if !self.unreported() {
            return None;
        }
        self.last_log.map(|t| t + self.interval)
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
        assert_eq!(c.keepalive, Duration::from_secs(60));
    }

    #[test]
    fn rejections_are_summarised_at_most_once_per_interval() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut r = LineReport::new(minute);
        let mut c = Counters {
            frames: 10,
            ..Counters::default()
        };
        assert_eq!(r.poll(t0, &c), None, "nothing rejected, nothing logged");
        assert_eq!(r.deadline(), None);
        // The first burst is logged at once.
        c.discarded_bytes += 7;
        let (first, serious) = r.poll(t0, &c).unwrap();
        assert!(first.contains("7 bytes skipped"), "{first}");
        assert!(!serious, "skipped bytes alone lose no frame");
        // A flood within the minute: silent, but due at the end of the minute.
        for i in 1..=1000u64 {
            c.data_crc_errors += 1;
            c.discarded_bytes += 3;
            assert_eq!(r.poll(t0 + Duration::from_millis(i * 50), &c), None);
        }
        assert_eq!(r.deadline(), Some(t0 + minute));
        let (second, serious) = r.poll(t0 + minute, &c).unwrap();
        assert!(serious);
        assert!(
            second.contains("3000 bytes skipped") && second.contains("1000 data CRC errors"),
            "{second}"
        );
        assert!(second.contains("in the last 60 s"), "{second}");
        // Quiet again: no deadline, no line.
        assert_eq!(r.deadline(), None);
        assert_eq!(r.poll(t0 + 10 * minute, &c), None);
    }

    #[test]
    fn the_line_clock_counts_only_witnessed_silence() {
        let mut clock = LineClock::new();
        let start = clock.line;
        // The reader was busy for a while and found bytes waiting: no silence.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.read(), start);
        // It found the port empty 3 ms after that read (twice, the later counts), then bytes.
        let after_read = clock.last_read;
        clock.saw_empty(Some(after_read + Duration::from_millis(3)));
        clock.saw_empty(Some(after_read + Duration::from_millis(1)));
        clock.saw_empty(None);
        assert_eq!(clock.idle(), start + Duration::from_millis(3));
        let at = clock.read();
        assert_eq!(at, start + Duration::from_millis(3));
        // An "empty" from before the last read counts nothing.
        clock.saw_empty(Some(clock.last_read - Duration::from_millis(1)));
        assert_eq!(clock.idle(), at);
    }
}
