//! Shared set-up of the workspace-level integration tests: a temporary data
//! home with a skills directory, a workspace, skill data and a cache, and
//! helpers to install the test skills built by `cargo xtask build-skills`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use talaria_runtime::sandbox::{LoadError, LoadedSkill, Sandbox, SandboxConfig};
use talaria_runtime::skill::{MountRoots, Skill};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The folder of a skill in the repository, e.g. `tests/skills/hostile`,
/// checked to hold its built component.
pub fn skill_source(relative: &str) -> PathBuf {
    let dir = repo_root().join(relative);
    let manifest = std::fs::read_to_string(dir.join("skill.toml")).unwrap();
    let component = manifest
        .lines()
        .find_map(|line| line.strip_prefix("component = "))
        .map(|value| value.trim().trim_matches('"').to_owned());
    if let Some(component) = component {
        assert!(
            dir.join(&component).is_file(),
            "{} is missing: run `cargo xtask build-skills` first (or `cargo xtask test`)",
            dir.join(&component).display()
        );
    }
    dir
}

pub struct Fixture {
    pub root: tempfile::TempDir,
    pub skills_dir: PathBuf,
    pub workspace: PathBuf,
    pub skill_data: PathBuf,
    pub cache_dir: PathBuf,
    /// A directory beside the workspace that no skill may reach.
    pub outside: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let path = |name: &str| {
            let dir = root.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            dir.canonicalize().unwrap()
        };
        let fixture = Self {
            skills_dir: path("skills"),
            workspace: path("workspace"),
            skill_data: path("skill-data"),
            cache_dir: root.path().join("cache"),
            outside: path("outside"),
            root,
        };
        std::fs::write(fixture.workspace.join("notes.txt"), "workspace notes\n").unwrap();
        std::fs::write(fixture.outside.join("secret.txt"), "TOP SECRET\n").unwrap();
        fixture
    }

    /// Copy the skill folder `source` into the skills directory as `name`,
    /// optionally with another manifest, rewriting `skill.name` to `name`.
    pub fn install(&self, source: &Path, name: &str, manifest: Option<&str>) -> PathBuf {
        let dir = self.skills_dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(source).unwrap() {
            let entry = entry.unwrap();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.ends_with(".wasm") || file_name == "SKILL.md" {
                std::fs::copy(entry.path(), dir.join(&file_name)).unwrap();
            }
        }
        let text = match manifest {
            Some(text) => text.to_owned(),
            None => std::fs::read_to_string(source.join("skill.toml")).unwrap(),
        };
        let original_name = text
            .lines()
            .find_map(|line| line.strip_prefix("name = "))
            .unwrap()
            .to_owned();
        let text = text.replacen(
            &format!("name = {original_name}"),
            &format!("name = \"{name}\""),
            1,
        );
        std::fs::write(dir.join("skill.toml"), text).unwrap();
        dir
    }

    pub fn sandbox(&self) -> Sandbox {
        Sandbox::new(SandboxConfig {
            cache_dir: Some(self.cache_dir.clone()),
            ..SandboxConfig::default()
        })
        .unwrap()
    }

    pub fn roots(&self) -> MountRoots {
        MountRoots {
            workspace: self.workspace.clone(),
            skill_data: self.skill_data.clone(),
        }
    }

    pub async fn try_load(&self, sandbox: &Sandbox, name: &str) -> Result<LoadedSkill, LoadError> {
        let skill = Skill::load(&self.skills_dir.join(name)).unwrap();
        let capabilities =
            talaria_runtime::skill::capabilities::as_requested(&skill, &self.roots()).unwrap();
        sandbox
            .load(skill.component_source().unwrap().unwrap(), capabilities)
            .await
    }

    pub async fn load(&self, sandbox: &Sandbox, name: &str) -> LoadedSkill {
        self.try_load(sandbox, name).await.unwrap()
    }
}

/// Run the `talaria` binary with the fixture as its data home.
pub fn talaria(fixture: &Fixture, args: &[&str]) -> Output {
    talaria_with_stdin(fixture, args, None)
}

pub fn talaria_with_stdin(fixture: &Fixture, args: &[&str], stdin: Option<&str>) -> Output {
    talaria_with(fixture, &[], args, stdin)
}

/// `talaria` with extra environment variables.
pub fn talaria_with(
    fixture: &Fixture,
    env: &[(&str, &Path)],
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_talaria"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
        .env("TALARIA_HOME", fixture.root.path())
        .env("TALARIA_SKILLS_DIR", &fixture.skills_dir)
        .env("TALARIA_WORKSPACE", &fixture.workspace)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

/// A scripted OpenAI-compatible endpoint on real HTTP on loopback: each
/// request to `POST /v1/chat/completions` gets the next reply; every request
/// body is kept for inspection.
pub struct FakeModel {
    pub base_url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

pub enum Reply {
    /// Status and JSON body.
    Json(u16, String),
    /// A text/event-stream body, one `data:` line per chunk.
    Stream(Vec<String>),
    /// Wait, then answer.
    After(std::time::Duration, Box<Reply>),
    /// Never answer: wait until the client closes the connection (it
    /// cancelled the request), then say so on the channel.
    UntilHungUp(std::sync::mpsc::Sender<()>),
}

impl Reply {
    pub fn answer(text: &str) -> Self {
        Self::Json(
            200,
            serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}).to_string(),
        )
    }

    /// One assistant message calling each `(name, arguments)` tool.
    pub fn calls(calls: &[(&str, serde_json::Value)]) -> Self {
        let calls: Vec<serde_json::Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, arguments))| {
                serde_json::json!({"id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": arguments.to_string()}})
            })
            .collect();
        Self::Json(
            200,
            serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": "tool_calls"}]}).to_string(),
        )
    }
}

impl FakeModel {
    pub fn start(replies: Vec<Reply>) -> Self {
        Self::start_on("127.0.0.1", replies)
    }

    /// On another address of this machine: a container reaches the host
    /// at its bridge's gateway address.
    pub fn start_on(address: &str, replies: Vec<Reply>) -> Self {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind((address, 0)).unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&requests);
        std::thread::spawn(move || {
            let mut replies = replies.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                let mut complete = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        complete = true;
                        break;
                    }
                }
                // A connection closed before its request (the gateway's
                // reachability probe opens one and sends nothing) takes no
                // reply.
                if !complete {
                    continue;
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null));
                let reply = replies.next().unwrap_or_else(|| {
                    Reply::Json(500, "{\"error\":\"no more scripted replies\"}".into())
                });
                respond(&mut stream, reply);
            }
        });
        Self { base_url, requests }
    }

    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.requests.lock().unwrap().clone()
    }
}

fn respond(stream: &mut std::net::TcpStream, reply: Reply) {
    match reply {
        Reply::After(delay, reply) => {
            std::thread::sleep(delay);
            respond(stream, *reply);
        }
        Reply::UntilHungUp(hung_up) => {
            let mut buffer = [0u8; 256];
            while matches!(std::io::Read::read(stream, &mut buffer), Ok(n) if n > 0) {}
            let _ = hung_up.send(());
        }
        Reply::Json(status, body) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Reply::Stream(chunks) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            );
            for chunk in chunks {
                let _ = write!(stream, "data: {chunk}\n\n");
                let _ = stream.flush();
            }
            let _ = write!(stream, "data: [DONE]\n\n");
        }
    }
}

/// The tool results in the model request `index`, in order.
pub fn tool_results(model: &FakeModel, index: usize) -> Vec<String> {
    model.requests()[index]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

/// The last tool result in the model request `index` (empty if none).
pub fn last_tool_result(model: &FakeModel, index: usize) -> String {
    tool_results(model, index).pop().unwrap_or_default()
}
