//! `skill.toml`: parsing and validation.
//!
//! Every error names the file, the key and what was expected, so an author
//! can fix a manifest from the message alone. Unknown keys are errors: a typo
//! in a capability must never be silently ignored.
//!
//! The manifest's types and how it is read are here; the TOML as written
//! and the rule each key is checked against are in `validate`.

mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};

pub use crate::sandbox::policy::{
    Access, DEFAULT_DATA_MB, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS,
    ExecRule, Limits, MAX_DATA_MB, MAX_MEMORY_MB, MAX_OUTPUT_BYTES, MAX_TIMEOUT_MS, MountSource,
};
pub use validate::{MAX_DESCRIPTION_CHARS, is_skill_name, is_valid_description};
use validate::{parse_raw, validate};

/// Largest `skill.toml` accepted; a manifest is a few hundred bytes.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// A parsed and validated `skill.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub version: Version,
    pub description: String,
    /// The component file, relative to the skill folder; `None` for
    /// instruction-only skills.
    pub component: Option<PathBuf>,
    /// The versions of the `talaria:skill` WIT package the skill works with.
    pub api: VersionReq,
    pub capabilities: RequestedCapabilities,
    pub limits: Limits,
}

/// What a skill asks for. Requests are not grants: the sandbox only ever sees
/// [`Capabilities`](crate::skill::Capabilities).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestedCapabilities {
    pub mounts: Vec<MountRequest>,
    /// Names of environment variables the skill may read.
    pub env: Vec<String>,
    pub exec: Vec<ExecRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    pub source: MountSource,
    /// Absolute path inside the sandbox.
    pub guest: String,
    pub access: Access,
}

/// A manifest that could not be read or is invalid.
#[derive(Debug)]
pub struct ManifestError {
    pub file: PathBuf,
    pub message: String,
}

impl std::error::Error for ManifestError {}

/// Shown by `skills install`, `skills list` and `doctor`, the first contact
/// with an untrusted skill: its folder name and the key names its manifest
/// repeats may hold escape sequences, so both are sanitised.
impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::untrusted_text::log_line;
        write!(
            f,
            "{}: {}",
            log_line(&self.file.display().to_string()),
            log_line(&self.message)
        )
    }
}

impl Manifest {
    /// Read and validate the manifest at `file`: a regular file (never
    /// followed through a symlink, never a FIFO that would block), at most
    /// 64 KiB.
    pub fn load(file: &Path) -> Result<Self, ManifestError> {
        Self::load_bytes(file).map(|(manifest, _)| manifest)
    }

    /// [`Manifest::load`], also returning the bytes it was parsed from, so
    /// that what is hashed is exactly what was validated.
    pub fn load_bytes(file: &Path) -> Result<(Self, Vec<u8>), ManifestError> {
        let read = crate::untrusted_file::read(file, MAX_MANIFEST_BYTES);
        Self::from_read(file, read)
    }

    /// The manifest `skill.toml` of `folder`, with its bytes.
    pub fn load_from(
        folder: &crate::untrusted_file::Folder,
    ) -> Result<(Self, Vec<u8>), ManifestError> {
        let read = folder.read(Path::new(crate::skill::MANIFEST_FILE), MAX_MANIFEST_BYTES);
        Self::from_read(&folder.path().join(crate::skill::MANIFEST_FILE), read)
    }

    fn from_read(
        file: &Path,
        read: Result<Vec<u8>, crate::untrusted_file::ReadError>,
    ) -> Result<(Self, Vec<u8>), ManifestError> {
        let error = |message: String| ManifestError {
            file: file.to_owned(),
            message,
        };
        let bytes = read.map_err(|e| match e {
            crate::untrusted_file::ReadError::TooLarge { size, limit } => error(format!(
                "is {size} bytes; a manifest may be at most {limit} bytes"
            )),
            other => error(format!("cannot read: {other}")),
        })?;
        let text =
            std::str::from_utf8(&bytes).map_err(|e| error(format!("is not valid UTF-8: {e}")))?;
        let manifest = Self::parse(text).map_err(error)?;
        Ok((manifest, bytes))
    }

    /// Parse and validate manifest text. The error is the message without the
    /// file name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw = parse_raw(text)?;
        validate(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example; the tests of `validate` edit it one key at a
    /// time.
    pub(super) const VALID: &str = r#"
[skill]
name = "files"
version = "0.3.1"
description = "Search and read files in the workspace"
component = "files.wasm"
api = "^0.1"

[capabilities]
mounts = [
  { source = "${workspace}", guest = "/workspace", access = "read-only" },
  { source = "${skill_data}", guest = "/data/", access = "read-write" },
]
env = ["GITHUB_TOKEN"]
exec = [{ program = "git", args = ["status", "**"] }]
network = []

[limits]
memory_mb = 64
timeout_ms = 5000
max_output_bytes = 1048576
data_mb = 100
"#;

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("skill.toml");
        std::fs::write(
            &file,
            VALID.replace("version = \"0.3.1\"", "version = \"x\""),
        )
        .unwrap();
        let error = Manifest::load(&file).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}: key `skill.version`", file.display())),
            "{error}"
        );

        let missing = Manifest::load(&dir.path().join("absent.toml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("absent.toml: cannot read"), "{missing}");
    }
}
