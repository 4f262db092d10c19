//! The container's entrypoint: `talaria container [COMMAND…]`, PID 1 of the
//! image.
//!
//! 1. **Root phase** (the default: the image starts as root only for this):
//!    read the service user's ids ([`ids`]), hand the data home to it in a
//!    targeted way ([`ownership`]), then give up root for good
//!    ([`privileges`]; supplementary groups, `--group-add` ones too, are
//!    cleared) and forbid new privileges. Started with `--user UID:GID` instead, there is no
//!    root phase: the home must already be writable, and the error says
//!    which `chown` makes it so.
//! 2. **First boot**, as the service user: create the home's layout and seed
//!    `config.toml`, `.env` and `SOUL.md` when absent (never overwriting);
//!    the gateway adds its generated API key to `.env` at its first start.
//! 3. **Run** `gateway run`, or the `talaria` subcommand or program the
//!    arguments name ([`command`]), as a supervised child ([`supervise`]):
//!    signals forwarded, orphans reaped, the child's exit code returned,
//!    never a restart.
//!
//! Separately, [`leave_root`] makes a root `docker exec CONTAINER talaria …`
//! act as the service user, so no root-owned file appears in the home.
//!
//! Everything here runs before the async runtime starts, while the process
//! has one thread.

mod command;
mod ids;
mod ownership;
mod privileges;
mod supervise;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::home::Home;
pub use ids::ServiceIds;

/// The data home in the image when neither `--home` nor `TALARIA_HOME` says
/// otherwise.
pub const DEFAULT_HOME: &str = "/opt/data";

/// Set in the image: root commands in this container drop to the service
/// user (see [`leave_root`]).
const CONTAINER_VARIABLE: &str = "TALARIA_CONTAINER";
/// Keeps root, for the rare operator who means it (also the gateway's).
const ALLOW_ROOT_VARIABLE: &str = "TALARIA_ALLOW_ROOT";

/// Exit code of a failed entrypoint (bad ids, an unwritable home, …).
const EXIT_FAILURE: u8 = 1;

/// Run the entrypoint. `home` is `--home` when given; `subcommands` are the
/// names `talaria` answers to, so `chat -q …` runs `talaria chat -q …`.
pub fn main(args: &[OsString], home: Option<&Path>, subcommands: &[String]) -> ExitCode {
    match run(args, home, subcommands) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("talaria container: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(args: &[OsString], home: Option<&Path>, subcommands: &[String]) -> anyhow::Result<u8> {
    let signals = supervise::block_signals()?;
    anyhow::ensure!(
        variable(CONTAINER_VARIABLE).as_deref() == Some("1"),
        "this is the container image's entrypoint: as root it hands the data home to another user. \
         Outside the image (which sets {CONTAINER_VARIABLE}=1) run talaria's commands directly, or set \
         {CONTAINER_VARIABLE}=1 if you mean it"
    );
    let root = home_root(home);
    if rustix::process::geteuid().is_root() {
        let ids = ServiceIds::from_env(variable)?;
        let changed = ownership::give_to(&root, ids)?;
        if changed > 0 {
            eprintln!(
                "talaria container: handed {changed} entr{} of {} to uid {}, gid {}",
                if changed == 1 { "y" } else { "ies" },
                root.display(),
                ids.uid,
                ids.gid
            );
        }
        privileges::drop_to(ids)?;
        privileges::forbid_new_privileges()?;
    } else {
        let ids = ServiceIds {
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
        };
        ownership::check_writable(&root, ids)?;
    }
    let seeded = Home::at(&root)
        .bootstrap()
        .with_context(|| format!("cannot prepare the data home {}", root.display()))?;
    if !seeded.seeded_files.is_empty() {
        let names: Vec<String> = seeded
            .seeded_files
            .iter()
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        eprintln!(
            "talaria container: first boot: seeded {} in {}. The gateway writes a generated \
             TALARIA_API_KEY into {} at its first start (its log says so, never the key): read it with \
             `docker exec CONTAINER cat {}`. Model settings go in {} or as environment variables.",
            names.join(", "),
            root.display(),
            root.join(".env").display(),
            root.join(".env").display(),
            root.join("config.toml").display(),
        );
    }
    let talaria = std::env::current_exe().context("cannot find the talaria binary")?;
    let mut program = command::resolve(args, &talaria, subcommands);
    // The child works in the home this process prepared, whatever its own
    // environment said.
    program
        .env
        .push(("TALARIA_HOME".into(), root.into_os_string()));
    supervise::run(&program, &signals)
}

/// In the container (`TALARIA_CONTAINER=1`), a `talaria` command started as
/// root (`docker exec` runs as root unless told otherwise) drops to the
/// service user before doing anything, so the files it writes in the home
/// belong to the service. `TALARIA_ALLOW_ROOT=1` keeps root. Outside the
/// container this does nothing.
pub fn leave_root() -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root()
        || variable(CONTAINER_VARIABLE).as_deref() != Some("1")
        || variable(ALLOW_ROOT_VARIABLE).as_deref() == Some("1")
    {
        return Ok(());
    }
    let ids = ServiceIds::from_env(variable)?;
    privileges::drop_to(ids).context(
        "running as root in the container, talaria acts as the service user, and could not become it \
         (set TALARIA_ALLOW_ROOT=1 to stay root)",
    )
}

fn home_root(home: Option<&Path>) -> PathBuf {
    home.map(Path::to_owned)
        .or_else(|| std::env::var_os("TALARIA_HOME").map(PathBuf::from))
        .filter(|path| !path.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME))
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
