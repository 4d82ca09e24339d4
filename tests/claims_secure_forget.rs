//! The README's promise "`devices forget ID` also drops a key taught in by radio", attacked end
//! to end: a PTM 215 is taught in by radio (the `enocean` Python library's published example
//! telegrams) through the simulated stick on a real pseudo-terminal, its press decodes, then the
//! operator runs `enocean-agent devices forget` while the daemon runs. The next telegram must be
//! rejected as `secure_unknown_key`, the `secure_devices` row must be gone from the SQLite file,
//! and after a restart a replay of the first press must still meet no key (a `secure_replay`
//! answer would mean the key or its rolling code came back).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enocean_agent::esp3::{Frame, PacketType};
use enocean_agent::sim::building::ScriptOptions;
use enocean_agent::sim::{SimConfig, SimStick};
use serde_json::Value;

const PTM: u32 = 0x019E_B63B;

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

fn start_agent(config: &Path, log: &Path) -> common::Reaper {
    common::Reaper(
        common::agent_command()
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("agent starts"),
    )
}

use common::wait_until;

fn secure_rows(db: &Path) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row(
        "SELECT count(*) FROM secure_devices WHERE id = ?1",
        [format!("{PTM:08X}")],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_forgotten_radio_key_is_gone_from_the_running_daemon_the_file_and_the_next_run() {
    if !common::pty_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("stick");
    let db = dir.path().join("outbox.db");
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!(
        "http://127.0.0.1:{}/in",
        server.server_addr().to_ip().unwrap().port()
    );
    let records: Arc<Mutex<Vec<Value>>> = Arc::default();
    {
        let (s, r) = (server.clone(), records.clone());
        std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = Vec::new();
                let _ = req.as_reader().read_to_end(&mut body);
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    r.lock()
                        .unwrap()
                        .extend(v["records"].as_array().cloned().unwrap_or_default());
                }
                let _ = req.respond(tiny_http::Response::empty(200));
            }
        });
    }
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"forget\"\n[serial]\nport = \"{}\"\n[storage]\npath = \"{}\"\ncommit_window = \"50ms\"\n\
             [learn]\nenabled = true\n\
             [[webhook]]\nname = \"hook\"\nurl = \"{url}\"\nbackoff_base = \"50ms\"\n",
            link.display(),
            db.display()
        ),
    )
    .unwrap();
    let ptm_id = format!("{PTM:08X}");
    let of_ptm = |records: &Arc<Mutex<Vec<Value>>>| -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["sensor"]["id"] == ptm_id.as_str())
            .filter(|r| seen.insert(r["id"].as_str().unwrap_or_default().to_owned()))
            .cloned()
            .collect()
    };
    let ptm_first = [0x24, 0x4B, 0xC0, 0xFF, 0x45, 0x6E, 0x4F, 0x63, 0x65];
    let ptm_second = [
        0x40, 0x61, 0x6E, 0x20, 0x47, 0x6D, 0x62, 0x48, 0x2E, 0x31, 0x33, 0x00,
    ];
    let pressed = [0xD0, 0xB5, 0x18, 0xFB];
    let released = [0x7B, 0xAE, 0xC8, 0x28];
    let (log1, log2) = (dir.path().join("agent1.log"), dir.path().join("agent2.log"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut agent = start_agent(&config, &log1);
        let sim = SimStick::start(SimConfig {
            rate: 2.0,
            script: ScriptOptions {
                seed: 9,
                repeat_probability: 0.0,
                noise_probability: 0.0,
                bad_crc_probability: 0.0,
                teach_in_probability: 0.0,
            },
            link: Some(link.clone()),
            ..SimConfig::default()
        })
        .unwrap();
        // Taught in by radio; the press decodes with the learned key.
        sim.inject(&erp1(0x35, &ptm_first, PTM));
        sim.inject(&erp1(0x35, &ptm_second, PTM));
        sim.inject(&erp1(0x30, &pressed, PTM));
        wait_until("the decoded press", &log1, || {
            of_ptm(&records)
                .iter()
                .any(|r| r["values"]["button"]["value"] == "a0")
        })
        .await;
        wait_until("the key stored in the file", &log1, || {
            secure_rows(&db) == 1
        })
        .await;

        // The operator forgets the device while the daemon runs.
        let out = common::agent_command()
            .args(["devices", "forget", &ptm_id, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        wait_until("the daemon to apply the forget", &log1, || {
            std::fs::read_to_string(&log1)
                .is_ok_and(|l| l.contains(&format!("device {ptm_id} forgotten")))
        })
        .await;
        // The next telegram (a fresh rolling code) meets no key.
        sim.inject(&erp1(0x30, &released, PTM));
        wait_until("the release rejected", &log1, || {
            of_ptm(&records)
                .iter()
                .any(|r| r["raw"]["payload"] == "7BAEC828")
        })
        .await;
        let release = of_ptm(&records)
            .into_iter()
            .find(|r| r["raw"]["payload"] == "7BAEC828")
            .unwrap();
        assert_eq!(release["decode_error"], "secure_unknown_key", "{release}");
        assert!(
            release["values"].as_object().is_none_or(|v| v.is_empty()),
            "{release}"
        );
        assert!(agent.terminate().success());
        // Stopped (the rolling code and teach-in writes flushed): the row did not come back.
        assert_eq!(secure_rows(&db), 0, "the forgotten key is back in the file");

        // Next run: the captured first press replayed still meets no key.
        let before = of_ptm(&records).len();
        let mut agent = start_agent(&config, &log2);
        sim.inject(&erp1(0x30, &pressed, PTM));
        wait_until("the replayed press after the restart", &log2, || {
            of_ptm(&records).len() > before
        })
        .await;
        let replay = of_ptm(&records).pop().unwrap();
        assert_eq!(replay["raw"]["payload"], "D0B518FB", "{replay}");
        assert_eq!(replay["decode_error"], "secure_unknown_key", "{replay}");
        assert!(agent.terminate().success());
        assert_eq!(secure_rows(&db), 0);
        sim.stop().await;
    });
}
