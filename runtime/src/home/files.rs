//! Durable file writes and private directories: how everything under the
//! data home is written.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Create `dir` and its missing parents with mode 0700. Existing directories
/// keep the mode the operator gave them.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Make sure `path` exists as a file only its owner can read and write, for
/// a file another library fills in (SQLite's `state.db`). A new file is
/// created mode 0600 with `O_EXCL`, so when several processes start at once
/// one creates it and no process ever sees it with a wider mode; an existing
/// file loses any group and other access (see [`restrict_to_owner`]).
pub fn create_private_file(path: &Path) -> anyhow::Result<()> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // The umask may have narrowed 0600 further; the owner needs both.
        Ok(file) => file
            .set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            restrict_to_owner(path).map(drop)
        }
        Err(error) => Err(error).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Take group and other access away from the regular file at `path`, if it
/// exists and has any. Returns whether the mode changed. A file this user
/// does not own cannot be changed; that is logged and left to `talaria
/// doctor`, which names the owner and the fix, rather than refusing to work.
pub fn restrict_to_owner(path: &Path) -> anyhow::Result<bool> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot inspect {}", path.display()));
        }
    };
    let mode = metadata.permissions().mode();
    if !metadata.is_file() || mode & 0o077 == 0 {
        return Ok(false);
    }
    let private = fs::Permissions::from_mode(mode & 0o7700);
    match fs::set_permissions(path, private) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(
                path = %path.display(),
                "is readable by other users (mode {:o}) and cannot be made private: {error}; \
                 run `talaria doctor`",
                mode & 0o777
            );
            Ok(false)
        }
        Err(error) => Err(error).with_context(|| format!("cannot make {} private", path.display())),
    }
}

/// Write `bytes` to `path` so that readers see either the old file or the
/// complete new one: temporary file in the same directory, fsync, rename,
/// fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let temp = write_temp(path, bytes, mode)?;
    let dir = parent(path)?;
    let result = fs::rename(&temp, path)
        .with_context(|| format!("cannot rename into {}", path.display()))
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Like [`write_atomically`], but only if `path` does not exist yet: the
/// complete file is linked into place, which fails instead of replacing a
/// file another process created meanwhile. Returns whether it was written.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let temp = write_temp(path, bytes, mode)?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(parent(path)?)?;
            Ok(true)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error).with_context(|| format!("cannot create {}", path.display())),
    }
}

fn parent(path: &Path) -> anyhow::Result<&Path> {
    path.parent()
        .with_context(|| format!("{} has no parent directory", path.display()))
}

fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<PathBuf> {
    let dir = parent(path)?;
    let file_name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?
        .to_string_lossy();
    let temp = dir.join(format!(
        ".{file_name}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| -> anyhow::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .with_context(|| format!("cannot create {}", temp.display()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", temp.display()))
    })();
    match written {
        Ok(()) => Ok(temp),
        Err(error) => {
            let _ = fs::remove_file(&temp);
            Err(error)
        }
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn atomic_write_replaces_whole_files_with_the_given_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.toml");
        write_atomically(&path, b"first", 0o600).unwrap();
        write_atomically(&path, b"second", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        write_atomically(&path, b"old", 0o640).unwrap();
        // A directory where the rename target should be makes the rename fail
        // after the temporary file was fully written.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("keep"), b"x").unwrap();
        assert!(write_atomically(&blocked, b"new", 0o640).is_err());
        assert!(blocked.join("keep").is_file());
        // A directory we cannot write to fails before anything changes.
        let readonly = dir.path().join("ro");
        fs::create_dir(&readonly).unwrap();
        fs::set_permissions(&readonly, fs::Permissions::from_mode(0o500)).unwrap();
        let target = readonly.join("file");
        let outcome = write_atomically(&target, b"new", 0o640);
        fs::set_permissions(&readonly, fs::Permissions::from_mode(0o700)).unwrap();
        if rustix::process::geteuid().is_root() {
            // root ignores directory permissions; the rest still holds.
            assert!(outcome.is_ok());
        } else {
            assert!(outcome.is_err());
            assert!(!target.exists());
        }
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(leftovers(dir.path()).is_empty());
        assert!(leftovers(&readonly).is_empty());
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_private_file_is_created_0600_and_an_existing_one_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        create_private_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"");
        // An existing file keeps its content and loses group and other access.
        fs::write(&path, b"kept").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        create_private_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"kept");
        // Owner bits are kept as they are; nothing is made.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).unwrap();
        assert!(restrict_to_owner(&path).unwrap());
        assert_eq!(mode(&path), 0o400);
        assert!(!restrict_to_owner(&path).unwrap());
        assert!(!restrict_to_owner(&dir.path().join("missing")).unwrap());
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        assert!(write_new(&path, b"A=1\n", 0o600).unwrap());
        assert!(!write_new(&path, b"A=2\n", 0o600).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"A=1\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(leftovers(dir.path()).is_empty());
    }
}
