//! The effective capabilities of a skill: what the sandbox is allowed to give
//! it, with host paths resolved.
//!
//! This is the seam between "what a skill asks for" and "what it gets". Today
//! a skill gets exactly what its manifest requests, with host paths chosen by
//! the host ([`Capabilities::as_requested`]); operator grants pinned to the
//! skill's hash will intersect the request here, and the sandbox never sees
//! anything but a `Capabilities`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{Access, ExecRule, Limits, MountSource, Skill};

/// Host directories the mount variables of a manifest resolve to.
#[derive(Debug, Clone)]
pub struct MountRoots {
    /// `${workspace}`
    pub workspace: PathBuf,
    /// Parent of each skill's `${skill_data}` directory.
    pub skill_data: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub mounts: Vec<GrantedMount>,
    /// Environment variable names the guest may see (values are read from
    /// the host environment at each call).
    pub env: Vec<String>,
    pub exec: Vec<ExecRule>,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedMount {
    pub source: MountSource,
    /// Canonical host directory.
    pub host: PathBuf,
    pub guest: String,
    pub access: Access,
}

impl Capabilities {
    /// Nothing at all: no mounts, no env, no commands, default limits.
    pub fn none() -> Self {
        Self {
            mounts: Vec::new(),
            env: Vec::new(),
            exec: Vec::new(),
            limits: Limits::default(),
        }
    }

    /// What `skill`'s manifest requests, with mount variables resolved under
    /// `roots`. `${skill_data}` is created (mode 0700) on first use; the
    /// workspace must exist.
    pub fn as_requested(skill: &Skill, roots: &MountRoots) -> anyhow::Result<Self> {
        let requested = &skill.manifest.capabilities;
        let mut mounts = Vec::with_capacity(requested.mounts.len());
        for mount in &requested.mounts {
            let host = match mount.source {
                MountSource::Workspace => roots.workspace.clone(),
                MountSource::SkillData => {
                    let dir = roots.skill_data.join(skill.name());
                    create_private_dir(&dir)?;
                    dir
                }
                MountSource::SkillDir => skill.dir.clone(),
            };
            mounts.push(GrantedMount {
                source: mount.source,
                host: canonical_dir(&host, mount.source)?,
                guest: mount.guest.clone(),
                access: mount.access,
            });
        }
        Ok(Self {
            mounts,
            env: requested.env.clone(),
            exec: requested.exec.clone(),
            limits: skill.manifest.limits,
        })
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Mounts are opened by canonical path so a later change of a symlink on the
/// way cannot redirect them.
fn canonical_dir(path: &Path, source: MountSource) -> anyhow::Result<PathBuf> {
    let canonical = path.canonicalize().with_context(|| {
        format!(
            "{source} resolves to {}, which cannot be opened",
            path.display()
        )
    })?;
    anyhow::ensure!(
        canonical.is_dir(),
        "{source} resolves to {}, which is not a directory",
        canonical.display()
    );
    Ok(canonical)
}
