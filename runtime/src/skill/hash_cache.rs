//! The blake3 of component files, remembered by the file's identity and
//! change time (`cache/component-hashes/`), so that a start judging twenty
//! skills against their grants does not read and hash twenty components.
//!
//! An entry only decides which skills are offered. What runs is always read
//! and hashed again and refused unless it matches (see
//! [`contents`](super::contents)), so a stale or forged entry can hide a
//! skill or offer one whose first call then fails, never run ungranted
//! bytes. A write to the file changes its change time, which no
//! unprivileged process can set back; a replaced file has another inode.
//! Entries are written atomically and are safe to delete.

use std::path::{Path, PathBuf};

use crate::home::{create_private_dir, write_atomically};
use crate::untrusted_file::{FileStat, Folder, ReadError};

/// The identity of a file's content, see [`FileStat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(FileStat);

impl Stamp {
    /// The stamp of the regular file `relative` in `folder`.
    pub fn of(folder: &Folder, relative: &Path) -> Result<Self, ReadError> {
        folder.stat(relative).map(Self)
    }

    fn line(&self) -> String {
        let s = &self.0;
        format!(
            "{} {} {} {} {} {} {}",
            s.device, s.inode, s.size, s.modified.0, s.modified.1, s.changed.0, s.changed.1
        )
    }
}

#[derive(Debug, Clone)]
pub struct HashCache {
    dir: PathBuf,
}

impl HashCache {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The recorded hash of the file at `path` if it still has `stamp`.
    pub fn get(&self, path: &Path, stamp: &Stamp) -> Option<String> {
        let text = std::fs::read_to_string(self.entry(path)).ok()?;
        let (recorded, hash) = text.trim_end().rsplit_once(' ')?;
        (recorded == stamp.line() && hash.starts_with("blake3:")).then(|| hash.to_owned())
    }

    /// Record `hash` for the file at `path` with `stamp`. A cache that
    /// cannot be written is only slower.
    pub fn put(&self, path: &Path, stamp: &Stamp, hash: &str) {
        let written = create_private_dir(&self.dir).and_then(|()| {
            write_atomically(
                &self.entry(path),
                format!("{} {hash}\n", stamp.line()).as_bytes(),
                0o600,
            )
        });
        if let Err(error) = written {
            tracing::debug!("cannot remember a component hash: {error:#}");
        }
    }

    fn entry(&self, path: &Path) -> PathBuf {
        let key = blake3::hash(path.as_os_str().as_encoded_bytes());
        self.dir.join(key.to_hex().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_holds_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let skill = dir.path().join("skill");
        std::fs::create_dir(&skill).unwrap();
        std::fs::write(skill.join("c.wasm"), b"one").unwrap();
        let folder = Folder::open(&skill).unwrap();
        let cache = HashCache::new(dir.path().join("hashes"));
        let path = skill.join("c.wasm");
        let stamp = Stamp::of(&folder, Path::new("c.wasm")).unwrap();
        assert_eq!(cache.get(&path, &stamp), None);
        cache.put(&path, &stamp, "blake3:abc");
        assert_eq!(cache.get(&path, &stamp).as_deref(), Some("blake3:abc"));
        // Any write changes the stamp.
        std::fs::write(skill.join("c.wasm"), b"two").unwrap();
        let changed = Stamp::of(&folder, Path::new("c.wasm")).unwrap();
        assert_ne!(changed, stamp);
        assert_eq!(cache.get(&path, &changed), None);
    }
}
