//! The `docker` backend: commands run in one long-lived, hardened sandbox
//! container per Talaria process, driven through the Docker Engine API on
//! its Unix socket (Docker's, or Podman's compatible one). Nothing is ever
//! put on a `docker` command line: variables travel in the API's request
//! bodies, so their values appear in no process's argv.
//!
//! The container:
//! - is created on first use (or by [`Backend::prepare`]), reused by every
//!   later command and session of the process, and removed by
//!   [`Backend::shutdown`];
//! - is labelled with the data home, its owner process (pid and start
//!   time) and a fingerprint of its settings and image: a container of
//!   this process whose fingerprint differs is replaced, one that is gone
//!   or stopped is recreated, and containers of this home whose owner
//!   process is dead (killed, crashed) are removed at start;
//! - drops every capability, sets `no-new-privileges`, limits pids,
//!   memory and CPU, runs an init process, mounts a tmpfs on `/tmp`, has
//!   no network unless `[backend.docker] network = true`, a read-only root
//!   filesystem unless `read_only = false`, the workspace at `/workspace`
//!   and the skills read-only at `/skills`;
//! - runs as the uid:gid of the Talaria process unless `user` says
//!   otherwise, so that files it writes in the workspace are the
//!   operator's.
//!
//! Each command is an `exec` wrapped in [`output::ANNOUNCE_GROUP`]: at its
//! time limit, or when its caller gives up, a second `exec` kills its
//! process group inside the container.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use super::output::{ANNOUNCE_GROUP, Chunk, KILL_GROUP, watch};
use super::{Backend, BackendError, CommandOutput, CommandRequest, Kind};

/// Labels every sandbox container carries.
const LABEL_SANDBOX: &str = "dev.talaria.sandbox";
const LABEL_HOME: &str = "dev.talaria.home";
const LABEL_OWNER: &str = "dev.talaria.owner";
const LABEL_FINGERPRINT: &str = "dev.talaria.fingerprint";

/// Where the workspace and the skills appear in the container.
pub const WORKSPACE_MOUNT: &str = "/workspace";
pub const SKILLS_MOUNT: &str = "/skills";

/// The image when `[backend.docker] image` is not set.
pub const DEFAULT_IMAGE: &str = "debian:bookworm-slim";

/// `[backend.docker]`, resolved. Every default is the safe one.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DockerSettings {
    /// The Engine API's socket; `None`: `DOCKER_HOST` when it names a
    /// `unix://` socket, else `/var/run/docker.sock`.
    pub socket: Option<String>,
    pub image: String,
    /// Whether the container has a network (default: none at all).
    pub network: bool,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids: i64,
    /// The size of the tmpfs on `/tmp`.
    pub tmp_mb: u64,
    /// A read-only root filesystem (default); images that must write
    /// outside `/tmp` and `/workspace` need `false`.
    pub read_only: bool,
    /// `uid:gid` (or a name the image knows) commands run as; `None`: the
    /// uid:gid of the Talaria process.
    pub user: Option<String>,
}

impl Default for DockerSettings {
    fn default() -> Self {
        Self {
            socket: None,
            image: DEFAULT_IMAGE.to_owned(),
            network: false,
            memory_mb: 2048,
            cpus: 2.0,
            pids: 256,
            tmp_mb: 512,
            read_only: true,
            user: None,
        }
    }
}

impl DockerSettings {
    /// The socket to connect to.
    pub fn socket_path(&self) -> String {
        if let Some(socket) = &self.socket {
            return socket.trim_start_matches("unix://").to_owned();
        }
        std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|host| host.strip_prefix("unix://").map(str::to_owned))
            .unwrap_or_else(|| "/var/run/docker.sock".to_owned())
    }
}

/// What the container is made from, besides its settings.
#[derive(Debug, Clone)]
pub struct DockerPlaces {
    /// The data home: the container belongs to it (a label).
    pub home: PathBuf,
    /// Mounted read-write at [`WORKSPACE_MOUNT`].
    pub workspace: PathBuf,
    /// Mounted read-only at [`SKILLS_MOUNT`] when present.
    pub skills: Option<PathBuf>,
}

pub struct DockerBackend {
    settings: DockerSettings,
    places: DockerPlaces,
    /// Variables every command gets, by name from the operator's list.
    forwarded: Vec<(String, String)>,
    /// This process, as the owner label says it: `pid:start-time`.
    owner: String,
    client: tokio::sync::OnceCell<Docker>,
    /// The container in use, once there is one.
    container: tokio::sync::Mutex<Option<String>>,
}

impl DockerBackend {
    pub fn new(
        settings: DockerSettings,
        places: DockerPlaces,
        forwarded: Vec<(String, String)>,
    ) -> Self {
        Self {
            settings,
            places,
            forwarded,
            owner: owner_of(std::process::id())
                .unwrap_or_else(|| format!("unknown:{}", std::process::id())),
            client: tokio::sync::OnceCell::new(),
            container: tokio::sync::Mutex::new(None),
        }
    }

    /// The container in use, if one was made (for tests and `backend check`).
    pub async fn container_id(&self) -> Option<String> {
        self.container.lock().await.clone()
    }

    async fn client(&self) -> Result<&Docker, BackendError> {
        self.client
            .get_or_try_init(|| async {
                let socket = self.settings.socket_path();
                let docker = Docker::connect_with_unix(&socket, 30, bollard::API_DEFAULT_VERSION)
                    .map_err(|error| unreachable(&socket, &error))?;
                let docker = docker
                    .negotiate_version()
                    .await
                    .map_err(|error| unreachable(&socket, &error))?;
                Ok(docker)
            })
            .await
    }

    /// The container to run in: the one in use, or this process's own
    /// with the current fingerprint, or a new one.
    async fn ensure_container(&self) -> Result<String, BackendError> {
        let mut current = self.container.lock().await;
        if let Some(id) = current.as_ref() {
            return Ok(id.clone());
        }
        let docker = self.client().await?;
        self.reap_dead_owners(docker).await;
        let fingerprint = self.fingerprint(docker).await?;
        let mut found = None;
        for summary in self.list(docker, Some(&self.owner)).await? {
            let Some(id) = summary.id else { continue };
            let labels = summary.labels.unwrap_or_default();
            let running =
                summary.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
            if found.is_none() && running && labels.get(LABEL_FINGERPRINT) == Some(&fingerprint) {
                found = Some(id);
            } else {
                tracing::info!(container = %id, "removing this process's sandbox container: its settings changed or it stopped");
                remove(docker, &id).await;
            }
        }
        let id = match found {
            Some(id) => id,
            None => self.create(docker, &fingerprint).await?,
        };
        *current = Some(id.clone());
        Ok(id)
    }

    /// This home's sandbox containers (of one owner, or of all).
    async fn list(
        &self,
        docker: &Docker,
        owner: Option<&str>,
    ) -> Result<Vec<bollard::models::ContainerSummary>, BackendError> {
        let mut labels = vec![
            LABEL_SANDBOX.to_owned(),
            format!("{LABEL_HOME}={}", self.places.home.display()),
        ];
        labels.extend(owner.map(|owner| format!("{LABEL_OWNER}={owner}")));
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), labels)])),
            ..ListContainersOptions::default()
        };
        docker
            .list_containers(Some(options))
            .await
            .map_err(|error| self.api_error("cannot list containers", &error))
    }

    /// Remove this home's containers whose owner process is gone.
    async fn reap_dead_owners(&self, docker: &Docker) {
        let Ok(containers) = self.list(docker, None).await else {
            return;
        };
        for summary in containers {
            let (Some(id), Some(labels)) = (summary.id, summary.labels) else {
                continue;
            };
            let Some(owner) = labels.get(LABEL_OWNER) else {
                continue;
            };
            if *owner != self.owner && !owner_is_alive(owner) {
                tracing::info!(container = %id, owner = %owner, "removing a sandbox container left by a Talaria process that is gone");
                remove(docker, &id).await;
            }
        }
    }

    /// A digest of everything the container is made from: its settings,
    /// the image's id (a rebuilt image means a new container), its mounts.
    async fn fingerprint(&self, docker: &Docker) -> Result<String, BackendError> {
        let image = docker
            .inspect_image(&self.settings.image)
            .await
            .map_err(|error| match &error {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                } => BackendError::Unreachable {
                    backend: "docker",
                    detail: format!(
                        "the image {:?} is not on this engine: pull or build it (`docker pull {}`), or set [backend.docker] image",
                        self.settings.image, self.settings.image
                    ),
                },
                _ => self.api_error("cannot inspect the image", &error),
            })?;
        let described = serde_json::json!({
            "settings": self.settings,
            "image_id": image.id,
            "workspace": self.places.workspace,
            "skills": self.places.skills,
            "user": self.user(),
        });
        let digest = blake3::hash(described.to_string().as_bytes());
        Ok(digest.to_hex()[..16].to_owned())
    }

    fn user(&self) -> String {
        self.settings.user.clone().unwrap_or_else(|| {
            format!(
                "{}:{}",
                rustix::process::getuid().as_raw(),
                rustix::process::getgid().as_raw()
            )
        })
    }

    async fn create(&self, docker: &Docker, fingerprint: &str) -> Result<String, BackendError> {
        let settings = &self.settings;
        // Mounts, not `binds` strings: a path may contain `:`.
        let bind = |source: &std::path::Path, target: &str, read_only: bool| Mount {
            source: Some(source.display().to_string()),
            target: Some(target.to_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(read_only),
            ..Mount::default()
        };
        let mut mounts = vec![bind(&self.places.workspace, WORKSPACE_MOUNT, false)];
        if let Some(skills) = self.places.skills.as_ref().filter(|dir| dir.is_dir()) {
            mounts.push(bind(skills, SKILLS_MOUNT, true));
        }
        let memory =
            i64::try_from(settings.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
        let host_config = HostConfig {
            mounts: Some(mounts),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            pids_limit: Some(settings.pids),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some((settings.cpus * 1e9) as i64),
            init: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                format!("rw,nosuid,nodev,size={}m", settings.tmp_mb),
            )])),
            readonly_rootfs: Some(settings.read_only),
            network_mode: Some(if settings.network { "bridge" } else { "none" }.to_owned()),
            ..HostConfig::default()
        };
        let labels = HashMap::from([
            (LABEL_SANDBOX.to_owned(), "1".to_owned()),
            (
                LABEL_HOME.to_owned(),
                self.places.home.display().to_string(),
            ),
            (LABEL_OWNER.to_owned(), self.owner.clone()),
            (LABEL_FINGERPRINT.to_owned(), fingerprint.to_owned()),
        ]);
        let body = ContainerCreateBody {
            image: Some(settings.image.clone()),
            // The container only waits; commands arrive as `exec`s.
            cmd: Some(vec!["sleep".to_owned(), "2147483647".to_owned()]),
            entrypoint: Some(Vec::new()),
            working_dir: Some(WORKSPACE_MOUNT.to_owned()),
            user: Some(self.user()),
            env: Some(vec!["HOME=/tmp".to_owned()]),
            labels: Some(labels),
            network_disabled: Some(!settings.network),
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        };
        // The pid alone may repeat: Talarias in other containers share
        // the engine.
        let name = format!(
            "talaria-{}-{}-{:04x}",
            &blake3::hash(self.places.home.display().to_string().as_bytes()).to_hex()[..8],
            std::process::id(),
            rand::random::<u16>()
        );
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..CreateContainerOptions::default()
                }),
                body,
            )
            .await
            .map_err(|error| {
                self.api_error(&format!("cannot create the container {name}"), &error)
            })?;
        if let Err(error) = docker.start_container(&created.id, None).await {
            remove(docker, &created.id).await;
            return Err(self.api_error(&format!("cannot start the container {name}"), &error));
        }
        tracing::info!(container = %created.id, image = %settings.image, "sandbox container started");
        Ok(created.id)
    }

    async fn run_in(
        &self,
        docker: &Docker,
        container: &str,
        request: &CommandRequest,
    ) -> Result<CommandOutput, ExecError> {
        let started = Instant::now();
        let workdir = match &request.workdir {
            Some(dir) if dir.starts_with('/') => dir.clone(),
            Some(dir) => format!("{WORKSPACE_MOUNT}/{dir}"),
            None => WORKSPACE_MOUNT.to_owned(),
        };
        let mut cmd = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            ANNOUNCE_GROUP.to_owned(),
            "sh".to_owned(),
            request.program.clone(),
        ];
        cmd.extend(request.args.iter().cloned());
        let env: Vec<String> = self
            .forwarded
            .iter()
            .chain(&request.env)
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let exec = docker
            .create_exec(
                container,
                CreateExecOptions {
                    attach_stdin: Some(request.stdin.is_some()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    env: Some(env),
                    cmd: Some(cmd),
                    working_dir: Some(workdir),
                    ..CreateExecOptions::default()
                },
            )
            .await
            .map_err(ExecError::from_create)?;
        let started_exec = docker
            .start_exec(&exec.id, Some(StartExecOptions::default()))
            .await
            .map_err(|error| ExecError::Other(error.to_string()))?;
        let StartExecResults::Attached { output, mut input } = started_exec else {
            return Err(ExecError::Other(
                "the engine did not attach to the command".into(),
            ));
        };
        if let Some(bytes) = request.stdin.clone() {
            // A command that does not read its input must not block here.
            tokio::spawn(async move {
                let _ = input.write_all(&bytes).await;
                let _ = input.shutdown().await;
            });
        } else {
            drop(input);
        }
        // The output is read on a task of its own: if this call is dropped
        // (its caller gave up), the task still kills the command.
        let (keep_going, gave_up) = tokio::sync::oneshot::channel::<()>();
        let chunks = output.map(|item| match item {
            Ok(bollard::container::LogOutput::StdErr { message }) => {
                Ok(Chunk::Stderr(message.to_vec()))
            }
            Ok(bollard::container::LogOutput::StdOut { message })
            | Ok(bollard::container::LogOutput::Console { message }) => {
                Ok(Chunk::Stdout(message.to_vec()))
            }
            Ok(bollard::container::LogOutput::StdIn { .. }) => Ok(Chunk::Stdout(Vec::new())),
            Err(error) => Err(format!("reading its output: {error}")),
        });
        let watching = tokio::spawn({
            let docker = docker.clone();
            let container = container.to_owned();
            let deadline = tokio::time::Instant::now() + request.timeout;
            let limit = request.max_output_bytes;
            async move {
                let kill = |group: u32| kill_group(&docker, &container, group);
                let watched = watch(Box::pin(chunks), limit, deadline, gave_up, kill).await;
                let code = exit_code(&docker, &exec.id).await;
                (watched, code)
            }
        });
        let (watched, code) = watching.await.map_err(|error| {
            ExecError::Other(format!("the task reading its output failed: {error}"))
        })?;
        drop(keep_going);
        if let Some(error) = watched.error {
            return Err(ExecError::Other(error));
        }
        Ok(watched.into_output(code, started.elapsed()))
    }

    fn api_error(&self, what: &str, error: &bollard::errors::Error) -> BackendError {
        BackendError::Unreachable {
            backend: "docker",
            detail: format!(
                "{what} through {}: {}",
                self.settings.socket_path(),
                describe(error)
            ),
        }
    }
}

#[async_trait::async_trait]
impl Backend for DockerBackend {
    fn kind(&self) -> Kind {
        Kind::Docker
    }

    fn skills_path(&self) -> Option<String> {
        self.places.skills.as_ref().map(|_| SKILLS_MOUNT.to_owned())
    }

    fn describe(&self) -> String {
        format!(
            "docker: image {}, engine at {}, network {}, {} MiB, {} CPUs, {} processes, workspace at {WORKSPACE_MOUNT}",
            self.settings.image,
            self.settings.socket_path(),
            if self.settings.network { "on" } else { "off" },
            self.settings.memory_mb,
            self.settings.cpus,
            self.settings.pids,
        )
    }

    async fn prepare(&self) -> Result<(), BackendError> {
        self.ensure_container().await.map(drop)
    }

    async fn run(&self, request: CommandRequest) -> Result<CommandOutput, BackendError> {
        super::validate(&request)?;
        let docker = self.client().await?;
        let mut retried = false;
        loop {
            let container = self.ensure_container().await?;
            match self.run_in(docker, &container, &request).await {
                Ok(output) => return Ok(output),
                // Removed or stopped behind our back: make a new one, once.
                Err(ExecError::ContainerGone) if !retried => {
                    retried = true;
                    let mut current = self.container.lock().await;
                    if current.as_deref() == Some(container.as_str()) {
                        *current = None;
                    }
                }
                Err(ExecError::ContainerGone) => {
                    return Err(BackendError::Io {
                        backend: "docker",
                        program: request.program.clone(),
                        detail: "the sandbox container is not running (stopped or paused), even after it was made again"
                            .into(),
                    });
                }
                Err(ExecError::Other(detail)) => {
                    return Err(BackendError::Io {
                        backend: "docker",
                        program: request.program.clone(),
                        detail,
                    });
                }
            }
        }
    }

    async fn shutdown(&self) {
        let Some(id) = self.container.lock().await.take() else {
            return;
        };
        if let Some(docker) = self.client.get() {
            remove(docker, &id).await;
            tracing::info!(container = %id, "sandbox container removed");
        }
    }
}

enum ExecError {
    /// The container is gone or not running.
    ContainerGone,
    Other(String),
}

impl ExecError {
    fn from_create(error: bollard::errors::Error) -> Self {
        match &error {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            } => Self::ContainerGone,
            _ => Self::Other(describe(&error)),
        }
    }
}

async fn kill_group(docker: &Docker, container: &str, group: u32) {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(vec![
                    "sh".to_owned(),
                    "-c".to_owned(),
                    KILL_GROUP.to_owned(),
                    "sh".to_owned(),
                    group.to_string(),
                ]),
                ..CreateExecOptions::default()
            },
        )
        .await;
    if let Ok(exec) = exec {
        let detached = StartExecOptions {
            detach: true,
            ..StartExecOptions::default()
        };
        if let Err(error) = docker.start_exec(&exec.id, Some(detached)).await {
            tracing::warn!(%container, "cannot stop a command in the sandbox container: {}", describe(&error));
        }
    }
}

/// The exit code of a finished `exec` (the engine may take a moment to
/// record it after the output ends).
async fn exit_code(docker: &Docker, exec: &str) -> Option<i32> {
    for _ in 0..50 {
        match docker.inspect_exec(exec).await {
            Ok(inspect) if inspect.running != Some(true) => {
                return inspect.exit_code.and_then(|code| i32::try_from(code).ok());
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => return None,
        }
    }
    None
}

async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..RemoveContainerOptions::default()
    };
    if let Err(error) = docker.remove_container(id, Some(options)).await {
        let gone = matches!(
            error,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        );
        if !gone {
            tracing::warn!(container = %id, "cannot remove a sandbox container: {}", describe(&error));
        }
    }
}

fn unreachable(socket: &str, error: &bollard::errors::Error) -> BackendError {
    BackendError::Unreachable {
        backend: "docker",
        detail: format!(
            "cannot reach the Docker engine at {socket}: {} (is dockerd running, and may this user open its socket? set [backend.docker] socket for Podman's)",
            describe(error)
        ),
    }
}

/// An engine error in one line, without bollard's debug wrapping.
fn describe(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        other => other.to_string(),
    }
}

/// This process's pid namespace (the inode of `/proc/self/ns/pid`): pids
/// mean something only within it.
fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_string_lossy();
    let inode: String = text.chars().filter(char::is_ascii_digit).collect();
    (!inode.is_empty()).then_some(inode)
}

/// `namespace:pid:start-time` of a process of this pid namespace (start
/// time in clock ticks since boot, from `/proc`), so that a reused pid is
/// not taken for its old owner.
fn owner_of(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted
    // after its closing parenthesis.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let start = after_name.split_whitespace().nth(19)?;
    Some(format!("{}:{pid}:{start}", pid_namespace()?))
}

/// Whether the owner a label names may still run. An owner of another pid
/// namespace (a Talaria in another container sharing the engine) cannot
/// be checked from here, so it counts as alive: never reaped by us.
fn owner_is_alive(owner: &str) -> bool {
    let mut fields = owner.split(':');
    let (Some(namespace), Some(pid)) = (fields.next(), fields.next()) else {
        return false;
    };
    if pid_namespace().as_deref() != Some(namespace) {
        return true;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    owner_of(pid).as_deref() == Some(owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_its_own_living_owner_and_a_reused_pid_is_not() {
        let me = owner_of(std::process::id()).unwrap();
        assert!(owner_is_alive(&me));
        let namespace = pid_namespace().unwrap();
        let pid = std::process::id();
        assert!(!owner_is_alive(&format!("{namespace}:{pid}:1")));
        assert!(!owner_is_alive(&format!("{namespace}:999999999:1")));
        assert!(!owner_is_alive(&format!("{namespace}:garbage")));
        // Another namespace's owner is never judged dead from here.
        assert!(owner_is_alive(&format!("1{namespace}:{pid}:1")));
    }

    #[test]
    fn the_socket_comes_from_the_settings_first() {
        let settings = DockerSettings {
            socket: Some("unix:///run/user/1000/podman/podman.sock".into()),
            ..DockerSettings::default()
        };
        assert_eq!(settings.socket_path(), "/run/user/1000/podman/podman.sock");
    }
}
