//! Opening connections: pragmas for the writer and the readers, and the schema ([`open_writer`]).
//!
//! ```sql
//! -- One row per revision. A delete writes a tombstone (deleted = 1, value NULL) whose prev_rev
//! -- points at the row it deleted; prev_rev is NULL when the key did not exist before the row.
//! log(rev INTEGER PRIMARY KEY, key TEXT, create_rev INTEGER, prev_rev INTEGER,
//!     deleted INTEGER, value BLOB)
//! -- Covers "newest row of each key at or before revision R" for past lists and compaction.
//! INDEX log_key_rev ON log(key, rev, deleted)
//! -- Each live key and its newest revision: current lists scan this and join log by rev, so a
//! -- value is stored once however it is read.
//! current(key TEXT PRIMARY KEY, rev INTEGER) WITHOUT ROWID
//! -- name = 'compacted': the compacted revision.
//! meta(name TEXT PRIMARY KEY, value INTEGER)
//! ```
//! The current revision is not stored: it is the newest row of `log`, or the compacted revision
//! if compaction removed every row (see [`super::rows::head_revision`]).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::files;
use super::rows::backend;
use super::SqliteConfig;
use crate::{Error, Result};

/// Bumped when the schema changes incompatibly; a database of another version is refused.
const SCHEMA_VERSION: i64 = 1;

/// Enough for every query shape the store builds (list bounds, limits, counts) to stay prepared.
const STATEMENT_CACHE: usize = 64;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0,
    value BLOB
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev, deleted);
CREATE TABLE IF NOT EXISTS current (
    key TEXT PRIMARY KEY,
    rev INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('compacted', 0);
";

/// Open the write connection, creating the database (owner-only) and schema if needed, after
/// checking the database's integrity. Every error names the file.
pub(crate) fn open_writer(path: &Path, config: &SqliteConfig) -> Result<Connection> {
    files::prepare(path).map_err(|e| Error::Backend(format!("{}: {e}", path.display())))?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Backend(format!("open {}: {e}", path.display())))?;
    configure_writer(&conn, path, config).map_err(|e| match e {
        Error::Backend(message) => Error::Backend(format!("{}: {message}", path.display())),
        other => other,
    })?;
    Ok(conn)
}

fn configure_writer(conn: &Connection, path: &Path, config: &SqliteConfig) -> Result<()> {
    common_pragmas(conn, config)?;
    // Only takes effect on a new, empty database: lets compaction hand freed pages back to the
    // file system instead of only reusing them.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(backend("set auto_vacuum"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(backend("set journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Backend(format!(
            "cannot use a write-ahead log (journal mode is {mode}); is it on a network file system?"
        )));
    }
    // FULL in WAL mode: each commit is fsynced before we answer, so an answered write survives
    // a power loss. See the module docs of `sqlite`.
    conn.pragma_update(None, "synchronous", config.synchronous.pragma_value())
        .map_err(backend("set synchronous"))?;
    // The checkpointer thread checkpoints instead, so that commits never wait for it.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(backend("set wal_autocheckpoint"))?;
    conn.pragma_update(
        None,
        "journal_size_limit",
        config.journal_size_limit_bytes as i64,
    )
    .map_err(backend("set journal_size_limit"))?;
    quick_check(conn)?;
    files::restrict_journal(path)
        .map_err(|e| Error::Backend(format!("restrict the journal's permissions: {e}")))?;

    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend("read schema version"))?;
    match version {
        0 => {
            conn.execute_batch(SCHEMA)
                .map_err(backend("create schema"))?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(backend("set schema version"))?;
        }
        SCHEMA_VERSION => {}
        other => {
            return Err(Error::Backend(format!(
                "has schema version {other}; this build understands {SCHEMA_VERSION}"
            )))
        }
    }
    Ok(())
}

/// Problems `quick_check` reports at most; the first few say enough.
const QUICK_CHECK_ROWS: u32 = 5;

/// `PRAGMA quick_check`: every page and record well-formed (not index-to-table consistency,
/// which `integrity_check` adds at several times the cost). A damaged database is refused rather
/// than served: answers from it could be wrong, and writes could damage it further.
fn quick_check(conn: &Connection) -> Result<()> {
    let started = std::time::Instant::now();
    let problems: Vec<String> = conn
        .prepare(&format!("PRAGMA quick_check({QUICK_CHECK_ROWS})"))
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| {
            Error::Backend(format!(
                "integrity check failed: {e}; the database is damaged: restore it from a backup or move it away to start empty"
            ))
        })?;
    if problems != ["ok"] {
        return Err(Error::Backend(format!(
            "integrity check failed: {}; the database is damaged: restore it from a backup or move it away to start empty",
            problems.join("; ")
        )));
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "database integrity check passed"
    );
    Ok(())
}

/// Open a read connection to a database the writer has already created.
pub(crate) fn open_reader(path: &Path, config: &SqliteConfig) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Backend(format!("open {} for reading: {e}", path.display())))?;
    common_pragmas(&conn, config)?;
    // Read-write open (so the connection can join the WAL), but it must never write.
    conn.pragma_update(None, "query_only", true)
        .map_err(backend("set query_only"))?;
    Ok(conn)
}

/// Open the checkpointer's connection (see [`super::checkpoint`]).
pub(crate) fn open_checkpointer(path: &Path, config: &SqliteConfig) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Backend(format!("open {} for checkpoints: {e}", path.display())))?;
    common_pragmas(&conn, config)?;
    Ok(conn)
}

fn common_pragmas(conn: &Connection, config: &SqliteConfig) -> Result<()> {
    conn.busy_timeout(config.busy_timeout)
        .map_err(backend("set busy timeout"))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // With STAT4 (on in the bundled SQLite) a cached statement is re-prepared whenever a newly
    // bound key might change the plan: every `get` paid a full prepare (~10 us). The query
    // planner stability guarantee keeps the first plan, which for our indexed lookups is the
    // only sensible one.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(backend("enable the query planner stability guarantee"))?;
    // Negative means KiB rather than pages.
    conn.pragma_update(None, "cache_size", -i64::from(config.cache_size_kib))
        .map_err(backend("set cache_size"))?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(backend("set temp_store"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(conn: &Connection, name: &str) -> String {
        conn.pragma_query_value(None, name, |row| {
            Ok(match row.get_ref(0)? {
                rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                other => format!("{other:?}"),
            })
        })
        .expect("pragma")
    }

    #[test]
    fn the_writer_uses_wal_with_full_sync_incremental_vacuum_and_no_autocheckpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = open_writer(&dir.path().join("s.db"), &SqliteConfig::default()).expect("open");
        assert_eq!(pragma(&conn, "journal_mode"), "wal");
        assert_eq!(
            pragma(&conn, "synchronous"),
            "2",
            "FULL is 2: every commit is fsynced before it is answered"
        );
        assert_eq!(pragma(&conn, "auto_vacuum"), "2", "INCREMENTAL is 2");
        assert_eq!(pragma(&conn, "user_version"), SCHEMA_VERSION.to_string());
        assert_eq!(
            pragma(&conn, "wal_autocheckpoint"),
            "0",
            "the checkpointer thread does it"
        );
    }

    #[test]
    fn reopening_keeps_the_schema_and_readers_cannot_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let config = SqliteConfig::default();
        drop(open_writer(&path, &config).expect("create"));
        let conn = open_writer(&path, &config).expect("reopen");
        let compacted: i64 = conn
            .query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
                r.get(0)
            })
            .expect("meta");
        assert_eq!(compacted, 0);
        let reader = open_reader(&path, &config).expect("reader");
        assert!(reader.execute("DELETE FROM meta", []).is_err());
    }

    #[test]
    fn a_database_of_another_schema_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let conn = open_writer(&path, &SqliteConfig::default()).expect("create");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        let err = open_writer(&path, &SqliteConfig::default()).expect_err("must refuse");
        assert!(err.to_string().contains("schema version 99"), "{err}");
        assert!(err.to_string().contains("s.db"), "names the file: {err}");
    }

    #[test]
    fn a_damaged_database_is_refused_with_a_message_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("damaged.db");
        let conn = open_writer(&path, &SqliteConfig::default()).expect("create");
        for i in 0..200 {
            conn.execute(
                "INSERT INTO log (rev, key, create_rev, value) VALUES (?1, ?2, ?1, zeroblob(300))",
                rusqlite::params![i + 1, format!("/k/{i}")],
            )
            .expect("insert");
        }
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .expect("checkpoint");
        drop(conn);
        // Keep page 1 (the header and the schema) and scribble over every page after it, as a
        // torn or failing disk would.
        let mut bytes = std::fs::read(&path).expect("read");
        let page = 4096;
        assert!(bytes.len() > 3 * page, "the database spans several pages");
        for b in &mut bytes[page..] {
            *b = 0x5a;
        }
        std::fs::write(&path, &bytes).expect("write");
        let err = open_writer(&path, &SqliteConfig::default()).expect_err("must refuse");
        let message = err.to_string();
        assert!(message.contains("damaged.db"), "names the file: {message}");
        assert!(
            message.contains("integrity check failed"),
            "says what is wrong: {message}"
        );
    }
}
