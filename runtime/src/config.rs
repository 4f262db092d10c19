//! Configuration: `config.toml` in the data home, overridden by `TALARIA_*`
//! environment variables (including those set in the home's `.env`), which
//! are overridden by command-line flags. Every effective value remembers
//! where it came from, for `talaria config show`.
//!
//! `config.toml` as written is [`ConfigFile`] (in `file`), the environment
//! and `.env` are [`Environment`] (in `environment`); this module resolves
//! them with the flags into the effective [`Config`].

mod dotenv;
mod environment;
mod file;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use environment::Environment;
pub use file::{ConfigFile, add_to_allowlist};

use crate::home::Home;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Human => "human",
            Self::Json => "json",
        })
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(format!("expected \"human\" or \"json\", found {other:?}")),
        }
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File => f.write_str("config.toml"),
            Self::Env(name) => write!(f, "env {name}"),
            Self::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// Values given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub workspace: Option<PathBuf>,
    pub log: Option<String>,
    pub bundled_skills: Option<PathBuf>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub workspace: Setting<PathBuf>,
    pub log_level: Setting<String>,
    pub log_format: Setting<LogFormat>,
    pub max_instances: Setting<u32>,
    pub max_open_handles: Setting<usize>,
    /// The folder of shipped skills the operator named (flag, process
    /// environment or config.toml; never `.env`); `None` for the one beside
    /// the binary.
    pub bundled_skills: Setting<Option<PathBuf>>,
    pub model: ModelConfig,
    pub agent: AgentConfig,
    pub gateway: GatewayConfig,
    pub approvals: ApprovalsConfig,
    /// Where native commands run (`[backend] kind`, `TALARIA_BACKEND`).
    pub backend: Setting<crate::backend::Kind>,
    /// Variables of Talaria's environment (or `.env`) every native command
    /// gets, by name (`[backend] env`).
    pub backend_env: Vec<String>,
    /// `[backend.docker]`.
    pub docker: crate::backend::docker::DockerSettings,
    /// `[backend.ssh]`, when it names a host.
    pub ssh: Option<crate::backend::ssh::SshSettings>,
    pub memory_chars: usize,
    pub user_chars: usize,
    /// The keys only config.toml sets, as written, for `config show`.
    written: Written,
}

/// The keys of config.toml that no variable or flag sets, as written
/// (`None`: absent, the default applies).
#[derive(Debug, Clone, Default)]
struct Written {
    api_key_env: Option<String>,
    timeout_secs: Option<u64>,
    max_retries: Option<u32>,
    max_turns: Option<u32>,
    tool_output_chars: Option<usize>,
    tool_schema_budget_bytes: Option<usize>,
    memory_chars: Option<usize>,
    user_chars: Option<usize>,
    cors_origins: bool,
    dashboard_hosts: bool,
    allowlist: bool,
    approvals_timeout_secs: Option<u64>,
    backend_env: bool,
    docker: file::DockerSection,
    max_concurrent_runs: Option<usize>,
    request_timeout_secs: Option<u64>,
    max_body_bytes: Option<usize>,
}

/// Where the model is. The API key itself is read from the environment
/// variable named by `api_key_env` (or `.env`) when needed, never stored.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub base_url: Setting<String>,
    pub name: Setting<String>,
    pub api_key_env: String,
    pub timeout_secs: u64,
    pub max_retries: u32,
}

/// The endpoint the README and the hints show as an example.
const EXAMPLE_BASE_URL: &str = "http://127.0.0.1:8000/v1";
const EXAMPLE_MODEL: &str = "qwen2.5-7b-instruct";

impl ModelConfig {
    /// Whether an endpoint was set anywhere (`config.toml`, the environment
    /// or `.env`). The built-in default is only a placeholder: a chat that
    /// reaches for it fails with a connection error that says nothing about
    /// what to set.
    pub fn is_configured(&self) -> bool {
        self.base_url.source != Source::Default
    }
}

/// What to set when no model is configured: the lines to paste into
/// `config.toml` (whose path is `config_file`) or into the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSetup {
    pub config_file: PathBuf,
    /// Whether `config.toml` already has a `[model]` table (homes seeded
    /// before it was commented out): then the two lines go under it, since
    /// a second `[model]` header is a TOML error.
    pub has_model_table: bool,
    /// Where the API key is looked for (`model.api_key_env`).
    pub api_key_env: String,
}

impl ModelSetup {
    /// `None` when the model is configured.
    pub fn needed(config: &Config, config_file: &std::path::Path) -> Option<Self> {
        if config.model.is_configured() {
            return None;
        }
        let has_model_table = std::fs::read_to_string(config_file)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .is_some_and(|table| table.contains_key("model"));
        Some(Self {
            config_file: config_file.to_owned(),
            has_model_table,
            api_key_env: config.model.api_key_env.clone(),
        })
    }

    /// The two `config.toml` lines, under a `[model]` header when the file
    /// has none yet.
    pub fn toml_lines(&self) -> String {
        format!(
            "{}base_url = \"{EXAMPLE_BASE_URL}\"\nname = \"{EXAMPLE_MODEL}\"",
            if self.has_model_table {
                ""
            } else {
                "[model]\n"
            }
        )
    }

    /// The same two settings as environment variables (also read from the
    /// home's `.env`, without `export`).
    pub fn env_lines(&self) -> String {
        format!(
            "export TALARIA_MODEL_BASE_URL={EXAMPLE_BASE_URL}\nexport TALARIA_MODEL={EXAMPLE_MODEL}"
        )
    }

    /// The whole explanation, for `talaria chat`.
    pub fn explain(&self) -> String {
        let file = self.config_file.display();
        let place = if self.has_model_table {
            format!("add under the [model] table of {file}")
        } else {
            format!("add to {file}")
        };
        format!(
            "no model is configured: `talaria chat` needs an OpenAI-compatible endpoint. \
             Start one (vLLM, Ollama, llama.cpp's llama-server, or a hosted one such as OpenRouter), \
             then {place}:\n\n{}\n\nor set them in the environment:\n\n{}\n\n\
             with your server's address and model name (Ollama listens on http://127.0.0.1:11434/v1, \
             llama-server on http://127.0.0.1:8080/v1). An API key, if the endpoint needs one, goes in \
             .env as {}=...",
            indent(&self.toml_lines()),
            indent(&self.env_lines()),
            self.api_key_env,
        )
    }

    /// The same in one line, for `talaria doctor`'s fix.
    pub fn one_line(&self) -> String {
        let place = if self.has_model_table {
            "under its [model] table"
        } else {
            "after a [model] line"
        };
        format!(
            "add `base_url = \"{EXAMPLE_BASE_URL}\"` and `name = \"{EXAMPLE_MODEL}\"` (your server's address \
             and model) to {} {place}, or set TALARIA_MODEL_BASE_URL and TALARIA_MODEL",
            self.config_file.display()
        )
    }
}

fn indent(lines: &str) -> String {
    lines
        .lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub max_turns: u32,
    /// Tool output beyond this many characters is cut, with a marker.
    pub tool_output_chars: usize,
    /// Above this size of all skill tool schemas, a skill's schemas are
    /// offered only once the model has looked at the skill.
    pub tool_schema_budget_bytes: usize,
}

/// `talaria gateway`: where it listens and what it lets in. The API key is
/// never configuration: it is read from `TALARIA_API_KEY` (the environment
/// or `.env`) when the gateway starts.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The address the API binds; loopback unless the operator says otherwise.
    pub host: Setting<String>,
    pub port: Setting<u16>,
    /// Whether the dashboard is served (beside the API, same process).
    pub dashboard: Setting<bool>,
    pub dashboard_port: Setting<u16>,
    /// Host names the dashboard answers to besides IP addresses and
    /// `localhost` (a reverse proxy's name); any other `Host` is refused,
    /// which defeats DNS rebinding.
    pub dashboard_hosts: Vec<String>,
    /// Origins a browser may call the API from; empty: CORS is off.
    pub cors_origins: Vec<String>,
    /// Agent runs at once; a request beyond gets 429 with `Retry-After`.
    pub max_concurrent_runs: usize,
    /// The longest a request may take, its model calls and tools included.
    pub request_timeout_secs: u64,
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
}

/// `[approvals]`: how native commands above the hardline floor are
/// treated (see `approval`).
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    pub mode: Setting<crate::approval::Mode>,
    /// Patterns for mode `allowlist` (`git status*`).
    pub allowlist: Vec<String>,
    /// How long a command that needs approval waits for a person on the
    /// dashboard before it is denied.
    pub timeout_secs: u64,
}

/// One line of `talaria config show`.
#[derive(Debug, Clone, Serialize)]
pub struct ShownSetting {
    pub key: &'static str,
    pub value: String,
    pub source: String,
}

impl Config {
    pub fn resolve(
        home: &Home,
        file: ConfigFile,
        env: &Environment,
        flags: &Flags,
    ) -> anyhow::Result<Self> {
        let workspace = pick(
            flags.workspace.clone().map(|v| (v, "--workspace")),
            env.get("TALARIA_WORKSPACE")
                .map(|v| (PathBuf::from(v), "TALARIA_WORKSPACE")),
            file.workspace,
            home.workspace_dir(),
        );
        let log_level = pick(
            flags.log.clone().map(|v| (v, "--log")),
            env.get("TALARIA_LOG")
                .map(|v| (v.to_owned(), "TALARIA_LOG")),
            file.log.level,
            "warn".to_owned(),
        );
        let log_format_env = env
            .get("TALARIA_LOG_FORMAT")
            .map(|v| {
                v.parse::<LogFormat>()
                    .map_err(|e| anyhow::anyhow!("TALARIA_LOG_FORMAT: {e}"))
            })
            .transpose()?;
        let log_format = pick(
            None,
            log_format_env.map(|v| (v, "TALARIA_LOG_FORMAT")),
            file.log.format,
            LogFormat::Human,
        );
        let instances_env = env
            .get("TALARIA_SANDBOX_MAX_INSTANCES")
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    anyhow::anyhow!(
                        "TALARIA_SANDBOX_MAX_INSTANCES: expected a whole number, found {v:?}"
                    )
                })
            })
            .transpose()?;
        let max_instances = pick(
            None,
            instances_env.map(|v| (v, "TALARIA_SANDBOX_MAX_INSTANCES")),
            file.sandbox.max_instances,
            64,
        );
        anyhow::ensure!(
            (1..=10_000).contains(&max_instances.value),
            "sandbox.max_instances ({}): expected a number from 1 to 10000, found {}",
            max_instances.source,
            max_instances.value
        );
        let handles_env = env
            .get("TALARIA_SANDBOX_MAX_OPEN_HANDLES")
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    anyhow::anyhow!(
                        "TALARIA_SANDBOX_MAX_OPEN_HANDLES: expected a whole number, found {v:?}"
                    )
                })
            })
            .transpose()?;
        let max_open_handles = pick(
            None,
            handles_env.map(|v| (v, "TALARIA_SANDBOX_MAX_OPEN_HANDLES")),
            file.sandbox.max_open_handles,
            crate::sandbox::DEFAULT_MAX_OPEN_HANDLES,
        );
        anyhow::ensure!(
            (16..=65_536).contains(&max_open_handles.value),
            "sandbox.max_open_handles ({}): expected a number from 16 to 65536, found {}",
            max_open_handles.source,
            max_open_handles.value
        );
        // Skills in this folder are granted without review: only the
        // operator's own settings may name it, never `.env`.
        let bundled_skills = pick(
            flags
                .bundled_skills
                .clone()
                .map(|v| (Some(v), "--bundled-skills")),
            env.get_from_process("TALARIA_BUNDLED_SKILLS")
                .map(|v| (Some(PathBuf::from(v)), "TALARIA_BUNDLED_SKILLS")),
            file.skills.bundled.map(Some),
            None,
        );
        let base_url = pick(
            None,
            env.get("TALARIA_MODEL_BASE_URL")
                .map(|v| (v.to_owned(), "TALARIA_MODEL_BASE_URL")),
            file.model.base_url,
            "http://127.0.0.1:8080/v1".to_owned(),
        );
        let name = pick(
            None,
            env.get("TALARIA_MODEL")
                .map(|v| (v.to_owned(), "TALARIA_MODEL")),
            file.model.name,
            "default".to_owned(),
        );
        let gateway = resolve_gateway(&file.gateway, env)?;
        let approvals_mode_env = env
            .get("TALARIA_APPROVALS_MODE")
            .map(|v| {
                v.parse::<crate::approval::Mode>()
                    .map_err(|e| anyhow::anyhow!("TALARIA_APPROVALS_MODE: {e}"))
            })
            .transpose()?;
        let approvals = ApprovalsConfig {
            mode: pick(
                None,
                approvals_mode_env.map(|v| (v, "TALARIA_APPROVALS_MODE")),
                file.approvals.mode,
                crate::approval::Mode::Manual,
            ),
            allowlist: file.approvals.allowlist.clone().unwrap_or_default(),
            timeout_secs: file.approvals.timeout_secs.unwrap_or(60).clamp(1, 3600),
        };
        let backend_env = env
            .get("TALARIA_BACKEND")
            .map(|v| {
                v.parse::<crate::backend::Kind>()
                    .map_err(|e| anyhow::anyhow!("TALARIA_BACKEND: {e}"))
            })
            .transpose()?;
        let backend_file = file
            .backend
            .kind
            .as_deref()
            .map(|v| {
                v.parse::<crate::backend::Kind>()
                    .map_err(|e| anyhow::anyhow!("backend.kind: {e}"))
            })
            .transpose()?;
        let backend = pick(
            None,
            backend_env.map(|v| (v, "TALARIA_BACKEND")),
            backend_file,
            crate::backend::Kind::None,
        );
        let backend_env = file.backend.env.clone().unwrap_or_default();
        for (index, name) in backend_env.iter().enumerate() {
            anyhow::ensure!(
                crate::backend::is_env_name(name),
                "backend.env[{index}]: expected the NAME of an environment variable (its value stays in the environment or .env), found {name:?}"
            );
        }
        let docker = resolve_docker(&file.backend.docker)?;
        let ssh = file.backend.ssh.as_ref().map(resolve_ssh).transpose()?;
        anyhow::ensure!(
            backend.value != crate::backend::Kind::Ssh || ssh.is_some(),
            "backend.kind = \"ssh\" ({}) needs the host: add [backend.ssh] with host = \"build.example.com\" to config.toml",
            backend.source
        );
        for (index, pattern) in approvals.allowlist.iter().enumerate() {
            anyhow::ensure!(
                !pattern.trim().is_empty() && !pattern.chars().any(char::is_control),
                "approvals.allowlist[{index}]: expected a command pattern such as \"git status*\", found {pattern:?}"
            );
        }
        let written = Written {
            api_key_env: file.model.api_key_env.clone(),
            timeout_secs: file.model.timeout_secs,
            max_retries: file.model.max_retries,
            max_turns: file.agent.max_turns,
            tool_output_chars: file.agent.tool_output_chars,
            tool_schema_budget_bytes: file.agent.tool_schema_budget_bytes,
            memory_chars: file.memory.memory_chars,
            user_chars: file.memory.user_chars,
            cors_origins: file.gateway.cors_origins.is_some(),
            dashboard_hosts: file.gateway.dashboard_hosts.is_some(),
            allowlist: file.approvals.allowlist.is_some(),
            approvals_timeout_secs: file.approvals.timeout_secs,
            backend_env: file.backend.env.is_some(),
            docker: file.backend.docker.clone(),
            max_concurrent_runs: file.gateway.max_concurrent_runs,
            request_timeout_secs: file.gateway.request_timeout_secs,
            max_body_bytes: file.gateway.max_body_bytes,
        };
        let api_key_env = file
            .model
            .api_key_env
            .unwrap_or_else(|| "OPENAI_API_KEY".to_owned());
        anyhow::ensure!(
            !api_key_env.is_empty()
                && api_key_env
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "model.api_key_env: expected the NAME of an environment variable (the key itself belongs in .env), found {api_key_env:?}"
        );
        Ok(Self {
            workspace,
            log_level,
            log_format,
            max_instances,
            max_open_handles,
            bundled_skills,
            model: ModelConfig {
                base_url,
                name,
                api_key_env,
                timeout_secs: file.model.timeout_secs.unwrap_or(120).clamp(1, 3600),
                max_retries: file.model.max_retries.unwrap_or(3).min(10),
            },
            agent: AgentConfig {
                max_turns: file.agent.max_turns.unwrap_or(50).clamp(1, 1000),
                tool_output_chars: file
                    .agent
                    .tool_output_chars
                    .unwrap_or(16_000)
                    .clamp(256, 1_000_000),
                tool_schema_budget_bytes: file.agent.tool_schema_budget_bytes.unwrap_or(24_000),
            },
            gateway,
            approvals,
            backend,
            backend_env,
            docker,
            ssh,
            memory_chars: file
                .memory
                .memory_chars
                .unwrap_or(crate::memory::notes::DEFAULT_MEMORY_CHARS),
            user_chars: file
                .memory
                .user_chars
                .unwrap_or(crate::memory::notes::DEFAULT_USER_CHARS),
            written,
        })
    }

    /// Every key config.toml accepts, with its effective value and where
    /// it came from. Secrets are never shown: the API key is named by
    /// `model.api_key_env` and only said to be set or not (`env` tells), and
    /// a password in `model.base_url` is masked.
    pub fn shown(&self, env: &Environment) -> Vec<ShownSetting> {
        fn line<T: fmt::Display>(key: &'static str, setting: &Setting<T>) -> ShownSetting {
            ShownSetting {
                key,
                value: setting.value.to_string(),
                source: setting.source.to_string(),
            }
        }
        /// A key only config.toml sets: `config.toml` when written there,
        /// and what was written when it was brought within bounds.
        /// A list only config.toml sets, with what an empty one means.
        fn list_line(
            key: &'static str,
            items: &[String],
            when_empty: &str,
            written: bool,
        ) -> ShownSetting {
            ShownSetting {
                key,
                value: if items.is_empty() {
                    when_empty.to_owned()
                } else {
                    items.join(", ")
                },
                source: if written {
                    Source::File.to_string()
                } else {
                    "default".to_owned()
                },
            }
        }
        fn file_only<T: fmt::Display + PartialEq>(
            key: &'static str,
            effective: T,
            written: Option<T>,
        ) -> ShownSetting {
            let source = match written {
                None => "default".to_owned(),
                Some(written) if written == effective => Source::File.to_string(),
                Some(written) => format!("{} ({written}, out of bounds)", Source::File),
            };
            ShownSetting {
                key,
                value: effective.to_string(),
                source,
            }
        }
        let written = &self.written;
        let key_state = match env.origin(&self.model.api_key_env) {
            Some(origin) => format!("set, in {origin}"),
            None => "not set".to_owned(),
        };
        vec![
            ShownSetting {
                key: "workspace",
                value: self.workspace.value.display().to_string(),
                source: self.workspace.source.to_string(),
            },
            line("log.level", &self.log_level),
            line("log.format", &self.log_format),
            line("sandbox.max_instances", &self.max_instances),
            line("sandbox.max_open_handles", &self.max_open_handles),
            ShownSetting {
                key: "skills.bundled",
                value: self.bundled_skills.value.as_ref().map_or_else(
                    || "share/talaria/skills beside the binary".to_owned(),
                    |p| p.display().to_string(),
                ),
                source: self.bundled_skills.source.to_string(),
            },
            ShownSetting {
                key: "model.base_url",
                value: mask_password(&self.model.base_url.value),
                source: self.model.base_url.source.to_string(),
            },
            line("model.name", &self.model.name),
            ShownSetting {
                key: "model.api_key_env",
                value: format!(
                    "{} (the key is {key_state}; never shown)",
                    self.model.api_key_env
                ),
                source: if written.api_key_env.is_some() {
                    Source::File.to_string()
                } else {
                    "default".to_owned()
                },
            },
            file_only(
                "model.timeout_secs",
                self.model.timeout_secs,
                written.timeout_secs,
            ),
            file_only(
                "model.max_retries",
                self.model.max_retries,
                written.max_retries,
            ),
            file_only("agent.max_turns", self.agent.max_turns, written.max_turns),
            file_only(
                "agent.tool_output_chars",
                self.agent.tool_output_chars,
                written.tool_output_chars,
            ),
            file_only(
                "agent.tool_schema_budget_bytes",
                self.agent.tool_schema_budget_bytes,
                written.tool_schema_budget_bytes,
            ),
            file_only(
                "memory.memory_chars",
                self.memory_chars,
                written.memory_chars,
            ),
            file_only("memory.user_chars", self.user_chars, written.user_chars),
            line("gateway.host", &self.gateway.host),
            line("gateway.port", &self.gateway.port),
            line("gateway.dashboard", &self.gateway.dashboard),
            line("gateway.dashboard_port", &self.gateway.dashboard_port),
            list_line(
                "gateway.dashboard_hosts",
                &self.gateway.dashboard_hosts,
                "none (IP addresses and localhost only)",
                written.dashboard_hosts,
            ),
            list_line(
                "gateway.cors_origins",
                &self.gateway.cors_origins,
                "none (CORS off)",
                written.cors_origins,
            ),
            file_only(
                "gateway.max_concurrent_runs",
                self.gateway.max_concurrent_runs,
                written.max_concurrent_runs,
            ),
            file_only(
                "gateway.request_timeout_secs",
                self.gateway.request_timeout_secs,
                written.request_timeout_secs,
            ),
            file_only(
                "gateway.max_body_bytes",
                self.gateway.max_body_bytes,
                written.max_body_bytes,
            ),
            line("approvals.mode", &self.approvals.mode),
            line("backend.kind", &self.backend),
            list_line(
                "approvals.allowlist",
                &self.approvals.allowlist,
                "none",
                written.allowlist,
            ),
            file_only(
                "approvals.timeout_secs",
                self.approvals.timeout_secs,
                written.approvals_timeout_secs,
            ),
            list_line(
                "backend.env",
                &self.backend_env,
                "none",
                written.backend_env,
            ),
            ShownSetting {
                key: "backend.docker.socket",
                value: self.docker.socket_path(),
                source: if written.docker.socket.is_some() {
                    Source::File.to_string()
                } else {
                    "default".to_owned()
                },
            },
            file_only(
                "backend.docker.image",
                self.docker.image.clone(),
                written.docker.image.clone(),
            ),
            file_only(
                "backend.docker.network",
                self.docker.network,
                written.docker.network,
            ),
            file_only(
                "backend.docker.memory_mb",
                self.docker.memory_mb,
                written.docker.memory_mb,
            ),
            file_only("backend.docker.cpus", self.docker.cpus, written.docker.cpus),
            file_only("backend.docker.pids", self.docker.pids, written.docker.pids),
            file_only(
                "backend.docker.tmp_mb",
                self.docker.tmp_mb,
                written.docker.tmp_mb,
            ),
            file_only(
                "backend.docker.read_only",
                self.docker.read_only,
                written.docker.read_only,
            ),
            ShownSetting {
                key: "backend.docker.user",
                value: self
                    .docker
                    .user
                    .clone()
                    .unwrap_or_else(|| "the uid:gid of the Talaria process".to_owned()),
                source: if written.docker.user.is_some() {
                    Source::File.to_string()
                } else {
                    "default".to_owned()
                },
            },
            ShownSetting {
                key: "backend.ssh",
                value: self.ssh.as_ref().map_or_else(
                    || "none".to_owned(),
                    |ssh| {
                        format!(
                            "{}{}{}, workdir {}, known_hosts {}, connect timeout {} s, shared connection {} s",
                            ssh.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default(),
                            ssh.host,
                            ssh.port.map(|p| format!(":{p}")).unwrap_or_default(),
                            ssh.workdir.as_deref().unwrap_or("(login directory)"),
                            ssh.known_hosts
                                .as_ref()
                                .map_or_else(|| "(accept-new)".to_owned(), |f| f.display().to_string()),
                            ssh.connect_timeout_secs,
                            ssh.control_persist_secs
                        )
                    },
                ),
                source: if self.ssh.is_some() {
                    Source::File.to_string()
                } else {
                    "default".to_owned()
                },
            },
        ]
    }
}

/// `url` with the password of its `user:password@` part masked (the whole
/// part when it has no `:`: a token is often passed as the user name).
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => format!("{scheme}://***@{host}{path}"),
        },
        None => url.to_owned(),
    }
}

/// `[backend.ssh]`: a host is required, every other key has a default.
fn resolve_ssh(file: &file::SshSection) -> anyhow::Result<crate::backend::ssh::SshSettings> {
    let host = file.host.clone().unwrap_or_default();
    anyhow::ensure!(
        !host.is_empty()
            && !host.starts_with('-')
            && !host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '@'),
        "backend.ssh.host: expected a host name, an address or an alias of ~/.ssh/config (the user goes in backend.ssh.user), found {host:?}"
    );
    if let Some(user) = &file.user {
        anyhow::ensure!(
            !user.is_empty()
                && !user.starts_with('-')
                && !user
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '@'),
            "backend.ssh.user: expected a user name, found {user:?}"
        );
    }
    if let Some(workdir) = &file.workdir {
        anyhow::ensure!(
            !workdir.is_empty() && !workdir.chars().any(char::is_control),
            "backend.ssh.workdir: expected a directory on the remote host, found {workdir:?}"
        );
    }
    let mut settings = crate::backend::ssh::SshSettings::for_host(host);
    let timeout = file
        .connect_timeout_secs
        .unwrap_or(settings.connect_timeout_secs);
    anyhow::ensure!(
        (1..=300).contains(&timeout),
        "backend.ssh.connect_timeout_secs: expected a number from 1 to 300, found {timeout}"
    );
    settings.user = file.user.clone();
    settings.port = file.port;
    settings.identity_file = file.identity_file.clone();
    settings.known_hosts = file.known_hosts.clone();
    settings.workdir = file.workdir.clone();
    settings.connect_timeout_secs = timeout;
    settings.control_persist_secs = file
        .control_persist_secs
        .unwrap_or(settings.control_persist_secs)
        .min(86_400);
    Ok(settings)
}

/// `[backend.docker]` within its bounds; a value outside them is an error
/// naming the key, not silently clamped (these are the sandbox's walls).
fn resolve_docker(
    file: &file::DockerSection,
) -> anyhow::Result<crate::backend::docker::DockerSettings> {
    let defaults = crate::backend::docker::DockerSettings::default();
    fn within<T: PartialOrd + fmt::Display + Copy>(
        key: &str,
        value: Option<T>,
        default: T,
        bounds: std::ops::RangeInclusive<T>,
    ) -> anyhow::Result<T> {
        let value = value.unwrap_or(default);
        anyhow::ensure!(
            bounds.contains(&value),
            "backend.docker.{key}: expected a number from {} to {}, found {value}",
            bounds.start(),
            bounds.end()
        );
        Ok(value)
    }
    let image = file.image.clone().unwrap_or(defaults.image);
    anyhow::ensure!(
        !image.trim().is_empty() && !image.chars().any(|c| c.is_whitespace() || c.is_control()),
        "backend.docker.image: expected an image reference such as \"debian:bookworm-slim\", found {image:?}"
    );
    for (key, value) in [("socket", &file.socket), ("user", &file.user)] {
        if let Some(value) = value {
            anyhow::ensure!(
                !value.trim().is_empty() && !value.chars().any(char::is_control),
                "backend.docker.{key}: expected a non-empty value without control characters, found {value:?}"
            );
        }
    }
    Ok(crate::backend::docker::DockerSettings {
        socket: file.socket.clone(),
        image,
        network: file.network.unwrap_or(defaults.network),
        memory_mb: within(
            "memory_mb",
            file.memory_mb,
            defaults.memory_mb,
            64..=1_048_576,
        )?,
        cpus: within("cpus", file.cpus, defaults.cpus, 0.01..=1024.0)?,
        pids: within("pids", file.pids, defaults.pids, 16..=1_000_000)?,
        tmp_mb: within("tmp_mb", file.tmp_mb, defaults.tmp_mb, 1..=1_048_576)?,
        read_only: file.read_only.unwrap_or(defaults.read_only),
        user: file.user.clone(),
    })
}

fn resolve_gateway(
    file: &file::GatewaySection,
    env: &Environment,
) -> anyhow::Result<GatewayConfig> {
    let port_from = |name: &'static str| -> anyhow::Result<Option<(u16, &'static str)>> {
        env.get(name)
            .map(|v| {
                v.parse::<u16>()
                    .map(|port| (port, name))
                    .map_err(|_| anyhow::anyhow!("{name}: expected a port number, found {v:?}"))
            })
            .transpose()
    };
    let host = pick(
        None,
        env.get("TALARIA_API_HOST")
            .map(|v| (v.to_owned(), "TALARIA_API_HOST")),
        file.host.clone(),
        "127.0.0.1".to_owned(),
    );
    let port = pick(
        None,
        port_from("TALARIA_API_PORT")?,
        file.port,
        DEFAULT_API_PORT,
    );
    let dashboard_port = pick(
        None,
        port_from("TALARIA_DASHBOARD_PORT")?,
        file.dashboard_port,
        DEFAULT_DASHBOARD_PORT,
    );
    let dashboard = pick(
        None,
        env.get("TALARIA_DASHBOARD")
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok((true, "TALARIA_DASHBOARD")),
                "0" | "false" | "no" | "off" => Ok((false, "TALARIA_DASHBOARD")),
                _ => Err(anyhow::anyhow!(
                    "TALARIA_DASHBOARD: expected 1 or 0, found {v:?}"
                )),
            })
            .transpose()?,
        file.dashboard,
        true,
    );
    let dashboard_hosts: Vec<String> = file
        .dashboard_hosts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|host| host.to_ascii_lowercase())
        .collect();
    for host in &dashboard_hosts {
        anyhow::ensure!(
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "gateway.dashboard_hosts: expected host names such as \"talaria.example.com\" (no scheme, port or path), found {host:?}"
        );
    }
    let cors_origins = file.cors_origins.clone().unwrap_or_default();
    for origin in &cors_origins {
        anyhow::ensure!(
            origin != "*",
            "gateway.cors_origins: \"*\" would let every web page use the API; list the origins"
        );
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or_default();
        anyhow::ensure!(
            !host.is_empty()
                && !host.contains(['/', '?', '#', ' '])
                && host.chars().all(|c| c.is_ascii_graphic()),
            "gateway.cors_origins: {origin:?} is not an origin (scheme://host[:port], no path or trailing slash)"
        );
        anyhow::ensure!(
            origin.starts_with("http://") || origin.starts_with("https://"),
            "gateway.cors_origins: expected origins such as \"https://app.example.com\", found {origin:?}"
        );
    }
    Ok(GatewayConfig {
        host,
        port,
        dashboard,
        dashboard_port,
        dashboard_hosts,
        cors_origins,
        max_concurrent_runs: file.max_concurrent_runs.unwrap_or(10).clamp(1, 10_000),
        // Below the OpenAI clients' own 600 s, so the gateway answers first.
        request_timeout_secs: file.request_timeout_secs.unwrap_or(300).clamp(1, 86_400),
        max_body_bytes: file
            .max_body_bytes
            .unwrap_or(4 * 1024 * 1024)
            .clamp(1024, 256 * 1024 * 1024),
    })
}

/// The ports of Hermes Agent's gateway and dashboard, which operators and
/// clients moving over already use.
pub const DEFAULT_API_PORT: u16 = 8642;
pub const DEFAULT_DASHBOARD_PORT: u16 = 9119;

fn pick<T>(
    flag: Option<(T, &'static str)>,
    env: Option<(T, &'static str)>,
    file: Option<T>,
    default: T,
) -> Setting<T> {
    if let Some((value, name)) = flag {
        Setting {
            value,
            source: Source::Flag(name),
        }
    } else if let Some((value, name)) = env {
        Setting {
            value,
            source: Source::Env(name),
        }
    } else if let Some(value) = file {
        Setting {
            value,
            source: Source::File,
        }
    } else {
        Setting {
            value: default,
            source: Source::Default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_seeded_into_a_new_home_is_valid() {
        ConfigFile::parse(crate::home::DEFAULT_CONFIG).unwrap();
    }

    pub(super) fn env(process: &[(&str, &str)], dotenv: &[(&str, &str)]) -> Environment {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Environment::from_maps(map(process), map(dotenv))
    }

    #[test]
    fn flags_override_env_override_file_override_defaults() {
        let home = Home::at("/data");
        let file = ConfigFile::parse(
            "workspace = \"/file\"\n[log]\nlevel = \"info\"\n[sandbox]\nmax_instances = 8\n",
        )
        .unwrap();
        let environment = env(
            &[("TALARIA_LOG", "debug")],
            &[("TALARIA_WORKSPACE", "/dotenv")],
        );
        let flags = Flags {
            workspace: Some("/flag".into()),
            ..Flags::default()
        };
        let config = Config::resolve(&home, file, &environment, &flags).unwrap();
        assert_eq!(config.workspace.value, PathBuf::from("/flag"));
        assert_eq!(config.workspace.source, Source::Flag("--workspace"));
        assert_eq!(config.log_level.value, "debug");
        assert_eq!(config.log_level.source, Source::Env("TALARIA_LOG"));
        assert_eq!(config.max_instances.value, 8);
        assert_eq!(config.max_instances.source, Source::File);
        assert_eq!(config.log_format.source, Source::Default);

        let config = Config::resolve(
            &home,
            ConfigFile::default(),
            &environment,
            &Flags::default(),
        )
        .unwrap();
        assert_eq!(config.workspace.value, PathBuf::from("/dotenv"));
        assert_eq!(config.workspace.source, Source::Env("TALARIA_WORKSPACE"));
        let config = Config::resolve(
            &home,
            ConfigFile::default(),
            &env(&[], &[]),
            &Flags::default(),
        )
        .unwrap();
        assert_eq!(config.workspace.value, PathBuf::from("/data/workspace"));
        assert_eq!(config.workspace.source, Source::Default);
    }

    #[test]
    fn every_key_of_config_toml_is_shown_with_its_source() {
        let file = ConfigFile::parse(
            "[model]\nbase_url = \"https://me:hunter2@llm.example/v1\"\ntimeout_secs = 99999\n\
             max_retries = 2\n[agent]\nmax_turns = 7\n[memory]\nuser_chars = 500\n\
             [gateway]\nport = 9000\nmax_concurrent_runs = 0\n",
        )
        .unwrap();
        let environment = env(
            &[("TALARIA_MODEL", "qwen"), ("TALARIA_API_HOST", "0.0.0.0")],
            &[
                ("OPENAI_API_KEY", "sk-secret"),
                ("TALARIA_API_KEY", "tk-secret-secret"),
            ],
        );
        let config =
            Config::resolve(&Home::at("/d"), file, &environment, &Flags::default()).unwrap();
        let shown = config.shown(&environment);
        assert!(
            shown.iter().all(|s| !s.value.contains("tk-secret")),
            "the gateway's key is never configuration"
        );
        let row = |key: &str| {
            let setting = shown
                .iter()
                .find(|s| s.key == key)
                .unwrap_or_else(|| panic!("{key} is not shown"));
            (setting.value.as_str(), setting.source.as_str())
        };
        // Every key config.toml accepts.
        let keys: Vec<&str> = shown.iter().map(|s| s.key).collect();
        assert_eq!(
            keys,
            [
                "workspace",
                "log.level",
                "log.format",
                "sandbox.max_instances",
                "sandbox.max_open_handles",
                "skills.bundled",
                "model.base_url",
                "model.name",
                "model.api_key_env",
                "model.timeout_secs",
                "model.max_retries",
                "agent.max_turns",
                "agent.tool_output_chars",
                "agent.tool_schema_budget_bytes",
                "memory.memory_chars",
                "memory.user_chars",
                "gateway.host",
                "gateway.port",
                "gateway.dashboard",
                "gateway.dashboard_port",
                "gateway.dashboard_hosts",
                "gateway.cors_origins",
                "gateway.max_concurrent_runs",
                "gateway.request_timeout_secs",
                "gateway.max_body_bytes",
                "approvals.mode",
                "backend.kind",
                "approvals.allowlist",
                "approvals.timeout_secs",
                "backend.env",
                "backend.docker.socket",
                "backend.docker.image",
                "backend.docker.network",
                "backend.docker.memory_mb",
                "backend.docker.cpus",
                "backend.docker.pids",
                "backend.docker.tmp_mb",
                "backend.docker.read_only",
                "backend.docker.user",
                "backend.ssh",
            ]
        );
        assert_eq!(
            row("model.base_url"),
            ("https://me:***@llm.example/v1", "config.toml")
        );
        assert_eq!(row("model.name"), ("qwen", "env TALARIA_MODEL"));
        assert_eq!(row("gateway.host"), ("0.0.0.0", "env TALARIA_API_HOST"));
        assert_eq!(row("gateway.port"), ("9000", "config.toml"));
        assert_eq!(row("gateway.dashboard_port"), ("9119", "default"));
        assert_eq!(row("gateway.cors_origins"), ("none (CORS off)", "default"));
        assert_eq!(
            row("gateway.max_concurrent_runs"),
            ("1", "config.toml (0, out of bounds)")
        );
        assert_eq!(
            row("model.api_key_env"),
            (
                "OPENAI_API_KEY (the key is set, in .env; never shown)",
                "default"
            )
        );
        assert_eq!(
            row("model.timeout_secs"),
            ("3600", "config.toml (99999, out of bounds)")
        );
        assert_eq!(row("model.max_retries"), ("2", "config.toml"));
        assert_eq!(row("agent.max_turns"), ("7", "config.toml"));
        assert_eq!(row("agent.tool_output_chars"), ("16000", "default"));
        assert_eq!(row("memory.user_chars"), ("500", "config.toml"));
        assert!(
            !format!("{shown:?}").contains("sk-secret")
                && !format!("{shown:?}").contains("hunter2")
        );
    }

    #[test]
    fn a_model_is_configured_only_when_an_endpoint_is_set_somewhere() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        home.bootstrap().unwrap();
        let resolve = |file: &str, process: &[(&str, &str)]| {
            let file = ConfigFile::parse(file).unwrap();
            Config::resolve(&home, file, &env(process, &[]), &Flags::default()).unwrap()
        };
        let seeded = crate::home::DEFAULT_CONFIG;
        let config = resolve(seeded, &[]);
        let setup = ModelSetup::needed(&config, &home.config_file()).unwrap();
        assert!(!setup.has_model_table);
        // The explanation's lines, pasted at the end of the seeded file,
        // make a valid config with the model set from the file.
        let pasted = format!("{seeded}\n{}\n", setup.toml_lines());
        let config = resolve(&pasted, &[]);
        assert_eq!(config.model.base_url.source, Source::File);
        assert_eq!(config.model.name.value, "qwen2.5-7b-instruct");
        assert_eq!(ModelSetup::needed(&config, &home.config_file()), None);
        assert!(setup.explain().contains(&format!(
            "add to {}:\n\n    [model]\n    base_url = \"http://127.0.0.1:8000/v1\"\n    name = \"qwen2.5-7b-instruct\"\n\n\
             or set them in the environment:\n\n    export TALARIA_MODEL_BASE_URL=http://127.0.0.1:8000/v1\n    \
             export TALARIA_MODEL=qwen2.5-7b-instruct\n",
            home.config_file().display()
        )));

        // From the environment (or .env) is configured too.
        let config = resolve("", &[("TALARIA_MODEL_BASE_URL", "http://h/v1")]);
        assert_eq!(ModelSetup::needed(&config, &home.config_file()), None);

        // A home seeded before the [model] header was commented out: the
        // lines go under the existing table, never below a second header.
        std::fs::write(home.config_file(), "[model]\n# name = \"default\"\n").unwrap();
        let setup = ModelSetup::needed(&resolve("", &[]), &home.config_file()).unwrap();
        assert!(setup.has_model_table);
        assert!(!setup.toml_lines().contains("[model]"));
        assert!(
            setup.explain().contains(&format!(
                "add under the [model] table of {}:",
                home.config_file().display()
            )),
            "{}",
            setup.explain()
        );
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_password("http://127.0.0.1:8080/v1"),
            "http://127.0.0.1:8080/v1"
        );
        assert_eq!(
            mask_password("https://u:p@h/v1?k=v"),
            "https://u:***@h/v1?k=v"
        );
        assert_eq!(mask_password("https://token@h"), "https://***@h");
        assert_eq!(mask_password("not a url"), "not a url");
    }

    #[test]
    fn bad_values_in_the_environment_are_named() {
        let bad = env(&[("TALARIA_SANDBOX_MAX_INSTANCES", "lots")], &[]);
        let error = Config::resolve(
            &Home::at("/d"),
            ConfigFile::default(),
            &bad,
            &Flags::default(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "TALARIA_SANDBOX_MAX_INSTANCES: expected a whole number, found \"lots\""
        );
    }
}
