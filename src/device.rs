//! The device registry: configured devices, devices learned from teach-in telegrams, and when each
//! was last heard. Learned devices live in the outbox database (table `devices`, owned by this
//! module), so `enocean-agent devices` sees them while the daemon runs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rusqlite::{Connection, params};

use crate::config::DeviceConfig;

/// Errors of the device registry.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A device ID that is not eight hex digits.
    #[error("device id {0:?} is not eight hex digits")]
    BadId(String),
    /// The database failed.
    #[error("device table: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Where the registry knows a device from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `[[device]]` entry of the configuration.
    Configured,
    /// A teach-in telegram that announced its EEP.
    Learned,
    /// Heard, but neither configured nor learned.
    Unknown,
}

impl Source {
    /// The word shown in listings and stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Configured => "configured",
            Source::Learned => "learned",
            Source::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "configured" => Source::Configured,
            "learned" => Source::Learned,
            _ => Source::Unknown,
        }
    }
}

/// What the agent knows of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Sender ID.
    pub id: u32,
    /// EEP as `RR-FF-TT`, when known.
    pub eep: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Tags copied into telemetry.
    pub tags: BTreeMap<String, String>,
    /// Where the entry comes from.
    pub source: Source,
    /// Manufacturer ID announced in the teach-in.
    pub manufacturer: Option<u16>,
    /// When it was last heard (RFC 3339).
    pub last_seen: Option<String>,
    /// Signal of the last telegram.
    pub last_dbm: Option<i16>,
}

/// Parses an eight-hex-digit sender ID.
pub fn parse_id(s: &str) -> Result<u32, DeviceError> {
    let t = s.trim();
    if t.len() != 8 {
        return Err(DeviceError::BadId(s.to_string()));
    }
    u32::from_str_radix(t, 16).map_err(|_| DeviceError::BadId(s.to_string()))
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS devices (
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
)";

/// The registry the daemon consults for every telegram.
pub struct Registry {
    devices: HashMap<u32, Device>,
    /// The configuration's devices, to fall back on when a learned EEP is forgotten.
    configured: HashMap<u32, DeviceConfig>,
    /// `PRAGMA data_version` when `device_forgets` was last read: it changes when another
    /// connection (the CLI) commits.
    data_version: i64,
    /// Last-heard facts not yet written (written in batches to spare the SD card).
    dirty: HashMap<u32, (String, Option<i16>)>,
    conn: Connection,
}

impl Registry {
    /// Opens the table in the database at `db` and merges in the configured devices, which win
    /// over learned ones.
    pub fn open(db: &Path, configured: &[DeviceConfig]) -> Result<Self, DeviceError> {
        let conn = Connection::open(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "cache_size", -128)?;
        conn.execute_batch(SCHEMA)?;
        // Forgets made while no daemon ran are already in `devices` (their rows are gone).
        conn.execute("DELETE FROM device_forgets", [])?;
        let data_version = data_version(&conn)?;
        let mut devices = HashMap::new();
        for d in load(&conn)? {
            devices.insert(d.id, d);
        }
        let mut by_id = HashMap::new();
        for c in configured {
            let id = parse_id(&c.id)?;
            by_id.insert(id, c.clone());
            let prev = devices.remove(&id);
            devices.insert(
                id,
                Device {
                    id,
                    eep: c.eep.clone().or(prev.as_ref().and_then(|p| p.eep.clone())),
                    name: c.name.clone(),
                    tags: c.tags.clone(),
                    source: Source::Configured,
                    manufacturer: prev.as_ref().and_then(|p| p.manufacturer),
                    last_seen: prev.as_ref().and_then(|p| p.last_seen.clone()),
                    last_dbm: prev.and_then(|p| p.last_dbm),
                },
            );
        }
        Ok(Self {
            devices,
            configured: by_id,
            data_version,
            dirty: HashMap::new(),
            conn,
        })
    }

    /// Applies `enocean-agent devices forget` run while the daemon runs: a forgotten learned
    /// device is dropped, a configured one falls back to its configured EEP. Cheap when nothing
    /// changed (one pragma read). Returns the forgotten IDs.
    pub fn apply_forgets(&mut self) -> Result<Vec<u32>, DeviceError> {
        let version = data_version(&self.conn)?;
        if version == self.data_version {
            return Ok(Vec::new());
        }
        self.data_version = version;
        let tx = self.conn.transaction()?;
        let ids: Vec<(i64, String)> = {
            let mut stmt = tx.prepare("SELECT n, id FROM device_forgets ORDER BY n")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut forgotten = Vec::new();
        for (n, hex) in ids {
            // A last-heard flush may have written the row again between the CLI's delete and now.
            tx.execute("DELETE FROM devices WHERE id = ?1", params![hex])?;
            tx.execute("DELETE FROM device_forgets WHERE n = ?1", params![n])?;
            let Ok(id) = parse_id(&hex) else { continue };
            match self.configured.get(&id) {
                Some(c) => {
                    if let Some(d) = self.devices.get_mut(&id) {
                        d.eep = c.eep.clone();
                        d.manufacturer = None;
                    }
                }
                None => {
                    self.devices.remove(&id);
                }
            }
            forgotten.push(id);
        }
        tx.commit()?;
        // Our own commit moved the version on; do not read the table again for it.
        self.data_version = data_version(&self.conn)?;
        Ok(forgotten)
    }

    /// The device with this sender ID, if known.
    pub fn get(&self, id: u32) -> Option<&Device> {
        self.devices.get(&id)
    }

    /// Records a teach-in that announced `eep`. Returns true when this changed what the registry
    /// knows (a new device or a new EEP). A configured device keeps its configured EEP.
    pub fn learn(
        &mut self,
        id: u32,
        eep: &str,
        manufacturer: Option<u16>,
        at: &str,
    ) -> Result<bool, DeviceError> {
        if let Some(d) = self.devices.get(&id) {
            if d.source == Source::Configured && d.eep.is_some() {
                return Ok(false);
            }
            if d.eep.as_deref() == Some(eep) && d.manufacturer == manufacturer {
                return Ok(false);
            }
        }
        self.conn.execute(
            "INSERT INTO devices (id, eep, source, manufacturer, learned_at) VALUES (?1, ?2, 'learned', ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET eep = ?2, manufacturer = ?3, learned_at = ?4",
            params![format!("{id:08X}"), eep, manufacturer, at],
        )?;
        let d = self.devices.entry(id).or_insert(Device {
            id,
            eep: None,
            name: None,
            tags: BTreeMap::new(),
            source: Source::Learned,
            manufacturer: None,
            last_seen: None,
            last_dbm: None,
        });
        d.eep = Some(eep.to_string());
        d.manufacturer = manufacturer;
        if d.source == Source::Unknown {
            d.source = Source::Learned;
        }
        Ok(true)
    }

    /// Notes that `id` was heard; written by [`Registry::flush`].
    pub fn heard(&mut self, id: u32, at: String, dbm: Option<i16>) {
        self.dirty.insert(id, (at, dbm));
    }

    /// Writes the last-heard facts collected since the previous flush, in one transaction.
    pub fn flush(&mut self) -> Result<(), DeviceError> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        for (id, (at, dbm)) in self.dirty.drain() {
            let source = self.devices.get(&id).map_or(Source::Unknown, |d| d.source);
            tx.execute(
                "INSERT INTO devices (id, source, last_seen, last_dbm) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET last_seen = ?3, last_dbm = ?4",
                params![format!("{id:08X}"), source.as_str(), at, dbm],
            )?;
            if let Some(d) = self.devices.get_mut(&id) {
                d.last_seen = Some(at);
                d.last_dbm = dbm;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn load(conn: &Connection) -> Result<Vec<Device>, DeviceError> {
    let mut stmt = conn.prepare(
        "SELECT id, eep, name, source, manufacturer, last_seen, last_dbm FROM devices ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<u16>>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<i16>>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, eep, name, source, manufacturer, last_seen, last_dbm) = row?;
        let Ok(id) = parse_id(&id) else { continue };
        out.push(Device {
            id,
            eep,
            name,
            tags: BTreeMap::new(),
            source: Source::parse(&source),
            manufacturer,
            last_seen,
            last_dbm,
        });
    }
    Ok(out)
}

/// Every device the database and the configuration know, for `enocean-agent devices`.
pub fn list(db: &Path, configured: &[DeviceConfig]) -> Result<Vec<Device>, DeviceError> {
    let reg = Registry::open(db, configured)?;
    let mut all: Vec<Device> = reg.devices.into_values().collect();
    all.sort_by_key(|d| d.id);
    Ok(all)
}

/// Removes a learned device (and its last-heard facts); a configured device loses the EEP it
/// learned. A running daemon applies it within a second ([`Registry::apply_forgets`]); the device is
/// learned again only from a new teach-in. Returns false when it was not stored.
pub fn forget(db: &Path, id: u32) -> Result<bool, DeviceError> {
    let mut conn = Connection::open(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    let hex = format!("{id:08X}");
    let tx = conn.transaction()?;
    let n = tx.execute("DELETE FROM devices WHERE id = ?1", params![hex])?;
    if n > 0 {
        tx.execute("INSERT INTO device_forgets (id) VALUES (?1)", params![hex])?;
    }
    tx.commit()?;
    Ok(n > 0)
}

fn data_version(conn: &Connection) -> Result<i64, DeviceError> {
    Ok(conn.pragma_query_value(None, "data_version", |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(id: &str, eep: Option<&str>) -> DeviceConfig {
        DeviceConfig {
            id: id.into(),
            eep: eep.map(Into::into),
            name: Some("Office".into()),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn learned_devices_persist_and_configured_ones_win() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.db");
        let mut reg = Registry::open(&db, &[cfg("0180A3F2", Some("A5-04-01"))]).unwrap();
        assert!(
            reg.learn(0x0194_E3B9, "A5-02-05", Some(0x00D), "t1")
                .unwrap()
        );
        assert!(
            !reg.learn(0x0194_E3B9, "A5-02-05", Some(0x00D), "t2")
                .unwrap()
        );
        assert!(!reg.learn(0x0180_A3F2, "A5-02-05", None, "t3").unwrap());
        reg.heard(0x0194_E3B9, "2026-11-23T18:00:00Z".into(), Some(-60));
        reg.flush().unwrap();
        drop(reg);
        let all = list(&db, &[cfg("0180A3F2", Some("A5-04-01"))]).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].eep.as_deref(), Some("A5-04-01"));
        assert_eq!(all[0].source, Source::Configured);
        assert_eq!(all[1].eep.as_deref(), Some("A5-02-05"));
        assert_eq!(all[1].source, Source::Learned);
        assert_eq!(all[1].last_dbm, Some(-60));
        assert!(forget(&db, 0x0194_E3B9).unwrap());
        assert!(!forget(&db, 0x0194_E3B9).unwrap());
        // The learned device is gone; the configured one comes from the configuration.
        assert!(list(&db, &[]).unwrap().is_empty());
        let left = list(&db, &[cfg("0180A3F2", Some("A5-04-01"))]).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, 0x0180_A3F2);
    }

    #[test]
    fn a_forget_reaches_the_running_registry_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.db");
        let configured = [cfg("0180A3F2", None)];
        let mut reg = Registry::open(&db, &configured).unwrap();
        assert!(reg.learn(0x0194_E3B9, "A5-02-05", None, "t1").unwrap());
        assert!(reg.learn(0x0180_A3F2, "A5-04-01", None, "t1").unwrap());
        assert!(reg.apply_forgets().unwrap().is_empty());
        // The CLI, on its own connection.
        assert!(forget(&db, 0x0194_E3B9).unwrap());
        assert!(forget(&db, 0x0180_A3F2).unwrap());
        // A last-heard flush racing the forget writes the rows again.
        reg.heard(0x0194_E3B9, "t2".into(), None);
        reg.flush().unwrap();
        let mut gone = reg.apply_forgets().unwrap();
        gone.sort_unstable();
        assert_eq!(gone, [0x0180_A3F2, 0x0194_E3B9]);
        assert!(reg.get(0x0194_E3B9).is_none());
        assert_eq!(reg.get(0x0180_A3F2).unwrap().eep, None);
        assert!(reg.apply_forgets().unwrap().is_empty());
        // Heard again: an unknown sender, not a learned device, now and after a restart.
        reg.heard(0x0194_E3B9, "t3".into(), None);
        reg.flush().unwrap();
        drop(reg);
        let all = list(&db, &configured).unwrap();
        let stranger = all.iter().find(|d| d.id == 0x0194_E3B9).unwrap();
        assert_eq!(
            (stranger.source, stranger.eep.as_deref()),
            (Source::Unknown, None)
        );
        let own = all.iter().find(|d| d.id == 0x0180_A3F2).unwrap();
        assert_eq!((own.source, own.eep.as_deref()), (Source::Configured, None));
    }

    #[test]
    fn ids_must_be_eight_hex_digits() {
        assert_eq!(parse_id("0180a3f2").unwrap(), 0x0180_A3F2);
        assert!(parse_id("0180A3F").is_err());
        assert!(parse_id("0180A3FG").is_err());
    }
}
