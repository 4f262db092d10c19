//! The `talaria` binary end to end: output, exit codes and error messages.

use std::path::Path;
use std::process::Command;

use crate::support::{
    Fixture, assert_exit, skill_source, stderr, stdout, talaria, talaria_with_stdin,
};
use serde_json::Value;

fn fixture_with_skills() -> Fixture {
    let fixture = Fixture::new();
    fixture.install(&skill_source("tests/skills/hostile"), "hostile", None);
    fixture.install(&skill_source("examples/word-stats"), "word-stats", None);
    let notes = fixture.skills_dir.join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(
        notes.join("skill.toml"),
        "[skill]\nname = \"notes\"\nversion = \"1.0.0\"\ndescription = \"How to take notes\"\napi = \"^0.1\"\n",
    )
    .unwrap();
    std::fs::write(notes.join("SKILL.md"), "Take short notes.\n").unwrap();
    for name in ["hostile", "word-stats", "notes"] {
        let output = talaria(&fixture, &["skills", "grant", name, "--yes"]);
        assert_exit(&output, 0);
    }
    let broken = fixture.skills_dir.join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("skill.toml"), "[skill]\nname = \"broken\"\n").unwrap();
    fixture
}

#[test]
fn skills_list_shows_each_skill_with_its_state() {
    let fixture = fixture_with_skills();
    let output = talaria(&fixture, &["skills", "list"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{text}");
    let row = |name: &str| {
        lines
            .iter()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("hostile")[..4], ["hostile", "0.1.0", "29", "granted"]);
    assert_eq!(
        row("word-stats")[..4],
        ["word-stats", "0.1.0", "1", "granted"]
    );
    assert_eq!(row("notes")[..4], ["notes", "1.0.0", "0", "granted"]);
    assert_eq!(row("broken")[..4], ["broken", "-", "-", "invalid"]);
    assert!(text.contains("missing field `version`"), "{text}");

    let output = talaria(&fixture, &["skills", "list", "--json"]);
    assert_exit(&output, 0);
    let skills: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let states: Vec<(&str, &str)> = skills
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("broken", "invalid"),
            ("hostile", "granted"),
            ("notes", "granted"),
            ("word-stats", "granted")
        ]
    );
    assert_eq!(skills[3]["tools"], serde_json::json!(["top_words"]));
}

#[test]
fn tool_list_names_tools_skill_dot_tool_with_schemas() {
    let fixture = fixture_with_skills();
    let output = talaria(&fixture, &["tool", "list", "--json"]);
    assert_exit(&output, 0);
    let tools: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let top_words = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "word-stats.top_words")
        .expect("word-stats.top_words is listed");
    assert_eq!(top_words["skill"], "word-stats");
    assert_eq!(top_words["parameters"]["type"], "object");
    assert_eq!(
        top_words["parameters"]["required"],
        serde_json::json!(["text"])
    );

    let output = talaria(&fixture, &["tool", "list"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(
        text.contains("word-stats.top_words\n    List the most frequent words"),
        "{text}"
    );
    assert!(
        text.contains("arguments: limit (integer), text (string, required)"),
        "{text}"
    );
}

#[test]
fn tool_call_prints_the_result() {
    let fixture = fixture_with_skills();
    let output = talaria(
        &fixture,
        &[
            "tool",
            "call",
            "word-stats.top_words",
            r#"{"text": "b a b", "limit": 1}"#,
        ],
    );
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "[{\"count\":2,\"word\":\"b\"}]\n");

    let output = talaria_with_stdin(
        &fixture,
        &["tool", "call", "hostile.echo", "-"],
        Some(r#"{"text": "from stdin"}"#),
    );
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "from stdin\n");
}

#[test]
fn a_tool_error_exits_1_with_the_error() {
    let fixture = fixture_with_skills();
    let output = talaria(
        &fixture,
        &[
            "tool",
            "call",
            "hostile.fail",
            r#"{"text": "disk on fire"}"#,
        ],
    );
    assert_exit(&output, 1);
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        "error: skill hostile v0.1.0: tool `fail`: failed: disk on fire\n"
    );
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let fixture = fixture_with_skills();
    let cases: &[(&[&str], &str)] = &[
        (
            &["tool", "call", "word-stats.top_words", "{not json"],
            "the arguments are not valid JSON",
        ),
        (
            &["tool", "call", "word-stats.top_words", "[1, 2]"],
            "must be a JSON object",
        ),
        (
            &["tool", "call", "nope.tool", "{}"],
            "no skill named \"nope\"",
        ),
        (
            &["tool", "call", "word-stats.nope", "{}"],
            "has no tool \"nope\"; it offers: top_words",
        ),
        (&["tool", "call", "word-stats", "{}"], "expected SKILL.TOOL"),
        (
            &["tool", "call", "broken.tool", "{}"],
            "missing field `version`",
        ),
        (&["skills", "frobnicate"], "unrecognized subcommand"),
        (&[], "Usage: talaria"),
    ];
    for (args, expected) in cases {
        let output = talaria(&fixture, args);
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn help_explains_every_command() {
    let fixture = Fixture::new();
    let output = talaria(&fixture, &["--help"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    for expected in [
        "skills",
        "tool",
        "--skills-dir",
        "TALARIA_SKILLS_DIR",
        "Examples:",
    ] {
        assert!(text.contains(expected), "--help lacks {expected}: {text}");
    }
    let output = talaria(&fixture, &["tool", "call", "--help"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(text.contains("SKILL.TOOL"), "{text}");
    assert!(
        text.contains("Exits 0 with the result on stdout, 1 when the tool fails"),
        "{text}"
    );
    let output = talaria(&fixture, &["skills", "list", "--help"]);
    assert!(stdout(&output).contains("drifted"));

    let cases: &[(&[&str], &[&str])] = &[
        (
            &["skills", "info", "--help"],
            &[
                "requests and what",
                "only when the skill is granted",
                "--json",
            ],
        ),
        (
            &["skills", "remove", "--help"],
            &[
                "--yes",
                "--purge-data",
                "skill-data/NAME",
                "skills reset NAME",
            ],
        ),
        (
            &["skills", "new", "--help"],
            &[
                "cargo build --target wasm32-wasip2",
                "--dir",
                "--sdk",
                "talaria skills new my-skill",
            ],
        ),
        (
            &["tool", "info", "--help"],
            &["as the model sees it", "JSON Schema", "--json"],
        ),
        (
            &["completions", "--help"],
            &["bash", "zsh", "fish", "source <(talaria completions bash)"],
        ),
        (
            &["sessions", "search", "--help"],
            &["never the system prompt"],
        ),
    ];
    for (args, expected) in cases {
        let output = talaria(&fixture, args);
        assert_exit(&output, 0);
        for text in *expected {
            assert!(
                stdout(&output).contains(text),
                "`talaria {}` lacks {text:?}: {}",
                args.join(" "),
                stdout(&output)
            );
        }
    }
}

#[test]
fn an_empty_skills_directory_is_not_an_error() {
    let fixture = Fixture::new();
    let output = talaria(&fixture, &["skills", "list"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "no skills installed\n");
    let missing = fixture.root.path().join("missing");
    let output = Command::new(env!("CARGO_BIN_EXE_talaria"))
        .env_clear()
        .env("TALARIA_HOME", fixture.root.path())
        .args(["--skills-dir", missing.to_str().unwrap(), "skills", "list"])
        .output()
        .unwrap();
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("cannot read the skills directory"),
        "{}",
        stderr(&output)
    );
    assert!(!Path::new(&missing).exists());
}

#[test]
fn sessions_can_be_listed_searched_exported_and_deleted() {
    use talaria_runtime::memory::{NewMessage, SessionStore};
    let fixture = Fixture::new();
    assert_exit(&talaria(&fixture, &["sessions", "list"]), 0);
    let id = {
        let store = SessionStore::open(&fixture.root.path().join("state.db")).unwrap();
        let id = store.create_session(None, Some("zebra talk")).unwrap();
        for (role, content) in [
            ("user", "Tell me about zebras"),
            ("assistant", "Zebras have stripes."),
        ] {
            store
                .append(
                    &id,
                    &NewMessage {
                        role,
                        content,
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        id
    };
    // A session as the agent stores it: untitled, the system prompt first.
    let chat = {
        let store = SessionStore::open(&fixture.root.path().join("state.db")).unwrap();
        let id = store.create_session(None, None).unwrap();
        for (role, content) in [
            (
                "system",
                "Skills offered: okapi-facts (schema: {\"topic\": \"string\"})",
            ),
            (
                "user",
                "Where do okapis live,\nand what do they eat? Answer in one paragraph please.",
            ),
            ("assistant", "In the rainforests of the Congo."),
        ] {
            store
                .append(
                    &id,
                    &NewMessage {
                        role,
                        content,
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        id
    };
    let output = talaria(&fixture, &["sessions", "list"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["ID", "UPDATED", "MESSAGES", "TITLE"], "{text}");
    let row = |id: &str| {
        text.lines()
            .find(|line| line.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}: {text}"))
    };
    assert!(row(&id).ends_with("  2         zebra talk"), "{text}");
    assert!(
        row(&chat)
            .ends_with("  3         Where do okapis live, and what do they eat? Answer in one…"),
        "{text}"
    );

    let output = talaria(&fixture, &["sessions", "search", "stripes"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("Zebras have [stripes]."),
        "{}",
        stdout(&output)
    );
    // The conversation is searched, the system prompt is not.
    let output = talaria(&fixture, &["sessions", "search", "okapis"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).lines().count(), 1, "{}", stdout(&output));
    assert!(stdout(&output).contains("user"), "{}", stdout(&output));
    for only_in_the_system_prompt in ["Skills", "schema", "topic"] {
        let output = talaria(&fixture, &["sessions", "search", only_in_the_system_prompt]);
        assert_exit(&output, 0);
        assert_eq!(
            stdout(&output),
            format!("no message contains {only_in_the_system_prompt:?}\n")
        );
    }

    let output = talaria(&fixture, &["sessions", "export", &id]);
    assert_exit(&output, 0);
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["content"], "Zebras have stripes.");
    let output = talaria(&fixture, &["sessions", "export", &id, "--format", "md"]);
    assert!(
        stdout(&output).contains("## user — "),
        "{}",
        stdout(&output)
    );

    assert_exit(&talaria(&fixture, &["sessions", "delete", &id]), 0);
    let output = talaria(&fixture, &["sessions", "show", &id]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("no session"),
        "{}",
        stderr(&output)
    );
}

/// A `skill.toml` is the first thing Talaria reads of an untrusted skill: a
/// quoted key (or the folder name) may hold escape sequences, and the errors
/// that repeat them must not pass them to the operator's terminal.
#[test]
fn escape_sequences_in_an_untrusted_manifest_never_reach_the_terminal() {
    let fixture = Fixture::new();
    let manifest = concat!(
        "[skill]\nname = \"evil\"\nversion = \"1.0.0\"\ndescription = \"Evil\"\napi = \"^0.1\"\n",
        "\"\\u001b[2J\\u001b]0;pwned\\u0007\\u009b31m\\nPROBLEM forged\" = 1\n",
    );
    let source = fixture.root.path().join("download/evil");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("skill.toml"), manifest).unwrap();
    let planted = fixture.skills_dir.join("evil\u{1b}]0;title\u{7}\u{1b}[2J");
    std::fs::create_dir(&planted).unwrap();
    std::fs::write(planted.join("skill.toml"), manifest).unwrap();

    let source = source.to_str().unwrap();
    for args in [
        &["skills", "install", source][..],
        &["skills", "list"],
        &["skills", "list", "--json"],
        &["skills", "audit"],
        &["doctor"],
    ] {
        let output = talaria(&fixture, args);
        let shown = format!("{}{}", stdout(&output), stderr(&output));
        assert!(
            !shown.contains(['\u{1b}', '\u{7}', '\u{9b}']),
            "`talaria {}` printed a control character: {shown:?}",
            args.join(" ")
        );
        assert!(
            !shown.lines().any(|line| line.starts_with("PROBLEM forged")),
            "`talaria {}` printed a forged line: {shown}",
            args.join(" ")
        );
        assert!(shown.contains("unknown field"), "{args:?}: {shown}");
    }
}

/// Stored messages hold what the model and the tools wrote: text output
/// strips their escape sequences, JSON keeps them exactly (escaped).
#[test]
fn stored_escape_sequences_never_reach_the_terminal() {
    use talaria_runtime::memory::{NewMessage, SessionStore};
    let fixture = Fixture::new();
    let nasty = "zebra \u{1b}]0;pwned\u{7}stripes\n\u{1b}[2Jnext line";
    let id = {
        let store = SessionStore::open(&fixture.root.path().join("state.db")).unwrap();
        let id = store
            .create_session(None, Some("title \u{1b}[31mred"))
            .unwrap();
        for role in ["user", "assistant"] {
            store
                .append(
                    &id,
                    &NewMessage {
                        role,
                        content: nasty,
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        id
    };
    for args in [
        &["sessions", "list"][..],
        &["sessions", "show", &id],
        &["sessions", "search", "zebra"],
        &["sessions", "export", &id, "--format", "md"],
    ] {
        let output = talaria(&fixture, args);
        assert_exit(&output, 0);
        let text = stdout(&output);
        assert!(
            !text.contains(['\u{1b}', '\u{7}']),
            "`talaria {}`: {text:?}",
            args.join(" ")
        );
    }
    let output = talaria(&fixture, &["sessions", "show", &id]);
    assert!(
        stdout(&output).contains("zebra stripes\nnext line"),
        "{}",
        stdout(&output)
    );
    let output = talaria(&fixture, &["sessions", "export", &id]);
    let first: Value = serde_json::from_str(stdout(&output).lines().next().unwrap()).unwrap();
    assert_eq!(first["content"], nasty, "JSON output stays byte-exact");
}

/// `talaria tool list | head -1`: a reader that stops early closes the
/// pipe; the command ends quietly with 0, as Unix tools do.
#[test]
fn a_reader_that_stops_early_ends_the_command_quietly_with_0() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let fixture = fixture_with_skills();
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_talaria"))
            .env_clear()
            .env("TALARIA_HOME", fixture.root.path())
            .env("TALARIA_SKILLS_DIR", &fixture.skills_dir)
            .env("TALARIA_WORKSPACE", &fixture.workspace)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let commands: &[&[&str]] = &[
        &["tool", "list"],
        &["tool", "list", "--json"],
        &["skills", "list"],
        &["skills", "info", "hostile"],
        &["config", "show"],
        &["completions", "bash"],
    ];
    for args in commands {
        // `| head -1`: one line read, then the pipe closed.
        let mut child = spawn(args);
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        assert!(!first.is_empty(), "{args:?}");
        drop(reader);
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "", "{args:?}");
        // `| true`: closed before anything is written, so the first write fails.
        let mut child = spawn(args);
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "", "{args:?}");
    }
}

#[test]
fn skills_info_shows_the_request_the_grant_the_state_the_tools_and_the_data() {
    let fixture = fixture_with_skills();
    std::fs::create_dir_all(fixture.skill_data.join("hostile")).unwrap();
    std::fs::write(fixture.skill_data.join("hostile/kept.txt"), "x").unwrap();
    let output = talaria(&fixture, &["skills", "info", "hostile"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    let workspace = fixture.workspace.display().to_string();
    for expected in [
        "hostile v0.1.0 — Tries to escape its sandbox",
        "  component  hostile.wasm",
        "  api        ^0.1",
        "  hash       blake3:",
        "  state      granted (by operator, ",
        "requested\n  mounts   ",
        &format!("{workspace} → /workspace (ro)"),
        "  env      TALARIA_TEST_ALLOWED (not set)",
        "  limits   memory 32 MiB, timeout 1000 ms",
        "granted\n  exactly what is requested, at blake3:",
        "tools\n  hostile.",
        "data\n  ",
        "of its 256 MiB quota in ",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }

    // Drifted: the reason is named, and the component is not run.
    std::fs::write(
        fixture.skills_dir.join("word-stats/SKILL.md"),
        "changed since the grant\n",
    )
    .unwrap();
    let output = talaria(&fixture, &["skills", "info", "word-stats"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(text.contains("  state      drifted\n"), "{text}");
    assert!(text.contains("  drift      "), "{text}");
    assert!(text.contains("SKILL.md"), "{text}");
    assert!(
        text.contains("tools\n  listed once the skill is granted"),
        "{text}"
    );
    assert!(
        text.contains("data\n  none (the skill mounts no ${skill_data})"),
        "{text}"
    );

    let output = talaria(&fixture, &["skills", "info", "notes"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("tools\n  none: the skill has instructions only"),
        "{}",
        stdout(&output)
    );

    let output = talaria(&fixture, &["skills", "info", "hostile", "--json"]);
    assert_exit(&output, 0);
    let info: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(info["schema"], "talaria.skills.info/v1");
    assert_eq!(info["state"], "granted");
    assert_eq!(info["requested"]["env"][0]["name"], "TALARIA_TEST_ALLOWED");
    assert_eq!(info["requested"], {
        let mut granted = info["granted"].clone();
        for key in ["by", "at", "hash", "version", "moved_from"] {
            granted.as_object_mut().unwrap().remove(key);
        }
        granted
    });
    assert_eq!(info["granted"]["by"], "operator");
    assert!(info["tools"].as_array().unwrap().len() > 10);
    assert!(info["data"]["used_bytes"].as_u64().unwrap() > 0);
    assert_eq!(info["data"]["quota_mb"], 256);
    let output = talaria(&fixture, &["skills", "info", "word-stats", "--json"]);
    let info: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(info["state"], "drifted");
    assert_eq!(info["tools"], Value::Null);
    assert!(!info["drift"].as_array().unwrap().is_empty());

    let output = talaria(&fixture, &["skills", "info", "nosuch"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("no skill named \"nosuch\"")
            && stderr(&output).contains("hostile"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn skills_remove_asks_revokes_the_grant_and_keeps_the_data_unless_purged() {
    let fixture = fixture_with_skills();
    let data = fixture.skill_data.join("hostile");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("notes.txt"), "the skill's own data").unwrap();
    let grants = || std::fs::read_to_string(fixture.root.path().join("grants.toml")).unwrap();

    // Without a terminal and without --yes: nothing happens.
    let output = talaria(&fixture, &["skills", "remove", "hostile"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains(
            "refusing to remove without confirmation: stdin is not a terminal; review the above \
             and run `talaria skills remove hostile --yes`"
        ),
        "{}",
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("keep     its data"),
        "{}",
        stdout(&output)
    );
    assert!(fixture.skills_dir.join("hostile").is_dir());
    assert!(grants().contains("[skills.hostile]"));

    let output = talaria(&fixture, &["skills", "remove", "hostile", "--yes"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(
        text.contains("removed hostile\n  revoked its grant (v0.1.0)\n  kept its data"),
        "{text}"
    );
    assert!(!fixture.skills_dir.join("hostile").exists());
    assert!(!grants().contains("hostile"), "{}", grants());
    assert!(data.join("notes.txt").is_file(), "data is kept");
    let output = talaria(&fixture, &["skills", "list"]);
    assert!(!stdout(&output).contains("hostile"), "{}", stdout(&output));

    // --purge-data deletes the data too.
    std::fs::create_dir_all(fixture.skill_data.join("word-stats")).unwrap();
    let output = talaria(
        &fixture,
        &["skills", "remove", "word-stats", "--yes", "--purge-data"],
    );
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("deleted its data"),
        "{}",
        stdout(&output)
    );
    assert!(!fixture.skill_data.join("word-stats").exists());

    // A folder whose manifest is invalid can be removed too; no grant to revoke.
    let output = talaria(&fixture, &["skills", "remove", "broken", "--yes"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("it had no grant"),
        "{}",
        stdout(&output)
    );
    assert!(!fixture.skills_dir.join("broken").exists());

    let output = talaria(&fixture, &["skills", "remove", "nosuch", "--yes"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).ends_with("; skills: notes\n"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_removed_bundled_skill_stays_removed() {
    use crate::support::{repo_root, talaria_with};
    let fixture = Fixture::new();
    let shipped = repo_root().join("skills");
    let bundled = [("TALARIA_BUNDLED_SKILLS", shipped.as_path())];
    let run = |args: &[&str]| talaria_with(&fixture, &bundled, args, None);
    let listed = |name: &str| {
        let output = run(&["skills", "list"]);
        assert_exit(&output, 0);
        stdout(&output)
            .lines()
            .any(|line| line.starts_with(&format!("{name} ")))
    };
    assert!(listed("text"));
    let output = run(&["skills", "remove", "text", "--yes"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("stays removed; `talaria skills reset text` brings it back"),
        "{}",
        stdout(&output)
    );
    // Every later start syncs the bundled skills: `text` is not added back.
    assert!(!listed("text"));
    assert!(listed("files"));
    assert_exit(&run(&["skills", "reset", "text"]), 0);
    assert!(listed("text"));
}

#[test]
fn tool_info_shows_the_tool_as_the_model_sees_it() {
    let fixture = fixture_with_skills();
    let output = talaria(&fixture, &["tool", "info", "word-stats.top_words"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    for expected in [
        "word-stats.top_words\n",
        "  model name   word-stats__top_words\n",
        "  description  List the most frequent words of a text with their counts.\n",
        "  arguments    limit (integer), text (string, required)\n",
        "JSON Schema of the arguments, as sent to the model:\n{\n",
        "\"required\": [\n    \"text\"\n  ],",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }

    let output = talaria(
        &fixture,
        &["tool", "info", "word-stats.top_words", "--json"],
    );
    assert_exit(&output, 0);
    let definition: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let listed: Value =
        serde_json::from_str(&stdout(&talaria(&fixture, &["tool", "list", "--json"]))).unwrap();
    let listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "word-stats.top_words")
        .unwrap();
    assert_eq!(
        definition,
        serde_json::json!({
            "type": "function",
            "function": {
                "name": "word-stats__top_words",
                "description": listed["description"],
                "parameters": listed["parameters"],
            }
        })
    );

    let output = talaria(&fixture, &["tool", "info", "word-stats.nope"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("it offers: top_words"),
        "{}",
        stderr(&output)
    );
    std::fs::write(fixture.skills_dir.join("word-stats/SKILL.md"), "changed\n").unwrap();
    let output = talaria(&fixture, &["tool", "info", "word-stats.top_words"]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("is drifted"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    let fixture = Fixture::new();
    for (shell, expected) in [
        ("bash", "complete -F _talaria"),
        ("zsh", "#compdef talaria"),
        ("fish", "complete -c talaria"),
    ] {
        let output = talaria(&fixture, &["completions", shell]);
        assert_exit(&output, 0);
        let script = stdout(&output);
        assert!(script.contains(expected), "{shell}: {script:.300}");
        for command in ["skills", "remove", "completions", "skills-dir"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
    }
    let output = talaria(&fixture, &["completions", "tcsh"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("possible values"),
        "{}",
        stderr(&output)
    );
    let output = talaria(&fixture, &["completions", "--help"]);
    assert!(stdout(&output).contains("source <(talaria completions bash)"));
}

/// `talaria skills new`: the files parse, and, where the wasm32-wasip2
/// target is installed (it is in CI), the printed commands are run as
/// printed: build, copy, install, grant, call.
#[test]
fn a_new_skill_builds_installs_and_runs_with_the_printed_commands() {
    let fixture = Fixture::new();
    let parent = fixture.root.path().join("src");
    let output = talaria(
        &fixture,
        &[
            "skills",
            "new",
            "demo-skill",
            "--dir",
            parent.to_str().unwrap(),
        ],
    );
    assert_exit(&output, 0);
    let folder = parent.join("demo-skill");
    let manifest = talaria_runtime::skill::Manifest::load(&folder.join("skill.toml"))
        .expect("the manifest validates");
    assert_eq!(manifest.name, "demo-skill");
    let skill_md = std::fs::read_to_string(folder.join("SKILL.md")).unwrap();
    let frontmatter = skill_md
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n"))
        .expect("SKILL.md has frontmatter")
        .0;
    assert!(
        frontmatter.lines().any(|line| line == "name: demo-skill"),
        "{skill_md}"
    );
    assert_eq!(
        talaria_runtime::skill::frontmatter_description(&skill_md).as_deref(),
        Some(manifest.description.as_str())
    );
    let cargo_toml: toml::Table =
        toml::from_str(&std::fs::read_to_string(folder.join("Cargo.toml")).unwrap()).unwrap();
    assert!(cargo_toml["workspace"].as_table().unwrap().is_empty());
    assert_eq!(
        cargo_toml["lib"]["crate-type"],
        toml::Value::Array(vec!["cdylib".into()])
    );
    let sdk = cargo_toml["dependencies"]["talaria-sdk"]["path"]
        .as_str()
        .unwrap();
    assert_eq!(
        Path::new(sdk),
        crate::support::repo_root()
            .join("sdk")
            .canonicalize()
            .unwrap()
    );
    assert!(
        folder.join("Cargo.lock").is_file(),
        "the workspace's lock is copied"
    );
    assert!(folder.join("src/lib.rs").is_file());

    // A second time, or a name that is not one: usage errors, nothing touched.
    let again = talaria(
        &fixture,
        &[
            "skills",
            "new",
            "demo-skill",
            "--dir",
            parent.to_str().unwrap(),
        ],
    );
    assert_exit(&again, 2);
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    let bad = talaria(&fixture, &["skills", "new", "Demo_Skill"]);
    assert_exit(&bad, 2);
    assert!(
        stderr(&bad).contains("is not a skill name"),
        "{}",
        stderr(&bad)
    );

    let text = stdout(&output);
    let commands: Vec<&str> = text
        .split("Build it, install it, grant it and call its tool:\n")
        .nth(1)
        .expect("the next commands are printed")
        .lines()
        .take_while(|line| !line.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(commands.len(), 6, "{text}");
    if !wasm_target_installed() {
        eprintln!("wasm32-wasip2 is not installed: the scaffold is not built here");
        return;
    }
    // Dependencies compiled once are reused by every later run.
    let shared_target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("scaffold-test");
    std::fs::create_dir_all(&shared_target).unwrap();
    std::os::unix::fs::symlink(&shared_target, folder.join("target")).unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_talaria")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cwd = fixture.root.path().to_owned();
    let mut last = None;
    for command in commands {
        if let Some(dir) = command.strip_prefix("cd ") {
            cwd = dir.into();
            continue;
        }
        // The grant asks at a terminal; the test has none.
        let command = if command.contains(" skills grant ") {
            format!("{command} --yes")
        } else {
            command.to_owned()
        };
        let output = Command::new("sh")
            .args(["-c", &command])
            .current_dir(&cwd)
            .env("PATH", &path)
            .env("TALARIA_HOME", fixture.root.path())
            .env("TALARIA_WORKSPACE", &fixture.workspace)
            // Everything is in the copied lock and cargo's cache.
            .env("CARGO_NET_OFFLINE", "true")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("TALARIA_SKILLS_DIR")
            .output()
            .unwrap();
        assert_exit(&output, 0);
        last = Some(output);
    }
    assert_eq!(stdout(&last.unwrap()), "Hello, world!\n");
}

fn wasm_target_installed() -> bool {
    Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .is_some_and(|sysroot| {
            Path::new(&sysroot)
                .join("lib/rustlib/wasm32-wasip2")
                .is_dir()
        })
}

/// `config show`: every key config.toml accepts, where each value came
/// from, and never a secret.
#[test]
fn config_show_prints_every_key_with_its_source_and_no_secret() {
    use crate::support::talaria_with;
    let fixture = Fixture::new();
    let home = fixture.root.path();
    std::fs::write(
        home.join("config.toml"),
        "[model]\nbase_url = \"https://me:hunter2@llm.example/v1\"\ntimeout_secs = 30\n\
         [agent]\nmax_turns = 9\n[memory]\nuser_chars = 900\n",
    )
    .unwrap();
    std::fs::write(home.join(".env"), "OPENAI_API_KEY=sk-very-secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(home.join(".env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = talaria_with(
        &fixture,
        &[("TALARIA_MODEL", Path::new("qwen3"))],
        &["--log", "info", "config", "show"],
        None,
    );
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(
        !text.contains("sk-very-secret") && !text.contains("hunter2"),
        "{text}"
    );
    let source = |key: &str| {
        let line = text
            .lines()
            .find(|line| line.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("{key} is not shown:\n{text}"));
        let (value, source) = line[key.len()..].trim().rsplit_once("  ").unwrap();
        (value.trim().to_owned(), source.trim().to_owned())
    };
    let expected = [
        (
            "workspace",
            fixture.workspace.display().to_string(),
            "(env TALARIA_WORKSPACE)",
        ),
        ("log.level", "info".into(), "(flag --log)"),
        ("log.format", "human".into(), "(default)"),
        ("sandbox.max_instances", "64".into(), "(default)"),
        ("sandbox.max_open_handles", "256".into(), "(default)"),
        (
            "skills.bundled",
            "share/talaria/skills beside the binary".into(),
            "(default)",
        ),
        (
            "model.base_url",
            "https://me:***@llm.example/v1".into(),
            "(config.toml)",
        ),
        ("model.name", "qwen3".into(), "(env TALARIA_MODEL)"),
        (
            "model.api_key_env",
            "OPENAI_API_KEY (the key is set, in .env; never shown)".into(),
            "(default)",
        ),
        ("model.timeout_secs", "30".into(), "(config.toml)"),
        ("model.max_retries", "3".into(), "(default)"),
        ("agent.max_turns", "9".into(), "(config.toml)"),
        ("agent.tool_output_chars", "16000".into(), "(default)"),
        (
            "agent.tool_schema_budget_bytes",
            "24000".into(),
            "(default)",
        ),
        ("memory.memory_chars", "2200".into(), "(default)"),
        ("memory.user_chars", "900".into(), "(config.toml)"),
        ("gateway.host", "127.0.0.1".into(), "(default)"),
        ("gateway.port", "8642".into(), "(default)"),
        ("gateway.dashboard", "true".into(), "(default)"),
        ("gateway.dashboard_port", "9119".into(), "(default)"),
        (
            "gateway.dashboard_hosts",
            "none (IP addresses and localhost only)".into(),
            "(default)",
        ),
        (
            "gateway.cors_origins",
            "none (CORS off)".into(),
            "(default)",
        ),
        ("gateway.max_concurrent_runs", "10".into(), "(default)"),
        ("gateway.request_timeout_secs", "300".into(), "(default)"),
        ("gateway.max_body_bytes", "4194304".into(), "(default)"),
        ("approvals.mode", "manual".into(), "(default)"),
        ("backend.kind", "none".into(), "(default)"),
        ("approvals.allowlist", "none".into(), "(default)"),
        ("approvals.timeout_secs", "60".into(), "(default)"),
        ("backend.env", "none".into(), "(default)"),
        (
            "backend.docker.socket",
            "/var/run/docker.sock".into(),
            "(default)",
        ),
        (
            "backend.docker.image",
            "debian:bookworm-slim".into(),
            "(default)",
        ),
        ("backend.docker.network", "false".into(), "(default)"),
        ("backend.docker.memory_mb", "2048".into(), "(default)"),
        ("backend.docker.cpus", "2".into(), "(default)"),
        ("backend.docker.pids", "256".into(), "(default)"),
        ("backend.docker.tmp_mb", "512".into(), "(default)"),
        ("backend.docker.read_only", "true".into(), "(default)"),
        (
            "backend.docker.user",
            "the uid:gid of the Talaria process".into(),
            "(default)",
        ),
        ("backend.ssh", "none".into(), "(default)"),
    ];
    for (key, value, from) in &expected {
        assert_eq!(source(key), (value.clone(), from.to_string()), "{key}");
    }
    assert!(
        text.contains(&format!(
            "# skills directory: {} (env TALARIA_SKILLS_DIR, in environment)",
            fixture.skills_dir.display()
        )),
        "{text}"
    );

    let output = talaria(&fixture, &["config", "show", "--json"]);
    assert_exit(&output, 0);
    assert!(!stdout(&output).contains("sk-very-secret"));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let keys: Vec<&str> = report["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, expected.map(|(key, _, _)| key));
}
