//! The `talaria` command line: argument parsing and printing only.

mod output;

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::sandbox::{LoadedSkill, Sandbox, SandboxConfig};
use crate::skill::{self, Capabilities, MountRoots, Skill};

/// Exit code of a failed tool call or a runtime failure.
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
        Components run under wasmtime with only the mounts and environment variables they were \
        granted, no network, and hard memory, time and output limits.",
    after_help = "Examples:\n  \
        talaria skills list\n  \
        talaria tool list --json\n  \
        talaria tool call text.count '{\"text\": \"hello world\"}'"
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GlobalArgs {
    /// Data home: compiled-component cache, skill data, default workspace and skills.
    #[arg(long, global = true, env = "TALARIA_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Where skills are read from [default: HOME/skills].
    #[arg(long, global = true, env = "TALARIA_SKILLS_DIR", value_name = "DIR")]
    skills_dir: Option<PathBuf>,
    /// Directory mounted for skills that request ${workspace} [default: HOME/workspace].
    #[arg(long, global = true, env = "TALARIA_WORKSPACE", value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Log filter for stderr, e.g. `info` or `talaria=debug`.
    #[arg(
        long,
        global = true,
        env = "TALARIA_LOG",
        value_name = "FILTER",
        default_value = "warn"
    )]
    log: String,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect installed skills.
    #[command(subcommand)]
    Skills(SkillsCommand),
    /// List and call the tools skills offer.
    #[command(subcommand)]
    Tool(ToolCommand),
}

#[derive(Subcommand)]
enum SkillsCommand {
    /// List skills with their version, number of tools and state.
    ///
    /// States: `ready` (component loaded, tools offered), `instructions-only`
    /// (SKILL.md without a component), `invalid` (skill.toml rejected),
    /// `failed` (the component could not be loaded).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ToolCommand {
    /// List every tool of every ready skill as SKILL.TOOL with its description and arguments.
    List {
        /// Print JSON (with each tool's full JSON Schema) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Call one tool in a fresh sandbox and print its result.
    ///
    /// Exits 0 with the result on stdout, 1 when the tool fails (the error on
    /// stderr), 2 on usage errors such as an unknown tool or malformed JSON.
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

/// A failure with the exit code it maps to.
struct Failure {
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
    init_logging(&cli.global.log);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("warning: invalid log filter {filter:?} ({error}); using `warn`");
        tracing_subscriber::EnvFilter::new("warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let paths = Paths::resolve(&cli.global)?;
    match cli.command {
        Command::Skills(SkillsCommand::List { json }) => {
            let skills = paths.load_all().await?;
            output::print_skills(&skills, json)?;
        }
        Command::Tool(ToolCommand::List { json }) => {
            let skills = paths.load_all().await?;
            output::print_tools(&skills, json)?;
        }
        Command::Tool(ToolCommand::Call { tool, arguments }) => {
            let (skill_name, tool_name) = tool
                .split_once('.')
                .filter(|(skill, tool)| !skill.is_empty() && !tool.is_empty())
                .ok_or_else(|| {
                    Failure::usage(anyhow::anyhow!(
                        "expected SKILL.TOOL (e.g. text.count), found {tool:?}"
                    ))
                })?;
            let arguments = read_arguments(&arguments)?;
            let skill = skill::find(&paths.skills_dir, skill_name)
                .map_err(Failure::usage)?
                .ok_or_else(|| {
                    Failure::usage(anyhow::anyhow!(
                        "no skill named {skill_name:?} in {}; see `talaria skills list`",
                        paths.skills_dir.display()
                    ))
                })?;
            let sandbox = paths.sandbox()?;
            let loaded = paths.load(&sandbox, &skill).await?;
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
        }
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

/// Where things live, resolved from flags, environment and defaults.
struct Paths {
    skills_dir: PathBuf,
    roots: MountRoots,
    cache_dir: PathBuf,
}

/// A skill as `skills list` and `tool list` show it.
pub(crate) enum SkillEntry {
    Ready(Skill, Box<LoadedSkill>),
    InstructionsOnly(Skill),
    Invalid(skill::ManifestError),
    Failed(Skill, String),
}

impl Paths {
    fn resolve(global: &GlobalArgs) -> anyhow::Result<Self> {
        let home = match &global.home {
            Some(home) => home.clone(),
            None => std::env::home_dir()
                .context("cannot find the home directory; set TALARIA_HOME or pass --home")?
                .join(".talaria"),
        };
        let skills_dir = global
            .skills_dir
            .clone()
            .unwrap_or_else(|| home.join("skills"));
        let workspace = match &global.workspace {
            Some(workspace) => workspace.clone(),
            None => {
                let workspace = home.join("workspace");
                create_private_dir(&workspace)?;
                workspace
            }
        };
        Ok(Self {
            skills_dir,
            roots: MountRoots {
                workspace,
                skill_data: home.join("skill-data"),
            },
            cache_dir: home.join("cache").join("components"),
        })
    }

    fn sandbox(&self) -> anyhow::Result<Sandbox> {
        Sandbox::new(SandboxConfig {
            cache_dir: Some(self.cache_dir.clone()),
            ..SandboxConfig::default()
        })
    }

    async fn load(&self, sandbox: &Sandbox, skill: &Skill) -> anyhow::Result<LoadedSkill> {
        let capabilities = Capabilities::as_requested(skill, &self.roots)
            .with_context(|| format!("skill {}", skill.label()))?;
        Ok(sandbox.load(skill, capabilities).await?)
    }

    async fn load_all(&self) -> anyhow::Result<Vec<SkillEntry>> {
        let sandbox = self.sandbox()?;
        let mut entries = Vec::new();
        for discovered in skill::discover(&self.skills_dir)? {
            let entry = match discovered {
                Err(error) => SkillEntry::Invalid(error),
                Ok(skill) if skill.manifest.component.is_none() => {
                    SkillEntry::InstructionsOnly(skill)
                }
                Ok(skill) => match self.load(&sandbox, &skill).await {
                    Ok(loaded) => SkillEntry::Ready(skill, Box::new(loaded)),
                    Err(error) => SkillEntry::Failed(skill, format!("{error:#}")),
                },
            };
            entries.push(entry);
        }
        Ok(entries)
    }
}

fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}
