//! A revisioned key-value store with etcd's semantics: the only place cluster state lives.
//!
//! Every write gets the next global revision. Each key remembers the revision that created it and
//! the revision that last changed it; updates and deletes can be made conditional on that mod
//! revision (compare-and-swap), which is how the API server implements optimistic concurrency.
//! Lists can be served at a past revision and paged; watches replay history from a revision and
//! then follow live changes. Compaction forgets history before a revision; asking for it afterwards
//! fails with [`Error::Compacted`], which the API turns into 410 Expired.
//!
//! Backends: [`sqlite::SqliteStore`]. Every backend must pass [`conformance`]. Backend-agnostic
//! helpers: [`compactor::spawn_auto_compactor`] (periodic compaction) and
//! [`bench::measure_create_throughput`] (the store's own write throughput).

#[cfg(any(test, feature = "test-util"))]
pub mod bench;
pub mod compactor;
#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
pub mod sqlite;

use std::sync::Arc;

use futures::stream::BoxStream;

/// A global, monotonically increasing revision. The first write gets revision 1.
pub type Revision = i64;

/// One stored key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    /// Shared so that fanning an event out to many watchers does not copy the object.
    pub value: Arc<[u8]>,
    /// The revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// The revision of the write that produced this value.
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The key was created or updated; `kv` is the new value.
    Put,
    /// The key was deleted; `kv` is the value it had, with `mod_revision` set to the delete's revision.
    Delete,
}

/// A change to one key, as delivered to watchers in revision order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    pub kv: KeyValue,
    /// The value before this change, if the key existed.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Options for [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Serve the list as of this revision. `None` means the current revision.
    pub revision: Option<Revision>,
    /// Return at most this many items (0 or `None`: no limit).
    pub limit: Option<usize>,
    /// Only keys strictly greater than this one (for paging: the last key of the previous page).
    pub start_after: Option<String>,
}

/// The answer to [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// In ascending key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was served at (the current revision when none was asked for).
    pub revision: Revision,
    /// How many more keys under the prefix follow the last returned item at that revision.
    pub remaining: usize,
}

/// Errors from the store. `Conflict`, `NotFound` and `AlreadyExists` are answers, not faults;
/// `Backend`, `StorageFull` and `Closed` are faults a caller may retry after a while.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// The key's mod revision did not match. `current` is what is stored now (None if deleted).
    #[error("key {key} was modified: expected mod revision {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Option<KeyValue>,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is ahead of the store.
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// The disk under the store has no space left: the write was not applied. Writes succeed
    /// again once space is freed; nothing acknowledged before is lost.
    #[error("storage is full: {0}")]
    StorageFull(String),
    #[error("store is closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stream of watch events. It ends with an `Err` if the watcher fell too far behind
/// (`Compacted`) or the store closed; callers re-list and watch again.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// The storage contract. All methods are cheap to call concurrently.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The revision of the newest write (0 when empty).
    async fn current_revision(&self) -> Result<Revision>;

    /// The newest revision that has been compacted away (0 when none).
    fn compacted_revision(&self) -> Revision;

    /// The current value of a key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Create a key that must not exist. Returns the stored value with its new revisions.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replace a key's value if its current mod revision is `expected_mod_revision`. A key that
    /// does not exist (any more) fails with `Conflict { current: None, .. }`.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue>;

    /// Delete a key, if `expected_mod_revision` is given only when it matches. Returns the value
    /// the key had, with `mod_revision` set to the revision of the delete. A missing key fails with
    /// `NotFound`, whether or not a revision was expected.
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue>;

    /// Keys starting with `prefix`, in key order, optionally at a past revision and paged.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult>;

    /// Changes to keys starting with `prefix` with revision greater than `after_revision`, first
    /// those already in the history, then live ones, in revision order. Fails with `Compacted` if
    /// `after_revision` is older than the history kept, `FutureRevision` if ahead of the store.
    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream>;

    /// Forget history before `revision`: past values older than it can no longer be listed or
    /// watched. Current values are never removed. Lists at `revision` itself and watches after it
    /// keep working. Compacting to a revision at or below the compacted one does nothing; a
    /// revision ahead of the store fails with `FutureRevision`.
    async fn compact(&self, revision: Revision) -> Result<()>;
}
