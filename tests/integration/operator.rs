//! The operator's commands end to end: grants pinned to a skill's hash,
//! audit, revoke, transactional install, config, the data home and its lock.

use std::path::Path;

use crate::support::{
    Fixture, assert_exit, repo_root, skill_source, stderr, stdout, talaria, talaria_with,
};
use serde_json::Value;
use talaria_runtime::home::WriterLock;

fn fixture_with_hostile() -> Fixture {
    let fixture = Fixture::new();
    fixture.install(&skill_source("tests/skills/hostile"), "hostile", None);
    fixture
}

fn grant(fixture: &Fixture, name: &str) {
    assert_exit(&talaria(fixture, &["skills", "grant", name, "--yes"]), 0);
}

/// Replace `from` by `to` in an installed skill's manifest; returns the
/// original text.
fn edit_manifest(fixture: &Fixture, skill: &str, from: &str, to: &str) -> String {
    let manifest = fixture.skills_dir.join(skill).join("skill.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains(from), "{skill}/skill.toml has no {from:?}");
    std::fs::write(&manifest, text.replacen(from, to, 1)).unwrap();
    text
}

fn echo(fixture: &Fixture) -> std::process::Output {
    talaria(
        fixture,
        &["tool", "call", "hostile.echo", r#"{"text": "hi"}"#],
    )
}

fn audit_json(fixture: &Fixture) -> (i32, Value) {
    let output = talaria(fixture, &["skills", "audit", "--json"]);
    (
        output.status.code().unwrap(),
        serde_json::from_str(&stdout(&output)).unwrap(),
    )
}

#[test]
fn a_pending_skill_runs_only_after_the_operator_grants_it() {
    let fixture = fixture_with_hostile();
    let output = echo(&fixture);
    assert_exit(&output, 1);
    assert_eq!(
        stderr(&output),
        "error: skill hostile v0.1.0 is pending: it has never been granted; review it with \
         `talaria skills audit` and grant it with `talaria skills grant hostile`\n"
    );
    let (code, report) = audit_json(&fixture);
    assert_eq!(code, 1);
    assert_eq!(report["skills"][0]["state"], "pending");

    // Without a terminal and without --yes nothing is granted.
    let output = talaria(&fixture, &["skills", "grant", "hostile"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("pass --yes"),
        "{}",
        stderr(&output)
    );
    let plan = stdout(&output);
    assert!(
        plan.contains(&format!(
            "{} → /workspace (ro)",
            fixture.workspace.display()
        )),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "{} → /data (rw)",
            fixture.skill_data.join("hostile").display()
        )),
        "{plan}"
    );
    assert!(plan.contains("TALARIA_TEST_ALLOWED (not set)"), "{plan}");
    assert!(!fixture.root.path().join("grants.toml").exists());

    grant(&fixture, "hostile");
    assert_exit(&echo(&fixture), 0);
    let (code, report) = audit_json(&fixture);
    assert_eq!(code, 0);
    assert_eq!(report["all_granted"], true);
    // Granting the same thing again changes nothing.
    let output = talaria(&fixture, &["skills", "grant", "hostile", "--yes"]);
    assert!(
        stdout(&output).contains("already granted"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn one_changed_byte_puts_a_skill_back_in_front_of_the_operator() {
    let fixture = fixture_with_hostile();
    grant(&fixture, "hostile");
    edit_manifest(
        &fixture,
        "hostile",
        "every attempt fails",
        "every attempt fail!",
    );

    let output = echo(&fixture);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains("skill hostile v0.1.0 is drifted (the skill changed: granted blake3:"),
        "{message}"
    );
    assert!(
        message.contains("`talaria skills grant hostile`"),
        "{message}"
    );
    let (code, report) = audit_json(&fixture);
    assert_eq!(code, 1);
    assert_eq!(report["skills"][0]["state"], "drifted");

    // Regranting shows the change, then the skill runs again.
    let output = talaria(&fixture, &["skills", "grant", "hostile", "--yes"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("Changes since the grant of"),
        "{}",
        stdout(&output)
    );
    assert_exit(&echo(&fixture), 0);
}

#[test]
fn asking_for_more_drifts_and_names_the_new_capability() {
    let fixture = fixture_with_hostile();
    grant(&fixture, "hostile");
    edit_manifest(
        &fixture,
        "hostile",
        "env = [\"TALARIA_TEST_ALLOWED\"]",
        "env = [\"TALARIA_TEST_ALLOWED\", \"AWS_SECRET_ACCESS_KEY\"]",
    );
    let (_, report) = audit_json(&fixture);
    let drift: Vec<&str> = report["skills"][0]["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        drift.contains(&"env AWS_SECRET_ACCESS_KEY is not granted"),
        "{drift:?}"
    );
    let output = talaria(&fixture, &["skills", "grant", "hostile", "--yes"]);
    assert!(
        stdout(&output).contains("+ env AWS_SECRET_ACCESS_KEY"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn revoking_makes_a_skill_pending_again() {
    let fixture = fixture_with_hostile();
    grant(&fixture, "hostile");
    assert_exit(&talaria(&fixture, &["skills", "revoke", "hostile"]), 0);
    assert_exit(&echo(&fixture), 1);
    let output = talaria(&fixture, &["skills", "revoke", "hostile"]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("nothing to revoke"));
    // A wrong name is a mistake to report, not a success.
    let output = talaria(&fixture, &["skills", "revoke", "nosuch"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("no skill named \"nosuch\"")
            && stderr(&output).contains("skills: hostile"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn audit_lists_host_paths_env_presence_and_limits_but_no_secret() {
    let fixture = fixture_with_hostile();
    std::fs::write(
        fixture.root.path().join(".env"),
        "TALARIA_TEST_ALLOWED=sk-very-secret-value\n",
    )
    .unwrap();
    let output = talaria(&fixture, &["skills", "audit"]);
    assert_exit(&output, 1);
    let text = stdout(&output);
    assert!(text.starts_with("hostile  v0.1.0  blake3:"), "{text}");
    assert!(text.contains("pending"), "{text}");
    assert!(
        text.contains(&format!(
            "mounts   ${{workspace}} = {} → /workspace (ro)",
            fixture.workspace.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("env      TALARIA_TEST_ALLOWED (set)"),
        "{text}"
    );
    assert!(text.contains("network  none"), "{text}");
    assert!(
        text.contains("limits   memory 32 MiB, timeout 1000 ms, output 65536 bytes"),
        "{text}"
    );
    assert!(!text.contains("sk-very-secret"), "a secret leaked: {text}");

    let (_, report) = audit_json(&fixture);
    assert_eq!(report["schema"], "talaria.skills.audit/v1");
    let skill = &report["skills"][0];
    for key in [
        "name",
        "version",
        "hash",
        "state",
        "drift",
        "granted_by",
        "granted_at",
        "mounts",
        "env",
        "exec",
        "network",
        "limits",
    ] {
        assert!(skill.get(key).is_some(), "audit JSON lacks {key}: {skill}");
    }
    assert_eq!(
        skill["env"],
        serde_json::json!([{"name": "TALARIA_TEST_ALLOWED", "set": true}])
    );
    assert_eq!(skill["mounts"][0]["access"], "read-only");
    assert_eq!(skill["limits"]["memory_mb"], 32);
    assert!(!report.to_string().contains("sk-very-secret"));
}

#[test]
fn dotenv_values_reach_granted_skills_and_the_environment_wins() {
    let fixture = fixture_with_hostile();
    grant(&fixture, "hostile");
    std::fs::write(
        fixture.root.path().join(".env"),
        "TALARIA_TEST_ALLOWED=from-dotenv\nOTHER=x\n",
    )
    .unwrap();
    let output = talaria(&fixture, &["tool", "call", "hostile.env"]);
    assert_exit(&output, 0);
    assert_eq!(
        stdout(&output),
        "{\"TALARIA_TEST_ALLOWED\":\"from-dotenv\"}\n"
    );
}

#[test]
fn install_is_transactional() {
    let fixture = Fixture::new();
    let source = skill_source("tests/skills/hostile");
    let output = talaria(&fixture, &["skills", "install", source.to_str().unwrap()]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("installed hostile v0.1.0; skill hostile v0.1.0 is pending"),
        "{}",
        stdout(&output)
    );
    let installed = fixture.skills_dir.join("hostile");
    assert!(installed.join("hostile.wasm").is_file());
    assert!(!installed.join("target").exists());
    grant(&fixture, "hostile");
    assert_exit(&echo(&fixture), 0);

    // A broken revision (valid manifest, malformed component) is refused and
    // the installed one keeps working.
    let broken = fixture.root.path().join("upload/hostile");
    std::fs::create_dir_all(&broken).unwrap();
    let manifest = std::fs::read_to_string(source.join("skill.toml")).unwrap();
    std::fs::write(
        broken.join("skill.toml"),
        manifest.replace("0.1.0", "0.2.0"),
    )
    .unwrap();
    std::fs::write(broken.join("hostile.wasm"), b"not wasm").unwrap();
    let output = talaria(&fixture, &["skills", "install", broken.to_str().unwrap()]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("is not a valid WebAssembly component"),
        "{}",
        stderr(&output)
    );
    assert_exit(&echo(&fixture), 0);
    assert!(
        std::fs::read_to_string(installed.join("skill.toml"))
            .unwrap()
            .contains("version = \"0.1.0\"")
    );
    assert!(!fixture.skills_dir.join(".staging/hostile").exists());

    // A valid new revision replaces the old one and drifts from its grant.
    std::fs::copy(source.join("hostile.wasm"), broken.join("hostile.wasm")).unwrap();
    let output = talaria(&fixture, &["skills", "install", broken.to_str().unwrap()]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("installed hostile v0.2.0; skill hostile v0.2.0 is drifted"),
        "{}",
        stdout(&output)
    );
    assert_exit(&echo(&fixture), 1);

    // A folder that is not a skill is a usage error.
    let output = talaria(
        &fixture,
        &[
            "skills",
            "install",
            fixture.root.path().join("nowhere").to_str().unwrap(),
        ],
    );
    assert_exit(&output, 2);
}

#[test]
fn a_second_writer_is_refused_naming_the_holder() {
    let fixture = fixture_with_hostile();
    // Bootstrap the home first, then hold its lock as another writer would.
    assert_exit(&talaria(&fixture, &["skills", "list"]), 0);
    let lock =
        WriterLock::acquire(&fixture.root.path().join("talaria.lock"), "talaria gateway").unwrap();
    let output = talaria(&fixture, &["skills", "grant", "hostile", "--yes"]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    assert!(message.contains("`talaria gateway`"), "{message}");
    // Readers are not blocked.
    assert_exit(&talaria(&fixture, &["skills", "list"]), 0);
    assert_exit(&talaria(&fixture, &["skills", "audit"]), 1);
    drop(lock);
    assert_exit(
        &talaria(&fixture, &["skills", "grant", "hostile", "--yes"]),
        0,
    );
}

#[test]
fn the_home_is_bootstrapped_and_config_show_names_sources() {
    let fixture = Fixture::new();
    let home = fixture.root.path();
    let output = talaria(&fixture, &["config", "show"]);
    assert_exit(&output, 0);
    for file in ["config.toml", ".env", "SOUL.md"] {
        assert!(home.join(file).is_file(), "{file} seeded");
    }
    for dir in [
        "memories",
        "skills",
        "skill-data",
        "workspace",
        "home",
        "cron",
        "hooks",
        "logs",
        "cache",
    ] {
        assert!(home.join(dir).is_dir(), "{dir} created");
    }
    let text = stdout(&output);
    assert!(text.contains("(env TALARIA_WORKSPACE)"), "{text}");
    assert!(text.contains("log.level"), "{text}");

    std::fs::write(home.join("config.toml"), "[sandbox]\nmax_instances = 8\n").unwrap();
    let output = talaria(&fixture, &["config", "show", "--json"]);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let setting = report["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "sandbox.max_instances")
        .unwrap()
        .clone();
    assert_eq!(setting["value"], "8");
    assert_eq!(setting["source"], "config.toml");

    std::fs::write(home.join("config.toml"), "[sandbox]\nmax_instance = 8\n").unwrap();
    let output = talaria(&fixture, &["config", "show"]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(
        message.contains("config.toml: key `sandbox.max_instance`: unknown field"),
        "{message}"
    );

    let output = talaria(&fixture, &["config", "path"]);
    assert_eq!(
        stdout(&output).trim(),
        Path::new(home).join("config.toml").to_str().unwrap()
    );
}

#[test]
fn bundled_skills_work_in_a_fresh_home_and_reset_restores_them() {
    let fixture = Fixture::new();
    let shipped = repo_root().join("skills");
    let bundled = [("TALARIA_BUNDLED_SKILLS", shipped.as_path())];
    let run = |args: &[&str]| talaria_with(&fixture, &bundled, args, None);

    let output = run(&[
        "tool",
        "call",
        "text.count",
        r#"{"text": "out of the box"}"#,
    ]);
    assert_exit(&output, 0);
    assert_eq!(
        stdout(&output),
        "{\"bytes\":14,\"characters\":14,\"lines\":1,\"words\":4}\n"
    );
    let output = run(&["skills", "audit", "--json"]);
    assert_exit(&output, 0);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let granted_by: Vec<&str> = report["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["granted_by"].as_str().unwrap())
        .collect();
    assert_eq!(granted_by, ["bundled", "bundled", "bundled", "bundled"]);
    // The bundled web skill is granted no destination: the operator names
    // them.
    let web = report["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .unwrap();
    assert_eq!(web["network"], serde_json::json!([]));
    assert_eq!(web["secrets"][0]["granted_hosts"], serde_json::json!([]));

    // A local edit is kept (and drifts), reset restores the shipped copy.
    let text = edit_manifest(&fixture, "text", "timeout_ms = 5000", "timeout_ms = 4000");
    let manifest = fixture.skills_dir.join("text/skill.toml");
    assert_exit(&run(&["skills", "audit"]), 1);
    assert_exit(&run(&["skills", "reset", "text"]), 0);
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), text);
    assert_exit(&run(&["skills", "audit"]), 0);
    // Without bundled skills configured, reset says how to configure them.
    let output = talaria(&fixture, &["skills", "reset", "text"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("TALARIA_BUNDLED_SKILLS"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn doctor_explains_a_broken_home() {
    let fixture = fixture_with_hostile();
    let home = fixture.root.path();
    fixture.install(&skill_source("tests/skills/echo"), "echo", None);
    grant(&fixture, "echo");
    // Break it in every way doctor knows about.
    set_mode(home, 0o755);
    std::fs::set_permissions(
        home.join(".env"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(
        home.join("talaria.lock"),
        "pid=999999999\ncommand=talaria gateway\n",
    )
    .unwrap();
    std::fs::write(fixture.skills_dir.join("echo/echo.wasm"), b"garbage").unwrap();
    let foreign = home.join("workspace/made-by-root.txt");
    std::fs::write(&foreign, "x").unwrap();
    let running_as_root = rustix::process::geteuid().is_root();
    if running_as_root {
        // As root the test can hand a file to another user, as a stray
        // `docker exec` would.
        std::os::unix::fs::chown(&foreign, Some(54321), Some(54321)).unwrap();
    }

    let output = talaria(&fixture, &["doctor", "--json"]);
    assert_exit(&output, 1);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let find = |check: &str, severity: &str| {
        findings
            .iter()
            .filter(|f| f["check"] == check && f["severity"] == severity)
            .map(|f| {
                format!(
                    "{} | fix: {}",
                    f["message"].as_str().unwrap(),
                    f["fix"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
    };
    let env = find(".env", "problem");
    assert!(env[0].contains("fix: chmod 600"), "{env:?}");
    let lock = find("lock", "warning");
    assert!(
        lock[0].contains("cleared the record of pid 999999999"),
        "{lock:?}"
    );
    assert!(
        std::fs::read_to_string(home.join("talaria.lock"))
            .unwrap()
            .is_empty()
    );
    let pending = find("skills", "warning");
    assert!(
        pending
            .iter()
            .any(|m| m.contains("skill hostile v0.1.0 is pending")
                && m.contains(&format!(
                    "talaria --home {} skills grant hostile",
                    home.display()
                ))),
        "{pending:?}"
    );
    let components = find("components", "problem");
    assert!(
        components[0].contains("skill echo v0.1.0")
            && components[0].contains("not a valid WebAssembly component"),
        "{components:?}"
    );
    let home_problems = find("home", "problem");
    assert!(
        home_problems[0].contains("is mode 755: other users can enter it")
            && home_problems[0].ends_with(&format!("fix: chmod 700 {}", home.display())),
        "{home_problems:?}"
    );
    if running_as_root {
        assert!(
            home_problems[1].contains("made-by-root.txt"),
            "{home_problems:?}"
        );
        let uid = rustix::process::geteuid().as_raw();
        assert!(
            home_problems[1].ends_with(&format!(
                "fix: chown -h {uid}:{} {}",
                rustix::process::getegid().as_raw(),
                foreign.display()
            )),
            "{home_problems:?}"
        );
    }

    // An invalid config is named with its key; doctor still runs.
    std::fs::write(home.join("config.toml"), "[log]\nlevle = \"x\"\n").unwrap();
    let output = talaria(&fixture, &["doctor"]);
    assert_exit(&output, 1);
    let text = stdout(&output);
    assert!(text.contains("PROBLEM  config"), "{text}");
    assert!(text.contains("key `log.levle`"), "{text}");

    // A healthy home passes.
    let healthy = Fixture::new();
    assert_exit(&talaria(&healthy, &["skills", "list"]), 0);
    // A temporary directory is made 0755 under the usual umask.
    set_mode(healthy.root.path(), 0o700);
    let output = talaria(&healthy, &["doctor"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("0 problem(s)"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_workspace_that_contains_the_home_is_refused() {
    let fixture = Fixture::new();
    let workspace = fixture.root.path().to_str().unwrap();
    let output = talaria(&fixture, &["--workspace", workspace, "skills", "list"]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("overlaps the data home"),
        "{}",
        stderr(&output)
    );
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// `talaria` started through a shell with `umask 022`, the permissive
/// default of most systems, and a model at `model_url`.
fn spawn_with_umask_022(fixture: &Fixture, model_url: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new("/bin/sh")
        .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_talaria"))
        .args(args)
        .env_clear()
        .env("TALARIA_HOME", fixture.root.path())
        .env("TALARIA_SKILLS_DIR", &fixture.skills_dir)
        .env("TALARIA_WORKSPACE", &fixture.workspace)
        .env("TALARIA_MODEL_BASE_URL", model_url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Accept one model request on `listener` and read it whole, leaving the
/// asking process waiting for the answer. Fails if `child` exits first.
fn accept_model_request(
    listener: &std::net::TcpListener,
    child: &mut std::process::Child,
) -> std::net::TcpStream {
    use std::io::{BufRead, Read};
    listener.set_nonblocking(true).unwrap();
    let started = std::time::Instant::now();
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("talaria exited ({status}) before asking the model");
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(60),
                    "talaria never asked the model"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(error) => panic!("{error}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    reader.read_exact(&mut vec![0; length]).unwrap();
    stream
}

fn answer(mut stream: std::net::TcpStream, text: &str) {
    use std::io::Write;
    let body = serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}).to_string();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
}

fn findings(fixture: &Fixture) -> (i32, Vec<Value>) {
    let output = talaria(fixture, &["doctor", "--json"]);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    (
        output.status.code().unwrap(),
        report["findings"].as_array().unwrap().clone(),
    )
}

fn not_ok(findings: &[Value]) -> Vec<(String, String)> {
    findings
        .iter()
        .filter(|f| f["severity"] != "ok")
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_owned(),
                f["fix"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_session_database_is_private_in_a_home_others_can_enter() {
    let fixture = Fixture::new();
    let home = fixture.root.path();
    // A home made beforehand by hand or by an image, with the usual modes.
    set_mode(home, 0o755);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let model_url = format!("http://{}/v1", listener.local_addr().unwrap());
    // A home that chats has its model configured (doctor warns otherwise).
    let model = format!("[model]\nbase_url = \"{model_url}\"\n");
    std::fs::write(home.join("config.toml"), model).unwrap();
    let mut child = spawn_with_umask_022(&fixture, &model_url, &["chat", "-q", "my secret"]);
    // While talaria waits for the model, the question is stored and SQLite
    // has its -wal and -shm open beside the database.
    let request = accept_model_request(&listener, &mut child);
    for name in ["state.db", "state.db-wal", "state.db-shm"] {
        assert_eq!(mode(&home.join(name)), 0o600, "{name}");
    }
    answer(request, "kept");
    assert_exit(&child.wait_with_output().unwrap(), 0);
    assert_eq!(mode(&home.join("state.db")), 0o600);

    // doctor names the open home and a database left readable, with the
    // exact commands.
    set_mode(&home.join("state.db"), 0o644);
    let (code, found) = findings(&fixture);
    assert_eq!(code, 1);
    let db = home.join("state.db");
    assert_eq!(
        not_ok(&found),
        vec![
            ("home".to_owned(), format!("chmod 700 {}", home.display())),
            ("database".to_owned(), format!("chmod 600 {}", db.display())),
        ]
    );
    // The next start makes an older, readable database private again.
    let output = spawn_with_umask_022(&fixture, &model_url, &["sessions", "list"])
        .wait_with_output()
        .unwrap();
    assert_exit(&output, 0);
    assert_eq!(mode(&db), 0o600);
    set_mode(home, 0o700);
    let (code, found) = findings(&fixture);
    assert_eq!((code, not_ok(&found)), (0, vec![]));
}

#[test]
fn doctor_flags_links_out_of_the_home_and_never_chowns_through_one() {
    let fixture = Fixture::new();
    let home = fixture.root.path();
    set_mode(home, 0o700);
    assert_exit(&talaria(&fixture, &["skills", "list"]), 0);
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("system-file");
    std::fs::write(&target, "not the service's").unwrap();
    let link = home.join("workspace/planted");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let running_as_root = rustix::process::geteuid().is_root();
    if running_as_root {
        // The planted link belongs to another user, so doctor suggests
        // handing it back; the file it points to belongs to a third.
        std::os::unix::fs::lchown(&link, Some(54321), Some(54321)).unwrap();
        std::os::unix::fs::chown(&target, Some(54322), Some(54322)).unwrap();
    }

    let (_, found) = findings(&fixture);
    let links: Vec<&Value> = found.iter().filter(|f| f["check"] == "links").collect();
    assert_eq!(links.len(), 1, "{found:?}");
    assert_eq!(links[0]["severity"], "warning");
    let message = links[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&link.display().to_string())
            && message.contains(&target.display().to_string()),
        "{message}"
    );
    assert_eq!(
        links[0]["fix"],
        format!(
            "remove the link unless you made it on purpose: rm {}",
            link.display()
        )
    );

    if running_as_root {
        let chown = found
            .iter()
            .find(|f| f["check"] == "home" && f["severity"] == "problem")
            .unwrap()["fix"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(chown.starts_with("chown -h 0:0 "), "{chown}");
        // Running the suggested command hands the link back and leaves the
        // file outside the home alone.
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", &chown])
            .status()
            .unwrap();
        assert!(status.success());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::symlink_metadata(&link).unwrap().uid(), 0);
        assert_eq!(std::fs::metadata(&target).unwrap().uid(), 54322);
    }
}
