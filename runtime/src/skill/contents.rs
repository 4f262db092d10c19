//! What the host and the guest read from a skill folder, read once.
//!
//! The operator's grant is pinned to a hash of these bytes, and the sandbox
//! compiles, mounts and prompts from these same bytes: a file swapped in
//! the folder after the check is never what runs. Reading a file a second
//! time (once to hash it, once to compile it) would let anyone who can
//! write the folder run ungranted code under another component's grant.

use std::path::Path;
use std::sync::Arc;

use super::install;
use super::{INSTRUCTIONS_FILE, Manifest, ManifestError, MountSource};
use crate::sandbox::policy::FolderFile;
use crate::untrusted_file::Folder;

/// Largest `SKILL.md` read; instructions are a few kilobytes.
pub const MAX_INSTRUCTIONS_BYTES: u64 = 1024 * 1024;
/// Largest component accepted; bundled skills are well under 1 MiB.
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;

/// Domain separation for the skill hash; bump the version if the framing
/// below ever changes.
const HASH_DOMAIN: &[u8] = b"talaria-skill-hash-v2\0";

/// The bytes of one skill, as read when it was loaded.
#[derive(Debug)]
pub struct SkillContents {
    manifest: Vec<u8>,
    instructions: Option<String>,
    component: Option<Arc<[u8]>>,
    /// Every file of the folder, for a skill that mounts `${skill_dir}`:
    /// its guest is shown a copy of exactly these files.
    folder: Option<Arc<[FolderFile]>>,
    hash: SkillHash,
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

impl SkillContents {
    /// Read the skill in `dir` whose manifest was parsed from
    /// `manifest_bytes`: `SKILL.md` when present, the component when the
    /// manifest names one, and every file of the folder when the skill
    /// mounts `${skill_dir}`. Each file is read once, as a regular file
    /// (never through a symlink, never blocking on a FIFO), within a bound.
    ///
    /// The skill hash is `blake3:` and the hex digest of
    ///
    /// ```text
    /// "talaria-skill-hash-v2\0"
    /// u64 LE length of skill.toml, skill.toml bytes
    /// u8 0, or u8 1 and u64 LE length and bytes of SKILL.md
    /// u8 0, or u8 1 and u64 LE length and bytes of the component
    /// u8 0, or u8 1 and the folder's tree hash (skills mounting ${skill_dir})
    /// ```
    pub fn read(
        folder: &Folder,
        manifest: &Manifest,
        manifest_bytes: Vec<u8>,
    ) -> Result<Self, ManifestError> {
        let dir = folder.path();
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
            Some(relative) => {
                let path = dir.join(relative);
                let bytes = folder.read(relative, MAX_COMPONENT_BYTES).map_err(
                    |error| ManifestError {
                        message: if error.is_not_found() {
                            format!(
                                "key `skill.component`: {} does not exist; build it \
                                 (`cargo build --target wasm32-wasip2 --release`, or `cargo xtask \
                                 build-skills` in the Talaria repository) or install the skill again",
                                path.display()
                            )
                        } else {
                            format!("key `skill.component`: cannot read {}: {error}", path.display())
                        },
                        file: dir.join(super::MANIFEST_FILE),
                    },
                )?;
                Some(Arc::<[u8]>::from(bytes))
            }
            None => None,
        };
        let mounts_own_folder = manifest
            .capabilities
            .mounts
            .iter()
            .any(|mount| mount.source == MountSource::SkillDir);
        let folder = if mounts_own_folder {
            let files = install::read_tree(folder).map_err(|error| ManifestError {
                file: dir.to_owned(),
                message: format!("{error:#}"),
            })?;
            Some(Arc::<[FolderFile]>::from(files))
        } else {
            None
        };
        let hash = hash(
            &manifest_bytes,
            instructions.as_deref(),
            component.as_deref(),
            folder.as_deref(),
        );
        Ok(Self {
            manifest: manifest_bytes,
            instructions,
            component,
            folder,
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

    pub fn component(&self) -> Option<&Arc<[u8]>> {
        self.component.as_ref()
    }

    pub fn folder(&self) -> Option<&Arc<[FolderFile]>> {
        self.folder.as_ref()
    }
}

fn hash(
    manifest: &[u8],
    instructions: Option<&str>,
    component: Option<&[u8]>,
    folder: Option<&[FolderFile]>,
) -> SkillHash {
    let folder_hash = folder.map(install::hash_tree);
    let mut hasher = blake3::Hasher::new();
    hasher.update(HASH_DOMAIN);
    hasher.update(&(manifest.len() as u64).to_le_bytes());
    hasher.update(manifest);
    for part in [instructions.map(str::as_bytes), component] {
        match part {
            Some(bytes) => {
                hasher.update(&[1]);
                hasher.update(&(bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
            None => {
                hasher.update(&[0]);
            }
        }
    }
    match &folder_hash {
        Some(tree) => {
            hasher.update(&[1]);
            hasher.update(tree.as_bytes());
        }
        None => {
            hasher.update(&[0]);
        }
    }
    SkillHash {
        full: format!("blake3:{}", hasher.finalize().to_hex()),
        parts: HashParts {
            manifest: part_hash(manifest),
            instructions: instructions.map(|text| part_hash(text.as_bytes())),
            component: component.map(part_hash),
            folder: folder_hash,
        },
    }
}
