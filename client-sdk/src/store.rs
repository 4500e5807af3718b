//! The SDK's own local state (beside hush-crypto's MLS store): identity,
//! settings, outbox, cursors, decrypted history, groups.
//!
//! One redb file, `device.redb` in the data directory, shared with
//! hush-crypto's MLS state (its own table): the SDK's table holds prefixed
//! keys with JSON values. Every [`Batch`] is one redb transaction, durable
//! (fsynced) when [`LocalStore::commit`] returns, so a message's history
//! entry and the cursor that covers it are written together; and when
//! processing a message changes MLS state, the batch is committed in the
//! same transaction as that change ([`Batch::into_side_writes`]).

use std::path::Path;
use std::sync::Arc;

use hush_protocol::GroupId;
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

const TABLE_NAME: &str = "sdk_v1";
const TABLE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new(TABLE_NAME);

/// The database file of a data directory.
pub(crate) const FILE: &str = "device.redb";

/// Opens (or creates) `device.redb` in `dir`. Tables left in the two files
/// of earlier versions (`mls.redb`, `sdk.redb`) are copied in first, each in
/// one transaction, and the old file is renamed `*.migrated` after.
pub(crate) fn open_database(dir: &Path) -> Result<Arc<Database>, Error> {
    let db = Database::create(dir.join(FILE)).map_err(db_err)?;
    for (file, table) in [("mls.redb", "mls_state_v1"), ("sdk.redb", TABLE_NAME)] {
        let old = dir.join(file);
        if !old.exists() {
            continue;
        }
        let def: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new(table);
        {
            let src = Database::open(&old).map_err(db_err)?;
            let read = src.begin_read().map_err(db_err)?;
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut to = txn.open_table(def).map_err(db_err)?;
                if let Ok(from) = read.open_table(def) {
                    for entry in redb::ReadableTable::iter(&from).map_err(db_err)? {
                        let (k, v) = entry.map_err(db_err)?;
                        to.insert(k.value(), v.value()).map_err(db_err)?;
                    }
                }
            }
            txn.commit().map_err(db_err)?;
        }
        std::fs::rename(&old, dir.join(format!("{file}.migrated"))).map_err(db_err)?;
    }
    Ok(Arc::new(db))
}

/// Key prefixes, one byte each.
pub(crate) mod key {
    use hush_protocol::GroupId;

    /// The device identity record.
    pub const IDENTITY: &[u8] = b"id";

    fn with_group(prefix: u8, group: &GroupId) -> Vec<u8> {
        let mut k = Vec::with_capacity(2 + group.0.len() + 8);
        k.push(prefix);
        // Group ids are 1..=255 bytes, so one length byte keeps prefixes unambiguous.
        k.push(group.0.len() as u8);
        k.extend_from_slice(&group.0);
        k
    }

    /// A setting.
    pub fn setting(name: &str) -> Vec<u8> {
        let mut k = b"s".to_vec();
        k.extend_from_slice(name.as_bytes());
        k
    }

    /// An outbox item, in enqueue order.
    pub fn outbox(n: u64) -> Vec<u8> {
        let mut k = b"o".to_vec();
        k.extend_from_slice(&n.to_be_bytes());
        k
    }

    /// The number of an outbox item's key (0 for a key that is not one).
    pub fn outbox_number(k: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        if k.len() == 9 {
            b.copy_from_slice(&k[1..9]);
        }
        u64::from_be_bytes(b)
    }

    /// Prefix of every outbox item.
    pub const OUTBOX: &[u8] = b"o";

    /// The highest seq of a group processed (cursor).
    pub fn cursor(group: &GroupId) -> Vec<u8> {
        with_group(b'c', group)
    }

    /// A group's metadata.
    pub fn group(group: &GroupId) -> Vec<u8> {
        with_group(b'g', group)
    }

    /// Prefix of every group's metadata.
    pub const GROUPS: &[u8] = b"g";

    /// Prefix of one group's history.
    pub fn history_prefix(group: &GroupId) -> Vec<u8> {
        with_group(b'm', group)
    }

    /// One history entry.
    pub fn history(group: &GroupId, seq: u64) -> Vec<u8> {
        let mut k = history_prefix(group);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// Where a message id lives in history.
    pub fn message_id(id: &[u8; 16]) -> Vec<u8> {
        let mut k = b"i".to_vec();
        k.extend_from_slice(id);
        k
    }

    /// Why the relay refused a message this device sent (it never reached
    /// the log), by message id.
    pub fn send_failed(id: &[u8; 16]) -> Vec<u8> {
        let mut k = b"f".to_vec();
        k.extend_from_slice(id);
        k
    }

    /// The device keys last seen for a user in this device's groups
    /// (device change events).
    pub fn known_devices(user: &str) -> Vec<u8> {
        let mut k = b"k".to_vec();
        k.extend_from_slice(user.as_bytes());
        k
    }

    /// The device ids the relay last listed for a user (`ListDevices`):
    /// the leaves claiming that user that this device accepts.
    pub fn listed_devices(user: &str) -> Vec<u8> {
        let mut k = b"l".to_vec();
        k.extend_from_slice(user.as_bytes());
        k
    }

    /// The device keys of a user whose safety number this user compared
    /// (`Client::mark_verified`).
    pub fn compared(user: &str) -> Vec<u8> {
        let mut k = b"v".to_vec();
        k.extend_from_slice(user.as_bytes());
        k
    }
}

/// Writes that reach the disk together.
#[derive(Default)]
pub(crate) struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Local(e.to_string()))?;
        self.ops.push((key, Some(bytes)));
        Ok(())
    }

    /// The batch as writes to the SDK's table, to be committed with MLS
    /// state in one transaction.
    pub fn into_side_writes(self) -> hush_crypto::SideWrites {
        hush_crypto::SideWrites {
            table: TABLE_NAME,
            ops: self.ops,
        }
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// The value this batch would write for `key`, if it touches it.
    pub fn staged<T: DeserializeOwned>(&self, key: &[u8]) -> Option<Option<T>> {
        self.ops
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref().and_then(|v| serde_json::from_slice(v).ok()))
    }
}

/// The SDK database.
pub(crate) struct LocalStore {
    db: Arc<Database>,
}

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::Local(e.to_string())
}

impl LocalStore {
    #[cfg(test)]
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_in(Arc::new(Database::create(path).map_err(db_err)?))
    }

    /// The SDK's table in a shared database.
    pub fn open_in(db: Arc<Database>) -> Result<Self, Error> {
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(TABLE).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(LocalStore { db })
    }

    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, Error> {
        let read = self.db.begin_read().map_err(db_err)?;
        let table = read.open_table(TABLE).map_err(db_err)?;
        match table.get(key).map_err(db_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(db_err)?)),
            None => Ok(None),
        }
    }

    /// Reads a value, seeing the batch's staged writes first.
    pub fn get_staged<T: DeserializeOwned>(&self, batch: &Batch, key: &[u8]) -> Result<Option<T>, Error> {
        match batch.staged(key) {
            Some(v) => Ok(v),
            None => self.get(key),
        }
    }

    /// Entries whose key starts with `prefix`, in key order (at most `limit`,
    /// from the end when `reverse`), starting strictly before/after `bound`.
    pub fn scan<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        bound: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, Error> {
        let read = self.db.begin_read().map_err(db_err)?;
        let table = read.open_table(TABLE).map_err(db_err)?;
        let mut end = prefix.to_vec();
        end.push(0xff);
        end.extend_from_slice(&[0xff; 24]);
        let range = match (bound, reverse) {
            (Some(b), true) => table.range::<&[u8]>(prefix..b),
            (Some(b), false) => {
                let mut after = b.to_vec();
                after.push(0);
                table.range::<&[u8]>(after.as_slice()..end.as_slice())
            }
            (None, _) => table.range::<&[u8]>(prefix..end.as_slice()),
        }
        .map_err(db_err)?;
        let mut out = Vec::new();
        let mut push = |k: &[u8], v: &[u8]| -> Result<bool, Error> {
            if !k.starts_with(prefix) {
                return Ok(true);
            }
            out.push((k.to_vec(), serde_json::from_slice(v).map_err(db_err)?));
            Ok(out.len() >= limit)
        };
        if reverse {
            for entry in range.rev() {
                let (k, v) = entry.map_err(db_err)?;
                if push(k.value(), v.value())? {
                    break;
                }
            }
        } else {
            for entry in range {
                let (k, v) = entry.map_err(db_err)?;
                if push(k.value(), v.value())? {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Makes the batch durable, all or nothing.
    pub fn commit(&self, batch: Batch) -> Result<(), Error> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(TABLE).map_err(db_err)?;
            for (k, v) in &batch.ops {
                match v {
                    Some(v) => table.insert(k.as_slice(), v.as_slice()).map(drop),
                    None => table.remove(k.as_slice()).map(drop),
                }
                .map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }

    pub fn put<T: Serialize>(&self, key: Vec<u8>, value: &T) -> Result<(), Error> {
        let mut b = Batch::default();
        b.put(key, value)?;
        self.commit(b)
    }

    pub fn cursor(&self, group: &GroupId) -> Result<u64, Error> {
        Ok(self.get(&key::cursor(group))?.unwrap_or(0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_two_files_of_earlier_versions_are_moved_into_one() {
        let dir = tempfile::tempdir().unwrap();
        {
            let old = LocalStore::open(&dir.path().join("sdk.redb")).unwrap();
            old.put(b"x".to_vec(), &41u64).unwrap();
            let mls = Database::create(dir.path().join("mls.redb")).unwrap();
            let txn = mls.begin_write().unwrap();
            {
                let def: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("mls_state_v1");
                txn.open_table(def).unwrap().insert(&b"k"[..], &b"v"[..]).unwrap();
            }
            txn.commit().unwrap();
        }
        let db = open_database(dir.path()).unwrap();
        let local = LocalStore::open_in(db.clone()).unwrap();
        assert_eq!(local.get::<u64>(b"x").unwrap(), Some(41));
        let mls = hush_crypto::MlsStore::open_in(db).unwrap();
        assert_eq!(mls.committed_size().0, 1);
        assert!(!dir.path().join("sdk.redb").exists() && dir.path().join("sdk.redb.migrated").exists());
        assert!(!dir.path().join("mls.redb").exists() && dir.path().join("mls.redb.migrated").exists());
    }

    #[test]
    fn scan_pages_one_group_in_both_directions() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(&dir.path().join("t.redb")).unwrap();
        let a = GroupId(vec![1]);
        let b = GroupId(vec![1, 2]);
        let mut batch = Batch::default();
        for seq in 1..=5u64 {
            batch.put(key::history(&a, seq), &seq).unwrap();
            batch.put(key::history(&b, seq), &(seq + 100)).unwrap();
        }
        s.commit(batch).unwrap();
        let p = key::history_prefix(&a);
        let newest: Vec<(Vec<u8>, u64)> = s.scan(&p, None, true, 2).unwrap();
        assert_eq!(newest.iter().map(|e| e.1).collect::<Vec<_>>(), vec![5, 4]);
        let older: Vec<(Vec<u8>, u64)> = s.scan(&p, Some(&newest[1].0), true, 10).unwrap();
        assert_eq!(older.iter().map(|e| e.1).collect::<Vec<_>>(), vec![3, 2, 1]);
        let after: Vec<(Vec<u8>, u64)> = s.scan(&p, Some(&key::history(&a, 3)), false, 10).unwrap();
        assert_eq!(after.iter().map(|e| e.1).collect::<Vec<_>>(), vec![4, 5]);
    }
}
