//! The checkpointer thread ([`spawn`]): copies the WAL into the database off the write path, so
//! that the WAL does not grow without bound and commits do not pay for it.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, holding up
//! that batch's callers for the copy and an fsync (measured: p99 of a create 3.6 ms with it, 0.35
//! ms without). So the writer runs without automatic checkpoints, and this thread, on its own
//! connection, looks at the WAL every few milliseconds while it grows and runs a PASSIVE
//! checkpoint (which never blocks the writer or readers) when
//! [`SqliteConfig::wal_autocheckpoint_pages`] frames are waiting, or when writes have paused.
//!
//! A checkpoint that runs while the writer appends rarely finds the WAL fully copied at the moment
//! of the next write, which is when SQLite restarts the WAL from its beginning. If the WAL reaches
//! [`WRITER_CHECKPOINT_FACTOR`] times the threshold, the thread therefore asks the writer to
//! checkpoint between two batches ([`Checkpointer::checkpoint_if_requested`]): with no write in between it
//! catches up, and the next commit restarts the WAL (which `journal_size_limit` then truncates).
//!
//! [`SqliteConfig::wal_autocheckpoint_pages`]: super::SqliteConfig::wal_autocheckpoint_pages

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::Connection;

use crate::{Error, Result};

/// How often the thread looks at the WAL while it grows: a busy writer adds megabytes a second.
const ACTIVE_POLL: Duration = Duration::from_millis(10);

/// How often the thread looks at the WAL while nothing is written.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Once the WAL has not grown for this long, whatever is left of it is copied over.
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// WAL size, in thresholds, at which the writer is asked to checkpoint itself.
pub(crate) const WRITER_CHECKPOINT_FACTOR: i64 = 4;

/// A running checkpointer; [`Checkpointer::stop`] ends it.
pub(crate) struct Checkpointer {
    handle: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    request: Arc<AtomicBool>,
    /// Held while either thread checkpoints: SQLite fails a checkpoint that overlaps another.
    running: Arc<Mutex<()>>,
}

/// Start checkpointing the database of `conn` (a connection of its own).
pub(crate) fn spawn(conn: Connection, threshold_pages: u32) -> Result<Checkpointer> {
    let stop = Arc::new(AtomicBool::new(false));
    let request = Arc::new(AtomicBool::new(false));
    let running = Arc::new(Mutex::new(()));
    let threshold = i64::from(threshold_pages.max(1));
    let handle = std::thread::Builder::new()
        .name("capstan-store-checkpoint".into())
        .spawn({
            let (stop, request, running) = (stop.clone(), request.clone(), running.clone());
            move || run(&conn, threshold, &stop, &request, &running)
        })
        .map_err(|e| Error::Backend(format!("start checkpoint thread: {e}")))?;
    Ok(Checkpointer {
        handle: Some(handle),
        stop,
        request,
        running,
    })
}

impl Checkpointer {
    /// If the thread asked for it, checkpoint on the writer's connection `conn` (between two
    /// batches, so that the checkpoint can catch up with the WAL).
    pub(crate) fn checkpoint_if_requested(&self, conn: &Connection) {
        if !self.request.swap(false, Ordering::AcqRel) {
            return;
        }
        let _running = self.running.lock();
        if let Err(err) = checkpoint(conn, Mode::Passive) {
            tracing::warn!(error = %err, "writer checkpoint failed");
        }
    }

    /// Stop the thread and wait for it.
    pub(crate) fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Checkpoint modes we use (see SQLite's `PRAGMA wal_checkpoint`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// Only report the WAL's size.
    Noop,
    /// Copy what can be copied without waiting for anyone.
    Passive,
    /// Wait for readers and writers, copy everything and truncate the WAL to zero bytes.
    Truncate,
}

/// Run a checkpoint; returns the frames in the WAL and how many of them are in the database.
pub(crate) fn checkpoint(conn: &Connection, mode: Mode) -> rusqlite::Result<(i64, i64)> {
    let sql = match mode {
        Mode::Noop => "PRAGMA wal_checkpoint(NOOP)",
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    conn.prepare_cached(sql)?
        .query_row([], |row| Ok((row.get(1)?, row.get(2)?)))
}

fn run(
    conn: &Connection,
    threshold: i64,
    stop: &AtomicBool,
    request: &AtomicBool,
    running: &Mutex<()>,
) {
    let mut last_frames = -1;
    let mut last_change = Instant::now();
    let mut poll = ACTIVE_POLL;
    let mut failing = false;
    loop {
        std::thread::park_timeout(poll);
        if stop.load(Ordering::Acquire) {
            return;
        }
        // NOOP only reports: frames in the WAL, and how many of them are already in the database.
        let (frames, copied) = match checkpoint(conn, Mode::Noop) {
            Ok(sizes) => sizes,
            Err(err) => {
                tracing::warn!(error = %err, "reading the WAL size failed");
                continue;
            }
        };
        if frames != last_frames {
            last_frames = frames;
            last_change = Instant::now();
        }
        // A pause in the WAL's growth may be our own writer checkpointing: stay attentive a while.
        poll = if last_change.elapsed() < IDLE_AFTER {
            ACTIVE_POLL
        } else {
            IDLE_POLL
        };
        let waiting = frames - copied;
        if frames >= threshold * WRITER_CHECKPOINT_FACTOR {
            // Leave it to the writer: a checkpoint of ours at the same time would make its fail.
            request.store(true, Ordering::Release);
        } else if waiting >= threshold || (waiting > 0 && last_change.elapsed() >= IDLE_AFTER) {
            let _running = running.lock();
            match checkpoint(conn, Mode::Passive) {
                // Retried every poll while it fails (say, the disk is full): one line when it
                // starts failing and one when it works again.
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(error = %err, "checkpoint failed; retrying");
                }
                Err(err) => tracing::debug!(error = %err, "checkpoint failed"),
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("checkpoints succeed again");
                }
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{schema, SqliteConfig};

    fn wal_frames(conn: &Connection) -> (i64, i64) {
        checkpoint(conn, Mode::Noop).expect("noop checkpoint")
    }

    #[test]
    fn the_wal_is_copied_into_the_database_once_writes_pause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let config = SqliteConfig::default();
        let writer = schema::open_writer(&path, &config).expect("writer");
        for rev in 1..=20 {
            writer
                .execute(
                    "INSERT INTO log (rev, key, create_rev, value) VALUES (?1, 'k', ?1, x'00')",
                    [rev],
                )
                .expect("insert");
        }
        let (frames, copied) = wal_frames(&writer);
        assert!(
            frames > 0 && copied < frames,
            "the writer does not checkpoint by itself"
        );
        let checkpointer = spawn(
            schema::open_checkpointer(&path, &config).expect("conn"),
            1000,
        )
        .expect("spawn");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (frames, copied) = wal_frames(&writer);
            if copied == frames {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was not checkpointed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        checkpointer.stop();
    }

    #[test]
    fn a_large_wal_asks_the_writer_to_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let config = SqliteConfig::default();
        let writer = schema::open_writer(&path, &config).expect("writer");
        for rev in 1..=40 {
            writer
                .execute(
                    "INSERT INTO log (rev, key, create_rev, value) VALUES (?1, 'k', ?1, x'00')",
                    [rev],
                )
                .expect("insert");
        }
        let checkpointer =
            spawn(schema::open_checkpointer(&path, &config).expect("conn"), 1).expect("spawn");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !checkpointer.request.load(Ordering::Acquire) {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint was requested"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        checkpointer.checkpoint_if_requested(&writer);
        let (frames, copied) = wal_frames(&writer);
        assert_eq!(
            frames, copied,
            "the writer's checkpoint copied the whole WAL"
        );
        // With the WAL fully copied, the next write starts it over.
        writer
            .execute(
                "INSERT INTO log (rev, key, create_rev, value) VALUES (41, 'k', 41, x'00')",
                [],
            )
            .expect("insert");
        assert!(wal_frames(&writer).0 < frames, "the WAL restarted");
    }
}
