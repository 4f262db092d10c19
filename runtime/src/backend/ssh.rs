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
//! - With a skills directory, a read-only copy of it is kept on the host
//!   (see `skills_copy`), where commands run skills' scripts.

mod skills_copy;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::output::{AFTER_KILL, Chunk, KILL_GROUP, watch};
use super::{Backend, BackendError, CommandOutput, CommandRequest, Kind};

/// What the remote `sh` runs. Everything it needs comes on its standard
/// input, one line each, `\\` and `\n` the only escapes: the working
/// directory (empty: the login directory; made when missing), the number
/// of words, the program and its arguments, then the variables as
/// `NAME=value` lines up to an empty one; the rest is the command's own
/// input. It announces its process group and becomes the command.
///
/// The script holds no `'` and no `\`, so the login shell that receives
/// `sh -c '...'` (sh, bash, zsh, fish or csh) passes it on untouched; the
/// arguments never meet that shell at all.
const REMOTE_SCRIPT: &str = concat!(
    "talaria_read() { IFS= read -r talaria_line || exit 125; ",
    "talaria_value=$(printf \"%bx\" \"$talaria_line\"); talaria_value=${talaria_value%x}; }; ",
    "talaria_read; talaria_dir=$talaria_value; ",
    "talaria_read; talaria_count=$talaria_value; ",
    "set --; ",
    "while [ \"$talaria_count\" -gt 0 ]; do talaria_read; set -- \"$@\" \"$talaria_value\"; ",
    "talaria_count=$((talaria_count - 1)); done; ",
    "while IFS= read -r talaria_line && [ -n \"$talaria_line\" ]; do ",
    "talaria_value=$(printf \"%bx\" \"${talaria_line#*=}\"); ",
    "export \"${talaria_line%%=*}=${talaria_value%x}\"; done; ",
    "if [ -n \"$talaria_dir\" ]; then mkdir -p -- \"$talaria_dir\" && cd -- \"$talaria_dir\" || exit 125; fi; ",
    "echo \"$$\" >&2 && exec \"$@\""
);

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
    skills: Option<skills_copy::SkillsCopy>,
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
            skills: None,
        }
    }

    /// Keep a copy of `skills_dir` on the host for commands to run skills'
    /// scripts from (see [`SshBackend::skills_path`](Backend::skills_path)).
    pub fn with_skills(mut self, skills_dir: PathBuf) -> Self {
        let copy =
            skills_copy::SkillsCopy::new(skills_dir, self.connection.settings.workdir.as_deref());
        self.skills = Some(copy);
        self
    }

    /// Copy the skills to the host when they changed since the last copy.
    /// A failed copy is logged, not fatal: the command may not need them.
    async fn copy_skills(&self) {
        let Some(copy) = &self.skills else {
            return;
        };
        let mut copied = copy.copied.lock().await;
        let stamp = copy.stamp();
        if stamp.is_some() && *copied == stamp {
            return;
        }
        let request = match copy.replace_request() {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!("the skills are not copied to the ssh host: {error}");
                return;
            }
        };
        match self.execute(request).await {
            Ok(output) if output.success() => *copied = stamp,
            Ok(output) => tracing::warn!(
                "the skills were not copied to the ssh host (exit {:?}): {}",
                output.code,
                crate::untrusted_text::log_line(String::from_utf8_lossy(&output.stderr).trim())
            ),
            Err(error) => tracing::warn!("the skills were not copied to the ssh host: {error}"),
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

    /// The one string the remote shell runs: always the same.
    fn remote_line() -> String {
        format!("sh -c '{REMOTE_SCRIPT}'")
    }

    /// What precedes the command's own input on its stdin (see
    /// [`REMOTE_SCRIPT`]).
    fn preamble(&self, request: &CommandRequest, forwarded: &[(String, String)]) -> Vec<u8> {
        let workdir = match (&self.settings.workdir, &request.workdir) {
            (_, Some(dir)) if dir.starts_with('/') => dir.clone(),
            (Some(base), Some(dir)) => format!("{}/{dir}", base.trim_end_matches('/')),
            (None, Some(dir)) => dir.clone(),
            (Some(base), None) => base.clone(),
            (None, None) => String::new(),
        };
        let mut lines = vec![escape(&workdir), (request.args.len() + 1).to_string()];
        lines.extend(
            std::iter::once(&request.program)
                .chain(&request.args)
                .map(|word| escape(word)),
        );
        for (name, value) in forwarded.iter().chain(&request.env) {
            lines.push(format!("{name}={}", escape(value)));
        }
        lines.push(String::new());
        let mut bytes = lines.join("\n").into_bytes();
        bytes.push(b'\n');
        bytes.extend(request.stdin.iter().flatten());
        bytes
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
        self.connection.prepare_control_dir()?;
        self.copy_skills().await;
        Ok(())
    }

    fn skills_path(&self) -> Option<String> {
        self.skills.as_ref().map(|copy| copy.remote().to_owned())
    }

    async fn run(&self, request: CommandRequest) -> Result<CommandOutput, BackendError> {
        super::validate(&request)?;
        self.copy_skills().await;
        self.execute(request).await
    }

    async fn shutdown(&self) {
        if let Some(copy) = &self.skills
            && copy.copied.lock().await.is_some()
        {
            let _ = self.execute(copy.remove_request()).await;
        }
        self.close_connection().await;
    }
}

impl SshBackend {
    /// Run one command on the host (what [`Backend::run`] does after the
    /// skills are copied).
    async fn execute(&self, request: CommandRequest) -> Result<CommandOutput, BackendError> {
        self.connection.prepare_control_dir()?;
        let started = Instant::now();
        let mut child = self
            .connection
            .ssh()
            .arg(Connection::remote_line())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| self.connection.spawn_error(&request.program, &error))?;
        let preamble = self.connection.preamble(&request, &self.forwarded);
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input must not block here.
            tokio::spawn(async move {
                let _ = stdin.write_all(&preamble).await;
            });
        }
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(BackendError::Io {
                backend: "ssh",
                program: request.program.clone(),
                detail: "ssh has no output streams".into(),
            });
        };
        // The output is read on a task of its own: if this call is dropped
        // (its caller gave up), the task still kills the remote command.
        let (keep_going, gave_up) = tokio::sync::oneshot::channel::<()>();
        let connection = self.connection.clone();
        let deadline = tokio::time::Instant::now() + request.timeout;
        let limit = request.max_output_bytes;
        let watching = tokio::spawn(async move {
            let chunks = futures_util::stream::select(
                read_chunks(out, Chunk::Stdout),
                read_chunks(err, Chunk::Stderr),
            );
            let kill = |group: u32| connection.kill(group);
            let watched = watch(chunks, limit, deadline, gave_up, kill).await;
            // Only ssh itself is stopped here, never its process group: the
            // shared connection's master, which the first command's ssh
            // forks into the background, is in it and must outlive the
            // command.
            let status = match tokio::time::timeout(AFTER_KILL, child.wait()).await {
                Ok(Ok(status)) => Some(status),
                _ => {
                    let _ = child.start_kill();
                    None
                }
            };
            (watched, status)
        });
        let (watched, status) = watching.await.map_err(|error| BackendError::Io {
            backend: "ssh",
            program: request.program.clone(),
            detail: format!("the task reading its output failed: {error}"),
        })?;
        drop(keep_going);
        let timed_out = watched.timed_out;
        let code = status.and_then(|status| status.code());
        if code == Some(255) && watched.group.is_none() && !timed_out {
            // ssh's own failure: the command never started.
            return Err(BackendError::Unreachable {
                backend: "ssh",
                detail: format!(
                    "cannot run commands on {}: {}",
                    self.connection.settings.destination(),
                    String::from_utf8_lossy(&watched.stderr.kept).trim()
                ),
            });
        }
        Ok(watched.into_output(code, started.elapsed()))
    }

    /// End the shared connection now rather than after ControlPersist.
    async fn close_connection(&self) {
        if self.connection.settings.control_persist_secs == 0
            || !self.connection.control_path().exists()
        {
            return;
        }
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

/// A stream of what `reader` gives, until its end.
fn read_chunks(
    reader: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    wrap: fn(Vec<u8>) -> Chunk,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Chunk, String>> + Send>> {
    Box::pin(futures_util::stream::unfold(
        reader,
        move |mut reader| async move {
            let mut buffer = vec![0u8; 16 * 1024];
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => None,
                Ok(read) => {
                    buffer.truncate(read);
                    Some((Ok(wrap(buffer)), reader))
                }
            }
        },
    ))
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
    fn the_remote_script_gets_everything_on_stdin_and_no_shell_reads_the_words() {
        let backend = SshBackend::new(
            SshSettings::for_host("h"),
            PathBuf::from("/x"),
            vec![("A".into(), "x\\ny\nz".into())],
        );
        let dir = tempfile::tempdir().unwrap();
        let request = CommandRequest {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "printf '[%s]' \"$A\" \"$B\" \"$1\" \"$2\"; pwd; cat".into(),
                "zero".into(),
                "a\\".into(),
                " ; touch /tmp/should-not-exist ; echo ".into(),
            ],
            workdir: Some(dir.path().join("made dir").display().to_string()),
            env: vec![("B".into(), "trailing\n\n".into())],
            stdin: Some(b"the command's own input\n".to_vec()),
            ..CommandRequest::default()
        };
        let line = Connection::remote_line();
        assert!(!line[7..line.len() - 1].contains(['\'', '\\']), "{line}");
        // Run the line the remote shell would get, here.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        let preamble = backend.connection.preamble(&request, &backend.forwarded);
        child.stdin.take().unwrap().write_all(&preamble).unwrap();
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout,
            format!(
                "[x\\ny\nz][trailing\n\n][a\\][ ; touch /tmp/should-not-exist ; echo ]{}\nthe command's own input\n",
                dir.path().join("made dir").display()
            )
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.trim().parse::<u32>().is_ok(), "{stderr}");
        assert!(!std::path::Path::new("/tmp/should-not-exist").exists());
    }
}
