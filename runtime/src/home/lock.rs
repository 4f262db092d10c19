//! The single-writer lock of a data home: an exclusive `flock` on
//! `talaria.lock`, with the holder's pid and command written inside so a
//! second writer can say who is in the way. The kernel releases the lock when
//! the holder exits, however it exits, so a lock is never stale; only the
//! text inside can be (see [`LockHolder::is_alive`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

/// The lock, held until dropped.
#[derive(Debug)]
pub struct WriterLock {
    file: File,
}

/// Who holds (or last held) a lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    pub command: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the data home is in use by another talaria process (pid {}, `{}`); \
         only one process may change {} at a time; wait for it to finish or stop it",
        holder.pid, holder.command, path.parent().unwrap_or(path).display()
    )]
    Held { path: PathBuf, holder: LockHolder },
    #[error("the data home is locked by another process (lock file {}: {detail})", path.display())]
    HeldByUnknown { path: PathBuf, detail: String },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl WriterLock {
    pub fn acquire(path: &Path, command: &str) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = open_lock_file(path).map_err(io)?;
        if let Err(error) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if error == rustix::io::Errno::WOULDBLOCK {
                return Err(match read_holder(&mut file) {
                    Some(holder) => LockError::Held {
                        path: path.to_owned(),
                        holder,
                    },
                    None => LockError::HeldByUnknown {
                        path: path.to_owned(),
                        detail: "no holder recorded".into(),
                    },
                });
            }
            return Err(io(error.into()));
        }
        file.set_len(0).map_err(io)?;
        let line = command.replace(['\n', '\r'], " ");
        file.write_all(format!("pid={}\ncommand={line}\n", std::process::id()).as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io)?;
        Ok(Self { file })
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Leave no holder behind; the kernel drops the flock when the file
        // closes right after.
        let _ = self.file.set_len(0);
    }
}

impl LockHolder {
    /// The holder recorded in the lock file at `path`, if any.
    pub fn read(path: &Path) -> Option<Self> {
        let mut file = File::open(path).ok()?;
        read_holder(&mut file)
    }

    /// Whether the recorded process still exists.
    pub fn is_alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// Open (creating, mode 0600, never truncating) a file used for `flock`.
pub(crate) fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let mut pid = None;
    let mut command = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("pid=") {
            pid = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("command=") {
            command = Some(value.to_owned());
        }
    }
    Some(LockHolder {
        pid: pid?,
        command: command.unwrap_or_else(|| "unknown".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_told_who_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("talaria.lock");
        let held = WriterLock::acquire(&path, "talaria skills grant files").unwrap();
        let error = WriterLock::acquire(&path, "talaria skills revoke files").unwrap_err();
        let LockError::Held { holder, .. } = &error else {
            panic!("{error}");
        };
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.command, "talaria skills grant files");
        assert!(
            error
                .to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        drop(held);
        let again = WriterLock::acquire(&path, "talaria skills revoke files").unwrap();
        assert_eq!(
            LockHolder::read(&path).unwrap().command,
            "talaria skills revoke files"
        );
        drop(again);
        assert_eq!(
            LockHolder::read(&path),
            None,
            "a released lock names no holder"
        );
    }
}
