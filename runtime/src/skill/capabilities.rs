//! A skill's capabilities with host paths resolved: what its manifest
//! requests and, once granted, what the sandbox is given. The types are the
//! sandbox's policy ([`crate::sandbox::policy`]); this module produces them
//! from a skill, and the grants module decides which.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Skill;
use crate::home::create_private_dir;
use crate::sandbox::policy::{Capabilities, GrantedMount, MountSource, NetworkAccess, SecretRoute};

/// Host directories the mount variables of a manifest resolve to. Both
/// should be absolute and canonical (the application canonicalises them at
/// start).
#[derive(Debug, Clone)]
pub struct MountRoots {
    /// `${workspace}`
    pub workspace: PathBuf,
    /// Parent of each skill's `${skill_data}` directory.
    pub skill_data: PathBuf,
}

/// Nothing but the skill's own limits: for checking that a component loads
/// (install, grant, doctor) without giving it anything.
pub fn for_validation(skill: &Skill) -> Capabilities {
    Capabilities::only_limits(skill.manifest.limits)
}

/// What `skill`'s manifest requests, with mount variables resolved under
/// `roots`. Touches no file except to canonicalise `${skill_dir}`.
pub fn requested(skill: &Skill, roots: &MountRoots) -> Capabilities {
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
    Capabilities {
        mounts,
        env: requested.env.clone(),
        exec: requested.exec.clone(),
        // What the manifest asks; the grant's rules and secrets are added
        // by `grants::assess`.
        network: NetworkAccess {
            requested: requested.network.clone(),
            granted: Vec::new(),
            secrets: requested
                .secrets
                .iter()
                .map(|secret| SecretRoute {
                    name: secret.name.clone(),
                    header: secret.header.clone(),
                    format: secret.format.clone(),
                    hosts: secret.hosts.clone(),
                })
                .collect(),
        },
        limits: skill.manifest.limits,
    }
}

/// What the manifest requests, prepared for the sandbox without any grant
/// check. For tests, benchmarks and embedders that vet skills themselves;
/// the application goes through grants.
pub fn as_requested(skill: &Skill, roots: &MountRoots) -> anyhow::Result<Capabilities> {
    let mut capabilities = requested(skill, roots);
    // As requested: every rule the manifest names is granted.
    capabilities.network.granted = capabilities.network.requested.clone();
    prepare(&capabilities)?;
    Ok(capabilities)
}

/// Make the mounts ready: create `${skill_data}` directories (mode 0700) on
/// first use, and check that every host path is an existing directory that
/// is still where it was granted (a symlink swapped in since is refused).
pub fn prepare(capabilities: &Capabilities) -> anyhow::Result<()> {
    for mount in &capabilities.mounts {
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
