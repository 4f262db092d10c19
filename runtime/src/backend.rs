//! Where native commands run (git, compilers, test runners): never in the
//! sandbox, and never on the host unless the operator says `local`.
//!
//! A [`Backend`] runs one program with its arguments, optional stdin, a
//! working directory, named environment variables, a time limit and an
//! output bound, and returns the exit status and both streams, each
//! bounded with a "truncated" mark. Dropping the future stops the command.
//! This module knows nothing of skills, the sandbox or the agent; the
//! approvals (see `approval`) are its callers' to apply first.
//!
//! Kinds (`[backend] kind`): `none` (the default: every command is
//! refused), `docker` (a hardened sandbox container per process, see
//! `docker`), `ssh` (another machine through the system `ssh`, see `ssh`),
//! `local` (on this machine, as this user; a warning at every start).

pub mod docker;
pub mod local;
mod output;
pub mod ssh;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which backend runs native commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// No native commands at all.
    #[default]
    None,
    /// In a hardened container of a Docker (or Podman) engine.
    Docker,
    /// On another machine, through the system `ssh`.
    Ssh,
    /// On this machine, as this user: no isolation beyond the approvals.
    Local,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Docker => "docker",
            Self::Ssh => "ssh",
            Self::Local => "local",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(Self::None),
            "docker" => Ok(Self::Docker),
            "ssh" => Ok(Self::Ssh),
            "local" => Ok(Self::Local),
            other => Err(format!(
                "expected none, docker, ssh or local, found {other:?}"
            )),
        }
    }
}

/// One command to run.
#[derive(Debug, Clone, Default)]
pub struct CommandRequest {
    /// The program: a name looked up on the backend's `PATH`, or a path.
    pub program: String,
    pub args: Vec<String>,
    /// Written to the command's standard input, which is then closed.
    pub stdin: Option<Vec<u8>>,
    /// Where it runs, on the backend; its workspace when `None`.
    pub workdir: Option<String>,
    /// Variables set for it (the caller chose and resolved them: values
    /// never appear in argv or logs).
    pub env: Vec<(String, String)>,
    /// Stopped (with everything it started) after this long.
    pub timeout: Duration,
    /// Bytes kept of each of stdout and stderr; the rest is read and
    /// dropped, so the command never blocks on a full pipe.
    pub max_output_bytes: usize,
}

/// How a command ended, and what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Stopped at the time limit.
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr: Vec<u8>,
    pub stderr_truncated: bool,
    pub duration: Duration,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

/// Why a command could not run at all (a command that ran and failed is a
/// [`CommandOutput`] with its exit code).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "no native backend is configured (backend.kind = \"none\"): set [backend] kind in config.toml"
    )]
    NotConfigured,
    #[error("cannot start `{program}` on the {backend} backend: {detail}")]
    Spawn {
        backend: &'static str,
        program: String,
        detail: String,
    },
    #[error("the {backend} backend failed while `{program}` ran: {detail}")]
    Io {
        backend: &'static str,
        program: String,
        detail: String,
    },
    #[error("the {backend} backend cannot be used: {detail}")]
    Unreachable {
        backend: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Somewhere native commands run.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    fn kind(&self) -> Kind;

    /// Where commands run, for `backend check` and logs (no secrets).
    fn describe(&self) -> String;

    /// Get ready for the first command (connect, reap what dead processes
    /// left, start the container), so that a service finds problems at
    /// start. Commands do this themselves when it was not done.
    async fn prepare(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn run(&self, request: CommandRequest) -> Result<CommandOutput, BackendError>;

    /// Where commands see the skill folders (`DIR/NAME`), or `None` when
    /// they do not (an Agent Skill's scripts then cannot run).
    fn skills_path(&self) -> Option<String> {
        None
    }

    /// Release what the backend holds (its container, its connection):
    /// called once when the process ends its work.
    async fn shutdown(&self) {}
}

/// The backend of kind `none`: refuses every command.
pub struct NoBackend;

#[async_trait::async_trait]
impl Backend for NoBackend {
    fn kind(&self) -> Kind {
        Kind::None
    }

    fn describe(&self) -> String {
        "none: native commands are refused".to_owned()
    }

    async fn run(&self, _request: CommandRequest) -> Result<CommandOutput, BackendError> {
        Err(BackendError::NotConfigured)
    }
}

/// Whether `name` can name an environment variable of a command: letters,
/// digits and `_`, not starting with a digit.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Check what every backend rejects before running anything: names that
/// cannot be passed to a process.
pub(crate) fn validate(request: &CommandRequest) -> Result<(), BackendError> {
    if request.program.is_empty() {
        return Err(BackendError::Invalid("the program is empty".into()));
    }
    let has_nul = std::iter::once(&request.program)
        .chain(&request.args)
        .chain(request.workdir.iter())
        .any(|text| text.contains('\0'));
    if has_nul {
        return Err(BackendError::Invalid(
            "an argument contains a NUL byte".into(),
        ));
    }
    for (name, value) in &request.env {
        if !is_env_name(name) || value.contains('\0') {
            return Err(BackendError::Invalid(format!(
                "environment variable {name:?} has an invalid name or value"
            )));
        }
    }
    if request.timeout.is_zero() {
        return Err(BackendError::Invalid("the time limit is zero".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_say_what_is_missing() {
        assert_eq!("none".parse::<Kind>(), Ok(Kind::None));
        assert_eq!("local".parse::<Kind>(), Ok(Kind::Local));
        assert_eq!("docker".parse::<Kind>(), Ok(Kind::Docker));
        assert_eq!("ssh".parse::<Kind>(), Ok(Kind::Ssh));
        assert!("podman".parse::<Kind>().is_err());
    }

    #[test]
    fn requests_that_cannot_reach_a_process_are_refused() {
        let good = CommandRequest {
            program: "true".into(),
            timeout: Duration::from_secs(1),
            ..CommandRequest::default()
        };
        assert!(validate(&good).is_ok());
        let cases = [
            CommandRequest {
                program: String::new(),
                ..good.clone()
            },
            CommandRequest {
                args: vec!["a\0b".into()],
                ..good.clone()
            },
            CommandRequest {
                env: vec![("BAD NAME".into(), "x".into())],
                ..good.clone()
            },
            CommandRequest {
                env: vec![("1X".into(), "x".into())],
                ..good.clone()
            },
            CommandRequest {
                timeout: Duration::ZERO,
                ..good.clone()
            },
        ];
        for request in cases {
            assert!(
                matches!(validate(&request), Err(BackendError::Invalid(_))),
                "{request:?}"
            );
        }
    }
}
