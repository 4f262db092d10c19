//! Putting a skill folder in place without ever exposing a half-written one:
//! copy into `skills/.staging/NAME`, validate there, then exchange it with
//! the live folder in one atomic rename.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::home::create_private_dir;

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
/// (`target/`) and hidden entries; symlinks are refused rather than followed.
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
        if kind.is_symlink() {
            bail!(
                "{} is a symbolic link; a skill folder must hold plain files",
                source.display()
            );
        } else if kind.is_dir() {
            copy_tree(&source, &destination)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &destination)
                .with_context(|| format!("cannot copy {}", source.display()))?;
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

/// blake3 of a skill folder as shipped: every regular file (hidden entries
/// and `target/` skipped), in path order, framed by its relative path and
/// length. Symlinks are an error, as in [`copy_tree`].
pub fn tree_hash(dir: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    collect_files(dir, Path::new(""), &mut files)?;
    files.sort();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"talaria-skill-tree-v1\0");
    for relative in files {
        let bytes = std::fs::read(dir.join(&relative))
            .with_context(|| format!("cannot read {}", dir.join(&relative).display()))?;
        let name = relative.to_string_lossy();
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(format!("blake3:{}", hasher.finalize().to_hex()))
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
        if kind.is_symlink() {
            bail!(
                "{} is a symbolic link; a skill folder must hold plain files",
                entry.path().display()
            );
        } else if kind.is_dir() {
            collect_files(root, &path, files)?;
        } else if kind.is_file() {
            files.push(path);
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
