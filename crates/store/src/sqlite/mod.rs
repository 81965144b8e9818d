//! [`SqliteStore`]: the embedded SQLite backend of [`Store`].
//!
//! # Shape
//! * One **writer thread** owns the only write connection. Callers send it commands over a bounded
//!   channel; it takes whatever is queued and applies it in ONE transaction (group commit), giving
//!   each write its own revision and its own answer, and answers only after the commit
//!   (`writer`).
//! * A small **pool of read connections** serves `get`, `list` and the watch replay from the log on
//!   blocking threads, never on the async runtime (`read`). WAL mode lets them read a consistent
//!   snapshot while the writer commits.
//! * After each commit the writer publishes the batch's events to the **watch hub**: a ring of
//!   recent events plus the live subscribers (`hub`). A watch replays from the ring, or from the
//!   SQLite log when the ring no longer reaches back far enough, then follows live events
//!   (`watch`).
//! * **Compaction** runs on the writer thread in chunks between write batches, so writers wait at
//!   most one chunk (`writer`); [`crate::compactor`] can drive it periodically.
//!
//! # Durability
//! The journal is a WAL with `synchronous=FULL`: every commit is written to the WAL file and
//! fsynced before any caller is answered, so an answered write survives the process being killed
//! and a power loss or kernel crash, as etcd promises. The group commit keeps the cost to one
//! fsync per batch, however many writes wait in it ([`Synchronous`] and BENCHMARKS.md give the
//! price against `NORMAL`). The WAL is copied into the database at checkpoints, which a
//! background thread runs every [`SqliteConfig::wal_autocheckpoint_pages`] pages of WAL instead
//! of the commit that crosses the threshold (`checkpoint`); the WAL file is truncated back to
//! [`SqliteConfig::journal_size_limit_bytes`] when it restarts.
//!
//! Opening runs `PRAGMA quick_check` and refuses a damaged database with a message naming the
//! file. A full disk fails the writes of the batch at hand with [`Error::StorageFull`]; the writer
//! thread carries on and the next write succeeds once space is back.
//!
//! # Schema
//! See `schema`: `log` holds one row per revision (tombstones for deletes, each row pointing at
//! the previous row of its key), `current` maps each live key to its newest revision, and `meta`
//! holds the compacted revision.

mod checkpoint;
mod files;
mod hub;
mod read;
mod rows;
mod schema;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::{Error, KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchStream};
use hub::Hub;
use read::ReadPool;
use writer::{Command, WriteOp};

/// Tuning of a [`SqliteStore`]. The defaults suit a single server with up to a few hundred
/// thousand objects.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// Read connections in the pool (at least 1). Reads beyond this many wait for a free one.
    pub read_connections: usize,
    /// How long a connection waits for a lock held by another connection before failing.
    pub busy_timeout: Duration,
    /// Page cache per connection, in KiB.
    pub cache_size_kib: u32,
    /// Commands that may wait for the writer before callers are held back.
    pub write_queue: usize,
    /// At most this many writes are committed in one transaction.
    pub max_batch: usize,
    /// A batch stops growing once its values add up to this many bytes.
    pub max_batch_bytes: usize,
    /// Recent events kept in memory for watches; older ones are replayed from the SQLite log.
    pub watch_history: usize,
    /// The in-memory history also stops at this many bytes of values.
    pub watch_history_bytes: usize,
    /// Events a watcher may have queued before it counts as lagging and its stream ends with
    /// [`Error::Compacted`].
    pub watch_buffer: usize,
    /// Log rows examined per compaction transaction; writers wait at most one such chunk.
    pub compaction_chunk: usize,
    /// WAL pages not yet in the database at which the checkpointer thread copies them over. When
    /// the WAL holds four times this, the writer checkpoints between two batches so that the WAL
    /// can restart from its beginning. The default (4 MiB of pages) keeps the WAL around 16 MiB
    /// under sustained writes.
    pub wal_autocheckpoint_pages: u32,
    /// Size the WAL file is truncated back to when it restarts, should a burst have grown it
    /// beyond this.
    pub journal_size_limit_bytes: u64,
    /// When a commit reaches the disk. Keep the default ([`Synchronous::Full`]); `Normal` exists
    /// so that benchmarks can measure what durability costs in the same run.
    pub synchronous: Synchronous,
}

/// SQLite's `synchronous` setting for the writer (in WAL mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Each commit is fsynced before it is answered: survives a power loss.
    #[default]
    Full,
    /// Commits reach the OS before they are answered but are fsynced only at checkpoints:
    /// survives `kill -9`, not a power loss. For benchmarks only.
    Normal,
}

impl Synchronous {
    pub(crate) fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            cache_size_kib: 32 * 1024,
            write_queue: 1024,
            max_batch: 512,
            max_batch_bytes: 32 << 20,
            watch_history: 10_000,
            watch_history_bytes: 64 << 20,
            watch_buffer: 4096,
            compaction_chunk: 1000,
            wal_autocheckpoint_pages: 1000,
            journal_size_limit_bytes: 64 << 20,
            synchronous: Synchronous::Full,
        }
    }
}

/// State shared by the store, its writer thread and its watch streams.
pub(crate) struct Shared {
    pub(crate) hub: Arc<Hub>,
    /// The compacted revision; the writer is its only writer. Readers that go to the log re-read
    /// it from `meta` inside their snapshot, because this copy is updated just after the commit.
    pub(crate) compacted: AtomicI64,
}

/// The SQLite backend. Cheap to share behind an `Arc`; dropping it stops the writer thread once
/// queued writes are done. See the [module docs](self) for the design.
pub struct SqliteStore {
    commands: mpsc::Sender<Command>,
    reads: Arc<ReadPool>,
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
    // Declared last so that it is removed after the connections above are closed.
    _tempdir: Option<tempfile::TempDir>,
}

impl SqliteStore {
    /// Open (or create) the database at `path`, which must be on a local file system (WAL needs
    /// shared memory). Blocks while it opens connections; call it before serving.
    pub fn open(path: &Path, config: SqliteConfig) -> Result<Self> {
        Self::open_inner(path, config, None)
    }

    /// A fresh store in a new temporary directory that is removed when the store is dropped. For
    /// tests: it behaves exactly like a store on disk (WAL, reader pool, writer thread).
    pub fn open_temporary(config: SqliteConfig) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("capstan-store-")
            .tempdir()
            .map_err(|e| Error::Backend(format!("create temporary directory: {e}")))?;
        let path = dir.path().join("store.db");
        Self::open_inner(&path, config, Some(dir))
    }

    fn open_inner(
        path: &Path,
        config: SqliteConfig,
        tempdir: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        let conn = schema::open_writer(path, &config)?;
        let head = rows::head_revision(&conn).map_err(rows::backend("read head revision"))?;
        let compacted =
            rows::compacted_revision(&conn).map_err(rows::backend("read compacted revision"))?;
        let readers = (0..config.read_connections.max(1))
            .map(|_| schema::open_reader(path, &config))
            .collect::<Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            hub: Arc::new(Hub::new(
                head,
                config.watch_history,
                config.watch_history_bytes,
                config.watch_buffer,
            )),
            compacted: AtomicI64::new(compacted),
        });
        let (commands, receiver) = mpsc::channel(config.write_queue.max(1));
        let checkpointer = checkpoint::spawn(
            schema::open_checkpointer(path, &config)?,
            config.wal_autocheckpoint_pages,
        )?;
        let writer = writer::spawn(conn, receiver, shared.clone(), checkpointer, head, &config)?;
        tracing::debug!(path = %path.display(), head, compacted, "opened sqlite store");
        Ok(Self {
            commands,
            reads: Arc::new(ReadPool::new(readers)),
            shared,
            writer: Mutex::new(Some(writer)),
            path: path.to_owned(),
            _tempdir: tempdir,
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finish queued writes, checkpoint the WAL into the database and stop the writer; watches end
    /// with [`Error::Closed`] and later calls fail with it. Idempotent.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Close { reply }).await.is_ok() {
            // An error means the writer is already gone, which is what we wanted.
            let _ = done.await;
        }
        self.reads.close();
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            // The writer has answered Close, so joining only waits for its thread to unwind.
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    async fn write(&self, op: WriteOp) -> Result<KeyValue> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Write { op, reply })
            .await
            .map_err(|_| Error::Closed)?;
        // A dropped reply means the writer stopped before committing this write.
        answer.await.map_err(|_| Error::Closed)?
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.hub.head())
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.reads.run(move |conn| read::get(conn, &key)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        // Copying into the shared buffer here keeps that work off the writer thread.
        self.write(WriteOp::Create {
            key: key.to_owned(),
            value: value.into(),
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        self.write(WriteOp::Update {
            key: key.to_owned(),
            value: value.into(),
            expected: expected_mod_revision,
        })
        .await
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue> {
        self.write(WriteOp::Delete {
            key: key.to_owned(),
            expected: expected_mod_revision,
        })
        .await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_owned();
        self.reads
            .run(move |conn| read::list(conn, &prefix, &options))
            .await
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        watch::start(
            self.shared.clone(),
            self.reads.clone(),
            prefix.to_owned(),
            after_revision,
        )
        .await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Compact { revision, reply })
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_store_refuses_writes_and_reads_with_closed() {
        let store = SqliteStore::open_temporary(SqliteConfig::default()).expect("open");
        store.create("/a", b"1".to_vec()).await.expect("create");
        store.close().await;
        assert!(matches!(
            store.create("/b", b"2".to_vec()).await,
            Err(Error::Closed)
        ));
        assert!(matches!(store.get("/a").await, Err(Error::Closed)));
        // Closing twice is harmless.
        store.close().await;
    }

    #[tokio::test]
    async fn the_temporary_directory_is_removed_with_the_store() {
        let store = SqliteStore::open_temporary(SqliteConfig::default()).expect("open");
        let dir = store.path().parent().expect("parent").to_owned();
        assert!(dir.exists());
        store.close().await;
        drop(store);
        assert!(!dir.exists());
    }
}
