//! outbox: every message that must not be lost, in SQLite, until the broker confirms it.
//!
//! Input: messages (topic, payload, QoS, retain, kind) from the alert stage, written
//! synchronously before anything is published. Output: the pending rows, oldest first, for
//! the MQTT link; a row is deleted only when the broker's PUBACK for it arrives. The
//! database runs in WAL mode with `synchronous = FULL`, so a committed row survives a
//! crash or power cut. Bounded by size: when over `max_bytes`, the oldest unsent
//! snapshots are deleted first; alerts are never deleted (the write still succeeds and the
//! overflow is counted). The limit is also bounded by the free space of the filesystem less
//! the reserve kept for alerts ([`DiskGuard`]); unsent snapshots are dropped first to make
//! room for a new one, and the space of delivered rows goes back to the filesystem (the WAL
//! is truncated and free pages vacuumed once the outbox is empty, and the WAL never grows
//! past a limit sized to the reserve). Shutdown: nothing to do; rows wait for the next start.
//!
//! The MQTT link reads no SQLite on its send path: it installs a [`Tap`], and every commit
//! hands its rows (in row-id order, under the same lock) to the link's bounded queue. When
//! that queue is full or the link is away, the link falls back to reading pending rows.

mod disk;

/// The run number of incident ids to use after `stored` (the last one used) when the
/// time is `now_secs`: above the last one, and not below the Unix time in seconds.
pub fn next_incident_run(stored: Option<u64>, now_secs: u64) -> u64 {
    stored.map_or(0, |s| s + 1).max(now_secs).min(u32::MAX as u64)
}

pub use disk::{DiskGuard, DiskState, Optional};

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("outbox: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(
        "{what} in this database has schema version {found}, newer than this edge-node knows ({known}); run the newer edge-node, or move the file away"
    )]
    Newer { what: String, found: i64, known: usize },
}

/// The schema, as steps: a database at version N (`PRAGMA user_version`) is brought up to
/// date by running the steps after the N-th, each in its own transaction. Databases made
/// before versioning are at 0 with the step-1 table already there (`IF NOT EXISTS`).
const SCHEMA_STEPS: &[&str] = &[
    // 1: the outbox itself.
    "CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        retain INTEGER NOT NULL,
        kind TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );",
    // 2: small values the node keeps across restarts (the incident run number).
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
];

fn upgrade(conn: &mut Connection) -> Result<(), OutboxError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found < 0 || found as usize > SCHEMA_STEPS.len() {
        return Err(OutboxError::Newer { what: "the outbox".into(), found, known: SCHEMA_STEPS.len() });
    }
    for (i, step) in SCHEMA_STEPS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

impl OutboxError {
    /// The filesystem had no room for the write.
    pub fn is_disk_full(&self) -> bool {
        let e = match self {
            Self::Open { source, .. } | Self::Sql(source) => source,
            Self::Newer { .. } => return false,
        };

        e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
    }
}

/// What a message is, for the overflow policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Alert,
    Snapshot,
    Order,
    Status,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Snapshot => "snapshot",
            Self::Order => "order",
            Self::Status => "status",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub kind: Kind,
}

/// A stored message awaiting its PUBACK.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub message: Message,
}

pub struct Outbox {
    conn: Connection,
    max_bytes: u64,
    /// Sum of the stored payloads, kept current (no table scan per write).
    stored_bytes: u64,
    /// Snapshots dropped to stay under the size limit (or to make room on the disk).
    pub dropped_snapshots: u64,
    disk: Option<DiskGuard>,
    /// Committed rows go here too (the MQTT link's queue), when a link installed one.
    tap: Option<TapSender>,
    /// Acknowledgements since free pages were last given back.
    acks_since_vacuum: u32,
    last_reclaim: Option<std::time::Instant>,
}

/// The WAL is checkpointed at this many pages and truncated to it afterwards (SQLite's
/// default checkpoint size); smaller when the disk reserve is small.
const WAL_PAGES: u64 = 1000;

impl Outbox {
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, OutboxError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn =
            Connection::open(path).map_err(|source| OutboxError::Open { path: path.display().to_string(), source })?;
        // Another process on the same file (an operator's sqlite3, a second tool) waits, not fails.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Deleted rows' pages go back to the filesystem (`incremental_vacuum`); takes effect
        // on a new database, or an empty old one at its first VACUUM (`reclaim_space`).
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", WAL_PAGES * 4096)?;
        upgrade(&mut conn).map_err(|e| match e {
            OutboxError::Sql(source) => OutboxError::Open { path: path.display().to_string(), source },
            other => other,
        })?;
        let stored_bytes =
            conn.query_row("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox", [], |r| r.get::<_, i64>(0))? as u64;
        let mut outbox = Self {
            conn,
            max_bytes,
            stored_bytes,
            dropped_snapshots: 0,
            disk: None,
            tap: None,
            acks_since_vacuum: 0,
            last_reclaim: None,
        };
        if stored_bytes == 0 {
            outbox.reclaim_space();
        }
        Ok(outbox)
    }

    /// Bounds the outbox by the free space of its filesystem less `guard`'s reserve, and
    /// keeps the WAL within a quarter of the reserve.
    pub fn with_disk(mut self, guard: DiskGuard) -> Self {
        // A reserve larger than the filesystem (the default 64 MiB on a small disk) must not
        // let the WAL outgrow the disk.
        let room = guard.total().map_or(guard.reserve(), |t| t.min(guard.reserve()));
        let pages = (room / 4 / 4096).clamp(16, WAL_PAGES);
        let _ = self.conn.pragma_update(None, "wal_autocheckpoint", pages);
        let _ = self.conn.pragma_update(None, "journal_size_limit", pages * 4096);
        self.disk = Some(guard);
        self
    }

    pub fn disk(&self) -> Option<&DiskGuard> {
        self.disk.as_ref()
    }

    /// Deletes the oldest unsent snapshots until at least `bytes` of payload are gone (or
    /// none is left), and gives the space back to the filesystem. Returns the bytes freed.
    pub fn drop_snapshots(&mut self, bytes: u64) -> Result<u64, OutboxError> {
        let before = self.stored_bytes;
        while before - self.stored_bytes < bytes {
            let n = self.delete(
                "DELETE FROM outbox WHERE id = (SELECT id FROM outbox WHERE kind = 'snapshot' ORDER BY id LIMIT 1) RETURNING LENGTH(payload)",
                [],
            )?;
            if n == 0 {
                break;
            }
            self.dropped_snapshots += 1;
        }
        let freed = before - self.stored_bytes;
        if freed > 0 {
            self.reclaim_space();
        }
        Ok(freed)
    }

    /// Returns free pages to the filesystem and truncates the WAL. An old database made
    /// without incremental auto-vacuum is converted the first time it is empty.
    fn reclaim_space(&mut self) {
        self.acks_since_vacuum = 0;
        self.last_reclaim = Some(std::time::Instant::now());
        let mode: i64 = self.conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap_or(2);
        if mode != 2 && self.stored_bytes == 0 {
            let _ = self.conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;");
        }
        // Each step of `incremental_vacuum` frees one page: run it to the end.
        let vacuum = |conn: &Connection| -> rusqlite::Result<()> {
            let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
            Ok(())
        };
        let _ = vacuum(&self.conn);
        let _ = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    /// Stores a message (committed before this returns) and returns its row id.
    pub fn push(&mut self, m: &Message) -> Result<i64, OutboxError> {
        Ok(self.push_all(std::slice::from_ref(m))?[0])
    }

    /// Stores messages in one transaction (all or none, one disk sync) and returns their
    /// row ids, in order.
    pub fn push_all(&mut self, messages: &[Message]) -> Result<Vec<i64>, OutboxError> {
        let ((), ids) = self.commit_with(|_, out| {
            out.extend_from_slice(messages);
            Ok::<_, OutboxError>(())
        })?;
        Ok(ids)
    }

    /// Runs `f` in one transaction; the messages it adds to the list are stored in that same
    /// transaction. Another component keeping its state in this database (the dispatcher)
    /// uses it so that a state change and the messages announcing it commit together or not
    /// at all. `f`'s error rolls everything back.
    pub fn transaction<T, E: From<OutboxError>>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction, &mut Vec<Message>) -> Result<T, E>,
    ) -> Result<T, E> {
        Ok(self.commit_with(f)?.0)
    }

    /// [`transaction`](Self::transaction), also returning the stored messages' row ids.
    fn commit_with<T, E: From<OutboxError>>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction, &mut Vec<Message>) -> Result<T, E>,
    ) -> Result<(T, Vec<i64>), E> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let tx = self.conn.transaction().map_err(OutboxError::from)?;
        let mut messages = Vec::new();
        let out = f(&tx, &mut messages)?;
        let insert_all = || -> Result<Vec<i64>, rusqlite::Error> {
            let mut insert = tx.prepare_cached(
                "INSERT INTO outbox (topic, payload, retain, kind, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            messages
                .iter()
                .map(|m| insert.insert(params![m.topic, m.payload, m.retain, m.kind.as_str(), now]))
                .collect()
        };
        let ids = insert_all().map_err(OutboxError::from)?;
        tx.commit().map_err(OutboxError::from)?;
        self.stored_bytes += messages.iter().map(|m| m.payload.len() as u64).sum::<u64>();
        if let Some(tap) = &self.tap {
            for (&id, message) in ids.iter().zip(&messages) {
                tap.send(Row { id, message: message.clone() });
            }
        }
        self.enforce_limit()?;
        Ok((out, ids))
    }

    /// From now on every committed row is also handed to the returned queue while its
    /// receiver listens (`capacity` rows; rows that do not fit are only in the database,
    /// and the receiver is told so).
    /// A second call replaces the first receiver.
    pub fn tap(&mut self, capacity: usize) -> Tap {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let state = std::sync::Arc::new(TapState::default());
        self.tap = Some(TapSender { tx, state: state.clone() });
        Tap { rx, state }
    }

    /// The next run number for incident ids (the node's `rules::IncidentIds`), stored before it is
    /// used so a restart never reuses one: above the last one stored, and not below the
    /// Unix time in seconds (`now_secs`).
    pub fn next_incident_run(&mut self, now_secs: u64) -> Result<u64, OutboxError> {
        let tx = self.conn.transaction()?;
        let stored: Option<i64> = tx
            .query_row("SELECT value FROM meta WHERE key = 'incident_run'", [], |r| r.get(0))
            .map(Some)
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })?;
        let run = next_incident_run(stored.map(|s| s as u64), now_secs);
        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('incident_run', ?1)", [run as i64])?;
        tx.commit()?;
        Ok(run)
    }

    /// Brings the tables of another component keeping its state in this database (the
    /// dispatcher) up to date: its version is stored in `meta` as `schema:<name>`, and the
    /// steps after it run, each in its own transaction with the new version. A version newer
    /// than `steps` knows is refused.
    pub fn upgrade_tables(&mut self, name: &str, steps: &[&str]) -> Result<(), OutboxError> {
        let key = format!("schema:{name}");
        let found: i64 = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0))
            .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(0) } else { Err(e) })?;
        if found < 0 || found as usize > steps.len() {
            return Err(OutboxError::Newer { what: format!("the {name} tables"), found, known: steps.len() });
        }
        for (i, step) in steps.iter().enumerate().skip(found as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(step)?;
            tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, i as i64 + 1])?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Read-only access for components that keep their own tables in this database.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Runs a `DELETE … RETURNING LENGTH(payload)` and keeps the byte count; returns the rows deleted.
    fn delete(&mut self, sql: &str, p: impl rusqlite::Params) -> Result<usize, OutboxError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let lengths: Vec<i64> = stmt.query_map(p, |r| r.get(0))?.collect::<Result<_, _>>()?;
        self.stored_bytes = self.stored_bytes.saturating_sub(lengths.iter().sum::<i64>() as u64);
        Ok(lengths.len())
    }

    /// Stores a message that supersedes any unsent one on the same topic (retained status:
    /// only the latest matters, so an outage does not pile up stale ones).
    pub fn push_latest(&mut self, m: &Message) -> Result<i64, OutboxError> {
        self.delete(
            "DELETE FROM outbox WHERE topic = ?1 AND kind = ?2 RETURNING LENGTH(payload)",
            params![m.topic, m.kind.as_str()],
        )?;
        self.push(m)
    }

    /// Deletes the oldest snapshots while the stored payloads exceed the limit: the
    /// configured size, and what the disk holds beyond its reserve.
    fn enforce_limit(&mut self) -> Result<(), OutboxError> {
        let limit = match self.disk.as_ref().and_then(|d| Some((d.free()?, d.reserve()))) {
            Some((free, reserve)) => self.max_bytes.min((self.stored_bytes + free).saturating_sub(reserve)),
            None => self.max_bytes,
        };
        if self.stored_bytes > limit {
            self.drop_snapshots(self.stored_bytes - limit)?;
        }
        Ok(())
    }

    /// Pending rows with id greater than `after`, oldest first.
    pub fn pending(&self, after: i64, limit: usize) -> Result<Vec<Row>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, topic, payload, retain, kind FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2")?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            let kind: String = r.get(4)?;
            Ok(Row {
                id: r.get(0)?,
                message: Message {
                    topic: r.get(1)?,
                    payload: r.get(2)?,
                    retain: r.get(3)?,
                    kind: match kind.as_str() {
                        "snapshot" => Kind::Snapshot,
                        "order" => Kind::Order,
                        "status" => Kind::Status,
                        _ => Kind::Alert,
                    },
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The broker confirmed the row: it leaves the outbox. When the outbox empties (at
    /// most every 5 s, or at once while the disk is low) and every 256 acknowledgements
    /// meanwhile, the space goes back to the filesystem.
    pub fn ack(&mut self, id: i64) -> Result<(), OutboxError> {
        self.ack_all(&[id])
    }

    /// Gives space back if the outbox is empty and it was not done in the last 5 s (the
    /// node calls this now and then, so the last delivery of a burst is reclaimed too).
    pub fn maintain(&mut self) {
        if self.stored_bytes == 0 && self.acks_since_vacuum > 0 {
            self.reclaim_space();
        }
    }

    fn reclaim_due(&self) -> bool {
        let low = self.disk.as_ref().is_some_and(|d| d.state() != DiskState::Ok);
        low || self.last_reclaim.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(5))
    }

    /// Several acknowledged rows leave the outbox in one transaction (one disk sync).
    pub fn ack_all(&mut self, ids: &[i64]) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        let mut freed = 0u64;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1 RETURNING LENGTH(payload)")?;
            for id in ids {
                let lengths: Vec<i64> = stmt.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?;
                freed += lengths.iter().sum::<i64>() as u64;
            }
        }
        tx.commit()?;
        self.stored_bytes = self.stored_bytes.saturating_sub(freed);
        self.acks_since_vacuum = self.acks_since_vacuum.saturating_add(ids.len() as u32);
        if self.acks_since_vacuum >= 256 || self.stored_bytes == 0 && self.reclaim_due() {
            self.reclaim_space();
        }
        Ok(())
    }

    pub fn len(&self) -> Result<u64, OutboxError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))? as u64)
    }

    pub fn is_empty(&self) -> Result<bool, OutboxError> {
        Ok(self.len()? == 0)
    }

    /// Sum of the stored payloads.
    pub fn bytes(&self) -> Result<u64, OutboxError> {
        Ok(self.stored_bytes)
    }
}

/// The sending half of a [`Tap`], kept by the outbox.
struct TapSender {
    tx: tokio::sync::mpsc::Sender<Row>,
    state: std::sync::Arc<TapState>,
}

#[derive(Default)]
struct TapState {
    /// The receiver wants rows (it is connected and has read the database up to now).
    listening: std::sync::atomic::AtomicBool,
    /// A row was committed that the queue did not get.
    missed: std::sync::atomic::AtomicBool,
}

impl TapSender {
    fn send(&self, row: Row) {
        use std::sync::atomic::Ordering::SeqCst;
        if !self.state.listening.load(SeqCst) || self.tx.try_send(row).is_err() {
            self.state.missed.store(true, SeqCst);
        }
    }
}

/// Committed rows as they are committed, oldest first (see [`Outbox::tap`]). Rows come
/// only while the receiver listens, so an idle receiver holds no memory.
pub struct Tap {
    pub rx: tokio::sync::mpsc::Receiver<Row>,
    state: std::sync::Arc<TapState>,
}

impl Tap {
    /// Whether a row was committed that this queue did not get (it was full, or nobody
    /// listened) since the last call; such rows are read from the database instead.
    pub fn take_missed(&self) -> bool {
        self.state.missed.swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts or stops taking rows.
    pub fn listen(&self, on: bool) {
        self.state.listening.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Empties the queue (before reading the database, which has every row it held).
    pub fn clear(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: Kind, size: usize) -> Message {
        Message { topic: "t".into(), payload: vec![7; size], retain: false, kind }
    }

    fn temp() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gridsight-outbox-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("outbox.db")
    }

    #[test]
    fn the_tap_gets_committed_rows_in_order_and_says_when_it_missed_some() {
        let mut o = Outbox::open(&temp(), 1 << 20).unwrap();
        let mut tap = o.tap(2);
        // Not listening: nothing queued, the miss is noted.
        o.push(&msg(Kind::Alert, 1)).unwrap();
        assert!(tap.rx.try_recv().is_err());
        assert!(tap.take_missed());
        assert!(!tap.take_missed());
        tap.listen(true);
        let ids = o.push_all(&[msg(Kind::Alert, 2), msg(Kind::Snapshot, 3)]).unwrap();
        let got: Vec<Row> = std::iter::from_fn(|| tap.rx.try_recv().ok()).collect();
        assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
        assert_eq!(got[1].message, msg(Kind::Snapshot, 3));
        assert!(!tap.take_missed());
        // Full: the third row is only in the database.
        o.push_all(&[msg(Kind::Alert, 4), msg(Kind::Alert, 5), msg(Kind::Alert, 6)]).unwrap();
        assert!(tap.take_missed());
        tap.clear();
        assert!(tap.rx.try_recv().is_err());
        assert_eq!(o.pending(0, 10).unwrap().len(), 6);
        // Acknowledged in one batch.
        let all: Vec<i64> = o.pending(0, 10).unwrap().iter().map(|r| r.id).collect();
        o.ack_all(&all[..5]).unwrap();
        assert_eq!(o.pending(0, 10).unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [all[5]]);
        assert_eq!(o.bytes().unwrap(), 6);
    }

    #[test]
    fn rows_survive_reopening_until_acked() {
        let path = temp();
        {
            let mut o = Outbox::open(&path, 1 << 20).unwrap();
            let a = o.push(&msg(Kind::Alert, 10)).unwrap();
            let b = o.push(&msg(Kind::Alert, 10)).unwrap();
            assert!(b > a);
            o.ack(a).unwrap();
        }
        let o = Outbox::open(&path, 1 << 20).unwrap();
        assert_eq!(o.bytes().unwrap(), 10);
        let rows = o.pending(0, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].message, msg(Kind::Alert, 10));
        assert!(o.pending(rows[0].id, 10).unwrap().is_empty());
    }

    #[test]
    fn a_newer_status_replaces_an_unsent_one() {
        let mut o = Outbox::open(&temp(), 1 << 20).unwrap();
        let status = |v: &str| Message {
            topic: "n/cameras/a/status".into(),
            payload: v.as_bytes().to_vec(),
            retain: true,
            kind: Kind::Status,
        };
        o.push(&msg(Kind::Alert, 3)).unwrap();
        o.push_latest(&status("1")).unwrap();
        o.push_latest(&status("2")).unwrap();
        let rows = o.pending(0, 10).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].message.payload, b"2");
        assert_eq!(o.bytes().unwrap(), 4);
    }

    #[test]
    fn push_all_is_one_transaction_in_order() {
        let mut o = Outbox::open(&temp(), 1 << 20).unwrap();
        let ids = o.push_all(&[msg(Kind::Alert, 5), msg(Kind::Snapshot, 50)]).unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids[1] > ids[0]);
        let kinds: Vec<Kind> = o.pending(0, 10).unwrap().iter().map(|r| r.message.kind).collect();
        assert_eq!(kinds, [Kind::Alert, Kind::Snapshot]);
        assert_eq!(o.bytes().unwrap(), 55);
        o.ack(ids[1]).unwrap();
        assert_eq!(o.bytes().unwrap(), 5);
    }

    /// Every older schema is brought up to date with its rows kept; a newer one is refused.
    #[test]
    fn component_tables_upgrade_step_by_step_and_refuse_newer() {
        let path = temp();
        let steps = ["CREATE TABLE IF NOT EXISTS a (x INTEGER);", "ALTER TABLE a ADD COLUMN y INTEGER;"];
        {
            let mut o = Outbox::open(&path, 1 << 20).unwrap();
            o.upgrade_tables("thing", &steps[..1]).unwrap();
            o.conn.execute("INSERT INTO a (x) VALUES (1)", []).unwrap();
        }
        let mut o = Outbox::open(&path, 1 << 20).unwrap();
        o.upgrade_tables("thing", &steps).unwrap();
        // Run again: nothing to do (an ALTER run twice would fail).
        o.upgrade_tables("thing", &steps).unwrap();
        let (x, y): (i64, Option<i64>) =
            o.conn.query_row("SELECT x, y FROM a", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((x, y), (1, None));
        let e = o.upgrade_tables("thing", &steps[..1]).unwrap_err();
        assert!(e.to_string().contains("the thing tables in this database has schema version 2"), "{e}");
    }

    #[test]
    fn schema_upgrades_from_each_older_version() {
        for from in 0..SCHEMA_STEPS.len() {
            let path = temp().with_file_name(format!("v{from}.db"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let _ = std::fs::remove_file(&path);
            {
                let conn = Connection::open(&path).unwrap();
                for step in &SCHEMA_STEPS[..from.max(1)] {
                    conn.execute_batch(step).unwrap();
                }
                // Version 0 is a database made before versioning, with the outbox table.
                conn.pragma_update(None, "user_version", from as i64).unwrap();
                conn.execute(
                    "INSERT INTO outbox (topic, payload, retain, kind, created_ms) VALUES ('t', x'07', 0, 'alert', 0)",
                    [],
                )
                .unwrap();
            }
            let mut o = Outbox::open(&path, 1 << 20).unwrap();
            let v: i64 = o.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(v as usize, SCHEMA_STEPS.len(), "from {from}");
            assert_eq!(o.pending(0, 10).unwrap().len(), 1, "from {from}: the row survived");
            assert!(o.next_incident_run(1).unwrap() >= 1);
        }
        let path = temp().with_file_name("newer.db");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&path);

        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let e = Outbox::open(&path, 1 << 20).err().expect("a newer schema is refused");
        assert!(e.to_string().contains("schema version 99"), "{e}");
    }

    /// Run numbers only grow, across reopenings, even when the clock steps back.
    #[test]
    fn incident_runs_never_repeat() {
        let path = temp();
        let a = Outbox::open(&path, 1 << 20).unwrap().next_incident_run(1_800_000_000).unwrap();
        let b = Outbox::open(&path, 1 << 20).unwrap().next_incident_run(1_799_990_000).unwrap();
        let c = Outbox::open(&path, 1 << 20).unwrap().next_incident_run(1_800_000_000).unwrap();
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    /// Delivered rows give their space back: the file shrinks and the WAL is truncated.

    #[test]
    fn delivered_rows_give_the_space_back() {
        let path = temp();
        let mut o = Outbox::open(&path, 1 << 30).unwrap();
        let ids: Vec<i64> = (0..40).map(|_| o.push(&msg(Kind::Snapshot, 50_000)).unwrap()).collect();
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let wal = path.with_extension("db-wal");
        assert!(size(&path) + size(&wal) > 1_500_000);
        for id in ids {
            o.ack(id).unwrap();
        }
        o.maintain();

        let mode: i64 = o.conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, 2, "incremental auto-vacuum");
        assert!(size(&path) < 100_000, "db {} bytes", size(&path));
        assert_eq!(size(&wal), 0, "wal truncated");
    }

    #[test]
    fn over_the_limit_oldest_snapshots_go_first_and_alerts_never() {
        let mut o = Outbox::open(&temp(), 250).unwrap();
        o.push(&msg(Kind::Snapshot, 100)).unwrap();
        o.push(&msg(Kind::Alert, 100)).unwrap();
        o.push(&msg(Kind::Snapshot, 100)).unwrap(); // 300 > 250: the first snapshot goes
        let kinds: Vec<Kind> = o.pending(0, 10).unwrap().iter().map(|r| r.message.kind).collect();
        assert_eq!(kinds, [Kind::Alert, Kind::Snapshot]);
        o.push(&msg(Kind::Alert, 100)).unwrap(); // 300: the last snapshot goes
        o.push(&msg(Kind::Alert, 100)).unwrap(); // 300 alerts: over, but alerts stay
        let kinds: Vec<Kind> = o.pending(0, 10).unwrap().iter().map(|r| r.message.kind).collect();
        assert_eq!(kinds, [Kind::Alert; 3]);
        assert_eq!(o.dropped_snapshots, 2);
        assert_eq!(o.bytes().unwrap(), 300);
    }
}
