//! The device registry: configured devices, devices learned from teach-in telegrams, and when each
//! was last heard. Learned devices live in the outbox database (table `devices`, created by the
//! outbox's migrations), so `enocean-agent devices` sees them while the daemon runs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, params};

use crate::config::DeviceConfig;
use crate::eep::EepId;
use crate::outbox::UnixMs;

/// Errors of the device registry.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A device ID that is not eight hex digits.
    #[error("device id {0:?} is not eight hex digits")]
    BadId(String),
    /// The database failed.
    #[error("device table: {0}")]
    Db(#[from] rusqlite::Error),
    /// The outbox database could not be opened (newer schema, file error).
    #[error("device table: {0}")]
    Outbox(String),
}

impl DeviceError {
    /// True for a full disk or database (`SQLITE_FULL`): the outbox already reports the episode.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, DeviceError::Db(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::DiskFull)
    }
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

// The word shown in listings and stored in `devices.source`.
crate::outbox::store::stored_enum!(Source, "device source", text {
    Configured => "configured",
    Learned => "learned",
    Unknown => "unknown",
});

/// What the agent knows of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Sender ID.
    pub id: u32,
    /// EEP as `RR-FF-TT`, when known (shared with every reading of the device).
    pub eep: Option<Arc<str>>,
    /// `eep` parsed, when it names an EEP: what the reader looks the device's profile up by,
    /// so no EEP text is parsed per telegram. Set with `eep` by the registry.
    pub eep_id: Option<EepId>,
    /// Display name (shared with every reading of the device).
    pub name: Option<Arc<str>>,
    /// Tags given to every reading of the device (shared with them).
    pub tags: Arc<BTreeMap<String, String>>,
    /// Where the entry comes from.
    pub source: Source,
    /// Manufacturer ID announced in the teach-in.
    pub manufacturer: Option<u16>,
    /// When it was last heard.
    pub last_seen: Option<UnixMs>,
    /// Signal of the last telegram.
    pub last_dbm: Option<i16>,
}

/// The EEP named by a device's `eep` text, when it is one.
fn eep_id_of(eep: Option<&str>) -> Option<EepId> {
    eep?.parse().ok()
}

/// Parses an eight-hex-digit sender ID.
pub fn parse_id(s: &str) -> Result<u32, DeviceError> {
    let t = s.trim();
    if t.len() != 8 {
        return Err(DeviceError::BadId(s.to_string()));
    }
    u32::from_str_radix(t, 16).map_err(|_| DeviceError::BadId(s.to_string()))
}

/// Default bound on devices that are not configured (learned and merely heard), kept in memory
/// and in the database; the least recently heard go first.
pub const DEFAULT_MAX_DEVICES: usize = 1000;

/// Last-heard facts of one device, collected by [`Registry::heard`] and written in batches by
/// [`DeviceStore::write_heard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    /// Sender ID.
    pub id: u32,
    /// Where the registry knows it from when it was heard.
    pub source: Source,
    /// When.
    pub at: UnixMs,
    /// Signal of that telegram.
    pub dbm: Option<i16>,
}

/// What the daemon knows of devices, in memory: consulted for every telegram on the reader's
/// side, never touching the disk there. Persistence is [`DeviceStore`]'s, on the storage thread.
/// Devices that are not configured (learned ones) are bounded: beyond `max` the least recently
/// heard is dropped, so no radio nearby can grow memory without end.
pub struct Registry {
    devices: HashMap<u32, Device>,
    /// The configuration's devices, to fall back on when a learned EEP is forgotten.
    configured: HashMap<u32, DeviceConfig>,
    /// Last-heard facts not yet handed to the store, bounded like the devices.
    dirty: HashMap<u32, Heard>,
    max: usize,
}

impl Registry {
    /// Loads the configured and learned devices of the database at `db` (created when missing)
    /// and merges in the configured ones, which win over learned ones. At most `max`
    /// non-configured devices are loaded (the most recently heard).
    pub fn open(db: &Path, configured: &[DeviceConfig], max: usize) -> Result<Self, DeviceError> {
        let conn = open_conn(db)?;
        let mut devices = HashMap::new();
        for d in load(&conn)? {
            devices.insert(d.id, d);
        }
        let mut by_id = HashMap::new();
        for c in configured {
            let id = parse_id(&c.id)?;
            by_id.insert(id, c.clone());
            let prev = devices.remove(&id);
            let eep = c
                .eep
                .as_deref()
                .map(Arc::from)
                .or(prev.as_ref().and_then(|p| p.eep.clone()));
            devices.insert(
                id,
                Device {
                    id,
                    eep_id: eep_id_of(eep.as_deref()),
                    eep,
                    name: c.name.as_deref().map(Arc::from),
                    tags: Arc::new(c.tags.clone()),
                    source: Source::Configured,
                    manufacturer: prev.as_ref().and_then(|p| p.manufacturer),
                    last_seen: prev.as_ref().and_then(|p| p.last_seen),
                    last_dbm: prev.and_then(|p| p.last_dbm),
                },
            );
        }
        let mut reg = Self {
            devices,
            configured: by_id,
            dirty: HashMap::new(),
            max: max.max(1),
        };
        // Only configured and learned devices matter for decoding.
        reg.devices.retain(|_, d| d.source != Source::Unknown);
        reg.bound();
        Ok(reg)
    }

    /// The device with this sender ID, if configured or learned.
    pub fn get(&self, id: u32) -> Option<&Device> {
        self.devices.get(&id)
    }

    /// Number of devices held in memory (configured + learned).
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when no device is known.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Records a teach-in that announced `eep`. Returns true when this changed what the registry
    /// knows (a new device or a new EEP): the caller then persists it with
    /// [`DeviceStore::save_learned`]. A configured device keeps its configured EEP.
    pub fn learn(&mut self, id: u32, eep: &str, manufacturer: Option<u16>) -> bool {
        if let Some(d) = self.devices.get(&id) {
            if d.source == Source::Configured
                && self.configured.get(&id).is_some_and(|c| c.eep.is_some())
            {
                return false;
            }
            if d.eep.as_deref() == Some(eep) && d.manufacturer == manufacturer {
                return false;
            }
        }
        let d = self.devices.entry(id).or_insert(Device {
            id,
            eep: None,
            eep_id: None,
            name: None,
            tags: crate::telemetry::no_tags(),
            source: Source::Learned,
            manufacturer: None,
            last_seen: None,
            last_dbm: None,
        });
        d.eep = Some(eep.into());
        d.eep_id = eep_id_of(Some(eep));
        d.manufacturer = manufacturer;
        self.bound();
        true
    }

    /// Forgets what was learned of `id`: a learned device is dropped, a configured one falls
    /// back to its configured EEP.
    pub fn forget(&mut self, id: u32) {
        match self.configured.get(&id) {
            Some(c) => {
                if let Some(d) = self.devices.get_mut(&id) {
                    d.eep = c.eep.as_deref().map(Arc::from);
                    d.eep_id = eep_id_of(d.eep.as_deref());
                    d.manufacturer = None;
                }
            }
            None => {
                self.devices.remove(&id);
            }
        }
    }

    /// Notes that `id` was heard; handed to the store by [`Registry::take_heard`].
    pub fn heard(&mut self, id: u32, at: UnixMs, dbm: Option<i16>) {
        let source = self.devices.get(&id).map_or(Source::Unknown, |d| d.source);
        if let Some(d) = self.devices.get_mut(&id) {
            d.last_seen = Some(at);
            d.last_dbm = dbm;
        }
        let cap = self.max + self.configured.len();
        if self.dirty.len() >= 2 * cap {
            // A flood of strangers: keep the most recently heard, amortised over `cap` inserts.
            let mut strangers: Vec<(UnixMs, u32)> = self
                .dirty
                .values()
                .filter(|h| h.source == Source::Unknown)
                .map(|h| (h.at, h.id))
                .collect();
            strangers.sort_unstable();
            let excess = self.dirty.len().saturating_sub(cap).min(strangers.len());
            for (_, old) in &strangers[..excess] {
                self.dirty.remove(old);
            }
        }
        self.dirty.insert(
            id,
            Heard {
                id,
                source,
                at,
                dbm,
            },
        );
    }

    /// The last-heard facts collected since the previous call.
    pub fn take_heard(&mut self) -> Vec<Heard> {
        self.dirty.drain().map(|(_, h)| h).collect()
    }

    /// Drops the least recently heard learned devices beyond the bound.
    fn bound(&mut self) {
        let learned = self.devices.len().saturating_sub(self.configured.len());
        if learned <= self.max {
            return;
        }
        let mut order: Vec<(Option<UnixMs>, u32)> = self
            .devices
            .values()
            .filter(|d| d.source != Source::Configured)
            .map(|d| (d.last_seen, d.id))
            .collect();
        order.sort();
        for (_, id) in order.into_iter().take(learned - self.max) {
            self.devices.remove(&id);
        }
    }
}

/// The device tables in the outbox database, written on the storage thread: learned devices,
/// last-heard facts (bounded), and the forgets the CLI asks for.
pub struct DeviceStore {
    conn: Connection,
    /// `PRAGMA data_version` when `device_forgets` was last read: it changes when another
    /// connection (the CLI) commits.
    data_version: i64,
    max: usize,
}

impl DeviceStore {
    /// Opens (and creates) the tables in the database at `db`. Forgets made while no daemon ran
    /// are already applied (their rows are gone), so their markers are cleared.
    pub fn open(db: &Path, max: usize) -> Result<Self, DeviceError> {
        let conn = open_conn(db)?;
        conn.execute("DELETE FROM device_forgets", [])?;
        let data_version = data_version(&conn)?;
        Ok(Self {
            conn,
            data_version,
            max: max.max(1),
        })
    }

    /// Persists a learned device.
    pub fn save_learned(
        &mut self,
        id: u32,
        eep: &str,
        manufacturer: Option<u16>,
        at: UnixMs,
    ) -> Result<(), DeviceError> {
        self.conn.execute(
            "INSERT INTO devices (id, eep, source, manufacturer, learned_at) VALUES (?1, ?2, 'learned', ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET eep = ?2, manufacturer = ?3, learned_at = ?4,
               source = CASE source WHEN 'configured' THEN 'configured' ELSE 'learned' END",
            params![format!("{id:08X}"), eep, manufacturer, at],
        )?;
        Ok(())
    }

    /// Writes last-heard facts in one transaction, then keeps at most `max` devices that are
    /// not configured (the least recently heard go).
    pub fn write_heard(&mut self, heard: &[Heard]) -> Result<(), DeviceError> {
        if heard.is_empty() {
            return Ok(());
        }
        // Last-heard facts are refreshed every few seconds and are only advice (silence
        // events, `devices`): not flushed to the disk on their own (`synchronous=NORMAL` for
        // this transaction), they reach it with the outbox's next flush or checkpoint. A power
        // cut can cost the last few seconds of them; a flush every 10 s would rewrite a page of
        // the SD card each time. Learned devices keep a flush of their own.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let result = self.heard_tx(heard);
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        result
    }

    fn heard_tx(&mut self, heard: &[Heard]) -> Result<(), DeviceError> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO devices (id, source, last_seen, last_dbm) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET last_seen = ?3, last_dbm = ?4",
            )?;
            for h in heard {
                st.execute(params![format!("{:08X}", h.id), h.source, h.at, h.dbm])?;
            }
        }
        tx.execute(
            "DELETE FROM devices WHERE source != 'configured' AND id NOT IN (
                SELECT id FROM devices WHERE source != 'configured'
                ORDER BY last_seen DESC LIMIT ?1)",
            params![self.max as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Reads the forgets `enocean-agent devices forget` recorded since the last call (cheap when
    /// the database did not change: one pragma read) and returns the IDs for the registry.
    pub fn take_forgets(&mut self) -> Result<Vec<u32>, DeviceError> {
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
            // A last-heard write may have stored the row again between the CLI's delete and now.
            tx.execute("DELETE FROM devices WHERE id = ?1", params![hex])?;
            tx.execute("DELETE FROM device_forgets WHERE n = ?1", params![n])?;
            if let Ok(id) = parse_id(&hex) {
                forgotten.push(id);
            }
        }
        tx.commit()?;
        // Our own commit moved the version on; do not read the table again for it.
        self.data_version = data_version(&self.conn)?;
        Ok(forgotten)
    }
}

/// A connection to the outbox database; its migrations create the device tables.
fn open_conn(db: &Path) -> Result<Connection, DeviceError> {
    let conn = crate::outbox::schema::open(db).map_err(|e| match e {
        crate::outbox::OutboxError::Sqlite(e) => DeviceError::Db(e),
        other => DeviceError::Outbox(other.to_string()),
    })?;
    conn.pragma_update(None, "cache_size", -128)?;
    Ok(conn)
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
            // Read on its own: a value no variant has skips its row, below.
            r.get::<_, Source>(3),
            r.get::<_, Option<u16>>(4)?,
            r.get::<_, Option<UnixMs>>(5)?,
            r.get::<_, Option<i16>>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, eep, name, source, manufacturer, last_seen, last_dbm) = row?;
        let Ok(id) = parse_id(&id) else { continue };
        let source = match source {
            Ok(s) => s,
            Err(e) => {
                log::error!("devices: the stored row of {id:08X} is skipped: {e}");
                continue;
            }
        };
        out.push(Device {
            id,
            eep_id: eep_id_of(eep.as_deref()),
            eep: eep.map(Arc::from),
            name: name.map(Arc::from),
            tags: crate::telemetry::no_tags(),
            source,
            manufacturer,
            last_seen,
            last_dbm,
        });
    }
    Ok(out)
}

/// Every device the database and the configuration know (heard-only ones too), for
/// `enocean-agent devices`.
pub fn list(db: &Path, configured: &[DeviceConfig]) -> Result<Vec<Device>, DeviceError> {
    let conn = open_conn(db)?;
    let mut all: HashMap<u32, Device> = load(&conn)?.into_iter().map(|d| (d.id, d)).collect();
    let reg = Registry::open(db, configured, usize::MAX)?;
    for d in reg.devices.into_values() {
        all.insert(d.id, d);
    }
    let mut all: Vec<Device> = all.into_values().collect();
    all.sort_by_key(|d| d.id);
    Ok(all)
}

/// Removes a learned device (and its last-heard facts); a configured device loses the EEP it
/// learned. A running daemon applies it within a second ([`DeviceStore::take_forgets`]); the device is
/// learned again only from a new teach-in. Returns false when it was not stored.
pub fn forget(db: &Path, id: u32) -> Result<bool, DeviceError> {
    let mut conn = open_conn(db)?;
    let hex = format!("{id:08X}");
    let tx = conn.transaction()?;
    let n = tx.execute("DELETE FROM devices WHERE id = ?1", params![hex])?
        // A secure device's key taught in by radio goes too (a configured key stays).
        + tx.execute(
            "DELETE FROM secure_devices WHERE id = ?1 AND sealed_key IS NOT NULL",
            params![hex],
        )?;
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
            ..DeviceConfig::default()
        }
    }

    fn heard(reg: &mut Registry, store: &mut DeviceStore, id: u32, at: i64) {
        reg.heard(id, UnixMs(at), Some(-60));
        store.write_heard(&reg.take_heard()).unwrap();
    }

    #[test]
    fn learned_devices_persist_and_configured_ones_win() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.db");
        let configured = [cfg("0180A3F2", Some("A5-04-01"))];
        let mut store = DeviceStore::open(&db, 100).unwrap();
        let mut reg = Registry::open(&db, &configured, 100).unwrap();
        assert!(reg.learn(0x0194_E3B9, "A5-02-05", Some(0x00D)));
        store
            .save_learned(0x0194_E3B9, "A5-02-05", Some(0x00D), UnixMs(1))
            .unwrap();
        assert!(!reg.learn(0x0194_E3B9, "A5-02-05", Some(0x00D)));
        assert!(!reg.learn(0x0180_A3F2, "A5-02-05", None));
        // The parsed EEP the reader looks profiles up by follows the text.
        let eep_of = |reg: &Registry, id| reg.get(id).and_then(|d| d.eep_id).map(|e| e.to_string());
        assert_eq!(eep_of(&reg, 0x0194_E3B9).as_deref(), Some("A5-02-05"));
        assert_eq!(eep_of(&reg, 0x0180_A3F2).as_deref(), Some("A5-04-01"));
        heard(&mut reg, &mut store, 0x0194_E3B9, 1_795_284_000_000);
        drop((reg, store));
        let all = list(&db, &configured).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].eep.as_deref(), Some("A5-04-01"));
        assert_eq!(all[0].source, Source::Configured);
        assert_eq!(all[1].eep.as_deref(), Some("A5-02-05"));
        assert_eq!(all[1].eep_id, "A5-02-05".parse().ok());
        assert_eq!(all[1].source, Source::Learned);
        assert_eq!(all[1].last_dbm, Some(-60));
        assert!(forget(&db, 0x0194_E3B9).unwrap());
        assert!(!forget(&db, 0x0194_E3B9).unwrap());
        // The learned device is gone; the configured one comes from the configuration.
        assert!(list(&db, &[]).unwrap().is_empty());
        let left = list(&db, &configured).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, 0x0180_A3F2);
    }

    #[test]
    fn a_forget_reaches_the_running_registry_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.db");
        let configured = [cfg("0180A3F2", None)];
        let mut store = DeviceStore::open(&db, 100).unwrap();
        let mut reg = Registry::open(&db, &configured, 100).unwrap();
        for (id, eep) in [(0x0194_E3B9, "A5-02-05"), (0x0180_A3F2, "A5-04-01")] {
            assert!(reg.learn(id, eep, None));
            store.save_learned(id, eep, None, UnixMs(1)).unwrap();
        }
        assert!(store.take_forgets().unwrap().is_empty());
        // The CLI, on its own connection.
        assert!(forget(&db, 0x0194_E3B9).unwrap());
        assert!(forget(&db, 0x0180_A3F2).unwrap());
        // A last-heard write racing the forget stores the rows again.
        heard(&mut reg, &mut store, 0x0194_E3B9, 2);
        let mut gone = store.take_forgets().unwrap();
        gone.sort_unstable();
        assert_eq!(gone, [0x0180_A3F2, 0x0194_E3B9]);
        for id in gone {
            reg.forget(id);
        }
        assert!(reg.get(0x0194_E3B9).is_none());
        assert_eq!(reg.get(0x0180_A3F2).unwrap().eep, None);
        assert_eq!(reg.get(0x0180_A3F2).unwrap().eep_id, None, "follows eep");
        assert!(store.take_forgets().unwrap().is_empty());
        // Heard again: an unknown sender, not a learned device, now and after a restart.
        heard(&mut reg, &mut store, 0x0194_E3B9, 3);
        drop((reg, store));
        let all = list(&db, &configured).unwrap();
        let stranger = all.iter().find(|d| d.id == 0x0194_E3B9).unwrap();
        assert_eq!(
            (stranger.source, stranger.eep.as_deref()),
            (Source::Unknown, None)
        );
        let own = all.iter().find(|d| d.id == 0x0180_A3F2).unwrap();
        assert_eq!((own.source, own.eep.as_deref()), (Source::Configured, None));
        let reg = Registry::open(&db, &configured, 100).unwrap();
        assert!(reg.get(0x0194_E3B9).is_none());
    }

    #[test]
    fn strangers_stay_within_the_bound_in_memory_and_on_disk() {
        // 100 000 distinct sender IDs (a neighbour's radio, an attacker) against a bound of 50.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.db");
        let configured = [cfg("0180A3F2", Some("A5-04-01"))];
        let mut store = DeviceStore::open(&db, 50).unwrap();
        let mut reg = Registry::open(&db, &configured, 50).unwrap();
        for round in 0..20u32 {
            for i in 0..5000u32 {
                let id = 0x0500_0000 + round * 5000 + i;
                let at = UnixMs(1_790_000_000_000 + 1000 * i64::from(round * 5000 + i));
                if i % 500 == 0 && reg.learn(id, "A5-02-05", None) {
                    store.save_learned(id, "A5-02-05", None, at).unwrap();
                }
                reg.heard(id, at, None);
            }
            reg.heard(0x0180_A3F2, UnixMs(1_767_225_600_000), None);
            store.write_heard(&reg.take_heard()).unwrap();
            assert!(reg.len() <= 51, "{} devices in memory", reg.len());
        }
        let all = list(&db, &configured).unwrap();
        assert!(all.len() <= 51, "{} devices stored", all.len());
        assert!(
            all.iter().any(|d| d.id == 0x0180_A3F2),
            "the configured device stays"
        );
        // The most recently heard strangers are the ones kept.
        assert!(
            all.iter().any(|d| d.id == 0x0500_0000 + 19 * 5000 + 4999),
            "{:?}",
            all.iter()
                .map(|d| (format!("{:08X}", d.id), d.last_seen))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_stored_source_no_variant_has_skips_its_row_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.db");
        let mut store = DeviceStore::open(&db, 100).unwrap();
        store
            .save_learned(0x0194_E3B9, "A5-02-05", None, UnixMs(1))
            .unwrap();
        store
            .save_learned(0x0194_E3BA, "A5-02-05", None, UnixMs(1))
            .unwrap();
        drop(store);
        let conn = rusqlite::Connection::open(&db).unwrap();
        let stored: Vec<String> = conn
            .prepare("SELECT source FROM devices ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored, ["learned", "learned"]);
        conn.execute(
            "UPDATE devices SET source = 'alien' WHERE id = '0194E3BA'",
            [],
        )
        .unwrap();
        let all = list(&db, &[]).unwrap();
        assert_eq!(
            all.iter().map(|d| (d.id, d.source)).collect::<Vec<_>>(),
            [(0x0194_E3B9, Source::Learned)],
            "the other row is read, the odd one is not guessed into a source"
        );
    }

    #[test]
    fn ids_must_be_eight_hex_digits() {
        assert_eq!(parse_id("0180a3f2").unwrap(), 0x0180_A3F2);
        assert!(parse_id("0180A3F").is_err());
        assert!(parse_id("0180A3FG").is_err());
    }
}
