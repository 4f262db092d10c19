//! What the sandbox is told a component may use: its policy.
//!
//! The sandbox consumes these types and nothing else about a skill; the
//! `skill` module produces them from a manifest and the operator's grant
//! (manifest ∩ grant, host paths resolved). Keeping them here is what lets
//! the sandbox stand without knowing what a skill folder, a manifest or a
//! grant is. Each capability has a small `allows()` that says, for one
//! request, yes or no; the tests are tables.

pub mod network;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use network::{HostPattern, NetworkAccess, NetworkRule, SecretRoute};

pub const DEFAULT_MEMORY_MB: u32 = 64;
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
/// Quota of a skill's `${skill_data}` directory.
pub const DEFAULT_DATA_MB: u32 = 256;
/// Upper bounds of the limits a manifest may ask for. The memory bound is
/// also the size of a sandbox memory slot (see `engine`).
pub const MAX_MEMORY_MB: u32 = 1024;
pub const MAX_TIMEOUT_MS: u64 = 10 * 60 * 1000;
pub const MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;
pub const MAX_DATA_MB: u32 = 1024 * 1024;

/// The only host locations a manifest may name. Concrete host paths are
/// chosen by the host, never by the skill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MountSource {
    /// `${workspace}`: the working directory shared with the agent.
    Workspace,
    /// `${skill_data}`: the skill's private directory in the data home.
    SkillData,
    /// `${skill_dir}`: the skill's own folder (read-only).
    SkillDir,
}

impl MountSource {
    pub fn variable(self) -> &'static str {
        match self {
            Self::Workspace => "${workspace}",
            Self::SkillData => "${skill_data}",
            Self::SkillDir => "${skill_dir}",
        }
    }

    pub fn from_variable(text: &str) -> Option<Self> {
        [Self::Workspace, Self::SkillData, Self::SkillDir]
            .into_iter()
            .find(|source| source.variable() == text)
    }
}

impl fmt::Display for MountSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.variable())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

impl Access {
    /// Whether holding `self` permits an operation needing `needed`.
    pub fn allows(self, needed: Access) -> bool {
        match (self, needed) {
            (Access::ReadWrite, _) => true,
            (Access::ReadOnly, Access::ReadOnly) => true,
            (Access::ReadOnly, Access::ReadWrite) => false,
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Access::ReadOnly => "ro",
            Access::ReadWrite => "rw",
        }
    }
}

/// A native command a skill may ask the host to run: `program` with
/// arguments matching `args` (`*` matches one argument, `**` any remainder).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRule {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
}

impl ExecRule {
    /// Whether running `program` with `args` is what this rule permits:
    /// the program by exact name, each argument equal to its pattern or
    /// matched by `*` (any one argument), and `**` (only last) matching any
    /// remaining arguments, none included.
    pub fn allows(&self, program: &str, args: &[&str]) -> bool {
        if program != self.program {
            return false;
        }
        let mut args = args.iter();
        for (index, pattern) in self.args.iter().enumerate() {
            if pattern == "**" && index + 1 == self.args.len() {
                return true;
            }
            match args.next() {
                Some(arg) if pattern == "*" || pattern == arg => {}
                _ => return false,
            }
        }
        args.next().is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub memory_mb: u32,
    pub timeout_ms: u64,
    pub max_output_bytes: u64,
    /// How much the skill may keep in its `${skill_data}` directory.
    // Grants written before the quota existed hold no value: the default.
    #[serde(default = "default_data_mb")]
    pub data_mb: u32,
}

fn default_data_mb() -> u32 {
    DEFAULT_DATA_MB
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mb: DEFAULT_MEMORY_MB,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            data_mb: DEFAULT_DATA_MB,
        }
    }
}

/// The effective capabilities of a component: what it may use, host paths
/// resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub mounts: Vec<GrantedMount>,
    /// Environment variable names the guest may see (values are read from
    /// the host environment at each call).
    pub env: Vec<String>,
    pub exec: Vec<ExecRule>,
    /// Where it may send HTTP requests, and the secrets the host adds.
    pub network: NetworkAccess,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantedMount {
    #[serde(serialize_with = "serialize_source")]
    pub source: MountSource,
    pub host: PathBuf,
    pub guest: String,
    pub access: Access,
}

fn serialize_source<S: serde::Serializer>(
    source: &MountSource,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(source.variable())
}

impl Capabilities {
    /// Nothing at all: no mounts, no env, no commands, default limits.
    pub fn none() -> Self {
        Self {
            mounts: Vec::new(),
            env: Vec::new(),
            exec: Vec::new(),
            network: NetworkAccess::default(),
            limits: Limits::default(),
        }
    }

    /// Nothing but `limits`: for checking that a component loads (install,
    /// grant, doctor) without giving it anything.
    pub fn only_limits(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::none()
        }
    }
}

/// One file of a folder shown to a guest (see `mounts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderFile {
    /// Relative to the folder.
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_rules_allow_table() {
        let rule = |program: &str, args: &[&str]| ExecRule {
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        let cases: &[(ExecRule, &str, &[&str], bool)] = &[
            (rule("git", &["status"]), "git", &["status"], true),
            (rule("git", &["status"]), "git", &["status", "-s"], false),
            (rule("git", &["status"]), "git", &[], false),
            (rule("git", &["status"]), "gitk", &["status"], false),
            (rule("git", &["status", "**"]), "git", &["status"], true),
            (
                rule("git", &["status", "**"]),
                "git",
                &["status", "-s", "x"],
                true,
            ),
            (rule("git", &["status", "**"]), "git", &["log"], false),
            (
                rule("git", &["*", "--oneline"]),
                "git",
                &["log", "--oneline"],
                true,
            ),
            (rule("git", &["*", "--oneline"]), "git", &["log"], false),
            (rule("git", &[]), "git", &[], true),
            (rule("git", &[]), "git", &["push"], false),
            (rule("git", &["**"]), "git", &["push", "--force"], true),
            // `**` only means "the rest" at the end.
            (rule("git", &["**", "x"]), "git", &["a", "x"], false),
            (rule("git", &["**", "x"]), "git", &["**", "x"], true),
        ];
        for (rule, program, args, allowed) in cases {
            assert_eq!(
                rule.allows(program, args),
                *allowed,
                "{rule:?} allows {program} {args:?}"
            );
        }
    }

    #[test]
    fn access_allows_table() {
        let cases = [
            (Access::ReadOnly, Access::ReadOnly, true),
            (Access::ReadOnly, Access::ReadWrite, false),
            (Access::ReadWrite, Access::ReadOnly, true),
            (Access::ReadWrite, Access::ReadWrite, true),
        ];
        for (held, needed, allowed) in cases {
            assert_eq!(held.allows(needed), allowed, "{held:?} allows {needed:?}");
        }
    }
}
