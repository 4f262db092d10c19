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
//!
//! This module is `grants.toml` and its entries; judging a skill against
//! its grant is `assess`, and what changes between two grants is `diff`.

mod assess;
mod diff;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{
    Access, Capabilities, ExecRule, GrantedMount, HashParts, Limits, MountSource, Skill, SkillHash,
};
use crate::home::write_atomically;
use crate::sandbox::policy::{HostPattern, NetworkRule};

pub use assess::{Assessment, SkillState, assess};
pub use diff::grant_diff;

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
    /// The destinations the operator chose, as URL patterns (see
    /// [`NetworkRule`]); a request must match one of them and one of the
    /// manifest's rules.
    #[serde(default)]
    pub network: Vec<String>,
    /// The secrets the operator lets the host send, and to which hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretGrant>,
    pub limits: Limits,
}

/// A secret the host may add to the skill's requests to `hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretGrant {
    pub name: String,
    pub hosts: Vec<String>,
}

/// What the operator narrows a grant to (`skills grant --network …
/// --secret …`). The default grants what the manifest asks, but its wide
/// network rules (`https://*`): those only by name or with `network_any`.
#[derive(Debug, Clone, Default)]
pub struct GrantChoices {
    /// `--network URL`: exactly these destinations; `None`: the
    /// manifest's own rules that are not wide.
    pub network: Option<Vec<String>>,
    /// `--network-any`: wide rules may be granted.
    pub network_any: bool,
    /// `--secret NAME[@HOST]`: exactly these; `None`: every secret the
    /// manifest names, to all its hosts.
    pub secrets: Option<Vec<String>>,
}

/// A granted mount, as the manifest names it: the operator grants "read-only
/// access to the workspace", and which folder is the workspace stays the
/// operator's choice at every start (`--workspace`, config), never the
/// model's. The current resolution is shown by `skills audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountGrant {
    /// `${workspace}`, `${skill_data}` or `${skill_dir}`.
    pub source: String,
    pub guest: String,
    pub access: Access,
    /// The resolved host path, as grants written by earlier versions pinned
    /// it: read and ignored, never written.
    #[serde(default, skip_serializing, rename = "host")]
    pub pinned_host: Option<PathBuf>,
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
                    guest: mount.guest.clone(),
                    access: mount.access,
                    pinned_host: None,
                })
                .collect(),
            env: requested.env.clone(),
            exec: requested.exec.clone(),
            network: default_destinations(&requested.network, false),
            // Each secret to the hosts the manifest names; a wide one (`*`)
            // only when the operator names the host.
            secrets: requested
                .network
                .secrets
                .iter()
                .map(|secret| SecretGrant {
                    name: secret.name.clone(),
                    hosts: named_hosts(&secret.hosts),
                })
                .filter(|secret| !secret.hosts.is_empty())
                .collect(),
            limits: requested.limits,
        }
    }

    /// Narrow the network part of this grant to the operator's `choices`;
    /// the notes say what the operator should know (wide rules left out,
    /// a wide grant). An error names the choice that cannot be granted.
    pub fn choose(
        mut self,
        choices: &GrantChoices,
        requested: &Capabilities,
    ) -> anyhow::Result<(Self, Vec<String>)> {
        let asked = &requested.network;
        let mut notes = Vec::new();
        let named_only: Vec<&NetworkRule> = asked
            .requested
            .iter()
            .filter(|rule| needs_naming(rule))
            .collect();
        match &choices.network {
            None if choices.network_any => {
                // The wide rules too; an address of this machine still only
                // by name.
                self.network = default_destinations(asked, true);
                notes.extend(named_only.iter().map(|rule| naming_note(rule, true)));
            }
            None => notes.extend(named_only.iter().map(|rule| naming_note(rule, false))),
            Some(chosen) => {
                let mut network = Vec::with_capacity(chosen.len());
                for text in chosen {
                    let rule = NetworkRule::parse(text, &[])
                        .map_err(|why| anyhow::anyhow!("--network {why}"))?;
                    if !asked.requested.iter().any(|r| r.covers_origin(&rule)) {
                        let asks = asked
                            .requested
                            .iter()
                            .map(|r| r.text.as_str())
                            .collect::<Vec<_>>()
                            .join(", ");
                        anyhow::bail!(
                            "--network {text}: the skill's manifest does not ask for it (it asks for {})",
                            if asks.is_empty() {
                                "no network access"
                            } else {
                                &asks
                            }
                        );
                    }
                    if rule.host.is_wide() {
                        anyhow::ensure!(
                            choices.network_any,
                            "--network {text} names every host; add --network-any to grant that"
                        );
                        notes.push(format!(
                            "warning: {text} is granted (--network-any): the skill may reach any such host"
                        ));
                    }
                    if !network.contains(&rule.text) {
                        network.push(rule.text);
                    }
                }
                self.network = network;
            }
        }
        if let Some(chosen) = &choices.secrets {
            let mut secrets: Vec<SecretGrant> = Vec::new();
            for choice in chosen {
                let (name, host) = match choice.split_once('@') {
                    Some((name, host)) => (name, Some(host)),
                    None => (choice.as_str(), None),
                };
                let Some(secret) = asked.secrets.iter().find(|s| s.name == name) else {
                    let names: Vec<&str> = asked.secrets.iter().map(|s| s.name.as_str()).collect();
                    anyhow::bail!(
                        "--secret {choice}: the skill's manifest names no secret {name:?} (it names {})",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    );
                };
                let hosts: Vec<String> = match host {
                    None => {
                        let named = named_hosts(&secret.hosts);
                        anyhow::ensure!(
                            !named.is_empty(),
                            "--secret {choice}: the manifest sends {name} to hosts you choose; \
                             name one: --secret {name}@HOST"
                        );
                        named
                    }
                    Some(host) => {
                        let pattern = HostPattern::parse(host)
                            .map_err(|why| anyhow::anyhow!("--secret {choice}: {why}"))?;
                        anyhow::ensure!(
                            !pattern.is_wide(),
                            "--secret {choice}: a secret is sent to named hosts, not to {host}"
                        );
                        anyhow::ensure!(
                            secret.hosts.iter().any(|h| h.covers(&pattern)),
                            "--secret {choice}: the manifest sends {name} only to {}",
                            secret
                                .hosts
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        vec![pattern.to_string()]
                    }
                };
                match secrets.iter_mut().find(|s| s.name == name) {
                    Some(granted) => granted.hosts.extend(hosts),
                    None => secrets.push(SecretGrant {
                        name: name.to_owned(),
                        hosts,
                    }),
                }
            }
            self.secrets = secrets;
        }
        Ok((self, notes))
    }

    /// The grant's network rules, parsed; an unreadable one (a hand edit)
    /// is an error naming it.
    pub fn network_rules(&self) -> Result<Vec<NetworkRule>, String> {
        self.network
            .iter()
            .map(|text| NetworkRule::parse(text, &[]).map_err(|why| format!("network grant {why}")))
            .collect()
    }

    fn covers_mount(&self, mount: &GrantedMount) -> bool {
        self.mounts.iter().any(|granted| {
            granted.source == mount.source.variable()
                && granted.guest == mount.guest
                && granted.access.allows(mount.access)
        })
    }
}

impl MountGrant {
    pub fn source(&self) -> Option<MountSource> {
        MountSource::from_variable(&self.source)
    }
}

/// Everything a skill asks for of the network, as a grant would write it
/// (wide destinations and methods included): what `skills info` and
/// `audit` show beside the operator's choice.
pub fn asked_network(
    asked: &crate::sandbox::policy::NetworkAccess,
) -> (Vec<String>, Vec<SecretGrant>) {
    let network = asked.requested.iter().map(ToString::to_string).collect();
    let secrets = asked
        .secrets
        .iter()
        .map(|secret| SecretGrant {
            name: secret.name.clone(),
            hosts: secret.hosts.iter().map(ToString::to_string).collect(),
        })
        .collect();
    (network, secrets)
}

/// The manifest's destinations a grant holds without the operator naming
/// them (the wide ones too with `--network-any`), each once, sorted.
fn default_destinations(
    asked: &crate::sandbox::policy::NetworkAccess,
    with_wide: bool,
) -> Vec<String> {
    asked
        .requested
        .iter()
        .filter(|rule| !needs_naming(rule) || (with_wide && rule.host.is_wide()))
        .map(|rule| rule.text.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What the operator is told of a rule the default left out, or (with
/// `--network-any`) granted whole.
fn naming_note(rule: &NetworkRule, network_any: bool) -> String {
    match (rule.host.is_wide(), network_any) {
        (true, true) => format!(
            "warning: {} is granted whole (--network-any): the skill may reach any such host",
            rule.text
        ),
        (true, false) => format!(
            "the manifest asks for {}: grant the hosts you choose with --network URL \
             (e.g. --network https://*.wikipedia.org), or all with --network-any",
            rule.text
        ),
        (false, _) => format!(
            "the manifest asks for {}, an address of this machine or its network: \
             grant it by naming it, --network URL",
            rule.text
        ),
    }
}

/// Whether a manifest's rule is granted only when the operator names it:
/// a wide one (`https://*`), or one for an internal address (loopback,
/// private, `localhost`), which would reach this machine's services.
fn needs_naming(rule: &NetworkRule) -> bool {
    rule.host.is_wide()
        || rule
            .host
            .ip()
            .is_some_and(crate::sandbox::policy::network::is_internal_address)
        || matches!(&rule.host, HostPattern::Exact(name) if name == "localhost" || name.ends_with(".localhost"))
}

/// The hosts of `hosts` named one by one, as grants write them: a secret
/// goes to `*.github.io` (where anyone may hold a name) only when the
/// operator names the host.
fn named_hosts(hosts: &[HostPattern]) -> Vec<String> {
    hosts
        .iter()
        .filter(|host| matches!(host, HostPattern::Exact(_)))
        .map(ToString::to_string)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skill::MountRoots;

    pub(super) fn skill_in(dir: &Path, manifest: &str, component: Option<&[u8]>) -> Skill {
        let folder = dir.join("demo");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("skill.toml"), manifest).unwrap();
        if let Some(bytes) = component {
            std::fs::write(folder.join("demo.wasm"), bytes).unwrap();
        }
        Skill::load(&folder).unwrap()
    }

    pub(super) const MANIFEST: &str = "[skill]\nname = \"demo\"\nversion = \"1.0.0\"\ndescription = \"d\"\ncomponent = \"demo.wasm\"\napi = \"^0.1\"\n\n[capabilities]\nmounts = [{ source = \"${workspace}\", guest = \"/workspace\", access = \"read-only\" }]\nenv = [\"TOKEN\"]\n";

    pub(super) fn roots(dir: &Path) -> MountRoots {
        MountRoots {
            workspace: dir.join("workspace"),
            skill_data: dir.join("skill-data"),
        }
    }

    /// What `skills grant` records for each choice of the operator, and
    /// what it refuses.
    #[test]
    fn network_choices_narrow_the_grant_table() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = format!(
            "{MANIFEST}network = [\"https://*\", \"https://api.github.com\", \"http://127.0.0.1:8080\"]\n\
             secrets = [{{ name = \"GH\", header = \"Authorization\", format = \"Bearer {{}}\", hosts = [\"api.github.com\", \"*.github.com\"] }}, \
             {{ name = \"ANY\", header = \"X-Key\", hosts = [\"*\"] }}]\n"
        );
        let skill = skill_in(dir.path(), &manifest, Some(b"bytes"));
        let requested = crate::skill::capabilities::requested(&skill, &roots(dir.path()));
        let hash = skill_hash(&skill).unwrap();
        let grant = || Grant::of(&skill, &hash, &requested, GrantedBy::Operator);
        let choose = |network: Option<&[&str]>, any: bool, secrets: Option<&[&str]>| {
            let choices = GrantChoices {
                network: network.map(|n| n.iter().map(|s| (*s).to_owned()).collect()),
                network_any: any,
                secrets: secrets.map(|n| n.iter().map(|s| (*s).to_owned()).collect()),
            };
            grant().choose(&choices, &requested)
        };

        // By default: the manifest's rules but the wide one and the one on
        // this machine, which notes explain; every secret to all its named
        // hosts.
        let (default, notes) = choose(None, false, None).unwrap();
        assert_eq!(default.network, ["https://api.github.com"]);
        assert!(
            notes[0].contains("the manifest asks for https://*: grant the hosts you choose"),
            "{notes:?}"
        );
        assert!(
            notes[1].contains("asks for http://127.0.0.1:8080, an address of this machine"),
            "{notes:?}"
        );
        let (named, _) = choose(Some(&["http://127.0.0.1:8080"]), false, None).unwrap();
        assert_eq!(named.network, ["http://127.0.0.1:8080"]);
        // `*.github.com` only when named: anyone may hold a name under a
        // suffix.
        assert_eq!(
            default.secrets,
            [SecretGrant {
                name: "GH".into(),
                hosts: vec!["api.github.com".into()]
            }]
        );
        let (any, notes) = choose(None, true, None).unwrap();
        assert!(any.network.contains(&"https://*".to_owned()));
        assert!(
            notes[0].starts_with("warning: https://* is granted whole"),
            "{notes:?}"
        );

        let (chosen, _) = choose(
            Some(&["https://*.wikipedia.org"]),
            false,
            Some(&["GH@api.github.com"]),
        )
        .unwrap();
        assert_eq!(chosen.network, ["https://*.wikipedia.org"]);
        assert_eq!(chosen.secrets[0].hosts, ["api.github.com"]);
        // A secret for hosts the operator chooses goes only where named.
        let (chosen, _) = choose(None, false, Some(&["ANY@api.github.com"])).unwrap();
        assert_eq!(
            chosen.secrets,
            [SecretGrant {
                name: "ANY".into(),
                hosts: vec!["api.github.com".into()]
            }]
        );
        let (chosen, _) = choose(Some(&["https://*"]), true, Some(&[])).unwrap();
        assert_eq!(chosen.network, ["https://*"]);
        assert!(chosen.secrets.is_empty());

        type Refusal<'a> = (Option<&'a [&'a str]>, bool, Option<&'a [&'a str]>, &'a str);
        let refusals: [Refusal<'_>; 7] = [
            (
                Some(&["https://*"]),
                false,
                None,
                "names every host; add --network-any",
            ),
            (
                Some(&["http://example.org"]),
                false,
                None,
                "the skill's manifest does not ask for it",
            ),
            (
                Some(&["http://127.0.0.1:9090"]),
                false,
                None,
                "does not ask for it",
            ),
            (
                None,
                false,
                Some(&["OTHER"]),
                "names no secret \"OTHER\" (it names GH, ANY)",
            ),
            (None, false, Some(&["ANY"]), "name one: --secret ANY@HOST"),
            (
                None,
                false,
                Some(&["ANY@*"]),
                "a secret is sent to named hosts, not to *",
            ),
            (
                None,
                false,
                Some(&["GH@example.org"]),
                "sends GH only to api.github.com, *.github.com",
            ),
        ];
        for (network, any, secrets, expected) in refusals {
            let error = choose(network, any, secrets).unwrap_err().to_string();
            assert!(error.contains(expected), "{network:?} {secrets:?}: {error}");
        }
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
            ["a file of the skill folder changed"]
        );
    }

    #[test]
    fn grants_that_pinned_a_host_path_still_load() {
        let text = "[skills.demo]\nversion = \"1.0.0\"\nhash = \"blake3:aa\"\ngranted_by = \"operator\"\n\
                    granted_at = \"2026-11-22T00:00:00Z\"\n\
                    mounts = [{ source = \"${workspace}\", host = \"/srv/old\", guest = \"/workspace\", access = \"read-only\" }]\n\
                    [skills.demo.limits]\nmemory_mb = 64\ntimeout_ms = 5000\nmax_output_bytes = 1048576\n";
        let grants: Grants = crate::toml_file::parse(text).unwrap();
        let mount = &grants.skills["demo"].mounts[0];
        assert_eq!(mount.source, "${workspace}");
        assert_eq!(mount.pinned_host.as_deref(), Some(Path::new("/srv/old")));
        // Written back, the grant names the template only.
        let written = toml::to_string(&grants).unwrap();
        assert!(!written.contains("/srv/old"), "{written}");
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
}
