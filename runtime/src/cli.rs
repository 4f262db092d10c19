//! The `talaria` command line: argument parsing and printing only.

mod chat;
mod output;
mod sessions;
mod skills;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::skill::registry::SkillRegistry;
use clap::{Args, Parser, Subcommand};

use crate::app::{App, AppOptions, Settings};
use crate::config::{Config, LogFormat};

/// Exit code of a failed tool call, a refusal or a runtime failure; also of
/// `skills audit` when a skill is not granted.
const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error (bad arguments, unknown skill or tool).
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "talaria",
    version,
    about = "An AI agent runtime whose skills run as sandboxed WebAssembly components",
    long_about = "An AI agent runtime whose skills run as sandboxed WebAssembly components.\n\n\
        Each skill is a folder with skill.toml, an optional SKILL.md and an optional .wasm component. \
        Components run under wasmtime with only the mounts and environment variables the operator \
        granted, no network, and hard memory, time and output limits.\n\n\
        All state lives in the data home (--home, TALARIA_HOME, default ~/.talaria).",
    after_help = "Examples:\n  \
        talaria skills list\n  \
        talaria skills audit\n  \
        talaria skills grant files\n  \
        talaria tool call text.count '{\"text\": \"hello world\"}'\n  \
        talaria config show"
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
pub(crate) struct GlobalArgs {
    /// Data home: config, grants, skills, skill data, caches [default: ~/.talaria].
    #[arg(long, global = true, env = "TALARIA_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Read skills from DIR instead of HOME/skills (also TALARIA_SKILLS_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    skills_dir: Option<PathBuf>,
    /// Directory mounted for skills that request ${workspace} (also TALARIA_WORKSPACE,
    /// config `workspace`) [default: HOME/workspace].
    #[arg(long, global = true, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Log filter for stderr, e.g. `info` or `talaria=debug` (also TALARIA_LOG, config
    /// `log.level`) [default: warn].
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    /// Folder of shipped skills to sync into the home and grant read-only access without
    /// review (also TALARIA_BUNDLED_SKILLS in the environment, config `skills.bundled`; never
    /// .env) [default: share/talaria/skills beside the binary].
    #[arg(long, global = true, value_name = "DIR")]
    bundled_skills: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect, install and grant skills.
    #[command(subcommand)]
    Skills(SkillsCommand),
    /// List and call the tools of granted skills.
    #[command(subcommand)]
    Tool(ToolCommand),
    /// Talk with the agent: one question with -q, or a conversation at a terminal.
    ///
    /// The model endpoint is any OpenAI-compatible server (config `model.base_url`,
    /// `model.name`; the API key is read from the variable named by
    /// `model.api_key_env`, in the environment or .env). With -q the answer goes
    /// to stdout and progress to stderr.
    Chat {
        /// Ask one question, print the answer and exit.
        #[arg(short = 'q', long = "query", value_name = "TEXT")]
        query: Option<String>,
        /// Continue an earlier session (see `talaria sessions list`).
        #[arg(long, value_name = "ID")]
        resume: Option<String>,
    },
    /// List, read, search, export and delete past sessions (state.db).
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Show the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check the data home and explain each problem with the command that fixes it.
    ///
    /// Checks: the home exists, is writable and everything in it belongs to
    /// the user Talaria runs as (files created by root are the classic
    /// failure); .env is private; config.toml is valid; the lock's holder is
    /// alive (a dead holder's record is cleared); every skill is granted and
    /// its component loads. Exits 1 when a problem is found.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SkillsCommand {
    /// List skills with their version, number of tools and state.
    ///
    /// States: `granted` (tools offered), `pending` (never granted),
    /// `drifted` (changed or asking for more since its grant), `invalid`
    /// (skill.toml rejected), `failed` (granted, but the component does not
    /// load).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print what every skill may touch: mounts with host paths, env, exec,
    /// network, limits, state.
    ///
    /// Exits 0 when every skill is granted and 1 when any is pending, drifted
    /// or invalid, so it can gate a deployment.
    Audit {
        /// Print JSON (schema `talaria.skills.audit/v1`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Grant a skill exactly the capabilities its manifest requests, pinned
    /// to its current hash.
    ///
    /// Prints the host paths, environment variables, commands and limits
    /// that will be granted (and what changed since the previous grant), then
    /// asks for confirmation. Without a terminal it refuses unless --yes is
    /// given.
    Grant {
        /// The skill's name.
        name: String,
        /// Grant without asking (for scripts).
        #[arg(long)]
        yes: bool,
    },
    /// Remove a skill's grant; its tools are no longer offered.
    Revoke {
        /// The skill's name.
        name: String,
    },
    /// Copy a skill folder into the skills directory, validated; it stays
    /// pending until granted.
    ///
    /// The copy is validated (manifest, component loads) before it replaces
    /// an installed revision; a skill that fails leaves the previous one in
    /// place.
    Install {
        /// The skill folder (with skill.toml).
        path: PathBuf,
    },
    /// Restore the shipped copy of a bundled skill (after local edits or a
    /// deletion), with its bundled grant.
    ///
    /// Bundled skills are read from TALARIA_BUNDLED_SKILLS, or from
    /// share/talaria/skills beside the binary's folder.
    Reset {
        /// The bundled skill's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum ToolCommand {
    /// List every tool of every granted skill as SKILL.TOOL with its description and arguments.
    List {
        /// Print JSON (with each tool's full JSON Schema) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Call one tool in a fresh sandbox and print its result.
    ///
    /// Exits 0 with the result on stdout, 1 when the tool fails or the skill
    /// is not granted (the error on stderr), 2 on usage errors such as an
    /// unknown tool or malformed JSON.
    #[command(after_help = "Examples:\n  \
        talaria tool call text.count '{\"text\": \"one two three\"}'\n  \
        echo '{\"path\": \"README.md\"}' | talaria tool call files.read -")]
    Call {
        /// The tool, as SKILL.TOOL (see `talaria tool list`).
        #[arg(value_name = "SKILL.TOOL")]
        tool: String,
        /// Arguments as a JSON object; `-` reads them from stdin.
        #[arg(value_name = "JSON", default_value = "{}")]
        arguments: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum SessionsCommand {
    /// The most recently active sessions.
    List {
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every message of a session.
    Show {
        /// The session id (see `talaria sessions list`).
        id: String,
    },
    /// Find messages containing every word of QUERY, across all sessions.
    Search {
        /// Words to look for (plain words; no query syntax).
        query: String,
        /// How many messages to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a session to stdout as JSON lines or Markdown.
    Export {
        /// The session id.
        id: String,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: sessions::ExportFormat,
    },
    /// Delete a session and its messages.
    Delete {
        /// The session id.
        id: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every setting with its effective value and where it came from
    /// (flag, environment, config.toml or default). Secrets are never shown.
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the path of config.toml.
    Path,
}

/// A failure with the exit code it maps to.
pub(crate) struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: EXIT_USAGE,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self {
            code: EXIT_FAILURE,
            error: error.into(),
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Two workers: the tool calls of one turn run in parallel.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    raise_open_files_limit();
    let outcome = runtime.block_on(run(cli));
    // A guest can leave a host thread blocked for good (say, opening a FIFO
    // nobody writes to); its call has already failed at its timeout. Do not
    // wait for such threads on the way out.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

/// How long exit waits for background threads still running.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Skill calls hold files open (each within `sandbox.max_open_handles`);
/// many at once need more descriptors than the common soft limit of 1024.
/// Raise it to the hard limit, as servers usually do.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!("cannot raise the open-files limit: {error}");
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    if let Command::Config(ConfigCommand::Path) = cli.command {
        // Works even when config.toml is broken: that is when it is needed.
        let root = match &cli.global.home {
            Some(root) => root.clone(),
            None => crate::home::Home::default_root()?,
        };
        println!("{}", crate::home::Home::at(root).config_file().display());
        return Ok(0);
    }
    let options = AppOptions {
        home: cli.global.home.clone(),
        skills_dir: cli.global.skills_dir.clone(),
        flags: crate::config::Flags {
            workspace: cli.global.workspace.clone(),
            log: cli.global.log.clone(),
            bundled_skills: cli.global.bundled_skills.clone(),
        },
    };
    if let Command::Doctor { json } = cli.command {
        // Runs without the usual start-up, which would stop at the very
        // problems doctor is there to explain.
        let root = match &cli.global.home {
            Some(root) => root.clone(),
            None => crate::home::Home::default_root()?,
        };
        let home = crate::home::Home::at(root);
        let findings =
            crate::doctor::run(&home, &options.flags, cli.global.skills_dir.clone()).await;
        output::print_findings(&home, &findings, json)?;
        let worst = findings.iter().map(|f| f.severity).max();
        return Ok(if worst == Some(crate::doctor::Severity::Problem) {
            EXIT_FAILURE
        } else {
            0
        });
    }
    let settings = Settings::load(&options)?;
    init_logging(&settings.config);
    let app = App::open(settings, &options)?;
    match cli.command {
        Command::Skills(SkillsCommand::List { json }) => {
            let entries = app.registry().entries(true).await?;
            output::print_skills(&entries, json)?;
        }
        Command::Skills(SkillsCommand::Audit { json }) => {
            if !skills::audit(&app, json).await? {
                return Ok(EXIT_FAILURE);
            }
        }
        Command::Skills(SkillsCommand::Grant { name, yes }) => {
            skills::grant(&app, &name, yes).await?
        }
        Command::Skills(SkillsCommand::Revoke { name }) => skills::revoke(&app, &name)?,
        Command::Skills(SkillsCommand::Reset { name }) => skills::reset(&app, &name)?,
        Command::Skills(SkillsCommand::Install { path }) => {
            skills::install(&app, &skills::install_source(path)).await?
        }
        Command::Tool(ToolCommand::List { json }) => {
            let entries = app.registry().entries(true).await?;
            output::print_tools(&entries, json)?;
        }
        Command::Tool(ToolCommand::Call { tool, arguments }) => {
            call_tool(&app, &tool, &arguments).await?
        }
        Command::Config(ConfigCommand::Show { json }) => output::print_config(&app, json)?,
        Command::Sessions(command) => sessions::run(&app, command)?,
        Command::Chat { query, resume } => chat::run(&app, query, resume).await?,
        // Answered above, before the context is built.
        Command::Config(ConfigCommand::Path) | Command::Doctor { .. } => {}
    }
    Ok(0)
}

async fn call_tool(app: &App, tool: &str, arguments: &str) -> Result<(), Failure> {
    let (skill_name, tool_name) = tool
        .split_once('.')
        .filter(|(skill, tool)| !skill.is_empty() && !tool.is_empty())
        .ok_or_else(|| {
            Failure::usage(anyhow::anyhow!(
                "expected SKILL.TOOL (e.g. text.count), found {tool:?}"
            ))
        })?;
    let arguments = read_arguments(arguments)?;
    let registry = app.registry();
    let skill = registry.find(skill_name).map_err(Failure::usage)?;
    let assessment = registry.assess(&skill, &registry.grants()?);
    if let Some(refusal) = SkillRegistry::refusal(&skill, &assessment.state) {
        return Err(anyhow::anyhow!(refusal).into());
    }
    let effective = assessment
        .effective
        .context("a granted skill has effective capabilities")?;
    if skill.manifest.component.is_none() {
        return Err(Failure::usage(anyhow::anyhow!(
            "skill {} has instructions only (SKILL.md) and no tools",
            skill.label()
        )));
    }
    let loaded = registry.load(&skill, effective).await?;
    if !loaded.tools().iter().any(|t| t.name == tool_name) {
        let known: Vec<&str> = loaded.tools().iter().map(|t| t.name.as_str()).collect();
        return Err(Failure::usage(anyhow::anyhow!(
            "skill {} has no tool {tool_name:?}; it offers: {}",
            loaded.label(),
            known.join(", ")
        )));
    }
    let output = loaded.call(tool_name, &arguments).await?;
    let result = output.result;
    if result.ends_with('\n') {
        print!("{result}");
    } else {
        println!("{result}");
    }
    Ok(())
}

/// JSON arguments from the command line or stdin, checked to be an object.
fn read_arguments(arguments: &str) -> Result<String, Failure> {
    let text = if arguments == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the arguments from stdin")
            .map_err(Failure::usage)?;
        text
    } else {
        arguments.to_owned()
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => Ok(text),
        Ok(other) => Err(Failure::usage(anyhow::anyhow!(
            "the arguments must be a JSON object like '{{\"text\": \"hi\"}}', found {}",
            json_kind(&other)
        ))),
        Err(error) => Err(Failure::usage(anyhow::anyhow!(
            "the arguments are not valid JSON: {error}"
        ))),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn init_logging(config: &Config) {
    use std::io::IsTerminal;
    let filter = &config.log_level.value;
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("warning: invalid log filter {filter:?} ({error}); using `warn`");
        tracing_subscriber::EnvFilter::new("warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log_format.value {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    // Only fails if a subscriber is already set (tests calling twice).
    let _ = result;
}
