//! Native-command backends: `cargo bench --bench backends` (after `cargo
//! xtask test-services`, which starts dockerd and imports the test image;
//! see BENCHMARKS.md).
//!
//! Runs `true` again and again, interleaved round by round so that the
//! machine's load falls on every contender alike, through:
//!
//! - the `local` backend: fork/exec on this machine (the baseline);
//! - the `docker` backend, its container made once and reused;
//! - the `ssh` backend to an `sshd` on loopback started here, with the
//!   shared master connection and without (a handshake per command);
//! - a skill's `exec`: a tool call into the hostile test skill, whose rule
//!   allows `true`, through the approvals to the same Docker backend.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{machine, ratio, report};
use talaria_runtime::app::skill_exec::SkillExec;
use talaria_runtime::approval::Policy;
use talaria_runtime::approval::pending::{Gate, NobodyToAsk};
use talaria_runtime::backend::docker::{DockerBackend, DockerPlaces, DockerSettings};
use talaria_runtime::backend::local::LocalBackend;
use talaria_runtime::backend::ssh::{SshBackend, SshSettings};
use talaria_runtime::backend::{Backend, CommandRequest};
use talaria_runtime::sandbox::{Sandbox, SandboxConfig};
use talaria_runtime::skill::{MountRoots, Skill};

const ROUNDS: usize = 200;
/// A handshake per command is slow: one in this many rounds.
const UNSHARED_EVERY: usize = 10;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ lives in the repository")
        .to_owned();
    let hostile = root.join("tests/skills/hostile");
    anyhow::ensure!(
        hostile.join("hostile.wasm").is_file(),
        "the test skills are not built: run `cargo xtask build-skills` first"
    );
    let image = std::env::var("TALARIA_TEST_DOCKER_IMAGE")
        .unwrap_or_else(|_| "talaria-test-busybox:1".into());
    let scratch = tempfile::tempdir()?;
    let workspace = scratch.path().join("workspace");
    std::fs::create_dir_all(&workspace)?;
    let sshd = Sshd::start(scratch.path())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("machine: {}", machine());
    println!();

    runtime.block_on(async {
        let local = LocalBackend::new(workspace.clone(), Vec::new());
        let docker: Arc<dyn Backend> = Arc::new(DockerBackend::new(
            DockerSettings {
                image,
                ..DockerSettings::default()
            },
            DockerPlaces {
                home: scratch.path().to_owned(),
                workspace: workspace.clone(),
                skills: None,
            },
            Vec::new(),
        ));
        let shared = SshBackend::new(sshd.settings(300), scratch.path().join("ssh"), Vec::new());
        let unshared = SshBackend::new(sshd.settings(0), scratch.path().join("ssh"), Vec::new());

        let manifest = std::fs::read_to_string(hostile.join("skill.toml"))?
            .replace(
                "env = [\"TALARIA_TEST_ALLOWED\"]",
                "env = [\"TALARIA_TEST_ALLOWED\"]\nexec = [{ program = \"true\" }]",
            )
            .replace("timeout_ms = 1000", "timeout_ms = 30000");
        let skill_dir = scratch.path().join("skills/hostile");
        std::fs::create_dir_all(&skill_dir)?;
        std::fs::write(skill_dir.join("skill.toml"), manifest)?;
        std::fs::copy(hostile.join("hostile.wasm"), skill_dir.join("hostile.wasm"))?;
        let skill = Skill::load(&skill_dir)?;
        let roots = MountRoots {
            workspace: workspace.clone(),
            skill_data: scratch.path().join("skill-data"),
        };
        std::fs::create_dir_all(&roots.skill_data)?;
        let capabilities = talaria_runtime::skill::capabilities::as_requested(&skill, &roots)?;
        let sandbox = Sandbox::new(SandboxConfig::default())?;
        let loaded = sandbox
            .load(
                skill
                    .component_source()
                    .ok_or_else(|| anyhow::anyhow!("the hostile skill has no component"))??,
                capabilities,
            )
            .await?
            .with_native(Arc::new(SkillExec {
                gate: Arc::new(Gate::new(
                    Policy::default(),
                    Arc::new(NobodyToAsk {
                        why: "in a benchmark",
                    }),
                )),
                backend: Arc::clone(&docker),
            }));

        // Warm up each path once (the container is made here, the master
        // connection opened).
        for backend in [&local as &dyn Backend, &*docker, &shared, &unshared] {
            let output = backend.run(true_command()).await?;
            anyhow::ensure!(output.success(), "{}: `true` failed", backend.describe());
        }
        let call = loaded.call("exec", r#"{"program":"true"}"#).await?;
        anyhow::ensure!(call.result.contains("status 0"), "{}", call.result);

        let mut times: [Vec<Duration>; 5] = Default::default();
        for round in 0..ROUNDS {
            times[0].push(time(&local).await?);
            times[1].push(time(&*docker).await?);
            times[2].push(time(&shared).await?);
            if round % UNSHARED_EVERY == 0 {
                times[3].push(time(&unshared).await?);
            }
            let started = Instant::now();
            loaded.call("exec", r#"{"program":"true"}"#).await?;
            times[4].push(started.elapsed());
        }
        for samples in &mut times {
            samples.sort();
        }
        println!(
            "`true`, {ROUNDS} rounds (ssh without a shared connection: every {UNSHARED_EVERY}th):"
        );
        report("local: fork/exec on this machine (baseline)", &times[0]);
        report("docker: exec in the reused container", &times[1]);
        report("ssh: over the shared connection", &times[2]);
        report("ssh: a new connection per command", &times[3]);
        report("skill exec: tool call -> approvals -> docker", &times[4]);
        println!();
        println!("ratios of medians:");
        println!(
            "  docker / local                 {:>7.1}x",
            ratio(&times[1], &times[0])
        );
        println!(
            "  ssh shared / local             {:>7.1}x",
            ratio(&times[2], &times[0])
        );
        println!(
            "  ssh per command / ssh shared   {:>7.1}x",
            ratio(&times[3], &times[2])
        );
        println!(
            "  skill exec / docker            {:>7.2}x",
            ratio(&times[4], &times[1])
        );
        docker.shutdown().await;
        shared.shutdown().await;
        anyhow::Ok(())
    })?;
    println!();
    println!("{}", support::load());
    Ok(())
}

fn true_command() -> CommandRequest {
    CommandRequest {
        program: "true".into(),
        timeout: Duration::from_secs(30),
        max_output_bytes: 4096,
        ..CommandRequest::default()
    }
}

async fn time(backend: &dyn Backend) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = backend.run(true_command()).await?;
    anyhow::ensure!(output.success(), "{}: `true` failed", backend.describe());
    Ok(started.elapsed())
}

/// An `sshd` on loopback with fresh keys, for as long as this lives.
struct Sshd {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Sshd {
    fn start(scratch: &Path) -> anyhow::Result<Self> {
        let dir = scratch.join("sshd");
        std::fs::create_dir_all(&dir)?;
        let _ = std::fs::create_dir_all("/run/sshd");
        for key in ["host_key", "user_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(key))
                .status()?;
            anyhow::ensure!(status.success(), "ssh-keygen failed");
        }
        std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {0}/host_key\nPidFile {0}/sshd.pid\n\
                 AuthorizedKeysFile {0}/authorized_keys\nUsePAM no\nPasswordAuthentication no\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nMaxStartups 100\nLogLevel QUIET\n",
                dir.display()
            ),
        )?;
        let host_key = std::fs::read_to_string(dir.join("host_key.pub"))?;
        let fields: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", fields.join(" ")),
        )?;
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot start /usr/sbin/sshd ({error}): `cargo xtask test-services` installs it"
                )
            })?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "sshd did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, dir, port })
    }

    fn settings(&self, control_persist_secs: u64) -> SshSettings {
        let user = Command::new("id")
            .arg("-un")
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_default();
        SshSettings {
            user: Some(user),
            port: Some(self.port),
            identity_file: Some(self.dir.join("user_key")),
            known_hosts: Some(self.dir.join("known_hosts")),
            control_persist_secs,
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
