//! The `talaria` command line: argument parsing and printing only.
//!
//! The commands, flags and help texts are in `args`; each command group
//! prints and asks in a module of its own (`skills`, `tool`, `sessions`,
//! `chat`, `config`, `doctor`). This file starts the async runtime, hands
//! each command to its module and maps failures to exit codes.

mod approvals;
mod args;
mod chat;
mod config;
mod doctor;
mod gateway;
mod hint;
mod output;
mod sessions;
mod skills;
mod table;
mod tool;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

use crate::app::{App, AppOptions, Settings};
use crate::config::{Config, LogFormat};
pub use args::Cli;
use args::{
    ApprovalsCommand, BackendCommand, Command, ConfigCommand, GatewayCommand, SessionsCommand,
    SkillsCommand, ToolCommand,
};

/// Exit code of a failed tool call, a refusal or a runtime failure; also of
/// `skills audit` when a skill is not granted.
const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error (bad arguments, unknown skill or tool).
const EXIT_USAGE: u8 = 2;

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
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    hint::remember(&matches);
    // Both before the async runtime starts threads: the entrypoint may drop
    // root, and so may a root `docker exec … talaria` in the container.
    if let Command::Container { command } = &cli.command {
        let subcommands: Vec<String> = Cli::command()
            .get_subcommands()
            .flat_map(|sub| std::iter::once(sub.get_name()).chain(sub.get_all_aliases()))
            .chain(["help"])
            .map(str::to_owned)
            .collect();
        return crate::container::main(command, cli.global.home.as_deref(), &subcommands);
    }
    if let Err(error) = crate::container::leave_root() {
        eprintln!("error: {error:#}");
        return ExitCode::from(EXIT_FAILURE);
    }
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
        // The reader of stdout went away (`| head -1`): it has what it wanted.
        Err(failure) if output::is_closed_stdout(&failure.error) => ExitCode::SUCCESS,
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
    // Commands that need no data home.
    match &cli.command {
        Command::Config(ConfigCommand::Path) => {
            // Works even when config.toml is broken: that is when it is needed.
            config::print_path(cli.global.home.as_deref())?;
            return Ok(0);
        }
        Command::Completions { shell } => {
            completions(*shell)?;
            return Ok(0);
        }
        Command::Skills(SkillsCommand::New { name, dir, sdk }) => {
            skills::new(name, dir.as_deref(), sdk.as_deref())?;
            return Ok(0);
        }
        _ => {}
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
        return doctor::run(
            cli.global.home.as_deref(),
            &options.flags,
            cli.global.skills_dir.clone(),
            json,
        )
        .await;
    }
    let settings = Settings::load(&options)?;
    if let Command::Gateway(GatewayCommand::Health { timeout }) = cli.command {
        gateway::health(&settings.config, timeout).await?;
        return Ok(0);
    }
    // A service says what it does (one line per request) unless told not
    // to; a command stays quiet.
    let service = matches!(cli.command, Command::Gateway(GatewayCommand::Run { .. }));
    init_logging(&settings.config, service);
    let app = App::open(settings, &options)?;
    // A person at a terminal can answer what needs approval; anywhere else
    // (scripts, pipes, CI) it is denied at once.
    let asks_a_person = matches!(
        cli.command,
        Command::Chat { .. } | Command::Tool(ToolCommand::Call { .. })
    );
    {
        use std::io::IsTerminal as _;
        if asks_a_person && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            app.set_approver(std::sync::Arc::new(approvals::TerminalApprover::default()));
        }
    }
    match cli.command {
        Command::Skills(SkillsCommand::List { json }) => {
            let entries = app.registry().entries(true).await?;
            skills::print_skills(&entries, json)?;
        }
        Command::Skills(SkillsCommand::Audit { json }) => {
            if !skills::audit(&app, json).await? {
                return Ok(EXIT_FAILURE);
            }
        }
        Command::Skills(SkillsCommand::Grant {
            name,
            network,
            network_any,
            secret,
            yes,
        }) => {
            let choices = crate::skill::grants::GrantChoices {
                network: (!network.is_empty()).then_some(network),
                network_any,
                secrets: (!secret.is_empty()).then_some(secret),
            };
            skills::grant(&app, &name, &choices, yes).await?
        }
        Command::Skills(SkillsCommand::Info { name, json }) => {
            skills::info(&app, &name, json).await?
        }
        Command::Skills(SkillsCommand::Revoke { name }) => skills::revoke(&app, &name)?,
        Command::Skills(SkillsCommand::Remove {
            name,
            yes,
            purge_data,
        }) => skills::remove(&app, &name, yes, purge_data)?,
        Command::Skills(SkillsCommand::Reset { name }) => skills::reset(&app, &name)?,
        Command::Skills(SkillsCommand::Export { name, dir }) => skills::export(&app, &name, &dir)?,
        Command::Skills(SkillsCommand::Install {
            source,
            path,
            reference,
        }) => skills::install(&app, &source, path.as_deref(), reference.as_deref()).await?,
        Command::Tool(ToolCommand::List { json }) => {
            let entries = app.registry().entries(true).await?;
            tool::print_tools(&entries, json)?;
        }
        Command::Tool(ToolCommand::Info { tool, json }) => tool::info(&app, &tool, json).await?,
        Command::Tool(ToolCommand::Call { tool, arguments }) => {
            let result = tool::call_tool(&app, &tool, &arguments).await;
            app.shutdown().await;
            result?
        }
        Command::Config(ConfigCommand::Show { json }) => {
            config::print_config(&app, cli.global.skills_dir.is_some(), json)?
        }
        Command::Sessions(command) => sessions::run(&app, command)?,
        Command::Chat { query, resume } => {
            let result = chat::run(&app, query, resume).await;
            app.shutdown().await;
            result?
        }
        Command::Gateway(GatewayCommand::Run {
            host,
            port,
            dashboard_port,
            no_dashboard,
            allow_root,
        }) => {
            let options = crate::gateway::GatewayOptions {
                host,
                port,
                dashboard_port,
                no_dashboard,
                allow_root,
            };
            gateway::run(app, options).await?
        }
        Command::Approvals(ApprovalsCommand::Check {
            command,
            mode,
            json,
        }) => {
            if !approvals::check(&app, &command, mode, json)? {
                return Ok(EXIT_FAILURE);
            }
        }
        Command::Backend(BackendCommand::Check) => {
            let result = approvals::check_backend(&app).await;
            app.shutdown().await;
            if !result? {
                return Ok(EXIT_FAILURE);
            }
        }
        Command::Gateway(GatewayCommand::SetPassword { remove }) => {
            gateway::set_password(&app, remove)?
        }
        // Answered above, before the context is built.
        Command::Config(ConfigCommand::Path)
        | Command::Doctor { .. }
        | Command::Completions { .. }
        | Command::Container { .. }
        | Command::Gateway(GatewayCommand::Health { .. })
        | Command::Skills(SkillsCommand::New { .. }) => {}
    }
    Ok(0)
}

/// `talaria completions SHELL`: the script clap writes for `shell`.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use std::io::Write as _;
    // Written to a buffer first: clap_complete panics on a failed write.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "talaria", &mut script);
    output::stdout().write_all(&script)?;
    Ok(())
}

fn init_logging(config: &Config, service: bool) {
    use std::io::IsTerminal;
    let filter = if service && config.log_level.source == crate::config::Source::Default {
        "info"
    } else {
        &config.log_level.value
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("warning: invalid log filter {filter:?} ({error}); using `warn`");
        tracing_subscriber::EnvFilter::new("warn")
    });
    // The Docker client logs whole request bodies at debug level, and a
    // command's variables are in them: its lines stop at info, whatever
    // the operator asked for.
    let filter = match "bollard=info".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A service also keeps its recent lines for the dashboard's Logs page.
    let buffer = service.then(crate::log_buffer::layer);
    let result = match config.log_format.value {
        LogFormat::Json => builder.json().finish().with(buffer).try_init(),
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .with(buffer)
            .try_init(),
    };
    // Only fails if a subscriber is already set (tests calling twice).
    let _ = result;
}
