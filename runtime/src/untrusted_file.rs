//! Reading files that someone other than the operator may have placed: a
//! skill folder, the workspace, a manifest handed to `skills install`.
//!
//! Such a path may be a symbolic link planted to make the host read a
//! secret, a `..` or a link in the middle of a path leading out of the
//! folder, a FIFO that blocks the reader forever, a device, or a file of
//! gigabytes. Every read goes through a [`Folder`]: a `cap_std` directory
//! handle opened once, through which no path can leave the folder (neither
//! `..` nor a symlink pointing out); the file itself is opened without
//! following a final symlink and without blocking (`O_NOFOLLOW |
//! O_NONBLOCK`), must be a regular file, and is read only up to a bound. One
//! mechanism, instead of a check at every call site.

use std::io::Read;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, OpenOptions, OpenOptionsExt};

/// A directory whose files are read without trusting them.
pub struct Folder {
    dir: Dir,
    path: PathBuf,
}

impl std::fmt::Debug for Folder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Folder").field(&self.path).finish()
    }
}

impl Folder {
    /// Open the directory at `path` (trusted: the caller chose it).
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let dir = Dir::open_ambient_dir(path, ambient_authority()).map_err(ReadError::from_io)?;
        Ok(Self {
            dir,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The regular file at `relative` inside this folder, at most `limit`
    /// bytes.
    pub fn read(&self, relative: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
        read_open(self.open_file(relative)?, limit)
    }

    /// Like [`Folder::read`], for text; invalid UTF-8 is replaced, not
    /// refused.
    pub fn read_text(&self, relative: &Path, limit: u64) -> Result<String, ReadError> {
        self.read(relative, limit).map(into_text)
    }

    /// The sub-folder at `relative`, never reached through a symlink.
    pub fn folder(&self, relative: &Path) -> Result<Self, ReadError> {
        let kind = self
            .dir
            .symlink_metadata(relative)
            .map_err(ReadError::from_io)?
            .file_type();
        if !kind.is_dir() {
            return Err(ReadError::NotRegular(if kind.is_symlink() {
                "a symbolic link"
            } else {
                "not a directory"
            }));
        }
        let dir = self.dir.open_dir(relative).map_err(ReadError::from_io)?;
        Ok(Self {
            dir,
            path: self.path.join(relative),
        })
    }

    /// Identity, size and change times of the regular file at `relative`,
    /// without reading or following it.
    pub fn stat(&self, relative: &Path) -> Result<FileStat, ReadError> {
        use cap_std::fs::MetadataExt;
        let metadata = self
            .dir
            .symlink_metadata(relative)
            .map_err(ReadError::from_io)?;
        let kind = EntryKind::from(metadata.file_type());
        if kind != EntryKind::File {
            return Err(ReadError::NotRegular(kind.name()));
        }
        Ok(FileStat {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        })
    }

    /// The entries of this folder: name and kind, without following links.
    pub fn entries(&self) -> Result<Vec<(String, EntryKind)>, ReadError> {
        let mut entries = Vec::new();
        for entry in self.dir.entries().map_err(ReadError::from_io)? {
            let entry = entry.map_err(ReadError::from_io)?;
            let kind = entry.file_type().map_err(ReadError::from_io)?;
            entries.push((
                entry.file_name().to_string_lossy().into_owned(),
                EntryKind::from(kind),
            ));
        }
        Ok(entries)
    }

    fn open_file(&self, relative: &Path) -> Result<File, ReadError> {
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        let mut options = OpenOptions::new();
        options.read(true).custom_flags(flags.bits() as i32);
        let file = self
            .dir
            .open_with(relative, &options)
            .map_err(ReadError::from_io)?;
        let kind = file.metadata().map_err(ReadError::Io)?.file_type();
        if kind.is_file() {
            Ok(file)
        } else {
            Err(ReadError::NotRegular(EntryKind::from(kind).name()))
        }
    }
}

/// What identifies a file's content without reading it: a write changes
/// its change time (which no unprivileged process can set back), a
/// replacement its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub modified: (i64, i64),
    pub changed: (i64, i64),
}

/// Why an untrusted file was not read. The messages omit the path: callers
/// name it.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("does not exist")]
    NotFound,
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is outside the folder it was read from")]
    Escapes,
    #[error("is {size} bytes; at most {limit} are accepted")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    Io(std::io::Error),
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound)
    }

    fn from_io(error: std::io::Error) -> Self {
        let errno = error.raw_os_error();
        match error.kind() {
            std::io::ErrorKind::NotFound => Self::NotFound,
            // O_NOFOLLOW on a symlink fails with ELOOP.
            _ if errno == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                Self::NotRegular("a symbolic link")
            }
            // cap-std refuses a path leading out of its directory with a
            // permission error of its own, not one from the OS.
            std::io::ErrorKind::PermissionDenied if errno.is_none() => Self::Escapes,
            _ if errno == Some(rustix::io::Errno::XDEV.raw_os_error()) => Self::Escapes,
            _ => Self::Io(error),
        }
    }
}

/// The contents of the regular file at `path`, at most `limit` bytes: the
/// file is read through its parent folder (see [`Folder`]).
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let (parent, name) = split(path)?;
    Folder::open(parent)?.read(name, limit)
}

/// Like [`read`], for text; invalid UTF-8 is replaced, not refused.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    read(path, limit).map(into_text)
}

fn split(path: &Path) -> Result<(&Path, &Path), ReadError> {
    let name = path
        .file_name()
        .ok_or(ReadError::NotRegular("not a file"))?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Ok((parent, Path::new(name)))
}

fn read_open(file: File, limit: u64) -> Result<Vec<u8>, ReadError> {
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

fn into_text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

/// What a directory entry is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Device,
    Unknown,
}

impl EntryKind {
    /// For messages: "a FIFO", "a symbolic link".
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "a regular file",
            Self::Dir => "a directory",
            Self::Symlink => "a symbolic link",
            Self::Fifo => "a FIFO",
            Self::Socket => "a socket",
            Self::Device => "a device",
            Self::Unknown => "of an unknown kind",
        }
    }
}

impl From<std::fs::FileType> for EntryKind {
    fn from(kind: std::fs::FileType) -> Self {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_symlink() {
            Self::Symlink
        } else if kind.is_dir() {
            Self::Dir
        } else if kind.is_file() {
            Self::File
        } else if kind.is_fifo() {
            Self::Fifo
        } else if kind.is_socket() {
            Self::Socket
        } else if kind.is_block_device() || kind.is_char_device() {
            Self::Device
        } else {
            Self::Unknown
        }
    }
}

impl From<cap_std::fs::FileType> for EntryKind {
    fn from(kind: cap_std::fs::FileType) -> Self {
        use cap_std::fs::FileTypeExt;
        if kind.is_symlink() {
            Self::Symlink
        } else if kind.is_dir() {
            Self::Dir
        } else if kind.is_file() {
            Self::File
        } else if kind.is_fifo() {
            Self::Fifo
        } else if kind.is_socket() {
            Self::Socket
        } else if kind.is_block_device() || kind.is_char_device() {
            Self::Device
        } else {
            Self::Unknown
        }
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
    fn nothing_read_through_a_folder_leaves_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.env"), "KEY=value").unwrap();
        let skill = dir.path().join("skill");
        std::fs::create_dir_all(skill.join("docs")).unwrap();
        std::fs::write(skill.join("docs/guide.md"), "guide").unwrap();
        std::os::unix::fs::symlink("../secret.env", skill.join("docs/link.md")).unwrap();
        std::os::unix::fs::symlink("..", skill.join("up")).unwrap();
        let folder = Folder::open(&skill).unwrap();
        assert_eq!(
            folder.read(Path::new("docs/guide.md"), 100).unwrap(),
            b"guide"
        );
        for escape in ["../secret.env", "docs/../../secret.env", "up/secret.env"] {
            let error = folder.read(Path::new(escape), 100).unwrap_err();
            assert!(
                matches!(error, ReadError::Escapes | ReadError::NotRegular(_)),
                "{escape}: {error:?}"
            );
        }
        assert!(folder.read(Path::new("docs/link.md"), 100).is_err());
        assert!(folder.folder(Path::new("up")).is_err());
        assert_eq!(
            folder
                .folder(Path::new("docs"))
                .unwrap()
                .read_text(Path::new("guide.md"), 100)
                .unwrap(),
            "guide"
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
