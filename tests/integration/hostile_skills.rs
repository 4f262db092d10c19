//! A purpose-built hostile skill (`tests/skills/hostile`) tries to escape its
//! sandbox. Every case checks the denial AND that the host keeps working
//! afterwards (the same loaded skill still answers a harmless call).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{Fixture, skill_source};
use serde_json::json;
use talaria_runtime::sandbox::{
    CacheOutcome, LoadedSkill, PoolSize, Sandbox, SandboxConfig, ToolCallError, ToolCallErrorKind,
};
use talaria_runtime::skill::Skill;
use talaria_runtime::skill::manifest::DEFAULT_TIMEOUT_MS;

struct Hostile {
    fixture: Fixture,
    skill: LoadedSkill,
    // Keeps the engine alive for `skill`.
    _sandbox: talaria_runtime::sandbox::Sandbox,
}

impl Hostile {
    async fn new() -> Self {
        Self::from_fixture(Fixture::new(), None).await
    }

    async fn with_manifest(manifest: &str) -> Self {
        Self::from_fixture(Fixture::new(), Some(manifest)).await
    }

    async fn from_fixture(fixture: Fixture, manifest: Option<&str>) -> Self {
        fixture.install(&skill_source("tests/skills/hostile"), "hostile", manifest);
        let sandbox = fixture.sandbox();
        let skill = fixture.load(&sandbox, "hostile").await;
        Self {
            fixture,
            skill,
            _sandbox: sandbox,
        }
    }

    async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Value,
    ) -> Result<String, ToolCallError> {
        self.skill
            .call(tool, &arguments.to_string())
            .await
            .map(|output| output.result)
    }

    /// The call must fail; returns the error text.
    async fn denied(&self, tool: &str, arguments: serde_json::Value) -> String {
        let outcome = self.call(tool, arguments.clone()).await;
        let error = match outcome {
            Ok(result) => panic!("{tool}({arguments}) must be refused, but returned {result:?}"),
            Err(error) => error,
        };
        self.assert_still_working().await;
        error.to_string()
    }

    async fn assert_still_working(&self) {
        let echoed = self.call("echo", json!({"text": "still here"})).await;
        assert_eq!(
            echoed.unwrap(),
            "still here",
            "the skill must keep working after a refusal"
        );
    }

    fn workspace(&self) -> &Path {
        &self.fixture.workspace
    }
}

fn assert_no_secret(error: &str) {
    assert!(!error.contains("TOP SECRET"), "the secret leaked: {error}");
}

#[tokio::test]
async fn dot_dot_traversal_is_refused() {
    let hostile = Hostile::new().await;
    for path in [
        "/workspace/../outside/secret.txt",
        "/workspace/../../../../etc/passwd",
        "../outside/secret.txt",
        "/workspace/./../outside",
    ] {
        let error = hostile.denied("read", json!({ "path": path })).await;
        assert_no_secret(&error);
    }
    let error = hostile
        .denied("list_dir", json!({"path": "/workspace/.."}))
        .await;
    assert!(!error.contains("outside"), "{error}");
}

#[tokio::test]
async fn absolute_paths_outside_the_mounts_are_refused() {
    let hostile = Hostile::new().await;
    let host_secret = hostile.fixture.outside.join("secret.txt");
    for path in [
        host_secret.to_str().unwrap(),
        "/etc/passwd",
        "/proc/self/environ",
        "/",
    ] {
        let error = hostile.denied("read", json!({ "path": path })).await;
        assert_no_secret(&error);
    }
    hostile.denied("list_dir", json!({"path": "/"})).await;
    hostile.denied("list_dir", json!({"path": "/etc"})).await;
}

#[tokio::test]
async fn symlinks_pointing_outside_a_mount_are_refused() {
    let hostile = Hostile::new().await;
    let outside = &hostile.fixture.outside;
    let workspace = hostile.workspace();
    std::os::unix::fs::symlink(outside.join("secret.txt"), workspace.join("file-link")).unwrap();
    std::os::unix::fs::symlink(outside, workspace.join("dir-link")).unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", workspace.join("relative-link")).unwrap();
    std::os::unix::fs::symlink("loop-b", workspace.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", workspace.join("loop-b")).unwrap();
    // A link that stays inside the mount is followed: the refusals below are
    // about where links point, not about links as such.
    std::os::unix::fs::symlink("notes.txt", workspace.join("inner-link")).unwrap();
    assert_eq!(
        hostile
            .call("read", json!({"path": "/workspace/inner-link"}))
            .await
            .unwrap(),
        "workspace notes\n"
    );

    for path in [
        "/workspace/file-link",
        "/workspace/relative-link",
        "/workspace/dir-link/secret.txt",
        "/workspace/dir-link/",
        "/workspace/file-link/",
        "/workspace/loop-a",
        "/workspace/loop-a/",
    ] {
        let error = hostile.denied("read", json!({ "path": path })).await;
        assert_no_secret(&error);
    }
    hostile
        .denied("list_dir", json!({"path": "/workspace/dir-link/"}))
        .await;
    hostile
        .denied("list_dir", json!({"path": "/workspace/dir-link"}))
        .await;
    hostile
        .denied("list_dir", json!({"path": "/workspace/loop-a/"}))
        .await;
}

#[tokio::test]
async fn read_only_mounts_refuse_every_kind_of_write() {
    let hostile = Hostile::new().await;
    let notes = hostile.workspace().join("notes.txt");
    let cases = [
        (
            "write",
            json!({"path": "/workspace/notes.txt", "content": "overwritten"}),
        ),
        (
            "write",
            json!({"path": "/workspace/new.txt", "content": "new"}),
        ),
        (
            "append",
            json!({"path": "/workspace/notes.txt", "content": "more"}),
        ),
        ("create", json!({"path": "/workspace/created.txt"})),
        ("truncate", json!({"path": "/workspace/notes.txt"})),
        ("set_len_zero", json!({"path": "/workspace/notes.txt"})),
        ("remove", json!({"path": "/workspace/notes.txt"})),
        ("make_dir", json!({"path": "/workspace/subdir"})),
        (
            "rename",
            json!({"from": "/workspace/notes.txt", "to": "/workspace/renamed.txt"}),
        ),
        (
            "hard_link",
            json!({"from": "/workspace/notes.txt", "to": "/workspace/linked.txt"}),
        ),
    ];
    for (tool, arguments) in cases {
        hostile.denied(tool, arguments).await;
        assert_eq!(
            std::fs::read_to_string(&notes).unwrap(),
            "workspace notes\n",
            "after {tool}"
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(hostile.workspace())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["notes.txt"],
        "nothing may appear in a read-only mount"
    );
}

#[tokio::test]
async fn files_cannot_move_from_a_read_only_mount_into_a_read_write_one() {
    let hostile = Hostile::new().await;
    // The read-write mount works...
    assert_eq!(
        hostile
            .call("write", json!({"path": "/data/own.txt", "content": "mine"}))
            .await
            .unwrap(),
        "written"
    );
    // ...but nothing can be moved or linked out of the read-only one.
    hostile
        .denied(
            "rename",
            json!({"from": "/workspace/notes.txt", "to": "/data/stolen.txt"}),
        )
        .await;
    hostile
        .denied(
            "hard_link",
            json!({"from": "/workspace/notes.txt", "to": "/data/linked.txt"}),
        )
        .await;
    assert!(hostile.workspace().join("notes.txt").is_file());
    let data = hostile.fixture.skill_data.join("hostile");
    assert!(!data.join("stolen.txt").exists());
    assert!(!data.join("linked.txt").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("own.txt")).unwrap(),
        "mine"
    );
}

#[tokio::test]
async fn the_guest_sees_exactly_the_allowlisted_environment() {
    let fixture = Fixture::new();
    fixture.install(&skill_source("tests/skills/hostile"), "hostile", None);
    let sandbox = fixture.sandbox();
    let skill = fixture
        .load(&sandbox, "hostile")
        .await
        .with_env(|name| match name {
            "TALARIA_TEST_ALLOWED" => Some("visible".into()),
            "TALARIA_TEST_SECRET" | "HOME" | "PATH" => Some("must not leak".into()),
            _ => None,
        });
    let env = skill.call("env", "{}").await.unwrap().result;
    let env: serde_json::Value = serde_json::from_str(&env).unwrap();
    assert_eq!(env, json!({"TALARIA_TEST_ALLOWED": "visible"}));

    // An allowlisted variable that is not set is simply absent.
    let skill = skill.with_env(|_| None);
    assert_eq!(skill.call("env", "{}").await.unwrap().result, "{}");
    // Nothing from the host process leaks through either.
    let hostile = Hostile::new().await;
    let env = hostile.call("env", json!({})).await.unwrap();
    assert!(!env.contains("PATH"), "{env}");
}

#[tokio::test]
async fn tcp_connections_are_refused() {
    let hostile = Hostile::new().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let error = hostile
        .denied("tcp_connect", json!({ "address": address }))
        .await;
    assert!(
        error.contains("denied") || error.contains("ermission") || error.contains("not"),
        "{error}"
    );
    match listener.accept() {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("the guest reached the listener from {peer}"),
        Err(error) => panic!("unexpected accept error: {error}"),
    }
    hostile
        .denied("tcp_connect", json!({"address": "localhost:80"}))
        .await;
}

/// The error of a call stopped at its wall-time limit, with the time it
/// actually used.
fn assert_timed_out(error: &ToolCallError, limit_ms: u64) -> u64 {
    let ToolCallErrorKind::Timeout {
        limit_ms: reported,
        used_ms,
    } = error.kind
    else {
        panic!("expected a timeout, got {error}");
    };
    assert_eq!(reported, limit_ms);
    assert!(used_ms >= limit_ms, "stopped before its limit: {error}");
    used_ms
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_its_timeout() {
    let hostile = Hostile::new().await;
    let timeout_ms = hostile.skill.capabilities().limits.timeout_ms;
    assert!(
        timeout_ms < DEFAULT_TIMEOUT_MS,
        "the hostile manifest sets a short timeout"
    );
    let started = Instant::now();
    let error = hostile.call("spin", json!({})).await.unwrap_err();
    let elapsed = started.elapsed();
    let used_ms = assert_timed_out(&error, timeout_ms);
    assert!(
        elapsed.as_millis() >= u128::from(timeout_ms),
        "stopped before its timeout: {elapsed:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "skill hostile v0.1.0: tool `spin`: timed out after {used_ms} ms (its limit is {timeout_ms} ms, limits.timeout_ms) and was stopped"
        )
    );
    hostile.assert_still_working().await;
}

#[tokio::test]
async fn wall_time_is_kept_on_the_clock_while_the_machine_is_loaded() {
    // Threads spinning on every core stretch the epoch ticker's sleeps; the
    // limit must still be enforced against the clock, not against ticks.
    let hostile = Hostile::new().await;
    let timeout_ms = hostile.skill.capabilities().limits.timeout_ms;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners: Vec<_> = (0..cores * 4)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let started = Instant::now();
    let error = hostile.call("spin", json!({})).await.unwrap_err();
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().unwrap();
    }
    let used_ms = assert_timed_out(&error, timeout_ms);
    // What the error reports is what was measured, whatever the load.
    assert!(
        u128::from(used_ms) <= elapsed.as_millis(),
        "{used_ms} ms reported, {elapsed:?} measured"
    );
    hostile.assert_still_working().await;
}

#[tokio::test]
async fn a_guest_blocked_in_a_host_call_is_stopped_at_its_timeout() {
    let hostile = Hostile::new().await;
    let timeout_ms = hostile.skill.capabilities().limits.timeout_ms;
    let error = hostile
        .call("sleep", json!({"millis": 600_000}))
        .await
        .unwrap_err();
    assert_timed_out(&error, timeout_ms);
    hostile.assert_still_working().await;
}

#[tokio::test]
async fn memory_growth_past_the_limit_is_stopped() {
    let hostile = Hostile::new().await;
    // The manifest allows 32 MiB.
    let error = hostile
        .call("grow_memory", json!({"megabytes": 64}))
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind, ToolCallErrorKind::MemoryLimit(_)),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("memory limit of 32 MiB exceeded"),
        "{error}"
    );
    hostile.assert_still_working().await;
    // Within the limit, the same tool works.
    assert_eq!(
        hostile
            .call("grow_memory", json!({"megabytes": 8}))
            .await
            .unwrap(),
        (8 << 20).to_string()
    );
}

#[tokio::test]
async fn deep_recursion_traps_cleanly() {
    let hostile = Hostile::new().await;
    // Small frames exhaust the engine's wasm stack...
    let error = hostile
        .call("recurse_light", json!({"depth": 100_000_000u64}))
        .await
        .unwrap_err();
    assert_eq!(
        error.kind,
        ToolCallErrorKind::Crashed("stack overflow: recursion too deep".into()),
        "{error}"
    );
    hostile.assert_still_working().await;
    // ...large ones exhaust the guest's own stack in linear memory first,
    // which the engine sees as an out-of-bounds access: still reported as
    // what it is.
    let error = hostile
        .call("recurse", json!({"depth": 100_000_000u64}))
        .await
        .unwrap_err();
    assert_eq!(
        error.kind,
        ToolCallErrorKind::Crashed("stack overflow: recursion too deep".into()),
        "{error}"
    );
    hostile.assert_still_working().await;
}

#[tokio::test]
async fn a_hundred_megabytes_of_output_are_capped() {
    // Writing 100 MB through WASI takes longer than the hostile skill's
    // usual one-second budget in a debug build.
    let manifest = std::fs::read_to_string(skill_source("tests/skills/hostile").join("skill.toml"))
        .unwrap()
        .replace("timeout_ms = 1000", "timeout_ms = 60000");
    let hostile = Hostile::with_manifest(&manifest).await;
    let limit = hostile.skill.capabilities().limits.max_output_bytes;
    let bytes: u64 = 100 * 1024 * 1024;
    let started = Instant::now();
    let output = hostile
        .skill
        .call("flood_stdout", &json!({ "bytes": bytes }).to_string())
        .await
        .unwrap();
    assert_eq!(
        output.result,
        bytes.to_string(),
        "the guest wrote everything"
    );
    assert_eq!(
        output.stdout.len() as u64,
        limit,
        "the host kept only the bound"
    );
    assert_eq!(output.stdout_dropped, bytes - limit);
    eprintln!("100 MB of stdout took {:?}", started.elapsed());

    let error = hostile
        .call("big_result", json!({"bytes": limit + 1}))
        .await
        .unwrap_err();
    assert_eq!(
        error.kind,
        ToolCallErrorKind::OutputLimit {
            actual: limit as usize + 1,
            limit
        }
    );
    hostile.assert_still_working().await;
    assert_eq!(
        hostile
            .call("big_result", json!({"bytes": limit}))
            .await
            .unwrap()
            .len() as u64,
        limit
    );
}

#[tokio::test]
async fn a_panic_becomes_a_tool_error() {
    let hostile = Hostile::new().await;
    let error = hostile
        .call(
            "panic",
            json!({"text": "the skill gave up \u{1b}[31min red\u{1b}[0m"}),
        )
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error.kind, ToolCallErrorKind::Crashed(_)),
        "{message}"
    );
    assert!(
        message.starts_with("skill hostile v0.1.0: tool `panic`: crashed: "),
        "{message}"
    );
    assert!(
        message.contains("the skill gave up in red"),
        "the panic message is kept: {message}"
    );
    assert!(
        !message.contains('\u{1b}'),
        "escape sequences are stripped: {message:?}"
    );
    hostile.assert_still_working().await;
}

#[tokio::test]
async fn guest_text_is_bounded_and_stripped_of_escape_sequences() {
    let hostile = Hostile::new().await;
    let nasty = format!("\u{1b}]0;owned\u{7}\u{1b}[2J{}", "A".repeat(100_000));
    let error = hostile
        .call("fail", json!({ "text": nasty }))
        .await
        .unwrap_err();
    let ToolCallErrorKind::Failed(message) = &error.kind else {
        panic!("expected a tool failure, got {error}");
    };
    assert!(message.len() < 5000, "{} bytes", message.len());
    assert!(message.starts_with("AAAA"), "{message:.40}");
    assert!(message.ends_with("[…truncated]"));
    // Logging the same text must not disturb the host either.
    assert_eq!(
        hostile.call("log", json!({ "text": nasty })).await.unwrap(),
        "logged"
    );
    hostile.assert_still_working().await;
}

#[tokio::test]
async fn exec_is_denied_without_a_matching_rule_or_a_backend() {
    let hostile = Hostile::new().await;
    let error = hostile
        .denied("exec", json!({"program": "sh", "args": ["-c", "id"]}))
        .await;
    assert!(
        error.contains("denied: `sh -c id` matches none of this skill's exec rules (it is granted no exec rules)"),
        "{error}"
    );

    // Allowed by its rules, but this sandbox has no backend to send it to.
    let manifest = std::fs::read_to_string(skill_source("tests/skills/hostile").join("skill.toml"))
        .unwrap()
        .replace(
            "env = [\"TALARIA_TEST_ALLOWED\"]",
            "env = [\"TALARIA_TEST_ALLOWED\"]\nexec = [{ program = \"id\" }]",
        );
    let hostile = Hostile::with_manifest(&manifest).await;
    let error = hostile.denied("exec", json!({"program": "id"})).await;
    assert!(
        error.contains("denied: no native backend is configured, so `id` cannot run"),
        "{error}"
    );
    let error = hostile
        .denied("exec", json!({"program": "id", "args": ["-u"]}))
        .await;
    assert!(
        error.contains("matches none of this skill's exec rules (its granted rules are `id`)"),
        "{error}"
    );
}

#[tokio::test]
async fn two_skills_cannot_see_each_others_mounts() {
    let fixture = Fixture::new();
    let source = skill_source("tests/skills/hostile");
    fixture.install(&source, "alpha", None);
    fixture.install(&source, "beta", None);
    let sandbox = fixture.sandbox();
    let alpha = fixture.load(&sandbox, "alpha").await;
    let beta = fixture.load(&sandbox, "beta").await;
    let write = json!({"path": "/data/secret.txt", "content": "TOP SECRET of alpha"}).to_string();
    alpha.call("write", &write).await.unwrap();

    let read = |path: &str| json!({ "path": path }).to_string();
    assert!(beta.call("read", &read("/data/secret.txt")).await.is_err());
    let alpha_data = fixture.skill_data.join("alpha").join("secret.txt");
    assert!(alpha_data.is_file());
    assert!(
        beta.call("read", &read(alpha_data.to_str().unwrap()))
            .await
            .is_err()
    );
    assert!(
        beta.call("read", &read("/data/../alpha/secret.txt"))
            .await
            .is_err()
    );
    assert_eq!(
        beta.call("list_dir", &read("/data")).await.unwrap().result,
        "[]"
    );
    // Alpha still reads its own data.
    assert_eq!(
        alpha
            .call("read", &read("/data/secret.txt"))
            .await
            .unwrap()
            .result,
        "TOP SECRET of alpha"
    );
}

#[tokio::test]
async fn a_malformed_component_is_refused_at_load() {
    let fixture = Fixture::new();
    let dir = fixture.install(&skill_source("tests/skills/hostile"), "hostile", None);
    let sandbox = fixture.sandbox();
    let valid = std::fs::read(dir.join("hostile.wasm")).unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage", b"this is not wasm at all".to_vec()),
        ("empty", Vec::new()),
        ("truncated", valid[..valid.len() / 2].to_vec()),
        // A core module (magic + version 1) is not a component.
        ("core module", b"\0asm\x01\0\0\0".to_vec()),
    ];
    for (case, bytes) in cases {
        std::fs::write(dir.join("hostile.wasm"), &bytes).unwrap();
        let error = fixture
            .try_load(&sandbox, "hostile")
            .await
            .err()
            .unwrap_or_else(|| panic!("{case} loaded"));
        let message = error.to_string();
        assert!(
            message.starts_with("skill hostile v0.1.0: "),
            "{case}: {message}"
        );
        assert!(
            message.contains("is not a valid WebAssembly component"),
            "{case}: {message}"
        );
    }
    // The same sandbox loads the real component afterwards.
    std::fs::write(dir.join("hostile.wasm"), &valid).unwrap();
    let skill = fixture.load(&sandbox, "hostile").await;
    assert_eq!(
        skill
            .call("echo", r#"{"text": "ok"}"#)
            .await
            .unwrap()
            .result,
        "ok"
    );
}

#[tokio::test]
async fn a_component_importing_an_unknown_interface_is_refused_by_name() {
    let fixture = Fixture::new();
    fixture.install(
        &skill_source("tests/skills/unknown-import"),
        "unknown-import",
        None,
    );
    let sandbox = fixture.sandbox();
    let error = fixture
        .try_load(&sandbox, "unknown-import")
        .await
        .err()
        .expect("must not load");
    let message = error.to_string();
    assert!(
        message.starts_with("skill unknown-import v0.1.0: "),
        "{message}"
    );
    assert!(
        message.contains("talaria:skill/vault@0.1.0"),
        "the import is named: {message}"
    );
}

#[tokio::test]
async fn a_component_built_for_another_wit_version_is_refused_naming_both() {
    let fixture = Fixture::new();
    fixture.install(&skill_source("tests/skills/future-api"), "future-api", None);
    let sandbox = fixture.sandbox();
    let message = fixture
        .try_load(&sandbox, "future-api")
        .await
        .err()
        .expect("must not load")
        .to_string();
    assert!(message.contains("talaria:skill@0.2.0"), "{message}");
    assert!(message.contains("talaria:skill@0.1.0"), "{message}");

    // A manifest asking for another API range is refused before compiling.
    let manifest = std::fs::read_to_string(skill_source("tests/skills/hostile").join("skill.toml"))
        .unwrap()
        .replace("api = \"^0.1\"", "api = \"^0.2\"");
    fixture.install(
        &skill_source("tests/skills/hostile"),
        "hostile",
        Some(&manifest),
    );
    let message = fixture
        .try_load(&sandbox, "hostile")
        .await
        .err()
        .expect("must not load")
        .to_string();
    assert_eq!(
        message,
        "skill hostile v0.1.0: skill.toml asks for talaria:skill ^0.2 but this host implements talaria:skill@0.1.0"
    );
}

#[tokio::test]
async fn a_tampered_cache_entry_is_recompiled_not_trusted() {
    let fixture = Fixture::new();
    fixture.install(&skill_source("tests/skills/hostile"), "hostile", None);
    let sandbox = fixture.sandbox();
    let first = fixture.load(&sandbox, "hostile").await;
    assert_eq!(
        first.cache_outcome(),
        CacheOutcome::Compiled {
            rejected_entry: false
        }
    );
    assert_eq!(
        fixture.load(&sandbox, "hostile").await.cache_outcome(),
        CacheOutcome::Hit
    );

    let entries: Vec<_> = std::fs::read_dir(&fixture.cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1);
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&entries[0], &bytes).unwrap();

    let reloaded = fixture.load(&sandbox, "hostile").await;
    assert_eq!(
        reloaded.cache_outcome(),
        CacheOutcome::Compiled {
            rejected_entry: true
        }
    );
    assert_eq!(
        reloaded
            .call("echo", r#"{"text": "fresh"}"#)
            .await
            .unwrap()
            .result,
        "fresh"
    );
    // The bad entry was replaced by a good one.
    assert_eq!(
        fixture.load(&sandbox, "hostile").await.cache_outcome(),
        CacheOutcome::Hit
    );

    // A truncated entry (e.g. a crash mid-write by another tool) too.
    std::fs::write(&entries[0], &bytes[..10]).unwrap();
    assert_eq!(
        fixture.load(&sandbox, "hostile").await.cache_outcome(),
        CacheOutcome::Compiled {
            rejected_entry: true
        }
    );

    // A valid artifact of another component under this component's name,
    // with or without that component's MAC, is refused as well.
    fixture.install(&skill_source("tests/skills/echo"), "echo", None);
    fixture.load(&sandbox, "echo").await;
    let echo_entry = std::fs::read_dir(&fixture.cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm") && *p != entries[0])
        .unwrap();
    let mac = |entry: &Path| PathBuf::from(format!("{}.mac", entry.display()));
    for with_mac in [false, true] {
        std::fs::copy(&echo_entry, &entries[0]).unwrap();
        if with_mac {
            std::fs::copy(mac(&echo_entry), mac(&entries[0])).unwrap();
        }
        let swapped = fixture.load(&sandbox, "hostile").await;
        assert_eq!(
            swapped.cache_outcome(),
            CacheOutcome::Compiled {
                rejected_entry: true
            },
            "with_mac: {with_mac}"
        );
        assert_eq!(
            swapped.tools(),
            first.tools(),
            "the hostile skill's own tools"
        );
    }
}

#[tokio::test]
async fn a_cache_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new();
    fixture.install(&skill_source("tests/skills/echo"), "echo", None);
    std::fs::create_dir_all(&fixture.cache_dir).unwrap();
    std::fs::set_permissions(&fixture.cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let sandbox = fixture.sandbox();
    let echo = fixture.load(&sandbox, "echo").await;
    assert_eq!(echo.cache_outcome(), CacheOutcome::Disabled);
    assert_eq!(
        echo.call("echo", r#"{"text": "uncached"}"#)
            .await
            .unwrap()
            .result,
        "uncached"
    );
    assert_eq!(std::fs::read_dir(&fixture.cache_dir).unwrap().count(), 0);
}

#[tokio::test]
async fn each_call_gets_a_fresh_instance() {
    let hostile = Hostile::new().await;
    // Memory grown in one call is gone in the next: two calls of 24 MiB fit
    // a 32 MiB limit only if nothing is carried over.
    for _ in 0..3 {
        hostile
            .call("grow_memory", json!({"megabytes": 24}))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn unknown_tools_and_bad_arguments_are_explained() {
    let hostile = Hostile::new().await;
    let error = hostile.call("format_disk", json!({})).await.unwrap_err();
    assert!(
        matches!(error.kind, ToolCallErrorKind::UnknownTool(_)),
        "{error}"
    );
    let error = hostile.call("read", json!({"path": 42})).await.unwrap_err();
    assert_eq!(
        error.kind,
        ToolCallErrorKind::InvalidArguments(
            "invalid type: integer `42`, expected a string at line 1 column 10".into()
        )
    );
}

// What runs is what was granted; limits that hold under load.

/// Tracks the largest heap allocation made on the current thread while
/// armed, so a test can tell whether the host copied something big.
struct TrackingAllocator;

thread_local! {
    static LARGEST_ALLOCATION: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

fn note_allocation(size: usize) {
    let _ = LARGEST_ALLOCATION.try_with(|largest| {
        if let Some(max) = largest.get()
            && size > max
        {
            largest.set(Some(size));
        }
    });
}

// SAFETY: defers every operation to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

fn hostile_manifest(edit: impl Fn(String) -> String) -> String {
    edit(std::fs::read_to_string(skill_source("tests/skills/hostile").join("skill.toml")).unwrap())
}

#[tokio::test]
async fn the_component_compiled_is_the_one_whose_hash_was_checked() {
    let fixture = Fixture::new();
    let dir = fixture.install(&skill_source("tests/skills/hostile"), "hostile", None);
    // The grant is checked against this read of the skill...
    let skill = Skill::load(&dir).unwrap();
    // ...and someone who can write the folder swaps the component right after.
    std::fs::copy(
        skill_source("tests/skills/echo").join("echo.wasm"),
        dir.join("hostile.wasm"),
    )
    .unwrap();
    let sandbox = fixture.sandbox();
    let capabilities =
        talaria_runtime::skill::capabilities::as_requested(&skill, &fixture.roots()).unwrap();
    let loaded = sandbox
        .load(skill.component_source().unwrap().unwrap(), capabilities)
        .await
        .unwrap();
    assert!(
        loaded.tools().iter().any(|tool| tool.name == "spin"),
        "the checked (hostile) component runs, not the one swapped in: {:?}",
        loaded.tools().iter().map(|t| &t.name).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_call_sees_the_mount_held_since_load_not_a_folder_swapped_in() {
    let hostile = Hostile::new().await;
    let workspace = hostile.workspace().to_owned();
    // A reinstall or a rename during a long chat puts another folder there.
    std::fs::rename(&workspace, workspace.with_extension("old")).unwrap();
    std::fs::create_dir(&workspace).unwrap();
    std::fs::write(workspace.join("notes.txt"), "swapped in\n").unwrap();
    assert_eq!(
        hostile
            .call("read", json!({"path": "/workspace/notes.txt"}))
            .await
            .unwrap(),
        "workspace notes\n"
    );
}

#[tokio::test]
async fn a_skill_mounting_its_folder_sees_exactly_the_files_its_hash_covers() {
    let manifest = hostile_manifest(|m| {
        m.replace(
            "  { source = \"${skill_data}\", guest = \"/data\", access = \"read-write\" },",
            "  { source = \"${skill_data}\", guest = \"/data\", access = \"read-write\" },\n  { source = \"${skill_dir}\", guest = \"/skill\", access = \"read-only\" },",
        )
    });
    assert!(manifest.contains("${skill_dir}"));
    let fixture = Fixture::new();
    let dir = fixture.install(
        &skill_source("tests/skills/hostile"),
        "hostile",
        Some(&manifest),
    );
    std::fs::write(dir.join("data.txt"), "granted data").unwrap();
    std::fs::write(dir.join(".hidden"), "not part of the skill").unwrap();
    std::fs::create_dir(dir.join("target")).unwrap();
    std::fs::write(dir.join("target/build.log"), "build output").unwrap();
    let sandbox = fixture.sandbox();
    let hostile = fixture.load(&sandbox, "hostile").await;
    // Files changed or added after the grant are not what the guest sees.
    std::fs::write(dir.join("data.txt"), "changed after the grant").unwrap();
    std::fs::write(dir.join("late.txt"), "added after the grant").unwrap();
    let listed = hostile
        .call("list_dir", r#"{"path": "/skill"}"#)
        .await
        .unwrap()
        .result;
    assert_eq!(
        listed, r#"["data.txt","hostile.wasm","skill.toml"]"#,
        "no hidden files, no build output, nothing added later"
    );
    assert_eq!(
        hostile
            .call("read", r#"{"path": "/skill/data.txt"}"#)
            .await
            .unwrap()
            .result,
        "granted data"
    );
}

#[tokio::test]
async fn too_many_open_files_stop_the_call_not_the_host() {
    let fixture = Fixture::new();
    fixture.install(&skill_source("tests/skills/hostile"), "hostile", None);
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir: Some(fixture.cache_dir.clone()),
        max_open_handles: 64,
        ..SandboxConfig::default()
    })
    .unwrap();
    let hostile = fixture.load(&sandbox, "hostile").await;
    let error = hostile
        .call(
            "open_many",
            r#"{"path": "/workspace/notes.txt", "count": 100000}"#,
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.kind,
        ToolCallErrorKind::TooManyOpenFiles { limit: 64 },
        "{error}"
    );
    assert!(error.to_string().contains("too many open files"), "{error}");
    // Within the bound, the same tool works, and so does everything else.
    assert_eq!(
        hostile
            .call(
                "open_many",
                r#"{"path": "/workspace/notes.txt", "count": 20}"#
            )
            .await
            .unwrap()
            .result,
        "20"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_instance_pool_wait_for_a_slot() {
    let fixture = Fixture::new();
    fixture.install(&skill_source("tests/skills/hostile"), "hostile", None);
    let quick = hostile_manifest(|m| m.replace("timeout_ms = 1000", "timeout_ms = 400"));
    fixture.install(&skill_source("tests/skills/hostile"), "quick", Some(&quick));
    let slow = hostile_manifest(|m| m.replace("timeout_ms = 1000", "timeout_ms = 10000"));
    fixture.install(&skill_source("tests/skills/hostile"), "slow", Some(&slow));
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir: Some(fixture.cache_dir.clone()),
        pool: PoolSize {
            concurrent_instances: 2,
        },
        ..SandboxConfig::default()
    })
    .unwrap();
    let hostile = std::sync::Arc::new(fixture.load(&sandbox, "hostile").await);

    // Six calls of 100 ms on two slots: they queue, and all succeed.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let hostile = std::sync::Arc::clone(&hostile);
        calls.spawn(async move { hostile.call("sleep", r#"{"millis": 100}"#).await });
    }
    while let Some(outcome) = calls.join_next().await {
        let output = outcome.unwrap().unwrap();
        assert_eq!(output.result, "slept");
    }

    // Both slots held for seconds: a call with a 400 ms budget gives up and
    // says the host was busy, not that the skill crashed.
    let slow = std::sync::Arc::new(fixture.load(&sandbox, "slow").await);
    let quick = fixture.load(&sandbox, "quick").await;
    let mut holders = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let slow = std::sync::Arc::clone(&slow);
        holders.spawn(async move { slow.call("sleep", r#"{"millis": 3000}"#).await });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let error = quick.call("echo", r#"{"text": "hi"}"#).await.unwrap_err();
    let ToolCallErrorKind::Busy { slots, waited_ms } = error.kind else {
        panic!("expected the host to be busy, got {error}");
    };
    assert_eq!(slots, 2);
    assert!(waited_ms >= 400, "{waited_ms}");
    assert!(error.to_string().contains("the host is busy"), "{error}");
    holders.abort_all();
}

#[tokio::test]
async fn an_oversized_result_is_refused_before_the_host_copies_it() {
    let manifest = hostile_manifest(|m| {
        m.replace("memory_mb = 32", "memory_mb = 256")
            .replace("timeout_ms = 1000", "timeout_ms = 60000")
    });
    let hostile = Hostile::with_manifest(&manifest).await;
    let limit = hostile.skill.capabilities().limits.max_output_bytes;
    let bytes: usize = 100 << 20;
    LARGEST_ALLOCATION.with(|largest| largest.set(Some(0)));
    let error = hostile
        .call("big_result", json!({ "bytes": bytes }))
        .await
        .unwrap_err();
    let largest = LARGEST_ALLOCATION.with(|largest| largest.replace(None).unwrap());
    assert_eq!(
        error.kind,
        ToolCallErrorKind::OutputLimit {
            actual: bytes,
            limit
        }
    );
    // The 100 MiB stayed in the guest's memory; the host allocated nothing
    // of that order.
    assert!(
        largest < 8 << 20,
        "the host allocated {largest} bytes at once for a refused result"
    );
    hostile.assert_still_working().await;
}

#[tokio::test]
async fn the_data_directory_quota_stops_a_skill_filling_it() {
    let manifest =
        hostile_manifest(|m| m.replace("timeout_ms = 1000", "timeout_ms = 60000\ndata_mb = 1"));
    assert!(manifest.contains("data_mb = 1"));
    let hostile = Hostile::with_manifest(&manifest).await;
    let error = hostile
        .call("fill", json!({"path": "/data/big", "megabytes": 256}))
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind, ToolCallErrorKind::DataQuota { limit_mb: 1, .. }),
        "{error}"
    );
    let data = hostile.fixture.skill_data.join("hostile");
    let used = talaria_runtime::sandbox::data_usage(&data);
    assert!(
        used < 128 << 20,
        "stopped long before writing 256 MiB: {used} bytes"
    );
    // While over its quota, the skill does not run at all...
    let refused = hostile
        .call("echo", json!({"text": "hi"}))
        .await
        .unwrap_err();
    assert!(
        matches!(refused.kind, ToolCallErrorKind::DataQuota { .. }),
        "{refused}"
    );
    // ...until the space is freed.
    std::fs::remove_file(data.join("big")).unwrap();
    hostile.assert_still_working().await;
}

#[tokio::test]
async fn a_function_missing_from_a_known_interface_is_named() {
    let fixture = Fixture::new();
    fixture.install(
        &skill_source("tests/skills/missing-function"),
        "missing-function",
        None,
    );
    let sandbox = fixture.sandbox();
    let message = fixture
        .try_load(&sandbox, "missing-function")
        .await
        .err()
        .expect("must not load")
        .to_string();
    assert!(message.contains("talaria:skill/host@0.1.0"), "{message}");
    assert!(
        message.contains(
            "it imports the function `vault-secret` of `talaria:skill/host@0.1.0`, which this host does not provide"
        ),
        "the function is named: {message}"
    );
}
