//! The outbox files (database, -wal, -shm) are never readable by other users, whatever the umask:
//! the real agent runs under `umask 000` and the modes of the files it made are checked while it
//! runs (the -wal and -shm files exist only then).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Reaper, WAIT};

fn files(db: &Path) -> [PathBuf; 3] {
    let side = |s: &str| {
        let mut p = db.as_os_str().to_owned();
        p.push(s);
        PathBuf::from(p)
    };
    [db.to_path_buf(), side("-wal"), side("-shm")]
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Runs the agent with `umask 000` on a stick that is not there (it waits for it) until the
/// database and its -wal and -shm exist; returns their modes and what the agent logged.
fn run_until_files_exist(dir: &Path, db: &Path) -> ([u32; 3], String) {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[serial]\nport = \"{}\"\n[storage]\npath = \"{}\"\n",
            dir.join("no-stick").display(),
            db.display()
        ),
    )
    .unwrap();
    let log = dir.join("agent.log");
    let inner = common::agent_command();
    let child = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$@\"")
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut agent = Reaper(child);
    let paths = files(db);
    assert!(
        common::wait_for(WAIT, || paths.iter().all(|p| p.exists())
            && std::fs::read_to_string(&log).is_ok_and(|l| l.contains("no-stick"))),
        "the agent did not create {paths:?}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let modes = [mode(&paths[0]), mode(&paths[1]), mode(&paths[2])];
    agent.terminate();
    (modes, std::fs::read_to_string(&log).unwrap())
}

#[test]
fn new_outbox_files_are_private_under_umask_000() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.path().join("outbox.db");
    let (modes, log) = run_until_files_exist(dir.path(), &db);
    assert_eq!(
        modes, [0o600; 3],
        "modes {:o} {:o} {:o}\n{log}",
        modes[0], modes[1], modes[2]
    );
    // A file the agent made itself is not reported as a widened one.
    assert!(!log.contains("readable by every user"), "{log}");
}

#[test]
fn a_set_group_id_directory_shares_with_its_group_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o2775)).unwrap();
    if mode(dir.path()) & 0o2000 == 0 {
        eprintln!("skipping: this file system does not keep the set-group-ID bit");
        return;
    }
    let db = dir.path().join("outbox.db");
    let (modes, log) = run_until_files_exist(dir.path(), &db);
    assert_eq!(
        modes, [0o640; 3],
        "modes {:o} {:o} {:o}\n{log}",
        modes[0], modes[1], modes[2]
    );
}

#[test]
fn an_existing_world_readable_outbox_is_narrowed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.path().join("outbox.db");
    // An empty file is a new database to SQLite: as an older version under umask 000 left it.
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (modes, log) = run_until_files_exist(dir.path(), &db);
    for (m, p) in modes.iter().zip(files(&db)) {
        assert_eq!(m & 0o007, 0, "{} is {m:o}\n{log}", p.display());
    }
    assert_eq!(modes[0], 0o660, "only the other users' bits go\n{log}");
    assert!(log.contains("readable by every user"), "{log}");
}
