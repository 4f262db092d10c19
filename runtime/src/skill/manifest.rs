//! A skill's manifest: `skill.toml` (Talaria's own), or, for a folder in
//! the Agent Skills format, the YAML frontmatter of its `SKILL.md`.
//!
//! Every error names the file, the key and what was expected, so an author
//! can fix a manifest from the message alone. Unknown keys are errors: a typo
//! in a capability must never be silently ignored.
//!
//! The manifest's types and how it is read are here; the TOML as written
//! and the rule each key is checked against are in `validate`.

mod frontmatter;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};

pub use crate::sandbox::policy::{
    Access, DEFAULT_DATA_MB, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS,
    ExecRule, HostPattern, Limits, MAX_DATA_MB, MAX_MEMORY_MB, MAX_OUTPUT_BYTES, MAX_TIMEOUT_MS,
    MountSource, NetworkRule,
};
pub use frontmatter::{Frontmatter, FrontmatterError, is_skill_name as is_agent_skill_name};
pub use validate::{MAX_DESCRIPTION_CHARS, is_skill_name, is_valid_description};
use validate::{parse_raw, validate};

/// Largest `skill.toml` accepted; a manifest is a few hundred bytes.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// Largest `SKILL.md` read; instructions are a few kilobytes.
pub const MAX_INSTRUCTIONS_BYTES: u64 = 1024 * 1024;

/// A parsed and validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub form: Form,
    /// `0.0.0` for an Agent Skill whose `metadata.version` gives none.
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

/// Which file describes a skill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `skill.toml`, with an optional `SKILL.md`: components, capabilities
    /// and limits.
    Toml,
    /// `SKILL.md` alone (the Agent Skills format): instructions and the
    /// files they refer to, opened on demand; no component, and nothing
    /// asked of the sandbox. `versioned` when `metadata.version` gave one.
    AgentSkill { versioned: bool },
}

/// A skill folder's manifest and the files it was read from, each read
/// once: what is hashed is exactly what was validated.
#[derive(Debug)]
pub struct ManifestFiles {
    pub manifest: Manifest,
    /// The bytes of `skill.toml`, for the Toml form.
    pub toml: Option<Vec<u8>>,
    /// `SKILL.md`, when the folder has one.
    pub instructions: Option<String>,
    /// SKILL.md's frontmatter: checked for an Agent Skill; for the Toml
    /// form, kept only when it is valid (it is informative there).
    pub frontmatter: Option<Frontmatter>,
}

/// What a skill asks for. Requests are not grants: the sandbox only ever sees
/// [`Capabilities`](crate::skill::Capabilities).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestedCapabilities {
    pub mounts: Vec<MountRequest>,
    /// Names of environment variables the skill may read.
    pub env: Vec<String>,
    pub exec: Vec<ExecRule>,
    /// Where it may send HTTP requests (`[capabilities] network`).
    pub network: Vec<NetworkRule>,
    /// Secrets the host adds to its requests (`[capabilities] secrets`).
    pub secrets: Vec<SecretRequest>,
}

/// A secret a skill asks the host to send for it: the value of `name` from
/// the home's `.env`, in `header`, formatted by `format`, to `hosts` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRequest {
    pub name: String,
    pub header: String,
    pub format: String,
    pub hosts: Vec<HostPattern>,
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

    /// The manifest of the skill in `folder`: its `skill.toml`, or else the
    /// frontmatter of its `SKILL.md` (an Agent Skills folder).
    pub fn load_from(
        folder: &crate::untrusted_file::Folder,
    ) -> Result<ManifestFiles, ManifestError> {
        use crate::skill::{INSTRUCTIONS_FILE, MANIFEST_FILE};
        let toml_file = folder.path().join(MANIFEST_FILE);
        let instructions_file = folder.path().join(INSTRUCTIONS_FILE);
        let read = folder.read(Path::new(MANIFEST_FILE), MAX_MANIFEST_BYTES);
        let toml = match read {
            Err(error) if error.is_not_found() => None,
            read => Some(Self::from_read(&toml_file, read)?),
        };
        let instructions =
            match folder.read_text(Path::new(INSTRUCTIONS_FILE), MAX_INSTRUCTIONS_BYTES) {
                Ok(text) => Some(text),
                Err(error) if error.is_not_found() => None,
                Err(error) => {
                    return Err(ManifestError {
                        file: instructions_file,
                        message: format!("cannot read: {error}"),
                    });
                }
            };
        let folder_name = folder
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        match (toml, instructions) {
            (Some((manifest, bytes)), instructions) => Ok(ManifestFiles {
                frontmatter: instructions
                    .as_deref()
                    .and_then(|text| frontmatter::parse(text, &folder_name).ok()),
                manifest,
                toml: Some(bytes),
                instructions,
            }),
            (None, Some(text)) => {
                let frontmatter =
                    frontmatter::parse(&text, &folder_name).map_err(|error| ManifestError {
                        file: instructions_file,
                        message: error.to_string(),
                    })?;
                Ok(ManifestFiles {
                    manifest: Self::of_agent_skill(&frontmatter),
                    toml: None,
                    instructions: Some(text),
                    frontmatter: Some(frontmatter),
                })
            }
            (None, None) => Err(ManifestError {
                file: folder.path().to_owned(),
                message: format!(
                    "not a skill folder: expected {INSTRUCTIONS_FILE} (an Agent Skills folder) \
                     or {MANIFEST_FILE} (a Talaria skill)"
                ),
            }),
        }
    }

    /// The manifest of an Agent Skills folder: its name and description, a
    /// version when `metadata.version` holds one (`1`, `1.2` and `1.2.3`
    /// are read as semver), no component, and nothing requested.
    fn of_agent_skill(frontmatter: &Frontmatter) -> Self {
        let version = frontmatter
            .metadata
            .get("version")
            .and_then(|text| lenient_version(text));
        Self {
            name: frontmatter.name.clone(),
            form: Form::AgentSkill {
                versioned: version.is_some(),
            },
            version: version.unwrap_or(Version::new(0, 0, 0)),
            description: frontmatter.description.clone(),
            component: None,
            api: VersionReq::STAR,
            capabilities: RequestedCapabilities::default(),
            limits: Limits::default(),
        }
    }

    /// `name vX.Y.Z`, or the name alone for an unversioned Agent Skill.
    pub fn label(&self) -> String {
        match self.known_version() {
            Some(version) => format!("{} v{version}", self.name),
            None => self.name.clone(),
        }
    }

    /// How the skill is described, for `skills info` and reports.
    pub fn form_name(&self) -> &'static str {
        match self.form {
            Form::Toml => "skill.toml",
            Form::AgentSkill { .. } => "agent-skill",
        }
    }

    /// The version, unless this is an Agent Skill that gives none.
    pub fn known_version(&self) -> Option<&Version> {
        match self.form {
            Form::AgentSkill { versioned: false } => None,
            _ => Some(&self.version),
        }
    }

    /// The version to show: `-` for an unversioned Agent Skill.
    pub fn shown_version(&self) -> String {
        self.known_version()
            .map_or_else(|| "-".to_owned(), Version::to_string)
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

    /// Parse and validate `skill.toml` text. The error is the message without the
    /// file name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw = parse_raw(text)?;
        validate(raw)
    }
}

/// Parse and check the frontmatter of `text`, a SKILL.md for the folder
/// named `folder`.
pub fn parse_frontmatter(text: &str, folder: &str) -> Result<Frontmatter, FrontmatterError> {
    frontmatter::parse(text, folder)
}

/// `1`, `1.2`, `1.2.3` (with an optional `v`) as a semver version.
fn lenient_version(text: &str) -> Option<Version> {
    let text = text.trim().trim_start_matches('v');
    let dots = text.matches('.').count();
    let padded = match dots {
        0 => format!("{text}.0.0"),
        1 => format!("{text}.0"),
        _ => text.to_owned(),
    };
    Version::parse(&padded).ok()
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
network = [
  "https://api.github.com",
  { url = "https://*.githubusercontent.com/**", methods = ["GET"] },
]
secrets = [
  { name = "GITHUB_API_TOKEN", header = "Authorization", format = "Bearer {}", hosts = ["api.github.com"] },
]

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
