//! Putting a skill folder in place without ever exposing a half-written one:
//! copy into `skills/.staging/NAME`, validate there, then exchange it with
//! the live folder in one atomic rename.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::home::create_private_dir;
use crate::sandbox::policy::FolderFile;

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
/// refused rather than followed or skipped.
pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    create_private_dir(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        if is_skipped(&name.to_string_lossy()) {
            continue;
        }
        let kind = entry.file_type()?;
        let (source, destination) = (entry.path(), to.join(&name));
        if kind.is_dir() {
            copy_tree(&source, &destination)?;
        } else if kind.is_file() {
            // Read through the non-blocking, no-follow reader: the entry may
            // have been swapped for a FIFO or a link since it was listed.
            let bytes = crate::untrusted_file::read(&source, MAX_FILE_BYTES)
                .map_err(|e| anyhow::anyhow!("{} {e}", source.display()))?;
            std::fs::write(&destination, bytes)
                .with_context(|| format!("cannot write {}", destination.display()))?;
        } else {
            bail!(
                "{} is {}; a skill folder must hold plain files and folders",
                source.display(),
                crate::untrusted_file::kind_name(kind)
            );
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
const MAX_TREE_FILES: usize = 10_000;
const MAX_TREE_BYTES: u64 = 256 * 1024 * 1024;

/// blake3 of a skill folder as shipped: every regular file (hidden entries
/// and `target/` skipped), in path order, framed by its relative path and
/// length. Symlinks and special files are an error, as in [`copy_tree`].
pub fn tree_hash(dir: &Path) -> anyhow::Result<String> {
    Ok(hash_tree(&read_tree(dir)?))
}

/// [`tree_hash`] of files already read.
pub fn hash_tree(files: &[FolderFile]) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"talaria-skill-tree-v1\0");
    for file in files {
        let name = file.path.to_string_lossy();
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(&(file.bytes.len() as u64).to_le_bytes());
        hasher.update(&file.bytes);
    }
    format!("blake3:{}", hasher.finalize().to_hex())
}

/// Every file of a skill folder that is part of the skill (see
/// [`is_skipped`]), sorted by path, each read once.
pub fn read_tree(dir: &Path) -> anyhow::Result<Vec<FolderFile>> {
    let mut paths = Vec::new();
    collect_files(dir, Path::new(""), &mut paths)?;
    paths.sort();
    let mut total = 0u64;
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let full = dir.join(&path);
        let bytes = crate::untrusted_file::read(&full, MAX_FILE_BYTES)
            .map_err(|e| anyhow::anyhow!("{} {e}", full.display()))?;
        total += bytes.len() as u64;
        anyhow::ensure!(
            total <= MAX_TREE_BYTES,
            "{} holds more than {} MiB of files; a skill folder must be smaller",
            dir.display(),
            MAX_TREE_BYTES >> 20
        );
        files.push(FolderFile { path, bytes });
    }
    Ok(files)
}

fn collect_files(root: &Path, relative: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let dir = root.join(relative);
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        if is_skipped(&name.to_string_lossy()) {
            continue;
        }
        let kind = entry.file_type()?;
        let path = relative.join(&name);
        if kind.is_dir() {
            collect_files(root, &path, files)?;
        } else if kind.is_file() {
            files.push(path);
            anyhow::ensure!(
                files.len() <= MAX_TREE_FILES,
                "{} holds more than {MAX_TREE_FILES} files; a skill folder must be smaller",
                root.display()
            );
        } else {
            bail!(
                "{} is {}; a skill folder must hold plain files and folders",
                entry.path().display(),
                crate::untrusted_file::kind_name(kind)
            );
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
