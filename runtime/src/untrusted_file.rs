//! Reading files that someone other than the operator may have placed: a
//! skill folder, the workspace, a manifest handed to `skills install`.
//!
//! Such a path may be a symbolic link planted to make the host read a
//! secret, a FIFO that blocks the reader forever, a device, or a file of
//! gigabytes. [`read`] opens without following a final symlink and without
//! blocking (`O_NOFOLLOW | O_NONBLOCK`), accepts regular files only, and
//! reads at most a bound, so none of these can trick or hang the host.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why an untrusted file was not read. The messages omit the path: callers
/// name it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("does not exist")]
    NotFound,
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is {size} bytes; at most {limit} are accepted")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    Io(std::io::Error),
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound)
    }
}

/// The contents of the regular file at `path`, at most `limit` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = open(path)?;
    let size = file.metadata().map_err(ReadError::Io)?.len();
    if size > limit {
        return Err(ReadError::TooLarge { size, limit });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // `take` guards against a file that grows between the check and the read.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// Like [`read`], for text; invalid UTF-8 is replaced, not refused.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    read(path, limit).map(|bytes| match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    })
}

/// Open `path` for reading if it is a regular file, without following a
/// final symlink and without blocking on a FIFO or a device.
fn open(path: &Path) -> Result<File, ReadError> {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound,
            // O_NOFOLLOW on a symlink fails with ELOOP.
            _ if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                ReadError::NotRegular("a symbolic link")
            }
            _ => ReadError::Io(error),
        })?;
    let kind = file.metadata().map_err(ReadError::Io)?.file_type();
    if kind.is_file() {
        Ok(file)
    } else if kind.is_dir() {
        Err(ReadError::NotRegular("a directory"))
    } else if kind.is_fifo() {
        Err(ReadError::NotRegular("a FIFO"))
    } else if kind.is_socket() {
        Err(ReadError::NotRegular("a socket"))
    } else if kind.is_block_device() || kind.is_char_device() {
        Err(ReadError::NotRegular("a device"))
    } else {
        Err(ReadError::NotRegular("not a regular file"))
    }
}

/// A short name for what kind of entry `kind` is, for messages about
/// entries that are not plain files or directories.
pub fn kind_name(kind: std::fs::FileType) -> &'static str {
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_plain_bounded_file() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, "hello").unwrap();
        assert_eq!(read(&plain, 5).unwrap(), b"hello");
        assert!(matches!(
            read(&plain, 4),
            Err(ReadError::TooLarge { size: 5, limit: 4 })
        ));
        assert!(
            read(&dir.path().join("absent"), 5)
                .unwrap_err()
                .is_not_found()
        );

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&plain, &link).unwrap();
        assert_eq!(
            read(&link, 100).unwrap_err().to_string(),
            "is a symbolic link, not a regular file"
        );
        assert_eq!(
            read(dir.path(), 100).unwrap_err().to_string(),
            "is a directory, not a regular file"
        );
        assert_eq!(
            read(Path::new("/dev/zero"), 100).unwrap_err().to_string(),
            "is a device, not a regular file"
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Without O_NONBLOCK, opening a FIFO that has no writer blocks forever.
        assert_eq!(
            read(&fifo, 100).unwrap_err().to_string(),
            "is a FIFO, not a regular file"
        );
    }
}
