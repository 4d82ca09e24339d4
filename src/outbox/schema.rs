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
    // 5: one time encoding (src/outbox/time.rs): integer milliseconds since the Unix epoch in
    // every table. The RFC 3339 text of webhook.deactivated_at / last_success / last_failure and
    // delivery.created_at / updated_at, and the nanosecond RFC 3339 strings of
    // devices.learned_at / last_seen, become milliseconds (SQLite's date parser: offsets
    // applied, fractions to the millisecond); a text that is not a time becomes 0
    // (1970-01-01: unknown, still set); NULL stays NULL. Each column is replaced by a new
    // INTEGER one of the same name (a TEXT column would store integers as text); the tables and
    // their other columns stay as they are.
    "
    ALTER TABLE webhook ADD COLUMN deactivated_at_ms INTEGER;
    ALTER TABLE webhook ADD COLUMN last_success_ms INTEGER;
    ALTER TABLE webhook ADD COLUMN last_failure_ms INTEGER;
    ALTER TABLE delivery ADD COLUMN created_at_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE delivery ADD COLUMN updated_at_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN learned_at_ms INTEGER;
    ALTER TABLE devices ADD COLUMN last_seen_ms INTEGER;
    UPDATE webhook SET
        deactivated_at_ms = CASE WHEN deactivated_at IS NULL THEN NULL
            WHEN deactivated_at GLOB '[0-9][0-9][0-9][0-9]-*' THEN coalesce(CAST(round(
                (julianday(deactivated_at) - 2440587.5) * 86400000.0) AS INTEGER), 0)
            ELSE 0 END,
        last_success_ms = CASE WHEN last_success IS NULL THEN NULL
            WHEN last_success GLOB '[0-9][0-9][0-9][0-9]-*' THEN coalesce(CAST(round(
                (julianday(last_success) - 2440587.5) * 86400000.0) AS INTEGER), 0)
            ELSE 0 END,
        last_failure_ms = CASE WHEN last_failure IS NULL THEN NULL
            WHEN last_failure GLOB '[0-9][0-9][0-9][0-9]-*' THEN coalesce(CAST(round(
                (julianday(last_failure) - 2440587.5) * 86400000.0) AS INTEGER), 0)
            ELSE 0 END;
    UPDATE delivery SET
        created_at_ms = CASE WHEN created_at IS NULL THEN NULL
            WHEN created_at GLOB '[0-9][0-9][0-9][0-9]-*' THEN coalesce(CAST(round(
                (julianday(created_at) - 2440587.5) * 86400000.0) AS INTEGER), 0)
            ELSE 0 END,
        updated_at_ms = CASE WHEN updated_at IS NULL THEN NULL
            WHEN updated_at GLOB '[0-9][0-9][0-9][0-9]-*' THEN coalesce(CAST(round(
                (julianday(updated_at) - 2440587.5) * 86400000.0) AS INTEGER), 0)
            ELSE 0 END;
    UPDATE devices SET
        learned_at_ms = CASE WHEN learned_at IS NULL THEN NULL
            WHEN learned_at GLOB '[0-9][0-9][0-9][0-9]-*' THEN coalesce(CAST(round(
                (julianday(learned_at) - 2440587.5) * 86400000.0) AS INTEGER), 0)
            ELSE 0 END,
        last_seen_ms = CASE WHEN last_seen IS NULL THEN NULL
            WHEN last_seen GLOB '[0-9][0-9][0-9][0-9]-*' THEN coalesce(CAST(round(
                (julianday(last_seen) - 2440587.5) * 86400000.0) AS INTEGER), 0)
            ELSE 0 END;
    ALTER TABLE webhook DROP COLUMN deactivated_at;
    ALTER TABLE webhook DROP COLUMN last_success;
    ALTER TABLE webhook DROP COLUMN last_failure;
    ALTER TABLE delivery DROP COLUMN created_at;
    ALTER TABLE delivery DROP COLUMN updated_at;
    ALTER TABLE devices DROP COLUMN learned_at;
    ALTER TABLE devices DROP COLUMN last_seen;
    ALTER TABLE webhook RENAME COLUMN deactivated_at_ms TO deactivated_at;
    ALTER TABLE webhook RENAME COLUMN last_success_ms TO last_success;
    ALTER TABLE webhook RENAME COLUMN last_failure_ms TO last_failure;
    ALTER TABLE delivery RENAME COLUMN created_at_ms TO created_at;
    ALTER TABLE delivery RENAME COLUMN updated_at_ms TO updated_at;
    ALTER TABLE devices RENAME COLUMN learned_at_ms TO learned_at;
    ALTER TABLE devices RENAME COLUMN last_seen_ms TO last_seen;
    ",
    // 6: devices reported `device.silent` and not heard since (src/health.rs): after a restart
    // they are not reported again, and `device.back` follows when they are heard. since_ms: unix
    // ms of the report.
    "
    CREATE TABLE device_silence (
        id       TEXT PRIMARY KEY,
        since_ms INTEGER NOT NULL
    );
    ",
    // 7: secure devices (src/secure/store.rs): the key of a device taught in by radio, sealed
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
    // 8: sequence numbers without AUTOINCREMENT (`Outbox`, src/outbox/mod.rs). SQLite's
    // AUTOINCREMENT rewrites its `sqlite_sequence` page with every commit, a second page per
    // reading in the WAL at a quiet building's rates. Instead, seq_floor.seq is a reservation:
    // every seq ever handed out by this database is below it. The daemon reserves blocks ahead
    // (one write per block) and hands out seqs from memory; any other writer (`outbox salvage`)
    // takes its seqs at the reservation and moves it up, which the daemon sees at its next
    // commit. The telemetry table loses AUTOINCREMENT in `drop_autoincrement` (a copy of the
    // table, done while it is small).
    "
    CREATE TABLE seq_floor (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        seq INTEGER NOT NULL
    );
    INSERT INTO seq_floor (one, seq) VALUES (1, 1 + max(
        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'telemetry'), 0),
        coalesce((SELECT max(seq) FROM telemetry), 0)));
    ",
];

/// Below this many stored readings, [`drop_autoincrement`] copies the telemetry table at open.
pub const REBUILD_MAX_ROWS: u64 = 20_000;

/// Copies the telemetry table into one without AUTOINCREMENT (see migration 8) when it still
/// has it and holds at most `max_rows` readings (a bigger backlog would need its size again in
/// free disk and time at start; the copy is tried again at the next start). The reservation in
/// `seq_floor` is raised over the old high-water mark first. Returns whether it copied.
pub fn drop_autoincrement(conn: &mut Connection, max_rows: u64) -> Result<bool, OutboxError> {
    let sql: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'telemetry'",
        [],
        |r| r.get(0),
    )?;
    if !sql.to_ascii_uppercase().contains("AUTOINCREMENT") {
        return Ok(false);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rows: i64 = tx.query_row("SELECT count(*) FROM telemetry", [], |r| r.get(0))?;
    if rows.max(0) as u64 > max_rows {
        return Ok(false);
    }
    tx.execute_batch(
        "
        UPDATE seq_floor SET seq = max(seq, 1 + max(
            coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'telemetry'), 0),
            coalesce((SELECT max(seq) FROM telemetry), 0)));
        CREATE TABLE telemetry_copy (
            seq          INTEGER PRIMARY KEY,
            id           TEXT NOT NULL,
            device       TEXT NOT NULL,
            committed_at INTEGER NOT NULL,
            body         TEXT NOT NULL
        );
        INSERT INTO telemetry_copy (seq, id, device, committed_at, body)
            SELECT seq, id, device, committed_at, body FROM telemetry ORDER BY seq;
        DROP TABLE telemetry;
        ALTER TABLE telemetry_copy RENAME TO telemetry;
        DELETE FROM sqlite_sequence WHERE name = 'telemetry';
        ",
    )?;
    tx.commit()?;
    Ok(true)
}

/// The page size of a new outbox file, in bytes (see [`open`]).
pub const PAGE_SIZE: u32 = 1024;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens (creating if needed) and migrates the database; pragmas for every connection. A new
/// file is created with [`file_mode`]; see [`restrict_permissions`] for existing ones.
pub fn open(path: &Path) -> Result<Connection, OutboxError> {
    create_private(path)?;
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // 1 KiB pages for a new file (no effect on an existing one): at a quiet building's rates
    // every reading is its own commit, and each commit writes every page it touches to the WAL
    // (then once more at the checkpoint), so the page size is the unit of what the SD card
    // sees per reading. A stored reading (a few hundred bytes) still fits in one page.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("outbox: journal_mode is {mode}, not WAL");
    }
    // SQLite gives -wal and -shm the database file's mode; files left by an older version or
    // another program may be wider.
    restrict_permissions(path);
    conn.pragma_update(None, "synchronous", "FULL")?;
    // 128 KiB of page cache per connection (SQLite's default is 2 MiB): the workload appends at
    // the end and reads by sequence, which needs little more than one path down each B-tree,
    // and a gateway has little memory to spare (four connections while the daemon runs).
    conn.pragma_update(None, "cache_size", -128)?;
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
    // RFC 3339 to the second without its separators: 20261205T090703Z.
    let stamp = format!("{:.0}", jiff::Timestamp::now()).replace(['-', ':'], "");
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
    fn new_files_get_small_pages_and_existing_files_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let page_size =
            |c: &Connection| -> u32 { c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap() };
        let fresh = open(&dir.path().join("new.db")).unwrap();
        assert_eq!(page_size(&fresh), PAGE_SIZE);
        // A file an older version created with SQLite's default pages opens and migrates as it is.
        let old_path = dir.path().join("old.db");
        {
            let c = Connection::open(&old_path).unwrap();
            c.execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL;")
                .unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
        }
        let old = open(&old_path).unwrap();
        assert_eq!(page_size(&old), 4096);
        let version: i64 = old
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// A version-7 file (telemetry with AUTOINCREMENT, its high-water mark above the stored
    /// rows): the reservation starts above every seq handed out, and the table is copied
    /// without AUTOINCREMENT only while it is small enough.
    #[test]
    fn version_7_seqs_move_to_the_reservation_and_small_tables_lose_autoincrement() {
        let dir = tempfile::tempdir().unwrap();
        let v7 = |name: &str, rows: i64| {
            let path = dir.path().join(name);
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for sql in &MIGRATIONS[..7] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 7).unwrap();
            for i in 1..=rows + 4 {
                tx.execute(
                    "INSERT INTO telemetry (id, device, committed_at, body) \
                     VALUES (?1, 'D', 0, x'00')",
                    [format!("t{i}")],
                )
                .unwrap();
            }
            // The newest four were delivered and cleaned up: their seqs stay handed out.
            tx.execute("DELETE FROM telemetry WHERE seq > ?1", [rows])
                .unwrap();
            tx.commit().unwrap();
            path
        };
        let auto = |c: &Connection| -> bool {
            let sql: String = c
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE name = 'telemetry'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            sql.contains("AUTOINCREMENT")
        };
        let floor = |c: &Connection| -> i64 {
            c.query_row("SELECT seq FROM seq_floor", [], |r| r.get(0))
                .unwrap()
        };

        let mut small = open(&v7("small.db", 5)).unwrap();
        assert_eq!(floor(&small), 10, "above seq 9, handed out and deleted");
        assert!(drop_autoincrement(&mut small, 5).unwrap());
        assert!(!auto(&small));
        assert_eq!(floor(&small), 10);
        let ids: Vec<(i64, String)> = small
            .prepare("SELECT seq, id FROM telemetry ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<(i64, String)> = (1..=5).map(|i| (i, format!("t{i}"))).collect();
        assert_eq!(ids, want, "every row copied with its seq");
        assert!(!drop_autoincrement(&mut small, 5).unwrap(), "done once");

        let mut big = open(&v7("big.db", 6)).unwrap();
        assert!(
            !drop_autoincrement(&mut big, 5).unwrap(),
            "too big to copy at start"
        );
        assert!(auto(&big), "kept as it is");
        assert_eq!(floor(&big), 11);

        let fresh = open(&dir.path().join("fresh.db")).unwrap();
        assert_eq!(floor(&fresh), 1);
    }

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
    /// A version-4 file with rows as version 4 wrote them (RFC 3339 text with milliseconds in
    /// `webhook` and `delivery`, `Timestamp::to_string()` with nanoseconds in `devices`, older
    /// forms without fractions or with an offset, a value that is not a time, NULLs): after the
    /// migration every time is an integer of milliseconds, every other value is unchanged, and
    /// the store reads the rows back.
    #[test]
    fn version_4_times_become_integer_milliseconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.db");
        let ts = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let success = ts("2026-11-20T10:00:00.123Z");
        let deactivated = ts("2026-11-20T09:59:58.5Z");
        let created = ts("2026-11-19T23:59:59.999Z");
        let updated = ts("2026-11-20T00:00:01.007Z");
        let learned = ts("2026-11-23T18:00:00.123456789Z");
        let seen = ts("2026-11-23T18:00:01.987654321Z");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for sql in &MIGRATIONS[..4] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 4).unwrap();
            tx.execute(
                "INSERT INTO telemetry (id, device, committed_at, body) VALUES ('t1', '0180A3F2', \
                 1763632800000, '{}')",
                [],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO webhook (name, deactivated_at, deactivated_reason, cursor, \
                 last_success, last_failure, phase, next_attempt_at, last_failure_reason) VALUES \
                 ('a', ?1, '5 consecutive failed deliveries', 7, ?2, ?3, 'probing', 1763632900000, \
                  'http_503'), \
                 ('b', NULL, NULL, 0, '2026-11-20T10:00:00Z', '2026-11-20T11:00:00+01:00', \
                  'active', NULL, NULL), \
                 ('c', 'soon', 'odd', 0, NULL, NULL, 'probing', NULL, NULL)",
                rusqlite::params![
                    format!("{deactivated:.3}"),
                    format!("{success:.3}"),
                    format!("{updated:.3}")
                ],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO delivery (webhook, uuid, event, seq_first, seq_last, telemetry_ids, \
                 state, attempts, created_at, updated_at, last_status, last_error, body, requeue) \
                 VALUES ('a', 'u1', 'telemetry', 1, 1, 't1', 'failed', 3, ?1, ?2, 400, \
                 'http_400', x'7b2261223a317d', 1), \
                 ('a', 'u2', 'telemetry', 2, 3, 't2,t3', 'pending', 1, 'garbage', ?2, NULL, \
                 'timeout', x'00ff', 0)",
                rusqlite::params![format!("{created:.3}"), format!("{updated:.3}")],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO devices (id, eep, name, source, manufacturer, learned_at, last_seen, \
                 last_dbm) VALUES ('0194E3B9', 'A5-02-05', NULL, 'learned', 13, ?1, ?2, -60), \
                 ('0180A3F2', NULL, NULL, 'unknown', NULL, NULL, '2026-11-23T18:00:00Z', -70), \
                 ('0180A3F3', NULL, NULL, 'unknown', NULL, 't1', NULL, NULL)",
                rusqlite::params![learned.to_string(), seen.to_string()],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO attempt_log (at, webhook, delivery_id, trigger, outcome, latency_ms) \
                 VALUES (1763632800123, 'a', x'00', 0, 1, 12)",
                [],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let conn = open(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let ms = |t: jiff::Timestamp| t.as_millisecond();
        type Row = (String, Option<i64>, Option<i64>, Option<i64>);
        let webhooks: Vec<Row> = conn
            .prepare("SELECT name, deactivated_at, last_success, last_failure FROM webhook ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            webhooks,
            vec![
                (
                    "a".into(),
                    Some(ms(deactivated)),
                    Some(ms(success)),
                    Some(ms(updated))
                ),
                (
                    "b".into(),
                    None,
                    Some(ms(ts("2026-11-20T10:00:00Z"))),
                    Some(ms(ts("2026-11-20T10:00:00Z")))
                ),
                ("c".into(), Some(0), None, None),
            ]
        );
        let others: (String, i64, String, Option<i64>, String, i64, i64) = conn
            .query_row(
                "SELECT deactivated_reason, cursor, phase, next_attempt_at, last_failure_reason, \
                 configured, enabled FROM webhook WHERE name = 'a'",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(
            others,
            (
                "5 consecutive failed deliveries".into(),
                7,
                "probing".into(),
                Some(1763632900000),
                "http_503".into(),
                1,
                1
            )
        );
        type Del = (
            String,
            i64,
            i64,
            String,
            i64,
            Option<i64>,
            Option<String>,
            Vec<u8>,
            i64,
        );
        let deliveries: Vec<Del> = conn
            .prepare(
                "SELECT uuid, created_at, updated_at, state, attempts, last_status, last_error, \
                 body, requeue FROM delivery ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            deliveries,
            vec![
                (
                    "u1".into(),
                    ms(created),
                    ms(updated),
                    "failed".into(),
                    3,
                    Some(400),
                    Some("http_400".into()),
                    br#"{"a":1}"#.to_vec(),
                    1
                ),
                (
                    "u2".into(),
                    0,
                    ms(updated),
                    "pending".into(),
                    1,
                    None,
                    Some("timeout".into()),
                    vec![0x00, 0xff],
                    0
                ),
            ]
        );
        type Dev = (
            String,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let devices: Vec<Dev> = conn
            .prepare("SELECT id, eep, learned_at, last_seen, last_dbm FROM devices ORDER BY id")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Nanoseconds go to the nearest millisecond.
        assert_eq!(ms(learned), 1_795_456_800_123);
        assert_eq!(
            devices,
            vec![
                (
                    "0180A3F2".into(),
                    None,
                    None,
                    Some(ms(ts("2026-11-23T18:00:00Z"))),
                    Some(-70)
                ),
                ("0180A3F3".into(), None, Some(0), None, None),
                (
                    "0194E3B9".into(),
                    Some("A5-02-05".into()),
                    Some(1_795_456_800_123),
                    Some(1_795_456_801_988),
                    Some(-60)
                ),
            ]
        );
        // Declared INTEGER (a TEXT column would turn integers into text), stored as integers.
        for (table, col) in [
            ("webhook", "deactivated_at"),
            ("webhook", "last_success"),
            ("webhook", "last_failure"),
            ("delivery", "created_at"),
            ("delivery", "updated_at"),
            ("devices", "learned_at"),
            ("devices", "last_seen"),
        ] {
            let declared: String = conn
                .query_row(
                    &format!("SELECT type FROM pragma_table_info('{table}') WHERE name = ?1"),
                    [col],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(declared, "INTEGER", "{table}.{col}");
            let texts: i64 = conn
                .query_row(
                    &format!("SELECT count(*) FROM {table} WHERE typeof({col}) NOT IN ('integer', 'null')"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(texts, 0, "{table}.{col}");
        }
        let untouched: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT committed_at FROM telemetry), (SELECT at FROM attempt_log)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(untouched, (1763632800000, 1763632800123));
        let index: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'delivery_by_state'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1);
        drop(conn);
        // The store reads them as times.
        let store = super::super::Store::open(&path).unwrap();
        let a = store.webhook("a").unwrap().unwrap();
        assert_eq!(
            a.last_success.map(|t| t.to_string()),
            Some(format!("{success:.3}"))
        );
        assert_eq!(
            a.deactivated_at,
            Some(super::super::UnixMs(ms(deactivated)))
        );
        let d = store.delivery(1).unwrap().unwrap();
        assert_eq!(d.created_at.to_string(), format!("{created:.3}"));
        assert_eq!(d.body, br#"{"a":1}"#.to_vec());
    }
}
