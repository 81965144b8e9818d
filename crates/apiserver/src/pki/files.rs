//! Files holding secrets (keys, tokens, kubeconfigs): owner-only whatever the umask, and written
//! so that a power loss leaves either the old or the new contents, never an empty file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::PkiError;

/// Mode of private files.
pub const FILE_MODE: u32 = 0o600;
/// Mode of folders holding them.
pub const DIR_MODE: u32 = 0o700;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and its missing parents with mode 0700, or sets `dir`'s mode to 0700 if it
/// exists with another.
pub fn private_dir(dir: &Path) -> Result<(), PkiError> {
    match fs::metadata(dir) {
        Ok(_) => restrict_mode(dir, DIR_MODE),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(io_error(dir))?;
            // A umask such as 0077 leaves 0700 alone, but one taking owner bits would leave a
            // folder its owner cannot use: set the mode outright.
            restrict_mode(dir, DIR_MODE)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(source) => Err(PkiError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Removes group and other access from `path` if it exists (files from an older build or
/// another umask).
pub fn restrict(path: &Path) -> Result<(), PkiError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => restrict_mode(path, DIR_MODE),
        Ok(_) => restrict_mode(path, FILE_MODE),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn restrict_mode(path: &Path, mode: u32) -> Result<(), PkiError> {
    let current = fs::metadata(path)
        .map_err(io_error(path))?
        .permissions()
        .mode()
        & 0o7777;
    if current != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_error(path))?;
    }
    Ok(())
}

/// fsyncs a folder, so that entries created or renamed in it survive a power loss.
pub fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Writes a file readable only by its owner (keys and credentials): into a temporary file that
/// is fsynced and renamed over `path`, then the folder is fsynced. Missing folders are created
/// 0700.
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        private_dir(dir)?;
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(io_error(&tmp))?;
        // A leftover temporary file keeps the mode it was created with: set it outright.
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(io_error(&tmp))?;
        f.write_all(contents.as_bytes()).map_err(io_error(&tmp))?;
        f.sync_all().map_err(io_error(&tmp))?;
        fs::rename(&tmp, path).map_err(io_error(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    #[test]
    fn private_files_and_their_new_folders_are_owner_only_and_replace_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/secret.token");
        write_private(&path, "one").expect("write");
        write_private(&path, "two").expect("overwrite");
        assert_eq!(fs::read_to_string(&path).expect("read"), "two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        let names: Vec<_> = fs::read_dir(dir.path().join("a/b"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec!["secret.token"], "no temporary file is left");
    }

    #[test]
    fn loose_modes_are_tightened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("d");
        fs::create_dir(&folder).expect("mkdir");
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o755)).expect("chmod");
        let file = folder.join("k");
        fs::write(&file, "x").expect("write");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
        private_dir(&folder).expect("dir");
        restrict(&file).expect("file");
        restrict(&folder.join("missing")).expect("a missing file is fine");
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(mode(&file), 0o600);
    }
}
