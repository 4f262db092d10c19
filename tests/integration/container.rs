//! The container image on a real Docker engine (`cargo xtask test` starts
//! `dockerd` when none answers; without one these tests fail, saying so).
//!
//! The image is built once per run from the repository's `Dockerfile` by
//! the xtask's own code (`xtask/src/image.rs`, included as it is): its
//! runtime stage on `scratch`, over the file tree the build stage would
//! assemble, made here from the binary these tests were built with (debug
//! symbols stripped), the bundled skills, the libraries it links and
//! Debian's static busybox. The build stage itself needs a Rust image from
//! a registry, which cannot be pulled here.
//!
//! A scripted model on the host's bridge address stands in for a model;
//! everything else is real: the entrypoint as PID 1, the gateway, the
//! official OpenAI client, the files on a bind-mounted host directory.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::gateway::{openai_client_replies, openai_python, request, run_openai_client};
use crate::image;
use crate::support::{FakeModel, Reply, repo_root};

const IMAGE: &str = "talaria-test-image:1";
/// The same with two bundled skills in a newer version.
const NEXT_IMAGE: &str = "talaria-test-image:2";
/// A first boot compiles the bundled components (a debug build here).
const START_LIMIT: Duration = Duration::from_secs(180);
const DASHBOARD_PASSWORD: &str = "container test password";

fn docker(args: &[&str]) -> Output {
    image::docker()
        .args(args)
        .output()
        .expect("the docker CLI is missing: `cargo xtask test` installs docker.io")
}

/// `docker ARGS` that must succeed; its stdout.
fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert!(
        output.status.success(),
        "docker {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The image, built at the first call of the run.
fn image() -> &'static str {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(error) = BUILT.get_or_init(build_images) {
        panic!("{error}");
    }
    IMAGE
}

fn build_images() -> Result<(), String> {
    let version = docker(&["version", "--format", "{{.Server.Version}}"]);
    if !version.status.success() {
        return Err(format!(
            "no Docker engine answers ({}): `cargo xtask test` starts dockerd",
            String::from_utf8_lossy(&version.stderr).trim()
        ));
    }
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let binary = Path::new(env!("CARGO_BIN_EXE_talaria"));
    let context = image::build_image(
        binary,
        &repo_root(),
        Path::new("/bin/busybox"),
        IMAGE,
        work.path(),
        &[],
    )
    .map_err(|e| format!("{e:#}"))?;

    // The next release, for the upgrade: two bundled skills come in a new
    // version.
    for skill in ["text", "web"] {
        let manifest = context
            .prefix
            .join("share/talaria/skills")
            .join(skill)
            .join("skill.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let bumped = text.replacen("version = \"0.1.0\"", "version = \"0.1.1\"", 1);
        if bumped == text {
            return Err(format!("{} is not at version 0.1.0", manifest.display()));
        }
        std::fs::write(&manifest, bumped).unwrap();
    }
    image::build(
        &context.dir,
        &["--build-arg", "VERSION=0.1.1", "-t", NEXT_IMAGE],
    )
    .map_err(|e| format!("{e:#}"))
}

/// The host's address on Docker's default bridge, where containers reach
/// a server of this test.
fn bridge_gateway() -> String {
    docker_ok(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{(index .IPAM.Config 0).Gateway}}",
    ])
    .trim()
    .to_owned()
}

/// A container removed when dropped.
struct Container {
    name: String,
}

impl Container {
    /// `docker run -d` with `args` (flags, then image and command).
    fn start(args: &[&str]) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "talaria-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend_from_slice(args);
        docker_ok(&all);
        Self { name }
    }

    fn logs(&self) -> String {
        let output = docker(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// The host port published for the container's `port`.
    fn host_port(&self, port: u16) -> u16 {
        image::published_port(&self.name, port).unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", &self.name];
        all.extend_from_slice(args);
        docker(&all)
    }

    fn is_running(&self) -> bool {
        docker(&["inspect", "--format", "{{.State.Running}}", &self.name]).stdout == b"true\n"
    }

    /// Wait until `/health` answers 200 on the published `port`.
    fn wait_healthy(&self, port: u16) -> String {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(body) = get(port, "/health").filter(|(status, _)| *status == 200) {
                return body.1;
            }
            assert!(
                self.is_running(),
                "the container stopped before answering /health:\n{}",
                self.logs()
            );
            assert!(
                Instant::now() < deadline,
                "no /health answer within {START_LIMIT:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// GET `path` on loopback `port`: status and body, or `None` when nothing
/// answers yet.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// A host directory for `/opt/data`, owned by root as a fresh bind mount
/// is.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir
}

fn volume(dir: &Path) -> String {
    format!("{}:/opt/data", dir.display())
}

/// Every entry below `root` (not `root` itself) with its owner, not
/// following links.
fn owners(root: &Path) -> Vec<(PathBuf, u32, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let metadata = entry.path().symlink_metadata().unwrap();
            if metadata.is_dir() {
                pending.push(entry.path());
            }
            found.push((entry.path(), metadata.uid(), metadata.gid()));
        }
    }
    found
}

/// `output` exited with `code` and said `needle` (on stdout or stderr).
fn assert_says(output: &Output, code: i32, needle: &str) {
    let said = text(output);
    assert_eq!(output.status.code(), Some(code), "{said}");
    assert!(said.contains(needle), "{said}");
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `docker run --rm` of the image with `flags` before it and `command`
/// after, `stdin` written to it.
fn run_once(flags: &[&str], command: &[&str], stdin: Option<&str>) -> Output {
    let mut args = vec!["run", "--rm", "-i"];
    args.extend_from_slice(flags);
    args.push(image());
    args.extend_from_slice(command);
    let mut child = Command::new("docker")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(stdin) = stdin {
        input.write_all(stdin.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn a_first_boot_seeds_the_home_and_serves_the_api_the_dashboard_and_the_openai_client() {
    let data = data_dir();
    let volume = volume(data.path());
    // The dashboard beyond the container's loopback needs a password; set
    // it the way the README says, which is also this home's first boot.
    let first = run_once(
        &["-v", &volume],
        &["gateway", "set-password"],
        Some(&format!("{DASHBOARD_PASSWORD}\n")),
    );
    assert!(first.status.success(), "{}", text(&first));
    let said = text(&first);
    assert!(
        said.contains("first boot: seeded config.toml, .env, SOUL.md in /opt/data"),
        "{said}"
    );
    let model = FakeModel::start_on(&bridge_gateway(), openai_client_replies());
    let container = Container::start(&[
        "-v",
        &volume,
        "-p",
        "127.0.0.1::8642",
        "-p",
        "127.0.0.1::9119",
        "-e",
        &format!("TALARIA_MODEL_BASE_URL={}", model.base_url),
        "-e",
        "TALARIA_MODEL=scripted",
        "-e",
        "TALARIA_DASHBOARD=1",
        image(),
    ]);
    let api = container.host_port(8642);
    let health = container.wait_healthy(api);
    assert!(health.contains("ok"), "{health}");

    // The key was generated into .env, privately, and the log says where,
    // never what.
    let env = std::fs::read_to_string(data.path().join(".env")).unwrap();
    let key = env
        .lines()
        .find_map(|line| line.strip_prefix("TALARIA_API_KEY="))
        .unwrap_or_else(|| panic!("no key in .env:\n{env}"))
        .trim()
        .to_owned();
    let logs = container.logs();
    assert!(logs.contains("generated into /opt/data/.env"), "{logs}");
    assert!(!logs.contains(&key), "the key is in the log:\n{logs}");
    let env_file = data.path().join(".env").metadata().unwrap();
    assert_eq!((env_file.mode() & 0o777, env_file.uid()), (0o600, 10000));

    // The dashboard's page loads (its login, since it is password-protected).
    let dashboard = container.host_port(9119);
    let (status, page) = get(dashboard, "/").expect("the dashboard does not answer");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"),
        "{page}"
    );

    // The official OpenAI client, through the container, with the tool of
    // a bundled skill really running inside it.
    run_openai_client(
        &format!("http://127.0.0.1:{api}/v1"),
        &key,
        &container.logs(),
    );

    // A root `docker exec` of talaria acts as the service user: the health
    // probe the image's HEALTHCHECK runs, then a command that writes.
    let probe = container.exec(&["talaria", "gateway", "health"]);
    assert!(probe.status.success(), "{}", text(&probe));
    let audit = container.exec(&["talaria", "skills", "audit"]);
    assert!(audit.status.success(), "{}", text(&audit));
    let listed = container.exec(&["talaria", "sessions", "list"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let foreign: Vec<_> = owners(data.path())
        .into_iter()
        .filter(|(_, uid, gid)| (*uid, *gid) != (10000, 10000))
        .collect();
    assert!(foreign.is_empty(), "not the service user's: {foreign:?}");
}

#[test]
fn talaria_uid_and_gid_remap_the_service_user_and_ownership_is_targeted() {
    let data = data_dir();
    let root = data.path();
    // A home from an earlier run by another uid, with what must not be
    // touched: a root-owned file deep in the workspace, and a link planted
    // at the top pointing at it.
    std::fs::create_dir_all(root.join("workspace/project")).unwrap();
    std::fs::write(root.join("workspace/project/build.log"), "root's").unwrap();
    std::fs::create_dir_all(root.join("memories")).unwrap();
    std::fs::write(root.join("memories/MEMORY.md"), "old memory").unwrap();
    std::os::unix::fs::symlink(
        "/opt/data/workspace/project/build.log",
        root.join("planted-link"),
    )
    .unwrap();
    // Inside a folder that is walked: a link to the image's binary, and a
    // hard link to the root-owned workspace file.
    std::os::unix::fs::symlink("/usr/local/bin/talaria", root.join("memories/planted")).unwrap();
    std::fs::hard_link(
        root.join("workspace/project/build.log"),
        root.join("memories/hard-link"),
    )
    .unwrap();
    // Not Talaria's: a file at the top of the mounted folder.
    std::fs::write(root.join("notes.txt"), "the operator's").unwrap();
    let output = run_once(
        &[
            "-e",
            "TALARIA_UID=1234",
            "-e",
            "TALARIA_GID=1234",
            "-v",
            &volume(root),
        ],
        &[
            "sh",
            "-c",
            "id -u; id -g; grep -E '^(Groups|CapPrm|CapEff|NoNewPrivs):' /proc/self/status; \
             stat -c 'binary owner %u' /usr/local/bin/talaria; talaria sessions list",
        ],
        None,
    );
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    let lines: Vec<&str> = said.lines().collect();
    assert!(lines.starts_with(&["1234", "1234"]), "{said}");
    assert!(said.contains("CapEff:\t0000000000000000"), "{said}");
    assert!(said.contains("CapPrm:\t0000000000000000"), "{said}");
    assert!(said.contains("NoNewPrivs:\t1"), "{said}");
    assert!(said.contains("binary owner 0"), "{said}");
    assert!(
        said.lines().any(|line| line.trim_end() == "Groups:"),
        "supplementary groups left: {said}"
    );
    let expected_root_owned = [
        root.join("workspace/project"),
        root.join("workspace/project/build.log"),
        root.join("memories/hard-link"),
        root.join("notes.txt"),
    ];
    for (path, uid, gid) in owners(root) {
        if path == root.join("planted-link") || path == root.join("memories/planted") {
            continue;
        }
        if expected_root_owned.contains(&path) {
            assert_eq!((uid, gid), (0, 0), "{} was handed over", path.display());
        } else {
            assert_eq!((uid, gid), (1234, 1234), "{}", path.display());
        }
    }
    // The old memory is kept, now the new user's.
    assert_eq!(
        std::fs::read_to_string(root.join("memories/MEMORY.md")).unwrap(),
        "old memory"
    );

    // Ids the service cannot use are refused, naming the variable.
    let refused = run_once(&["-e", "TALARIA_UID=0", "-v", &volume(root)], &["id"], None);
    assert_says(&refused, 1, "TALARIA_UID=\"0\" is not a usable id");
}

#[test]
fn started_with_user_it_runs_in_a_writable_home_and_names_the_chown_otherwise() {
    let unwritable = data_dir();
    let output = run_once(
        &["--user", "4321:4321", "-v", &volume(unwritable.path())],
        &["sessions", "list"],
        None,
    );
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("chown -R 4321:4321"), "{said}");
    assert!(
        said.contains("not writable by uid 4321, gid 4321"),
        "{said}"
    );
    assert!(
        std::fs::read_dir(unwritable.path())
            .unwrap()
            .next()
            .is_none()
    );

    let writable = data_dir();
    std::os::unix::fs::chown(writable.path(), Some(4321), Some(4321)).unwrap();
    let output = run_once(
        &["--user", "4321:4321", "-v", &volume(writable.path())],
        &["sessions", "list"],
        None,
    );
    assert!(output.status.success(), "{}", text(&output));
    let owners = owners(writable.path());
    assert!(
        owners
            .iter()
            .any(|(path, ..)| path.ends_with("config.toml"))
    );
    for (path, uid, gid) in owners {
        assert_eq!((uid, gid), (4321, 4321), "{}", path.display());
    }
}

#[test]
fn with_the_compose_hardening_pid_1_reaps_orphans_and_sigterm_finishes_the_request_in_flight() {
    let compose = Command::new(openai_python())
        .arg(repo_root().join("tests/container/compose_flags.py"))
        .arg(repo_root().join("compose.yaml"))
        .output()
        .unwrap();
    assert!(compose.status.success(), "{}", text(&compose));
    let compose: Value = serde_json::from_slice(&compose.stdout).unwrap();
    let flags: Vec<String> = compose["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|flag| flag.as_str().unwrap().to_owned())
        .collect();
    assert!(flags.iter().any(|flag| flag == "--read-only"), "{flags:?}");
    assert_eq!(compose["restart"], "unless-stopped");
    assert_eq!(
        compose["healthcheck"],
        json!(["CMD", "talaria", "gateway", "health"])
    );
    for port in compose["ports"].as_array().unwrap() {
        assert!(port.as_str().unwrap().starts_with("127.0.0.1:"), "{port}");
    }

    let data = data_dir();
    let model = FakeModel::start_on(
        &bridge_gateway(),
        vec![Reply::After(
            Duration::from_secs(3),
            Box::new(Reply::answer("finished anyway")),
        )],
    );
    let volume = volume(data.path());
    let base_url = format!("TALARIA_MODEL_BASE_URL={}", model.base_url);
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend([
        "-v",
        &volume,
        "-p",
        "127.0.0.1::8642",
        "-e",
        &base_url,
        "-e",
        "TALARIA_MODEL=scripted",
        "-e",
        "TALARIA_API_KEY=ct-7f3a9c21e4b86d05aa91",
        image(),
    ]);
    let container = Container::start(&args);
    let api = container.host_port(8642);
    container.wait_healthy(api);
    // Started with no settings and no password: the API is served, the
    // dashboard is not (beyond loopback it needs a password).
    assert!(
        container.logs().contains("the dashboard is off"),
        "{}",
        container.logs()
    );

    // Orphans: each shell leaves a child behind that outlives it and is
    // re-parented to PID 1, which must reap it when it ends.
    for _ in 0..3 {
        let orphaned = container.exec(&["sh", "-c", "sleep 1 & exit 0"]);
        assert!(orphaned.status.success(), "{}", text(&orphaned));
    }
    std::thread::sleep(Duration::from_secs(3));
    let processes = container.exec(&["ps", "-o", "pid,ppid,stat,comm"]);
    let listing = text(&processes);
    assert!(processes.status.success(), "{listing}");
    assert!(
        !listing.lines().skip(1).any(|line| line
            .split_whitespace()
            .nth(2)
            .is_some_and(|stat| stat.starts_with('Z'))),
        "zombies left:\n{listing}"
    );
    assert!(
        listing.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.first() == Some(&"1") && fields.last() == Some(&"talaria")
        }),
        "PID 1 is not talaria:\n{listing}"
    );

    // SIGTERM with a request in flight: it finishes, then the container
    // exits 0, well within the grace time.
    let in_flight =
        std::thread::spawn(move || chat(api, "ct-7f3a9c21e4b86d05aa91", "before the stop"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while model.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request never reached the model"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    docker_ok(&["stop", "-t", "30", &container.name]);
    let answer = in_flight.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("finished anyway"), "{}", answer.body);
    let exit_code = docker_ok(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &container.name,
    ]);
    // 0, not 137: it stopped by itself within the grace time, before
    // Docker's SIGKILL (no timing is asserted).
    assert_eq!(exit_code.trim(), "0", "{}", container.logs());
    drop(container);

    // The same home under another uid, with the same four capabilities:
    // the root phase walks folders only 10000 may read, and hands them on.
    args.splice(
        args.len() - 1..args.len() - 1,
        ["-e", "TALARIA_UID=1234", "-e", "TALARIA_GID=1234"],
    );
    let again = Container::start(&args);
    again.wait_healthy(again.host_port(8642));
    let owners = owners(data.path());
    assert!(owners.iter().any(|(path, ..)| path.ends_with("state.db")));
    for (path, uid, gid) in owners {
        assert_eq!((uid, gid), (1234, 1234), "{}", path.display());
    }
}

#[test]
fn the_gateway_refuses_root_and_chat_without_a_terminal_says_how_to_start_it() {
    let data = data_dir();
    let volume = volume(data.path());
    // The root phase bypassed: talaria as the entrypoint, the container
    // marker off, uid 0.
    let as_root = run_once(
        &[
            "--user",
            "0",
            "-e",
            "TALARIA_CONTAINER=0",
            "--entrypoint",
            "/usr/local/bin/talaria",
            "-v",
            &volume,
        ],
        &["gateway", "run"],
        None,
    );
    assert_says(&as_root, 1, "refusing to run the gateway as root");

    let chat = run_once(
        &[
            "-v",
            &volume,
            "-e",
            "TALARIA_MODEL_BASE_URL=http://127.0.0.1:9/v1",
            "-e",
            "TALARIA_MODEL=scripted",
        ],
        &["chat"],
        None,
    );
    assert_says(&chat, 2, "docker run -it");

    // A broken configuration: the gateway's error and its exit code, once;
    // the entrypoint never starts it again (restarts are Docker's policy).
    std::fs::write(data.path().join("config.toml"), "[gateway\nport = 1\n").unwrap();
    let broken = run_once(&["-v", &volume], &[], None);
    assert_eq!(broken.status.code(), Some(1), "{}", text(&broken));
    assert_eq!(
        text(&broken).matches("config.toml").count(),
        1,
        "{}",
        text(&broken)
    );
    std::fs::remove_file(data.path().join("config.toml")).unwrap();

    // A program that does not exist: the shell's code, and why.
    let missing = run_once(&["-v", &volume], &["no-such-program"], None);
    assert_says(&missing, 127, "cannot run `no-such-program`");
}

/// Outside the image (no `TALARIA_CONTAINER=1`), the entrypoint refuses:
/// as root it would hand a folder to another user.
#[test]
fn the_entrypoint_refuses_to_run_outside_the_image() {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_talaria"))
        .args(["container", "true"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TALARIA_HOME", home.path())
        .output()
        .unwrap();
    assert_says(&output, 1, "the container image's entrypoint");
    assert!(std::fs::read_dir(home.path()).unwrap().next().is_none());
}

/// The entrypoint's supervision without Docker, as the subreaper of its
/// child: a signal sent to it reaches the child, an orphan left by the
/// child is reaped, and the child's exit code is the entrypoint's.
#[test]
fn outside_docker_the_entrypoint_forwards_signals_reaps_orphans_and_returns_the_exit_code() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_talaria"))
        .args([
            "container",
            "sh",
            "-c",
            // An orphan that ends soon, then wait for TERM.
            "trap 'exit 7' TERM; (sleep 1 &); echo started; while :; do sleep 0.1; done",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TALARIA_HOME", home.path())
        .env("TALARIA_CONTAINER", "1")
        // As root (CI), the root phase hands the home to this user first.
        .env("TALARIA_UID", "65533")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = [0u8; 8];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first_line)
        .unwrap();
    assert_eq!(&first_line, b"started\n");
    // (comm, state) of every process whose parent is the entrypoint.
    let entrypoint = child.id().to_string();
    let children = || -> Vec<(String, String)> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
            .filter_map(|stat| {
                // pid (comm) state ppid …
                let (head, after) = stat.rsplit_once(") ")?;
                let comm = head.split_once(" (")?.1.to_owned();
                let fields: Vec<&str> = after.split_whitespace().collect();
                (fields.get(1) == Some(&entrypoint.as_str())).then(|| (comm, fields[0].to_owned()))
            })
            .collect()
    };
    std::thread::sleep(Duration::from_millis(300));
    // The orphan was re-parented to the entrypoint (its subreaper)...
    assert!(
        children().iter().any(|(comm, _)| comm == "sleep"),
        "{:?}",
        children()
    );
    std::thread::sleep(Duration::from_secs(2));
    // ...which reaped it when it ended.
    let left = children();
    assert!(
        left.iter()
            .all(|(comm, state)| comm == "sh" && state != "Z"),
        "{left:?}"
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    // Not forwarded, the child would never end: give up after a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("SIGTERM was not forwarded: the child still runs after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", text(&output));
}

#[test]
fn an_upgrade_on_the_same_home_keeps_sessions_memory_grants_and_keys_and_updates_bundled_skills() {
    let data = data_dir();
    let volume = volume(data.path());
    let model = FakeModel::start_on(
        &bridge_gateway(),
        vec![Reply::answer("Stored before the upgrade.")],
    );
    let base_url = format!("TALARIA_MODEL_BASE_URL={}", model.base_url);
    let start = |image: &str| {
        Container::start(&[
            "-v",
            &volume,
            "-p",
            "127.0.0.1::8642",
            "-e",
            &base_url,
            "-e",
            "TALARIA_MODEL=scripted",
            image,
        ])
    };
    let old = start(image());
    let api = old.host_port(8642);
    old.wait_healthy(api);
    let key = std::fs::read_to_string(data.path().join(".env"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("TALARIA_API_KEY=").map(str::to_owned))
        .expect("a generated key in .env");
    let answer = chat(api, &key, "Remember this chat.");
    assert!(
        answer.body.contains("Stored before the upgrade."),
        "{}",
        answer.body
    );
    let session = answer
        .header("x-talaria-session-id")
        .expect("a session header")
        .to_owned();
    let remembered = docker(&[
        "exec",
        "-u",
        "10000",
        &old.name,
        "sh",
        "-c",
        "echo 'The operator prefers short answers.' >> /opt/data/memories/MEMORY.md",
    ]);
    assert!(remembered.status.success(), "{}", text(&remembered));
    let granted = old.exec(&[
        "talaria",
        "skills",
        "grant",
        "web",
        "--network",
        "https://docs.example.org",
        "--yes",
    ]);
    assert!(granted.status.success(), "{}", text(&granted));
    docker_ok(&["stop", &old.name]);
    docker_ok(&["rm", &old.name]);

    let new = start(NEXT_IMAGE);
    let api = new.host_port(8642);
    new.wait_healthy(api);
    let env = std::fs::read_to_string(data.path().join(".env")).unwrap();
    assert!(env.contains(&format!("TALARIA_API_KEY={key}")), "{env}");
    let shown = new.exec(&["talaria", "sessions", "show", &session]);
    assert!(
        text(&shown).contains("Stored before the upgrade."),
        "{}",
        text(&shown)
    );
    assert!(
        std::fs::read_to_string(data.path().join("memories/MEMORY.md"))
            .unwrap()
            .contains("The operator prefers short answers.")
    );
    let listed = new.exec(&["talaria", "skills", "list", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let skills: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let skill = |name: &str| {
        skills
            .as_array()
            .unwrap()
            .iter()
            .find(|skill| skill["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {skills}"))
    };
    // Asks for no more: updated, its grant moved to the new version.
    assert_eq!(skill("text")["version"], "0.1.1", "{skills}");
    assert_eq!(skill("text")["state"], "granted", "{skills}");
    // Granted destinations: updated, but waits for the operator.
    assert_eq!(skill("web")["version"], "0.1.1", "{skills}");
    assert_ne!(skill("web")["state"], "granted", "{skills}");
    // Untouched skills stay granted.
    assert_eq!(skill("json")["state"], "granted", "{skills}");
}

/// A chat completion asking `content` of the gateway on loopback `port`.
fn chat(port: u16, key: &str, content: &str) -> crate::gateway::Response {
    request(
        &format!("127.0.0.1:{port}"),
        "POST",
        "/v1/chat/completions",
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("Content-Type", "application/json"),
        ],
        &json!({"messages": [{"role": "user", "content": content}]}).to_string(),
    )
}
