//! Mounts are opened once, when a skill is loaded, and every call is shown
//! exactly the directories opened then.
//!
//! wasmtime-wasi opens a preopened directory by path. Handing it a path for
//! each call would let a folder swapped in later (a reinstall during a long
//! chat, a symlink planted in a parent) reach a component that was granted
//! the old one. So the sandbox holds an `O_PATH` handle per mount from load
//! time, checked to be the granted directory, and passes wasmtime
//! `/proc/self/fd/N`: opening that magic link reopens the very directory the
//! handle refers to, whatever now sits at the original path.
//!
//! Without `/proc` (never the case in a Linux container, rare elsewhere) the
//! path is used, after checking that it still names the held directory
//! (device and inode); a swap in the instant between that check and
//! wasmtime's open is then possible, and a warning says so once.
//!
//! A skill mounting its own folder (`${skill_dir}`) is shown a frozen copy of
//! the files its hash covers, never the live folder: a file added after the
//! grant must not change what the skill sees.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::policy::FolderFile;
use crate::home::create_private_dir;

/// A directory held open for a skill's guest.
#[derive(Debug)]
pub struct HeldMount {
    dir: OwnedFd,
    /// The granted host path, for messages and the fallback without `/proc`.
    host: PathBuf,
    guest: String,
    perms: FsPerms,
    /// Device and inode, to check the fallback path.
    identity: (u64, u64),
}

impl HeldMount {
    /// Open `host` (an absolute, canonical directory path) and check that the
    /// handle is that directory: not reached through a symlink, not moved.
    pub fn open(host: &Path, guest: &str, perms: FsPerms) -> anyhow::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        let dir = rustix::fs::open(
            host,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {} for {guest}", host.display()))?;
        let stat = rustix::fs::fstat(&dir)
            .with_context(|| format!("cannot inspect {}", host.display()))?;
        #[allow(clippy::unnecessary_cast)] // the field types differ by platform
        let identity = (stat.st_dev as u64, stat.st_ino as u64);
        let held = Self {
            dir,
            host: host.to_owned(),
            guest: guest.to_owned(),
            perms,
            identity,
        };
        if proc_fd_available()
            && let Ok(actual) = std::fs::read_link(held.proc_path())
        {
            anyhow::ensure!(
                actual == host,
                "{} resolves to {} now, not to itself as granted; grant the skill again if this is intended",
                host.display(),
                actual.display()
            );
        }
        Ok(held)
    }

    pub fn guest(&self) -> &str {
        &self.guest
    }

    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Give the held directory to the WASI context of one call.
    pub fn preopen(&self, builder: &mut WasiCtxBuilder) -> anyhow::Result<()> {
        let path = if proc_fd_available() {
            self.proc_path()
        } else {
            let now = std::fs::symlink_metadata(&self.host)
                .with_context(|| format!("cannot open mount {}", self.host.display()))?;
            anyhow::ensure!(
                (now.dev(), now.ino()) == self.identity,
                "{} is no longer the directory granted at load; load the skill again",
                self.host.display()
            );
            self.host.clone()
        };
        builder
            .preopened_dir(&path, &self.guest, self.perms)
            .map(|_| ())
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot open mount {} for {}: {error:#}",
                    self.host.display(),
                    self.guest
                )
            })
    }

    fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_fd().as_raw_fd()))
    }
}

/// Whether `/proc/self/fd` can reopen held directories.
fn proc_fd_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let available = Path::new("/proc/self/fd").is_dir();
        if !available {
            tracing::warn!(
                "/proc is not mounted: skill mounts are reopened by path and checked by inode, \
                 which leaves a short window for a swapped directory"
            );
        }
        available
    })
}

/// Where frozen copies of skill folders are kept.
#[derive(Debug)]
pub struct FolderCopies {
    dir: PathBuf,
    /// A directory of this process only, removed when the sandbox goes.
    temporary: bool,
}

impl FolderCopies {
    /// Copies under `dir`, or under a new private temporary directory.
    pub fn new(dir: Option<PathBuf>) -> anyhow::Result<Self> {
        Ok(match dir {
            Some(dir) => Self {
                dir,
                temporary: false,
            },
            None => Self {
                dir: std::env::temp_dir().join(format!(
                    "talaria-folders-{}-{:08x}",
                    std::process::id(),
                    rand::random::<u32>()
                )),
                temporary: true,
            },
        })
    }

    /// The frozen copy of `files` (whose tree hash is `tree_hash`).
    pub fn freeze(&self, tree_hash: &str, files: &[FolderFile]) -> anyhow::Result<PathBuf> {
        frozen_folder(&self.dir, tree_hash, files)
    }
}

impl Drop for FolderCopies {
    fn drop(&mut self) {
        if self.temporary && self.dir.exists() {
            make_writable(&self.dir);
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A read-only copy of `files` under `root/<name>`, where `name` is derived
/// from `tree_hash`: made once (written under a temporary name and renamed
/// into place), then shared by every load of the same folder contents.
pub fn frozen_folder(
    root: &Path,
    tree_hash: &str,
    files: &[FolderFile],
) -> anyhow::Result<PathBuf> {
    create_private_dir(root)?;
    let name = tree_hash.replace(':', "-");
    let target = root.join(&name);
    if target.is_dir() {
        return target
            .canonicalize()
            .with_context(|| format!("cannot open {}", target.display()));
    }
    let staging = root.join(format!(
        ".{name}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = write_files(&staging, files);
    let placed = written.and_then(|()| {
        std::fs::rename(&staging, &target)
            .or_else(|error| {
                // Another process placed the same contents first.
                if target.is_dir() { Ok(()) } else { Err(error) }
            })
            .with_context(|| format!("cannot place {}", target.display()))
    });
    if staging.exists() {
        make_writable(&staging);
        let _ = std::fs::remove_dir_all(&staging);
    }
    placed?;
    target
        .canonicalize()
        .with_context(|| format!("cannot open {}", target.display()))
}

fn write_files(dir: &Path, files: &[FolderFile]) -> anyhow::Result<()> {
    create_private_dir(dir)?;
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            create_private_dir(parent)?;
        }
        std::fs::write(&path, &file.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))?;
    }
    Ok(())
}

/// Let a failed staging copy be removed (its files were made read-only).
fn make_writable(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_mount_keeps_showing_the_directory_opened_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let granted = root.join("granted");
        std::fs::create_dir(&granted).unwrap();
        std::fs::write(granted.join("file.txt"), "granted").unwrap();
        let held = HeldMount::open(&granted, "/workspace", FsPerms::ReadOnly).unwrap();

        // The folder is swapped for another after load.
        std::fs::rename(&granted, root.join("old")).unwrap();
        std::fs::create_dir(&granted).unwrap();
        std::fs::write(granted.join("file.txt"), "swapped in").unwrap();

        let reopened = held.proc_path();
        assert_eq!(
            std::fs::read_to_string(reopened.join("file.txt")).unwrap(),
            "granted"
        );
    }

    #[test]
    fn a_symlinked_mount_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        assert!(HeldMount::open(&root.join("link"), "/w", FsPerms::ReadOnly).is_err());
    }

    #[test]
    fn a_frozen_folder_holds_exactly_the_files_given() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            FolderFile {
                path: "skill.toml".into(),
                bytes: b"a".to_vec(),
            },
            FolderFile {
                path: "data/x.json".into(),
                bytes: b"{}".to_vec(),
            },
        ];
        let first = frozen_folder(dir.path(), "blake3:abc", &files).unwrap();
        assert_eq!(std::fs::read(first.join("data/x.json")).unwrap(), b"{}");
        // Made once, then reused.
        assert_eq!(frozen_folder(dir.path(), "blake3:abc", &[]).unwrap(), first);
        assert!(!first.join(".hidden").exists());
    }
}
