//! "A power cut loses at most the readings of the last commit window; nothing reported committed is
//! ever lost." A real power cut cannot be made here: `outbox_crash` and `agent_e2e` SIGKILL the
//! writer at random points (the page cache survives a SIGKILL), so this file checks the other half
//! of the promise on a real file: every connection the outbox opens is in WAL mode with
//! `synchronous=FULL`, the SQLite setting under which a transaction is on the disk (WAL fsynced)
//! when the commit returns, and another process opening the file finds WAL mode persisted.

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
