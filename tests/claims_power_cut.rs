//! "A power cut loses at most the readings of the last commit window that had not been
//! delivered." A real power cut cannot be made here: `outbox_crash` and `agent_e2e` SIGKILL the
//! writer at random points (the page cache survives a SIGKILL), `outbox_store` checks on a real
//! file when the daemon's outbox flushes its commits (one window after, unless every output came
//! past them; always at a stop). This file checks the connection settings that promise rests on:
//! WAL mode, persisted in the file; `synchronous=FULL` (a transaction is on the disk when its
//! commit returns) for every connection `schema::open` gives (the command line's, the device and
//! key tables'); `synchronous=NORMAL` only where a lost commit costs a re-send, never a reading:
//! an output's sender (`Store::open_sender`, acknowledgements) — the daemon's outbox relaxes its
//! own connection the same way and flushes by its window instead.

use enocean_agent::outbox::schema;

#[test]
fn every_outbox_connection_syncs_each_commit_to_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let conn = schema::open(&path).expect("open");
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        sync, 2,
        "synchronous must be FULL (2), not NORMAL (1) or OFF (0)"
    );
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    drop(conn);
    // A second open (the daemon after a reboot, or the CLI) gets the same settings, and the WAL
    // mode is a property of the file itself.
    let plain = rusqlite::Connection::open(&path).unwrap();
    let mode: String = plain
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    drop(plain);
    let again = schema::open(&path).expect("reopen");
    let sync: i64 = again
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2);
}

#[test]
fn the_command_lines_connection_flushes_each_commit_and_a_senders_does_not() {
    use enocean_agent::outbox::{Outbox, StorageConfig, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let _ob = Outbox::open(&StorageConfig::at(&path), &[]).unwrap();
    assert_eq!(
        Store::open(&path).unwrap().synchronous().unwrap(),
        2,
        "a plain connection (the command line's, the device and key tables') is FULL"
    );
    assert_eq!(
        Store::open_sender(&path).unwrap().synchronous().unwrap(),
        1,
        "a sender's acknowledgements are NORMAL: flushed with the next reading or checkpoint"
    );
}
