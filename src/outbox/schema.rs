//! Opening the SQLite file: its permissions (never readable by other users, whatever the umask),
//! pragmas (WAL, `synchronous=FULL`), schema versions by `user_version` with forward migrations,
//! and moving a corrupt file aside.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::OutboxError;

/// Forward migrations; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: telemetry, per-webhook state and cursor, deliveries that needed a retry, the attempt log.
    "
    CREATE TABLE telemetry (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL,
        device       TEXT NOT NULL,
        committed_at INTEGER NOT NULL,
        body         TEXT NOT NULL
    );
    CREATE TABLE webhook (
        name                 TEXT PRIMARY KEY,
        configured           INTEGER NOT NULL DEFAULT 1,
        enabled              INTEGER NOT NULL DEFAULT 1,
        deactivated_at       TEXT,
        deactivated_reason   TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        cursor               INTEGER NOT NULL DEFAULT 0,
        last_success         TEXT,
        last_failure         TEXT
    );
    CREATE TABLE delivery (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook       TEXT NOT NULL,
        uuid          TEXT NOT NULL,
        event         TEXT NOT NULL,
        seq_first     INTEGER,
        seq_last      INTEGER,
        telemetry_ids TEXT NOT NULL,
        state         TEXT NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        last_status   INTEGER,
        last_error    TEXT,
        body          BLOB NOT NULL
    );
    CREATE INDEX delivery_by_state ON delivery (webhook, state, id);
    -- Compact on purpose (one row per attempt is the main write per delivered telegram):
    -- at = unix ms, delivery_id = 16 UUID bytes, seq_last NULL when equal to seq_first,
    -- trigger 0 auto / 1 manual / 2 test, outcome 0 delivered / 1 failed / 2 gone / 3 offline.
    CREATE TABLE attempt_log (
        id           INTEGER PRIMARY KEY,
        at           INTEGER NOT NULL,
        webhook      TEXT NOT NULL,
        delivery_id  BLOB NOT NULL,
        delivery_row INTEGER,
        seq_first    INTEGER,
        seq_last     INTEGER,
        trigger      INTEGER NOT NULL,
        outcome      INTEGER NOT NULL,
        status       INTEGER,
        error        TEXT,
        latency_ms   INTEGER NOT NULL,
        response     TEXT
    );
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    ",
    // 2: deliveries that recover by themselves (docs/outbox-and-webhooks.md, Policy).
    // webhook.phase: the delivery policy's phase as last persisted (active, retrying, offline,
    //   probing, gone); an automatic deactivation is probed, a 410 Gone is not.
    // webhook.next_attempt_at: unix ms of the next retry or probe (NULL: none scheduled).
    // webhook.last_failure_reason: error class of the last failed attempt (`http_503`, `timeout`).
    // webhook.batch_end: last seq of a partial batch posted but maybe not acknowledged; a
    //   delivery rebuilt after a crash ends there, so its id and bytes do not change.
    // webhook.resets: bumped by `webhook enable`; the sender starts its policy afresh when it
    //   changes.
    // delivery.requeue: 0 none, 1 rejected while the webhook kept failing (put back in the queue
    //   once if the webhook ends up deactivated), 2 already put back once.
    // Webhooks deactivated by an older version for consecutive failures are probed from now on.
    "
    ALTER TABLE webhook ADD COLUMN phase TEXT NOT NULL DEFAULT 'active';
    ALTER TABLE webhook ADD COLUMN next_attempt_at INTEGER;
    ALTER TABLE webhook ADD COLUMN last_failure_reason TEXT;
    ALTER TABLE webhook ADD COLUMN batch_end INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE webhook ADD COLUMN resets INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE delivery ADD COLUMN requeue INTEGER NOT NULL DEFAULT 0;
    UPDATE webhook SET phase = CASE WHEN deactivated_reason = '410 Gone' THEN 'gone' ELSE 'probing' END
        WHERE deactivated_at IS NOT NULL;
    ",
    // 3: the device tables (created by the device module before; IF NOT EXISTS keeps those),
    // the markers `devices forget` leaves for the running daemon, and telemetry rows found
    // unreadable (counted and listed, never skipped silently).
    "
    CREATE TABLE IF NOT EXISTS devices (
        id TEXT PRIMARY KEY,
        eep TEXT,
        name TEXT,
        source TEXT NOT NULL,
        manufacturer INTEGER,
        learned_at TEXT,
        last_seen TEXT,
        last_dbm INTEGER
    );
    CREATE TABLE IF NOT EXISTS device_forgets (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL
    );
    CREATE TABLE unreadable (
        seq      INTEGER PRIMARY KEY,
        found_at INTEGER NOT NULL,
        error    TEXT NOT NULL
    );
    ",
    // 4: true timestamps (src/clock.rs). The wall time at which a boot started, recorded once
    // the clock was synchronised during it: a reading received earlier in that boot gets
    // received_at = start_ms + its time since boot, the same in every render. One row per boot.
    "
    CREATE TABLE boot_clock (
        boot_id     TEXT PRIMARY KEY,
        start_ms    INTEGER NOT NULL,
        recorded_at INTEGER NOT NULL
    );
    ",
    // 5: secure devices (src/secure/store.rs): the key of a device taught in by radio, sealed
    // (AES-128 under the gateway's sealing key, kept in a separate file, plus a 4-byte tag), NULL
    // for a key from the configuration; kcv: the key check value of the key the rolling code
    // belongs to; slf: security level format (NULL for a configured device's row); next_rlc:
    // the lowest rolling code accepted next; times in unix ms.
    "
    CREATE TABLE secure_devices (
        id         TEXT PRIMARY KEY,
        sealed_key BLOB,
        kcv        BLOB NOT NULL,
        slf        INTEGER,
        ptm        INTEGER NOT NULL DEFAULT 0,
        next_rlc   INTEGER,
        taught_at  INTEGER,
        updated_at INTEGER NOT NULL
    );
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens (creating if needed) and migrates the database; pragmas for every connection. A new
/// file is created with [`file_mode`]; see [`restrict_permissions`] for existing ones.
pub fn open(path: &Path) -> Result<Connection, OutboxError> {
    create_private(path)?;
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("outbox: journal_mode is {mode}, not WAL");
    }
    // SQLite gives -wal and -shm the database file's mode; files left by an older version or
    // another program may be wider.
    restrict_permissions(path);
    conn.pragma_update(None, "synchronous", "FULL")?;
    // 512 KiB of page cache per connection (SQLite's default is 2 MiB): the workload appends and
    // reads by sequence, and a gateway has little memory to spare.
    conn.pragma_update(None, "cache_size", -512)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// The mode of a new database file: `0640` when its directory is set-group-ID (its files take
/// the directory's group, shared on purpose, e.g. with an operators' group that runs the CLI),
/// `0600` otherwise. Never readable by other users: the outbox holds every reading and the exact
/// bodies of failed deliveries.
pub fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.permissions().mode() & 0o2000 != 0 => 0o640,
        _ => 0o600,
    }
}

/// Creates the database file, empty, with [`file_mode`] exactly (the umask cannot widen or
/// narrow it), unless it exists. SQLite then opens it as a new database and creates its -wal and
/// -shm with the same mode.
fn create_private(path: &Path) -> Result<(), OutboxError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = file_mode(path);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(file) => {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(OutboxError::Io(std::io::Error::new(
            e.kind(),
            format!("cannot create {}: {e}", path.display()),
        ))),
    }
}

/// Takes access by other users away from the database and its -wal and -shm when they have it
/// (a file created by an older version, or copied in): logged, never fatal (a CLI user who does
/// not own the files cannot change them and only gets the warning).
pub fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o007 == 0 {
            continue;
        }
        let narrowed = mode & !0o007;
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(narrowed)) {
            Ok(()) => log::warn!(
                "outbox: {} was readable by every user (mode {mode:o}); now {narrowed:o}",
                file.display()
            ),
            Err(e) => log::warn!(
                "outbox: {} is readable by every user (mode {mode:o}) and cannot be changed: {e}",
                file.display()
            ),
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<(), OutboxError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(OutboxError::NewerSchema {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        log::info!("outbox: schema migrated to version {}", i + 1);
    }
    tx.commit()?;
    Ok(())
}

/// True when an error means the file is not a usable database (corrupt, not SQLite).
pub fn is_corruption(e: &OutboxError) -> bool {
    match e {
        OutboxError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
            matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
        }
        _ => false,
    }
}

/// Moves a corrupt database (and its WAL and shared-memory files) aside as
/// `<name>.corrupt-<time>`; returns the new path.
pub fn move_aside(path: &Path) -> Result<PathBuf, OutboxError> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut target = path.as_os_str().to_owned();
    target.push(format!(".corrupt-{stamp}"));
    let target = PathBuf::from(target);
    std::fs::rename(path, &target)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if side.exists() {
            let mut t = target.as_os_str().to_owned();
            t.push(suffix);
            let _ = std::fs::rename(&side, PathBuf::from(t));
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 file (as the first release wrote it) with one webhook deactivated for
    /// consecutive failures and one for a 410: after the migration the first is probed, the
    /// second stays gone, and deliveries get their `requeue` mark.
    #[test]
    fn version_1_deactivations_become_probing_or_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO webhook (name, deactivated_at, deactivated_reason, \
                 consecutive_failures) VALUES \
                 ('failing', '2026-11-20T10:00:00Z', '5 consecutive failed deliveries', 5), \
                 ('gone', '2026-11-20T10:00:00Z', '410 Gone', 0), ('fine', NULL, NULL, 0); \
                 INSERT INTO delivery (webhook, uuid, event, telemetry_ids, state, created_at, \
                 updated_at, body) VALUES ('failing', 'u', 'telemetry', 'x', 'failed', 't', 't', x'7b7d');",
            )
            .unwrap();
        }
        let conn = open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let phases: Vec<(String, String)> = conn
            .prepare("SELECT name, phase FROM webhook ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            phases,
            vec![
                ("failing".to_owned(), "probing".to_owned()),
                ("fine".to_owned(), "active".to_owned()),
                ("gone".to_owned(), "gone".to_owned()),
            ]
        );
        let requeue: i64 = conn
            .query_row("SELECT requeue FROM delivery", [], |r| r.get(0))
            .unwrap();
        assert_eq!(requeue, 0, "an old failed delivery stays failed");
    }
}
