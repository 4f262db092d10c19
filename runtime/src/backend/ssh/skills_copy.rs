//! The skill folders on the SSH host: a copy of the local skills directory
//! in `<workdir or ~>/.talaria/skills-<id>`, so that an Agent Skill's
//! scripts run there as they run from `/skills` in a container.
//!
//! The copy is made before the first command and made again before a
//! command when the local directory changed (a cheap walk of change times).
//! It travels as a tar archive on the standard input of one command run
//! like any other (nothing of it on a command line), which unpacks it
//! beside the old copy, makes it read-only, and swaps it in. Only regular
//! files and folders are copied (hidden entries and `target/` skipped, as
//! in a skill's hash); the copy of this process is removed at shutdown.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::CommandRequest;

/// Most bytes copied: a skills directory is a few megabytes.
const MAX_COPY_BYTES: u64 = 256 * 1024 * 1024;

/// Unpacks the archive on stdin as the folder `$1`, read-only.
const REPLACE_SCRIPT: &str = concat!(
    "set -e; d=$1; case $d in \"~/\"*) d=$HOME/${d#\"~/\"};; esac; ",
    "mkdir -p \"$(dirname \"$d\")\"; ",
    "if [ -d \"$d.new\" ]; then chmod -R u+w \"$d.new\"; rm -rf \"$d.new\"; fi; ",
    "mkdir \"$d.new\"; tar -xf - -C \"$d.new\"; chmod -R a-w \"$d.new\"; ",
    "if [ -d \"$d\" ]; then chmod -R u+w \"$d\"; rm -rf \"$d\"; fi; ",
    "mv \"$d.new\" \"$d\""
);

/// Removes the folder `$1`.
const REMOVE_SCRIPT: &str = concat!(
    "d=$1; case $d in \"~/\"*) d=$HOME/${d#\"~/\"};; esac; ",
    "if [ -d \"$d\" ]; then chmod -R u+w \"$d\"; rm -rf \"$d\"; fi"
);

/// Change stamp of a folder tree: entries, bytes, latest change time.
pub(super) type Stamp = (u64, u64, i64, i64);

pub(super) struct SkillsCopy {
    local: PathBuf,
    remote: String,
    /// The stamp of the local directory when it was last copied.
    pub(super) copied: tokio::sync::Mutex<Option<Stamp>>,
}

impl SkillsCopy {
    /// The copy of `local` for this process, under `workdir` (the login
    /// directory when `None`).
    pub(super) fn new(local: PathBuf, workdir: Option<&str>) -> Self {
        let id = blake3::hash(format!("{}\0{}", local.display(), std::process::id()).as_bytes())
            .to_hex();
        let base = workdir.map_or("~", |dir| dir.trim_end_matches('/'));
        Self {
            remote: format!("{base}/.talaria/skills-{}", &id[..12]),
            local,
            copied: tokio::sync::Mutex::new(None),
        }
    }

    /// Where commands find the skills on the host.
    pub(super) fn remote(&self) -> &str {
        &self.remote
    }

    /// The local directory's stamp, `None` when it cannot be read.
    pub(super) fn stamp(&self) -> Option<Stamp> {
        let mut stamp: Stamp = (0, 0, 0, 0);
        let mut stack = vec![self.local.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).ok()?.flatten() {
                if is_skipped(&entry.file_name().to_string_lossy()) {
                    continue;
                }
                let metadata = entry.metadata().ok()?;
                stamp.0 += 1;
                stamp.1 += metadata.size();
                stamp.2 = stamp.2.max(metadata.ctime());
                stamp.3 = stamp.3.max(metadata.ctime_nsec());
                if metadata.is_dir() {
                    stack.push(entry.path());
                }
            }
        }
        Some(stamp)
    }

    /// The command that replaces the host's copy with the local folder.
    pub(super) fn replace_request(&self) -> Result<CommandRequest, String> {
        Ok(CommandRequest {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                REPLACE_SCRIPT.into(),
                "talaria".into(),
                self.remote.clone(),
            ],
            stdin: Some(archive(&self.local)?),
            workdir: Some("/".into()),
            timeout: Duration::from_secs(120),
            max_output_bytes: 16 * 1024,
            ..CommandRequest::default()
        })
    }

    /// The command that removes the host's copy.
    pub(super) fn remove_request(&self) -> CommandRequest {
        CommandRequest {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                REMOVE_SCRIPT.into(),
                "talaria".into(),
                self.remote.clone(),
            ],
            workdir: Some("/".into()),
            timeout: Duration::from_secs(30),
            max_output_bytes: 16 * 1024,
            ..CommandRequest::default()
        }
    }
}

fn is_skipped(name: &str) -> bool {
    name.starts_with('.') || name == "target"
}

/// A tar archive of the regular files and folders of `dir`; links and
/// special files are left out (a skill holding one is invalid anyway).
fn archive(dir: &Path) -> Result<Vec<u8>, String> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut total = 0u64;
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let entries = std::fs::read_dir(dir.join(&relative))
            .map_err(|e| format!("cannot read {}: {e}", dir.join(&relative).display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if is_skipped(&name.to_string_lossy()) {
                continue;
            }
            let path = relative.join(&name);
            let Ok(metadata) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let mut header = tar::Header::new_gnu();
            header.set_mode(metadata.mode() & 0o755);
            header.set_mtime(metadata.mtime().max(0) as u64);
            if metadata.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder
                    .append_data(&mut header, &path, std::io::empty())
                    .map_err(|e| format!("cannot pack {}: {e}", path.display()))?;
                stack.push(path);
            } else if metadata.is_file() {
                let bytes = crate::untrusted_file::read(&entry.path(), MAX_COPY_BYTES)
                    .map_err(|e| format!("cannot read {}: it {e}", entry.path().display()))?;
                total += bytes.len() as u64;
                if total > MAX_COPY_BYTES {
                    return Err(format!(
                        "{} holds more than {} MiB",
                        dir.display(),
                        MAX_COPY_BYTES >> 20
                    ));
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                builder
                    .append_data(&mut header, &path, bytes.as_slice())
                    .map_err(|e| format!("cannot pack {}: {e}", path.display()))?;
            }
        }
    }
    builder
        .into_inner()
        .map_err(|e| format!("cannot pack the skills: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_holds_files_and_folders_but_no_links_or_hidden_entries() {
        let dir = tempfile::tempdir().unwrap();
        let skills = dir.path().join("skills");
        std::fs::create_dir_all(skills.join("pdf/scripts")).unwrap();
        std::fs::create_dir_all(skills.join(".staging/x")).unwrap();
        std::fs::write(skills.join("pdf/SKILL.md"), "x").unwrap();
        std::fs::write(skills.join("pdf/scripts/run.sh"), "echo").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", skills.join("pdf/passwd")).unwrap();
        let bytes = archive(&skills).unwrap();
        let mut names: Vec<String> = tar::Archive::new(bytes.as_slice())
            .entries()
            .unwrap()
            .map(|entry| entry.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["pdf", "pdf/SKILL.md", "pdf/scripts", "pdf/scripts/run.sh"]
        );
        let copy = SkillsCopy::new(skills.clone(), Some("/srv/jobs/"));
        assert!(copy.remote().starts_with("/srv/jobs/.talaria/skills-"));
        let before = copy.stamp().unwrap();
        std::fs::write(skills.join("pdf/scripts/run.sh"), "echo changed").unwrap();
        assert_ne!(copy.stamp().unwrap(), before);
    }
}
