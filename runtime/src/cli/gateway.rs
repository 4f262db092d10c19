//! `talaria gateway run`: parse, start, print where it listens;
//! `talaria gateway set-password`: ask for the dashboard's password.

use std::io::Write as _;

use anyhow::Context as _;

use super::Failure;
use crate::app::App;
use crate::gateway::api_key::KeyOrigin;
use crate::gateway::{GatewayOptions, Started};

pub async fn run(app: App, options: GatewayOptions) -> anyhow::Result<()> {
    crate::gateway::run(app, options, print_started).await
}

/// The first line on stdout says where the API is (scripts and tests read
/// it when the port was 0); the key is never printed, only where it is.
fn print_started(started: &Started) {
    let key = match &started.key_origin {
        KeyOrigin::Generated(path) => format!("generated into {}", path.display()),
        KeyOrigin::Configured(origin) => format!("TALARIA_API_KEY from {origin}"),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "talaria gateway: API on http://{} (key: {key})",
        started.address
    );
    if let Some(dashboard) = started.dashboard {
        let _ = writeln!(stdout, "talaria gateway: dashboard on http://{dashboard}");
    }
    let _ = stdout.flush();
}

/// `talaria gateway health`: the answer of /health on stdout, or the
/// reason it is not healthy.
pub async fn health(config: &crate::config::Config, timeout_secs: u64) -> anyhow::Result<()> {
    let body = crate::gateway::probe::probe(
        &config.gateway,
        std::time::Duration::from_secs(timeout_secs),
    )
    .await?;
    writeln!(super::output::stdout(), "{body}")?;
    Ok(())
}

/// `talaria gateway set-password [--remove]`.
pub fn set_password(app: &App, remove: bool) -> Result<(), Failure> {
    let mut stdout = super::output::stdout();
    if remove {
        if crate::gateway::dashboard::auth::remove_password(&app.home)? {
            writeln!(
                stdout,
                "removed the dashboard's password; it is served on loopback only, without a login"
            )?;
        } else {
            writeln!(stdout, "no dashboard password was set; nothing to remove")?;
        }
        return Ok(());
    }
    let password = read_new_password()?;
    crate::gateway::dashboard::auth::check_new_password(&password).map_err(Failure::usage)?;
    let path = crate::gateway::dashboard::auth::set_password(&app.home, &password)?;
    writeln!(
        stdout,
        "dashboard password set (an Argon2id hash in {}); logins need it from now on",
        path.display()
    )?;
    Ok(())
}

/// The new password: asked twice without echo on a terminal, else the
/// first line of stdin.
fn read_new_password() -> Result<String, Failure> {
    use std::io::{BufRead as _, IsTerminal as _};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            return Err(Failure::usage(anyhow::anyhow!(
                "no password on stdin: give it as the first line (or run this on a terminal to be asked)"
            )));
        }
        return Ok(password);
    }
    let first = ask_without_echo("New dashboard password: ")?;
    let second = ask_without_echo("Again: ")?;
    if first != second {
        return Err(Failure::usage(anyhow::anyhow!(
            "the two passwords differ; nothing was changed"
        )));
    }
    Ok(first)
}

/// Ask on stderr and read a line from the terminal with echo off, restoring
/// the terminal's settings whatever happens.
fn ask_without_echo(prompt: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::BufRead as _;
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    eprint!("{prompt}");
    tcsetattr(&stdin, OptionalActions::Now, &quiet).context("cannot turn the echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let restored = tcsetattr(&stdin, OptionalActions::Now, &saved);
    read.context("cannot read the password")?;
    restored.context("cannot restore the terminal's settings")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
