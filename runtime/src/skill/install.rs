//! Putting a skill folder in place without ever exposing a half-written one:
//! copy into `skills/.staging/NAME`, validate there, then exchange it with
//! the live folder in one atomic rename. Where a skill comes from (a folder,
//! an archive, a git repository) is `source`'s concern.

pub mod archive;
pub mod git;
pub mod source;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::home::create_private_dir;
use crate::sandbox::policy::FolderFile;
use crate::untrusted_file::{EntryKind, Folder};

/// Where a new revision of `name` is assembled before it goes live.
pub fn staging_dir(skills_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let root = skills_dir.join(".staging");
    create_private_dir(&root)?;
    let staged = root.join(name);
    if staged.exists() {
        // Left over from an interrupted install or sync; it never went live.
        std::fs::remove_dir_all(&staged)
            .with_context(|| format!("cannot remove the leftover {}", staged.display()))?;
    }
    Ok(staged)
}

/// Copy a skill folder: regular files and directories, skipping build output
/// (`target/`) and hidden entries; symlinks, FIFOs, sockets and devices are
/// refused rather than followed or skipped. The source is read through one
/// folder handle (see [`read_tree`]); the copy is written 0700/0600.
pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    let folder = Folder::open(from).map_err(|e| anyhow::anyhow!("{} {e}", from.display()))?;
    create_private_dir(to)?;
    for file in read_tree(&folder)? {
        let destination = to.join(&file.path);
        if let Some(parent) = destination.parent() {
            create_private_dir(parent)?;
        }
        std::fs::write(&destination, &file.bytes)
            .with_context(|| format!("cannot write {}", destination.display()))?;
        // A script stays runnable (`./scripts/fill.py`); only the owner's
        // bits are kept, and the mode is not part of the skill's hash.
        let executable = std::fs::symlink_metadata(from.join(&file.path))
            .is_ok_and(|metadata| metadata.permissions().mode() & 0o100 != 0);
        if executable {
            std::fs::set_permissions(&destination, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot write {}", destination.display()))?;
        }
    }
    Ok(())
}

/// Entries of a skill folder that are not part of the skill.
pub(crate) fn is_skipped(name: &str) -> bool {
    name.starts_with('.') || name == "target"
}

/// Make `staged` the live folder `live`: one atomic exchange when `live`
/// exists (readers see the old or the new revision, never a mix; the old
/// one is removed afterwards), a rename otherwise.
pub fn replace(staged: &Path, live: &Path) -> anyhow::Result<()> {
    if live.exists() {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            staged,
            rustix::fs::CWD,
            live,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .with_context(|| format!("cannot replace {}", live.display()))?;
        // `staged` now holds the old revision.
        std::fs::remove_dir_all(staged)
            .with_context(|| format!("cannot remove {}", staged.display()))?;
    } else {
        std::fs::rename(staged, live)
            .with_context(|| format!("cannot install into {}", live.display()))?;
    }
    Ok(())
}

/// Largest single file of a skill folder (a component is the largest).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Most files and bytes read from one folder into memory.
pub const MAX_TREE_FILES: usize = 10_000;
pub const MAX_TREE_BYTES: u64 = 256 * 1024 * 1024;

/// blake3 of a skill folder as shipped: every regular file (hidden entries
/// and `target/` skipped), in path order, framed by its relative path and
/// length. Symlinks and special files are an error, as in [`copy_tree`].
pub fn tree_hash(dir: &Path) -> anyhow::Result<String> {
    let folder = Folder::open(dir).map_err(|e| anyhow::anyhow!("{} {e}", dir.display()))?;
    Ok(hash_tree(&read_tree(&folder)?))
}

/// [`tree_hash`] of files already read.
pub fn hash_tree(files: &[FolderFile]) -> String {
    let mut hasher = tree_hasher();
    for file in files {
        frame(&mut hasher, &file.path, &file.bytes);
    }
    format!("blake3:{}", hasher.finalize().to_hex())
}

fn tree_hasher() -> blake3::Hasher {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"talaria-skill-tree-v1\0");
    hasher
}

fn frame(hasher: &mut blake3::Hasher, path: &Path, bytes: &[u8]) {
    let name = path.to_string_lossy();
    hasher.update(&(name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// One file of a folder as [`index_tree`] saw it.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    pub path: PathBuf,
    pub size: u64,
    pub hash: blake3::Hash,
}

/// [`tree_hash`] of a folder, and each file's size and blake3, reading one
/// file at a time and keeping none: what an Agent Skill's grant pins and
/// the model may open, without holding the folder in memory.
pub fn index_tree(folder: &Folder) -> anyhow::Result<(String, Vec<TreeEntry>)> {
    let mut hasher = tree_hasher();
    let mut entries = Vec::new();
    for_each_file(folder, |path, bytes| {
        frame(&mut hasher, path, &bytes);
        entries.push(TreeEntry {
            path: path.to_owned(),
            size: bytes.len() as u64,
            hash: blake3::hash(&bytes),
        });
        Ok(())
    })?;
    Ok((format!("blake3:{}", hasher.finalize().to_hex()), entries))
}

/// Every file of a skill folder that is part of the skill (see
/// [`is_skipped`]), sorted by path, each read once through the folder's
/// handle: nothing outside it is read, whatever links or `..` it holds.
pub fn read_tree(folder: &Folder) -> anyhow::Result<Vec<FolderFile>> {
    let mut files = Vec::new();
    for_each_file(folder, |path, bytes| {
        files.push(FolderFile {
            path: path.to_owned(),
            bytes,
        });
        Ok(())
    })?;
    Ok(files)
}

/// Find every file of the folder (refusing links and special files), then
/// read each in path order, within the bounds, and hand it to `visit`.
fn for_each_file(
    folder: &Folder,
    mut visit: impl FnMut(&Path, Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut paths = Vec::new();
    collect_paths(folder, folder, Path::new(""), &mut paths)?;
    paths.sort();
    let mut total = 0u64;
    for path in paths {
        let bytes = folder
            .read(&path, MAX_FILE_BYTES)
            .map_err(|e| anyhow::anyhow!("{} {e}", folder.path().join(&path).display()))?;
        total += bytes.len() as u64;
        anyhow::ensure!(
            total <= MAX_TREE_BYTES,
            "{} holds more than {} MiB of files; a skill folder must be smaller",
            folder.path().display(),
            MAX_TREE_BYTES >> 20
        );
        visit(&path, bytes)?;
    }
    Ok(())
}

fn collect_paths(
    root: &Folder,
    folder: &Folder,
    relative: &Path,
    paths: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let shown = |name: &str| root.path().join(relative).join(name).display().to_string();
    let entries = folder
        .entries()
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", folder.path().display()))?;
    for (name, kind) in entries {
        if is_skipped(&name) {
            continue;
        }
        if name.chars().any(char::is_control) {
            bail!(
                "{:?} has control characters in its name; a skill folder's names must be plain",
                crate::untrusted_text::log_line(&shown(&name))
            );
        }
        match kind {
            EntryKind::Dir => {
                let sub = folder
                    .folder(Path::new(&name))
                    .map_err(|e| anyhow::anyhow!("{} {e}", shown(&name)))?;
                collect_paths(root, &sub, &relative.join(&name), paths)?;
            }
            EntryKind::File => {
                paths.push(relative.join(&name));
                anyhow::ensure!(
                    paths.len() <= MAX_TREE_FILES,
                    "{} holds more than {MAX_TREE_FILES} files; a skill folder must be smaller",
                    root.path().display()
                );
            }
            other => bail!(
                "{} is {}; a skill folder must hold plain files and folders",
                shown(&name),
                other.name()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_hash_sees_content_names_and_nesting_but_not_build_output() {
        let dir = tempfile::tempdir().unwrap();
        let skill = dir.path().join("s");
        std::fs::create_dir_all(skill.join("src")).unwrap();
        std::fs::write(skill.join("skill.toml"), "a").unwrap();
        std::fs::write(skill.join("src/lib.rs"), "b").unwrap();
        let first = tree_hash(&skill).unwrap();
        std::fs::create_dir_all(skill.join("target/release")).unwrap();
        std::fs::write(skill.join("target/release/x"), "build output").unwrap();
        std::fs::write(skill.join(".hidden"), "editor state").unwrap();
        assert_eq!(tree_hash(&skill).unwrap(), first);
        std::fs::write(skill.join("src/lib.rs"), "c").unwrap();
        assert_ne!(tree_hash(&skill).unwrap(), first);
        std::fs::write(skill.join("src/lib.rs"), "b").unwrap();
        std::fs::rename(skill.join("src/lib.rs"), skill.join("src/main.rs")).unwrap();
        assert_ne!(tree_hash(&skill).unwrap(), first);
    }

    #[test]
    fn the_index_hashes_as_the_files_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let skill = dir.path().join("s");
        std::fs::create_dir_all(skill.join("b/c")).unwrap();
        std::fs::write(skill.join("SKILL.md"), "x").unwrap();
        std::fs::write(skill.join("b/c/d.md"), "dd").unwrap();
        std::fs::write(skill.join("a.md"), "a").unwrap();
        let folder = Folder::open(&skill).unwrap();
        let (hash, entries) = index_tree(&folder).unwrap();
        assert_eq!(hash, tree_hash(&skill).unwrap());
        let paths: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(
            paths,
            [PathBuf::from("SKILL.md"), "a.md".into(), "b/c/d.md".into()]
        );
        assert_eq!(entries[2].size, 2);
    }

    #[test]
    fn replace_swaps_whole_folders() {
        let dir = tempfile::tempdir().unwrap();
        let (staged, live) = (dir.path().join("staged"), dir.path().join("live"));
        std::fs::create_dir(&live).unwrap();
        std::fs::write(live.join("old.txt"), "old").unwrap();
        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join("new.txt"), "new").unwrap();
        replace(&staged, &live).unwrap();
        assert!(live.join("new.txt").is_file());
        assert!(!live.join("old.txt").exists());
        assert!(!staged.exists());
    }
}
