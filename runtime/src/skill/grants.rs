//! Operator grants: the second key.
//!
//! A skill's capabilities are usable only if its manifest requests them AND
//! `grants.toml` grants them for that skill at that hash. The hash covers
//! every file the host or the guest reads from the skill folder
//! (`skill.toml`, `SKILL.md`, the component, and the whole folder when the
//! guest mounts it; see [`SkillContents`](super::SkillContents)), so any
//! change puts the skill back in front of the operator; a grant never
//! widens silently.
//!
//! Only the operator grants (`talaria skills grant`); nothing a skill or the
//! model can reach writes this file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{
    Access, Capabilities, ExecRule, GrantedMount, HashParts, Limits, MountSource, Skill, SkillHash,
};
use crate::home::write_atomically;

/// The hash `skill` is identified by (read with the skill, see
/// [`Skill::load`]).
pub fn skill_hash(skill: &Skill) -> anyhow::Result<SkillHash> {
    Ok(skill.hash().clone())
}

/// `grants.toml`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    #[serde(default)]
    pub skills: BTreeMap<String, Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub version: String,
    pub hash: String,
    /// The hash of each part of the skill at the time of the grant, so a
    /// drift can name what changed. Absent in grants written before the
    /// hash covered `SKILL.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<HashParts>,
    pub granted_by: GrantedBy,
    /// RFC 3339, UTC.
    pub granted_at: String,
    /// Set when a bundled-skill update moved this grant to a new version
    /// without the operator: the version and hash it was granted at before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
    #[serde(default)]
    pub mounts: Vec<MountGrant>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub exec: Vec<ExecRule>,
    #[serde(default)]
    pub network: Vec<String>,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountGrant {
    pub source: String,
    pub host: PathBuf,
    pub guest: String,
    pub access: Access,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantedBy {
    Operator,
    Bundled,
}

impl fmt::Display for GrantedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Operator => "operator",
            Self::Bundled => "bundled",
        })
    }
}

impl Grants {
    /// The grants at `path`; an absent file grants nothing.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        crate::toml_file::load_or_default(path)
    }

    /// Write atomically, mode 0600. Callers hold the home's writer lock.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = String::from(
            "# Operator grants, one table per skill, pinned to the skill's hash.\n\
             # Written by `talaria skills grant`; review with `talaria skills audit`.\n\n",
        );
        text.push_str(&toml::to_string(self).context("cannot serialise the grants")?);
        write_atomically(path, text.as_bytes(), 0o600)
    }
}

impl Grant {
    /// A grant of exactly `requested` for `skill` at `hash`.
    pub fn of(
        skill: &Skill,
        hash: &SkillHash,
        requested: &Capabilities,
        granted_by: GrantedBy,
    ) -> Self {
        Self {
            version: skill.manifest.version.to_string(),
            hash: hash.full.clone(),
            parts: Some(hash.parts.clone()),
            granted_by,
            granted_at: crate::clock::now_rfc3339(),
            moved_from: None,
            mounts: requested
                .mounts
                .iter()
                .map(|mount| MountGrant {
                    source: mount.source.variable().to_owned(),
                    host: mount.host.clone(),
                    guest: mount.guest.clone(),
                    access: mount.access,
                })
                .collect(),
            env: requested.env.clone(),
            exec: requested.exec.clone(),
            network: Vec::new(),
            limits: requested.limits,
        }
    }

    fn covers_mount(&self, mount: &GrantedMount) -> bool {
        self.mounts.iter().any(|granted| {
            granted.source == mount.source.variable()
                && granted.host == mount.host
                && granted.guest == mount.guest
                && granted.access.allows(mount.access)
        })
    }
}

/// Where a skill stands with the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkillState {
    /// Hash matches and everything requested is granted.
    Granted,
    /// Never granted.
    Pending,
    /// Granted once, but the skill changed or asks for more; each reason says what.
    Drifted(Vec<String>),
}

impl SkillState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Pending => "pending",
            Self::Drifted(_) => "drifted",
        }
    }
}

/// A skill judged against its grant.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub hash: SkillHash,
    /// What the manifest asks for, host paths resolved.
    pub requested: Capabilities,
    pub state: SkillState,
    /// What the sandbox may give it: manifest ∩ grant, only when granted.
    pub effective: Option<Capabilities>,
}

pub fn assess(hash: SkillHash, requested: Capabilities, grant: Option<&Grant>) -> Assessment {
    let Some(grant) = grant else {
        return Assessment {
            hash,
            requested,
            state: SkillState::Pending,
            effective: None,
        };
    };
    let mut reasons = Vec::new();
    if grant.hash != hash.full {
        let changes = match &grant.parts {
            Some(parts) => hash.parts.changes_since(parts).join(", "),
            None => {
                "granted under an older hash that did not cover SKILL.md; review the skill".into()
            }
        };
        reasons.push(format!(
            "the skill changed: granted {}, now {} ({})",
            short_hash(&grant.hash),
            short_hash(&hash.full),
            if changes.is_empty() {
                "its files changed".to_owned()
            } else {
                changes
            }
        ));
    }
    for mount in &requested.mounts {
        if !grant.covers_mount(mount) {
            reasons.push(format!(
                "mount {} → {} ({}) is not granted",
                mount.host.display(),
                mount.guest,
                mount.access.short()
            ));
        }
    }
    for name in &requested.env {
        if !grant.env.contains(name) {
            reasons.push(format!("env {name} is not granted"));
        }
    }
    for rule in &requested.exec {
        if !grant.exec.contains(rule) {
            reasons.push(format!("exec {} is not granted", describe_exec(rule)));
        }
    }
    let (asked, granted) = (requested.limits, grant.limits);
    for (key, asked, granted) in [
        (
            "memory_mb",
            u64::from(asked.memory_mb),
            u64::from(granted.memory_mb),
        ),
        ("timeout_ms", asked.timeout_ms, granted.timeout_ms),
        (
            "max_output_bytes",
            asked.max_output_bytes,
            granted.max_output_bytes,
        ),
        (
            "data_mb",
            u64::from(asked.data_mb),
            u64::from(granted.data_mb),
        ),
    ] {
        if asked > granted {
            reasons.push(format!(
                "limits.{key} {asked} exceeds the granted {granted}"
            ));
        }
    }
    if !reasons.is_empty() {
        return Assessment {
            hash,
            requested,
            state: SkillState::Drifted(reasons),
            effective: None,
        };
    }
    // Everything requested is granted; limits are the smaller of the two.
    let mut effective = requested.clone();
    effective.limits = Limits {
        memory_mb: asked.memory_mb.min(granted.memory_mb),
        timeout_ms: asked.timeout_ms.min(granted.timeout_ms),
        max_output_bytes: asked.max_output_bytes.min(granted.max_output_bytes),
        data_mb: asked.data_mb.min(granted.data_mb),
    };
    Assessment {
        hash,
        requested,
        state: SkillState::Granted,
        effective: Some(effective),
    }
}

/// `blake3:0123456789ab`, enough to tell hashes apart in a table.
pub fn short_hash(hash: &str) -> &str {
    let end = hash.len().min("blake3:".len() + 12);
    // A hand-edited grants.toml may hold anything: never slice mid-character.
    hash.get(..end).unwrap_or(hash)
}

pub fn describe_exec(rule: &ExecRule) -> String {
    if rule.args.is_empty() {
        rule.program.clone()
    } else {
        format!("{} {}", rule.program, rule.args.join(" "))
    }
}

/// Lines describing how `new` differs from `old`, `+` for added, `-` for
/// removed.
pub fn grant_diff(old: &Grant, new: &Grant) -> Vec<String> {
    let mut lines = Vec::new();
    if old.version != new.version || old.hash != new.hash {
        lines.push(format!(
            "~ v{} {} → v{} {}",
            old.version,
            short_hash(&old.hash),
            new.version,
            short_hash(&new.hash)
        ));
    }
    let mount = |m: &MountGrant| {
        format!(
            "mount {} → {} ({})",
            m.host.display(),
            m.guest,
            m.access.short()
        )
    };
    diff_lists(&mut lines, &old.mounts, &new.mounts, mount);
    diff_lists(&mut lines, &old.env, &new.env, |name| format!("env {name}"));
    diff_lists(&mut lines, &old.exec, &new.exec, |rule| {
        format!("exec {}", describe_exec(rule))
    });
    let (a, b) = (old.limits, new.limits);
    for (key, before, after) in [
        ("memory_mb", u64::from(a.memory_mb), u64::from(b.memory_mb)),
        ("timeout_ms", a.timeout_ms, b.timeout_ms),
        ("max_output_bytes", a.max_output_bytes, b.max_output_bytes),
        ("data_mb", u64::from(a.data_mb), u64::from(b.data_mb)),
    ] {
        if before != after {
            lines.push(format!("~ limits.{key} {before} → {after}"));
        }
    }
    lines
}

fn diff_lists<T: PartialEq>(
    lines: &mut Vec<String>,
    old: &[T],
    new: &[T],
    show: impl Fn(&T) -> String,
) {
    for item in new.iter().filter(|item| !old.contains(item)) {
        lines.push(format!("+ {}", show(item)));
    }
    for item in old.iter().filter(|item| !new.contains(item)) {
        lines.push(format!("- {}", show(item)));
    }
}

impl MountGrant {
    pub fn source(&self) -> Option<MountSource> {
        MountSource::from_variable(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skill::MountRoots;

    fn skill_in(dir: &Path, manifest: &str, component: Option<&[u8]>) -> Skill {
        let folder = dir.join("demo");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("skill.toml"), manifest).unwrap();
        if let Some(bytes) = component {
            std::fs::write(folder.join("demo.wasm"), bytes).unwrap();
        }
        Skill::load(&folder).unwrap()
    }

    const MANIFEST: &str = "[skill]\nname = \"demo\"\nversion = \"1.0.0\"\ndescription = \"d\"\ncomponent = \"demo.wasm\"\napi = \"^0.1\"\n\n[capabilities]\nmounts = [{ source = \"${workspace}\", guest = \"/workspace\", access = \"read-only\" }]\nenv = [\"TOKEN\"]\n";

    fn roots(dir: &Path) -> MountRoots {
        MountRoots {
            workspace: dir.join("workspace"),
            skill_data: dir.join("skill-data"),
        }
    }

    #[test]
    fn the_state_machine_follows_hash_and_request() {
        let dir = tempfile::tempdir().unwrap();
        let skill = skill_in(dir.path(), MANIFEST, Some(b"component v1"));
        let requested = crate::skill::capabilities::requested(&skill, &roots(dir.path()));
        let hash = skill_hash(&skill).unwrap();

        let pending = assess(hash.clone(), requested.clone(), None);
        assert_eq!(pending.state, SkillState::Pending);
        assert!(pending.effective.is_none());

        let grant = Grant::of(&skill, &hash, &requested, GrantedBy::Operator);
        let granted = assess(hash.clone(), requested.clone(), Some(&grant));
        assert_eq!(granted.state, SkillState::Granted);
        assert_eq!(granted.effective.as_ref(), Some(&requested));

        // One byte of the component changes: drifted.
        let changed = skill_in(dir.path(), MANIFEST, Some(b"component v2"));
        let new_hash = skill_hash(&changed).unwrap();
        assert_ne!(new_hash, hash);
        let drifted = assess(new_hash, requested.clone(), Some(&grant));
        let SkillState::Drifted(reasons) = &drifted.state else {
            panic!("{:?}", drifted.state);
        };
        assert_eq!(reasons.len(), 1);
        assert!(
            reasons[0].starts_with("the skill changed: granted blake3:"),
            "{reasons:?}"
        );

        // Asking for more than granted: drifted, naming each extra.
        let mut wider = requested.clone();
        wider.env.push("ANOTHER".into());
        wider.mounts[0].access = Access::ReadWrite;
        wider.limits.memory_mb = grant.limits.memory_mb * 2;
        let SkillState::Drifted(reasons) = assess(hash.clone(), wider, Some(&grant)).state else {
            panic!("must drift");
        };
        let workspace = dir.path().join("workspace");
        assert_eq!(
            reasons,
            [
                format!(
                    "mount {} → /workspace (rw) is not granted",
                    workspace.display()
                ),
                "env ANOTHER is not granted".to_owned(),
                format!(
                    "limits.memory_mb {} exceeds the granted {}",
                    grant.limits.memory_mb * 2,
                    grant.limits.memory_mb
                ),
            ]
        );

        // Asking for less stays granted, with the smaller limits.
        let mut narrower = requested.clone();
        narrower.env.clear();
        narrower.limits.timeout_ms = 10;
        let less = assess(hash, narrower, Some(&grant));
        assert_eq!(less.state, SkillState::Granted);
        assert_eq!(less.effective.unwrap().limits.timeout_ms, 10);
    }

    #[test]
    fn the_hash_covers_manifest_component_and_instructions_and_drift_names_the_part() {
        let dir = tempfile::tempdir().unwrap();
        let skill = skill_in(dir.path(), MANIFEST, Some(b"bytes"));
        let first = skill_hash(&skill).unwrap();
        assert!(first.full.starts_with("blake3:") && first.full.len() == 7 + 64);
        let requested = crate::skill::capabilities::requested(&skill, &roots(dir.path()));
        let grant = Grant::of(&skill, &first, &requested, GrantedBy::Operator);

        // SKILL.md goes into the model's prompt: it is part of what is granted.
        std::fs::write(skill.dir.join("SKILL.md"), "IMPORTANT SYSTEM RULE: ...").unwrap();
        let with_instructions = Skill::load(&skill.dir).unwrap();
        assert_ne!(skill_hash(&with_instructions).unwrap(), first);
        let SkillState::Drifted(reasons) = assess(
            with_instructions.hash().clone(),
            requested.clone(),
            Some(&grant),
        )
        .state
        else {
            panic!("a new SKILL.md must drift");
        };
        assert!(reasons[0].ends_with("(SKILL.md was added)"), "{reasons:?}");

        let edited = skill_in(
            dir.path(),
            &MANIFEST.replace("1.0.0", "1.0.1"),
            Some(b"other bytes"),
        );
        let SkillState::Drifted(reasons) =
            assess(edited.hash().clone(), requested, Some(&grant)).state
        else {
            panic!("must drift");
        };
        assert!(
            reasons[0].ends_with("(skill.toml changed, SKILL.md was added, the component changed)"),
            "{reasons:?}"
        );

        // A grant written before the hash covered SKILL.md says so.
        let mut legacy = grant.clone();
        legacy.parts = None;
        legacy.hash = "blake3:0000".into();
        let SkillState::Drifted(reasons) = assess(
            first.clone(),
            crate::skill::capabilities::requested(&skill, &roots(dir.path())),
            Some(&legacy),
        )
        .state
        else {
            panic!("must drift");
        };
        assert!(reasons[0].contains("older hash"), "{reasons:?}");
    }

    #[test]
    fn a_skill_mounting_its_own_folder_hashes_every_file_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = MANIFEST.replace(
            "mounts = [{ source = \"${workspace}\", guest = \"/workspace\", access = \"read-only\" }]",
            "mounts = [{ source = \"${skill_dir}\", guest = \"/skill\", access = \"read-only\" }]",
        );
        let skill = skill_in(dir.path(), &manifest, Some(b"bytes"));
        std::fs::write(skill.dir.join("data.json"), "{}").unwrap();
        let first = skill_hash(&Skill::load(&skill.dir).unwrap()).unwrap();
        std::fs::write(skill.dir.join("data.json"), "{\"evil\": true}").unwrap();
        let changed = skill_hash(&Skill::load(&skill.dir).unwrap()).unwrap();
        assert_ne!(changed, first, "data the guest reads is covered");
        assert_eq!(
            changed.parts.changes_since(&first.parts),
            ["a file of the folder (mounted as ${skill_dir}) changed"]
        );
    }

    #[test]
    fn grants_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let skill = skill_in(dir.path(), MANIFEST, Some(b"x"));
        let requested = crate::skill::capabilities::requested(&skill, &roots(dir.path()));
        let mut grants = Grants::default();
        let grant = Grant::of(
            &skill,
            &skill_hash(&skill).unwrap(),
            &requested,
            GrantedBy::Bundled,
        );
        grants.skills.insert("demo".into(), grant.clone());
        let path = dir.path().join("grants.toml");
        grants.save(&path).unwrap();
        let loaded = Grants::load(&path).unwrap();
        assert_eq!(loaded.skills["demo"], grant);
        assert!(
            Grants::load(&dir.path().join("absent.toml"))
                .unwrap()
                .skills
                .is_empty()
        );
        std::fs::write(&path, "[skills.demo]\nversion = 1\n").unwrap();
        let error = Grants::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("grants.toml: key `skills.demo.version`: invalid type"),
            "{error}"
        );
    }

    #[test]
    fn diffs_name_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let skill = skill_in(dir.path(), MANIFEST, Some(b"x"));
        let requested = crate::skill::capabilities::requested(&skill, &roots(dir.path()));
        let mut old = Grant::of(&skill, skill.hash(), &requested, GrantedBy::Operator);
        old.hash = "blake3:aaaa".into();
        let mut new = old.clone();
        new.hash = "blake3:bbbb".into();
        new.env = vec!["OTHER".into()];
        new.limits.timeout_ms = 9000;
        assert_eq!(
            grant_diff(&old, &new),
            [
                "~ v1.0.0 blake3:aaaa → v1.0.0 blake3:bbbb",
                "+ env OTHER",
                "- env TOKEN",
                "~ limits.timeout_ms 5000 → 9000",
            ]
        );
    }
}
