//! The database's files on disk: readable by the owner only, whatever the umask, and their
//! creation made durable.
//!
//! SQLite creates a database with mode 0644 (less the umask) and gives its WAL and shared-memory
//! files the database's mode, so creating the (empty) database file ourselves with 0600 makes
//! all three owner-only. Files left by an older build or another umask are tightened at open.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the database, its WAL and its shared-memory file.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Create the database file owner-only if it does not exist (an empty file is an empty
/// database to SQLite), fsyncing its directory so that the new entry survives a power loss, and
/// tighten the modes of the files already there.
pub(crate) fn prepare(path: &Path) -> io::Result<()> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(file) => {
            file.sync_all()?;
            sync_parent(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => restrict(path)?,
        Err(e) => return Err(e),
    }
    restrict_journal(path)
}

/// Tighten the WAL and shared-memory files next to the database, if they exist.
pub(crate) fn restrict_journal(path: &Path) -> io::Result<()> {
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match restrict(&PathBuf::from(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

fn restrict(path: &Path) -> io::Result<()> {
    let meta = fs::metadata(path)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// fsync the directory holding `path`: a new or renamed entry is durable only once its
/// directory is.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{schema, SqliteConfig};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn the_database_wal_and_shm_are_owner_only_and_loose_modes_are_tightened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let conn = schema::open_writer(&path, &SqliteConfig::default()).expect("open");
        conn.execute(
            "INSERT INTO log (rev, key, create_rev, value) VALUES (1, 'k', 1, x'00')",
            [],
        )
        .expect("insert");
        let wal = dir.path().join("s.db-wal");
        let shm = dir.path().join("s.db-shm");
        for p in [&path, &wal, &shm] {
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
        drop(conn);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        fs::write(&wal, b"").expect("wal");
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o666)).expect("chmod");
        drop(schema::open_writer(&path, &SqliteConfig::default()).expect("reopen"));
        assert_eq!(mode(&path), 0o600);
        if wal.exists() {
            assert_eq!(mode(&wal), 0o600);
        }
    }
}
