//! A skill as the operator sees it, as JSON: the shape `skills audit
//! --json`, `skills info --json` and the dashboard share.

use std::path::Path;

use serde_json::json;

use super::grants::{Assessment, Grant, Grants, SkillState};
use super::registry::SkillEntry;
use super::{GrantedMount, MountSource};
use crate::sandbox::policy::SecretRoute;
use crate::untrusted_text::log_line;

/// A skill as `skills audit --json` and the dashboard show it.
pub fn audit_json(
    entry: &SkillEntry,
    grants: &Grants,
    is_set: &dyn Fn(&str) -> bool,
) -> serde_json::Value {
    match entry {
        SkillEntry::Invalid(error) => json!({
            "name": folder_name(&error.file),
            "state": "invalid",
            "error": error.to_string(),
        }),
        SkillEntry::Known {
            skill, assessment, ..
        } => {
            let grant = grants.skills.get(skill.name());
            let capabilities = &assessment.requested;
            let drift: Vec<&String> = match &assessment.state {
                SkillState::Drifted(reasons) => reasons.iter().collect(),
                _ => Vec::new(),
            };
            json!({
                "name": skill.name(),
                "version": skill.manifest.known_version().map(ToString::to_string),
                "format": skill.manifest.form_name(),
                "hash": assessment.hash.full,
                "state": assessment.state.name(),
                "drift": drift,
                "granted_by": grant.map(|g| g.granted_by.to_string()),
                "granted_at": grant.map(|g| g.granted_at.clone()),
                "granted_hash": grant.map(|g| g.hash.clone()),
                "moved_from": grant.and_then(|g| g.moved_from.clone()),
                "data": data_usage(assessment).map(|(dir, used)| json!({
                    "dir": dir,
                    "used_bytes": used,
                    "quota_mb": assessment.requested.limits.data_mb,
                })),
                "mounts": capabilities.mounts.iter().map(|m| json!({
                    "source": m.source.variable(),
                    "host": m.host,
                    "guest": m.guest,
                    "access": m.access,
                })).collect::<Vec<_>>(),
                "env": env_json(&capabilities.env, is_set),
                "exec": capabilities.exec,
                // What requests may reach: the grant's destinations, each
                // request also within one the manifest asks for.
                "network": grant.map(|g| g.network.clone()).unwrap_or_default(),
                "network_requested": capabilities.network.requested,
                "secrets": secrets_json(
                    &capabilities.network.secrets,
                    assessment.effective.as_ref().map(|e| e.network.secrets.as_slice()),
                    is_set,
                ),
                "limits": capabilities.limits,
            })
        }
    }
}

/// A grant's capabilities as JSON, in the shape of `skills audit --json`.
pub fn capabilities_json(
    grant: &Grant,
    resolved: &[GrantedMount],
    is_set: &dyn Fn(&str) -> bool,
) -> serde_json::Value {
    json!({
        "mounts": grant.mounts.iter().map(|m| json!({
            "source": m.source,
            // Where the template points at this start.
            "host": resolved
                .iter()
                .find(|r| r.source.variable() == m.source && r.guest == m.guest)
                .map(|r| &r.host),
            "guest": m.guest,
            "access": m.access,
        })).collect::<Vec<_>>(),
        "env": env_json(&grant.env, is_set),
        "exec": grant.exec,
        "network": grant.network,
        "secrets": grant.secrets.iter().map(|secret| json!({
            "name": secret.name,
            "hosts": secret.hosts,
            "set": is_set(&secret.name),
        })).collect::<Vec<_>>(),
        "limits": grant.limits,
    })
}

/// The secrets a manifest asks the host to send, with the hosts each is
/// granted for (none when not granted) and whether it has a value (never
/// the value).
fn secrets_json(
    asked: &[SecretRoute],
    granted: Option<&[SecretRoute]>,
    is_set: &dyn Fn(&str) -> bool,
) -> serde_json::Value {
    asked
        .iter()
        .map(|secret| {
            let granted_hosts: Vec<String> = granted
                .and_then(|all| all.iter().find(|g| g.name == secret.name))
                .map(|g| g.hosts.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            json!({
                "name": secret.name,
                "header": secret.header,
                "hosts": secret.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "granted_hosts": granted_hosts,
                "set": is_set(&secret.name),
            })
        })
        .collect()
}

/// Variable names with whether each is set (never its value).
fn env_json(names: &[String], is_set: &dyn Fn(&str) -> bool) -> serde_json::Value {
    names
        .iter()
        .map(|name| json!({"name": name, "set": is_set(name)}))
        .collect()
}

/// The skill's `${skill_data}` directory and how much it holds, when it
/// mounts one.
pub fn data_usage(assessment: &Assessment) -> Option<(&Path, u64)> {
    assessment
        .requested
        .mounts
        .iter()
        .find(|mount| mount.source == MountSource::SkillData)
        .map(|mount| {
            (
                mount.host.as_path(),
                crate::sandbox::data_usage(&mount.host),
            )
        })
}

/// The folder of a skill, for display: any name can be created on disk,
/// escape sequences included.
pub fn folder_name(manifest: &Path) -> String {
    manifest
        .parent()
        .and_then(|dir| dir.file_name())
        .map(|name| log_line(&name.to_string_lossy()))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_from_disk_are_sanitised() {
        assert_eq!(
            folder_name(Path::new("/skills/evil\u{1b}[2J/skill.toml")),
            "evil"
        );
    }
}
