//! The `local` backend: commands run on this machine as this user, in the
//! workspace, with a clean environment. Only the approvals stand between
//! the model and the machine, so the operator must ask for it by name, and
//! every start says so.
//!
//! Each command runs in a process group of its own: the time limit, a
//! dropped future and the command's end all stop the whole group, so
//! nothing it started keeps running (background commands are out of
//! scope).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use super::{Backend, BackendError, CommandOutput, CommandRequest, Kind};

/// Variables of Talaria's own environment a local command gets; everything
/// else it is given by name in the request.
const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME"];

pub struct LocalBackend {
    workspace: PathBuf,
    /// Variables every command gets, by name from the operator's list.
    forwarded: Vec<(String, String)>,
    /// The skills directory, where commands find skills' scripts.
    skills: Option<PathBuf>,
}

impl LocalBackend {
    pub fn new(workspace: PathBuf, forwarded: Vec<(String, String)>) -> Self {
        Self {
            workspace,
            forwarded,
            skills: None,
        }
    }

    /// Say that commands find the skill folders in `skills_dir` (they run
    /// on this machine, so they see it where it is).
    pub fn with_skills(mut self, skills_dir: PathBuf) -> Self {
        self.skills = Some(skills_dir);
        self
    }
}

/// Kills a process group when dropped: the command's time limit, its end
/// and a dropped future all end everything it started.
struct GroupGuard(Option<rustix::process::Pid>);

impl GroupGuard {
    /// The group `child` leads (it was spawned with `process_group(0)`).
    fn of(child: &tokio::process::Child) -> Self {
        Self(
            child.id().and_then(|id| {
                rustix::process::Pid::from_raw(i32::try_from(id).unwrap_or_default())
            }),
        )
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    fn kind(&self) -> Kind {
        Kind::Local
    }

    fn skills_path(&self) -> Option<String> {
        self.skills.as_ref().map(|dir| dir.display().to_string())
    }

    fn describe(&self) -> String {
        format!(
            "local: on this machine as this user, in {}",
            self.workspace.display()
        )
    }

    async fn run(&self, request: CommandRequest) -> Result<CommandOutput, BackendError> {
        super::validate(&request)?;
        let started = Instant::now();
        let workdir = match &request.workdir {
            Some(dir) => self.workspace.join(dir),
            None => self.workspace.clone(),
        };
        let mut command = tokio::process::Command::new(&request.program);
        command
            .args(&request.args)
            .current_dir(&workdir)
            .env_clear()
            .envs(
                INHERITED
                    .iter()
                    .filter_map(|name| std::env::var_os(name).map(|value| (*name, value))),
            )
            .envs(
                self.forwarded
                    .iter()
                    .chain(&request.env)
                    .map(|(name, value)| (name, value)),
            )
            .stdin(if request.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|error| BackendError::Spawn {
            backend: "local",
            program: request.program.clone(),
            detail: format!("{error} (in {})", workdir.display()),
        })?;
        let group = GroupGuard::of(&child);
        if let (Some(bytes), Some(mut stdin)) = (request.stdin.clone(), child.stdin.take()) {
            // A command that does not read its input must not block here.
            tokio::spawn(async move {
                let _ = stdin.write_all(&bytes).await;
            });
        }
        let limit = request.max_output_bytes;
        let stdout = child
            .stdout
            .take()
            .map(|out| tokio::spawn(capture(out, limit)));
        let stderr = child
            .stderr
            .take()
            .map(|err| tokio::spawn(capture(err, limit)));
        let waited = tokio::time::timeout(request.timeout, child.wait()).await;
        // Kills the group: at the time limit, the command and its children;
        // after its end, whatever it left running, so the pipes close.
        drop(group);
        let io_error = |error: std::io::Error| BackendError::Io {
            backend: "local",
            program: request.program.clone(),
            detail: error.to_string(),
        };
        let (status, timed_out) = match waited {
            Ok(status) => (status.map_err(io_error)?, false),
            Err(_) => (child.wait().await.map_err(io_error)?, true),
        };
        let collect = |task: Option<tokio::task::JoinHandle<(Vec<u8>, bool)>>| async move {
            match task {
                Some(task) => task.await.unwrap_or_default(),
                None => (Vec::new(), false),
            }
        };
        let ((stdout, stdout_truncated), (stderr, stderr_truncated)) =
            tokio::join!(collect(stdout), collect(stderr));
        use std::os::unix::process::ExitStatusExt as _;
        Ok(CommandOutput {
            code: status.code(),
            signal: status.signal(),
            timed_out,
            stdout,
            stdout_truncated,
            stderr,
            stderr_truncated,
            duration: started.elapsed(),
        })
    }
}

/// Read `stream` to its end, keeping the first `limit` bytes.
async fn capture(mut stream: impl AsyncRead + Unpin, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = super::output::Bounded::new(limit);
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => kept.push(&buffer[..read]),
        }
    }
    (kept.kept, kept.truncated)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn request(program: &str, args: &[&str]) -> CommandRequest {
        CommandRequest {
            program: program.into(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            timeout: Duration::from_secs(30),
            max_output_bytes: 1024 * 1024,
            ..CommandRequest::default()
        }
    }

    fn backend() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().to_owned(), Vec::new());
        (dir, backend)
    }

    #[tokio::test]
    async fn a_command_runs_in_the_workspace_with_its_input_and_variables() {
        let (dir, backend) = backend();
        std::fs::write(dir.path().join("notes.txt"), "hello\n").unwrap();
        let mut run = request(
            "sh",
            &[
                "-c",
                "cat notes.txt; cat; echo \"$GREETING\"; echo oops >&2; exit 3",
            ],
        );
        run.stdin = Some(b"from stdin\n".to_vec());
        run.env = vec![("GREETING".into(), "hi there".into())];
        let output = backend.run(run).await.unwrap();
        assert_eq!(output.code, Some(3));
        assert!(!output.success());
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "hello\nfrom stdin\nhi there\n"
        );
        assert_eq!(String::from_utf8_lossy(&output.stderr), "oops\n");
        assert!(!output.timed_out);
    }

    #[tokio::test]
    async fn the_environment_is_clean_but_for_what_was_given() {
        let (_dir, backend) = backend();
        // A variable of this process that commands must not see (cargo
        // gives a test process several).
        let (hidden, _) = std::env::vars()
            .find(|(name, _)| !INHERITED.contains(&name.as_str()))
            .expect("the test process has a variable beyond the inherited ones");
        let output = backend.run(request("env", &[])).await.unwrap();
        let env = String::from_utf8_lossy(&output.stdout);
        assert!(
            !env.contains(&format!("{hidden}=")),
            "{hidden} leaked: {env}"
        );
        assert!(env.contains("PATH="), "{env}");
    }

    #[tokio::test]
    async fn the_time_limit_stops_the_command_and_what_it_started() {
        let (dir, backend) = backend();
        let marker = dir.path().join("still-running");
        let script = format!("(sleep 2; touch {}) & sleep 60", marker.display());
        let mut run = request("sh", &["-c", &script]);
        run.timeout = Duration::from_millis(300);
        let output = backend.run(run).await.unwrap();
        assert!(output.timed_out);
        assert_eq!(output.signal, Some(9));
        // The background child was in the group: it never touches the file.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !marker.exists(),
            "a child of the stopped command kept running"
        );
    }

    #[tokio::test]
    async fn output_is_bounded_and_marked() {
        let (_dir, backend) = backend();
        let mut run = request("sh", &["-c", "yes flood | head -c 5000000; echo done >&2"]);
        run.max_output_bytes = 1000;
        let output = backend.run(run).await.unwrap();
        assert_eq!(output.stdout.len(), 1000);
        assert!(output.stdout_truncated);
        assert_eq!(output.stderr, b"done\n");
        assert!(!output.stderr_truncated);
        assert_eq!(output.code, Some(0));
    }

    #[tokio::test]
    async fn a_missing_program_is_an_error_naming_it() {
        let (_dir, backend) = backend();
        let error = backend
            .run(request("no-such-program-anywhere", &[]))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("no-such-program-anywhere"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn dropping_the_run_stops_the_command() {
        let (dir, backend) = backend();
        let marker = dir.path().join("finished");
        let script = format!("sleep 2; touch {}", marker.display());
        let run = backend.run(request("sh", &["-c", &script]));
        let _ = tokio::time::timeout(Duration::from_millis(300), run).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "the dropped command kept running");
    }
}
