//! Holes a second, independent pass found, tried against the real binary: a secure device's key
//! must never leave the gateway, an unknown EEP must not stop it, `devices forget` must take effect
//! in the running daemon and stay, and a neighbour's teach-in flood must not fill the journal.
//! The simulated stick runs on a real pseudo-terminal; particular telegrams are injected into it.
//! Every wait is bounded and waits for the condition it needs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enocean_agent::esp3::{Frame, PacketType};
use enocean_agent::sim::building::ScriptOptions;
use enocean_agent::sim::{SimConfig, SimStick};
use serde_json::Value;

/// Bodies received by one loopback webhook receiver (answers 200 to everything).
#[derive(Clone, Default)]
struct Bodies(Arc<Mutex<Vec<Vec<u8>>>>);

impl Bodies {
    fn records(&self) -> Vec<Value> {
        let bodies = self.0.lock().unwrap().clone();
        bodies
            .iter()
            .flat_map(|b| {
                let v: Value = serde_json::from_slice(b).unwrap();
                v["records"].as_array().unwrap().clone()
            })
            .collect()
    }
    fn of(&self, sensor: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["sensor"]["id"] == sensor)
            .collect()
    }
    fn all_bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().concat()
    }
}

fn receiver() -> (String, Bodies, Arc<tiny_http::Server>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let bodies = Bodies::default();
    let (s, b) = (server.clone(), bodies.clone());
    std::thread::spawn(move || {
        for mut req in s.incoming_requests() {
            let mut body = Vec::new();
            let _ = req.as_reader().read_to_end(&mut body);
            b.0.lock().unwrap().push(body);
            let _ = req.respond(tiny_http::Response::empty(200));
        }
    });
    (format!("http://127.0.0.1:{port}/in"), bodies, server)
}

fn write_config(dir: &Path, link: &Path, urls: &[&str], devices: &str) -> PathBuf {
    let mut text = format!(
        "[gateway]\nid = \"holes\"\n\n[serial]\nport = \"{}\"\n\n[storage]\npath = \"{}\"\ncommit_window = \"50ms\"\n\n[learn]\nenabled = true\n{devices}\n",
        link.display(),
        dir.join("outbox.db").display()
    );
    for (i, url) in urls.iter().enumerate() {
        text += &format!(
            "\n[[webhook]]\nname = \"hook{i}\"\nurl = \"{url}\"\ntimeout = \"2s\"\nbackoff_base = \"50ms\"\nbatch_max = {}\n",
            1 + 4 * i
        );
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start_agent(config: &Path, log: &Path, level: &str) -> common::Reaper {
    common::Reaper(
        common::agent_command()
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", level)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("agent starts"),
    )
}

fn stop_agent(mut agent: common::Reaper) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(60);
    while agent.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "agent did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A quiet simulated building (few telegrams, no noise) on `link`, for injected telegrams.
fn quiet_sim(link: &Path) -> SimStick {
    SimStick::start(SimConfig {
        rate: 2.0,
        script: ScriptOptions {
            seed: 3,
            repeat_probability: 0.0,
            noise_probability: 0.0,
            bad_crc_probability: 0.0,
            teach_in_probability: 0.0,
        },
        link: Some(link.to_path_buf()),
        ..SimConfig::default()
    })
    .unwrap()
}

/// One RADIO_ERP1 frame: RORG, payload, sender, status 0, optional data with -55 dBm.
fn erp1(rorg: u8, payload: &[u8], sender: u32) -> Vec<u8> {
    let mut data = vec![rorg];
    data.extend_from_slice(payload);
    data.extend_from_slice(&sender.to_be_bytes());
    data.push(0);
    Frame::new(
        PacketType::RadioErp1,
        &data,
        &[1, 0xFF, 0xFF, 0xFF, 0xFF, 55, 0],
    )
    .unwrap()
    .encode()
}

use common::wait_until;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every 5-byte window of `key`, in the forms a leak could take: raw bytes, and hex (upper or
/// lower case) once separators of hex dumps (spaces, colons, commas, `0x`) are removed.
fn leaks(haystack: &[u8], key: &[u8]) -> Option<String> {
    let squeezed: String = String::from_utf8_lossy(haystack)
        .to_ascii_lowercase()
        .replace("0x", "")
        .chars()
        .filter(|c| !matches!(c, ' ' | ':' | ',' | '\n' | '\t' | '-'))
        .collect();
    for w in key.windows(5) {
        if haystack.windows(5).any(|h| h == w) {
            return Some(format!("raw bytes {}", hex::encode(w)));
        }
        let h = hex::encode(w);
        if squeezed.contains(&h) {
            return Some(format!("hex {h}"));
        }
    }
    None
}

#[test]
fn secure_teach_in_keys_never_leave_the_gateway_and_unknown_eeps_do_not_stop_it() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (url0, hook0, _s0) = receiver();
    let (url1, hook1, _s1) = receiver();
    // A device whose EEP no profile decodes (well-formed): a warning, not a stop.
    let config = write_config(
        dir.path(),
        &link,
        &[&url0, &url1],
        "\n[[device]]\nid = \"01FE0001\"\neep = \"A5-FE-01\"\nname = \"Vendor box\"\n",
    );
    let log = dir.path().join("agent.log");
    // One-telegram form: TEACH_IN_INFO 0x10 (part 0 of 1), SLF, a 24-bit RLC, the 16-byte key.
    let key_one: [u8; 16] = [
        0xC3, 0x5A, 0x91, 0x0E, 0x7B, 0xD2, 0x44, 0xA9, 0x18, 0xF6, 0x3D, 0x82, 0x6C, 0xE1, 0x57,
        0xB0,
    ];
    let mut one = vec![0x10, 0x8B, 0x00, 0x00, 0x2A];
    one.extend_from_slice(&key_one);
    // The PTM 215 two-part form (the `enocean` Python library's secure example telegrams): the key
    // is "EnOcean GmbH.13\0", 5 bytes in the first part and 11 in the second.
    let ptm_first = [0x24, 0x4B, 0xC0, 0xFF, 0x45, 0x6E, 0x4F, 0x63, 0x65];
    let ptm_second = [
        0x40, 0x61, 0x6E, 0x20, 0x47, 0x6D, 0x62, 0x48, 0x2E, 0x31, 0x33, 0x00,
    ];
    let key_ptm: Vec<u8> = [&ptm_first[4..], &ptm_second[1..]].concat();
    assert_eq!(key_ptm.len(), 16);
    runtime().block_on(async {
        let agent = start_agent(&config, &log, "trace");
        let sim = quiet_sim(&link);
        sim.inject(&erp1(0x35, &one, 0x01A0_B0C0));
        sim.inject(&erp1(0x35, &ptm_first, 0x019E_B63B));
        sim.inject(&erp1(0x35, &ptm_second, 0x019E_B63B));
        sim.inject(&erp1(0xA5, &[0x12, 0x34, 0x56, 0x08], 0x01FE_0001));
        for hook in [&hook0, &hook1] {
            wait_until(
                "three teach-in records and the vendor reading",
                &log,
                || {
                    hook.of("01A0B0C0").len() + hook.of("019EB63B").len() >= 3
                        && !hook.of("01FE0001").is_empty()
                },
            )
            .await;
        }
        // The unknown-EEP device: forwarded raw, its EEP named.
        let vendor = &hook0.of("01FE0001")[0];
        assert_eq!(vendor["sensor"]["eep"], "A5-FE-01");
        assert_eq!(vendor["sensor"]["name"], "Vendor box");
        assert_eq!(vendor["raw"]["payload"], "12345608");
        assert!(vendor["values"].as_object().unwrap().is_empty());
        // Secure teach-ins: teach_in records naming sender and kind, key withheld.
        let records = [hook0.of("01A0B0C0"), hook0.of("019EB63B")].concat();
        assert_eq!(records.len(), 3);
        for r in &records {
            assert_eq!(r["kind"], "teach_in", "{r}");
            assert_eq!(r["teach_in"]["type"], "secure");
            assert_eq!(r["teach_in"]["key"], "withheld");
            assert_eq!(r["raw"]["rorg"], "35");
            assert_eq!(r["raw"]["payload"], "");
            assert!(r["values"].as_object().unwrap().is_empty());
        }
        let parts: Vec<(u64, u64, bool)> = hook0
            .of("019EB63B")
            .iter()
            .map(|r| {
                let s = &r["teach_in"]["secure"];
                (
                    s["part"].as_u64().unwrap(),
                    s["parts"].as_u64().unwrap(),
                    s["ptm"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(parts, [(0, 2, true), (1, 0, false)]);
        // The outbox and its WAL while the agent runs, then after a clean stop.
        let files = |when: &str| -> Vec<(String, Vec<u8>)> {
            ["outbox.db", "outbox.db-wal", "outbox.db-shm"]
                .iter()
                .filter_map(|f| {
                    std::fs::read(dir.path().join(f))
                        .ok()
                        .map(|b| (format!("{f} ({when})"), b))
                })
                .collect()
        };
        let mut haystacks = files("running");
        stop_agent(agent);
        sim.stop().await;
        haystacks.extend(files("stopped"));
        haystacks.push(("hook0 bodies".into(), hook0.all_bytes()));
        haystacks.push(("hook1 bodies".into(), hook1.all_bytes()));
        let log_text = std::fs::read(&log).unwrap();
        assert!(
            String::from_utf8_lossy(&log_text).contains("A5-FE-01"),
            "the unknown EEP was not warned about"
        );
        haystacks.push(("trace log".into(), log_text));
        for (what, bytes) in &haystacks {
            for key in [&key_one[..], &key_ptm[..]] {
                if let Some(found) = leaks(bytes, key) {
                    panic!("key material in {what}: {found}");
                }
            }
        }
    });
}

#[test]
fn a_forgotten_device_stays_forgotten_in_the_running_daemon_and_after_a_restart() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (url, hook, _s) = receiver();
    // 01B00002 is configured without an EEP: it learns one from its teach-in.
    let config = write_config(
        dir.path(),
        &link,
        &[&url],
        "\n[[device]]\nid = \"01B00002\"\nname = \"Configured\"\n",
    );
    let log = dir.path().join("agent.log");
    // 4BS teach-ins: A5-02-05 (manufacturer 00D) and A5-04-01.
    let teach_a5_02_05 = [0x08, 0x28, 0x0D, 0x80];
    let teach_a5_04_01 = [0x10, 0x08, 0x0D, 0x80];
    let reading = |n: u8| [0x00, 0x80, n, 0x08];
    let devices = |cfg: &Path| -> String {
        let out = common::agent_command()
            .args(["devices", "--config"])
            .arg(cfg)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let row = |listing: &str, id: &str| -> String {
        listing
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or("")
            .to_owned()
    };
    runtime().block_on(async {
        let agent = start_agent(&config, &log, "info");
        let sim = quiet_sim(&link);
        sim.inject(&erp1(0xA5, &teach_a5_02_05, 0x01B0_0001));
        sim.inject(&erp1(0xA5, &teach_a5_04_01, 0x01B0_0002));
        sim.inject(&erp1(0xA5, &reading(1), 0x01B0_0001));
        sim.inject(&erp1(0xA5, &reading(1), 0x01B0_0002));
        wait_until("decoded readings of both learned devices", &log, || {
            hook.of("01B00001").len() == 1 && hook.of("01B00002").len() == 1
        })
        .await;
        assert_eq!(hook.of("01B00001")[0]["sensor"]["eep"], "A5-02-05");
        assert_eq!(hook.of("01B00002")[0]["sensor"]["eep"], "A5-04-01");
        assert!(row(&devices(&config), "01B00001").contains("learned"));
        for id in ["01B00001", "01B00002"] {
            let out = common::agent_command()
                .args(["devices", "forget", id, "--config"])
                .arg(&config)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        wait_until("the daemon to apply both forgets", &log, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("device 01B00001 forgotten") && text.contains("device 01B00002 forgotten")
        })
        .await;
        sim.inject(&erp1(0xA5, &reading(2), 0x01B0_0001));
        sim.inject(&erp1(0xA5, &reading(2), 0x01B0_0002));
        wait_until("the readings after the forget", &log, || {
            hook.of("01B00001").len() == 2 && hook.of("01B00002").len() == 2
        })
        .await;
        for id in ["01B00001", "01B00002"] {
            let after = &hook.of(id)[1];
            assert_eq!(
                after["sensor"]["eep"],
                Value::Null,
                "{id} still decoded: {after}"
            );
            assert!(after["values"].as_object().unwrap().is_empty());
        }
        // Last-heard facts are written every 10 s and must not bring the learned EEP back.
        let listing = devices(&config);
        assert!(!row(&listing, "01B00001").contains("learned"), "{listing}");
        stop_agent(agent);
        let listing = devices(&config);
        assert!(!row(&listing, "01B00001").contains("learned"), "{listing}");
        assert!(!row(&listing, "01B00002").contains("A5-04-01"), "{listing}");

        // After a restart: still forgotten, until a new teach-in.
        let log2 = dir.path().join("agent2.log");
        let agent = start_agent(&config, &log2, "info");
        sim.inject(&erp1(0xA5, &reading(3), 0x01B0_0001));
        wait_until("a reading after the restart", &log2, || {
            hook.of("01B00001").len() == 3
        })
        .await;
        assert_eq!(hook.of("01B00001")[2]["sensor"]["eep"], Value::Null);
        sim.inject(&erp1(0xA5, &teach_a5_02_05, 0x01B0_0001));
        sim.inject(&erp1(0xA5, &reading(4), 0x01B0_0001));
        wait_until("a reading after a new teach-in", &log2, || {
            hook.of("01B00001").len() == 4
        })
        .await;
        assert_eq!(hook.of("01B00001")[3]["sensor"]["eep"], "A5-02-05");
        stop_agent(agent);
        sim.stop().await;
    });
}

#[test]
fn a_teach_in_flood_from_strangers_writes_a_line_or_two() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (url, hook, _s) = receiver();
    let config = write_config(
        dir.path(),
        &link,
        &[&url],
        "\n[[device]]\nid = \"01C00001\"\neep = \"A5-02-05\"\n",
    );
    let log = dir.path().join("agent.log");
    const FLOOD: u32 = 2_000;
    runtime().block_on(async {
        let agent = start_agent(&config, &log, "info");
        let sim = quiet_sim(&link);
        let mut bytes = Vec::new();
        for i in 0..FLOOD {
            bytes.extend(erp1(0xA5, &[0x08, 0x28, 0x0D, 0x80], 0x0500_0000 + i));
        }
        // A reading from a configured device after the flood: once it is delivered, every
        // teach-in before it has been handled.
        bytes.extend(erp1(0xA5, &[0x00, 0x00, 0x80, 0x08], 0x01C0_0001));
        sim.inject(&bytes);
        wait_until("the reading after the flood", &log, || {
            !hook.of("01C00001").is_empty()
        })
        .await;
        stop_agent(agent);
        sim.stop().await;
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let teach_in_lines = || {
        text.lines()
            .filter(|l| l.contains("teach-in") && !l.contains("stopped: "))
    };
    let lines = teach_in_lines().count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} teach-in lines for {FLOOD} strangers:\n{}",
        teach_in_lines().take(5).collect::<Vec<_>>().join("\n")
    );
    // Every one of them reached the agent (storage never holds up the reader).
    let stopped = text.lines().find(|l| l.contains("stopped: ")).unwrap();
    let seen: u32 = stopped
        .split(", ")
        .find_map(|p| p.strip_suffix(" teach-ins")?.parse().ok())
        .unwrap();
    assert!(seen >= FLOOD, "teach-ins were lost: {stopped}");
}

#[test]
fn a_chained_message_is_delivered_decoded_as_one_telegram() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (url, hook, _s) = receiver();
    let config = write_config(
        dir.path(),
        &link,
        &[&url],
        "\n[[device]]\nid = \"01D00001\"\neep = \"D2-01-12\"\nname = \"Actuator\"\n",
    );
    let log = dir.path().join("agent.log");
    runtime().block_on(async {
        let agent = start_agent(&config, &log, "info");
        let sim = quiet_sim(&link);
        // D2-01 measurement "07000036EE80" (1 kWh on channel 0) in two parts, the second first
        // (repeaters reorder), the first part repeated.
        let first = [0x40, 0x00, 0x06, 0xD2, 0x07, 0x00, 0x00];
        let second = [0x41, 0x36, 0xEE, 0x80];
        sim.inject(&erp1(0x40, &second, 0x01D0_0001));
        sim.inject(&erp1(0x40, &first, 0x01D0_0001));
        sim.inject(&erp1(0x40, &first, 0x01D0_0001));
        // A chain that never completes (its second part is lost).
        sim.inject(&erp1(
            0x40,
            &[0x80, 0x00, 0x06, 0xD2, 0x07, 0x00, 0x00],
            0x01D0_0001,
        ));
        wait_until("the reassembled reading", &log, || {
            !hook.of("01D00001").is_empty()
        })
        .await;
        stop_agent(agent);
        sim.stop().await;
    });
    let records = hook.of("01D00001");
    assert_eq!(
        records.len(),
        1,
        "one reading for the whole chain: {records:?}"
    );
    let r = &records[0];
    assert_eq!(r["sensor"]["eep"], "D2-01-12");
    assert_eq!(r["raw"]["rorg"], "D2");
    assert_eq!(r["raw"]["payload"], "07000036EE80");
    assert_eq!(r["values"]["energy"]["value"], 1.0, "{r}");
}

#[test]
fn a_dead_sender_thread_stops_the_daemon_with_an_error() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (url, _hook, _s) = receiver();
    let config = write_config(dir.path(), &link, &[&url], "");
    let log = dir.path().join("agent.log");
    runtime().block_on(async {
        let mut agent = common::Reaper(
            common::agent_command()
                .args(["run", "--config"])
                .arg(&config)
                .env("RUST_LOG", "info")
                .env("ENOCEAN_AGENT_TEST_SENDER_PANIC", "1")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let sim = quiet_sim(&link);
        let until = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = agent.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < until,
                "the daemon went on with a dead sender:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        sim.stop().await;
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(1), "{text}");
        assert!(
            text.contains("1 webhook sender and 0 MQTT output thread(s) died"),
            "{text}"
        );
    });
}
