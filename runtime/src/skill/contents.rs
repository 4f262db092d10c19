//! What the host and the guest read from a skill folder.
//!
//! The operator's grant is pinned to a hash of every file the host or the
//! guest reads from the folder, and the sandbox compiles, mounts and prompts
//! from the very bytes that were hashed: a file swapped in the folder after
//! the check is never what runs. `skill.toml`, `SKILL.md` and (for a skill
//! mounting its own folder) every file are read once, when the skill is
//! loaded. The component, the one large file, is read when it is first
//! needed: its hash at load may come from a [`HashCache`] entry (keyed by
//! the file's identity and change time, so a start does not hash every
//! component again), and the bytes read later are hashed again and refused
//! unless they match the hash the grant was judged on. Compiling a buffer
//! other than the one that was hashed is therefore impossible.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::hash_cache::{HashCache, Stamp};
use super::install;
use super::{INSTRUCTIONS_FILE, Manifest, ManifestError, MountSource};
use crate::sandbox::policy::FolderFile;
use crate::untrusted_file::{Folder, ReadError};

/// Largest `SKILL.md` read; instructions are a few kilobytes.
pub const MAX_INSTRUCTIONS_BYTES: u64 = 1024 * 1024;
/// Largest component accepted; bundled skills are well under 1 MiB.
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;

/// Domain separation for the skill hash; bump the version if the framing
/// below ever changes.
const HASH_DOMAIN: &[u8] = b"talaria-skill-hash-v2\0";

/// The files of one skill, as read when it was loaded.
#[derive(Debug)]
pub struct SkillContents {
    manifest: Vec<u8>,
    instructions: Option<String>,
    component: Option<ComponentFile>,
    /// Every file of the folder, for a skill that mounts `${skill_dir}`:
    /// its guest is shown a copy of exactly these files.
    folder: Option<Arc<[FolderFile]>>,
    hash: SkillHash,
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
    pub manifest: String,
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
            Some(&granted.manifest),
            Some(&self.manifest),
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
            "a file of the folder (mounted as ${skill_dir})",
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
    /// Read the skill in `folder` whose manifest was parsed from
    /// `manifest_bytes`: `SKILL.md` when present, every file of the folder
    /// when the skill mounts `${skill_dir}`, and the component's hash (from
    /// `hashes` when its entry still matches the file, else by reading and
    /// hashing it, keeping the bytes). Each file is read as a regular file
    /// through the folder handle (never through a symlink, never blocking on
    /// a FIFO), within a bound.
    ///
    /// The skill hash is `blake3:` and the hex digest of
    ///
    /// ```text
    /// "talaria-skill-hash-v2\0"
    /// then for skill.toml, SKILL.md, the component, and the folder's tree
    /// hash (skills mounting ${skill_dir}), in that order:
    ///   u8 0 when the skill has no such part, else u8 1 and the part's
    ///   hash as text, "blake3:" and 64 hex digits
    /// ```
    pub fn read(
        folder: Arc<Folder>,
        manifest: &Manifest,
        manifest_bytes: Vec<u8>,
        hashes: Option<&HashCache>,
    ) -> Result<Self, ManifestError> {
        let dir = folder.path().to_owned();
        let instructions_path = dir.join(INSTRUCTIONS_FILE);
        let instructions =
            match folder.read_text(Path::new(INSTRUCTIONS_FILE), MAX_INSTRUCTIONS_BYTES) {
                Ok(text) => Some(text),
                Err(error) if error.is_not_found() => None,
                Err(error) => {
                    return Err(ManifestError {
                        file: instructions_path,
                        message: format!("cannot read: {error}"),
                    });
                }
            };
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
        let folder_files = if mounts_own_folder {
            let files = install::read_tree(&folder).map_err(|error| ManifestError {
                file: dir.clone(),
                message: format!("{error:#}"),
            })?;
            Some(Arc::<[FolderFile]>::from(files))
        } else {
            None
        };
        let hash = hash(
            &manifest_bytes,
            instructions.as_deref(),
            component.as_ref().map(|c| c.hash.as_str()),
            folder_files.as_deref(),
        );
        Ok(Self {
            manifest: manifest_bytes,
            instructions,
            component,
            folder: folder_files,
            hash,
        })
    }

    pub fn hash(&self) -> &SkillHash {
        &self.hash
    }

    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest
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
    manifest: &[u8],
    instructions: Option<&str>,
    component: Option<&str>,
    folder: Option<&[FolderFile]>,
) -> SkillHash {
    let parts = HashParts {
        manifest: part_hash(manifest),
        instructions: instructions.map(|text| part_hash(text.as_bytes())),
        component: component.map(str::to_owned),
        folder: folder.map(install::hash_tree),
    };
    // Each part is hashed once; the skill hash frames the parts' hashes.
    let mut hasher = blake3::Hasher::new();
    hasher.update(HASH_DOMAIN);
    for part in [
        Some(&parts.manifest),
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
