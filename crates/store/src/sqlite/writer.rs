//! The writer thread ([`spawn`]): the only connection that writes. It commits whatever writes
//! are queued in one transaction (group commit), publishes their events, answers the callers, and
//! between batches advances a pending compaction by one chunk.
//!
//! Each write in a batch gets its own revision and its own answer. Preconditions are checked
//! against the committed state plus the earlier writes of the same batch, so a failed
//! precondition only fails its own request. Nobody is answered before the commit; if the commit
//! fails, every write of the batch fails with [`Error::Backend`] and no revision is used.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::{self, Checkpointer};
use super::rows;
use super::{Shared, SqliteConfig};
use crate::{Error, Event, EventType, KeyValue, Result, Revision};

/// Freelist pages handed back to the file system per step after a compaction.
const VACUUM_PAGES_PER_STEP: i64 = 1024;

/// What callers ask the writer to do.
pub(crate) enum Command {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<KeyValue>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Finish the batch at hand, checkpoint, and stop.
    Close { reply: oneshot::Sender<()> },
}

pub(crate) enum WriteOp {
    Create {
        key: String,
        value: Arc<[u8]>,
    },
    Update {
        key: String,
        value: Arc<[u8]>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl WriteOp {
    fn key(&self) -> &str {
        match self {
            WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. } => key,
        }
    }

    fn value_len(&self) -> usize {
        match self {
            WriteOp::Create { value, .. } | WriteOp::Update { value, .. } => value.len(),
            WriteOp::Delete { .. } => 0,
        }
    }
}

/// Start the writer thread. `head` is the database's current revision.
pub(crate) fn spawn(
    conn: Connection,
    commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    checkpointer: Checkpointer,
    head: Revision,
    config: &SqliteConfig,
) -> Result<std::thread::JoinHandle<()>> {
    let writer = Writer {
        conn,
        commands,
        shared,
        checkpointer,
        next_rev: head + 1,
        compaction: None,
        max_batch: config.max_batch.max(1),
        max_batch_bytes: config.max_batch_bytes,
        compaction_chunk: config.compaction_chunk.max(1),
        failing: None,
    };
    std::thread::Builder::new()
        .name("capstan-store-writer".into())
        .spawn(move || writer.run())
        .map_err(|e| Error::Backend(format!("start writer thread: {e}")))
}

struct Writer {
    conn: Connection,
    commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    checkpointer: Checkpointer,
    /// The revision the next successful write gets.
    next_rev: Revision,
    compaction: Option<Compaction>,
    max_batch: usize,
    max_batch_bytes: usize,
    compaction_chunk: usize,
    /// Since when write batches have been failing (a full disk, an I/O error); `None` while
    /// they succeed.
    failing: Option<std::time::Instant>,
}

/// Whether SQLite failed for want of space: ENOSPC, or a size limit such as `max_page_count`.
fn is_disk_full(err: &rusqlite::Error) -> bool {
    err.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// A compaction in progress: rows up to `target` are examined in chunks of revisions.
struct Compaction {
    target: Revision,
    /// Rows up to this revision have been examined.
    cursor: Revision,
    phase: CompactionPhase,
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CompactionPhase {
    DeleteRows,
    /// Give freed pages back to the file system (only on databases created with auto_vacuum).
    Vacuum,
}

/// A write that passed its precondition, as answered and published after the commit.
struct Applied {
    kv: KeyValue,
    event: Arc<Event>,
}

/// Commands taken from the queue in one go.
#[derive(Default)]
struct Batch {
    writes: Vec<(WriteOp, oneshot::Sender<Result<KeyValue>>)>,
    compactions: Vec<(Revision, oneshot::Sender<Result<()>>)>,
    close: Option<oneshot::Sender<()>>,
}

impl Writer {
    fn run(mut self) {
        // Should this thread die of a bug, watchers must end instead of waiting forever.
        let _close_hub = CloseHubOnExit(self.shared.hub.clone());
        let mut closing = None;
        loop {
            let Some(batch) = self.next_batch() else {
                break;
            };
            if !batch.writes.is_empty() {
                self.commit(batch.writes);
            }
            // The background checkpoints cannot restart a WAL that is always being appended to.
            self.checkpointer.checkpoint_if_requested(&self.conn);
            for (revision, reply) in batch.compactions {
                self.start_compaction(revision, reply);
            }
            if batch.close.is_some() {
                closing = batch.close;
                break;
            }
            if self.compaction.is_some() {
                self.compaction_step();
            }
        }
        // Stop taking commands first: callers still queued get `Closed` instead of waiting.
        self.commands.close();
        self.shared.hub.close();
        if let Some(job) = self.compaction.take() {
            // Finished rows stay deleted; the rest are removed by the next compaction.
            for waiter in job.waiters {
                let _ = waiter.send(Err(Error::Closed));
            }
        }
        self.checkpointer.stop();
        // Fold the WAL into the database so the next open starts from a small WAL.
        if let Err(err) = checkpoint::checkpoint(&self.conn, checkpoint::Mode::Truncate) {
            tracing::warn!(error = %err, "checkpoint on close failed");
        }
        drop(self.conn);
        if let Some(reply) = closing {
            let _ = reply.send(());
        }
    }

    /// Wait for a command (or, with a compaction pending, only look), then take what is queued.
    /// `None` when every sender is gone and nothing is queued.
    fn next_batch(&mut self) -> Option<Batch> {
        let first = if self.compaction.is_some() {
            match self.commands.try_recv() {
                Ok(command) => Some(command),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
            }
        } else {
            Some(self.commands.blocking_recv()?)
        };
        let mut batch = Batch::default();
        let mut bytes = 0;
        let mut next = first;
        while let Some(command) = next {
            match command {
                Command::Write { op, reply } => {
                    bytes += op.value_len();
                    batch.writes.push((op, reply));
                }
                Command::Compact { revision, reply } => batch.compactions.push((revision, reply)),
                Command::Close { reply } => {
                    batch.close = Some(reply);
                    break;
                }
            }
            if batch.writes.len() >= self.max_batch || bytes >= self.max_batch_bytes {
                break;
            }
            next = self.commands.try_recv().ok();
        }
        Some(batch)
    }

    /// Apply, commit, publish, answer.
    fn commit(&mut self, writes: Vec<(WriteOp, oneshot::Sender<Result<KeyValue>>)>) {
        let (ops, replies): (Vec<_>, Vec<_>) = writes.into_iter().unzip();
        match self.apply(&ops) {
            Ok(outcomes) => {
                let events: Vec<_> = outcomes
                    .iter()
                    .filter_map(|outcome| {
                        outcome.as_ref().ok().map(|applied| applied.event.clone())
                    })
                    .collect();
                // Publish before answering: a caller that got revision R can watch from R at once.
                self.shared.hub.publish(&events);
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    // The caller may have given up; the write stands anyway.
                    let _ = reply.send(outcome.map(|applied| applied.kv));
                }
            }
            Err(err) => {
                self.shared.hub.abort_commit();
                let full = is_disk_full(&err);
                // One line when writes start failing, not one per batch while they keep failing.
                if self.failing.is_none() {
                    tracing::error!(error = %err, writes = ops.len(), "write batch failed; the writes were not applied");
                } else {
                    tracing::debug!(error = %err, writes = ops.len(), "write batch failed");
                }
                self.failing.get_or_insert(std::time::Instant::now());
                // The revision counter stays where the database is, whatever got that far.
                match rows::head_revision(&self.conn) {
                    Ok(head) => self.next_rev = head + 1,
                    Err(err) => tracing::error!(error = %err, "cannot re-read head revision"),
                }
                for reply in replies {
                    let _ = reply.send(Err(if full {
                        Error::StorageFull(format!(
                            "no space left for the database ({err}); the write was not applied, and writes succeed again once space is freed"
                        ))
                    } else {
                        Error::Backend(format!("write transaction failed: {err}"))
                    }));
                }
                return;
            }
        }
        if let Some(since) = self.failing.take() {
            tracing::info!(
                failing_for_ms = since.elapsed().as_millis() as u64,
                "writes succeed again"
            );
        }
    }

    /// Run the batch in one transaction. `Err` only for SQLite failures (the batch rolled back);
    /// precondition failures are per-request outcomes.
    fn apply(&mut self, ops: &[WriteOp]) -> rusqlite::Result<Vec<Result<Applied>>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // State of keys already written in this batch: later requests must see it.
        let mut touched: HashMap<&str, Option<KeyValue>> = HashMap::new();
        let mut rev = self.next_rev;
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            let key = op.key();
            let outcome = match op {
                WriteOp::Create { value, .. } => {
                    let exists = match touched.get(key) {
                        Some(state) => state.is_some(),
                        None => rows::exists(&tx, key)?,
                    };
                    if exists {
                        Err(Error::AlreadyExists(key.to_owned()))
                    } else {
                        let kv = KeyValue {
                            key: key.to_owned(),
                            value: value.clone(),
                            create_revision: rev,
                            mod_revision: rev,
                        };
                        insert_log(&tx, &kv, None, false)?;
                        set_current(&tx, key, rev)?;
                        Ok(put(kv, None))
                    }
                }
                WriteOp::Update {
                    value, expected, ..
                } => match current(&tx, &touched, key)? {
                    Some(prev) if prev.mod_revision == *expected => {
                        let kv = KeyValue {
                            key: key.to_owned(),
                            value: value.clone(),
                            create_revision: prev.create_revision,
                            mod_revision: rev,
                        };
                        insert_log(&tx, &kv, Some(prev.mod_revision), false)?;
                        set_current(&tx, key, rev)?;
                        Ok(put(kv, Some(prev)))
                    }
                    current => Err(Error::Conflict {
                        key: key.to_owned(),
                        expected: *expected,
                        current,
                    }),
                },
                WriteOp::Delete { expected, .. } => match (current(&tx, &touched, key)?, *expected)
                {
                    (None, _) => Err(Error::NotFound(key.to_owned())),
                    (Some(prev), Some(expected)) if expected != prev.mod_revision => {
                        Err(Error::Conflict {
                            key: key.to_owned(),
                            expected,
                            current: Some(prev),
                        })
                    }
                    (Some(prev), _) => {
                        let kv = KeyValue {
                            mod_revision: rev,
                            ..prev.clone()
                        };
                        insert_log(&tx, &kv, Some(prev.mod_revision), true)?;
                        tx.prepare_cached("DELETE FROM current WHERE key = ?1")?
                            .execute([key])?;
                        Ok(Applied {
                            event: Arc::new(Event {
                                event_type: EventType::Delete,
                                kv: kv.clone(),
                                prev: Some(prev),
                            }),
                            kv,
                        })
                    }
                },
            };
            if let Ok(applied) = &outcome {
                let after = match applied.event.event_type {
                    EventType::Put => Some(applied.kv.clone()),
                    EventType::Delete => None,
                };
                touched.insert(key, after);
                rev += 1;
            }
            outcomes.push(outcome);
        }
        if rev > self.next_rev {
            self.shared.hub.begin_commit(rev - 1);
            tx.commit()?;
            self.next_rev = rev;
        }
        // A batch in which every precondition failed wrote nothing; dropping `tx` rolls back.
        Ok(outcomes)
    }

    fn start_compaction(&mut self, revision: Revision, reply: oneshot::Sender<Result<()>>) {
        let current = self.next_rev - 1;
        if revision > current {
            let _ = reply.send(Err(Error::FutureRevision {
                requested: revision,
                current,
            }));
            return;
        }
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if revision <= compacted {
            // Already compacted; if rows are still being removed for it, answer when that is done.
            match self.compaction.as_mut() {
                Some(job) if job.target >= revision => job.waiters.push(reply),
                _ => {
                    let _ = reply.send(Ok(()));
                }
            }
            return;
        }
        // Record the revision before deleting anything: a reader that sees the old value in its
        // snapshot also sees all the old rows.
        if let Err(err) = self
            .conn
            .prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compacted'")
            .and_then(|mut stmt| stmt.execute([revision]))
        {
            let _ = reply.send(Err(Error::Backend(format!(
                "record compacted revision: {err}"
            ))));
            return;
        }
        self.shared.compacted.store(revision, Ordering::Release);
        tracing::debug!(revision, "compaction started");
        let mut waiters = self
            .compaction
            .take()
            .map(|job| job.waiters)
            .unwrap_or_default();
        waiters.push(reply);
        // Rows examined for an older target may be superseded for the new one: start over.
        self.compaction = Some(Compaction {
            target: revision,
            cursor: 0,
            phase: CompactionPhase::DeleteRows,
            waiters,
        });
    }

    /// Advance the pending compaction by one transaction; answer its waiters when it is done.
    fn compaction_step(&mut self) {
        let Some(job) = self.compaction.as_mut() else {
            return;
        };
        let done = match job.phase {
            CompactionPhase::DeleteRows => {
                match delete_chunk(
                    &mut self.conn,
                    job.target,
                    job.cursor,
                    self.compaction_chunk,
                ) {
                    Ok(cursor) => {
                        job.cursor = cursor;
                        if cursor >= job.target {
                            job.phase = CompactionPhase::Vacuum;
                        }
                        Ok(false)
                    }
                    Err(err) => Err(err),
                }
            }
            CompactionPhase::Vacuum => vacuum_step(&self.conn),
        };
        match done {
            Ok(false) => {}
            Ok(true) => {
                if let Some(job) = self.compaction.take() {
                    tracing::debug!(revision = job.target, "compaction finished");
                    for waiter in job.waiters {
                        let _ = waiter.send(Ok(()));
                    }
                }
            }
            Err(err) => {
                // The compacted revision is recorded, so reads are already right; leftover rows are
                // removed by the next compaction.
                tracing::error!(error = %err, "compaction failed");
                if let Some(job) = self.compaction.take() {
                    for waiter in job.waiters {
                        let _ =
                            waiter.send(Err(Error::Backend(format!("compaction failed: {err}"))));
                    }
                }
            }
        }
    }
}

/// Closes the watch hub when dropped, including while unwinding.
struct CloseHubOnExit(Arc<super::hub::Hub>);

impl Drop for CloseHubOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The current value of `key` as seen by this batch.
fn current(
    tx: &Connection,
    touched: &HashMap<&str, Option<KeyValue>>,
    key: &str,
) -> rusqlite::Result<Option<KeyValue>> {
    match touched.get(key) {
        Some(state) => Ok(state.clone()),
        None => rows::current(tx, key),
    }
}

fn put(kv: KeyValue, prev: Option<KeyValue>) -> Applied {
    Applied {
        event: Arc::new(Event {
            event_type: EventType::Put,
            kv: kv.clone(),
            prev,
        }),
        kv,
    }
}

fn insert_log(
    tx: &Connection,
    kv: &KeyValue,
    prev_rev: Option<Revision>,
    deleted: bool,
) -> rusqlite::Result<()> {
    // Tombstones keep no value: the event reads it from the row `prev_rev` points at.
    let value: Option<&[u8]> = if deleted { None } else { Some(&kv.value) };
    tx.prepare_cached(
        "INSERT INTO log (rev, key, create_rev, prev_rev, deleted, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![kv.mod_revision, kv.key, kv.create_revision, prev_rev, deleted, value])?;
    Ok(())
}

fn set_current(tx: &Connection, key: &str, rev: Revision) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO current (key, rev) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET rev = excluded.rev")?
        .execute(params![key, rev])?;
    Ok(())
}

/// Delete the removable rows among the next `chunk` log rows after `cursor` (up to `target`) in
/// one transaction; returns the new cursor.
///
/// A row at or before the target is removable if its key has a newer row at or before the target
/// (nobody can ask for it: lists start at the target, and the newer row is the previous value of
/// any later event), or if it is a tombstone (at the target the key does not exist).
fn delete_chunk(
    conn: &mut Connection,
    target: Revision,
    cursor: Revision,
    chunk: usize,
) -> rusqlite::Result<Revision> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let offset = i64::try_from(chunk).unwrap_or(i64::MAX) - 1;
    let end: Revision = tx
        .prepare_cached(
            "SELECT rev FROM log WHERE rev > ?1 AND rev <= ?2 ORDER BY rev LIMIT 1 OFFSET ?3",
        )?
        .query_row(params![cursor, target, offset], |row| row.get(0))
        .optional()?
        .unwrap_or(target);
    // Chosen first and deleted after, so that no deletion changes what the check sees.
    let removable: Vec<Revision> = tx
        .prepare_cached(
            "SELECT rev FROM log AS old WHERE rev > ?1 AND rev <= ?2 AND (deleted = 1 OR EXISTS (
                 SELECT 1 FROM log AS newer WHERE newer.key = old.key AND newer.rev > old.rev AND newer.rev <= ?3))",
        )?
        .query_map(params![cursor, end, target], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    {
        let mut delete = tx.prepare_cached("DELETE FROM log WHERE rev = ?1")?;
        for rev in &removable {
            delete.execute([rev])?;
        }
    }
    tx.commit()?;
    Ok(end)
}

/// Hand up to [`VACUUM_PAGES_PER_STEP`] free pages back; `true` when none are left.
fn vacuum_step(conn: &Connection) -> rusqlite::Result<bool> {
    let auto_vacuum: i64 = conn.pragma_query_value(None, "auto_vacuum", |row| row.get(0))?;
    // 2 is INCREMENTAL; databases created without it only reuse free pages.
    if auto_vacuum != 2 {
        return Ok(true);
    }
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |row| row.get(0))?;
    if free == 0 {
        return Ok(true);
    }
    // The pragma frees pages as it is stepped, so step it to the end (execute_batch steps once).
    let mut stmt = conn.prepare_cached(&format!(
        "PRAGMA incremental_vacuum({VACUUM_PAGES_PER_STEP})"
    ))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(free <= VACUUM_PAGES_PER_STEP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn =
            schema::open_writer(&dir.path().join("s.db"), &SqliteConfig::default()).expect("open");
        (dir, conn)
    }

    fn put_row(conn: &Connection, rev: i64, key: &str, prev: Option<i64>) {
        insert_log(
            conn,
            &KeyValue {
                key: key.into(),
                value: Arc::from(&b"v"[..]),
                create_revision: rev,
                mod_revision: rev,
            },
            prev,
            false,
        )
        .expect("insert");
    }

    fn tombstone(conn: &Connection, rev: i64, key: &str, prev: i64) {
        insert_log(
            conn,
            &KeyValue {
                key: key.into(),
                value: Arc::from(&b"v"[..]),
                create_revision: prev,
                mod_revision: rev,
            },
            Some(prev),
            true,
        )
        .expect("insert");
    }

    fn revs(conn: &Connection) -> Vec<i64> {
        conn.prepare("SELECT rev FROM log ORDER BY rev")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    /// A writer on a fresh database, driven directly instead of through its thread.
    fn writer(dir: &tempfile::TempDir) -> Writer {
        let path = dir.path().join("s.db");
        let config = SqliteConfig::default();
        let conn = schema::open_writer(&path, &config).expect("open");
        let checkpointer = super::checkpoint::spawn(
            schema::open_checkpointer(&path, &config).expect("open"),
            config.wal_autocheckpoint_pages,
        )
        .expect("checkpointer");
        let shared = Arc::new(Shared {
            hub: Arc::new(super::super::hub::Hub::new(0, 100, usize::MAX, 100)),
            compacted: std::sync::atomic::AtomicI64::new(0),
        });
        Writer {
            conn,
            commands: mpsc::channel(1).1,
            shared,
            checkpointer,
            next_rev: 1,
            compaction: None,
            max_batch: 100,
            max_batch_bytes: usize::MAX,
            compaction_chunk: 100,
            failing: None,
        }
    }

    fn create_op(key: &str) -> WriteOp {
        WriteOp::Create {
            key: key.into(),
            value: Arc::from(&b"v"[..]),
        }
    }

    #[test]
    fn a_failed_precondition_fails_only_its_own_request_in_a_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = writer(&dir);
        let ops = vec![
            create_op("/a"),
            create_op("/a"),
            WriteOp::Update {
                key: "/a".into(),
                value: Arc::from(&b"v2"[..]),
                expected: 1,
            },
            WriteOp::Delete {
                key: "/b".into(),
                expected: None,
            },
            create_op("/b"),
            WriteOp::Delete {
                key: "/a".into(),
                expected: Some(1),
            },
        ];
        let outcomes = writer.apply(&ops).expect("the batch commits");
        let summary: Vec<String> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(applied) => format!("ok {}", applied.kv.mod_revision),
                Err(Error::AlreadyExists(_)) => "exists".into(),
                Err(Error::NotFound(_)) => "not found".into(),
                Err(Error::Conflict { current, .. }) => {
                    format!(
                        "conflict at {:?}",
                        current.as_ref().map(|kv| kv.mod_revision)
                    )
                }
                Err(other) => format!("{other}"),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                "ok 1",
                "exists",
                "ok 2",
                "not found",
                "ok 3",
                "conflict at Some(2)"
            ],
            "each request is checked against the batch so far and gets its own revision"
        );
        assert_eq!(writer.next_rev, 4);
        assert_eq!(rows::head_revision(&writer.conn).expect("head"), 3);
        let a = rows::current(&writer.conn, "/a")
            .expect("read")
            .expect("exists");
        assert_eq!(
            (a.create_revision, a.mod_revision, &*a.value),
            (1, 2, &b"v2"[..])
        );
    }

    /// Runs `ops` as one batch through `Writer::commit`, as the thread does; returns the answers.
    fn commit_batch(writer: &mut Writer, ops: Vec<WriteOp>) -> Vec<Result<KeyValue>> {
        let (writes, answers): (Vec<_>, Vec<_>) = ops
            .into_iter()
            .map(|op| {
                let (reply, answer) = oneshot::channel();
                ((op, reply), answer)
            })
            .unzip();
        writer.commit(writes);
        answers
            .into_iter()
            .map(|mut answer| answer.try_recv().expect("answered"))
            .collect()
    }

    fn big_create(key: &str) -> WriteOp {
        WriteOp::Create {
            key: key.into(),
            value: Arc::from(vec![7u8; 64 * 1024]),
        }
    }

    #[test]
    fn a_full_disk_fails_the_batch_with_storage_full_and_the_writer_carries_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = writer(&dir);
        let first = commit_batch(&mut writer, vec![create_op("/before")]);
        assert!(first[0].is_ok(), "{:?}", first[0]);
        // max_page_count caps the database as a full file system would: SQLite answers
        // SQLITE_FULL, the code ENOSPC maps to.
        let pages: i64 = writer
            .conn
            .pragma_query_value(None, "page_count", |row| row.get(0))
            .expect("page_count");
        writer
            .conn
            .pragma_update(None, "max_page_count", pages + 4)
            .expect("cap");
        let answers = commit_batch(&mut writer, vec![big_create("/a"), big_create("/b")]);
        for answer in &answers {
            match answer {
                Err(Error::StorageFull(message)) => {
                    assert!(message.contains("not applied"), "{message}")
                }
                other => panic!("expected StorageFull, got {other:?}"),
            }
        }
        assert_eq!(
            writer.next_rev, 2,
            "no revision was used by the failed batch"
        );
        assert!(rows::current(&writer.conn, "/a").expect("read").is_none());
        writer
            .conn
            .pragma_update(None, "max_page_count", 1_000_000)
            .expect("uncap");
        let again = commit_batch(&mut writer, vec![big_create("/a")]);
        let kv = again[0]
            .as_ref()
            .expect("writes succeed once space is back");
        assert_eq!(kv.mod_revision, 2);
        assert!(rows::current(&writer.conn, "/before")
            .expect("read")
            .is_some());
    }

    #[test]
    fn a_batch_whose_every_request_fails_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = writer(&dir);
        let outcomes = writer
            .apply(&[WriteOp::Delete {
                key: "/missing".into(),
                expected: None,
            }])
            .expect("no SQLite failure");
        assert!(matches!(outcomes[0], Err(Error::NotFound(_))));
        assert_eq!(writer.next_rev, 1, "no revision was used");
        assert_eq!(rows::head_revision(&writer.conn).expect("head"), 0);
    }

    #[test]
    fn compaction_keeps_the_newest_row_of_each_key_at_the_target_and_everything_after() {
        let (_dir, mut conn) = db();
        put_row(&conn, 1, "/a", None); // superseded by 2
        put_row(&conn, 2, "/a", Some(1)); // newest of /a at 4: kept
        put_row(&conn, 3, "/b", None); // deleted at 4
        tombstone(&conn, 4, "/b", 3); // tombstone at the target: removed
        put_row(&conn, 5, "/a", Some(2)); // after the target: kept
        put_row(&conn, 6, "/c", None);
        let mut cursor = 0;
        while cursor < 4 {
            cursor = delete_chunk(&mut conn, 4, cursor, 2).expect("chunk");
        }
        assert_eq!(revs(&conn), vec![2, 5, 6]);
    }

    #[test]
    fn compaction_removes_a_deleted_key_entirely_even_across_chunks() {
        let (_dir, mut conn) = db();
        put_row(&conn, 1, "/a", None);
        put_row(&conn, 2, "/x", None);
        put_row(&conn, 3, "/y", None);
        tombstone(&conn, 4, "/a", 1);
        let mut cursor = 0;
        while cursor < 4 {
            cursor = delete_chunk(&mut conn, 4, cursor, 1).expect("chunk");
        }
        assert_eq!(revs(&conn), vec![2, 3]);
    }

    #[test]
    fn a_tombstone_after_the_target_keeps_the_value_it_deleted() {
        let (_dir, mut conn) = db();
        put_row(&conn, 1, "/a", None);
        put_row(&conn, 2, "/a", Some(1));
        tombstone(&conn, 3, "/a", 2);
        delete_chunk(&mut conn, 2, 0, 100).expect("chunk");
        assert_eq!(revs(&conn), vec![2, 3]);
    }
}
