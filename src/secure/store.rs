//! Where secure devices persist: the `secure_devices` table of the outbox database (migration
//! 5), written only on the storage thread, read once at start.
//!
//! - A key taught in by radio is stored sealed: AES-128 under the gateway's sealing key plus a
//!   tag ([`Sealer`]). The sealing key lives in its own file beside the database
//!   (`<database>.seal`, 32 hex digits, created with the database's mode, 0600), so a copy of
//!   the database (a backup, a support bundle, the CLI's reads) holds no usable key. Losing the
//!   sealing file loses the stored keys (logged at start; the devices need a new teach-in).
//! - A key from the configuration is never stored; its row keeps the rolling code only, with
//!   the key check value of the key it belongs to (a changed `key_file` starts afresh).
//! - Teach-ins and rolling codes: [`SecureStore::note_taught`] and [`SecureStore::note_rlc`]
//!   keep the latest per device in memory and [`SecureStore::flush`] writes them in one
//!   transaction. The storage thread flushes right
//!   after each group commit of the records and at stop, so no telegram costs an fsync of its
//!   own. After a crash (SIGKILL, power) the stored code can be behind by the telegrams of the
//!   last commit window: those few telegrams could be replayed once. A clean stop loses nothing.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::crypto::{Sealer, check_value};
use super::keyring::{Keyring, SecureDevice};
use super::{DeviceKey, Slf};
use crate::config::DeviceConfig;

/// Errors of the secure device table and the sealing key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("secure devices: {0}")]
    Db(#[from] rusqlite::Error),
    /// The outbox database could not be opened.
    #[error("secure devices: {0}")]
    Outbox(String),
    /// The sealing key file could not be read or created.
    #[error("sealing key {}: {message}", path.display())]
    SealingKey {
        /// The file.
        path: PathBuf,
        /// What went wrong (never the content).
        message: String,
    },
}

/// The sealing key's file for the database at `db`: `<db>.seal`.
pub fn sealing_key_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".seal");
    PathBuf::from(s)
}

/// Reads the sealing key beside `db`, creating it (16 random bytes from the kernel, as 32 hex
/// digits, mode as the database's) when missing.
pub fn open_sealer(db: &Path) -> Result<Sealer, StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = sealing_key_path(db);
    let err = |message: String| StoreError::SealingKey {
        path: path.clone(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = DeviceKey::from_hex(&text).map_err(|e| err(e.to_string()))?;
            return Ok(Sealer::new(&key));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(format!("cannot read: {e}"))),
    }
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| err(format!("no random bytes: {e}")))?;
    let mode = crate::outbox::schema::file_mode(db);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(format!("{}\n", hex::encode_upper(bytes)).as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| err(format!("cannot create: {e}")))?;
    Ok(Sealer::new(&DeviceKey::from_bytes(bytes)))
}

fn open_conn(db: &Path) -> Result<Connection, StoreError> {
    let conn = crate::outbox::schema::open(db).map_err(|e| match e {
        crate::outbox::OutboxError::Sqlite(e) => StoreError::Db(e),
        other => StoreError::Outbox(other.to_string()),
    })?;
    conn.pragma_update(None, "cache_size", -64)?;
    Ok(conn)
}

/// A device of the configuration with a key (`key_file` and `slf`): its ID and settings.
fn configured(d: &DeviceConfig) -> Option<(u32, SecureDevice)> {
    let key = d.key.clone()?;
    let id = crate::device::parse_id(&d.id).ok()?;
    Some((
        id,
        SecureDevice {
            key,
            slf: Slf(d.slf.unwrap_or(0)),
            next_rlc: d.rlc,
            ptm: false,
            configured: true,
        },
    ))
}

/// Loads the keyring at start: devices taught in earlier (keys unsealed) with their rolling
/// codes, then the configured keys (which win) with their stored rolling code when it belongs
/// to the same key. Keys that cannot be unsealed are skipped and named in the returned
/// warnings (never the key).
pub fn load(db: &Path, devices: &[DeviceConfig]) -> Result<(Keyring, Vec<String>), StoreError> {
    let sealer = open_sealer(db)?;
    let conn = open_conn(db)?;
    let mut ring = Keyring::default();
    let mut warnings = Vec::new();
    let mut stored: HashMap<u32, (Vec<u8>, Option<u32>)> = HashMap::new();
    {
        let mut st =
            conn.prepare("SELECT id, sealed_key, kcv, slf, ptm, next_rlc FROM secure_devices")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<Vec<u8>>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })?;
        for row in rows {
            let (id, sealed, kcv, slf, ptm, next) = row?;
            let Ok(id) = crate::device::parse_id(&id) else {
                continue;
            };
            let next = next.and_then(|n| u32::try_from(n).ok());
            stored.insert(id, (kcv, next));
            let Some(sealed) = sealed else { continue };
            match sealer.unseal(id, &sealed) {
                Some(key) => ring.insert(
                    id,
                    SecureDevice {
                        key,
                        slf: Slf(slf.and_then(|s| u8::try_from(s).ok()).unwrap_or(0)),
                        next_rlc: next,
                        ptm,
                        configured: false,
                    },
                ),
                None => warnings.push(format!(
                    "secure device {id:08X}: its stored key does not unseal with {} (replaced or lost?); it needs a new teach-in",
                    sealing_key_path(db).display()
                )),
            }
        }
    }
    for d in devices {
        if let Some((id, mut dev)) = configured(d) {
            if let Some((kcv, Some(next))) = stored.get(&id)
                && kcv.as_slice() == check_value(&dev.key)
            {
                dev.next_rlc = Some(*next);
            }
            ring.insert(id, dev);
        }
    }
    Ok((ring, warnings))
}

/// The table's writer, on the storage thread.
pub struct SecureStore {
    conn: Connection,
    sealer: Sealer,
    /// Devices taught in, not yet written (the latest per device).
    taught: HashMap<u32, SecureDevice>,
    /// Rolling codes not yet written: device → (next RLC, key check value).
    pending: HashMap<u32, (u32, [u8; 4])>,
}

impl SecureStore {
    /// Opens the table of the database at `db` and its sealing key.
    pub fn open(db: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            sealer: open_sealer(db)?,
            conn: open_conn(db)?,
            taught: HashMap::new(),
            pending: HashMap::new(),
        })
    }

    /// Notes a device taught in by radio (key, SLF, rolling code), written by the next
    /// [`SecureStore::flush`]: a flood of teach-ins costs one transaction per commit window.
    pub fn note_taught(&mut self, id: u32, dev: SecureDevice) {
        self.pending.remove(&id);
        self.taught.insert(id, dev);
    }

    /// Stores a device taught in by radio at once (its key sealed).
    pub fn save_taught(&mut self, id: u32, dev: &SecureDevice) -> Result<(), StoreError> {
        self.note_taught(id, dev.clone());
        self.flush().map(|_| ())
    }

    /// Notes a device's new rolling-code state, written by the next [`SecureStore::flush`].
    pub fn note_rlc(&mut self, id: u32, next_rlc: u32, kcv: [u8; 4]) {
        match self.taught.get_mut(&id) {
            Some(dev) if check_value(&dev.key) == kcv => dev.next_rlc = Some(next_rlc),
            _ => {
                self.pending.insert(id, (next_rlc, kcv));
            }
        }
    }

    /// True when teach-ins or rolling codes wait to be written.
    pub fn dirty(&self) -> bool {
        !self.pending.is_empty() || !self.taught.is_empty()
    }

    /// Writes what was noted in one transaction; on error it stays noted. Returns the rows
    /// written.
    pub fn flush(&mut self) -> Result<usize, StoreError> {
        if !self.dirty() {
            return Ok(0);
        }
        let now = jiff::Timestamp::now().as_millisecond();
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO secure_devices (id, sealed_key, kcv, slf, ptm, next_rlc, taught_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT(id) DO UPDATE SET sealed_key = ?2, kcv = ?3, slf = ?4, ptm = ?5,
                   next_rlc = ?6, taught_at = ?7, updated_at = ?7",
            )?;
            for (id, dev) in &self.taught {
                st.execute(params![
                    format!("{id:08X}"),
                    self.sealer.seal(*id, &dev.key),
                    check_value(&dev.key).to_vec(),
                    dev.slf.0,
                    dev.ptm,
                    dev.next_rlc,
                    now
                ])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO secure_devices (id, kcv, next_rlc, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET next_rlc = ?3, updated_at = ?4, kcv = ?2",
            )?;
            for (id, (next, kcv)) in &self.pending {
                st.execute(params![format!("{id:08X}"), kcv.to_vec(), next, now])?;
            }
        }
        tx.commit()?;
        let n = self.pending.len() + self.taught.len();
        self.pending.clear();
        self.taught.clear();
        Ok(n)
    }

    /// Forgets a device taught in by radio (`devices forget`): its row goes; a configured
    /// device's rolling code stays.
    pub fn forget(&mut self, id: u32) -> Result<(), StoreError> {
        self.pending.remove(&id);
        self.taught.remove(&id);
        self.conn.execute(
            "DELETE FROM secure_devices WHERE id = ?1 AND sealed_key IS NOT NULL",
            params![format!("{id:08X}")],
        )?;
        Ok(())
    }

    /// The stored next rolling code of a device (for tests and listings).
    pub fn stored_rlc(&self, id: u32) -> Result<Option<u32>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT next_rlc FROM secure_devices WHERE id = ?1",
                params![format!("{id:08X}")],
                |r| r.get::<_, Option<u32>>(0),
            )
            .optional()?
            .flatten())
    }
}
