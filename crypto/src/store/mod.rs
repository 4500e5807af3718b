//! Persistent MLS state: every key, key package and group of one device.
//!
//! # Atomicity
//!
//! One MLS operation (say, merging a commit) makes dozens of separate writes
//! through openmls's storage trait: tree, secrets, context, transcript hash,
//! key pairs. Persisting each write on its own would leave a half-updated group
//! after a crash between two of them. So writes are staged in memory and the
//! [`Device`](crate::Device) makes them durable together, in one redb write
//! transaction, at the end of each operation ([`MlsStore::commit`]); if the
//! operation fails, the staged writes are dropped ([`MlsStore::rollback`]) and
//! the device reloads the group from what is durable.
//!
//! redb commits with copy-on-write pages, checksums and a double-buffered
//! commit slot, fsynced before the commit returns (its default
//! `Durability::Immediate`): after a crash the database holds either all of a
//! transaction or none of it. That is why redb was chosen over a file written
//! per change: the same guarantee from a file would need write-to-temp, fsync,
//! rename and fsync of the directory, rewriting the whole state on every
//! message; redb rewrites only the changed pages. It is also already a
//! dependency of the relay, so the workspace carries one embedded store.
//!
//! The whole state is also kept in memory (reads never touch the disk): a
//! device's MLS state is small (hundreds of kilobytes for a group of a
//! thousand) and this keeps message processing off the disk except for the
//! one commit.

mod provider;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const TABLE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("mls_state_v1");

/// Why the store failed. Values are strings so the error stays `Clone + PartialEq`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("store database: {0}")]
    Database(String),
    /// A stored value could not be encoded or decoded.
    #[error("store encoding: {0}")]
    Encoding(String),
}

impl StoreError {
    fn db(e: impl std::fmt::Display) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// Writes to another table of a shared database (see [`MlsStore::open_in`]),
/// made durable together with the MLS writes they go with
/// ([`Device::commit_held`](crate::Device::commit_held)).
#[derive(Clone, Debug, Default)]
pub struct SideWrites {
    /// The table's name.
    pub table: &'static str,
    /// Keys with their new value (`Some`) or deleted (`None`), in order.
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

#[derive(Default)]
struct State {
    /// What is durable (or, in memory, what was committed).
    committed: HashMap<Vec<u8>, Vec<u8>>,
    /// Writes of operations that succeeded while commits are held
    /// ([`Device::hold_commits`](crate::Device::hold_commits)), waiting for
    /// the one transaction that makes them durable together.
    held: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Writes (`Some`) and deletions (`None`) of the operation in progress.
    pending: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Durable transactions made so far.
    commits: u64,
}

/// A device's MLS state: a key-value map staged in memory and committed
/// atomically to a redb file (or kept only in memory, for tests and benchmarks).
///
/// It is the openmls storage provider of a [`Device`](crate::Device); callers
/// only open it and hand it over.
pub struct MlsStore {
    db: Option<Arc<Database>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for MlsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlsStore")
            .field("persistent", &self.db.is_some())
            .finish()
    }
}

impl MlsStore {
    /// Opens (or creates) the store file at `path` and loads it. A file can be
    /// open in one process only; a second open fails.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_in(Arc::new(Database::create(path).map_err(StoreError::db)?))
    }

    /// Opens the store in a database the caller shares (its table is
    /// `mls_state_v1`), so that the caller's own writes can be made durable
    /// in the same transaction as an MLS operation ([`SideWrites`]).
    pub fn open_in(db: Arc<Database>) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(StoreError::db)?;
        txn.open_table(TABLE).map_err(StoreError::db)?;
        txn.commit().map_err(StoreError::db)?;

        let mut committed = HashMap::new();
        let read = db.begin_read().map_err(StoreError::db)?;
        let table = read.open_table(TABLE).map_err(StoreError::db)?;
        for entry in table.iter().map_err(StoreError::db)? {
            let (k, v) = entry.map_err(StoreError::db)?;
            committed.insert(k.value().to_vec(), v.value().to_vec());
        }
        Ok(MlsStore {
            db: Some(db),
            state: Mutex::new(State {
                committed,
                ..State::default()
            }),
        })
    }

    /// A store that lives only in memory: nothing survives the process.
    pub fn in_memory() -> Self {
        MlsStore {
            db: None,
            state: Mutex::new(State::default()),
        }
    }

    /// An in-memory copy of everything committed so far: changes to the copy
    /// never reach this store or its file (for example to try operations on a
    /// saved state in tests and benchmarks).
    pub fn snapshot_in_memory(&self) -> MlsStore {
        MlsStore {
            db: None,
            state: Mutex::new(State {
                committed: self.lock().committed.clone(),
                ..State::default()
            }),
        }
    }

    /// Whether the store writes to disk.
    pub fn is_persistent(&self) -> bool {
        self.db.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // (each mutation is one insert or remove), so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let state = self.lock();
        match state.pending.get(key).or_else(|| state.held.get(key)) {
            Some(staged) => staged.clone(),
            None => state.committed.get(key).cloned(),
        }
    }

    pub(crate) fn put(&self, key: Vec<u8>, value: Vec<u8>) {
        self.lock().pending.insert(key, Some(value));
    }

    pub(crate) fn delete(&self, key: Vec<u8>) {
        self.lock().pending.insert(key, None);
    }

    /// Makes every staged write durable, all or none.
    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        self.commit_with(&SideWrites::default())
    }

    /// Makes every staged write (held and in progress) and `side` durable in
    /// one transaction, all or none. An in-memory store drops `side`.
    pub(crate) fn commit_with(&self, side: &SideWrites) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.pending.is_empty() && state.held.is_empty() && side.ops.is_empty() {
            return Ok(());
        }
        let mut staged = std::mem::take(&mut state.held);
        staged.extend(std::mem::take(&mut state.pending));
        if let Some(db) = &self.db {
            let written = (|| {
                let txn = db.begin_write().map_err(StoreError::db)?;
                {
                    let mut table = txn.open_table(TABLE).map_err(StoreError::db)?;
                    for (k, v) in &staged {
                        match v {
                            Some(v) => table.insert(k.as_slice(), v.as_slice()).map(drop),
                            None => table.remove(k.as_slice()).map(drop),
                        }
                        .map_err(StoreError::db)?;
                    }
                }
                if !side.ops.is_empty() {
                    let def: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new(side.table);
                    let mut table = txn.open_table(def).map_err(StoreError::db)?;
                    for (k, v) in &side.ops {
                        match v {
                            Some(v) => table.insert(k.as_slice(), v.as_slice()).map(drop),
                            None => table.remove(k.as_slice()).map(drop),
                        }
                        .map_err(StoreError::db)?;
                    }
                }
                txn.commit().map_err(StoreError::db)
            })();
            if let Err(e) = written {
                // Nothing reached the disk: keep the writes staged, so the
                // caller's rollback drops them (or a retry commits them).
                state.held = staged;
                return Err(e);
            }
            state.commits += 1;
        }
        for (k, v) in staged {
            match v {
                Some(v) => state.committed.insert(k, v),
                None => state.committed.remove(&k),
            };
        }
        Ok(())
    }

    /// Keeps the writes of the operation that just succeeded staged with the
    /// held ones, for one later [`MlsStore::commit_with`]; a later failing
    /// operation then drops only its own writes.
    pub(crate) fn hold(&self) {
        let mut state = self.lock();
        let pending = std::mem::take(&mut state.pending);
        state.held.extend(pending);
    }

    /// Drops the writes of the operation in progress (not the held ones).
    pub(crate) fn rollback_operation(&self) {
        self.lock().pending.clear();
    }

    /// Drops every staged write, held ones too.
    pub(crate) fn rollback(&self) {
        let mut state = self.lock();
        state.pending.clear();
        state.held.clear();
    }

    /// Durable transactions this store has made since it was opened (none
    /// for an in-memory store): lets tests count what a batch costs.
    pub fn durable_commits(&self) -> u64 {
        self.lock().commits
    }

    /// Number of committed entries and their total size in bytes.
    pub fn committed_size(&self) -> (usize, usize) {
        let state = self.lock();
        let bytes = state.committed.iter().map(|(k, v)| k.len() + v.len()).sum();
        (state.committed.len(), bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn staged_writes_are_visible_then_committed_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = MlsStore::open(&path).unwrap();
            store.put(b"a".to_vec(), b"1".to_vec());
            assert_eq!(store.get(b"a"), Some(b"1".to_vec()));
            store.commit().unwrap();
            store.put(b"b".to_vec(), b"2".to_vec());
            store.delete(b"a".to_vec());
            assert_eq!(store.get(b"a"), None);
            store.rollback();
            assert_eq!(store.get(b"a"), Some(b"1".to_vec()));
            store.put(b"c".to_vec(), b"3".to_vec());
            // Dropped without commit: a crash before the end of the operation.
        }
        let store = MlsStore::open(&path).unwrap();
        assert_eq!(store.get(b"a"), Some(b"1".to_vec()));
        assert_eq!(store.get(b"b"), None);
        assert_eq!(store.get(b"c"), None);
    }

    #[test]
    fn a_failing_operation_while_held_drops_only_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = MlsStore::open(&path).unwrap();
            let opened = store.durable_commits();
            // Operation 1 succeeds and is held.
            store.put(b"a".to_vec(), b"1".to_vec());
            store.hold();
            // Operation 2 fails: only its writes go.
            store.put(b"b".to_vec(), b"2".to_vec());
            store.put(b"a".to_vec(), b"changed".to_vec());
            store.rollback_operation();
            assert_eq!(store.get(b"a"), Some(b"1".to_vec()));
            assert_eq!(store.get(b"b"), None);
            // Operation 3 succeeds; both held ones become durable together.
            store.put(b"c".to_vec(), b"3".to_vec());
            store.hold();
            store.commit().unwrap();
            assert_eq!(store.durable_commits() - opened, 1);
        }
        let store = MlsStore::open(&path).unwrap();
        assert_eq!(store.get(b"a"), Some(b"1".to_vec()));
        assert_eq!(store.get(b"b"), None);
        assert_eq!(store.get(b"c"), Some(b"3".to_vec()));
    }

    #[test]
    fn a_file_is_open_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let _first = MlsStore::open(&path).unwrap();
        assert!(matches!(MlsStore::open(&path), Err(StoreError::Database(_))));
    }
}
