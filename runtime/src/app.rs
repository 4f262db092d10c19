//! A running Talaria, assembled from a data home. Every entry point (the
//! CLI, the gateway, the container entrypoint) goes through here, so none of
//! them repeats how the pieces fit:
//!
//! 1. [`Settings::load`]: bootstrap the home, read `.env` (under the process
//!    environment) and the effective configuration. The entry point then
//!    starts its logging, which differs between a CLI and a service.
//! 2. [`App::open`]: check the workspace against everything Talaria trusts,
//!    build the skill registry over one shared sandbox (one engine per
//!    process, created on first use), and sync the bundled skills.
//! 3. [`App::agent`]: an agent for a new or resumed session, its tools read
//!    from the registry at the start of every turn.

mod secrets;
pub mod skill_exec;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::agent::provider::{Provider, ProviderConfig};
use crate::agent::tools::ToolRegistry;
use crate::agent::{Agent, AgentOptions, Conversation, prompt};
use crate::config::{Config, ConfigFile, Environment, Flags};
use crate::home::Home;
use crate::memory::{NoteLimits, Notes, SessionStore};
use crate::sandbox::{PoolSize, SandboxConfig};
use crate::skill::MountRoots;
use crate::skill::registry::{RegistryConfig, SkillRegistry};

/// What the entry point was told.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// The data home (`--home`, `TALARIA_HOME`); `~/.talaria` when unset.
    pub home: Option<PathBuf>,
    /// Read skills from here instead of the home's `skills/`.
    pub skills_dir: Option<PathBuf>,
    pub flags: Flags,
}

/// A bootstrapped home with its environment and effective configuration.
pub struct Settings {
    pub home: Home,
    pub env: Environment,
    pub config: Config,
}

impl Settings {
    /// Create what is missing in the home, read `.env` and the config.
    pub fn load(options: &AppOptions) -> anyhow::Result<Self> {
        let home = Home::at(match &options.home {
            Some(root) => root.clone(),
            None => Home::default_root()?,
        });
        home.bootstrap()
            .with_context(|| format!("cannot prepare the data home {}", home.root().display()))?;
        let env = Environment::load(&home)?;
        let file = ConfigFile::load(&home.config_file())?;
        let config = Config::resolve(&home, file, &env, &options.flags)?;
        Ok(Self { home, env, config })
    }
}

/// The longest a `terminal` command may run.
pub const TERMINAL_MAX_TIMEOUT: Duration = Duration::from_secs(120);

pub struct App {
    pub home: Home,
    pub env: Environment,
    pub config: Config,
    roots: MountRoots,
    /// Where the skills shipped with this binary or image are.
    bundled_dir: Option<PathBuf>,
    registry: Arc<SkillRegistry>,
    /// Opened at first use and shared: one writer thread per process, so
    /// the gateway's conversations queue on one writer instead of
    /// contending for the database's lock.
    sessions: std::sync::Mutex<Option<SessionStore>>,
    /// One per process, shared by every caller (for Docker, one sandbox
    /// container); it connects at its first command.
    backend: Arc<dyn crate::backend::Backend>,
    /// The approvals in front of every native command (the agent's and
    /// the skills').
    gate: Arc<crate::approval::pending::Gate>,
    /// Who answers what needs approval: nobody, until the gateway says.
    approver: Arc<crate::approval::pending::ApproverSlot>,
    /// The home's secrets and the leak scanner made of them.
    secrets: Arc<secrets::Secrets>,
}

/// An agent and the system prompt its conversations start from.
pub struct AgentSession {
    pub agent: Agent,
    pub system_prompt: String,
}

impl AgentSession {
    /// A new conversation, stored as a new session.
    pub async fn start(&self) -> anyhow::Result<Conversation> {
        self.agent.start(&self.system_prompt, None).await
    }

    /// Continue session `id` as a new session whose parent it is.
    pub async fn resume(&self, id: &str) -> anyhow::Result<Conversation> {
        self.agent.resume(id, &self.system_prompt).await
    }
}

impl App {
    /// Assemble Talaria on `settings`: workspace checks, the registry, the
    /// bundled-skill sync.
    pub fn open(settings: Settings, options: &AppOptions) -> anyhow::Result<Self> {
        let Settings { home, env, config } = settings;
        let skills_dir = options
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
        let roots = MountRoots {
            workspace,
            skill_data,
        };
        let backend = make_backend(&home, &env, &config, &roots.workspace, &skills_dir);
        let approver = Arc::new(crate::approval::pending::ApproverSlot::default());
        let config_file = home.config_file();
        let gate = Arc::new(
            crate::approval::pending::Gate::new(
                approval_policy(&home, &env, &config, None),
                Arc::clone(&approver) as Arc<dyn crate::approval::pending::Approver>,
            )
            .remembering(Arc::new(move |pattern: &str| {
                crate::config::add_to_allowlist(&config_file, pattern)
            })),
        );
        let native: Option<Arc<dyn crate::sandbox::native::NativeCommands>> =
            (config.backend.value != crate::backend::Kind::None).then(|| {
                Arc::new(skill_exec::SkillExec {
                    gate: Arc::clone(&gate),
                    backend: Arc::clone(&backend),
                }) as Arc<dyn crate::sandbox::native::NativeCommands>
            });
        let secrets = Arc::new(secrets::Secrets::new(&home, &env, &config));
        let registry = Arc::new(registry(
            &home,
            &env,
            &config,
            skills_dir.clone(),
            roots.clone(),
            native,
            Some(Arc::clone(&secrets)),
        ));
        let app = Self {
            home,
            env,
            config,
            roots,
            bundled_dir,
            registry,
            sessions: std::sync::Mutex::new(None),
            backend,
            gate,
            approver,
            secrets,
        };
        if let Some(shipped) = &app.bundled_dir {
            app.registry.sync_bundled(shipped)?;
        }
        if app.config.backend.value == crate::backend::Kind::Local {
            tracing::warn!(
                "backend.kind = \"local\" ({}): native commands run on this machine as this user, with only the approvals in front of them",
                app.config.backend.source
            );
        }
        Ok(app)
    }

    pub fn registry(&self) -> &Arc<SkillRegistry> {
        &self.registry
    }

    pub fn roots(&self) -> &MountRoots {
        &self.roots
    }

    /// The folder of shipped skills, when there is one.
    pub fn bundled_dir(&self) -> Option<&Path> {
        self.bundled_dir.as_deref()
    }

    /// The session store of this home, opened once per process.
    pub fn session_store(&self) -> anyhow::Result<SessionStore> {
        let mut shared = self
            .sessions
            .lock()
            .map_err(|_| anyhow::anyhow!("the session store's handle was poisoned"))?;
        if let Some(store) = shared.as_ref() {
            return Ok(store.clone());
        }
        let store = SessionStore::open(&self.home.state_db())?;
        *shared = Some(store.clone());
        Ok(store)
    }

    /// Where native commands run, as configured: one per process, shared.
    pub fn backend(&self) -> Arc<dyn crate::backend::Backend> {
        Arc::clone(&self.backend)
    }

    /// Who answers the commands that need approval, from now on (the
    /// gateway: its dashboard).
    pub fn set_approver(&self, approver: Arc<dyn crate::approval::pending::Approver>) {
        self.approver.set(approver);
    }

    /// Release what the backend holds (the Docker container, the SSH
    /// connection): entry points call this when their work ends.
    pub async fn shutdown(&self) {
        self.backend.shutdown().await;
    }

    /// The approval policy of this home: `[approvals]` (or `mode`), the
    /// home's own files protected, `$HOME` as the user's home.
    pub fn approval_policy(&self, mode: Option<crate::approval::Mode>) -> crate::approval::Policy {
        approval_policy(&self.home, &self.env, &self.config, mode)
    }

    /// The memory notes of this home, with their configured bounds.
    pub fn notes(&self) -> Notes {
        Notes::new(
            self.home.memories_dir(),
            NoteLimits {
                memory_chars: self.config.memory_chars,
                user_chars: self.config.user_chars,
            },
        )
    }

    /// An agent over this home: the model endpoint from the config, the
    /// memory notes (snapshot taken now), the session store, and the skills
    /// the registry offers. `stream` hands the model's text out as it comes.
    pub async fn agent(&self, stream: bool) -> anyhow::Result<AgentSession> {
        let config = &self.config;
        let notes = self.notes();
        let snapshot = notes.snapshot()?;
        let store = self.session_store()?;
        let skills = self.registry.offered().await?;
        let lines: Vec<prompt::SkillLine<'_>> = skills
            .iter()
            .map(|s| prompt::SkillLine {
                name: &s.name,
                description: &s.description,
            })
            .collect();
        let soul = prompt::read_optional(&self.home.soul_file()).unwrap_or_default();
        let agents_md = prompt::read_optional(&self.roots.workspace.join("AGENTS.md"));
        let system_prompt = prompt::build(
            &soul,
            &snapshot,
            &lines,
            agents_md.as_deref(),
            &crate::clock::now_rfc3339(),
        );
        let provider = Provider::new(ProviderConfig {
            base_url: config.model.base_url.value.clone(),
            model: config.model.name.value.clone(),
            api_key: self.env.get(&config.model.api_key_env).map(str::to_owned),
            timeout: Duration::from_secs(config.model.timeout_secs),
            max_retries: config.model.max_retries,
            backoff: Duration::from_millis(500),
        });
        let mut tools = ToolRegistry::new(
            Arc::clone(&self.registry) as Arc<dyn crate::agent::tools::SkillSource>,
            notes,
            store.clone(),
            config.agent.tool_schema_budget_bytes,
        );
        if config.backend.value != crate::backend::Kind::None {
            tools = tools.with_terminal(crate::agent::tools::Terminal {
                backend: self.backend(),
                gate: Arc::clone(&self.gate),
                max_timeout: TERMINAL_MAX_TIMEOUT,
                max_output_bytes: config.agent.tool_output_chars,
            });
        }
        let agent = Agent::new(
            provider,
            tools,
            store,
            AgentOptions {
                max_turns: config.agent.max_turns,
                tool_output_chars: config.agent.tool_output_chars,
                stream,
            },
        )
        .with_leak_scanner(self.leak_scanner());
        Ok(AgentSession {
            agent,
            system_prompt,
        })
    }
}

/// The skill registry of `home` with its sandbox settings from `config`:
/// the one place both the application and doctor get it from.
fn approval_policy(
    home: &Home,
    env: &Environment,
    config: &Config,
    mode: Option<crate::approval::Mode>,
) -> crate::approval::Policy {
    crate::approval::Policy {
        mode: mode.unwrap_or(config.approvals.mode.value),
        allowlist: config.approvals.allowlist.clone(),
        protected: [home.env_file(), home.grants_file(), home.config_file()]
            .iter()
            .map(|path| path.display().to_string())
            .collect(),
        home: env.get_from_process("HOME").map(str::to_owned),
    }
}

impl App {
    /// A scanner for every secret this home knows of (see
    /// [`secrets::Secrets`]), made again when `grants.toml` changed.
    pub fn leak_scanner(&self) -> Arc<crate::leak_scan::LeakScanner> {
        self.secrets.scanner()
    }
}

/// The configured backend, with the variables `[backend] env` names. It
/// connects nowhere yet.
pub(crate) fn make_backend(
    home: &Home,
    env: &Environment,
    config: &Config,
    workspace: &Path,
    skills_dir: &Path,
) -> Arc<dyn crate::backend::Backend> {
    let forwarded: Vec<(String, String)> = config
        .backend_env
        .iter()
        .filter_map(|name| match env.get(name) {
            Some(value) => Some((name.clone(), value.to_owned())),
            None => {
                tracing::warn!(
                    "backend.env names {name}, which is set neither in the environment nor in .env: commands run without it"
                );
                None
            }
        })
        .collect();
    match config.backend.value {
        crate::backend::Kind::None => Arc::new(crate::backend::NoBackend),
        crate::backend::Kind::Docker => Arc::new(crate::backend::docker::DockerBackend::new(
            config.docker.clone(),
            crate::backend::docker::DockerPlaces {
                home: home.root().to_owned(),
                workspace: workspace.to_owned(),
                skills: Some(skills_dir.to_owned()),
            },
            forwarded,
        )),
        crate::backend::Kind::Ssh => match &config.ssh {
            Some(settings) => Arc::new(
                crate::backend::ssh::SshBackend::new(
                    settings.clone(),
                    crate::backend::ssh::control_dir(home.root()),
                    forwarded,
                )
                .with_skills(skills_dir.to_owned()),
            ),
            // Config::resolve refuses kind "ssh" without a host.
            None => Arc::new(crate::backend::NoBackend),
        },
        crate::backend::Kind::Local => Arc::new(
            crate::backend::local::LocalBackend::new(workspace.to_owned(), forwarded)
                .with_skills(skills_dir.to_owned()),
        ),
    }
}

pub(crate) fn registry(
    home: &Home,
    env: &Environment,
    config: &Config,
    skills_dir: PathBuf,
    roots: MountRoots,
    native: Option<Arc<dyn crate::sandbox::native::NativeCommands>>,
    secrets: Option<Arc<secrets::Secrets>>,
) -> SkillRegistry {
    let network = secrets.map(|secrets| crate::skill::registry::NetworkHooks {
        scanner: Arc::new(move || secrets.scanner()),
        protected_ports: Arc::from([
            config.gateway.port.value,
            config.gateway.dashboard_port.value,
        ]),
        reserved_secrets: std::iter::once(config.model.api_key_env.clone())
            .chain(std::iter::once("TALARIA_API_KEY".to_owned()))
            .chain(config.backend_env.iter().cloned())
            .collect(),
    });
    let env = env.clone();
    SkillRegistry::new(RegistryConfig {
        home: home.clone(),
        skills_dir,
        roots,
        sandbox: SandboxConfig {
            cache_dir: Some(home.components_cache_dir()),
            folder_copies_dir: Some(home.root().join("cache").join("skill-folders")),
            pool: PoolSize {
                concurrent_instances: config.max_instances.value,
            },
            max_open_handles: config.max_open_handles.value,
        },
        env: Arc::new(move |name| env.get(name).map(str::to_owned)),
        native,
        network,
    })
}

/// The workspace is what skills (and later native commands) may write: it
/// must not overlap anything Talaria trusts. A skill with a read-write
/// workspace mount could otherwise rewrite another skill's files (the skills
/// directory), plant a skill that is granted without review (the bundled
/// folder), fill another skill's data, poison the compiled-component cache,
/// or read `.env` and rewrite `grants.toml` (the home).
pub fn check_workspace(
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
    let home_workspace = home.workspace_dir();
    let home_workspace = home_workspace.canonicalize().unwrap_or(home_workspace);
    for (what, path) in trusted {
        // Paths that do not exist yet cannot overlap anything.
        let Some(path) = path.and_then(|p| p.canonicalize().ok()) else {
            continue;
        };
        // The default workspace lives inside the home, where it is fenced
        // off from the rest by this same check.
        if what == "the data home" && workspace.starts_with(&home_workspace) {
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

fn canonical(path: &Path, what: &str) -> anyhow::Result<PathBuf> {
    path.canonicalize()
        .with_context(|| format!("the {what} {} cannot be opened", path.display()))
}
