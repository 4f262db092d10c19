//! `talaria gateway run` over real HTTP on loopback: a real process, real
//! sockets, real SQLite, real skills; only the model is the scripted server.
//! Requests are written by hand so that malformed ones, wrong headers and a
//! client that goes away can be sent as well as good ones.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{FakeModel, Fixture, Reply, assert_exit, repo_root, stdout, talaria_with};

pub(crate) const KEY: &str = "test-key-7Qp2vX9mZ4wL1tR8";

/// How long a test waits for something that must happen before it fails:
/// generous, since CI machines are loaded (never a measure of speed).
const LIVENESS: Duration = Duration::from_secs(60);

pub(crate) struct Gateway {
    child: Child,
    pub(crate) address: String,
    /// Where the dashboard listens (empty with `--no-dashboard`).
    pub(crate) dashboard: String,
    log: Arc<Mutex<String>>,
}

/// The `ADDRESS` of a started line's `http://ADDRESS`.
fn address_in(line: &str) -> Option<String> {
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

impl Gateway {
    /// Start a gateway on a free port with `TALARIA_API_KEY` = [`KEY`]
    /// unless `env` sets it, and wait for its started line.
    pub(crate) fn start(fixture: &Fixture, model: &FakeModel, env: &[(&str, &str)]) -> Self {
        Self::try_start(fixture, model, env, &["--allow-root"]).unwrap_or_else(|log| {
            panic!("the gateway did not start:\n{log}");
        })
    }

    pub(crate) fn try_start(
        fixture: &Fixture,
        model: &FakeModel,
        env: &[(&str, &str)],
        flags: &[&str],
    ) -> Result<Self, String> {
        let skills = repo_root().join("skills");
        let mut command = Command::new(env!("CARGO_BIN_EXE_talaria"));
        command
            .env_clear()
            .env("TALARIA_HOME", fixture.root.path())
            .env("TALARIA_SKILLS_DIR", &fixture.skills_dir)
            .env("TALARIA_WORKSPACE", &fixture.workspace)
            .env("TALARIA_BUNDLED_SKILLS", &skills)
            .env("TALARIA_MODEL_BASE_URL", &model.base_url);
        if !env.iter().any(|(name, _)| *name == "TALARIA_API_KEY") {
            command.env("TALARIA_API_KEY", KEY);
        }
        let mut child = command
            .envs(env.iter().copied())
            .args(["gateway", "run", "--port", "0", "--dashboard-port", "0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(address) = address_in(&line) else {
            let status = child.wait().unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let log = log.lock().unwrap().clone();
            return Err(format!("{status}\n{line}{log}"));
        };
        let mut dashboard = String::new();
        if !flags.contains(&"--no-dashboard") {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            assert!(line.contains("dashboard on"), "{line}");
            dashboard = address_in(&line).unwrap_or_default();
        }
        Ok(Self {
            address,
            dashboard,
            child,
            log,
        })
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        request(&self.address, method, path, headers, body)
    }

    /// `POST path` with the key and a JSON body.
    fn post(&self, path: &str, body: &Value) -> Response {
        self.send(
            "POST",
            path,
            &[
                ("Authorization", &format!("Bearer {KEY}")),
                ("Content-Type", "application/json"),
            ],
            &body.to_string(),
        )
    }

    fn get(&self, path: &str) -> Response {
        self.send(
            "GET",
            path,
            &[("Authorization", &format!("Bearer {KEY}"))],
            "",
        )
    }

    /// A chat completion asking `content`, sent from another thread.
    pub(crate) fn chat_in_background(&self, content: &str) -> std::thread::JoinHandle<Response> {
        let address = self.address.clone();
        let body = json!({"messages": [{"role": "user", "content": content}]}).to_string();
        std::thread::spawn(move || {
            request(
                &address,
                "POST",
                "/v1/chat/completions",
                &[
                    ("Authorization", &format!("Bearer {KEY}")),
                    ("Content-Type", "application/json"),
                ],
                &body,
            )
        })
    }

    /// Wait until a run has reached `model`.
    fn wait_for_model(&self, model: &FakeModel) {
        let started = Instant::now();
        while model.requests().is_empty() {
            assert!(started.elapsed() < LIVENESS, "{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: the process ends without cleaning anything up.
    pub(crate) fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < LIVENESS,
                "the gateway did not stop after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `{"error": ...}` object of an error response, checked for
    /// OpenAI's shape.
    pub(crate) fn error(&self) -> Value {
        let error = self.json()["error"].clone();
        assert!(error["message"].is_string(), "{}", self.body);
        assert!(error["type"].is_string(), "{}", self.body);
        error
    }

    /// Tool progress sent as SSE comments (`: talaria.tool {...}`), which
    /// every SSE parser skips.
    fn progress(&self) -> Vec<Value> {
        self.body
            .lines()
            .filter_map(|line| line.strip_prefix(": talaria.tool "))
            .map(|payload| serde_json::from_str(payload).unwrap())
            .collect()
    }

    /// The `data:` payloads of a server-sent-event body, unnamed events
    /// only (what OpenAI clients read), and the named ones apart.
    pub(crate) fn events(&self) -> (Vec<String>, Vec<(String, String)>) {
        let mut data = Vec::new();
        let mut named = Vec::new();
        for block in self.body.split("\n\n") {
            let mut name = None;
            let mut payload = None;
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    payload = Some(value.trim().to_owned());
                }
            }
            match (name, payload) {
                (None, Some(payload)) => data.push(payload),
                (Some(name), Some(payload)) => named.push((name, payload)),
                _ => {}
            }
        }
        (data, named)
    }
}

/// One HTTP/1.1 request on a new connection, read to its end.
pub(crate) fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(LIVENESS)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn answer_with_usage(text: &str) -> Reply {
    Reply::Json(
        200,
        json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127},
        })
        .to_string(),
    )
}

fn write_config(fixture: &Fixture, text: &str) {
    std::fs::write(fixture.root.path().join("config.toml"), text).unwrap();
}

#[test]
fn a_chat_completion_runs_the_agent_and_is_stored_as_a_searchable_session() {
    let fixture = Fixture::new();
    let model = FakeModel::start(vec![answer_with_usage("Paris, of course.")]);
    let gateway = Gateway::start(&fixture, &model, &[]);
    let response = gateway.post(
        "/v1/chat/completions",
        &json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Answer in five words."},
                {"role": "user", "content": "Which river runs through Lyon?"},
                {"role": "assistant", "content": "The Rhône and the Saône."},
                {"role": "user", "content": [{"type": "text", "text": "And the capital of France?"}]},
            ],
        }),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "talaria");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Paris, of course."
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // The model's own usage, passed on.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127})
    );
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
    let session = response.header("x-talaria-session-id").unwrap().to_owned();

    // The model saw Talaria's prompt with the client's instructions, the
    // client's history and the question.
    let sent = model.requests()[0]["messages"].as_array().unwrap().clone();
    assert_eq!(sent[0]["role"], "system");
    assert!(
        sent[0]["content"]
            .as_str()
            .unwrap()
            .contains("Answer in five words."),
        "{}",
        sent[0]
    );
    let roles: Vec<&str> = sent.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(sent[3]["content"], "And the capital of France?");

    // Stored as a session the CLI finds.
    let found = talaria_with(&fixture, &[], &["sessions", "search", "Lyon"], None);
    assert_exit(&found, 0);
    assert!(stdout(&found).contains(&session), "{}", stdout(&found));
    let shown = talaria_with(&fixture, &[], &["sessions", "show", &session], None);
    assert!(
        stdout(&shown).contains("Paris, of course."),
        "{}",
        stdout(&shown)
    );

    // One log line per request, without the key or the body.
    let log = gateway.log();
    assert!(
        log.contains("path=/v1/chat/completions status=200"),
        "{log}"
    );
    assert!(!log.contains(KEY), "{log}");
    assert!(!log.contains("capital of France"), "{log}");
}

#[test]
fn a_session_header_continues_a_stored_session() {
    let fixture = Fixture::new();
    let model = FakeModel::start(vec![
        Reply::answer("Noted: your name is Ada."),
        Reply::answer("You are Ada."),
    ]);
    let gateway = Gateway::start(&fixture, &model, &[]);
    let first = gateway.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "My name is Ada."}]}),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    let session = first.header("x-talaria-session-id").unwrap().to_owned();
    let second = gateway.send(
        "POST",
        "/v1/chat/completions",
        &[
            ("Authorization", &format!("Bearer {KEY}")),
            ("Content-Type", "application/json"),
            ("X-Talaria-Session-Id", &session),
        ],
        &json!({"messages": [{"role": "user", "content": "What is my name?"}]}).to_string(),
    );
    assert_eq!(second.status, 200, "{}", second.body);
    let sent = model.requests()[1]["messages"].as_array().unwrap().clone();
    let contents: Vec<&str> = sent
        .iter()
        .skip(1)
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "My name is Ada.",
            "Noted: your name is Ada.",
            "What is my name?"
        ]
    );

    let unknown = gateway.send(
        "POST",
        "/v1/chat/completions",
        &[
            ("Authorization", &format!("Bearer {KEY}")),
            ("Content-Type", "application/json"),
            ("X-Talaria-Session-Id", "20200101T000000-abcdef"),
        ],
        &json!({"messages": [{"role": "user", "content": "hi"}]}).to_string(),
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert!(
        unknown.error()["message"]
            .as_str()
            .unwrap()
            .contains("no session"),
        "{}",
        unknown.body
    );
}

#[test]
fn a_streamed_completion_sends_openai_chunks_tool_progress_and_usage() {
    let fixture = Fixture::new();
    let model = FakeModel::start(vec![
        // Asked to stream, the model streams its tool call too.
        Reply::Stream(vec![
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "text__count", "arguments": "{\"text\": \"one two three\"}"}}]}}]}).to_string(),
        ]),
        Reply::Stream(vec![
            json!({"choices": [{"index": 0, "delta": {"content": "Three "}}]}).to_string(),
            json!({"choices": [{"index": 0, "delta": {"content": "words."}}]}).to_string(),
            json!({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 2, "total_tokens": 52}}).to_string(),
        ]),
    ]);
    // The text skill is bundled: granted at start.
    let gateway = Gateway::start(&fixture, &model, &[]);
    let response = gateway.post(
        "/v1/chat/completions",
        &json!({
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "How many words in 'one two three'?"}],
        }),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (data, named) = response.events();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Three words.");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    // The usage chunk comes last, with no choices; the tool call's request
    // reported none, the streamed one 52 tokens.
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 52);
    // Nothing but OpenAI's chunks in events; the session in the header;
    // tool progress in comments, which every SSE parser skips.
    assert!(named.is_empty(), "{named:?}");
    assert!(response.header("x-talaria-session-id").is_some());
    assert_eq!(
        response.progress(),
        [
            json!({"tool": "text__count", "status": "started"}),
            json!({"tool": "text__count", "status": "finished"}),
        ]
    );
    // The tool ran for real: its result went back to the model.
    let second = model.requests()[1]["messages"].as_array().unwrap().clone();
    let result = second.iter().find(|m| m["role"] == "tool").unwrap();
    assert!(
        result["content"].as_str().unwrap().contains("\"words\":3"),
        "{result}"
    );
}

#[test]
fn every_request_but_health_needs_the_key() {
    let fixture = Fixture::new();
    let model = FakeModel::start(vec![]);
    let gateway = Gateway::start(&fixture, &model, &[]);
    let health = gateway.send("GET", "/health", &[], "");
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), json!({"status": "ok"}));
    for (path, method) in [
        ("/v1/models", "GET"),
        ("/health/detailed", "GET"),
        ("/v1/chat/completions", "POST"),
        ("/v1/responses", "POST"),
        ("/v1/responses/resp_0123456789abcdef01234567", "GET"),
        ("/v1/responses/resp_0123456789abcdef01234567", "DELETE"),
    ] {
        for headers in [
            vec![],
            vec![("Authorization", "Bearer wrong-key-wrong-key-1234")],
            vec![("Authorization", &format!("Bearer {KEY}x") as &str)],
            vec![("Authorization", KEY)],
            vec![("Authorization", &format!("Basic {KEY}") as &str)],
            vec![("Authorization", &format!("Bearer{KEY}") as &str)],
        ] {
            let response = gateway.send(method, path, &headers, "{}");
            assert_eq!(
                response.status, 401,
                "{path} {headers:?}: {}",
                response.body
            );
            assert_eq!(response.error()["code"], "invalid_api_key");
            assert!(!response.body.contains(KEY));
        }
    }
    let models = gateway.get("/v1/models");
    assert_eq!(models.status, 200, "{}", models.body);
    assert_eq!(models.json()["data"][0]["id"], "talaria");
    let detailed = gateway.get("/health/detailed");
    assert_eq!(detailed.status, 200, "{}", detailed.body);
    let detailed = detailed.json();
    assert_eq!(detailed["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(detailed["model"]["reachable"], true);
    let skills = detailed["skills"].as_array().unwrap();
    assert!(
        skills
            .iter()
            .any(|s| s["name"] == "text" && s["state"] == "granted"),
        "{skills:?}"
    );
}

#[test]
fn short_and_placeholder_keys_stop_the_start_and_a_missing_one_is_generated_privately() {
    let fixture = Fixture::new();
    let model = FakeModel::start(vec![]);
    for (key, expected) in [
        ("short-key", "at least 16"),
        ("changeme-changeme-changeme", "placeholder"),
    ] {
        let error = Gateway::try_start(
            &fixture,
            &model,
            &[("TALARIA_API_KEY", key)],
            &["--allow-root"],
        )
        .err()
        .expect("the gateway must refuse this key");
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains(key), "the key was echoed: {error}");
    }

    // No key anywhere: one is generated into .env (0600) and never printed.
    let mut command = Command::new(env!("CARGO_BIN_EXE_talaria"));
    let output = command
        .env_clear()
        .env("TALARIA_HOME", fixture.root.path())
        .env("TALARIA_SKILLS_DIR", &fixture.skills_dir)
        .env("TALARIA_WORKSPACE", &fixture.workspace)
        .env("TALARIA_MODEL_BASE_URL", &model.base_url)
        .args([
            "gateway",
            "run",
            "--port",
            "0",
            "--no-dashboard",
            "--allow-root",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut gateway = Gateway {
        child: output,
        address: String::new(),
        dashboard: String::new(),
        log: Arc::new(Mutex::new(String::new())),
    };
    let mut line = String::new();
    BufReader::new(gateway.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let env_file = fixture.root.path().join(".env");
    let text = std::fs::read_to_string(&env_file).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("TALARIA_API_KEY="))
        .expect("a key in .env")
        .to_owned();
    assert!(key.len() >= 32, "{key}");
    assert!(line.contains("generated into"), "{line}");
    assert!(!line.contains(&key), "{line}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(gateway.terminate().success());
}

#[test]
fn bad_requests_get_openai_shaped_errors_with_the_right_status() {
    let fixture = Fixture::new();
    write_config(&fixture, "[gateway]\nmax_body_bytes = 2048\n");
    let model = FakeModel::start(vec![]);
    let gateway = Gateway::start(&fixture, &model, &[]);
    let auth = format!("Bearer {KEY}");
    let json_headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    // method, path, headers, body, expected status, what the message says
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        String,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/chat/completions",
            json_headers.to_vec(),
            "{\"messages\": [".into(),
            400,
            "not valid JSON",
        ),
        (
            "POST",
            "/v1/chat/completions",
            json_headers.to_vec(),
            "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}".into(),
            400,
            "messages[0].content",
        ),
        (
            "POST",
            "/v1/chat/completions",
            json_headers.to_vec(),
            "{\"messages\": []}".into(),
            400,
            "at least one message",
        ),
        (
            "POST",
            "/v1/chat/completions",
            json_headers.to_vec(),
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}).to_string(),
            400,
            "last message must have role \"user\"",
        ),
        (
            "POST",
            "/v1/chat/completions",
            vec![("Authorization", auth.as_str()), ("Content-Type", "text/plain")],
            "{}".into(),
            415,
            "Content-Type: application/json",
        ),
        (
            "POST",
            "/v1/chat/completions",
            json_headers.to_vec(),
            json!({"messages": [{"role": "user", "content": "x".repeat(4096)}]}).to_string(),
            413,
            "max_body_bytes",
        ),
        (
            "GET",
            "/v1/nothing-here",
            json_headers.to_vec(),
            String::new(),
            404,
            "no route",
        ),
        (
            "DELETE",
            "/v1/models",
            json_headers.to_vec(),
            String::new(),
            405,
            "not allowed",
        ),
    ];
    for (method, path, headers, body, status, says) in cases {
        let response = gateway.send(method, path, &headers, &body);
        assert_eq!(
            response.status, status,
            "{method} {path} {body:.60}: {}",
            response.body
        );
        let error = response.error();
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{method} {path}: {error}"
        );
    }
    // None of them reached the model.
    assert!(model.requests().is_empty());
}

#[test]
fn runs_beyond_the_limit_get_429_with_retry_after() {
    let fixture = Fixture::new();
    write_config(&fixture, "[gateway]\nmax_concurrent_runs = 1\n");
    let model = FakeModel::start(vec![
        Reply::After(Duration::from_secs(3), Box::new(Reply::answer("slow"))),
        Reply::answer("fast"),
    ]);
    let gateway = Gateway::start(&fixture, &model, &[]);
    let slow = gateway.chat_in_background("take your time");
    gateway.wait_for_model(&model);
    let refused = gateway.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "me too"}]}),
    );
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.error()["type"], "rate_limit_error");
    let slow = slow.join().unwrap();
    assert_eq!(slow.status, 200, "{}", slow.body);
    // The permit came back.
    let after = gateway.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "now?"}]}),
    );
    assert_eq!(after.status, 200, "{}", after.body);
}

#[test]
fn cors_answers_only_the_listed_origins() {
    let fixture = Fixture::new();
    let model = FakeModel::start(vec![]);
    let preflight = |gateway: &Gateway, origin: &str| {
        gateway.send(
            "OPTIONS",
            "/v1/chat/completions",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization,content-type",
                ),
            ],
            "",
        )
    };
    {
        // None listed: no CORS headers for anyone.
        let gateway = Gateway::start(&fixture, &model, &[]);
        let response = preflight(&gateway, "https://evil.example");
        assert_eq!(response.header("access-control-allow-origin"), None);
        let response = gateway.get("/v1/models");
        assert_eq!(response.header("access-control-allow-origin"), None);
    }
    write_config(
        &fixture,
        "[gateway]\ncors_origins = [\"https://chat.example.com\"]\n",
    );
    let gateway = Gateway::start(&fixture, &model, &[]);
    let allowed = preflight(&gateway, "https://chat.example.com");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://chat.example.com"),
        "{allowed:?}"
    );
    let refused = preflight(&gateway, "https://evil.example");
    assert_eq!(refused.header("access-control-allow-origin"), None);

    write_config(&fixture, "[gateway]\ncors_origins = [\"*\"]\n");
    let error = Gateway::try_start(&fixture, &model, &[], &["--allow-root"])
        .err()
        .expect("a wildcard origin must be refused");
    assert!(error.contains("list the origins"), "{error}");
}

#[test]
fn a_second_gateway_on_the_same_home_is_refused_naming_the_first() {
    let fixture = Fixture::new();
    let model = FakeModel::start(vec![]);
    let first = Gateway::start(&fixture, &model, &[]);
    let error = Gateway::try_start(&fixture, &model, &[], &["--allow-root"])
        .err()
        .expect("a second gateway must be refused");
    assert!(
        error.contains(&format!(
            "already running on this data home (pid {}",
            first.child.id()
        )),
        "{error}"
    );
}

#[test]
fn running_as_root_needs_to_be_allowed() {
    if !rustix::process::geteuid().is_root() {
        // The refusal can only be seen as root; CI runs as root.
        eprintln!("skipped: not running as root");
        return;
    }
    let fixture = Fixture::new();
    let model = FakeModel::start(vec![]);
    let error = Gateway::try_start(&fixture, &model, &[], &[])
        .err()
        .expect("root without --allow-root must be refused");
    assert!(
        error.contains("refusing to run the gateway as root"),
        "{error}"
    );
    let allowed_by_env = Gateway::try_start(&fixture, &model, &[("TALARIA_ALLOW_ROOT", "1")], &[]);
    assert!(allowed_by_env.is_ok(), "{:?}", allowed_by_env.err());
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_and_exits_0() {
    let fixture = Fixture::new();
    let model = FakeModel::start(vec![Reply::After(
        Duration::from_secs(2),
        Box::new(Reply::answer("finished anyway")),
    )]);
    let mut gateway = Gateway::start(&fixture, &model, &[]);
    let in_flight = gateway.chat_in_background("before the stop");
    gateway.wait_for_model(&model);
    let status = gateway.terminate();
    assert!(status.success(), "{status}\n{}", gateway.log());
    let response = in_flight.join().unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.json()["choices"][0]["message"]["content"],
        "finished anyway"
    );
    // Committed: the CLI reads the answer back.
    let session = response.header("x-talaria-session-id").unwrap().to_owned();
    let shown = talaria_with(&fixture, &[], &["sessions", "show", &session], None);
    assert!(stdout(&shown).contains("finished anyway"));
    // New connections are refused once it stopped.
    assert!(TcpStream::connect(&gateway.address).is_err());
}

#[test]
fn a_client_that_goes_away_mid_stream_cancels_its_model_request_and_frees_its_slot() {
    let fixture = Fixture::new();
    write_config(&fixture, "[gateway]\nmax_concurrent_runs = 1\n");
    let (hung_up, model_saw_hang_up) = std::sync::mpsc::channel();
    let model = FakeModel::start(vec![Reply::UntilHungUp(hung_up), Reply::answer("next one")]);
    let gateway = Gateway::start(&fixture, &model, &[]);
    let mut stream = TcpStream::connect(&gateway.address).unwrap();
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "then I leave"}]})
        .to_string();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        gateway.address,
        body.len()
    )
    .unwrap();
    // Read the response's head (the session is named there), then hang up
    // while the model is still thinking.
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut session = None;
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0);
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("x-talaria-session-id")
        {
            session = Some(value.trim().to_owned());
        }
        if line == "\r\n" {
            break;
        }
    }
    let session = session.expect("a session header");
    gateway.wait_for_model(&model);
    drop(reader);
    stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(stream);

    // The run stops, and its model request with it: the gateway closes the
    // connection to the model, which stops generating.
    model_saw_hang_up
        .recv_timeout(LIVENESS)
        .unwrap_or_else(|_| panic!("the model request was not cancelled:\n{}", gateway.log()));
    // The slot is free again.
    let started = Instant::now();
    let next = loop {
        let response = gateway.post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "anyone?"}]}),
        );
        if response.status != 429 {
            break response;
        }
        assert!(started.elapsed() < LIVENESS, "the slot was never freed");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(next.status, 200, "{}", next.body);
    let log = gateway.log();
    assert!(log.contains("the client went away"), "{log}");
    // The stopped session holds the question and no half answer.
    let shown = talaria_with(&fixture, &[], &["sessions", "show", &session], None);
    assert_exit(&shown, 0);
    let text = stdout(&shown);
    assert!(text.contains("then I leave"), "{text}");
    assert!(!text.contains("too late"), "{text}");
}

/// The Python with the official OpenAI client that `cargo xtask test`
/// prepares (`TALARIA_TEST_PYTHON`, else `target/test-venv`).
pub(crate) fn openai_python() -> std::path::PathBuf {
    let python = std::env::var_os("TALARIA_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv/bin/python"));
    assert!(
        python.is_file(),
        "{} is missing: `cargo xtask test` creates it (a venv with the openai package)",
        python.display()
    );
    python
}

/// What the scripted model answers `tests/gateway/openai_client.py`, in
/// order (the script's docstring says what it expects).
pub(crate) fn openai_client_replies() -> Vec<Reply> {
    vec![
        Reply::answer("Plain answer."),
        Reply::Stream(vec![
            json!({"choices": [{"index": 0, "delta": {"content": "Streamed "}}]}).to_string(),
            json!({"choices": [{"index": 0, "delta": {"content": "answer."}}]}).to_string(),
            json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}).to_string(),
        ]),
        Reply::calls(&[("text__count", json!({"text": "one two three"}))]),
        Reply::answer("The text has 3 words."),
        Reply::answer("Noted: blue."),
        Reply::answer("Your colour is blue."),
        Reply::Stream(vec![
            json!({"choices": [{"index": 0, "delta": {"content": "Streamed "}}]}).to_string(),
            json!({"choices": [{"index": 0, "delta": {"content": "response."}}]}).to_string(),
        ]),
    ]
}

/// Run `tests/gateway/openai_client.py` against `base_url` with `key`
/// (the model scripted with [`openai_client_replies`]) and check its 14
/// checks passed; `log` is shown when they did not.
pub(crate) fn run_openai_client(base_url: &str, key: &str, log: &str) {
    let output = Command::new(openai_python())
        .arg(repo_root().join("tests/gateway/openai_client.py"))
        .arg(base_url)
        .arg(key)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}\n{}\n{log}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(printed.matches("ok: ").count(), 14, "{printed}");
}

#[test]
fn the_official_openai_python_client_works_unchanged() {
    let fixture = Fixture::new();
    let model = FakeModel::start(openai_client_replies());
    let gateway = Gateway::start(&fixture, &model, &[]);
    run_openai_client(
        &format!("http://{}/v1", gateway.address),
        KEY,
        &gateway.log(),
    );
    // The continued response was sent the stored conversation.
    let continued: Vec<String> = model.requests()[5]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        continued,
        [
            "My favourite colour is blue.",
            "Noted: blue.",
            "What is my favourite colour?"
        ]
    );
    // The tool really ran: its result went back to the model.
    let requests = model.requests();
    let tool = requests[3]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .unwrap();
    assert!(
        tool["content"].as_str().unwrap().contains("\"words\":3"),
        "{tool}"
    );
}

#[test]
fn the_responses_api_stores_continues_reads_and_deletes_a_response() {
    let fixture = Fixture::new();
    let model = FakeModel::start(vec![
        answer_with_usage("Noted: 42."),
        Reply::answer("You said 42."),
        Reply::answer("Not kept."),
    ]);
    let gateway = Gateway::start(&fixture, &model, &[]);
    let first = gateway.post(
        "/v1/responses",
        &json!({"model": "talaria", "input": "Remember the number 42.", "instructions": "Be terse."}),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    let body = first.json();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("resp_"), "{id}");
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["output"][0]["type"], "message");
    assert_eq!(body["output"][0]["role"], "assistant");
    assert_eq!(body["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(body["output"][0]["content"][0]["text"], "Noted: 42.");
    assert_eq!(body["usage"]["input_tokens"], 120);
    assert_eq!(body["usage"]["output_tokens"], 7);
    let system = model.requests()[0]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(system.contains("Be terse."), "{system}");

    // Errors name the item as the client sent it, instructions or not.
    let bad_item = gateway.post(
        "/v1/responses",
        &json!({"input": [{"role": "user", "content": "hi"}, {"type": "function_call_output", "role": "tool"}], "instructions": "Be terse."}),
    );
    assert_eq!(bad_item.status, 400, "{}", bad_item.body);
    let message = bad_item.error()["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("input[1].type"), "{message}");
    let last_not_user = gateway.post(
        "/v1/responses",
        &json!({"input": [{"role": "assistant", "content": "hi"}], "instructions": "Be terse."}),
    );
    assert_eq!(last_not_user.status, 400, "{}", last_not_user.body);
    let message = last_not_user.error()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.starts_with("input[0]"), "{message}");

    // Continued: the model sees the stored conversation.
    let second = gateway.post(
        "/v1/responses",
        &json!({"input": [
            {"role": "user", "content": "Also remember 7."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Which number?"}]},
        ], "previous_response_id": id}),
    );
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.json()["previous_response_id"], id.as_str());
    let contents: Vec<String> = model.requests()[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        contents,
        [
            "Remember the number 42.",
            "Noted: 42.",
            "Also remember 7.",
            "Which number?"
        ]
    );

    // Read back as it was sent.
    let read = gateway.get(&format!("/v1/responses/{id}"));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json(), body);

    // `store: false` is answered and not kept.
    let unkept = gateway.post(
        "/v1/responses",
        &json!({"input": "Forget this.", "store": false}),
    );
    assert_eq!(unkept.status, 200, "{}", unkept.body);
    let unkept_id = unkept.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        gateway.get(&format!("/v1/responses/{unkept_id}")).status,
        404
    );
    assert_eq!(unkept.header("x-talaria-session-id"), None);
    let searched = talaria_with(&fixture, &[], &["sessions", "search", "Forget"], None);
    assert!(
        !stdout(&searched).contains("Forget this."),
        "an unstored turn was kept: {}",
        stdout(&searched)
    );

    // Deleted with its session.
    let session = first.header("x-talaria-session-id").unwrap().to_owned();
    let deleted = gateway.send(
        "DELETE",
        &format!("/v1/responses/{id}"),
        &[("Authorization", &format!("Bearer {KEY}"))],
        "",
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.json()["deleted"], true);
    assert_eq!(gateway.get(&format!("/v1/responses/{id}")).status, 404);
    let shown = talaria_with(&fixture, &[], &["sessions", "show", &session], None);
    assert_ne!(shown.status.code(), Some(0), "{}", stdout(&shown));
    let again = gateway.send(
        "DELETE",
        &format!("/v1/responses/{id}"),
        &[("Authorization", &format!("Bearer {KEY}"))],
        "",
    );
    assert_eq!(again.status, 404, "{}", again.body);
    let unknown = gateway.post(
        "/v1/responses",
        &json!({"input": "hi", "previous_response_id": "resp_000000000000000000000000"}),
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.error()["code"], "not_found");
    // Three model calls: the unknown id never reached the model.
    assert_eq!(model.requests().len(), 3);
}

#[test]
fn a_streamed_response_sends_the_responses_api_events_in_order() {
    let fixture = Fixture::new();
    let model = FakeModel::start(vec![Reply::Stream(vec![
        json!({"choices": [{"index": 0, "delta": {"content": "Hello "}}]}).to_string(),
        json!({"choices": [{"index": 0, "delta": {"content": "there."}}]}).to_string(),
    ])]);
    let gateway = Gateway::start(&fixture, &model, &[]);
    let response = gateway.post(
        "/v1/responses",
        &json!({"input": "Greet me.", "stream": true}),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let (unnamed, named) = response.events();
    assert!(unnamed.is_empty(), "{unnamed:?}");
    assert!(response.header("x-talaria-session-id").is_some());
    let events: Vec<(String, Value)> = named
        .into_iter()
        .map(|(name, data)| (name, serde_json::from_str(&data).unwrap()))
        .collect();
    let kinds: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (index, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], index);
    }
    let deltas: String = events
        .iter()
        .filter_map(|(_, data)| data["delta"].as_str())
        .collect();
    assert_eq!(deltas, "Hello there.");
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"][0]["content"][0]["text"], "Hello there.");
    // Kept: it reads back as completed.
    let id = completed["id"].as_str().unwrap();
    let read = gateway.get(&format!("/v1/responses/{id}"));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(&read.json(), completed);
}

#[test]
fn a_client_s_next_request_finds_the_slot_its_last_one_freed() {
    let fixture = Fixture::new();
    write_config(&fixture, "[gateway]\nmax_concurrent_runs = 1\n");
    let turns = 40;
    let model = FakeModel::start((0..turns).map(|_| Reply::answer("ok")).collect());
    let gateway = Gateway::start(&fixture, &model, &[]);
    for turn in 0..turns {
        let response = gateway.post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": format!("turn {turn}")}]}),
        );
        assert_eq!(response.status, 200, "turn {turn}: {}", response.body);
    }
}

#[test]
fn a_failing_model_gets_503_that_clients_do_not_retry_and_that_hides_the_endpoint() {
    let fixture = Fixture::new();
    write_config(&fixture, "[model]\nmax_retries = 1\n");
    let model = FakeModel::start(vec![
        Reply::Json(500, "{\"error\":\"boom\"}".into()),
        Reply::Json(500, "{\"error\":\"boom\"}".into()),
    ]);
    let gateway = Gateway::start(&fixture, &model, &[]);
    let response = gateway.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hello?"}]}),
    );
    assert_eq!(response.status, 503, "{}", response.body);
    // Tools may have run: OpenAI's clients must not run the turn again.
    assert_eq!(response.header("x-should-retry"), Some("false"));
    let error = response.error();
    assert_eq!(error["code"], "model_unavailable");
    let port = model
        .base_url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/v1");
    assert!(!response.body.contains(port), "{}", response.body);
    assert!(
        gateway.log().contains("model request failed"),
        "{}",
        gateway.log()
    );
}
