//! The read side: a pool of WAL reader connections used on blocking threads ([`ReadPool::run`]),
//! and the queries it runs: [`get`], [`list`] (current or past revision, paged) and
//! [`history_page`] (log replay for watches).
//!
//! Every query that needs more than one statement runs in one read transaction, so it sees one
//! snapshot of the database even while the writer commits.

use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};
use tokio::sync::Semaphore;

use super::rows::{self, backend, LogRow};
use crate::{Error, Event, KeyValue, ListOptions, ListResult, Result, Revision};

/// Read connections, each used by one blocking task at a time.
pub(crate) struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: waiting for a permit happens on the runtime, not on a thread.
    permits: Arc<Semaphore>,
}

impl ReadPool {
    pub(crate) fn new(connections: Vec<Connection>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(connections.len())),
            idle: Mutex::new(connections),
        }
    }

    /// Run `query` with a connection on a blocking thread.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, query: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            // The permit lives as long as the connection is out, even if the caller goes away.
            let _permit = permit;
            let mut lease = Lease {
                conn: pool.idle.lock().pop(),
                pool: &pool,
            };
            match lease.conn.as_mut() {
                Some(conn) => query(conn),
                None => Err(Error::Backend("read pool has no idle connection".into())),
            }
        })
        .await
        .map_err(|e| Error::Backend(format!("read task failed: {e}")))?
    }

    /// Refuse further reads; running ones finish.
    pub(crate) fn close(&self) {
        self.permits.close();
    }
}

/// Returns its connection to the pool even if the query panics.
struct Lease<'a> {
    pool: &'a ReadPool,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.idle.lock().push(conn);
        }
    }
}

pub(crate) fn get(conn: &mut Connection, key: &str) -> Result<Option<KeyValue>> {
    rows::current(conn, key).map_err(backend("get"))
}

/// Keys starting with `prefix` at the revision asked for (or the current one), paged.
pub(crate) fn list(
    conn: &mut Connection,
    prefix: &str,
    options: &ListOptions,
) -> Result<ListResult> {
    let tx = conn.transaction().map_err(backend("begin list"))?;
    let head = rows::head_revision(&tx).map_err(backend("read head revision"))?;
    let compacted = rows::compacted_revision(&tx).map_err(backend("read compacted revision"))?;
    let at = match options.revision {
        None => head,
        Some(requested) if requested > head => {
            return Err(Error::FutureRevision {
                requested,
                current: head,
            })
        }
        Some(requested) if requested < compacted => {
            return Err(Error::Compacted {
                requested,
                compacted,
            })
        }
        Some(requested) => requested,
    };
    let limit = options.limit.filter(|&limit| limit > 0);
    let bounds = KeyBounds::new(prefix, options.start_after.as_deref());
    // The current table answers the current revision without looking at history.
    let source = if at == head {
        Source::Current
    } else {
        Source::Past(at)
    };
    let items = query_items(&tx, source, &bounds, limit)?;
    let remaining = match (limit, items.last()) {
        (Some(limit), Some(last)) if items.len() == limit => {
            let rest = KeyBounds::new(prefix, Some(&last.key));
            count_keys(&tx, source, &rest)?
        }
        _ => 0,
    };
    Ok(ListResult {
        items,
        revision: at,
        remaining,
    })
}

/// Events replayed from the log for a watch, and how far they reach.
pub(crate) struct HistoryPage {
    pub(crate) events: Vec<Arc<Event>>,
    /// Every event for the prefix up to this revision is in `events` (or was in earlier pages).
    pub(crate) covered: Revision,
}

/// Up to `limit` events for keys under `prefix` with revision greater than `after`, from the log.
pub(crate) fn history_page(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> Result<HistoryPage> {
    let tx = conn.transaction().map_err(backend("begin history read"))?;
    // Compaction records its revision before deleting rows, so checking it in the same snapshot
    // as the rows guarantees none of the rows we need is gone.
    let compacted = rows::compacted_revision(&tx).map_err(backend("read compacted revision"))?;
    if after < compacted {
        return Err(Error::Compacted {
            requested: after,
            compacted,
        });
    }
    let head = rows::head_revision(&tx).map_err(backend("read head revision"))?;
    let bounds = KeyBounds::new(prefix, None);
    let (filter, mut args) = bounds.sql("key");
    let sql = format!(
        "SELECT rev, key, create_rev, prev_rev, deleted, value FROM log
         WHERE rev > ? AND rev <= ? AND {filter} ORDER BY rev LIMIT ?"
    );
    let mut params = vec![Value::Integer(after), Value::Integer(head)];
    params.append(&mut args);
    params.push(Value::Integer(sql_limit(Some(limit))));
    let log_rows = {
        let mut stmt = tx
            .prepare_cached(&sql)
            .map_err(backend("prepare history read"))?;
        let mapped = stmt
            .query_map(params_from_iter(params), LogRow::from_row)
            .map_err(backend("read history"))?;
        mapped
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(backend("read history"))?
    };
    let full = log_rows.len() >= limit;
    let last = log_rows.last().map(|row| row.rev);
    let events = log_rows
        .into_iter()
        .map(|row| rows::event_from_row(&tx, row).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    let covered = match last {
        Some(last) if full => last,
        _ => head,
    };
    Ok(HistoryPage { events, covered })
}

#[derive(Clone, Copy)]
enum Source {
    Current,
    Past(Revision),
}

fn query_items(
    tx: &Connection,
    source: Source,
    bounds: &KeyBounds,
    limit: Option<usize>,
) -> Result<Vec<KeyValue>> {
    let mut params = Vec::new();
    let sql = match source {
        Source::Current => {
            let (filter, mut args) = bounds.sql("c.key");
            params.append(&mut args);
            format!(
                "SELECT c.key, l.create_rev, l.rev, l.value FROM current c JOIN log l ON l.rev = c.rev
                 WHERE {filter} ORDER BY c.key LIMIT ?"
            )
        }
        Source::Past(at) => {
            let (filter, mut args) = bounds.sql("key");
            params.append(&mut args);
            params.push(Value::Integer(at));
            // For each key, the newest row at or before `at` (SQLite takes the bare `deleted`
            // column from the row that has the max), skipping keys whose newest row is a tombstone.
            format!(
                "SELECT l.key, l.create_rev, l.rev, l.value
                 FROM (SELECT max(rev) AS rev, deleted FROM log WHERE {filter} AND rev <= ? GROUP BY key) AS newest
                 JOIN log l ON l.rev = newest.rev
                 WHERE newest.deleted = 0 ORDER BY l.key LIMIT ?"
            )
        }
    };
    params.push(Value::Integer(sql_limit(limit)));
    let mut stmt = tx.prepare_cached(&sql).map_err(backend("prepare list"))?;
    let items = stmt
        .query_map(params_from_iter(params), |row| {
            Ok(KeyValue {
                key: row.get(0)?,
                create_revision: row.get(1)?,
                mod_revision: row.get(2)?,
                value: rows::blob(row, 3)?,
            })
        })
        .map_err(backend("list"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend("list"))?;
    Ok(items)
}

fn count_keys(tx: &Connection, source: Source, bounds: &KeyBounds) -> Result<usize> {
    let mut params = Vec::new();
    let sql = match source {
        Source::Current => {
            let (filter, mut args) = bounds.sql("key");
            params.append(&mut args);
            format!("SELECT count(*) FROM current WHERE {filter}")
        }
        Source::Past(at) => {
            let (filter, mut args) = bounds.sql("key");
            params.append(&mut args);
            params.push(Value::Integer(at));
            format!(
                "SELECT count(*) FROM (SELECT max(rev), deleted FROM log WHERE {filter} AND rev <= ? GROUP BY key)
                 WHERE deleted = 0"
            )
        }
    };
    let count: i64 = tx
        .prepare_cached(&sql)
        .and_then(|mut stmt| stmt.query_row(params_from_iter(params), |row| row.get(0)))
        .map_err(backend("count remaining keys"))?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// SQLite's LIMIT: negative means none.
fn sql_limit(limit: Option<usize>) -> i64 {
    limit.and_then(|l| i64::try_from(l).ok()).unwrap_or(-1)
}

/// The key range of a prefix (and a paging cursor) as SQL comparisons that can use an index.
#[derive(Debug, PartialEq, Eq)]
struct KeyBounds {
    /// Keys greater than (`true`: or equal to) this.
    lower: Option<(String, bool)>,
    /// Keys less than this.
    upper: Option<String>,
}

impl KeyBounds {
    fn new(prefix: &str, start_after: Option<&str>) -> Self {
        let lower = match start_after {
            Some(after) if after >= prefix => Some((after.to_owned(), false)),
            _ if prefix.is_empty() => None,
            _ => Some((prefix.to_owned(), true)),
        };
        Self {
            lower,
            upper: prefix_end(prefix),
        }
    }

    /// A condition on `column` and its parameters, in order.
    fn sql(&self, column: &str) -> (String, Vec<Value>) {
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        if let Some((lower, inclusive)) = &self.lower {
            conditions.push(format!(
                "{column} {} ?",
                if *inclusive { ">=" } else { ">" }
            ));
            params.push(Value::Text(lower.clone()));
        }
        if let Some(upper) = &self.upper {
            conditions.push(format!("{column} < ?"));
            params.push(Value::Text(upper.clone()));
        }
        if conditions.is_empty() {
            conditions.push("1".to_owned());
        }
        (conditions.join(" AND "), params)
    }
}

/// The smallest string greater than every string that starts with `prefix` (None: no bound).
///
/// SQLite compares text as UTF-8 bytes, which orders like code points, so replacing the last
/// character by the next code point gives the bound.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_prefix_bumps_its_last_character() {
        assert_eq!(prefix_end("/a/b/").as_deref(), Some("/a/b0"));
        assert_eq!(prefix_end("").as_deref(), None);
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
    }

    #[test]
    fn a_prefix_range_excludes_keys_that_only_share_a_shorter_prefix() {
        let bounds = KeyBounds::new("/a/b/", None);
        let inside = |key: &str| {
            bounds.lower.as_ref().is_none_or(|(l, incl)| {
                if *incl {
                    key >= l.as_str()
                } else {
                    key > l.as_str()
                }
            }) && bounds.upper.as_ref().is_none_or(|u| key < u.as_str())
        };
        assert!(inside("/a/b/"));
        assert!(inside("/a/b/x"));
        assert!(inside("/a/b/\u{10FFFF}"));
        assert!(!inside("/a/bc"));
        assert!(!inside("/a/b"));
        assert!(!inside("/a/c/"));
    }

    #[test]
    fn a_paging_cursor_before_the_prefix_does_not_widen_the_range() {
        assert_eq!(
            KeyBounds::new("/b/", Some("/a/z")),
            KeyBounds::new("/b/", None)
        );
        assert_eq!(
            KeyBounds::new("/b/", Some("/b/k")).lower,
            Some(("/b/k".to_owned(), false))
        );
    }

    #[test]
    fn an_empty_prefix_without_cursor_matches_everything() {
        let (sql, params) = KeyBounds::new("", None).sql("key");
        assert_eq!(sql, "1");
        assert!(params.is_empty());
    }

    #[tokio::test]
    async fn reads_fail_with_closed_after_the_pool_closes() {
        let pool = Arc::new(ReadPool::new(vec![
            Connection::open_in_memory().expect("open")
        ]));
        let one: i64 = pool
            .run(|conn| {
                conn.query_row("SELECT 1", [], |r| r.get(0))
                    .map_err(backend("select"))
            })
            .await
            .expect("query");
        assert_eq!(one, 1);
        pool.close();
        assert!(matches!(pool.run(|_| Ok(())).await, Err(Error::Closed)));
    }

    #[tokio::test]
    async fn a_panicking_query_returns_its_connection_to_the_pool() {
        let pool = Arc::new(ReadPool::new(vec![
            Connection::open_in_memory().expect("open")
        ]));
        let failed = pool.run(|_| -> Result<()> { panic!("boom") }).await;
        assert!(matches!(failed, Err(Error::Backend(_))));
        pool.run(|_| Ok(())).await.expect("the connection is back");
    }
}
