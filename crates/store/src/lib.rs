//! ger-store: the key-value store under the API server, with etcd's MVCC meaning.
//!
//! One global revision counts every write. Every key carries the revision that created it and
//! the revision that last modified it; writes can be made conditional on the latter (the
//! apiserver's `resourceVersion` precondition). A watch from revision `R` delivers every later
//! event, in revision order, exactly once. History older than the compaction point is gone:
//! a watch or list from there fails with [`StoreError::Compacted`] ("too old").
//!
//! Backends: [`MvccStore::memory`] (tests, benchmarks) and [`open_sqlite`] (the default for
//! `ger server`: one file, WAL, group commit; a write is acknowledged only once it is durable).
//! Both share the in-memory MVCC engine in [`mvcc`]; the SQLite backend adds persistence.
//! [`conformance`] is the suite every backend must pass.

pub mod conformance;
mod mvcc;
mod sqlite;

use std::sync::Arc;

pub use mvcc::{DEFAULT_HISTORY, MvccStore};
pub use sqlite::open_sqlite;

/// A global, strictly increasing write counter (etcd's revision; the apiserver's resourceVersion).
pub type Revision = i64;

/// Object bytes, shared between the store's state, its history and its watchers.
pub type Bytes = Arc<[u8]>;

/// One key at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Arc<str>,
    pub value: Bytes,
    /// Revision of the write that created this key (unchanged by updates).
    pub create_revision: Revision,
    /// Revision of the write that produced this value (or, in a delete event, the deletion).
    pub mod_revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One write, as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For `Put`, the new value. For `Delete`, the last value, with `mod_revision` set to the
    /// revision of the deletion.
    pub kv: KeyValue,
    /// The value before this write (absent for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {key} was modified at revision {current}, not {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    #[error("too old resource version: {requested} ({oldest})")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("store is closed")]
    Closed,
    #[error("opening the store: {0}")]
    Open(String),
    #[error("persisting a write: {0}")]
    Persist(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of events, in revision order. Ends when the store closes or drops a watcher.
pub type WatchReceiver = tokio::sync::mpsc::UnboundedReceiver<Event>;

/// The MVCC store every backend implements.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Create `key`; fails with `AlreadyExists` if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;
    /// The current value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Every key under `prefix`, sorted by key, at `revision` (`None`: the latest), and the
    /// revision the answer reflects.
    async fn list(
        &self,
        prefix: &str,
        revision: Option<Revision>,
    ) -> Result<(Vec<KeyValue>, Revision)>;
    /// Replace the value of an existing key. With `expected`, only if the key's
    /// `mod_revision` is still `expected` (`Conflict` otherwise).
    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>)
    -> Result<KeyValue>;
    /// Delete a key, optionally only if its `mod_revision` is `expected`. Returns the last
    /// value with `mod_revision` = the deletion's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;
    /// Every event under `prefix` with a revision greater than `after`, then live events.
    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchReceiver>;
    /// The latest revision (0 for an empty store).
    fn current_revision(&self) -> Revision;
    /// The oldest revision a watch may start after.
    fn compacted_revision(&self) -> Revision;
    /// Forget history up to and including `revision`.
    async fn compact(&self, revision: Revision) -> Result<()>;
}

/// Shared handle to a store.
pub type DynStore = Arc<dyn Store>;
