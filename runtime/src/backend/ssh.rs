//! The `ssh` backend: commands run on another machine through the system
//! `ssh`, so the operator's keys, agent and `~/.ssh/config` apply.
//!
//! - `BatchMode=yes` (never a password prompt), `ConnectTimeout`, and
//!   `StrictHostKeyChecking=accept-new`, or `yes` with the configured
//!   `known_hosts` file only.
//! - One master connection per host and process, shared by every command
//!   of the process (`ControlMaster=auto`, `ControlPersist`), its socket
//!   under the home's `run/ssh/` (owner-only): later commands skip the
//!   handshake, and [`Backend::shutdown`] closes it.
//! - The command line the remote shell sees is fixed: `sh -c SCRIPT`
//!   followed by the working directory, the program and its arguments,
//!   each single-quoted. Variables never appear in it: they are written to
//!   the command's stdin first, one escaped line each, and the script reads
//!   them before the command's own input.
//! - The script announces its process group (see `output`): at the time
//!   limit, or when the caller gives up, a second `ssh` over the master
//!   connection kills it on the remote host with everything it started.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::output::{AnnouncedStderr, Bounded, KILL_GROUP};
use super::{Backend, BackendError, CommandOutput, CommandRequest, Kind};

/// What the remote `sh` runs: read the variables (`NAME=escaped` lines up
/// to an empty one; `\\` and `\n` are the only escapes), enter the working
/// directory (`$1`, made when missing; empty: the login directory),
/// announce the process group, become the command.
const REMOTE_SCRIPT: &str = "\
while IFS= read -r talaria_line && [ -n \"$talaria_line\" ]; do \
talaria_value=$(printf '%bx' \"${talaria_line#*=}\"); \
export \"${talaria_line%%=*}=${talaria_value%x}\"; \
done; \
if [ -n \"$1\" ]; then mkdir -p -- \"$1\" && cd -- \"$1\" || exit 125; fi; \
shift; \
echo \"$$\" >&2 && exec \"$@\"";

/// How long a killed command's output may take to end.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// `[backend.ssh]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    /// A host name, an address or a `Host` alias of `~/.ssh/config`.
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// A private key to use (only it: `IdentitiesOnly=yes`).
    pub identity_file: Option<PathBuf>,
    /// When set, the only hosts trusted (`StrictHostKeyChecking=yes`).
    pub known_hosts: Option<PathBuf>,
    /// Where commands run on the remote host (made when missing); relative
    /// to the login directory. `None`: the login directory.
    pub workdir: Option<String>,
    pub connect_timeout_secs: u64,
    /// How long the shared connection outlives its last command; 0: no
    /// shared connection (every command connects anew).
    pub control_persist_secs: u64,
}

impl SshSettings {
    /// Settings for `host` with the defaults.
    pub fn for_host(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            user: None,
            port: None,
            identity_file: None,
            known_hosts: None,
            workdir: None,
            connect_timeout_secs: 10,
            control_persist_secs: 300,
        }
    }

    fn destination(&self) -> String {
        let mut text = String::new();
        if let Some(user) = &self.user {
            text.push_str(user);
            text.push('@');
        }
        text.push_str(&self.host);
        if let Some(port) = self.port {
            text.push_str(&format!(":{port}"));
        }
        text
    }
}

pub struct SshBackend {
    connection: Connection,
    forwarded: Vec<(String, String)>,
}

/// How to reach the host: what every `ssh` of this backend is made from.
#[derive(Debug, Clone)]
struct Connection {
    settings: SshSettings,
    /// Where the master connection's socket lives (`run/ssh` of the home).
    control_dir: PathBuf,
}

impl SshBackend {
    pub fn new(
        settings: SshSettings,
        control_dir: PathBuf,
        forwarded: Vec<(String, String)>,
    ) -> Self {
        Self {
            connection: Connection {
                settings,
                control_dir,
            },
            forwarded,
        }
    }
}

impl Connection {
    /// The master connection's socket: short (a Unix socket path has at
    /// most 108 bytes), one per destination and process, so that one
    /// process ending its connection never cuts another's commands.
    fn control_path(&self) -> PathBuf {
        let digest = blake3::hash(self.settings.destination().as_bytes());
        self.control_dir
            .join(format!("{}-{}", &digest.to_hex()[..12], std::process::id()))
    }

    /// `ssh` with every option, up to and including the destination.
    fn ssh(&self) -> tokio::process::Command {
        let mut command = self.ssh_options();
        command.arg("--").arg(&self.settings.host);
        command
    }

    /// `ssh` with every option, without the destination.
    fn ssh_options(&self) -> tokio::process::Command {
        let settings = &self.settings;
        let mut command = tokio::process::Command::new("ssh");
        command
            .arg("-T")
            .args(["-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("ConnectTimeout={}", settings.connect_timeout_secs))
            .args([
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "ServerAliveCountMax=3",
            ])
            .args(["-o", "LogLevel=ERROR"]);
        match &settings.known_hosts {
            Some(file) => {
                command
                    .args(["-o", "StrictHostKeyChecking=yes"])
                    .arg("-o")
                    .arg(format!("UserKnownHostsFile={}", file.display()));
            }
            None => {
                command.args(["-o", "StrictHostKeyChecking=accept-new"]);
            }
        }
        if let Some(identity) = &settings.identity_file {
            command
                .arg("-i")
                .arg(identity)
                .args(["-o", "IdentitiesOnly=yes"]);
        }
        if settings.control_persist_secs > 0 {
            command
                .args(["-o", "ControlMaster=auto"])
                .arg("-o")
                .arg(format!("ControlPath={}", self.control_path().display()))
                .arg("-o")
                .arg(format!("ControlPersist={}", settings.control_persist_secs));
        } else {
            command.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"]);
        }
        if let Some(port) = settings.port {
            command.arg("-p").arg(port.to_string());
        }
        if let Some(user) = &settings.user {
            command.arg("-l").arg(user);
        }
        command
    }

    /// The one string the remote shell runs.
    fn remote_line(&self, request: &CommandRequest) -> String {
        let workdir = match (&self.settings.workdir, &request.workdir) {
            (_, Some(dir)) if dir.starts_with('/') => dir.clone(),
            (Some(base), Some(dir)) => format!("{}/{dir}", base.trim_end_matches('/')),
            (None, Some(dir)) => dir.clone(),
            (Some(base), None) => base.clone(),
            (None, None) => String::new(),
        };
        let mut words = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            quote(REMOTE_SCRIPT),
            "talaria".to_owned(),
            quote(&workdir),
            quote(&request.program),
        ];
        words.extend(request.args.iter().map(|arg| quote(arg)));
        words.join(" ")
    }

    fn spawn_error(&self, program: &str, error: &std::io::Error) -> BackendError {
        BackendError::Spawn {
            backend: "ssh",
            program: program.to_owned(),
            detail: if error.kind() == std::io::ErrorKind::NotFound {
                "the `ssh` client is not installed (Debian: apt-get install openssh-client)".into()
            } else {
                error.to_string()
            },
        }
    }

    fn prepare_control_dir(&self) -> Result<(), BackendError> {
        if self.settings.control_persist_secs == 0 {
            return Ok(());
        }
        crate::home::create_private_dir(&self.control_dir).map_err(|error| {
            BackendError::Unreachable {
                backend: "ssh",
                detail: format!("cannot create {}: {error:#}", self.control_dir.display()),
            }
        })
    }
}

#[async_trait::async_trait]
impl Backend for SshBackend {
    fn kind(&self) -> Kind {
        Kind::Ssh
    }

    fn describe(&self) -> String {
        format!(
            "ssh: {} in {}, {}",
            self.connection.settings.destination(),
            self.connection
                .settings
                .workdir
                .as_deref()
                .unwrap_or("the login directory"),
            if self.connection.settings.control_persist_secs > 0 {
                "one shared connection"
            } else {
                "a connection per command"
            }
        )
    }

    async fn prepare(&self) -> Result<(), BackendError> {
        self.connection.prepare_control_dir()
    }

    async fn run(&self, request: CommandRequest) -> Result<CommandOutput, BackendError> {
        super::validate(&request)?;
        self.connection.prepare_control_dir()?;
        let started = Instant::now();
        let mut child = self
            .connection
            .ssh()
            .arg(self.connection.remote_line(&request))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| self.connection.spawn_error(&request.program, &error))?;
        let mut preamble = Vec::new();
        for (name, value) in self.forwarded.iter().chain(&request.env) {
            preamble.extend_from_slice(name.as_bytes());
            preamble.push(b'=');
            preamble.extend_from_slice(escape(value).as_bytes());
            preamble.push(b'\n');
        }
        preamble.push(b'\n');
        preamble.extend(request.stdin.iter().flatten());
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input must not block here.
            tokio::spawn(async move {
                let _ = stdin.write_all(&preamble).await;
            });
        }
        let mut killer = RemoteKiller {
            connection: self.connection.clone(),
            group: None,
            armed: true,
        };
        let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(BackendError::Io {
                backend: "ssh",
                program: request.program.clone(),
                detail: "ssh has no output streams".into(),
            });
        };
        let mut stdout = Bounded::new(request.max_output_bytes);
        let mut stderr = AnnouncedStderr::new(request.max_output_bytes);
        let (mut out_open, mut err_open) = (true, true);
        let mut out_buffer = vec![0u8; 16 * 1024];
        let mut err_buffer = vec![0u8; 16 * 1024];
        let deadline = tokio::time::Instant::now() + request.timeout;
        let mut timed_out = false;
        let mut give_up = None;
        while out_open || err_open {
            tokio::select! {
                read = out.read(&mut out_buffer), if out_open => match read {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(read) => stdout.push(&out_buffer[..read]),
                },
                read = err.read(&mut err_buffer), if err_open => match read {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(read) => {
                        stderr.push(&err_buffer[..read]);
                        killer.group = stderr.group();
                    }
                },
                () = tokio::time::sleep_until(deadline), if !timed_out => {
                    timed_out = true;
                    killer.kill().await;
                    give_up = Some(tokio::time::Instant::now() + AFTER_KILL);
                },
                () = sleep_until_some(give_up) => break,
            }
        }
        killer.armed = false;
        // Only ssh itself is stopped here, never its process group: the
        // shared connection's master, which the first command's ssh forks
        // into the background, is in it and must outlive the command.
        let status = match tokio::time::timeout(AFTER_KILL, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = child.start_kill();
                None
            }
        };
        let announced = stderr.group().is_some();
        let stderr = stderr.finish();
        let code = status.and_then(|status| status.code());
        if code == Some(255) && !announced && !timed_out {
            // ssh's own failure: the command never started.
            return Err(BackendError::Unreachable {
                backend: "ssh",
                detail: format!(
                    "cannot run commands on {}: {}",
                    self.connection.settings.destination(),
                    String::from_utf8_lossy(&stderr.kept).trim()
                ),
            });
        }
        Ok(CommandOutput {
            code: if timed_out { None } else { code },
            signal: if timed_out { Some(9) } else { None },
            timed_out,
            stdout: stdout.kept,
            stdout_truncated: stdout.truncated,
            stderr: stderr.kept,
            stderr_truncated: stderr.truncated,
            duration: started.elapsed(),
        })
    }

    async fn shutdown(&self) {
        if self.connection.settings.control_persist_secs == 0
            || !self.connection.control_path().exists()
        {
            return;
        }
        // Ends the shared connection now rather than after ControlPersist.
        let _ = self
            .connection
            .ssh_options()
            .args(["-O", "exit", "--", &self.connection.settings.host])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

impl Connection {
    /// Kill a process group announced on the remote host.
    async fn kill(&self, group: u32) {
        let line = format!("sh -c {} talaria {group}", quote(KILL_GROUP));
        let _ = tokio::time::timeout(
            AFTER_KILL,
            self.ssh()
                .arg(line)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status(),
        )
        .await;
    }
}

/// Kills the command's process group on the remote host unless disarmed:
/// at the time limit, and when the caller drops the call.
struct RemoteKiller {
    connection: Connection,
    group: Option<u32>,
    armed: bool,
}

impl RemoteKiller {
    async fn kill(&mut self) {
        if let Some(group) = self.group {
            self.connection.kill(group).await;
        }
    }
}

impl Drop for RemoteKiller {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (Some(group), Ok(runtime)) = (self.group, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let connection = self.connection.clone();
        runtime.spawn(async move { connection.kill(group).await });
    }
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `text` as one word for a POSIX shell: single-quoted, each `'` closed,
/// escaped and reopened.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// A variable's value as one line for [`REMOTE_SCRIPT`]'s `printf %b`.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The home's folder for master connections' sockets.
pub fn control_dir(home_root: &Path) -> PathBuf {
    home_root.join("run").join("ssh")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_every_shell_character() {
        for text in [
            "plain",
            "it's",
            "$(rm -rf /)",
            "a\nb",
            "`x` \"y\" \\z",
            "'",
            "",
        ] {
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(text)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&output.stdout), text);
        }
    }

    #[test]
    fn the_remote_script_reads_variables_then_hands_the_rest_of_stdin_to_the_command() {
        let backend = SshBackend::new(SshSettings::for_host("h"), PathBuf::from("/x"), Vec::new());
        let dir = tempfile::tempdir().unwrap();
        let request = CommandRequest {
            program: "sh".into(),
            args: vec!["-c".into(), "printf '[%s]' \"$A\" \"$B\"; pwd; cat".into()],
            workdir: Some(dir.path().join("made").display().to_string()),
            ..CommandRequest::default()
        };
        // Run the line the remote shell would get, here.
        let line = backend.connection.remote_line(&request);
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        let values = [("A", "x\\ny\nz"), ("B", "trailing\n\n")];
        let mut input = String::new();
        for (name, value) in values {
            input.push_str(&format!("{name}={}\n", escape(value)));
        }
        input.push_str("\nthe command's own input\n");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout,
            format!(
                "[x\\ny\nz][trailing\n\n]{}\nthe command's own input\n",
                dir.path().join("made").display()
            )
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.trim().parse::<u32>().is_ok(), "{stderr}");
        // Nothing of the values is on the command line.
        assert!(!line.contains("trailing"));
    }
}
