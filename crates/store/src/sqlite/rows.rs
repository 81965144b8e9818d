//! Log rows decoded into [`KeyValue`]s and [`Event`]s, and the point lookups that the writer and
//! the readers share ([`current`], [`head_revision`], [`event_from_row`]).

use std::sync::Arc;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row};

use crate::{Error, Event, EventType, KeyValue, Result, Revision};

/// Turns a SQLite error into [`Error::Backend`], saying which step failed.
pub(crate) fn backend(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |err| Error::Backend(format!("{context}: {err}"))
}

/// The newest revision in the database: the newest log row, or the compacted revision when
/// compaction removed the newest rows (a compacted delete leaves no row behind).
pub(crate) fn head_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    conn.prepare_cached(
        "SELECT max(coalesce((SELECT max(rev) FROM log), 0),
                    (SELECT value FROM meta WHERE name = 'compacted'))",
    )?
    .query_row([], |row| row.get(0))
}

pub(crate) fn compacted_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = 'compacted'")?
        .query_row([], |row| row.get(0))
}

/// The current value of `key`, if it exists.
pub(crate) fn current(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    conn.prepare_cached(
        "SELECT l.create_rev, l.rev, l.value FROM current c JOIN log l ON l.rev = c.rev
         WHERE c.key = ?1",
    )?
    .query_row([key], |row| {
        Ok(KeyValue {
            key: key.to_owned(),
            create_revision: row.get(0)?,
            mod_revision: row.get(1)?,
            value: blob(row, 2)?,
        })
    })
    .optional()
}

/// Whether `key` currently exists; cheaper than [`current`] because it reads no value.
pub(crate) fn exists(conn: &Connection, key: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM current WHERE key = ?1")?
        .query_row([key], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}

/// The value a log row wrote (None if the row is missing or is a tombstone).
pub(crate) fn put_at(conn: &Connection, rev: Revision) -> rusqlite::Result<Option<KeyValue>> {
    conn.prepare_cached("SELECT key, create_rev, value FROM log WHERE rev = ?1 AND deleted = 0")?
        .query_row([rev], |row| {
            Ok(KeyValue {
                key: row.get(0)?,
                create_revision: row.get(1)?,
                mod_revision: rev,
                value: blob(row, 2)?,
            })
        })
        .optional()
}

/// A value column as a shared buffer. Values are written as blobs; NULL (a tombstone) reads as
/// empty and text is accepted for databases edited by hand.
pub(crate) fn blob(row: &Row<'_>, idx: usize) -> rusqlite::Result<Arc<[u8]>> {
    Ok(match row.get_ref(idx)? {
        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Arc::from(bytes),
        ValueRef::Null => Arc::from(&[][..]),
        other => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                idx,
                other.data_type(),
                "value is neither a blob nor text".into(),
            ))
        }
    })
}

/// One row of the `log` table.
pub(crate) struct LogRow {
    pub(crate) rev: Revision,
    pub(crate) key: String,
    pub(crate) create_rev: Revision,
    pub(crate) prev_rev: Option<Revision>,
    pub(crate) deleted: bool,
    pub(crate) value: Arc<[u8]>,
}

impl LogRow {
    /// Decodes `rev, key, create_rev, prev_rev, deleted, value` in that column order.
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            rev: row.get(0)?,
            key: row.get(1)?,
            create_rev: row.get(2)?,
            prev_rev: row.get(3)?,
            deleted: row.get(4)?,
            value: blob(row, 5)?,
        })
    }
}

/// The watch event a log row stands for, with its previous value looked up through `prev_rev`.
pub(crate) fn event_from_row(conn: &Connection, row: LogRow) -> Result<Event> {
    let prev = match row.prev_rev {
        Some(prev_rev) => Some(
            put_at(conn, prev_rev)
                .map_err(backend("read previous value"))?
                // Compaction keeps the previous row of every event it keeps, so this is damage.
                .ok_or_else(|| {
                    Error::Backend(format!(
                        "log row {} of {} points at missing row {prev_rev}",
                        row.rev, row.key
                    ))
                })?,
        ),
        None => None,
    };
    if row.deleted {
        let Some(prev) = prev else {
            return Err(Error::Backend(format!(
                "tombstone {} of {} has no previous value",
                row.rev, row.key
            )));
        };
        let kv = KeyValue {
            mod_revision: row.rev,
            ..prev.clone()
        };
        Ok(Event {
            event_type: EventType::Delete,
            kv,
            prev: Some(prev),
        })
    } else {
        Ok(Event {
            event_type: EventType::Put,
            kv: KeyValue {
                key: row.key,
                value: row.value,
                create_revision: row.create_rev,
                mod_revision: row.rev,
            },
            prev,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{schema, SqliteConfig};

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn =
            schema::open_writer(&dir.path().join("s.db"), &SqliteConfig::default()).expect("open");
        (dir, conn)
    }

    fn insert(
        conn: &Connection,
        rev: i64,
        key: &str,
        create: i64,
        prev: Option<i64>,
        deleted: bool,
        value: Option<&[u8]>,
    ) {
        conn.execute(
            "INSERT INTO log (rev, key, create_rev, prev_rev, deleted, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![rev, key, create, prev, deleted, value],
        )
        .expect("insert");
    }

    #[test]
    fn the_head_revision_of_an_empty_database_is_zero() {
        let (_dir, conn) = db();
        assert_eq!(head_revision(&conn).expect("head"), 0);
    }

    #[test]
    fn the_head_revision_falls_back_to_the_compacted_revision_when_the_log_is_empty() {
        let (_dir, conn) = db();
        conn.execute("UPDATE meta SET value = 7 WHERE name = 'compacted'", [])
            .expect("meta");
        assert_eq!(head_revision(&conn).expect("head"), 7);
        insert(&conn, 9, "/a", 9, None, false, Some(b"x"));
        assert_eq!(head_revision(&conn).expect("head"), 9);
    }

    #[test]
    fn a_tombstone_becomes_a_delete_event_carrying_the_old_value() {
        let (_dir, conn) = db();
        insert(&conn, 1, "/a", 1, None, false, Some(b"old"));
        let event = event_from_row(
            &conn,
            LogRow {
                rev: 2,
                key: "/a".into(),
                create_rev: 1,
                prev_rev: Some(1),
                deleted: true,
                value: Arc::from(&[][..]),
            },
        )
        .expect("event");
        assert_eq!(event.event_type, EventType::Delete);
        assert_eq!(event.kv.mod_revision, 2);
        assert_eq!(&*event.kv.value, b"old");
        assert_eq!(event.prev.expect("prev").mod_revision, 1);
    }

    #[test]
    fn a_row_pointing_at_a_missing_previous_row_is_reported_as_damage() {
        let (_dir, conn) = db();
        let row = LogRow {
            rev: 5,
            key: "/a".into(),
            create_rev: 1,
            prev_rev: Some(4),
            deleted: false,
            value: Arc::from(&b"v"[..]),
        };
        assert!(matches!(event_from_row(&conn, row), Err(Error::Backend(_))));
    }
}
