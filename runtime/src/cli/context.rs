//! What every command starts from: the data home (bootstrapped), the
//! environment with `.env`, the effective configuration, and where skills
//! and mounts live.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::{Config, ConfigFile, Environment, Flags, LogFormat};
use crate::home::{Home, LockError};
use crate::sandbox::{LoadedSkill, PoolSize, Sandbox, SandboxConfig};
use crate::skill::bundled::{self, Outcome};
use crate::skill::grants::{self, Assessment, Grants, SkillState};
use crate::skill::{self, Capabilities, ManifestError, MountRoots, Skill};

use super::GlobalArgs;

pub(crate) struct Context {
    pub home: Home,
    pub env: Environment,
    pub config: Config,
    pub skills_dir: PathBuf,
    pub roots: MountRoots,
    /// Where the skills shipped with this binary or image are.
    pub bundled_dir: Option<PathBuf>,
}

/// A skill as the operator sees it.
// A handful of entries live for one command; boxing buys nothing here.
#[allow(clippy::large_enum_variant)]
pub(crate) enum SkillEntry {
    Invalid(ManifestError),
    Known {
        skill: Skill,
        assessment: Assessment,
        /// The loaded component when the skill is granted and has one.
        loaded: Option<Result<Box<LoadedSkill>, String>>,
    },
}

impl Context {
    pub fn new(global: &GlobalArgs) -> anyhow::Result<Self> {
        let root = match &global.home {
            Some(root) => root.clone(),
            None => Home::default_root()?,
        };
        let home = Home::at(root);
        home.bootstrap()
            .with_context(|| format!("cannot prepare the data home {}", home.root().display()))?;
        let env = Environment::load(&home)?;
        let file = ConfigFile::load(&home.config_file())?;
        let flags = Flags {
            workspace: global.workspace.clone(),
            log: global.log.clone(),
            bundled_skills: global.bundled_skills.clone(),
        };
        let config = Config::resolve(&home, file, &env, &flags)?;
        init_logging(&config.log_level.value, config.log_format.value);

        let skills_dir = global
            .skills_dir
            .clone()
            .or_else(|| env.get("TALARIA_SKILLS_DIR").map(PathBuf::from))
            .unwrap_or_else(|| home.skills_dir());
        let workspace = canonical(
            &config.workspace.value,
            &format!("workspace ({})", config.workspace.source),
        )?;
        let skill_data = canonical(&home.skill_data_dir(), "skill-data directory")?;
        if env.get_from_process("TALARIA_BUNDLED_SKILLS").is_none()
            && env.get("TALARIA_BUNDLED_SKILLS").is_some()
        {
            tracing::warn!(
                "TALARIA_BUNDLED_SKILLS in .env is ignored: skills in that folder would be granted \
                 without review, so only --bundled-skills, the process environment or \
                 skills.bundled in config.toml may name it"
            );
        }
        let bundled_dir = config
            .bundled_skills
            .value
            .clone()
            .or_else(default_bundled_dir);
        check_workspace(&workspace, &home, &skills_dir, bundled_dir.as_deref())?;
        let context = Self {
            home,
            env,
            config,
            skills_dir,
            roots: MountRoots {
                workspace,
                skill_data,
            },
            bundled_dir,
        };
        context.sync_bundled()?;
        Ok(context)
    }

    /// Bring the shipped skills into the home (see `skill::bundled`). Skipped
    /// while another process holds the writer lock: that one syncs.
    fn sync_bundled(&self) -> anyhow::Result<()> {
        let Some(shipped) = &self.bundled_dir else {
            return Ok(());
        };
        if !shipped.is_dir() {
            tracing::warn!(dir = %shipped.display(), "bundled skills folder not found; nothing synced");
            return Ok(());
        }
        let _lock = match self.home.lock("talaria (bundled-skill sync)") {
            Ok(lock) => lock,
            Err(LockError::Held { .. } | LockError::HeldByUnknown { .. }) => {
                tracing::debug!(
                    "another talaria process holds the home; skipping bundled-skill sync"
                );
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let skills_dir = self.home.skills_dir();
        let before = (self.grants()?, bundled::Record::load(&skills_dir)?);
        let mut all = before.0.clone();
        let (outcomes, record) = bundled::sync(shipped, &skills_dir, &mut all, &self.roots)?;
        // Write only what changed: a start that syncs nothing writes nothing.
        if all != before.0 {
            all.save(&self.home.grants_file())?;
        }
        if record != before.1 {
            record.save(&skills_dir)?;
        }
        for (name, outcome) in outcomes {
            match outcome {
                Outcome::Unchanged | Outcome::KeptDeleted => {
                    tracing::debug!(skill = name, "bundled: {outcome}")
                }
                Outcome::Installed => tracing::info!(skill = name, "bundled: {outcome}"),
                _ => tracing::warn!(skill = name, "bundled: {outcome}"),
            }
        }
        Ok(())
    }

    pub fn sandbox(&self) -> anyhow::Result<Sandbox> {
        Sandbox::new(SandboxConfig {
            cache_dir: Some(self.home.components_cache_dir()),
            folder_copies_dir: Some(self.home.root().join("cache").join("skill-folders")),
            pool: PoolSize {
                concurrent_instances: self.config.max_instances.value,
            },
            max_open_handles: self.config.max_open_handles.value,
        })
    }

    pub fn grants(&self) -> anyhow::Result<Grants> {
        Grants::load(&self.home.grants_file())
    }

    /// The skill folders of the skills directory, `.`-prefixed ones skipped.
    pub fn discover(&self) -> anyhow::Result<Vec<skill::Discovered>> {
        skill::discover(&self.skills_dir)
    }

    /// Judge `skill` against the grants.
    pub fn assess(&self, skill: &Skill, grants: &Grants) -> anyhow::Result<Assessment> {
        let requested = Capabilities::requested(skill, &self.roots);
        Ok(grants::assess(
            skill.hash().clone(),
            requested,
            grants.skills.get(skill.name()),
        ))
    }

    /// Load a granted skill's component with its effective capabilities.
    pub async fn load(
        &self,
        sandbox: &Sandbox,
        skill: &Skill,
        effective: Capabilities,
    ) -> anyhow::Result<LoadedSkill> {
        effective
            .prepare()
            .with_context(|| format!("skill {}", skill.label()))?;
        let env = self.env.clone();
        let loaded = sandbox.load(skill, effective).await?;
        Ok(loaded.with_env(move |name| env.get(name).map(str::to_owned)))
    }

    /// Every skill with its state; granted components are loaded when
    /// `load` is true.
    pub async fn entries(&self, load: bool) -> anyhow::Result<Vec<SkillEntry>> {
        let grants = self.grants()?;
        let sandbox = if load { Some(self.sandbox()?) } else { None };
        let mut entries = Vec::new();
        for discovered in self.discover()? {
            let skill = match discovered {
                Ok(skill) => skill,
                Err(error) => {
                    entries.push(SkillEntry::Invalid(error));
                    continue;
                }
            };
            let assessment = match self.assess(&skill, &grants) {
                Ok(assessment) => assessment,
                Err(error) => {
                    // e.g. a component that was never built: report this
                    // skill, list the others.
                    entries.push(SkillEntry::Invalid(ManifestError {
                        file: skill.dir.join(skill::MANIFEST_FILE),
                        message: format!("{error:#}"),
                    }));
                    continue;
                }
            };
            let loaded = match (&sandbox, &assessment.effective) {
                (Some(sandbox), Some(effective)) if skill.manifest.component.is_some() => Some(
                    self.load(sandbox, &skill, effective.clone())
                        .await
                        .map(Box::new)
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

    /// Why `skill` may not run, with the command that fixes it, or `None`
    /// when it is granted.
    pub fn refusal(skill: &Skill, state: &SkillState) -> Option<String> {
        let name = skill.name();
        match state {
            SkillState::Granted => None,
            SkillState::Pending => Some(format!(
                "skill {} is pending: it has never been granted; review it with `talaria skills audit` \
                 and grant it with `talaria skills grant {name}`",
                skill.label()
            )),
            SkillState::Drifted(reasons) => Some(format!(
                "skill {} is drifted ({}); review it with `talaria skills audit` and grant it again \
                 with `talaria skills grant {name}`",
                skill.label(),
                reasons.join("; ")
            )),
        }
    }
}

/// `share/talaria/skills` beside the binary's `bin/`, where packages and
/// the container image put the bundled skills.
fn default_bundled_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe
        .parent()?
        .parent()?
        .join("share")
        .join("talaria")
        .join("skills");
    dir.is_dir().then_some(dir)
}

/// The workspace is what skills (and later native commands) may write: it
/// must not overlap anything Talaria trusts. A skill with a read-write
/// workspace mount could otherwise rewrite another skill's files (the skills
/// directory), plant a skill that is granted without review (the bundled
/// folder), fill another skill's data, poison the compiled-component cache,
/// or read `.env` and rewrite `grants.toml` (the home).
fn check_workspace(
    workspace: &Path,
    home: &Home,
    skills_dir: &Path,
    bundled_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let trusted = [
        ("the data home", Some(home.root().to_owned())),
        ("the skills directory", Some(skills_dir.to_owned())),
        ("the bundled skills folder", bundled_dir.map(Path::to_owned)),
        ("the skill data directory", Some(home.skill_data_dir())),
        ("the cache", Some(home.root().join("cache"))),
    ];
    for (what, path) in trusted {
        // Paths that do not exist yet cannot overlap anything.
        let Some(path) = path.and_then(|p| p.canonicalize().ok()) else {
            continue;
        };
        // The default workspace lives inside the home, where it is fenced
        // off from the rest by this same check.
        if what == "the data home" && workspace.starts_with(home_workspace(home)) {
            continue;
        }
        if workspace.starts_with(&path) || path.starts_with(workspace) {
            anyhow::bail!(
                "the workspace {} overlaps {what} {}: a skill with access to the workspace could \
                 change what Talaria trusts; choose a workspace that neither contains nor lies inside \
                 it (--workspace, TALARIA_WORKSPACE, config `workspace`)",
                workspace.display(),
                path.display()
            );
        }
    }
    Ok(())
}

fn home_workspace(home: &Home) -> PathBuf {
    let dir = home.workspace_dir();
    dir.canonicalize().unwrap_or(dir)
}

fn canonical(path: &std::path::Path, what: &str) -> anyhow::Result<PathBuf> {
    path.canonicalize()
        .with_context(|| format!("the {what} {} cannot be opened", path.display()))
}

fn init_logging(filter: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("warning: invalid log filter {filter:?} ({error}); using `warn`");
        tracing_subscriber::EnvFilter::new("warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    // Only fails if a subscriber is already set (tests calling twice).
    let _ = result;
}
