//! The capabilities of a skill with host paths resolved: what it requests
//! ([`Capabilities::requested`]) and, once granted, what the sandbox gives it.
//!
//! This is the seam between "what a skill asks for" and "what it gets": the
//! grants module decides, and the sandbox never sees anything but a
//! `Capabilities` whose mounts were checked by [`Capabilities::prepare`].

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::{Access, ExecRule, Limits, MountSource, Skill};
use crate::home::create_private_dir;

/// Host directories the mount variables of a manifest resolve to. Both
/// should be absolute and canonical (the CLI canonicalises them at start).
#[derive(Debug, Clone)]
pub struct MountRoots {
    /// `${workspace}`
    pub workspace: PathBuf,
    /// Parent of each skill's `${skill_data}` directory.
    pub skill_data: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub mounts: Vec<GrantedMount>,
    /// Environment variable names the guest may see (values are read from
    /// the host environment at each call).
    pub env: Vec<String>,
    pub exec: Vec<ExecRule>,
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
            limits: Limits::default(),
        }
    }

    /// Nothing but the skill's own limits: for checking that a component
    /// loads (install, grant, doctor) without giving it anything.
    pub fn for_validation(skill: &Skill) -> Self {
        Self {
            limits: skill.manifest.limits,
            ..Self::none()
        }
    }

    /// What `skill`'s manifest requests, with mount variables resolved under
    /// `roots`. Touches no file except to canonicalise `${skill_dir}`.
    pub fn requested(skill: &Skill, roots: &MountRoots) -> Self {
        let requested = &skill.manifest.capabilities;
        let mounts = requested
            .mounts
            .iter()
            .map(|mount| GrantedMount {
                source: mount.source,
                host: match mount.source {
                    MountSource::Workspace => roots.workspace.clone(),
                    MountSource::SkillData => roots.skill_data.join(skill.name()),
                    // Canonical like the other roots, so `prepare` accepts it.
                    MountSource::SkillDir => skill
                        .dir
                        .canonicalize()
                        .unwrap_or_else(|_| skill.dir.clone()),
                },
                guest: mount.guest.clone(),
                access: mount.access,
            })
            .collect();
        Self {
            mounts,
            env: requested.env.clone(),
            exec: requested.exec.clone(),
            limits: skill.manifest.limits,
        }
    }

    /// What the manifest requests, prepared for the sandbox without any
    /// grant check. For tests, benchmarks and embedders that vet skills
    /// themselves; the CLI goes through grants.
    pub fn as_requested(skill: &Skill, roots: &MountRoots) -> anyhow::Result<Self> {
        let capabilities = Self::requested(skill, roots);
        capabilities.prepare()?;
        Ok(capabilities)
    }

    /// Make the mounts ready: create `${skill_data}` directories (mode 0700)
    /// on first use, and check that every host path is an existing directory
    /// that is still where it was granted (a symlink swapped in since is
    /// refused).
    pub fn prepare(&self) -> anyhow::Result<()> {
        for mount in &self.mounts {
            if mount.source == MountSource::SkillData {
                create_private_dir(&mount.host)?;
            }
            let canonical = canonical_dir(&mount.host, mount.source)?;
            anyhow::ensure!(
                canonical == mount.host,
                "{} resolves to {} now, not to {} as granted; grant the skill again if this is intended",
                mount.source,
                canonical.display(),
                mount.host.display()
            );
        }
        Ok(())
    }
}

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
