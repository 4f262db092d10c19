//! The command line as clap reads it: every command, flag and argument, and
//! the help text shown for them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "talaria",
    version,
    about = "An AI agent runtime whose skills run as sandboxed WebAssembly components",
    long_about = "An AI agent runtime whose skills run as sandboxed WebAssembly components.\n\n\
        Each skill is a folder with skill.toml, an optional SKILL.md and an optional .wasm component, \
        or a folder in the Agent Skills format (SKILL.md alone). \
        Components run under wasmtime with only the mounts and environment variables the operator \
        granted, no network, and hard memory, time and output limits.\n\n\
        All state lives in the data home (--home, TALARIA_HOME, default ~/.talaria).",
    after_help = "Examples:\n  \
        talaria skills list\n  \
        talaria skills audit\n  \
        talaria skills grant files\n  \
        talaria tool call text.count '{\"text\": \"hello world\"}'\n  \
        talaria skills new my-skill\n  \
        talaria config show"
)]
pub struct Cli {
    #[command(flatten)]
    pub(super) global: GlobalArgs,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Args)]
pub(super) struct GlobalArgs {
    /// Data home: config, grants, skills, skill data, caches [default: ~/.talaria].
    #[arg(long, global = true, env = "TALARIA_HOME", value_name = "DIR")]
    pub(super) home: Option<PathBuf>,
    /// Read skills from DIR instead of HOME/skills (also TALARIA_SKILLS_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub(super) skills_dir: Option<PathBuf>,
    /// Directory mounted for skills that request ${workspace} (also TALARIA_WORKSPACE,
    /// config `workspace`) [default: HOME/workspace].
    #[arg(long, global = true, value_name = "DIR")]
    pub(super) workspace: Option<PathBuf>,
    /// Log filter for stderr, e.g. `info` or `talaria=debug` (also TALARIA_LOG, config
    /// `log.level`) [default: warn].
    #[arg(long, global = true, value_name = "FILTER")]
    pub(super) log: Option<String>,
    /// Folder of shipped skills to sync into the home and grant read-only access without
    /// review (also TALARIA_BUNDLED_SKILLS in the environment, config `skills.bundled`; never
    /// .env) [default: share/talaria/skills beside the binary].
    #[arg(long, global = true, value_name = "DIR")]
    pub(super) bundled_skills: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(super) enum Command {
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
    /// Run Talaria as a service: an OpenAI-compatible API.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Test the approval rules native commands pass through.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// The backend native commands run on.
    #[command(subcommand)]
    Backend(BackendCommand),
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
    /// Print a shell completion script for talaria.
    ///
    /// Load it in the running shell, or save it where the shell looks for
    /// completions.
    #[command(after_help = "Examples:\n  \
        source <(talaria completions bash)   # bash; add this line to ~/.bashrc to keep it\n  \
        source <(talaria completions zsh)    # zsh, after compinit; add it to ~/.zshrc\n  \
        talaria completions fish | source    # fish; or save it as ~/.config/fish/completions/talaria.fish")]
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The container image's entrypoint (PID 1): hands the data home to the
    /// service user, drops root, seeds a first boot and runs COMMAND
    /// (default `gateway run`; a talaria subcommand, or any program) as a
    /// supervised child. Not for use outside the image.
    #[command(hide = true)]
    Container {
        /// The command to run, with its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
pub(super) enum ApprovalsCommand {
    /// Say what the approvals would decide about a command, and which rule
    /// decided, without running it.
    ///
    /// Decisions: `hardline` (refused in every mode: rm -rf of / or a system
    /// directory or the home, mkfs, raw writes to block devices, fork bombs,
    /// kill -1, shutdown and reboot, writes to the home's .env, grants.toml
    /// or config.toml), `needs-approval` (a dangerous pattern, in mode
    /// manual), `not-in-allowlist` (mode allowlist), `allowed`. The command
    /// is split first: chains, pipes, $(...), backticks, sudo/env/xargs and
    /// bash -c payloads are all checked. Exit 0 when it would run without
    /// asking, 1 otherwise.
    #[command(after_help = "Examples:\n  \
        talaria approvals check 'git status'\n  \
        talaria approvals check 'true; rm -rf /'           # hardline, whatever the mode\n  \
        talaria approvals check 'curl -s x.sh | sh'        # needs approval in mode manual\n  \
        talaria approvals check --mode allowlist 'cargo test'   # against approvals.allowlist")]
    Check {
        /// The command line, as the agent or a skill would send it.
        command: String,
        /// Decide as in this mode instead of approvals.mode (manual, allowlist, off).
        #[arg(long, value_name = "MODE")]
        mode: Option<crate::approval::Mode>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(super) enum BackendCommand {
    /// Say where native commands run, and time a `true` there.
    ///
    /// Kinds (config [backend] kind, TALARIA_BACKEND): none (the default:
    /// native commands are refused) and local (on this machine, as this
    /// user; only the approvals in front of it). Exit 0 when commands can
    /// run, 1 otherwise.
    Check,
}

#[derive(Subcommand)]
pub(super) enum GatewayCommand {
    /// Serve the OpenAI-compatible API and the dashboard in the foreground
    /// until SIGTERM or Ctrl-C.
    ///
    /// API endpoints: POST /v1/chat/completions (streaming too), POST
    /// /v1/responses, GET /v1/models, GET /health (no key), GET
    /// /health/detailed. Every request but /health needs `Authorization:
    /// Bearer $TALARIA_API_KEY`; on the first start without one, a random key
    /// is generated into the home's .env. The API binds 127.0.0.1:8642 and the
    /// dashboard 127.0.0.1:9119 unless told otherwise (config [gateway],
    /// TALARIA_API_HOST, TALARIA_API_PORT, TALARIA_DASHBOARD_PORT). Beyond
    /// loopback the dashboard needs a password (`talaria gateway
    /// set-password`). Refuses to run as root without --allow-root.
    #[command(after_help = "Examples:\n  \
        talaria gateway run                          # API on 127.0.0.1:8642, dashboard on 127.0.0.1:9119\n  \
        talaria gateway run --port 0 --dashboard-port 0   # free ports; the first lines say which\n  \
        talaria gateway run --no-dashboard           # the API only\n  \
        curl -s localhost:8642/v1/models -H \"Authorization: Bearer $TALARIA_API_KEY\"")]
    Run {
        /// Address to bind (default 127.0.0.1; 0.0.0.0 exposes the API and the dashboard to the network).
        #[arg(long, value_name = "ADDRESS")]
        host: Option<String>,
        /// Port of the API (default 8642; 0 picks a free one).
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
        /// Port of the dashboard (default 9119; 0 picks a free one).
        #[arg(long, value_name = "PORT")]
        dashboard_port: Option<u16>,
        /// Serve the API only (TALARIA_DASHBOARD=0 or gateway.dashboard = false do the same).
        #[arg(long)]
        no_dashboard: bool,
        /// Run even as root (TALARIA_ALLOW_ROOT=1 does the same).
        #[arg(long)]
        allow_root: bool,
    },
    /// Ask the running gateway's /health; exit 0 when it answers 200.
    ///
    /// Reads the same settings as `gateway run` (config [gateway],
    /// TALARIA_API_HOST, TALARIA_API_PORT) and asks on loopback when the
    /// gateway listens on every interface. The image's HEALTHCHECK uses it.
    Health {
        /// Seconds to wait for the answer.
        #[arg(long, value_name = "SECONDS", default_value_t = 3)]
        timeout: u64,
    },
    /// Set the dashboard's password (needed to serve it beyond loopback).
    ///
    /// On a terminal the password is asked twice without echo; otherwise the
    /// first line of stdin is the password (never pass it as an argument:
    /// argv is visible to every user of the machine). At least 12
    /// characters. Stored as an Argon2id hash in the home's
    /// dashboard.password; a running gateway uses it from its next login.
    #[command(after_help = "Examples:\n  \
        talaria gateway set-password                 # asks twice\n  \
        talaria gateway set-password < password.txt  # from a file or a secret store\n  \
        talaria gateway set-password --remove        # loopback only again, no login")]
    SetPassword {
        /// Remove the password instead.
        #[arg(long)]
        remove: bool,
    },
}

#[derive(Subcommand)]
pub(super) enum SkillsCommand {
    /// List skills with their version, number of tools and state.
    ///
    /// States: `granted` (tools offered), `pending` (never granted),
    /// `drifted` (changed or asking for more since its grant), `invalid`
    /// (skill.toml or SKILL.md rejected), `failed` (granted, but the component does not
    /// load).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one skill: its manifest, what it requests and what
    /// is granted, its hash and state, its tools, its data.
    ///
    /// The component is loaded (to list its tools) only when the skill is
    /// granted. Exits 2 when there is no such skill.
    Info {
        /// The skill's name (see `talaria skills list`).
        name: String,
        /// Print JSON instead of text.
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
    /// Grant a skill the capabilities its manifest requests, pinned to its
    /// current hash.
    ///
    /// Prints the host paths, environment variables, commands, network
    /// destinations, secrets and limits that will be granted (and what
    /// changed since the previous grant), then asks for confirmation.
    /// Without a terminal it refuses unless --yes is given.
    ///
    /// Network: by default the manifest's own destinations are granted,
    /// but never a wide one (`https://*`); name the hosts you choose with
    /// --network, e.g. `--network https://*.wikipedia.org --network
    /// http://127.0.0.1:8080`. A request must match the manifest and the
    /// grant.
    Grant {
        /// The skill's name.
        name: String,
        /// Grant exactly these destinations (repeatable): `https://HOST`,
        /// `https://*.DOMAIN`, `http://127.0.0.1:PORT`; each within what the
        /// manifest asks.
        #[arg(long, value_name = "URL")]
        network: Vec<String>,
        /// Allow granting a wide destination (`https://*`): the skill may
        /// reach any such host.
        #[arg(long)]
        network_any: bool,
        /// Let the host send only these secrets (repeatable), to all the
        /// hosts the manifest names for it or to one (`NAME@HOST`); all the
        /// manifest's secrets by default.
        #[arg(long, value_name = "NAME[@HOST]")]
        secret: Vec<String>,
        /// Grant without asking (for scripts).
        #[arg(long)]
        yes: bool,
    },
    /// Remove a skill's grant; its tools are no longer offered.
    Revoke {
        /// The skill's name.
        name: String,
    },
    /// Install skills: a skill folder, a folder of skills, a .zip or
    /// .tar.gz archive, or a git repository.
    ///
    /// Each skill folder (SKILL.md and/or skill.toml) is copied, then
    /// validated (manifest, component loads) before it replaces an installed
    /// revision; a skill that fails leaves the previous one in place. A skill
    /// asking for nothing (every Agent Skills folder) is granted as
    /// installed; one asking for more stays pending until `skills grant`.
    /// Archives refuse links, devices and entries outside their folder;
    /// repositories are fetched shallow with the system git, running
    /// nothing of them.
    ///
    /// Examples:
    ///   talaria skills install ./pdf
    ///   talaria skills install ./collection          (each skill folder in it)
    ///   talaria skills install pdf.zip
    ///   talaria skills install https://github.com/org/skills --path skills/pdf --ref v1.2.0
    #[command(verbatim_doc_comment)]
    Install {
        /// A skill folder, a folder of skill folders, a .zip/.tar.gz
        /// archive, or a git repository (https://, ssh://, file://,
        /// git@host:path).
        source: String,
        /// The folder to install inside the source (e.g. skills/pdf).
        #[arg(long)]
        path: Option<PathBuf>,
        /// The branch, tag or commit to fetch from a git repository
        /// (default: its default branch).
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
    },
    /// Delete an installed skill: its folder and its grant.
    ///
    /// Prints what will be done and asks for confirmation; without a terminal
    /// it refuses unless --yes is given. The grant is revoked. The skill's
    /// data directory (HOME/skill-data/NAME) is kept unless --purge-data is
    /// given. A bundled skill removed this way stays removed (`talaria skills
    /// reset NAME` brings it back).
    Remove {
        /// The skill's name.
        name: String,
        /// Remove without asking (for scripts).
        #[arg(long)]
        yes: bool,
        /// Also delete the skill's data directory.
        #[arg(long)]
        purge_data: bool,
    },
    /// Create a new skill folder to start from: skill.toml, SKILL.md and a
    /// Rust crate with one example tool.
    ///
    /// The crate is a cdylib depending on talaria-sdk by path (the sdk
    /// folder of the source tree this talaria was built from, or --sdk);
    /// it builds on its own with `cargo build --target wasm32-wasip2
    /// --release`. The commands that build, install and grant it are
    /// printed at the end.
    #[command(after_help = "Examples:\n  \
        talaria skills new my-skill                 # creates ./my-skill\n  \
        talaria skills new my-skill --dir ~/skills  # creates ~/skills/my-skill")]
    New {
        /// The skill's name: a-z, 0-9 and `-`, starting with a letter.
        name: String,
        /// Create the skill folder inside DIR [default: the current directory].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The talaria-sdk crate to depend on: the `sdk` folder of a Talaria
        /// source tree [default: the one this talaria was built from].
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
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
    /// Write a skill as an Agent Skills folder, DIR/NAME, for other agents.
    ///
    /// The folder is copied as installed (skill.toml and the component stay,
    /// so Talaria reads it back the same); SKILL.md gets the YAML
    /// frontmatter (name, description, metadata.version) the format needs
    /// when it has none. DIR/NAME must not exist.
    Export {
        /// The skill's name.
        name: String,
        /// The folder to write the skill's folder into.
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub(super) enum ToolCommand {
    /// List every tool of every granted skill as SKILL.TOOL with its description and arguments.
    List {
        /// Print JSON (with each tool's full JSON Schema) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one tool as the model sees it: its name, description and the
    /// JSON Schema of its arguments.
    ///
    /// The skill must be granted (its component is loaded to ask for its
    /// tools).
    Info {
        /// The tool, as SKILL.TOOL (see `talaria tool list`).
        #[arg(value_name = "SKILL.TOOL")]
        tool: String,
        /// Print the tool definition sent to the model, as JSON.
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
    /// The most recently active sessions, newest first, each titled by its
    /// first message.
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
    ///
    /// Searches what was said (user, assistant and tool messages), never the
    /// system prompt.
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
        format: super::sessions::ExportFormat,
    },
    /// Delete a session and its messages.
    Delete {
        /// The session id.
        id: String,
    },
}

#[derive(Subcommand)]
pub(super) enum ConfigCommand {
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
