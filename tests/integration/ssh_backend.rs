//! The SSH backend against a real `sshd` on loopback, started per test
//! with fresh host and user keys (`cargo xtask test` installs
//! openssh-server). The "remote" host is this machine, which lets the
//! tests look at its processes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use talaria_runtime::backend::ssh::{SshBackend, SshSettings};
use talaria_runtime::backend::{Backend, BackendError, CommandRequest};

use crate::support::{Fixture, assert_exit, stdout, talaria_with};

const LIVENESS: Duration = Duration::from_secs(60);
const SSHD: &str = "/usr/sbin/sshd";

struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen is missing: `cargo xtask test` installs openssh-server");
    assert!(status.success());
}

impl Sshd {
    fn start() -> Self {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing: `cargo xtask test` installs openssh-server"
        );
        // Privilege separation needs it; as another user, sshd runs without.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        keygen(&path("host_key"));
        keygen(&path("user_key"));
        std::fs::copy(path("user_key.pub"), path("authorized_keys")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            path("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nMaxSessions 64\nMaxStartups 64\nLogLevel ERROR\n",
                path("host_key").display(),
                path("sshd.pid").display(),
                path("authorized_keys").display(),
            ),
        )
        .unwrap();
        let host_key = std::fs::read_to_string(path("host_key.pub")).unwrap();
        let mut fields = host_key.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        std::fs::write(
            path("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )
        .unwrap();
        // Its log (the readiness probe below makes it complain) stays in
        // the folder, for a failing test to look at.
        let log = std::fs::File::create(path("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(path("sshd_config"))
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < LIVENESS, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, dir, port }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn settings(&self) -> SshSettings {
        SshSettings {
            user: Some(user_name()),
            port: Some(self.port),
            identity_file: Some(self.path("user_key")),
            known_hosts: Some(self.path("known_hosts")),
            connect_timeout_secs: 5,
            ..SshSettings::for_host("127.0.0.1")
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn user_name() -> String {
    let output = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn shell(script: &str) -> CommandRequest {
    CommandRequest {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        timeout: Duration::from_secs(30),
        max_output_bytes: 64 * 1024,
        ..CommandRequest::default()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Command lines of this machine's processes that contain `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = text(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_runs_over_ssh_with_its_input_variables_workdir_and_exit_code() {
    let sshd = Sshd::start();
    let control = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let workdir = remote.path().join("work");
    let secret = "ssh-secret-9Xk2Pq";
    let backend = SshBackend::new(
        SshSettings {
            workdir: Some(workdir.display().to_string()),
            ..sshd.settings()
        },
        control.path().to_owned(),
        vec![("DEPLOY_TOKEN".into(), format!("{secret}\nline two"))],
    );
    let mut request = shell(
        "cat; printf '%s|' \"$DEPLOY_TOKEN\" \"$GREETING\"; pwd; echo oops >&2; sleep 1; exit 3",
    );
    request.stdin = Some(b"from stdin\n".to_vec());
    request.env = vec![("GREETING".into(), "it's \"quoted\" $(not run)".into())];
    let run = backend.run(request);
    let scan = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        processes_with(secret)
    };
    let (output, seen) = tokio::join!(run, scan);
    let output = output.unwrap();
    assert_eq!(output.code, Some(3), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "from stdin\n{secret}\nline two|it's \"quoted\" $(not run)|{}\n",
            workdir.display()
        )
    );
    assert_eq!(text(&output.stderr), "oops\n");
    // The value is in no process's arguments, here or "there".
    assert!(seen.is_empty(), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_connection_serves_the_next_commands_and_ends_at_shutdown() {
    let sshd = Sshd::start();
    let control = tempfile::tempdir().unwrap();
    let backend = SshBackend::new(sshd.settings(), control.path().to_owned(), Vec::new());
    let first = backend.run(shell("true")).await.unwrap();
    assert!(first.success());
    let sockets: Vec<_> = std::fs::read_dir(control.path()).unwrap().collect();
    assert_eq!(sockets.len(), 1, "the master connection's socket");
    let mut later = Vec::new();
    for _ in 0..3 {
        let output = backend.run(shell("true")).await.unwrap();
        assert!(output.success());
        later.push(output.duration);
    }
    // Measured, not asserted (machines are loaded): the benchmark reports it.
    println!(
        "ssh: first command {:?} (connects), then {later:?} over the shared connection",
        first.duration
    );
    backend.shutdown().await;
    let started = Instant::now();
    while std::fs::read_dir(control.path()).unwrap().count() > 0 {
        assert!(started.elapsed() < LIVENESS, "the master connection stays");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_limit_kills_the_remote_command_and_its_children() {
    let sshd = Sshd::start();
    let control = tempfile::tempdir().unwrap();
    let backend = SshBackend::new(sshd.settings(), control.path().to_owned(), Vec::new());
    let mut request = shell("sleep 306 & sleep 307; echo never");
    request.timeout = Duration::from_secs(2);
    let output = backend.run(request).await.unwrap();
    assert!(output.timed_out, "{output:?}");
    assert!(!text(&output.stdout).contains("never"));
    let started = Instant::now();
    loop {
        let left: Vec<String> = processes_with("sleep 30")
            .into_iter()
            .filter(|p| p.starts_with("sleep 306") || p.starts_with("sleep 307"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(started.elapsed() < LIVENESS, "still running: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A caller that gives up (the future dropped) stops it too.
    let call = backend.run(shell("sleep 308"));
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), call)
            .await
            .is_err()
    );
    let started = Instant::now();
    while processes_with("sleep 308")
        .iter()
        .any(|p| p.starts_with("sleep 308"))
    {
        assert!(started.elapsed() < LIVENESS, "sleep 308 still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_host_or_a_wrong_host_key_is_a_clear_error() {
    let control = tempfile::tempdir().unwrap();
    // A host that accepts the connection and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let sshd = Sshd::start();
    let settings = SshSettings {
        port: Some(silent.local_addr().unwrap().port()),
        connect_timeout_secs: 2,
        control_persist_secs: 0,
        ..sshd.settings()
    };
    let backend = SshBackend::new(settings, control.path().to_owned(), Vec::new());
    let started = Instant::now();
    let error = backend.run(shell("true")).await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(error, BackendError::Unreachable { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("cannot run commands on"), "{message}");
    assert!(message.contains("timed out"), "{message}");
    assert!(waited < LIVENESS, "{waited:?}");
    println!("a silent host: {message} after {waited:?}");

    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = SshBackend::new(
        SshSettings {
            port: Some(closed),
            ..sshd.settings()
        },
        control.path().to_owned(),
        Vec::new(),
    );
    let message = backend.run(shell("true")).await.unwrap_err().to_string();
    assert!(message.contains("Connection refused"), "{message}");

    // A host whose key is not the one on file.
    keygen(&sshd.path("other_key"));
    let other = std::fs::read_to_string(sshd.path("other_key.pub")).unwrap();
    let other: Vec<&str> = other.split_whitespace().take(2).collect();
    std::fs::write(
        sshd.path("other_known_hosts"),
        format!("[127.0.0.1]:{} {} {}\n", sshd.port, other[0], other[1]),
    )
    .unwrap();
    let backend = SshBackend::new(
        SshSettings {
            known_hosts: Some(sshd.path("other_known_hosts")),
            control_persist_secs: 0,
            ..sshd.settings()
        },
        control.path().to_owned(),
        Vec::new(),
    );
    let message = backend.run(shell("true")).await.unwrap_err().to_string();
    assert!(
        message.contains("Host key verification failed"),
        "{message}"
    );
}

#[test]
fn backend_check_reaches_the_host_from_the_config() {
    let sshd = Sshd::start();
    let fixture = Fixture::new();
    std::fs::write(
        fixture.root.path().join("config.toml"),
        format!(
            "[backend]\nkind = \"ssh\"\n[backend.ssh]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\n\
             identity_file = \"{}\"\nknown_hosts = \"{}\"\nworkdir = \"{}\"\n",
            sshd.port,
            user_name(),
            sshd.path("user_key").display(),
            sshd.path("known_hosts").display(),
            sshd.path("work").display(),
        ),
    )
    .unwrap();
    let output = talaria_with(
        &fixture,
        &[] as &[(&str, &Path)],
        &["backend", "check"],
        None,
    );
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert!(out.contains("backend: ssh: "), "{out}");
    assert!(out.contains("`true` round trip"), "{out}");
    assert!(sshd.path("work").is_dir());

    // Without a host, the config says what is missing.
    std::fs::write(
        fixture.root.path().join("config.toml"),
        "[backend]\nkind = \"ssh\"\n",
    )
    .unwrap();
    let output = talaria_with(
        &fixture,
        &[] as &[(&str, &Path)],
        &["backend", "check"],
        None,
    );
    assert_ne!(output.status.code(), Some(0));
    let err = crate::support::stderr(&output);
    assert!(err.contains("needs the host: add [backend.ssh]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_skills_are_copied_to_the_host_read_only_and_again_when_they_change() {
    let sshd = Sshd::start();
    let control = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let skills = tempfile::tempdir().unwrap();
    let scripts = skills.path().join("greeter/scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("greet.sh"), "echo \"Hello, $1\"\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", skills.path().join("greeter/passwd")).unwrap();
    let backend = SshBackend::new(
        SshSettings {
            workdir: Some(remote.path().display().to_string()),
            ..sshd.settings()
        },
        control.path().to_owned(),
        Vec::new(),
    )
    .with_skills(skills.path().to_owned());
    let at = backend.skills_path().unwrap();
    assert!(
        at.starts_with(&format!("{}/.talaria/skills-", remote.path().display())),
        "{at}"
    );

    let output = backend
        .run(shell(&format!("sh {at}/greeter/scripts/greet.sh Ada")))
        .await
        .unwrap();
    assert_eq!(
        text(&output.stdout),
        "Hello, Ada\n",
        "{}",
        text(&output.stderr)
    );
    // Read-only there (checked as another user would see it: root ignores
    // modes, so the modes themselves are looked at), and no link copied.
    let output = backend
        .run(shell(&format!(
            "stat -c %A {at}/greeter/scripts/greet.sh; test -e {at}/greeter/passwd || echo no-link"
        )))
        .await
        .unwrap();
    assert_eq!(text(&output.stdout), "-r--r--r--\nno-link\n");

    // Changed here: copied again before the next command.
    std::fs::write(scripts.join("greet.sh"), "echo \"Goodbye, $1\"\n").unwrap();
    let output = backend
        .run(shell(&format!("sh {at}/greeter/scripts/greet.sh Ada")))
        .await
        .unwrap();
    assert_eq!(text(&output.stdout), "Goodbye, Ada\n");

    // Removed from the host at shutdown.
    backend.shutdown().await;
    assert!(!Path::new(&at).exists(), "{at}");
}
