//! The daemon: wires the serial runtime, the EEP library, the device registry, the outbox and the
//! webhook sender together, and shuts them down in order (stop reading, commit what was read, let
//! the in-flight POSTs finish).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::device::{DeviceError, DeviceStore, Registry, Source};
use crate::eep::{self, EepId, Library, TeachIn};
use crate::erp1::Telegram;
use crate::health::{GatewayStatus, Silence, SilenceWatch, StatusReason, Transition, WatchStart};
#[cfg(feature = "mqtt")]
use crate::mqtt::MqttSender;
use crate::outbox::{Outbox, OutboxError};
use crate::secure::SecureTeachIn;
use crate::serial::{self, PortChoice, PortConfig, SerialEvent};
#[cfg(feature = "sim")]
use crate::sim::{SimConfig, SimError, SimStick};
use crate::storage::{Op, Storage};
use crate::telemetry::{Gateway, Kind, Sensor, Telemetry};
use crate::webhook::{Sender, SenderOptions};

/// Errors that stop the agent from starting.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The outbox could not be opened.
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    /// The device table could not be opened.
    #[error("devices: {0}")]
    Device(#[from] DeviceError),
    /// The simulated stick could not start (only with the `sim` feature).
    #[cfg(feature = "sim")]
    #[error("simulated stick: {0}")]
    Sim(#[from] SimError),
    /// `[serial] port = "sim"` in a build without the simulator (never in a build with the
    /// default `sim` feature); refused before anything is opened.
    #[error("serial.port: {0}")]
    NoSimulator(#[from] serial::NoSimulator),
    /// `[[mqtt]]` outputs in a build without the MQTT client (never in a build with the default
    /// `mqtt` feature); refused before anything is opened.
    #[error("mqtt: {0}")]
    NoMqtt(#[from] crate::mqtt::NoMqtt),
    /// The serial runtime ended with an error.
    #[error("serial: {0}")]
    Serial(#[from] serial::SerialError),
    /// The secure device table or its sealing key could not be opened.
    #[error("{0}")]
    Secure(#[from] crate::secure::store::StoreError),
    /// A thread could not be started.
    #[error("starting a thread: {0}")]
    Thread(std::io::Error),
    /// The metrics endpoint could not start.
    #[error("{0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The storage writer thread died; committed readings are safe, a restart resumes.
    #[error("the storage writer thread died")]
    StorageDied,
    /// A webhook sender thread died; committed readings are safe, a restart resumes.
    #[error("a webhook sender thread died")]
    SenderDied,
}

/// What the agent tells its supervisor (systemd's sd_notify in the binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Started: the outbox is open and the sender runs.
    Ready(String),
    /// A one-line status ("stick FF8A1200, 2 webhooks, backlog 12").
    Status(String),
    /// The main loop is alive (watchdog keep-alive).
    Watchdog,
    /// Shutdown has begun.
    Stopping,
}

/// Run-time knobs that are not part of the configuration file.
pub struct Options {
    /// Options of the webhook sender threads; None derives them from `[storage]`.
    pub sender: Option<SenderOptions>,
    /// The simulated stick's settings when `[serial] port` is [`PortChoice::Simulated`] (only
    /// with the `sim` feature).
    #[cfg(feature = "sim")]
    pub sim: SimConfig,
    /// How often to send [`Notice::Watchdog`]; None when nobody watches.
    pub watchdog: Option<Duration>,
    /// How often to refresh [`Notice::Status`] and write device last-heard facts.
    pub status_interval: Duration,
    /// How long the start's `gateway.status` waits for the stick's handshake (base ID,
    /// firmware) before it is sent without them.
    pub start_status_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sender: None,
            #[cfg(feature = "sim")]
            sim: SimConfig::default(),
            watchdog: None,
            status_interval: Duration::from_secs(10),
            start_status_grace: Duration::from_secs(10),
        }
    }
}

/// Totals of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Telegrams received (after removing repeated copies).
    pub telegrams: u64,
    /// Telemetry records committed to the outbox (see `Outbox::sync_due` for when they are
    /// on the disk).
    pub committed: u64,
    /// Telegrams decoded with a known EEP.
    pub decoded: u64,
    /// Telegrams forwarded raw: unknown sender, unknown EEP or undecodable payload.
    pub raw: u64,
    /// Teach-in telegrams seen.
    pub teach_ins: u64,
    /// Devices learned or re-learned from teach-ins.
    pub learned: u64,
    /// Records the outbox refused or could not commit before exit (the log says why).
    pub enqueue_errors: u64,
    /// Records that did not fit in the hand-off to storage (the disk was too slow for too long).
    pub handoff_dropped: u64,
    /// Parts of chained messages (RORG 0x40) taken in; each complete message counts once as a
    /// telegram.
    pub chain_parts: u64,
    /// Chained messages that never completed (a part missing past the timeout, or evicted).
    pub chains_incomplete: u64,
    /// Times the stick was (re)connected.
    pub connects: u64,
    /// Repeated copies dropped (same sender and payload within the dedup window).
    pub duplicates: u64,
    /// Secure telegrams verified (CMAC, rolling code) and decrypted.
    pub secure_verified: u64,
    /// Secure telegrams delivered raw because they failed (unknown key, bad CMAC, replay, …);
    /// each record names the reason in `decode_error`.
    pub secure_rejected: u64,
    /// Secure teach-ins completed and stored (key, SLF, rolling code).
    pub secure_taught: u64,
}

/// Runs the agent until `shutdown` completes. `notify` hears about readiness, status and the
/// watchdog.
pub async fn run(
    cfg: &Config,
    library: &Library,
    options: Options,
    shutdown: impl Future<Output = ()>,
    notify: &mut dyn FnMut(Notice),
) -> Result<Report, AgentError> {
    // `sim` in a build without the simulator: refused before the outbox or a thread is opened.
    if let Some(e) = cfg.serial.port.unavailable() {
        return Err(e.into());
    }
    // `[[mqtt]]` in a build without the MQTT client: the same.
    if !cfg.mqtt.is_empty()
        && let Some(e) = crate::mqtt::unavailable()
    {
        return Err(e.into());
    }
    let mut outbox = Outbox::open(&cfg.storage, &cfg.enabled_webhooks())?;
    if let Some(moved) = outbox.recovered_from() {
        error!(
            "outbox was unreadable and was moved aside to {}; a fresh one was created",
            moved.display()
        );
    }
    let max_devices = cfg.learn.max_devices;
    let device_store = DeviceStore::open(&cfg.storage.path, max_devices)?;
    let registry = Registry::open(&cfg.storage.path, &cfg.devices, max_devices)?;
    // Keys and rolling codes, read once here; from now on only the storage thread writes them.
    let (mut keyring, unsealed) = crate::secure::store::load(&cfg.storage.path, &cfg.devices)?;
    keyring.set_max_learned(max_devices);
    for line in unsealed {
        error!("{line}");
    }
    let secure_store = crate::secure::store::SecureStore::open(&cfg.storage.path)?;
    let stop_sender = Arc::new(AtomicBool::new(false));
    let sender_options = options
        .sender
        .clone()
        .unwrap_or_else(|| SenderOptions::from_config(cfg));
    // The same clock stamps readings at reception and resolves them in the sender.
    let clock = sender_options.clock.clone();
    let watch = silence_watch(cfg, &registry, &outbox, clock.as_ref());
    if !watch.is_empty() {
        info!("watching {} configured device(s) for silence", watch.len());
    }
    let wants = |event: &str| {
        cfg.webhooks
            .iter()
            .any(|w| w.enabled && w.filter.accepts(event))
            || cfg
                .mqtt
                .iter()
                .any(|m| m.enabled && m.filter.accepts(event))
    };
    let sender = Sender::spawn(
        &cfg.webhooks,
        &cfg.storage.path,
        sender_options.clone(),
        stop_sender,
    )?;
    outbox.set_waker(sender.waker());
    // MQTT outputs wake with the same waker: one commit wakes every output.
    #[cfg(feature = "mqtt")]
    let mqtt = MqttSender::spawn(
        &cfg.mqtt,
        &cfg.gateway.id,
        &cfg.storage.path,
        sender_options,
        sender.waker(),
        Arc::new(AtomicBool::new(false)),
    )?;
    #[cfg(not(feature = "mqtt"))]
    forget_mqtt_outputs(&cfg.storage.path)?;
    #[cfg(feature = "mqtt")]
    let mqtt_dead = || mqtt.dead();
    #[cfg(not(feature = "mqtt"))]
    let mqtt_dead = || 0;
    let storage = Storage::start(
        outbox,
        device_store,
        secure_store,
        cfg.webhooks.clone(),
        cfg.mqtt.clone(),
        cfg.storage.path.clone(),
    )
    .map_err(AgentError::Thread)?;

    #[cfg(feature = "sim")]
    let (sim, port_path) = match &cfg.serial.port {
        PortChoice::Simulated => {
            let sim = SimStick::start(options.sim.clone())?;
            info!("simulated stick on {}", sim.path().display());
            let path = sim.path().to_path_buf();
            (Some(sim), path)
        }
        PortChoice::Device(path) => (None, path.clone()),
    };
    #[cfg(not(feature = "sim"))]
    let port_path = match &cfg.serial.port {
        PortChoice::Device(path) => path.clone(),
        // Refused at the start already.
        PortChoice::Simulated => return Err(serial::NoSimulator.into()),
    };
    let mut port = PortConfig::new(port_path);
    port.dedup_window = cfg.serial.dedup_window;

    let mut state = State {
        cfg,
        library,
        registry,
        storage,
        gateway: Gateway {
            id: cfg.gateway.id.as_str().into(),
            base_id: None,
        },
        report: Report::default(),
        warned_eeps: Default::default(),
        strangers: TeachInSummary::default(),
        clock,
        chains: crate::chain::Reassembler::default(),
        watch,
        want_status: wants("gateway.status"),
        want_silence: wants("device.silent") || wants("device.back"),
        monitor: serial::Monitor::new(),
        started: Instant::now(),
        stick: crate::health::StickFacts::default(),
        next_status: None,
        live: Arc::new(crate::metrics::Live::default()),
        keyring,
        secure_parts: crate::secure::Assembler::default(),
    };
    let sources = || crate::metrics::Sources {
        config: cfg.clone(),
        live: state.live.clone(),
        storage: state.storage.shared_figures(),
        started: state.started,
    };
    let metrics = match crate::metrics::MetricsServer::start(
        &cfg.metrics,
        sources(),
        options.status_interval,
    ) {
        Ok(m) => m,
        Err(e) => {
            // A taken port must not keep readings from being received and delivered, nor the
            // textfile from being written.
            error!("{e}; running without the metrics endpoint");
            let textfile_only = crate::metrics::MetricsConfig {
                enabled: false,
                ..cfg.metrics.clone()
            };
            crate::metrics::MetricsServer::start(&textfile_only, sources(), options.status_interval)
                .unwrap_or_else(|e| {
                    error!("{e}; running without the metrics textfile");
                    None
                })
        }
    };
    if let Some(addr) = metrics.as_ref().and_then(|m| m.addr()) {
        info!("metrics on http://{addr}/metrics");
    }
    let webhooks = cfg.enabled_webhooks().len();
    let mqtt_outputs = cfg.mqtt.iter().filter(|m| m.enabled).count();
    notify(Notice::Ready(if mqtt_outputs > 0 {
        format!(
            "started, {webhooks} webhook(s), {mqtt_outputs} MQTT output(s), port {}",
            cfg.serial.port
        )
    } else {
        format!("started, {webhooks} webhook(s), port {}", cfg.serial.port)
    }));

    let (tx, mut rx) = mpsc::channel(1024);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let serial_run = serial::run_with_monitor(
        port,
        tx,
        async move {
            let _ = stop_rx.await;
        },
        state.monitor.clone(),
    );
    tokio::pin!(serial_run);
    tokio::pin!(shutdown);
    let mut stop_tx = Some(stop_tx);
    let mut serial_result = None;
    let mut rx_open = true;
    let tick = options
        .watchdog
        .unwrap_or(options.status_interval)
        .min(options.status_interval)
        .min(Duration::from_secs(1));
    let mut last_status = Instant::now();
    let mut last_watchdog = Instant::now();
    let mut sender_died = false;
    // Wakes the loop at least every `tick` for the timed work below (one timer, set again when
    // it fires, not one per event).
    let ticker = tokio::time::sleep(tick);
    tokio::pin!(ticker);

    // Runs until the serial side has stopped and every event it sent has been handled. Nothing
    // here touches the disk: records go to the storage writer thread through a bounded queue.
    while serial_result.is_none() || rx_open {
        tokio::select! {
            res = &mut serial_run, if serial_result.is_none() => {
                serial_result = Some(res);
            }
            ev = rx.recv(), if rx_open => match ev {
                Some(ev) => state.on_serial(ev),
                None => rx_open = false,
            },
            Some(id) = state.storage.forgets().recv() => {
                state.registry.forget(id);
                state.keyring.forget(id);
                info!("device {id:08X} forgotten; it is learned again only from a new teach-in");
            }
            () = &mut shutdown, if stop_tx.is_some() => {
                info!("stopping: no more reading, committing what was received");
                notify(Notice::Stopping);
                if let Some(tx) = stop_tx.take() {
                    let _ = tx.send(());
                }
            }
            () = &mut ticker => ticker.as_mut().reset(tokio::time::Instant::now() + tick),
        }
        if let Some(summary) = state.strangers.due(Instant::now()) {
            info!("{summary}");
        }
        state.chains.expire(Instant::now());
        let stopping = stop_tx.is_none();
        let now = Instant::now();
        state.publish();
        for t in state.watch.due(now) {
            state.on_silence(t, None);
        }
        match state.next_status {
            None if !stopping && now >= state.started + options.start_status_grace => {
                state.send_status(StatusReason::Start, cfg.health.status_interval);
            }
            Some(at) if !stopping && now >= at => {
                state.send_status(StatusReason::Periodic, cfg.health.status_interval);
            }
            _ => {}
        }
        if let Some(every) = options.watchdog
            && !stopping
            && last_watchdog.elapsed() >= every
        {
            last_watchdog = Instant::now();
            // A dead storage writer or sender must not be hidden behind a healthy watchdog.
            if state.storage.is_alive() && sender.dead() == 0 && mqtt_dead() == 0 {
                notify(Notice::Watchdog);
            }
        }
        if sender.dead() + mqtt_dead() > 0 && stop_tx.is_some() {
            error!(
                "{} webhook sender and {} MQTT output thread(s) died; stopping so the service \
                 manager restarts the agent",
                sender.dead(),
                mqtt_dead()
            );
            sender_died = true;
            if let Some(tx) = stop_tx.take() {
                let _ = tx.send(());
            }
        }
        if !state.storage.is_alive() {
            error!(
                "the storage writer thread died; stopping so the service manager restarts the agent"
            );
            if let Some(tx) = stop_tx.take() {
                let _ = tx.send(());
            }
        }
        if last_status.elapsed() >= options.status_interval {
            last_status = Instant::now();
            let heard = state.registry.take_heard();
            state.storage.send(Op::Heard(heard));
            if !stopping {
                notify(Notice::Status(state.status_line(webhooks)));
            }
        }
    }
    let heard = state.registry.take_heard();
    state.storage.send(Op::Heard(heard));
    if state.next_status.is_some() {
        state.send_status(StatusReason::Stop, Duration::ZERO);
    }
    #[cfg(feature = "sim")]
    if let Some(sim) = sim {
        sim.stop().await;
    }
    let mut report = state.report;
    report.chains_incomplete = state.chains.counters().incomplete();
    let State { storage, .. } = state;
    let figures = storage.shared_figures();
    let storage_ok = storage.stop();
    report.committed = figures.committed.load(Ordering::Relaxed);
    report.enqueue_errors = figures.not_committed.load(Ordering::Relaxed);
    report.handoff_dropped = figures.handoff_dropped.load(Ordering::Relaxed);
    // Waits for the in-flight POSTs, each bounded by its webhook's timeout, and for the MQTT
    // outputs to save their cursors, publish `offline` and disconnect.
    #[cfg(feature = "mqtt")]
    std::thread::scope(|s| {
        s.spawn(|| mqtt.stop());
        sender.stop();
    });
    #[cfg(not(feature = "mqtt"))]
    sender.stop();
    // The textfile's last write, with the final figures.
    drop(metrics);
    match serial_result {
        Some(Ok(stats)) => {
            report.connects = stats.connects;
            report.duplicates = stats.duplicates;
            info!(
                "stopped: {} telegrams, {} duplicates dropped, {} committed, {} decoded, {} raw, {} teach-ins, {} secure verified, {} secure rejected, {} connects, {} not committed, {} lost at hand-off",
                report.telegrams,
                report.duplicates,
                report.committed,
                report.decoded,
                report.raw,
                report.teach_ins,
                report.secure_verified,
                report.secure_rejected,
                report.connects,
                report.enqueue_errors,
                report.handoff_dropped
            );
            if !storage_ok {
                Err(AgentError::StorageDied)
            } else if sender_died {
                Err(AgentError::SenderDied)
            } else {
                Ok(report)
            }
        }
        Some(Err(e)) => Err(e.into()),
        None => Ok(report),
    }
}

struct State<'a> {
    cfg: &'a Config,
    library: &'a Library,
    registry: Registry,
    storage: Storage,
    gateway: Gateway,
    report: Report,
    warned_eeps: std::collections::HashSet<String>,
    strangers: TeachInSummary,
    /// Stamps readings: monotonic time and boot, wall time only from a synchronised clock.
    clock: crate::clock::ClockCheck,
    /// Chained messages (RORG 0x40) being put back together.
    chains: crate::chain::Reassembler,
    /// Configured devices watched for silence.
    watch: SilenceWatch,
    /// Some webhook receives `gateway.status`.
    want_status: bool,
    /// Some webhook receives `device.silent` or `device.back`.
    want_silence: bool,
    /// The serial side's live totals (duplicates, CRC errors, connects).
    monitor: serial::Monitor,
    /// When the agent started.
    started: Instant,
    /// The stick as its handshake described it.
    stick: crate::health::StickFacts,
    /// When the next periodic `gateway.status` is due; None until the start's was sent.
    next_status: Option<Instant>,
    /// What the metrics thread shows, refreshed every tick.
    live: Arc<crate::metrics::Live>,
    /// Keys and rolling codes of secure devices (memory; the storage thread persists them).
    keyring: crate::secure::Keyring,
    /// Secure teach-ins of several parts being put together.
    secure_parts: crate::secure::Assembler,
}

/// The configured devices to watch for silence, with what the database remembers: those
/// reported silent before a restart, and (with a synchronised clock) how long ago each was last
/// heard.
fn silence_watch(
    cfg: &Config,
    registry: &Registry,
    outbox: &Outbox,
    clock: &dyn crate::clock::Clock,
) -> SilenceWatch {
    let silent = crate::health::silent_devices(&outbox.store().conn).unwrap_or_else(|e| {
        warn!("could not read which devices were silent: {e}");
        Default::default()
    });
    // A wall clock that is not synchronised (no RTC, no NTP yet) cannot say how long ago a
    // device was heard: then silence is judged from the start only.
    let now = clock.synchronized().then(|| clock.now());
    let starts: Vec<WatchStart> = cfg
        .devices
        .iter()
        .filter_map(|d| {
            let id = crate::device::parse_id(&d.id).ok()?;
            let after = d.silence_threshold(cfg.learn.silent_after)?;
            let before = crate::health::silent_before_start(
                now,
                registry
                    .get(id)
                    .and_then(|dev| dev.last_seen)
                    .and_then(|t| t.timestamp()),
            );
            Some(WatchStart {
                id,
                silent_after: after,
                silent_before_start: before,
                was_silent: silent.contains(&id),
            })
        })
        .collect();
    SilenceWatch::new(&starts, Instant::now())
}

/// Teach-ins from senders the gateway does not know (a neighbour's radio, a flood): the first after
/// a quiet minute is logged at info at once, later ones are counted and summed up at most once a
/// minute, so no radio can fill the journal.
#[derive(Debug, Default)]
struct TeachInSummary {
    /// When the last info line was written.
    last_line: Option<Instant>,
    /// Teach-ins not yet in an info line: count, learned, the latest one's line.
    pending: u64,
    learned: u64,
    latest: Option<String>,
}

impl TeachInSummary {
    const EVERY: Duration = Duration::from_secs(60);

    /// Notes one teach-in; returns the info line to write now, if one is due.
    fn note(&mut self, now: Instant, line: String, learned: bool) -> Option<String> {
        self.pending += 1;
        self.learned += u64::from(learned);
        self.latest = Some(line);
        self.due(now)
    }

    /// The summary line when one is due (called on every tick too).
    fn due(&mut self, now: Instant) -> Option<String> {
        if self.pending == 0 || self.last_line.is_some_and(|t| now < t + Self::EVERY) {
            return None;
        }
        self.last_line = Some(now);
        let latest = self.latest.take().unwrap_or_default();
        let line = if self.pending == 1 {
            format!("{latest} (unknown sender)")
        } else {
            format!(
                "{} teach-ins from unknown senders in the last minute, {} learned; latest: {latest}",
                self.pending, self.learned
            )
        };
        self.pending = 0;
        self.learned = 0;
        Some(line)
    }
}

impl State<'_> {
    fn on_serial(&mut self, ev: SerialEvent) {
        match ev {
            SerialEvent::Telegram {
                telegram,
                received_at,
                ..
            } if telegram.rorg == crate::erp1::rorg::CDM
                || telegram.rorg == crate::secure::SEC_CDM =>
            {
                // A part of a chained message: the whole message is handled once complete, as
                // if it had come in one telegram. A secure chain's parts are put in the same
                // form; the complete message is a secure telegram of RORG 0x33.
                self.report.telegrams += 1;
                let part = crate::secure::sec_cdm_as_chain_part(&telegram);
                match self
                    .chains
                    .push(part.as_ref().unwrap_or(&telegram), Instant::now())
                {
                    crate::chain::Outcome::Complete(inner) => {
                        self.report.telegrams -= 1;
                        self.on_telegram(&inner, received_at);
                    }
                    crate::chain::Outcome::Pending | crate::chain::Outcome::Duplicate => {
                        self.report.chain_parts += 1;
                    }
                    crate::chain::Outcome::Rejected(e) => {
                        self.report.chain_parts += 1;
                        debug!("{}: chained part dropped: {e}", telegram.sender_hex());
                    }
                }
            }
            SerialEvent::Telegram {
                telegram,
                received_at,
                ..
            } => self.on_telegram(&telegram, received_at),
            SerialEvent::StickInfo(info) => {
                info!("stick: {info}");
                note_base_id(&mut self.gateway, &mut self.stick, &info);
                if let Some(v) = &info.version {
                    self.stick.firmware = Some(crate::health::version_text(v.app_version));
                    self.stick.api = Some(crate::health::version_text(v.api_version));
                    self.stick.description = Some(v.description.clone());
                }
                if self.next_status.is_none() {
                    self.send_status(StatusReason::Start, self.cfg.health.status_interval);
                }
            }
            SerialEvent::HandshakeFailed { reason } => {
                warn!("stick did not answer the handshake ({reason}); receiving anyway");
            }
            SerialEvent::Connected { path } => info!("stick connected on {}", path.display()),
            SerialEvent::Disconnected { reason } => warn!("stick lost: {reason}; reconnecting"),
            SerialEvent::StickEvent(e) => info!("stick event {}", e.name()),
            SerialEvent::Frame(f) => debug!("frame of type {} ignored", f.packet_type().name()),
            SerialEvent::Decoder(e) => debug!("serial line: {} at {}", e.name(), e.offset()),
        }
    }

    fn on_telegram(&mut self, t: &Telegram, received_at: jiff::Timestamp) {
        self.report.telegrams += 1;
        if let Some(back) = self.watch.heard(t.sender, Instant::now()) {
            let before = self
                .registry
                .get(t.sender)
                .and_then(|d| d.last_seen)
                .map(|t| t.to_string());
            self.on_silence(back, before);
        }
        self.registry.heard(t.sender, received_at.into(), t.dbm());
        if let Some(info) = SecureTeachIn::parse(t) {
            self.on_secure_teach_in(t, info, received_at);
            return;
        }
        if crate::secure::is_secure_data(t.rorg) {
            self.on_secure(t, received_at);
            return;
        }
        if let Some(ti) = eep::teach_in(t) {
            self.on_teach_in(t, &ti, received_at);
            return;
        }
        self.on_reading(t, t, None, received_at);
    }

    /// A secure data telegram: verified and decrypted with the sender's key, then handled as
    /// the plain telegram it carries (a teach-in or a reading of the device's EEP); when it
    /// fails, delivered raw with the reason in `decode_error` and counted.
    fn on_secure(&mut self, t: &Telegram, received_at: jiff::Timestamp) {
        let eep_rorg = self
            .registry
            .get(t.sender)
            .and_then(|d| d.eep.as_deref())
            .and_then(|e| u8::from_str_radix(e.get(..2)?, 16).ok());
        match self.keyring.unwrap(t, eep_rorg) {
            Ok(u) => {
                self.report.secure_verified += 1;
                if let (Some(next), Some(dev)) = (u.next_rlc, self.keyring.get(t.sender)) {
                    let kcv = crate::secure::crypto::check_value(&dev.key);
                    self.storage.send(Op::SecureRlc {
                        id: t.sender,
                        next_rlc: next,
                        kcv,
                    });
                }
                let plain = u.telegram;
                if let Some(ti) = eep::teach_in(&plain) {
                    self.on_teach_in(&plain, &ti, received_at);
                    return;
                }
                let secure = crate::telemetry::SecureRecord {
                    rlc: u.rlc,
                    rorg: crate::erp1::byte_hex(plain.rorg).to_owned(),
                    payload: crate::erp1::upper_hex(&plain.payload),
                    status: crate::erp1::byte_hex(plain.status).to_owned(),
                };
                self.on_reading(t, &plain, Some(secure), received_at);
            }
            Err(e) => {
                self.report.secure_rejected += 1;
                debug!(
                    "{}: secure telegram (RORG {:02X}) not decoded: {e}; forwarded raw",
                    t.sender_hex(),
                    t.rorg
                );
                let mut tm = self.record(t, received_at);
                tm.decode_error = Some(e.code().to_owned());
                self.report.raw += 1;
                self.storage.send(Op::Record(Box::new(tm)));
            }
        }
    }

    /// A new record of `t` as received, with what the registry knows of its sender.
    fn record(&mut self, t: &Telegram, received_at: jiff::Timestamp) -> Telemetry {
        self.record_with_eep(t, received_at, &mut None)
    }

    /// [`State::record`], also setting `eep_id` to the sender's EEP as the registry holds it
    /// parsed (left alone for a device the registry does not know). An out parameter: the
    /// record is large, and a returned pair cost a copy of it per telegram.
    fn record_with_eep(
        &mut self,
        t: &Telegram,
        received_at: jiff::Timestamp,
        eep_id: &mut Option<EepId>,
    ) -> Telemetry {
        let mut tm = Telemetry::from_telegram(t, received_at, self.gateway.clone());
        tm.stamp_reception(self.clock.as_ref());
        if let Some(dev) = self.registry.get(t.sender) {
            tm.sensor.name = dev.name.clone();
            tm.sensor.tags = dev.tags.clone();
            tm.sensor.eep = dev.eep.clone();
            *eep_id = dev.eep_id;
        }
        tm
    }

    /// A reading: `received` as it came (the record's `raw`), `plain` what is decoded (the
    /// same telegram, or the one a secure telegram carried).
    fn on_reading(
        &mut self,
        received: &Telegram,
        plain: &Telegram,
        secure: Option<crate::telemetry::SecureRecord>,
        received_at: jiff::Timestamp,
    ) {
        let t = plain;
        let mut eep_id = None;
        let mut tm = self.record_with_eep(received, received_at, &mut eep_id);
        if secure.is_some() && tm.sensor.eep.is_none() && plain.rorg == crate::erp1::rorg::RPS {
            // A PTM secure rocker: its 4-bit code became an F6-02-01 telegram.
            tm.sensor.eep = self
                .keyring
                .get(received.sender)
                .filter(|d| d.ptm)
                .map(|_| "F6-02-01".into());
            eep_id = tm.sensor.eep.as_deref().and_then(|e| e.parse().ok());
        }
        tm.secure = secure.map(Box::new);
        // The registry's parsed EEP finds the profile without parsing text; only an EEP without
        // a usable profile goes through its text, for the error to warn about.
        let library = self.library;
        let found = match eep_id.and_then(|id| library.get(id)) {
            Some(profile) => Some((profile.eep.as_str(), Ok(profile))),
            None => tm.sensor.eep.as_deref().map(|e| (e, library.get_str(e))),
        };
        match found {
            Some((_, Ok(profile))) => match eep::decode(profile, t) {
                Ok(d) => {
                    tm.values = d.readings();
                    self.report.decoded += 1;
                }
                Err(e) => {
                    debug!(
                        "{}: not decodable as {}: {e}; forwarded raw",
                        tm.sensor.id, profile.eep
                    );
                    tm.decode_error = Some(e.kind().to_owned());
                    self.report.raw += 1;
                }
            },
            Some((eep, Err(e))) => {
                if self.warned_eeps.insert(eep.to_string()) {
                    warn!("{}: {e}; its telegrams are forwarded raw", tm.sensor.id);
                }
                self.report.raw += 1;
            }
            None => self.report.raw += 1,
        }
        self.storage.send(Op::Record(Box::new(tm)));
    }

    fn on_teach_in(&mut self, t: &Telegram, ti: &TeachIn, at: jiff::Timestamp) {
        self.report.teach_ins += 1;
        let (eep, manufacturer, reply) = match ti {
            TeachIn::FourBs { eep, manufacturer } => {
                (eep.map(|e| e.to_string()), *manufacturer, false)
            }
            TeachIn::OneBs => (Some("D5-00-01".to_string()), None, false),
            TeachIn::Ute(q) => (
                Some(q.eep.to_string()),
                Some(q.manufacturer),
                q.response_expected,
            ),
        };
        let id = t.sender_hex();
        let known = self
            .registry
            .get(t.sender)
            .is_some_and(|d| d.source != Source::Unknown);
        let what = format!(
            "teach-in from {id}: EEP {}, manufacturer {}{}",
            eep.as_deref().unwrap_or("not announced"),
            manufacturer.map_or("unknown".into(), |m| format!("{m:03X}")),
            if reply {
                " (asks for a reply; this gateway only receives)"
            } else {
                ""
            }
        );
        let learned = match eep.filter(|_| self.cfg.learn.enabled) {
            Some(eep) if self.registry.learn(t.sender, &eep, manufacturer) => {
                self.report.learned += 1;
                self.storage.send(Op::Learned {
                    id: t.sender,
                    eep: eep.clone(),
                    manufacturer,
                    at: at.into(),
                });
                Some(eep)
            }
            _ => None,
        };
        let line = match &learned {
            Some(eep) => format!("{what}; learned as {eep}"),
            None => what,
        };
        self.note_teach_in(known, line, learned.is_some());
    }

    /// A secure teach-in part becomes a `teach_in` record without its key. The last part of a
    /// complete teach-in stores the device's key, SLF and rolling code (through the storage
    /// thread) when learning is on or the device is configured without a key; a key from the
    /// configuration is never replaced by radio.
    fn on_secure_teach_in(&mut self, t: &Telegram, info: SecureTeachIn, at: jiff::Timestamp) {
        self.report.teach_ins += 1;
        let id = t.sender_hex();
        let configured = self
            .registry
            .get(t.sender)
            .is_some_and(|d| d.source == Source::Configured);
        let known = self
            .registry
            .get(t.sender)
            .is_some_and(|d| d.source != Source::Unknown);
        let mut tm = Telemetry::secure_teach_in(t, info, at, self.gateway.clone());
        tm.stamp_reception(self.clock.as_ref());
        if let Some(dev) = self.registry.get(t.sender) {
            tm.sensor.name = dev.name.clone();
            tm.sensor.tags = dev.tags.clone();
            tm.sensor.eep = dev.eep.clone();
        }
        let outcome = match self.secure_parts.push(t, Instant::now()) {
            crate::secure::teach_in::Progress::Pending => "waiting for its next part".to_owned(),
            crate::secure::teach_in::Progress::Rejected(why) => format!("not usable: {why}"),
            crate::secure::teach_in::Progress::Complete(taught) => {
                if let Some(r) = tm.teach_in.as_mut() {
                    r.slf = Some(taught.slf.describe());
                }
                use crate::secure::Learned;
                let learned = if self.cfg.learn.enabled || configured {
                    Some(self.keyring.learn(&taught))
                } else {
                    None
                };
                if let Some(l) = learned.filter(|l| l.changed())
                    && let Some(dev) = self.keyring.get(t.sender)
                {
                    self.storage.send(Op::SecureTaught {
                        id: t.sender,
                        device: Box::new(dev.clone()),
                    });
                    if l != Learned::RollingCode {
                        self.report.secure_taught += 1;
                    }
                }
                if learned.is_some_and(|l| l.changed() || l == Learned::Unchanged)
                    && let Some(r) = tm.teach_in.as_mut()
                {
                    r.stored = Some(true);
                }
                if learned.is_some_and(Learned::changed)
                    && taught.ptm
                    && self.registry.learn(t.sender, "F6-02-01", None)
                {
                    self.report.learned += 1;
                    self.storage.send(Op::Learned {
                        id: t.sender,
                        eep: "F6-02-01".to_owned(),
                        manufacturer: None,
                        at: at.into(),
                    });
                }
                match learned {
                    None => {
                        "complete; not stored: learning is off and the device is not configured"
                            .to_owned()
                    }
                    Some(Learned::Configured) => {
                        "complete; not stored: its key comes from the configuration".to_owned()
                    }
                    Some(Learned::Full) => format!(
                        "complete; not stored: {} devices are taught in already ([learn] max_devices)",
                        self.cfg.learn.max_devices
                    ),
                    Some(Learned::Unchanged) => {
                        "complete; the same key again, the rolling code held is newer: kept"
                            .to_owned()
                    }
                    Some(Learned::RollingCode) => {
                        "complete; the same key again, its newer rolling code stored".to_owned()
                    }
                    Some(Learned::New) | Some(Learned::Rekeyed) => format!(
                        "complete; key, SLF {:#04X} and rolling code stored{}",
                        taught.slf.0,
                        if learned == Some(Learned::Rekeyed) {
                            " (replacing the key held: the device was paired again)"
                        } else {
                            ""
                        }
                    ),
                }
            }
        };
        self.note_teach_in(
            known,
            format!(
                "secure teach-in from {id} (part {} of {}{}): {outcome}; key withheld from the teach_in record",
                info.part + 1,
                if info.parts == 0 { "?".to_owned() } else { info.parts.to_string() },
                if info.ptm { ", PTM" } else { "" }
            ),
            false,
        );
        self.storage.send(Op::Record(Box::new(tm)));
    }

    /// Logs a teach-in: at info for a device this gateway knows (an installer pairing it), at
    /// debug for a stranger, with at most one info summary of strangers a minute.
    fn note_teach_in(&mut self, known: bool, line: String, learned: bool) {
        if known {
            info!("{line}");
            return;
        }
        debug!("{line}");
        if let Some(summary) = self.strangers.note(Instant::now(), line, learned) {
            info!("{summary}");
        }
    }

    /// A device went silent or came back: logged, persisted, and a `device.silent` or
    /// `device.back` record when some webhook receives them. `last_heard`: the wall time it was
    /// heard before (the registry's, when None).
    fn on_silence(&mut self, t: Transition, last_heard: Option<String>) {
        let (kind, id, silent_for) = match t {
            Transition::Silent { id, silent_for } => (Kind::DeviceSilent, id, silent_for),
            Transition::Back { id, silent_for } => (Kind::DeviceBack, id, silent_for),
        };
        let silent = kind == Kind::DeviceSilent;
        let dev = self.registry.get(id);
        let label = dev
            .and_then(|d| d.name.clone())
            .map_or_else(|| format!("{id:08X}"), |n| format!("{id:08X} ({n})"));
        if silent {
            warn!(
                "device {label} silent: not heard for {}s",
                silent_for.as_secs()
            );
        } else {
            info!(
                "device {label} heard again after {}s of silence",
                silent_for.as_secs()
            );
        }
        self.storage.send(Op::Silence { id, silent });
        if !self.want_silence {
            return;
        }
        let sensor = Sensor {
            id: format!("{id:08X}"),
            name: dev.and_then(|d| d.name.clone()),
            eep: dev.and_then(|d| d.eep.clone()),
            tags: dev.map(|d| d.tags.clone()).unwrap_or_default(),
        };
        let last_heard =
            last_heard.or_else(|| dev.and_then(|d| d.last_seen).map(|t| t.to_string()));
        let mut tm = Telemetry::health_event(kind, self.clock.now(), self.gateway.clone(), sensor);
        tm.silence = Some(Silence {
            silent_after_s: self.watch.silent_after(id).unwrap_or_default().as_secs(),
            silent_for_s: silent_for.as_secs(),
            last_heard,
        });
        tm.stamp_reception(self.clock.as_ref());
        self.storage.send(Op::Record(Box::new(tm)));
    }

    /// The counters since start, as `gateway.status` and the metrics show them.
    fn counters(&self) -> crate::health::Counters {
        let stats = self.monitor.snapshot();
        crate::health::Counters {
            telegrams: self.report.telegrams,
            decoded: self.report.decoded,
            raw: self.report.raw,
            teach_ins: self.report.teach_ins,
            duplicates: stats.duplicates,
            crc_errors: stats.decoder.header_crc_errors + stats.decoder.data_crc_errors,
            dropped: self
                .storage
                .figures()
                .handoff_dropped
                .load(Ordering::Relaxed),
            connects: stats.connects,
            secure_verified: self.report.secure_verified,
            secure_rejected: self.report.secure_rejected,
        }
    }

    /// Publishes the counters and the stick for the metrics thread.
    fn publish(&mut self) {
        let counters = self.counters();
        *self.live.counters.lock().unwrap_or_else(|e| e.into_inner()) = counters;
        self.stick.connected = self.monitor.connected();
        let mut live = self.live.stick.lock().unwrap_or_else(|e| e.into_inner());
        // The stick's facts change rarely: copied (their texts) only when they did.
        if *live != self.stick {
            *live = self.stick.clone();
        }
    }

    /// Hands a `gateway.status` record to storage (which adds the webhook and disk figures) and
    /// schedules the next one `interval` later (none when zero).
    fn send_status(&mut self, reason: StatusReason, interval: Duration) {
        let now = Instant::now();
        self.next_status = Some(if interval.is_zero() {
            now + Duration::from_secs(100 * 365 * 86_400)
        } else {
            now + interval
        });
        if !self.want_status {
            return;
        }
        let mut stick = self.stick.clone();
        stick.connected = self.monitor.connected();
        let counters = self.counters();
        let mut tm = Telemetry::health_event(
            Kind::GatewayStatus,
            self.clock.now(),
            self.gateway.clone(),
            Sensor::default(),
        );
        tm.status = Some(Box::new(GatewayStatus {
            reason,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_s: self.started.elapsed().as_secs(),
            stick,
            webhooks: Vec::new(),
            disk_free_bytes: None,
            counters,
        }));
        tm.stamp_reception(self.clock.as_ref());
        self.storage.send(Op::Status(Box::new(tm)));
    }

    fn status_line(&self, webhooks: usize) -> String {
        let f = self.storage.figures();
        format!(
            "stick {}, {webhooks} webhook(s), backlog {}, {} telegrams{}",
            self.gateway.base_id.as_deref().unwrap_or("unidentified"),
            f.backlog.load(Ordering::Relaxed),
            self.report.telegrams,
            if f.failing.load(Ordering::Relaxed) {
                ", storage failing"
            } else {
                ""
            }
        )
    }
}

/// Takes the base ID a handshake read. A handshake that could not read it (a partial answer
/// after a replug on a noisy line) keeps the one an earlier handshake read: once known, readings
/// never lose it.
fn note_base_id(
    gateway: &mut Gateway,
    stick: &mut crate::health::StickFacts,
    info: &crate::serial::StickInfo,
) {
    if let Some(base_id) = info.base_id_hex() {
        gateway.base_id = Some(base_id.as_str().into());
        stick.base_id = Some(base_id);
    }
}

/// In a build without the MQTT client: outputs a build with one left in the outbox
/// (`mqtt:NAME`) are marked unconfigured, as when their tables are removed from the
/// configuration, so their cursors stop holding back pruning.
#[cfg(not(feature = "mqtt"))]
fn forget_mqtt_outputs(outbox: &std::path::Path) -> Result<(), AgentError> {
    crate::outbox::Store::open(outbox)?.register_outputs(crate::mqtt::OUTPUT_PREFIX, &[])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "mqtt"))]
    #[test]
    fn a_build_without_mqtt_forgets_the_mqtt_outputs_a_build_with_it_left() {
        use crate::outbox::{Outbox, StorageConfig, Store};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        drop(Outbox::open(&StorageConfig::at(&path), &["hook"]).unwrap());
        // What a build with the MQTT client registers for `[[mqtt]] name = "home"`.
        let prefix = crate::mqtt::OUTPUT_PREFIX;
        Store::open(&path)
            .unwrap()
            .register_outputs(prefix, &[format!("{prefix}home")])
            .unwrap();
        let configured = |name: &str| {
            Store::open(&path)
                .unwrap()
                .webhook(name)
                .unwrap()
                .map(|w| w.configured)
        };
        assert_eq!(configured(&format!("{prefix}home")), Some(true));
        forget_mqtt_outputs(&path).unwrap();
        assert_eq!(configured(&format!("{prefix}home")), Some(false));
        assert_eq!(configured("hook"), Some(true), "webhooks are not touched");
        forget_mqtt_outputs(&path).unwrap();
        assert_eq!(configured(&format!("{prefix}home")), Some(false));
    }

    #[test]
    fn a_handshake_without_the_base_id_keeps_the_known_one() {
        let mut gateway = Gateway::default();
        let mut stick = crate::health::StickFacts::default();
        let info = |base: Option<u32>| crate::serial::StickInfo {
            version: None,
            base: base.map(|base_id| crate::esp3::response::BaseIdInfo {
                base_id,
                remaining_write_cycles: None,
            }),
        };
        note_base_id(&mut gateway, &mut stick, &info(None));
        assert_eq!(
            (gateway.base_id.as_deref(), stick.base_id.as_deref()),
            (None, None)
        );
        note_base_id(&mut gateway, &mut stick, &info(Some(0xFF8A_1200)));
        note_base_id(&mut gateway, &mut stick, &info(None));
        assert_eq!(gateway.base_id.as_deref(), Some("FF8A1200"));
        assert_eq!(stick.base_id.as_deref(), Some("FF8A1200"));
        // Another stick's base ID replaces it.
        note_base_id(&mut gateway, &mut stick, &info(Some(0xFFB0_0080)));
        assert_eq!(gateway.base_id.as_deref(), Some("FFB00080"));
        assert_eq!(stick.base_id.as_deref(), Some("FFB00080"));
    }

    #[test]
    fn strangers_teach_ins_give_at_most_one_line_a_minute() {
        let mut s = TeachInSummary::default();
        let t0 = Instant::now();
        let first = s.note(t0, "teach-in from 01000001".into(), true);
        assert_eq!(
            first.as_deref(),
            Some("teach-in from 01000001 (unknown sender)")
        );
        let mut lines = 0;
        for i in 0..10_000u32 {
            let at = t0 + Duration::from_millis(u64::from(i));
            lines += usize::from(
                s.note(at, format!("teach-in from {i:08X}"), i % 2 == 0)
                    .is_some(),
            );
            lines += usize::from(s.due(at).is_some());
        }
        assert_eq!(lines, 0, "within the first minute only the first line");
        let summary = s.due(t0 + Duration::from_secs(60)).unwrap();
        assert!(
            summary.starts_with(
                "10000 teach-ins from unknown senders in the last minute, 5000 learned"
            ),
            "{summary}"
        );
        assert_eq!(s.due(t0 + Duration::from_secs(61)), None);
        assert_eq!(
            s.due(t0 + Duration::from_secs(200)),
            None,
            "nothing pending"
        );
    }
}
