//! Secure telegrams end to end through `enocean-agent run` and the simulated stick on a real
//! pseudo-terminal: a PTM 215 taught in by radio (the `enocean` Python library's published
//! example telegrams) and a sensor whose key comes from a `key_file`, the agent restarted in
//! between. After the restart the stored key and rolling code still decode the next telegram,
//! a telegram accepted before the restart is rejected as a replay, and the keys appear in no
//! log line (trace level), no POST body, no record, no `devices` listing and not in the clear in
//! the database files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use cmac::{Cmac, Mac};
use enocean_agent::esp3::{Frame, PacketType};
use enocean_agent::sim::building::ScriptOptions;
use enocean_agent::sim::{SimConfig, SimStick};
use serde_json::Value;

const PTM: u32 = 0x019E_B63B;
const PTM_KEY: &[u8; 16] = b"EnOcean GmbH.13\0";
/// A temperature sensor (A5-02-05) sending 0x31 telegrams, 32-bit transmitted RLC, 4-byte CMAC,
/// VAES (SLF 0xF3); its key comes from the configuration.
const SENSOR: u32 = 0x0510_00F3;
const SENSOR_KEY: [u8; 16] = [
    0x9C, 0x41, 0x07, 0xE2, 0x5B, 0xA8, 0x33, 0xD6, 0x1F, 0x70, 0xCB, 0x84, 0x2E, 0x69, 0xF5, 0x12,
];

#[derive(Clone, Default)]
struct Bodies(Arc<Mutex<Vec<Vec<u8>>>>);

impl Bodies {
    /// The records of `sensor` in the order they first came, each once: delivery is at least
    /// once, and a record whose acknowledgement a SIGKILL lost comes again with its id.
    fn of(&self, sensor: &str) -> Vec<Value> {
        let bodies = self.0.lock().unwrap().clone();
        let mut seen = std::collections::HashSet::new();
        bodies
            .iter()
            .flat_map(|b| {
                let v: Value = serde_json::from_slice(b).unwrap();
                v["records"].as_array().unwrap().clone()
            })
            .filter(|r| r["sensor"]["id"] == sensor)
            .filter(|r| seen.insert(r["id"].as_str().unwrap_or_default().to_owned()))
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

fn erp1(rorg: u8, payload: &[u8], sender: u32) -> Vec<u8> {
    let mut data = vec![rorg];
    data.extend_from_slice(payload);
    data.extend_from_slice(&sender.to_be_bytes());
    data.push(0);
    Frame::new(
        PacketType::RadioErp1,
        &data,
        &[1, 0xFF, 0xFF, 0xFF, 0xFF, 50, 0],
    )
    .unwrap()
    .encode()
}

/// What the sensor sends: VAES over `rorg | data` with the RLC, the RLC, the CMAC — written
/// here on the RustCrypto crates, independently of the agent's code.
fn sensor_telegram(inner_rorg: u8, data: &[u8], rlc: u32) -> Vec<u8> {
    const VAES_INIT: [u8; 16] = [
        0x34, 0x10, 0xDE, 0x8F, 0x1A, 0xBA, 0x3E, 0xFF, 0x9F, 0x5A, 0x11, 0x71, 0x72, 0xEA, 0xCA,
        0xBD,
    ];
    let rlc_be = rlc.to_be_bytes();
    let mut block = VAES_INIT;
    for (b, r) in block.iter_mut().zip(rlc_be) {
        *b ^= r;
    }
    let mut block = block.into();
    Aes128::new(&SENSOR_KEY.into()).encrypt_block(&mut block);
    let mut enc: Vec<u8> = [&[inner_rorg][..], data].concat();
    for (d, k) in enc.iter_mut().zip(block.iter()) {
        *d ^= k;
    }
    let mut mac = <Cmac<Aes128> as KeyInit>::new(&SENSOR_KEY.into());
    mac.update(&[0x31]);
    mac.update(&enc);
    mac.update(&rlc_be);
    let tag = mac.finalize().into_bytes();
    enc.extend_from_slice(&rlc_be);
    enc.extend_from_slice(&tag[..4]);
    erp1(0x31, &enc, SENSOR)
}

fn start_agent(config: &Path, log: &Path) -> common::Reaper {
    common::Reaper(
        common::agent_command()
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("agent starts"),
    )
}

use common::wait_until;

fn log_has(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|l| l.contains(text))
}

/// Every 5-byte window of `key` as raw bytes, and as hex once hex-dump separators are removed.
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
        if squeezed.contains(&hex::encode(w)) {
            return Some(format!("hex {}", hex::encode(w)));
        }
    }
    None
}

fn write_config(dir: &Path, link: &Path, url: &str) -> PathBuf {
    std::fs::write(
        dir.join("sensor.key"),
        format!("{}\n", hex::encode_upper(SENSOR_KEY)),
    )
    .unwrap();
    let text = format!(
        "[gateway]\nid = \"secure\"\n\n[serial]\nport = \"{}\"\n\n[storage]\npath = \"{}\"\ncommit_window = \"50ms\"\n\n[learn]\nenabled = true\n\n\
         [[device]]\nid = \"{SENSOR:08X}\"\neep = \"A5-02-05\"\nname = \"Secure sensor\"\nkey_file = \"sensor.key\"\nslf = 0xF3\n\n\
         [[webhook]]\nname = \"hook\"\nurl = \"{url}\"\ntimeout = \"2s\"\nbackoff_base = \"50ms\"\nevents = [\"all\"]\n",
        link.display(),
        dir.join("outbox.db").display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn secure_devices_decode_across_a_restart_replays_are_rejected_and_keys_never_leak() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (url, hook, _server) = receiver();
    let config = write_config(dir.path(), &link, &url);
    let (log1, log2) = (dir.path().join("agent1.log"), dir.path().join("agent2.log"));
    let ptm_first = [0x24, 0x4B, 0xC0, 0xFF, 0x45, 0x6E, 0x4F, 0x63, 0x65];
    let ptm_second = [
        0x40, 0x61, 0x6E, 0x20, 0x47, 0x6D, 0x62, 0x48, 0x2E, 0x31, 0x33, 0x00,
    ];
    let pressed = [0xD0, 0xB5, 0x18, 0xFB];
    let released = [0x7B, 0xAE, 0xC8, 0x28];
    // 4BS A5-02-05 readings: DB1 0x80 and 0x40 (temperature falls as the raw value rises).
    let reading = |db1: u8| [0x00, 0x00, db1, 0x08];
    let ptm_id = format!("{PTM:08X}");
    let sensor_id = format!("{SENSOR:08X}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut agent = start_agent(&config, &log1);
        let sim = SimStick::start(SimConfig {
            rate: 2.0,
            script: ScriptOptions {
                seed: 5,
                repeat_probability: 0.0,
                noise_probability: 0.0,
                bad_crc_probability: 0.0,
                teach_in_probability: 0.0,
            },
            link: Some(link.clone()),
            ..SimConfig::default()
        })
        .unwrap();
        // Run 1: teach the PTM 215 in, press A0; the sensor sends one reading (RLC 1000).
        sim.inject(&erp1(0x35, &ptm_first, PTM));
        sim.inject(&erp1(0x35, &ptm_second, PTM));
        sim.inject(&erp1(0x30, &pressed, PTM));
        sim.inject(&sensor_telegram(0xA5, &reading(0x80), 1000));
        wait_until(
            "the teach-in, the press and the sensor reading",
            &log1,
            || hook.of(&ptm_id).len() >= 3 && !hook.of(&sensor_id).is_empty(),
        )
        .await;
        let ptm = hook.of(&ptm_id);
        assert_eq!(ptm[1]["teach_in"]["stored"], true, "{}", ptm[1]);
        assert_eq!(ptm[1]["teach_in"]["slf"]["rlc_bits"], 16);
        assert_eq!(ptm[1]["teach_in"]["key"], "withheld");
        let press = &ptm[2];
        assert_eq!(press["kind"], "telemetry");
        assert_eq!(press["sensor"]["eep"], "F6-02-01", "{press}");
        assert_eq!(press["values"]["button"]["value"], "a0", "{press}");
        assert_eq!(press["values"]["pressed"]["value"], true);
        assert_eq!(press["secure"]["rlc"], 0xC0FF);
        assert_eq!(press["raw"]["rorg"], "30");
        assert_eq!(press["raw"]["payload"], "D0B518FB");
        let first = &hook.of(&sensor_id)[0];
        assert!(
            first["values"]["temperature"]["value"].is_number(),
            "{first}"
        );
        assert_eq!(first["secure"]["rorg"], "A5");
        assert!(agent.terminate().success());

        // Run 2: the stored key and rolling codes are back.
        let mut agent = start_agent(&config, &log2);
        wait_until("the stick after the restart", &log2, || {
            log_has(&log2, "stick connected")
        })
        .await;
        // (b) Replays of telegrams accepted before the restart.
        sim.inject(&erp1(0x30, &pressed, PTM));
        sim.inject(&sensor_telegram(0xA5, &reading(0x80), 1000));
        // (a) The next telegrams decode.
        sim.inject(&erp1(0x30, &released, PTM));
        sim.inject(&sensor_telegram(0xA5, &reading(0x40), 1003));
        // A forged one: the last CMAC byte changed (the frame rebuilt with valid CRCs).
        let forged = {
            let good = sensor_telegram(0xA5, &reading(0x10), 1004);
            let data_len = usize::from(u16::from_be_bytes([good[1], good[2]]));
            let mut data = good[6..6 + data_len].to_vec();
            data[data_len - 6] ^= 0x01;
            let opt = good[6 + data_len..good.len() - 1].to_vec();
            Frame::new(PacketType::RadioErp1, &data, &opt)
                .unwrap()
                .encode()
        };
        sim.inject(&forged);
        // One from a sender without a key.
        sim.inject(&erp1(0x30, &pressed, 0x0199_0001));
        wait_until("six records after the restart", &log2, || {
            hook.of(&ptm_id).len() >= 5
                && hook.of(&sensor_id).len() >= 4
                && !hook.of("01990001").is_empty()
        })
        .await;
        let ptm = hook.of(&ptm_id);
        let replay = &ptm[3];
        assert_eq!(replay["decode_error"], "secure_replay", "{replay}");
        assert!(replay["values"].as_object().unwrap().is_empty());
        assert_eq!(replay["raw"]["payload"], "D0B518FB");
        let release = &ptm[4];
        assert_eq!(release["values"]["pressed"]["value"], false, "{release}");
        assert_eq!(release["secure"]["rlc"], 0xC100);
        let sensor = hook.of(&sensor_id);
        assert_eq!(sensor[1]["decode_error"], "secure_replay", "{}", sensor[1]);
        assert_eq!(sensor[2]["secure"]["rlc"], 1003, "{}", sensor[2]);
        let (t1, t2) = (
            first["values"]["temperature"]["value"].as_f64().unwrap(),
            sensor[2]["values"]["temperature"]["value"]
                .as_f64()
                .unwrap(),
        );
        assert!(t2 > t1, "DB1 0x40 is warmer than 0x80: {t1} {t2}");
        assert_eq!(
            sensor[3]["decode_error"], "secure_bad_cmac",
            "{}",
            sensor[3]
        );
        assert_eq!(hook.of("01990001")[0]["decode_error"], "secure_unknown_key");
        let listing = common::agent_command()
            .args(["devices", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(listing.status.success());
        assert!(agent.terminate().success());
        sim.stop().await;
        let stopped = std::fs::read_to_string(&log2).unwrap();
        assert!(
            stopped.contains("2 secure verified, 4 secure rejected"),
            "the stop line counts them: {stopped}"
        );
        // So does the `gateway.status` record of run 2's clean stop (delivered before the exit;
        // the metrics show the same counters). Run 1 heard four telegrams and, stopped that
        // early, may have sent no status at all (a stop status follows a start status).
        let stops = || {
            hook.of("")
                .into_iter()
                .filter(|r| {
                    r["kind"] == "gateway.status"
                        && r["status"]["reason"] == "stop"
                        && r["status"]["counters"]["telegrams"].as_u64() >= Some(6)
                })
                .collect::<Vec<_>>()
        };
        wait_until("run 2's stop status", &log2, || !stops().is_empty()).await;
        let stop_status = stops().pop().unwrap();
        assert_eq!(stop_status["status"]["reason"], "stop", "{stop_status}");
        assert_eq!(
            stop_status["status"]["counters"]["secure_verified"], 2,
            "{stop_status}"
        );
        assert_eq!(
            stop_status["status"]["counters"]["secure_rejected"], 4,
            "{stop_status}"
        );

        // (c) The keys: nowhere.
        let mut haystacks: Vec<(String, Vec<u8>)> = ["outbox.db", "outbox.db-wal", "outbox.db-shm"]
            .iter()
            .filter_map(|f| {
                std::fs::read(dir.path().join(f))
                    .ok()
                    .map(|b| (f.to_string(), b))
            })
            .collect();
        haystacks.push(("POST bodies".into(), hook.all_bytes()));
        haystacks.push(("run 1 trace log".into(), std::fs::read(&log1).unwrap()));
        haystacks.push(("run 2 trace log".into(), std::fs::read(&log2).unwrap()));
        haystacks.push(("devices listing".into(), listing.stdout));
        for (what, bytes) in &haystacks {
            for key in [&PTM_KEY[..], &SENSOR_KEY[..]] {
                if let Some(found) = leaks(bytes, key) {
                    panic!("key material in {what}: {found}");
                }
            }
        }
    });
}

/// The next rolling code stored for `id`, read from the database file as the CLI would.
fn stored_next_rlc(db: &Path, id: u32) -> Option<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row(
        "SELECT next_rlc FROM secure_devices WHERE id = ?1",
        [format!("{id:08X}")],
        |r| r.get::<_, Option<i64>>(0),
    )
    .ok()
    .flatten()
}

#[test]
fn a_rolling_code_stored_before_a_sigkill_still_rejects_the_replay() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let (url, hook, _server) = receiver();
    let config = write_config(dir.path(), &link, &url);
    let db = dir.path().join("outbox.db");
    let (log1, log2) = (dir.path().join("agent1.log"), dir.path().join("agent2.log"));
    let sensor_id = format!("{SENSOR:08X}");
    let reading = [0x00, 0x00, 0x80, 0x08];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut agent = start_agent(&config, &log1);
        let sim = SimStick::start(SimConfig {
            rate: 2.0,
            script: ScriptOptions {
                seed: 6,
                repeat_probability: 0.0,
                noise_probability: 0.0,
                bad_crc_probability: 0.0,
                teach_in_probability: 0.0,
            },
            link: Some(link.clone()),
            ..SimConfig::default()
        })
        .unwrap();
        sim.inject(&sensor_telegram(0xA5, &reading, 5000));
        // The rolling code is written after the group commit of its record; wait for that row,
        // then kill the agent without letting it stop cleanly.
        wait_until("the stored rolling code", &log1, || {
            stored_next_rlc(&db, SENSOR) == Some(5001)
        })
        .await;
        common::signal(&agent.0, "-KILL");
        common::wait_exit(&mut agent.0, Duration::from_secs(60));

        let mut agent = start_agent(&config, &log2);
        wait_until("the stick after the restart", &log2, || {
            log_has(&log2, "stick connected")
        })
        .await;
        sim.inject(&sensor_telegram(0xA5, &reading, 5000));
        sim.inject(&sensor_telegram(0xA5, &reading, 5001));
        wait_until("the replay and the next reading", &log2, || {
            hook.of(&sensor_id).len() >= 3
        })
        .await;
        let records = hook.of(&sensor_id);
        assert!(
            records[0]["values"]["temperature"].is_object(),
            "{}",
            records[0]
        );
        assert_eq!(
            records[1]["decode_error"], "secure_replay",
            "{}",
            records[1]
        );
        assert_eq!(records[2]["secure"]["rlc"], 5001, "{}", records[2]);
        assert!(agent.terminate().success());
        sim.stop().await;
    });
}
