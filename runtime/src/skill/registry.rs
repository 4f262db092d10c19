//! The live set of skills of one data home: discover the skill folders,
//! judge each against its grant, load the granted components into the
//! shared sandbox, and carry out the operator's actions (grant, revoke,
//! install, reset, bundled sync).
//!
//! Every entry point (the CLI, the gateway, doctor) goes through here, so
//! "is this skill granted" has one answer. The registry can be refreshed
//! while running: [`SkillRegistry::offered`] re-reads the skills directory
//! and `grants.toml` when either changed on disk, so a grant, a revoke or a
//! changed skill folder takes effect for the next turn without a restart;
//! unchanged skills keep their loaded components.
//!
//! Only the operator grants. The confirmation of a grant is a callback the
//! caller supplies (the CLI asks at a terminal; a dashboard shows a page);
//! nothing a skill or the model reaches can call it.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::Context;

use super::bundled::{self, Outcome};
use super::grants::{
    self, Assessment, Grant, GrantChoices, GrantedBy, Grants, SkillState, grant_diff,
};
use super::hash_cache::HashCache;
pub use super::offered::OfferedSkill;
use super::offered::{self, Loader, SkillComponent, ToolCache};
use super::{Discovered, ManifestError, MountRoots, Skill, capabilities, install};
use crate::home::{Home, LockError};
use crate::sandbox::policy::Capabilities;
use crate::sandbox::{LoadedSkill, Sandbox, SandboxConfig};

/// Reads an allowlisted environment variable for a skill (`.env` under the
/// process environment).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where a registry finds its skills and what it needs to run them.
pub struct RegistryConfig {
    pub home: Home,
    /// Where skills are read from (the home's `skills/` unless told
    /// otherwise).
    pub skills_dir: PathBuf,
    pub roots: MountRoots,
    /// The sandbox every skill of this registry runs in, created on first
    /// use (commands that load no component never pay for an engine).
    pub sandbox: SandboxConfig,
    pub env: EnvLookup,
    /// Where skills' allowed native commands go (the approvals and the
    /// backend); `None`: every `exec` is denied.
    pub native: Option<Arc<dyn crate::sandbox::native::NativeCommands>>,
    /// What skills' outgoing HTTP requests are scanned with, and the ports
    /// they treat as internal; `None`: the credential shapes only.
    pub network: Option<NetworkHooks>,
}

/// What skills' outgoing requests need from the application.
#[derive(Clone)]
pub struct NetworkHooks {
    /// The leak scanner of the moment (it changes with the grants).
    pub scanner: Arc<dyn Fn() -> Arc<crate::leak_scan::LeakScanner> + Send + Sync>,
    /// The gateway's and the dashboard's ports.
    pub protected_ports: Arc<[u16]>,
    /// Variables never sent as a skill's secret, whatever a grant says:
    /// the model's key, the gateway's key, the backend's variables.
    pub reserved_secrets: Arc<[String]>,
}

pub struct SkillRegistry {
    home: Home,
    skills_dir: PathBuf,
    roots: MountRoots,
    sandbox: Arc<SharedSandbox>,
    env: EnvLookup,
    native: Option<Arc<dyn crate::sandbox::native::NativeCommands>>,
    network: Option<NetworkHooks>,
    hashes: HashCache,
    tools: ToolCache,
    offered: tokio::sync::Mutex<Option<OfferedSet>>,
}

/// A skill as the operator sees it.
// A handful of entries live for one command; boxing buys nothing here.
#[allow(clippy::large_enum_variant)]
pub enum SkillEntry {
    Invalid(ManifestError),
    Known {
        skill: Skill,
        assessment: Assessment,
        /// The loaded component when the skill is granted, has one, and
        /// loading was asked for.
        loaded: Option<Result<Arc<LoadedSkill>, String>>,
    },
}

/// The skills offered, and what they were read from.
struct OfferedSet {
    fingerprint: Fingerprint,
    /// What each valid skill folder's manifest said about the files it
    /// reads, for the next fingerprint.
    facts: HashMap<PathBuf, FolderFacts>,
    skills: Arc<[OfferedSkill]>,
    /// Components by skill name, with the hash and capabilities they were
    /// offered for: reused (loaded or not) when neither changed.
    components: HashMap<String, (String, Capabilities, Arc<SkillComponent>)>,
}

/// What a grant would record, for the operator to confirm.
pub struct GrantRequest<'a> {
    pub skill: &'a Skill,
    pub grant: &'a Grant,
    /// What the manifest requests, host paths resolved as of this start.
    pub requested: &'a Capabilities,
    pub previous: Option<&'a Grant>,
    /// `+`/`-`/`~` lines against the previous grant.
    pub changes: Vec<String>,
    /// What the operator should know of the network part (wide rules left
    /// out or granted).
    pub notes: Vec<String>,
}

pub enum GrantOutcome {
    Granted,
    /// The skill was already granted exactly this.
    Unchanged,
    /// The operator said no.
    Declined,
}

/// Why an operator action was refused before anything changed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No skill (and, for revoke, no grant) by that name; lists those that
    /// exist, so a typo is obvious.
    #[error("no skill named {name:?} in {}; skills: {}", dir.display(), if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    NoSuchSkill {
        name: String,
        dir: PathBuf,
        known: Vec<String>,
    },
    #[error(transparent)]
    Invalid(#[from] ManifestError),
}

impl SkillRegistry {
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            home: config.home.clone(),
            skills_dir: config.skills_dir,
            roots: config.roots,
            sandbox: Arc::new(SharedSandbox::new(config.sandbox)),
            env: config.env,
            native: config.native,
            network: config.network,
            hashes: HashCache::new(config.home.root().join("cache").join("component-hashes")),
            tools: ToolCache::new(config.home.root().join("cache").join("component-tools")),
            offered: tokio::sync::Mutex::new(None),
        }
    }

    pub fn skills_dir(&self) -> &Path {
        &self.skills_dir
    }

    pub fn roots(&self) -> &MountRoots {
        &self.roots
    }

    /// The shared sandbox, created on first use.
    pub fn sandbox(&self) -> anyhow::Result<&Arc<Sandbox>> {
        self.sandbox.get()
    }

    pub fn grants(&self) -> anyhow::Result<Grants> {
        Grants::load(&self.home.grants_file())
    }

    /// Every skill folder, sorted by name; broken ones are reported.
    /// Components are not read when their hash is remembered (see
    /// [`HashCache`]).
    pub fn discover(&self) -> anyhow::Result<Vec<Discovered>> {
        super::discover_with(&self.skills_dir, Some(&self.hashes))
    }

    /// The skill named `name`, or a usage error listing the names that exist.
    pub fn find(&self, name: &str) -> Result<Skill, ActionError> {
        match super::find_with(&self.skills_dir, name, Some(&self.hashes)) {
            Ok(Some(skill)) => Ok(skill),
            Ok(None) => Err(self.no_such_skill(name)),
            Err(error) => match error.downcast::<ManifestError>() {
                Ok(invalid) => Err(ActionError::Invalid(invalid)),
                Err(_) => Err(self.no_such_skill(name)),
            },
        }
    }

    fn no_such_skill(&self, name: &str) -> ActionError {
        let mut known: Vec<String> = std::fs::read_dir(&self.skills_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| !install::is_skipped(name))
            .collect();
        known.sort();
        ActionError::NoSuchSkill {
            name: crate::untrusted_text::sanitize(name, 128, false),
            dir: self.skills_dir.clone(),
            known,
        }
    }

    /// Judge `skill` against the grants: the one answer to "is this skill
    /// granted" that every command and doctor use.
    pub fn assess(&self, skill: &Skill, grants: &Grants) -> Assessment {
        grants::assess(
            skill.hash().clone(),
            capabilities::requested(skill, &self.roots),
            grants.skills.get(skill.name()),
        )
    }

    /// Load a granted skill's component with its effective capabilities,
    /// and remember its tools for the next start.
    pub async fn load(
        &self,
        skill: &Skill,
        effective: Capabilities,
    ) -> anyhow::Result<LoadedSkill> {
        let loaded = offered::load(&self.loader(skill, effective)?).await?;
        self.remember_tools(skill, &loaded);
        Ok(loaded)
    }

    fn loader(&self, skill: &Skill, effective: Capabilities) -> anyhow::Result<Loader> {
        Ok(Loader {
            skill: skill.clone(),
            effective,
            sandbox: Arc::clone(&self.sandbox),
            env: Arc::clone(&self.env),
            native: self.native.clone(),
            network: self.network.clone(),
        })
    }

    fn remember_tools(&self, skill: &Skill, loaded: &LoadedSkill) {
        if let Some(hash) = &skill.hash().parts.component {
            self.tools.put(hash, loaded.tools());
        }
    }

    /// Check that the component loads with this host, giving it nothing;
    /// this also compiles it into the cache and remembers its tools, so the
    /// first call after an install or a grant starts fast.
    pub async fn validate_component(&self, skill: &Skill) -> anyhow::Result<()> {
        if let Some(source) = skill.component_source() {
            let source = source.with_context(|| format!("skill {}", skill.label()))?;
            let loaded = self
                .sandbox()?
                .load(source, capabilities::for_validation(skill))
                .await?;
            self.remember_tools(skill, &loaded);
        }
        Ok(())
    }

    /// Every skill with its state; granted components are loaded when
    /// `load` is true.
    pub async fn entries(&self, load: bool) -> anyhow::Result<Vec<SkillEntry>> {
        let grants = self.grants()?;
        let mut entries = Vec::new();
        for discovered in self.discover()? {
            let skill = match discovered {
                Ok(skill) => skill,
                Err(error) => {
                    entries.push(SkillEntry::Invalid(error));
                    continue;
                }
            };
            let assessment = self.assess(&skill, &grants);
            let loaded = match &assessment.effective {
                Some(effective) if load && skill.manifest.component.is_some() => Some(
                    self.load(&skill, effective.clone())
                        .await
                        .map(Arc::new)
                        .map_err(|e| format!("{e:#}")),
                ),
                _ => None,
            };
            entries.push(SkillEntry::Known {
                skill,
                assessment,
                loaded,
            });
        }
        Ok(entries)
    }

    /// The granted skills to offer the model now. Re-reads the skills
    /// directory and the grants only when something changed on disk; a
    /// skill whose hash and capabilities are unchanged keeps its component.
    /// Components are not loaded here when their tools are known: a skill
    /// is loaded at the first call of one of its tools. Those whose tools
    /// are not known yet are loaded now, in parallel.
    pub async fn offered(&self) -> anyhow::Result<Arc<[OfferedSkill]>> {
        let mut offered = self.offered.lock().await;
        if let Some(current) = offered.as_ref()
            && current.fingerprint == self.fingerprint(&current.facts)
        {
            return Ok(Arc::clone(&current.skills));
        }
        let mut previous = offered.take().map(|set| set.components).unwrap_or_default();
        let grants = self.grants()?;
        let mut facts = HashMap::new();
        let mut granted = Vec::new();
        for discovered in self.discover()? {
            let Ok(skill) = discovered else {
                continue;
            };
            facts.insert(
                skill.dir.clone(),
                FolderFacts {
                    component: skill.component_path().map(Path::to_owned),
                    mounts_own_folder: skill.hash().parts.folder.is_some(),
                },
            );
            if let Some(effective) = self.assess(&skill, &grants).effective {
                granted.push((skill, effective));
            }
        }
        // Components: kept, offered from their remembered tools, or loaded
        // now (all at once: compiling is what takes time).
        let mut components: Vec<Option<Arc<SkillComponent>>> = Vec::new();
        let mut to_load = tokio::task::JoinSet::new();
        for (index, (skill, effective)) in granted.iter().enumerate() {
            let Some(component_hash) = skill.hash().parts.component.clone() else {
                components.push(None);
                continue;
            };
            let kept = previous
                .remove(skill.name())
                .filter(|(hash, capabilities, _)| {
                    *hash == skill.hash().full && capabilities == effective
                });
            let component = match kept {
                Some((_, _, component)) => Some(component),
                None => match self.tools.get(&component_hash) {
                    Some(tools) => Some(Arc::new(SkillComponent::lazy(
                        tools,
                        self.loader(skill, effective.clone())?,
                    ))),
                    None => {
                        let loader = self.loader(skill, effective.clone())?;
                        to_load.spawn(async move { (index, offered::load(&loader).await) });
                        None
                    }
                },
            };
            components.push(component);
        }
        while let Some(joined) = to_load.join_next().await {
            let (index, outcome) =
                joined.map_err(|e| anyhow::anyhow!("a load task failed: {e}"))?;
            let skill = &granted[index].0;
            match outcome {
                Ok(loaded) => {
                    self.remember_tools(skill, &loaded);
                    components[index] = Some(Arc::new(SkillComponent::loaded(loaded)));
                }
                Err(error) => tracing::warn!(skill = skill.name(), "not offered: {error:#}"),
            }
        }
        let mut skills = Vec::new();
        let mut kept_components = HashMap::new();
        for ((skill, effective), component) in granted.into_iter().zip(components) {
            if skill.manifest.component.is_some() && component.is_none() {
                // It failed to load; already reported.
                continue;
            }
            if let Some(component) = &component {
                kept_components.insert(
                    skill.name().to_owned(),
                    (skill.hash().full.clone(), effective, Arc::clone(component)),
                );
            }
            skills.push(OfferedSkill {
                name: skill.name().to_owned(),
                description: skill.description(),
                instructions: skill.instructions().map(str::to_owned),
                files: skill.contents().files().cloned(),
                loaded: component,
            });
        }
        let skills: Arc<[OfferedSkill]> = skills.into();
        // Taken after reading: a change made while reading shows as a
        // difference next time, never as an unnoticed one.
        let fingerprint = self.fingerprint(&facts);
        *offered = Some(OfferedSet {
            fingerprint,
            facts,
            skills: Arc::clone(&skills),
            components: kept_components,
        });
        Ok(skills)
    }

    /// What the offered set was read from: `grants.toml`, the skills
    /// directory, and each file a skill is read from, by inode, size and
    /// change time. Cheap (a few `stat`s per skill, no parsing) so it can run
    /// every turn: which component a folder uses is taken from `facts`,
    /// learnt when the set was read; a changed manifest changes its own
    /// stamp first.
    fn fingerprint(&self, facts: &HashMap<PathBuf, FolderFacts>) -> Fingerprint {
        let mut files = vec![stat(&self.home.grants_file()), stat(&self.skills_dir)];
        let mut folders: Vec<PathBuf> = std::fs::read_dir(&self.skills_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| !install::is_skipped(&entry.file_name().to_string_lossy()))
            .map(|entry| entry.path())
            .collect();
        folders.sort();
        for folder in folders {
            files.push(stat(&folder));
            files.push(stat(&folder.join(super::MANIFEST_FILE)));
            files.push(stat(&folder.join(super::INSTRUCTIONS_FILE)));
            if let Some(facts) = facts.get(&folder) {
                if let Some(component) = &facts.component {
                    files.push(stat(component));
                }
                if facts.mounts_own_folder {
                    files.push(tree_stamp(&folder));
                }
            }
        }
        Fingerprint(files)
    }

    /// Grants whose skill folder is gone (removed by hand, or a skills
    /// directory that changed): they grant nothing, but an operator should
    /// see and clear them (`talaria skills revoke NAME`).
    pub fn orphaned_grants<'a>(&self, grants: &'a Grants) -> Vec<(&'a str, &'a Grant)> {
        grants
            .skills
            .iter()
            .filter(|(name, _)| std::fs::symlink_metadata(self.skills_dir.join(name)).is_err())
            .map(|(name, grant)| (name.as_str(), grant))
            .collect()
    }

    /// Why `skill` may not run, or `None` when it is granted. The caller
    /// adds the commands that fix it, written the way its user runs them.
    pub fn refusal(skill: &Skill, state: &SkillState) -> Option<String> {
        match state {
            SkillState::Granted => None,
            SkillState::Pending => Some(format!(
                "skill {} is pending: it has never been granted",
                skill.label()
            )),
            SkillState::Drifted(reasons) => Some(format!(
                "skill {} is drifted ({})",
                skill.label(),
                reasons.join("; ")
            )),
        }
    }

    /// Grant `name` what its manifest requests, narrowed by the operator's
    /// `choices` (network destinations, secrets), pinned to its hash, once
    /// `confirm` (which sees what would be recorded) says yes.
    pub async fn grant(
        &self,
        name: &str,
        choices: &GrantChoices,
        confirm: impl FnOnce(&GrantRequest<'_>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<GrantOutcome> {
        let _lock = self.home.lock(&format!("talaria skills grant {name}"))?;
        let skill = self.find(name)?;
        // A component that does not load is not worth granting.
        self.validate_component(&skill)
            .await
            .context("refusing to grant a skill whose component does not load")?;
        let mut all = self.grants()?;
        let assessment = self.assess(&skill, &all);
        let previous = all.skills.get(name).cloned();
        let (grant, notes) = Grant::of(
            &skill,
            &assessment.hash,
            &assessment.requested,
            GrantedBy::Operator,
        )
        .choose(choices, &assessment.requested)
        // "refusing to grant": the dashboard answers 400, as for a bad component.
        .with_context(|| format!("refusing to grant {}", skill.label()))?;
        let changes = previous
            .as_ref()
            .map(|previous| grant_diff(previous, &grant))
            .unwrap_or_default();
        if assessment.state == SkillState::Granted && previous.is_some() && changes.is_empty() {
            return Ok(GrantOutcome::Unchanged);
        }
        let request = GrantRequest {
            skill: &skill,
            grant: &grant,
            requested: &assessment.requested,
            previous: previous.as_ref(),
            changes,
            notes,
        };
        if !confirm(&request)? {
            return Ok(GrantOutcome::Declined);
        }
        all.skills.insert(name.to_owned(), grant);
        all.save(&self.home.grants_file())?;
        Ok(GrantOutcome::Granted)
    }

    /// Remove the grant of `name`; returns it, or `None` when the skill
    /// exists but has no grant. Also clears the grant of a skill whose folder
    /// was removed. A name that is neither a skill nor a grant is an error.
    pub fn revoke(&self, name: &str) -> anyhow::Result<Option<Grant>> {
        let _lock = self.home.lock(&format!("talaria skills revoke {name}"))?;
        let mut all = self.grants()?;
        match all.skills.remove(name) {
            Some(grant) => {
                all.save(&self.home.grants_file())?;
                Ok(Some(grant))
            }
            None => {
                self.find(name)?;
                Ok(None)
            }
        }
    }

    /// Copy the skill folder at `source` into the skills directory after
    /// validating the copy; the previous revision stays in place and running
    /// unless the new one is complete and valid.
    ///
    /// Installing is the operator's act: a skill that asks for nothing
    /// beyond being read (no component, no mount, variable or command, as
    /// every Agent Skills folder) is granted as installed, pinned to the
    /// hash of every file of it, so a later change drifts it like any other
    /// skill. A skill asking for more stays pending until `skills grant`.
    pub async fn install(&self, source: &Path) -> anyhow::Result<Installed> {
        let candidate = Skill::load(source)?;
        let name = candidate.name().to_owned();
        let _lock = self
            .home
            .lock(&format!("talaria skills install {}", source.display()))?;
        let staged = install::staging_dir(&self.skills_dir, &name)?;
        let outcome = self.stage_and_replace(source, &staged, &name).await;
        if outcome.is_err() {
            let _ = std::fs::remove_dir_all(&staged);
        }
        // The staged copy is the source's bytes: an error names the file the
        // operator can fix, never the staging folder that is already gone.
        let (staged_hash, skill) = outcome.map_err(|error| {
            anyhow::anyhow!(
                "{}",
                format!("{error:#}")
                    .replace(&staged.display().to_string(), &source.display().to_string())
            )
        })?;
        let mut grants = self.grants()?;
        let mut assessment = self.assess(&skill, &grants);
        // Granted as validated: the live folder must hash as the copy did.
        let granted_now = skill.asks_nothing()
            && assessment.state != SkillState::Granted
            && skill.hash() == &staged_hash;
        if granted_now {
            let grant = Grant::of(
                &skill,
                &assessment.hash,
                &assessment.requested,
                GrantedBy::Operator,
            );
            grants.skills.insert(name, grant);
            grants.save(&self.home.grants_file())?;
            assessment = self.assess(&skill, &grants);
        }
        Ok(Installed {
            skill,
            state: assessment.state,
            granted_now,
        })
    }

    async fn stage_and_replace(
        &self,
        source: &Path,
        staged: &Path,
        name: &str,
    ) -> anyhow::Result<(super::SkillHash, Skill)> {
        install::copy_tree(source, staged)?;
        let skill = Skill::load(staged)?;
        self.validate_component(&skill)
            .await
            .context("the skill was not installed")?;
        let live = self.skills_dir.join(name);
        install::replace(staged, &live)?;
        Ok((skill.hash().clone(), Skill::load(&live)?))
    }

    /// Restore the shipped copy of bundled skill `name` from `shipped`.
    pub fn reset(&self, shipped: &Path, name: &str) -> anyhow::Result<Outcome> {
        let upstream = super::find(shipped, name)?.ok_or_else(|| {
            anyhow::anyhow!(
                "{name:?} is not a bundled skill (see {})",
                shipped.display()
            )
        })?;
        let _lock = self.home.lock(&format!("talaria skills reset {name}"))?;
        let skills_dir = self.home.skills_dir();
        let mut all = self.grants()?;
        let (outcome, record) = bundled::reset(&upstream, &skills_dir, &mut all, &self.roots)?;
        all.save(&self.home.grants_file())?;
        record.save(&skills_dir)?;
        Ok(outcome)
    }

    /// Bring the skills shipped in `shipped` into the home (see
    /// [`bundled`]). Skipped while another process holds the writer lock:
    /// that one syncs. Writes only what changed.
    pub fn sync_bundled(&self, shipped: &Path) -> anyhow::Result<Vec<(String, Outcome)>> {
        if !shipped.is_dir() {
            tracing::warn!(dir = %shipped.display(), "bundled skills folder not found; nothing synced");
            return Ok(Vec::new());
        }
        let _lock = match self.home.lock("talaria (bundled-skill sync)") {
            Ok(lock) => lock,
            Err(LockError::Held { .. } | LockError::HeldByUnknown { .. }) => {
                tracing::debug!(
                    "another talaria process holds the home; skipping bundled-skill sync"
                );
                return Ok(Vec::new());
            }
            Err(error) => return Err(error.into()),
        };
        let skills_dir = self.home.skills_dir();
        let before = (self.grants()?, bundled::Record::load(&skills_dir)?);
        let mut all = before.0.clone();
        let (outcomes, record) = bundled::sync(shipped, &skills_dir, &mut all, &self.roots)?;
        if all != before.0 {
            all.save(&self.home.grants_file())?;
        }
        if record != before.1 {
            record.save(&skills_dir)?;
        }
        for (name, outcome) in &outcomes {
            match outcome {
                Outcome::Unchanged | Outcome::KeptDeleted => {
                    tracing::debug!(skill = name, "bundled: {}", outcome.describe(name))
                }
                Outcome::Installed => {
                    tracing::info!(skill = name, "bundled: {}", outcome.describe(name))
                }
                _ => tracing::warn!(skill = name, "bundled: {}", outcome.describe(name)),
            }
        }
        Ok(outcomes)
    }

    /// Delete the skill folder `name` (valid or not) and revoke its grant,
    /// once `confirm` (which sees what will be done) says yes. Its data
    /// directory is deleted too when `purge_data`, and kept otherwise. A
    /// bundled skill removed this way is recorded as deleted by the user:
    /// the bundled sync does not add it back. `None`: the operator said no,
    /// and nothing changed.
    pub fn remove(
        &self,
        name: &str,
        purge_data: bool,
        confirm: impl FnOnce(&RemoveRequest<'_>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Option<Removed>> {
        let _lock = self.home.lock(&format!("talaria skills remove {name}"))?;
        let dir = self.skills_dir.join(name);
        if !super::is_skill_folder(name, &dir) {
            return Err(self.no_such_skill(name).into());
        }
        let skill = Skill::load(&dir).ok();
        let mut all = self.grants()?;
        let data_dir = self.roots.skill_data.join(name);
        let data = data_dir
            .is_dir()
            .then(|| (data_dir.as_path(), crate::sandbox::data_usage(&data_dir)));
        let request = RemoveRequest {
            name,
            dir: &dir,
            skill: skill.as_ref(),
            grant: all.skills.get(name),
            data,
            purge_data,
            bundled: self.is_bundled_copy(name)?,
        };
        if !confirm(&request)? {
            return Ok(None);
        }
        // The grant first: a crash after it leaves a skill that is pending,
        // never a grant waiting for whatever is installed under the name next.
        let revoked = all.skills.remove(name);
        if revoked.is_some() {
            all.save(&self.home.grants_file())?;
        }
        // Out of sight in one rename (discovery skips `.staging`), then deleted.
        let doomed = install::staging_dir(&self.skills_dir, name)?;
        std::fs::rename(&dir, &doomed)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
        std::fs::remove_dir_all(&doomed)
            .with_context(|| format!("cannot delete {}", doomed.display()))?;
        let data = match data {
            Some((dir, _)) if purge_data => {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("cannot delete {}", dir.display()))?;
                RemovedData::Purged(dir.to_owned())
            }
            Some((dir, bytes)) => RemovedData::Kept(dir.to_owned(), bytes),
            None => RemovedData::None,
        };
        Ok(Some(Removed { revoked, data }))
    }

    /// Whether skill `name` of this registry is the home's copy of a
    /// bundled skill (listed in `skills/.bundled.toml`).
    fn is_bundled_copy(&self, name: &str) -> anyhow::Result<bool> {
        let home_skills = self.home.skills_dir();
        let same_dir = match (home_skills.canonicalize(), self.skills_dir.canonicalize()) {
            (Ok(home), Ok(ours)) => home == ours,
            _ => false,
        };
        Ok(same_dir
            && bundled::Record::load(&home_skills)?
                .skills
                .contains_key(name))
    }
}

/// The one sandbox of a registry, created when a component is first loaded:
/// an engine and its instance pool are not free, and a start that loads no
/// component (every skill's tools known) should not pay for them.
pub struct SharedSandbox {
    config: SandboxConfig,
    sandbox: OnceLock<Arc<Sandbox>>,
}

impl SharedSandbox {
    fn new(config: SandboxConfig) -> Self {
        Self {
            config,
            sandbox: OnceLock::new(),
        }
    }

    pub fn get(&self) -> anyhow::Result<&Arc<Sandbox>> {
        if let Some(sandbox) = self.sandbox.get() {
            return Ok(sandbox);
        }
        let sandbox = Arc::new(Sandbox::new(self.config.clone())?);
        // Another thread may have won the race; either engine works, one is kept.
        Ok(self.sandbox.get_or_init(|| sandbox))
    }
}

/// The files a skill folder's manifest names.
struct FolderFacts {
    component: Option<PathBuf>,
    mounts_own_folder: bool,
}

/// Identity and change stamp of the files the offered set was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<Option<Stamp>>);

/// Device, inode, size, change time (seconds, nanoseconds) of one file.
type Stamp = (u64, u64, u64, i64, i64);

fn stat(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::symlink_metadata(path).ok()?;
    Some((
        metadata.dev(),
        metadata.ino(),
        metadata.size(),
        metadata.ctime(),
        metadata.ctime_nsec(),
    ))
}

/// One stamp for a whole folder: the latest change time and the number of
/// entries (bounded walk).
fn tree_stamp(dir: &Path) -> Option<Stamp> {
    let mut latest = (0i64, 0i64);
    let mut entries = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in read.flatten() {
            entries += 1;
            if entries > 100_000 {
                return None;
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            latest = latest.max((metadata.ctime(), metadata.ctime_nsec()));
            if metadata.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Some((0, 0, entries, latest.0, latest.1))
}

/// What [`SkillRegistry::install`] did.
pub struct Installed {
    pub skill: Skill,
    pub state: SkillState,
    /// The skill asks for nothing, so installing it granted it.
    pub granted_now: bool,
}

/// What [`SkillRegistry::remove`] will do, for the operator to confirm.
pub struct RemoveRequest<'a> {
    pub name: &'a str,
    /// The folder that will be deleted.
    pub dir: &'a Path,
    /// The skill as read; `None` when its manifest is invalid.
    pub skill: Option<&'a Skill>,
    /// The grant that will be revoked.
    pub grant: Option<&'a Grant>,
    /// The skill's data directory and the bytes it holds, when it exists.
    pub data: Option<(&'a Path, u64)>,
    pub purge_data: bool,
    /// The home's copy of a bundled skill: the sync will not add it back.
    pub bundled: bool,
}

/// What [`SkillRegistry::remove`] did.
pub struct Removed {
    /// The grant that was revoked.
    pub revoked: Option<Grant>,
    pub data: RemovedData,
}

/// What became of a removed skill's data directory.
pub enum RemovedData {
    /// It had none.
    None,
    /// Kept, holding this many bytes.
    Kept(PathBuf, u64),
    Purged(PathBuf),
}
