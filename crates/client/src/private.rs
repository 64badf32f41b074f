//! Files only this device's owner may read: the data directory, the `profiles/` folder of
//! cache files and everything in it. A cache holds every text of the account, so a
//! directory is made 0700 and a file 0600 when created, and an existing one is narrowed to
//! that when it is opened (a file or folder left readable by an older build or by hand).
//!
//! SQLite gives a database's `-wal` and `-shm` files the permissions of the database file,
//! so creating that file 0600 covers the files SQLite creates beside it.

use std::io;
use std::path::Path;

/// Creates `dir` (and missing parents) readable by its owner only, and narrows it to that
/// if it already exists.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    restrict(dir, 0o700)
}

/// Creates `file` empty if it is missing, readable by its owner only; narrows an existing
/// one to that (its content untouched).
pub fn create_file(file: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    drop(options.open(file)?);
    restrict(file, 0o600)
}

/// Narrows `file` to its owner if it exists.
pub fn restrict_if_present(file: &Path) -> io::Result<()> {
    match restrict(file, 0o600) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(path: &Path, _mode: u32) -> io::Result<()> {
    // Elsewhere the per-user data directory's own access rules apply.
    std::fs::metadata(path).map(drop)
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_folders_and_files_are_private_and_old_ones_are_narrowed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data").join("profiles");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("data")), 0o700);
        let file = dir.join("a.sqlite3");
        create_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(&file, b"kept").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_dir(&dir).unwrap();
        create_file(&file).unwrap();
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
        assert_eq!(std::fs::read(&file).unwrap(), b"kept");
        restrict_if_present(&dir.join("missing")).unwrap();
    }
}
