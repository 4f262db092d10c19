//! Where `skills install` takes skills from: a local folder (one skill, or
//! a collection of skill folders), a `.zip` or `.tar.gz` archive, or a git
//! repository; `--path` picks a folder inside any of them. Archives and
//! repositories are unpacked or fetched into a scratch folder beside the
//! skills (removed afterwards); every source then ends in the same
//! validated, transactional install of each skill folder found.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::archive::{self, Format};
use super::git;
use crate::skill::{INSTRUCTIONS_FILE, MANIFEST_FILE, holds_a_skill};

/// What the operator named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Folder(PathBuf),
    Archive(PathBuf, Format),
    Repository(String),
}

impl Source {
    /// Read `text`: an existing path is a folder or an archive (by its
    /// extension); otherwise a repository URL; otherwise a usage error.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let path = Path::new(text);
        if let Ok(metadata) = std::fs::metadata(path) {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
            if metadata.is_dir() {
                return Ok(Self::Folder(path));
            }
            if let Some(format) = Format::of(&path) {
                return Ok(Self::Archive(path, format));
            }
            bail!(
                "{} is a file, not a skill folder: give a folder, a .zip or .tar.gz archive, or a git repository URL",
                crate::untrusted_text::log_line(text)
            );
        }
        if git::is_repository(text) {
            return Ok(Self::Repository(text.to_owned()));
        }
        bail!(
            "no folder, archive or repository {:?}: give a skill folder, a folder of skills, \
             a .zip or .tar.gz archive, or a git repository URL (https://, ssh://, file://, git@host:path)",
            crate::untrusted_text::log_line(text)
        )
    }
}

/// A source made local.
pub struct Fetched {
    /// The folder holding one skill, or a collection of skill folders.
    pub root: PathBuf,
    /// The scratch folder an archive or repository went into (removed when
    /// this is dropped), the folder in it that stands for the source, and
    /// how to name the source in messages.
    scratch: Option<(tempfile::TempDir, PathBuf, String)>,
}

impl Fetched {
    /// Make `source` local, in a scratch folder under `scratch_parent` when
    /// it is not a folder already; then go down `sub_path` in it.
    pub fn fetch(
        source: &Source,
        sub_path: Option<&Path>,
        reference: Option<&str>,
        scratch_parent: &Path,
    ) -> anyhow::Result<Self> {
        if reference.is_some() && !matches!(source, Source::Repository(_)) {
            bail!(
                "--ref names a branch, tag or commit of a git repository; this source is not one"
            );
        }
        if let Some(sub_path) = sub_path {
            let plain = sub_path.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
            if !plain || sub_path.as_os_str().is_empty() {
                bail!(
                    "--path {} must be a path inside the source, without `..` or a leading `/`",
                    sub_path.display()
                );
            }
        }
        let scratch = || -> anyhow::Result<tempfile::TempDir> {
            crate::home::create_private_dir(scratch_parent)?;
            remove_stale_scratch(scratch_parent);
            tempfile::Builder::new()
                .prefix(".fetch-")
                .tempdir_in(scratch_parent)
                .with_context(|| {
                    format!(
                        "cannot create a scratch folder in {}",
                        scratch_parent.display()
                    )
                })
        };
        let (base, scratch) = match source {
            Source::Folder(dir) => (dir.clone(), None),
            Source::Archive(file, format) => {
                let dir = scratch()?;
                // A SKILL.md at the archive's top is the skill named after
                // the archive.
                let into = dir.path().join(format.stem(file));
                archive::unpack(file, *format, &into)?;
                let shown = file.display().to_string();
                (into.clone(), Some((dir, into, shown)))
            }
            Source::Repository(url) => {
                let dir = scratch()?;
                let into = dir.path().join(git::repository_name(url));
                git::fetch(url, reference, sub_path, &into)?;
                let shown = crate::untrusted_text::log_line(url);
                (into.clone(), Some((dir, into, shown)))
            }
        };
        let fetched = Self {
            root: base.clone(),
            scratch,
        };
        let Some(sub_path) = sub_path else {
            return Ok(fetched);
        };
        // Down one folder at a time, never through a link: an archive or a
        // repository may hold `skills -> /home/someone`.
        let mut root = base.clone();
        for component in sub_path.components() {
            if let std::path::Component::Normal(part) = component {
                root.push(part);
                let is_dir = std::fs::symlink_metadata(&root).is_ok_and(|m| m.is_dir());
                if !is_dir {
                    bail!(
                        "--path {}: no such folder in {}",
                        sub_path.display(),
                        fetched.shown(&base)
                    );
                }
            }
        }
        Ok(Self { root, ..fetched })
    }

    /// `path`, named for the operator: inside an archive or a repository,
    /// `SOURCE → relative/path` instead of the scratch folder.
    pub fn shown(&self, path: &Path) -> String {
        self.replace_scratch(&path.display().to_string())
    }

    /// `text` with the scratch folder's path replaced by the source's name:
    /// `pdf.zip → pdf/SKILL.md`.
    pub fn replace_scratch(&self, text: &str) -> String {
        match &self.scratch {
            Some((dir, base, source)) => {
                let base = base.display().to_string();
                let dir = dir.path().display().to_string();
                text.replace(&format!("{base}/"), &format!("{source} → "))
                    .replace(&base, source)
                    .replace(&dir, source)
            }
            None => text.to_owned(),
        }
    }

    /// The skill folders to install: the root when it is one, else each of
    /// its folders that is one (a collection), sorted by name.
    pub fn skill_folders(&self) -> anyhow::Result<Vec<PathBuf>> {
        if holds_a_skill(&self.root) {
            return Ok(vec![self.root.clone()]);
        }
        let entries = std::fs::read_dir(&self.root)
            .with_context(|| format!("cannot read {}", self.shown(&self.root)))?;
        let mut folders = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", self.shown(&self.root)))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && !super::is_skipped(&name) && holds_a_skill(&entry.path()) {
                folders.push(entry.path());
            }
        }
        folders.sort();
        if folders.is_empty() {
            bail!(
                "no skill in {}: expected {INSTRUCTIONS_FILE} or {MANIFEST_FILE} in it, or in folders of it",
                self.shown(&self.root)
            );
        }
        Ok(folders)
    }
}

/// Scratch folders an interrupted install left (older than an hour: a
/// running install's fetch is bounded well below that).
fn remove_stale_scratch(scratch_parent: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch_parent) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(".fetch-")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| {
                    modified.elapsed().unwrap_or_default() > std::time::Duration::from_secs(3600)
                });
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_apart_and_unknown_ones_explained() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("pdf");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join(INSTRUCTIONS_FILE), "x").unwrap();
        let archive = dir.path().join("pdf.zip");
        std::fs::write(&archive, "x").unwrap();
        let text = |path: &Path| path.to_str().unwrap().to_owned();
        assert_eq!(
            Source::parse(&text(&folder)).unwrap(),
            Source::Folder(folder.clone())
        );
        assert_eq!(
            Source::parse(&text(&archive)).unwrap(),
            Source::Archive(archive.clone(), Format::Zip)
        );
        assert_eq!(
            Source::parse("https://example.org/skills").unwrap(),
            Source::Repository("https://example.org/skills".into())
        );
        let missing = Source::parse("./nowhere").unwrap_err().to_string();
        assert!(
            missing.starts_with("no folder, archive or repository \"./nowhere\""),
            "{missing}"
        );
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "x").unwrap();
        assert!(
            Source::parse(&text(&file))
                .unwrap_err()
                .to_string()
                .contains("is a file")
        );

        // A folder of skills is a collection; --path goes down into it.
        let scratch = dir.path().join("scratch");
        let source = Source::Folder(dir.path().to_owned());
        let fetched = Fetched::fetch(&source, None, None, &scratch).unwrap();
        assert_eq!(
            fetched.skill_folders().unwrap(),
            std::slice::from_ref(&folder)
        );
        let fetched = Fetched::fetch(&source, Some(Path::new("pdf")), None, &scratch).unwrap();
        assert_eq!(
            fetched.skill_folders().unwrap(),
            std::slice::from_ref(&folder)
        );
        for bad in ["../pdf", "/etc", "missing"] {
            assert!(
                Fetched::fetch(&source, Some(Path::new(bad)), None, &scratch).is_err(),
                "{bad}"
            );
        }
        assert!(Fetched::fetch(&source, None, Some("v1"), &scratch).is_err());
        let empty = Source::Folder(scratch.clone());
        std::fs::create_dir_all(&scratch).unwrap();
        let error = Fetched::fetch(&empty, None, None, &scratch)
            .unwrap()
            .skill_folders()
            .unwrap_err()
            .to_string();
        assert!(error.contains("no skill in"), "{error}");
    }
}
