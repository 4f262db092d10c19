//! A skill judged against its grant: granted, pending or drifted (and why),
//! and the capabilities the sandbox may give it, manifest ∩ grant.

use super::{Grant, describe_exec, short_hash};
use crate::sandbox::policy::HostPattern;
use crate::skill::{Capabilities, Limits, SkillHash};

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
                mount.source,
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
    let granted_network = match grant.network_rules() {
        Ok(rules) => rules,
        Err(why) => {
            reasons.push(why);
            Vec::new()
        }
    };
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
    // The operator's destinations; each secret only to the hosts the grant
    // approved for it (none when it approved none).
    effective.network.granted = granted_network;
    effective.network.secrets.retain_mut(|secret| {
        let Some(approved) = grant.secrets.iter().find(|g| g.name == secret.name) else {
            return false;
        };
        let hosts: Vec<HostPattern> = approved
            .hosts
            .iter()
            .filter_map(|host| HostPattern::parse(host).ok())
            .filter(|host| secret.hosts.iter().any(|asked| asked.covers(host)))
            .collect();
        secret.hosts = hosts;
        !secret.hosts.is_empty()
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skill::grants::tests::{MANIFEST, roots, skill_in};
    use crate::skill::grants::{GrantedBy, skill_hash};
    use crate::skill::{Access, Skill};

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
        assert_eq!(
            reasons,
            [
                "mount ${workspace} → /workspace (rw) is not granted".to_owned(),
                "env ANOTHER is not granted".to_owned(),
                format!(
                    "limits.memory_mb {} exceeds the granted {}",
                    grant.limits.memory_mb * 2,
                    grant.limits.memory_mb
                ),
            ]
        );

        // Another workspace is the operator's choice at start, not a drift:
        // the grant names the template.
        let mut elsewhere = requested.clone();
        elsewhere.mounts[0].host = dir.path().join("another-project");
        assert_eq!(
            assess(hash.clone(), elsewhere, Some(&grant)).state,
            SkillState::Granted
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
}
