//! A corrupt outbox on a real file: the fresh database never reuses a seq handed out before,
//! a damaged row is counted and listed (not only logged), and `outbox salvage` brings back the
//! undelivered readings still readable from the file moved aside.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use enocean_agent::outbox::{Outbox, Store};

fn max_seq(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT coalesce(max(seq), 0) FROM telemetry", [], |r| {
            r.get(0)
        })
        .unwrap()
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\npath = \"{}\"\nmin_free_bytes = 0\n[[webhook]]\nname = \"w\"\nurl = \"http://127.0.0.1:9/x\"\n",
            dir.join("outbox.db").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_fresh_outbox_after_corruption_never_reuses_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let mut ob = Outbox::open(&s, &["w"]).unwrap();
    enqueue_n(&mut ob, "0180A3F2", 25);
    drop(ob);
    let before = max_seq(&s.path);
    assert_eq!(before, 25);
    // The file is destroyed: its header overwritten, as a power cut on a bad card can do.
    let mut bytes = std::fs::read(&s.path).unwrap();
    bytes[..100].fill(0x5A);
    std::fs::write(&s.path, bytes).unwrap();
    let _ = std::fs::remove_file(dir.path().join("outbox.db-wal"));
    let mut ob = Outbox::open(&s, &["w"]).unwrap();
    let moved = ob.recovered_from().expect("moved aside").to_path_buf();
    assert!(moved.exists());
    enqueue_n(&mut ob, "0180A3F2", 3);
    drop(ob);
    let after: Vec<i64> = {
        let c = rusqlite::Connection::open(&s.path).unwrap();
        let mut st = c.prepare("SELECT seq FROM telemetry ORDER BY seq").unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(after.len(), 3);
    assert!(
        after.iter().all(|&seq| seq > before),
        "seqs {after:?} reuse numbers up to {before}"
    );
}

#[test]
fn a_damaged_row_is_counted_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let s = storage(dir.path());
    let mut ob = Outbox::open(&s, &["w"]).unwrap();
    enqueue_n(&mut ob, "0180A3F2", 5);
    drop(ob);
    rusqlite::Connection::open(&s.path)
        .unwrap()
        .execute(
            "UPDATE telemetry SET body = '{\"id\": broken' WHERE seq = 3",
            [],
        )
        .unwrap();
    // What a sender does when it reads the queue (twice: listed once).
    let store = Store::open(&s.path).unwrap();
    for _ in 0..2 {
        let rows = store.telemetry_after(0, 10).unwrap();
        assert_eq!(rows.len(), 5);
        assert!(rows[2].2.is_none() && rows[1].2.is_some());
    }
    let (n, list) = store.unreadable(10).unwrap();
    assert_eq!((n, list[0].0), (1, 3));
    let out = common::agent_command()
        .args(["outbox", "status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unreadable    1 stored readings cannot be read") && text.contains("seq 3"),
        "{text}"
    );
}

#[test]
fn salvage_imports_the_undelivered_readings_of_a_file_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let old_dir = dir.path().join("old");
    std::fs::create_dir(&old_dir).unwrap();
    // The old outbox: 10 readings, the first 4 delivered (cursor 4).
    let old = storage(&old_dir);
    let mut ob = Outbox::open(&old, &["w"]).unwrap();
    let ids = enqueue_n(&mut ob, "0180A3F2", 10);
    drop(ob);
    let c = rusqlite::Connection::open(&old.path).unwrap();
    c.execute("UPDATE webhook SET cursor = 4", []).unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    drop(c);
    let moved = dir.path().join("outbox.db.corrupt-20261204T000000Z");
    std::fs::rename(&old.path, &moved).unwrap();
    // The new outbox, with a reading of its own.
    let config = write_config(dir.path());
    let s = storage(dir.path());
    let mut ob = Outbox::open(&s, &["w"]).unwrap();
    enqueue_n(&mut ob, "0180A3F3", 1);
    drop(ob);
    let salvage = |expect: &str| {
        let out = common::agent_command()
            .args(["outbox", "salvage"])
            .arg(&moved)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(expect), "{text}");
    };
    salvage("salvaged 6 readings");
    let store = Store::open(&s.path).unwrap();
    for id in &ids[4..] {
        assert!(store.has_telemetry(id).unwrap(), "{id} not imported");
    }
    for id in &ids[..4] {
        assert!(!store.has_telemetry(id).unwrap(), "delivered {id} imported");
    }
    // Twice is harmless.
    salvage("salvaged 0 readings");
    salvage("6 already here");
    let out = Command::new(env!("CARGO_BIN_EXE_enocean-agent"))
        .args(["outbox", "salvage", "/nonexistent/file", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}
