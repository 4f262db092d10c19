//! Bundled-skill sync: the skills shipped with the binary or image are kept
//! in the data home's `skills/` without ever trampling the operator's work.
//!
//! `skills/.bundled.toml` records, per bundled skill, the hash of its tree as
//! last synced. On each start, for every shipped skill:
//!
//! | on disk / record | action |
//! |---|---|
//! | not recorded, absent | copy it; grant what it requests, as `bundled`, except env, read-write mounts and exec |
//! | not recorded, present | a user skill with that name: never overwrite, never record |
//! | recorded, absent | the user deleted it: never re-add |
//! | recorded, unchanged since sync, shipped copy changed | replace it; move the grant to the new hash if it asks no more and nothing an automatic grant may not give, otherwise leave it drifted |
//! | recorded, changed on disk | the user modified it: keep it, report it |
//!
//! Replacement goes through [`install`](super::install): a crash leaves the
//! old or the new copy, never a mix.
//!
//! Shipping a skill is a trust decision, so the folder of shipped skills is
//! only ever the one beside the binary or one the operator named on the
//! command line or in `config.toml` (never `.env`, see `app`). Even
//! then an automatic grant holds no environment variables, no read-write
//! mount and no exec rule: those wait for `talaria skills grant`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::grants::{self, Grant, GrantedBy, Grants, SkillState};
use super::{Access, Capabilities, MountRoots, Skill, install};
use crate::home::write_atomically;

pub const RECORD_FILE: &str = ".bundled.toml";

/// `skills/.bundled.toml`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Skill name → tree hash as last synced.
    #[serde(default)]
    pub skills: BTreeMap<String, String>,
}

impl Record {
    pub fn load(skills_dir: &Path) -> anyhow::Result<Self> {
        crate::toml_file::load_or_default(&skills_dir.join(RECORD_FILE))
    }

    /// Write the record. Callers save the grants first: a crash in between
    /// is repaired by the next sync (see `sync_one`).
    pub fn save(&self, skills_dir: &Path) -> anyhow::Result<()> {
        let mut text = String::from(
            "# Bundled skills as last synced (name = hash of the shipped tree).\n\
             # Written by Talaria; a skill listed here and missing from this folder\n\
             # was deleted on purpose and is not re-added.\n\n",
        );
        text.push_str(&toml::to_string(self)?);
        write_atomically(&skills_dir.join(RECORD_FILE), text.as_bytes(), 0o600)
    }
}

/// What sync did with one shipped skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Installed,
    /// Replaced by the shipped update; `regranted` when the grant moved to
    /// the new hash, otherwise the skill waits as drifted.
    Updated {
        regranted: bool,
    },
    KeptModified,
    KeptDeleted,
    /// A skill the user installed under a bundled name.
    KeptUserSkill,
    Failed(String),
}

impl Outcome {
    /// What sync did with bundled skill `name`, with the command that
    /// changes it where there is one.
    pub fn describe(&self, name: &str) -> String {
        match self {
            Self::Unchanged => "unchanged".into(),
            Self::Installed => "installed and granted as bundled".into(),
            Self::Updated { regranted: true } => {
                "updated; its grant was moved to the new version without review".into()
            }
            Self::Updated { regranted: false } => format!(
                "updated; it was not granted, asks for more than was granted, or asks for env, \
                 read-write mounts or exec, and waits for `talaria skills grant {name}`"
            ),
            Self::KeptModified => format!(
                "modified locally; kept (`talaria skills reset {name}` restores the shipped copy)"
            ),
            Self::KeptDeleted => {
                format!("deleted locally; not re-added (`talaria skills reset {name}` restores it)")
            }
            Self::KeptUserSkill => "a user skill has this name; left alone".into(),
            Self::Failed(why) => format!("not synced: {why}"),
        }
    }
}

/// Sync every skill folder of `shipped` into `skills_dir`, with the home's
/// writer lock held. Files are put in place first; the caller then saves
/// `grants` and finally the returned record, so a crash at any point leaves
/// a state the next sync completes.
pub fn sync(
    shipped: &Path,
    skills_dir: &Path,
    grants: &mut Grants,
    roots: &MountRoots,
) -> anyhow::Result<(Vec<(String, Outcome)>, Record)> {
    let mut record = Record::load(skills_dir)?;
    let mut outcomes = Vec::new();
    for entry in super::discover(shipped)? {
        let upstream = match entry {
            Ok(skill) => skill,
            Err(error) => {
                let name = error
                    .file
                    .parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned());
                outcomes.push((name.unwrap_or_default(), Outcome::Failed(error.to_string())));
                continue;
            }
        };
        let name = upstream.name().to_owned();
        let outcome = sync_one(&upstream, skills_dir, &mut record, grants, roots)
            .unwrap_or_else(|error| Outcome::Failed(format!("{error:#}")));
        outcomes.push((name, outcome));
    }
    Ok((outcomes, record))
}

fn sync_one(
    upstream: &Skill,
    skills_dir: &Path,
    record: &mut Record,
    grants: &mut Grants,
    roots: &MountRoots,
) -> anyhow::Result<Outcome> {
    let name = upstream.name();
    let live = skills_dir.join(name);
    let shipped_hash = install::tree_hash(&upstream.dir)?;
    let Some(recorded) = record.skills.get(name).cloned() else {
        if live.exists() {
            return Ok(Outcome::KeptUserSkill);
        }
        let skill = put_in_place(upstream, skills_dir)?;
        grant_as_bundled(&skill, grants, roots)?;
        record.skills.insert(name.to_owned(), shipped_hash);
        return Ok(Outcome::Installed);
    };
    if !live.exists() {
        return Ok(Outcome::KeptDeleted);
    }
    let on_disk = install::tree_hash(&live)?;
    if on_disk == shipped_hash {
        if recorded != shipped_hash {
            // Replaced by an earlier sync that stopped before recording it.
            record.skills.insert(name.to_owned(), shipped_hash);
            let skill = Skill::load(&live)?;
            let regranted = move_grant(&skill, grants, roots)?;
            return Ok(Outcome::Updated { regranted });
        }
        // The shipped copy as it was synced, but its bundled grant is pinned
        // to another hash: granted by a Talaria whose hash covered less of
        // the skill. The bytes are the shipped ones, so the grant follows.
        let skill = Skill::load(&live)?;
        if let Some(grant) = grants.skills.get(name)
            && grant.granted_by == GrantedBy::Bundled
            && grant.hash != skill.hash().full
        {
            let regranted = move_grant(&skill, grants, roots)?;
            return Ok(Outcome::Updated { regranted });
        }
        return Ok(Outcome::Unchanged);
    }
    if on_disk != recorded {
        return Ok(Outcome::KeptModified);
    }
    let skill = put_in_place(upstream, skills_dir)?;
    record.skills.insert(name.to_owned(), shipped_hash);
    let regranted = move_grant(&skill, grants, roots)?;
    Ok(Outcome::Updated { regranted })
}

/// Restore the shipped copy of one skill whatever happened to it locally
/// (`talaria skills reset`); saving as for [`sync`].
pub fn reset(
    upstream: &Skill,
    skills_dir: &Path,
    grants: &mut Grants,
    roots: &MountRoots,
) -> anyhow::Result<(Outcome, Record)> {
    let mut record = Record::load(skills_dir)?;
    let skill = put_in_place(upstream, skills_dir)?;
    record
        .skills
        .insert(skill.name().to_owned(), install::tree_hash(&upstream.dir)?);
    let outcome = if grants.skills.contains_key(skill.name()) {
        Outcome::Updated {
            regranted: move_grant(&skill, grants, roots)?,
        }
    } else {
        grant_as_bundled(&skill, grants, roots)?;
        Outcome::Installed
    };
    Ok((outcome, record))
}

fn put_in_place(upstream: &Skill, skills_dir: &Path) -> anyhow::Result<Skill> {
    let staged = install::staging_dir(skills_dir, upstream.name())?;
    let result = install::copy_tree(&upstream.dir, &staged)
        .and_then(|()| Skill::load(&staged).map_err(anyhow::Error::from))
        .and_then(|_| install::replace(&staged, &skills_dir.join(upstream.name())));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    result?;
    Ok(Skill::load(&skills_dir.join(upstream.name()))?)
}

fn grant_as_bundled(skill: &Skill, grants: &mut Grants, roots: &MountRoots) -> anyhow::Result<()> {
    let requested = crate::skill::capabilities::requested(skill, roots);
    grants.skills.insert(
        skill.name().to_owned(),
        Grant::of(
            skill,
            skill.hash(),
            &automatic_part(&requested),
            GrantedBy::Bundled,
        ),
    );
    Ok(())
}

/// What an automatic grant may hold of `requested`: read-only mounts and
/// limits. Environment variables (secrets), read-write mounts, native
/// commands, network destinations and secrets always wait for the operator
/// (a manifest's network rules are requests, not grants).
fn automatic_part(requested: &Capabilities) -> Capabilities {
    let mut automatic = requested.clone();
    automatic.env.clear();
    automatic.exec.clear();
    automatic.network.requested.clear();
    automatic.network.secrets.clear();
    automatic
        .mounts
        .retain(|mount| mount.access == Access::ReadOnly);
    automatic
}

/// Move an existing grant to the skill's new hash if the new version asks
/// for no more than it grants and for nothing an automatic grant may not
/// give; otherwise leave it (the skill drifts until the operator grants).
fn move_grant(skill: &Skill, grants: &mut Grants, roots: &MountRoots) -> anyhow::Result<bool> {
    let Some(previous) = grants.skills.get(skill.name()) else {
        return Ok(false);
    };
    let requested = crate::skill::capabilities::requested(skill, roots);
    // Judge the request against the old grant as if the hash had not changed.
    let same_hash = super::SkillHash {
        full: previous.hash.clone(),
        parts: skill.hash().parts.clone(),
    };
    let within =
        grants::assess(same_hash, requested.clone(), Some(previous)).state == SkillState::Granted;
    // Network destinations and secrets are the operator's choice, judged
    // against the manifest they were chosen for: a new manifest could drop
    // a method or path narrowing, or send a secret in another header. A
    // grant holding any waits for the operator.
    if !previous.network.is_empty() || !previous.secrets.is_empty() {
        return Ok(false);
    }
    let mut comparable = requested.clone();
    comparable.network.requested.clear();
    comparable.network.secrets.clear();
    if !within || automatic_part(&comparable) != comparable {
        return Ok(false);
    }
    let mut moved = Grant::of(skill, skill.hash(), &comparable, GrantedBy::Bundled);
    moved.moved_from = Some(format!(
        "v{} {} (granted by {} at {})",
        previous.version,
        grants::short_hash(&previous.hash),
        previous.granted_by,
        previous.granted_at
    ));
    grants.skills.insert(skill.name().to_owned(), moved);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::skill::grants::assess;

    struct World {
        _dir: tempfile::TempDir,
        shipped: PathBuf,
        skills: PathBuf,
        roots: MountRoots,
        grants: Grants,
    }

    impl World {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = |name: &str| {
                let p = dir.path().join(name);
                std::fs::create_dir_all(&p).unwrap();
                p
            };
            Self {
                shipped: path("shipped"),
                skills: path("home-skills"),
                roots: MountRoots {
                    workspace: path("workspace"),
                    skill_data: path("skill-data"),
                },
                grants: Grants::default(),
                _dir: dir,
            }
        }

        /// Ship (or update) skill `name` with `version` and extra env names.
        fn ship(&self, name: &str, version: &str, env: &[&str]) {
            let dir = self.shipped.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let env: Vec<String> = env.iter().map(|e| format!("{e:?}")).collect();
            std::fs::write(
                dir.join("skill.toml"),
                format!(
                    "[skill]\nname = \"{name}\"\nversion = \"{version}\"\ndescription = \"d\"\napi = \"^0.1\"\n\n[capabilities]\nenv = [{}]\n",
                    env.join(", ")
                ),
            )
            .unwrap();
            std::fs::write(dir.join("SKILL.md"), format!("{name} {version}\n")).unwrap();
        }

        /// Sync and save as the CLI does.
        fn sync(&mut self) -> Vec<(String, Outcome)> {
            let (outcomes, record) =
                sync(&self.shipped, &self.skills, &mut self.grants, &self.roots).unwrap();
            record.save(&self.skills).unwrap();
            outcomes
        }

        fn outcome(&mut self, name: &str) -> Outcome {
            self.sync().into_iter().find(|(n, _)| n == name).unwrap().1
        }

        fn live_version(&self, name: &str) -> String {
            Skill::load(&self.skills.join(name))
                .unwrap()
                .manifest
                .version
                .to_string()
        }

        fn state(&self, name: &str) -> SkillState {
            let skill = Skill::load(&self.skills.join(name)).unwrap();
            let requested = crate::skill::capabilities::requested(&skill, &self.roots);
            assess(
                skill.hash().clone(),
                requested,
                self.grants.skills.get(name),
            )
            .state
        }
    }

    #[test]
    fn a_new_bundled_skill_is_copied_and_granted_as_bundled() {
        let mut world = World::new();
        world.ship("notes", "1.0.0", &["NOTES_TOKEN"]);
        assert_eq!(world.outcome("notes"), Outcome::Installed);
        assert_eq!(world.live_version("notes"), "1.0.0");
        assert_eq!(world.grants.skills["notes"].granted_by, GrantedBy::Bundled);
        // A secret is never handed out without the operator.
        assert!(world.grants.skills["notes"].env.is_empty());
        assert_eq!(
            world.state("notes"),
            SkillState::Drifted(vec!["env NOTES_TOKEN is not granted".into()])
        );
        assert!(
            Record::load(&world.skills)
                .unwrap()
                .skills
                .contains_key("notes")
        );
        assert_eq!(world.outcome("notes"), Outcome::Unchanged);
    }

    #[test]
    fn an_update_asking_no_more_moves_the_grant_and_says_so() {
        let mut world = World::new();
        world.ship("notes", "1.0.0", &[]);
        world.sync();
        assert_eq!(world.state("notes"), SkillState::Granted);
        world.ship("notes", "1.1.0", &[]);
        assert_eq!(world.outcome("notes"), Outcome::Updated { regranted: true });
        assert_eq!(world.live_version("notes"), "1.1.0");
        let grant = &world.grants.skills["notes"];
        assert_eq!(grant.version, "1.1.0");
        let moved_from = grant.moved_from.as_deref().unwrap();
        assert!(
            moved_from.starts_with("v1.0.0 blake3:") && moved_from.contains("granted by bundled"),
            "{moved_from}"
        );
        assert_eq!(world.state("notes"), SkillState::Granted);
    }

    #[test]
    fn an_update_never_moves_a_grant_holding_env_without_the_operator() {
        let mut world = World::new();
        world.ship("notes", "1.0.0", &["A"]);
        world.sync();
        // The operator reviewed and granted the secret to version 1.0.0.
        let skill = Skill::load(&world.skills.join("notes")).unwrap();
        let requested = crate::skill::capabilities::requested(&skill, &world.roots);
        world.grants.skills.insert(
            "notes".into(),
            Grant::of(&skill, skill.hash(), &requested, GrantedBy::Operator),
        );
        assert_eq!(world.state("notes"), SkillState::Granted);
        // New code must not receive the secret without a new review.
        world.ship("notes", "1.1.0", &["A"]);
        assert_eq!(
            world.outcome("notes"),
            Outcome::Updated { regranted: false }
        );
        assert_eq!(world.grants.skills["notes"].version, "1.0.0");
        assert!(matches!(world.state("notes"), SkillState::Drifted(_)));
    }

    #[test]
    fn a_grant_from_an_older_hash_scheme_follows_the_unchanged_shipped_copy() {
        let mut world = World::new();
        world.ship("notes", "1.0.0", &[]);
        world.sync();
        let grant = world.grants.skills.get_mut("notes").unwrap();
        grant.hash = "blake3:00".into();
        grant.parts = None;
        assert!(matches!(world.state("notes"), SkillState::Drifted(_)));
        assert_eq!(world.outcome("notes"), Outcome::Updated { regranted: true });
        assert_eq!(world.state("notes"), SkillState::Granted);
    }

    #[test]
    fn an_update_asking_for_more_waits_for_the_operator() {
        let mut world = World::new();
        world.ship("notes", "1.0.0", &["A"]);
        world.sync();
        world.ship("notes", "2.0.0", &["A", "B"]);
        assert_eq!(
            world.outcome("notes"),
            Outcome::Updated { regranted: false }
        );
        assert_eq!(world.live_version("notes"), "2.0.0");
        assert_eq!(world.grants.skills["notes"].version, "1.0.0");
        assert!(matches!(world.state("notes"), SkillState::Drifted(_)));
    }

    /// A network skill: granted no destination at sync; once the operator
    /// chose some, an update waits for the operator (its manifest could
    /// loosen what they were chosen for).
    #[test]
    fn network_destinations_are_never_automatic() {
        let mut world = World::new();
        let ship = |world: &World, version: &str, methods: &str| {
            let dir = world.shipped.join("reader");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("skill.toml"),
                format!(
                    "[skill]\nname = \"reader\"\nversion = \"{version}\"\ndescription = \"d\"\napi = \"^0.1\"\n\n\
                     [capabilities]\nnetwork = [{{ url = \"https://*\", methods = [{methods}] }}, \"https://api.example.org\"]\n"
                ),
            )
            .unwrap();
            std::fs::write(dir.join("SKILL.md"), format!("reader {version}\n")).unwrap();
        };
        ship(&world, "1.0.0", "\"GET\"");
        world.sync();
        let grant = &world.grants.skills["reader"];
        assert!(grant.network.is_empty(), "{grant:?}");
        assert_eq!(world.state("reader"), SkillState::Granted);

        // Without destinations, an update moves the grant.
        ship(&world, "1.1.0", "\"GET\"");
        assert_eq!(
            world.outcome("reader"),
            Outcome::Updated { regranted: true }
        );

        // The operator chose a destination: the next update waits.
        world
            .grants
            .skills
            .get_mut("reader")
            .unwrap()
            .network
            .push("https://en.wikipedia.org".into());
        ship(&world, "1.2.0", "\"GET\", \"POST\"");
        assert_eq!(
            world.outcome("reader"),
            Outcome::Updated { regranted: false }
        );
        assert!(matches!(world.state("reader"), SkillState::Drifted(_)));
    }

    #[test]
    fn a_skill_modified_by_the_user_is_kept() {
        let mut world = World::new();
        world.ship("notes", "1.0.0", &[]);
        world.sync();
        std::fs::write(world.skills.join("notes/SKILL.md"), "my own instructions\n").unwrap();
        world.ship("notes", "1.1.0", &[]);
        assert_eq!(world.outcome("notes"), Outcome::KeptModified);
        assert_eq!(world.live_version("notes"), "1.0.0");
        assert_eq!(
            std::fs::read_to_string(world.skills.join("notes/SKILL.md")).unwrap(),
            "my own instructions\n"
        );

        // Reset restores the shipped copy.
        let upstream = Skill::load(&world.shipped.join("notes")).unwrap();
        let (outcome, record) =
            reset(&upstream, &world.skills, &mut world.grants, &world.roots).unwrap();
        record.save(&world.skills).unwrap();
        assert_eq!(outcome, Outcome::Updated { regranted: true });
        assert_eq!(world.live_version("notes"), "1.1.0");
        assert_eq!(world.outcome("notes"), Outcome::Unchanged);
    }

    #[test]
    fn a_skill_deleted_by_the_user_is_never_re_added() {
        let mut world = World::new();
        world.ship("notes", "1.0.0", &[]);
        world.sync();
        std::fs::remove_dir_all(world.skills.join("notes")).unwrap();
        world.ship("notes", "1.1.0", &[]);
        assert_eq!(world.outcome("notes"), Outcome::KeptDeleted);
        assert!(!world.skills.join("notes").exists());
    }

    #[test]
    fn a_user_skill_with_a_bundled_name_is_never_overwritten_nor_recorded() {
        let mut world = World::new();
        std::fs::create_dir_all(world.skills.join("notes")).unwrap();
        std::fs::write(
            world.skills.join("notes/skill.toml"),
            "[skill]\nname = \"notes\"\nversion = \"9.0.0\"\ndescription = \"mine\"\napi = \"^0.1\"\n",
        )
        .unwrap();
        world.ship("notes", "1.0.0", &[]);
        assert_eq!(world.outcome("notes"), Outcome::KeptUserSkill);
        assert_eq!(world.outcome("notes"), Outcome::KeptUserSkill);
        assert_eq!(world.live_version("notes"), "9.0.0");
        assert!(
            !Record::load(&world.skills)
                .unwrap()
                .skills
                .contains_key("notes")
        );
        assert!(!world.grants.skills.contains_key("notes"));
    }

    #[test]
    fn a_failed_copy_leaves_the_old_revision_whole() {
        let mut world = World::new();
        world.ship("notes", "1.0.0", &[]);
        world.sync();
        let before = install::tree_hash(&world.skills.join("notes")).unwrap();
        world.ship("notes", "1.1.0", &[]);
        // The copy of the new revision fails part-way (a symlink is refused).
        std::os::unix::fs::symlink("/etc/passwd", world.shipped.join("notes/zz-link")).unwrap();
        assert!(matches!(world.outcome("notes"), Outcome::Failed(_)));
        assert_eq!(
            install::tree_hash(&world.skills.join("notes")).unwrap(),
            before
        );
        assert!(!world.skills.join(".staging/notes").exists());
        std::fs::remove_file(world.shipped.join("notes/zz-link")).unwrap();
        assert_eq!(world.outcome("notes"), Outcome::Updated { regranted: true });
    }

    #[test]
    fn a_crash_at_any_step_is_completed_by_the_next_sync() {
        let mut world = World::new();
        world.ship("notes", "1.0.0", &[]);
        world.sync();
        // A crash while copying left a partial staging folder behind.
        let staging = world.skills.join(".staging/notes");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("skill.toml"), "[skill]\nname = \"notes\"\n").unwrap();
        world.ship("notes", "1.1.0", &[]);
        // A crash after the swap, before grants and record were saved.
        let mut unsaved = world.grants.clone();
        let _lost = sync(&world.shipped, &world.skills, &mut unsaved, &world.roots).unwrap();
        assert_eq!(
            world.live_version("notes"),
            "1.1.0",
            "the new copy is whole"
        );
        assert!(!staging.exists());
        // The next start finishes the job: grant moved, record updated.
        assert_eq!(world.outcome("notes"), Outcome::Updated { regranted: true });
        assert_eq!(world.state("notes"), SkillState::Granted);
        assert_eq!(world.outcome("notes"), Outcome::Unchanged);
    }
}
