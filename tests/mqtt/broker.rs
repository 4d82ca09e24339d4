//! A real Mosquitto on 127.0.0.1 for the MQTT tests: a free port, a generated configuration
//! (persistence on, unlimited queues for persistent subscribers, a log file), started and
//! stopped by the test; and a subscriber (rumqttc) that collects every message it gets.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for anything at most.
pub const WAIT: Duration = Duration::from_secs(60);

/// The Mosquitto binary, or None (with a note on stderr) where it is not installed: the test
/// then skips. `.ci/run` and `scripts/test.sh` install it.
pub fn mosquitto() -> Option<PathBuf> {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(p).is_file() {
            return Some(p.into());
        }
    }
    eprintln!(
        "SKIPPED: mosquitto is not installed (apt-get install mosquitto); the MQTT broker tests \
         need a real broker"
    );
    None
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running (or stopped) Mosquitto with its directory and configuration.
pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    conf: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
}

/// Extra lines for the broker's listener (TLS, passwords).
#[derive(Default)]
pub struct BrokerOptions {
    /// `user:password` pairs; anonymous access is refused when set.
    pub users: Vec<(String, String)>,
    /// Lines added to the listener (cafile, certfile, …).
    pub listener: Vec<String>,
}

impl Broker {
    /// Starts a broker with anonymous access.
    pub fn start(dir: &Path) -> Option<Broker> {
        Self::start_with(dir, BrokerOptions::default())
    }

    /// Starts a broker with these options, on a free port; None when Mosquitto is missing.
    pub fn start_with(dir: &Path, opts: BrokerOptions) -> Option<Broker> {
        let bin = mosquitto()?;
        let port = free_port();
        let dir = dir.join("broker");
        std::fs::create_dir_all(&dir).unwrap();
        let mut conf = format!(
            "listener {port} 127.0.0.1\n\
             persistence true\n\
             persistence_location {}/\n\
             max_queued_messages 0\n\
             log_dest file {}\n\
             log_type all\n",
            dir.display(),
            dir.join("mosquitto.log").display()
        );
        // As root, Mosquitto switches to its own user unless told otherwise, and that user cannot
        // read a private temporary directory.
        if is_root() {
            conf.push_str("user root\n");
        }
        if opts.users.is_empty() {
            conf.push_str("allow_anonymous true\n");
        } else {
            let pw = dir.join("passwords");
            std::fs::write(&pw, "").unwrap();
            for (u, p) in &opts.users {
                let st = Command::new("mosquitto_passwd")
                    .args(["-b"])
                    .arg(&pw)
                    .args([u, p])
                    .status()
                    .expect("mosquitto_passwd runs");
                assert!(st.success());
            }
            conf.push_str(&format!(
                "allow_anonymous false\npassword_file {}\n",
                pw.display()
            ));
        }
        for l in &opts.listener {
            conf.push_str(l);
            conf.push('\n');
        }
        let conf_path = dir.join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut b = Broker {
            port,
            dir,
            conf: conf_path,
            bin,
            child: None,
        };
        b.restart();
        Some(b)
    }

    /// Starts the broker again (same port, configuration and persisted state) and waits until
    /// it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker with SIGTERM (it saves its database) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Sends `sig` (`STOP`, `CONT`, …) to the broker process.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let st = Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(st.success());
        }
    }

    /// The broker's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A broker stopped with SIGSTOP by a failed test still dies with SIGKILL.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One message a subscriber got.
#[derive(Debug, Clone)]
pub struct Got {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A persistent-session subscriber (QoS 1, fixed client id) on `filter`: it keeps what the
/// broker queued for it across a broker restart.
pub struct Subscriber {
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// Connects to the broker at `port` and subscribes; returns once the subscription is
    /// acknowledged. `login`: user and password.
    pub fn start(port: u16, filter: &str, login: Option<(&str, &str)>) -> Subscriber {
        use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
        let id = format!("test-sub-{}", fastrand::u64(..));
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        if let Some((u, p)) = login {
            o.set_credentials(u, p);
        }
        let (client, mut conn) = Client::new(o, 1000);
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let subscribed = Arc::new(AtomicBool::new(false));
        let thread = {
            let got = got.clone();
            let stop = stop.clone();
            let subscribed = subscribed.clone();
            let filter = filter.to_owned();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match conn.recv_timeout(Duration::from_millis(100)) {
                        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                            let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        }
                        Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                            subscribed.store(true, Ordering::SeqCst)
                        }
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            got.lock().unwrap().push(Got {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            });
                        }
                        Ok(Ok(_)) => {}
                        // The broker is away: the next call reconnects; do not spin.
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(50)),
                        Err(_) => {}
                    }
                }
            })
        };
        let deadline = Instant::now() + WAIT;
        while !subscribed.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "subscription not acknowledged");
            std::thread::sleep(Duration::from_millis(10));
        }
        Subscriber {
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything received so far.
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received (at most [`WAIT`]).
    pub fn wait(&self, what: &str, mut done: impl FnMut(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {} messages",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
