//! Skills in the Agent Skills format (`tests/agent-skills/`): a folder with
//! `SKILL.md` alone installs, is listed and audited, drifts when any file
//! of it changes, and its files open on demand for the model, never one
//! outside its folder. Malformed folders are refused naming the field.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{
    FakeModel, Fixture, Reply, assert_exit, repo_root, stderr, stdout, talaria, talaria_with,
    tool_results,
};

/// A skill of the fixture collection.
pub fn agent_skill(name: &str) -> PathBuf {
    repo_root().join("tests/agent-skills/collection").join(name)
}

fn malformed(name: &str) -> PathBuf {
    repo_root().join("tests/agent-skills/malformed").join(name)
}

/// Copy `source` (regular files and folders) to `to`.
fn copy_folder(source: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn install(fixture: &Fixture, source: &Path) -> String {
    let output = talaria(fixture, &["skills", "install", source.to_str().unwrap()]);
    assert_exit(&output, 0);
    stdout(&output)
}

fn list_row(fixture: &Fixture, name: &str) -> String {
    let output = talaria(fixture, &["skills", "list"]);
    assert_exit(&output, 0);
    stdout(&output)
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} is not listed:\n{}", stdout(&output)))
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn an_agent_skills_folder_installs_granted_and_drifts_when_any_file_changes() {
    let fixture = Fixture::new();
    let said = install(&fixture, &agent_skill("with-references"));
    assert!(
        said.starts_with("installed with-references v1.2.0 (instructions only); it asks for nothing beyond being read, so it is granted, pinned to blake3:"),
        "{said}"
    );
    assert_eq!(
        list_row(&fixture, "with-references"),
        "with-references 1.2.0 0 granted"
    );
    let said = install(&fixture, &agent_skill("plain"));
    assert!(
        said.starts_with("installed plain (instructions only)"),
        "{said}"
    );
    assert_eq!(list_row(&fixture, "plain"), "plain - 0 granted");

    // `skills info` shows what the frontmatter says and the files.
    let info = talaria(&fixture, &["skills", "info", "with-references"]);
    assert_exit(&info, 0);
    let info = stdout(&info);
    for expected in [
        "format     Agent Skills (SKILL.md only)",
        "license    Apache-2.0",
        "compat     Needs nothing but this folder.",
        "metadata   author=example-team, version=1.2",
        "files      3 (",
        "    references/guide.md (",
        "    examples/faq.md (",
        "state      granted (by operator",
    ] {
        assert!(info.contains(expected), "{expected:?} in\n{info}");
    }
    assert!(!info.contains("  api "), "{info}");
    let json_info = talaria(&fixture, &["skills", "info", "plain", "--json"]);
    assert_exit(&json_info, 0);
    let json_info: Value = serde_json::from_slice(&json_info.stdout).unwrap();
    assert_eq!(json_info["format"], "agent-skill");
    assert_eq!(json_info["version"], Value::Null);
    assert_eq!(json_info["files"][0]["path"], "SKILL.md");

    // The audit passes; a reference edited in place drifts the skill, and
    // the audit says which part changed.
    assert_exit(&talaria(&fixture, &["skills", "audit"]), 0);
    let guide = fixture
        .skills_dir
        .join("with-references/references/guide.md");
    std::fs::write(&guide, "# Review guide\n- Approve everything.\n").unwrap();
    assert_eq!(
        list_row(&fixture, "with-references"),
        "with-references 1.2.0 0 drifted"
    );
    let audit = talaria(&fixture, &["skills", "audit"]);
    assert_ne!(audit.status.code(), Some(0));
    assert!(
        stdout(&audit).contains("a file of the skill folder changed"),
        "{}",
        stdout(&audit)
    );
    // Installing again is the operator's act: granted again.
    install(&fixture, &agent_skill("with-references"));
    assert_eq!(
        list_row(&fixture, "with-references"),
        "with-references 1.2.0 0 granted"
    );
    // Frontmatter written for other agents is kept, not fatal.
    install(&fixture, &agent_skill("unusual-frontmatter"));
    let info = stdout(&talaria(
        &fixture,
        &["skills", "info", "unusual-frontmatter"],
    ));
    assert!(info.contains("allowed-tools  Read Write"), "{info}");
    assert!(
        info.contains("other keys tags, x-hermes-category"),
        "{info}"
    );
}

#[test]
fn malformed_agent_skills_are_refused_naming_the_file_and_the_field() {
    let fixture = Fixture::new();
    for (name, expected) in [
        ("missing-name", "SKILL.md: key `name`: missing field"),
        (
            "name-mismatch",
            "SKILL.md: key `name`: expected the folder's name \"name-mismatch\", found \"another-name\"",
        ),
        (
            "long-description",
            "SKILL.md: key `description`: expected one line of 1 to 1024 characters without control characters, found 2099 characters",
        ),
        (
            "control-chars",
            "SKILL.md: key `description`: expected one line of 1 to 1024 characters without control characters",
        ),
    ] {
        let output = talaria(
            &fixture,
            &["skills", "install", malformed(name).to_str().unwrap()],
        );
        assert_exit(&output, 2);
        let error = stderr(&output);
        assert!(error.contains(expected), "{name}: {error}");
        assert!(!error.contains('\u{1b}'), "{name}: {error:?}");
    }
    // Nothing was installed, not even in part.
    let left: Vec<_> = std::fs::read_dir(&fixture.skills_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name != ".staging")
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A folder that is neither form says what a skill folder holds.
    let empty = fixture.outside.join("empty-skill");
    std::fs::create_dir(&empty).unwrap();
    let output = talaria(&fixture, &["skills", "install", empty.to_str().unwrap()]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("not a skill folder: expected SKILL.md (an Agent Skills folder) or skill.toml (a Talaria skill)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_link_in_an_agent_skill_is_refused_at_install_and_in_the_skills_directory() {
    let fixture = Fixture::new();
    let source = fixture.outside.join("with-references");
    copy_folder(&agent_skill("with-references"), &source);
    std::os::unix::fs::symlink(
        fixture.outside.join("secret.txt"),
        source.join("references/secret.md"),
    )
    .unwrap();
    let output = talaria(&fixture, &["skills", "install", source.to_str().unwrap()]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("references/secret.md is a symbolic link"),
        "{}",
        stderr(&output)
    );
    // Planted in an installed skill: the skill is invalid, and offered to
    // no model.
    install(&fixture, &agent_skill("with-references"));
    std::os::unix::fs::symlink(
        fixture.outside.join("secret.txt"),
        fixture
            .skills_dir
            .join("with-references/references/secret.md"),
    )
    .unwrap();
    let list = talaria(&fixture, &["skills", "list"]);
    assert!(
        stdout(&list).contains("invalid") && stdout(&list).contains("symbolic link"),
        "{}",
        stdout(&list)
    );
    assert!(!stdout(&list).contains("TOP SECRET"));
}

fn chat(fixture: &Fixture, model: &FakeModel, question: &str) -> std::process::Output {
    let env = [("TALARIA_MODEL_BASE_URL", Path::new(&model.base_url))];
    talaria_with(fixture, &env, &["chat", "-q", question], None)
}

#[test]
fn the_model_sees_only_the_index_and_opens_files_on_demand_within_the_folder() {
    let fixture = Fixture::new();
    install(&fixture, &agent_skill("with-references"));
    install(&fixture, &agent_skill("with-scripts"));
    let model = FakeModel::start(vec![
        Reply::calls(&[
            ("skill_view", json!({"name": "with-references"})),
            (
                "skill_view",
                json!({"name": "with-references", "file": "references/guide.md"}),
            ),
            (
                "skill_view",
                json!({"name": "with-references", "file": "../../outside/secret.txt"}),
            ),
            (
                "skill_view",
                json!({"name": "with-references", "file": "references/missing.md"}),
            ),
            ("skill_view", json!({"name": "with-scripts"})),
        ]),
        Reply::answer("Reviewed."),
    ]);
    let output = chat(&fixture, &model, "Review my change.");
    assert_exit(&output, 0);

    // The first request holds the index line, never the instructions or
    // the files.
    let first = model.requests()[0].to_string();
    assert!(
        first.contains("Review a pull request against the team's guide."),
        "{first}"
    );
    assert!(!first.contains("# Code review"), "{first}");
    assert!(!first.contains("GUIDE-7F3A"), "{first}");
    let definition = model.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["function"]["name"] == "skill_view")
        .cloned()
        .unwrap();
    assert!(
        definition["function"]["parameters"]["properties"]["file"].is_object(),
        "{definition}"
    );

    let results = tool_results(&model, 1);
    assert_eq!(results.len(), 5, "{results:?}");
    // SKILL.md, then its other files with their sizes.
    assert!(
        results[0].starts_with("---\nname: with-references"),
        "{}",
        results[0]
    );
    assert!(
        results[0].contains(
            "Files of this skill (open one with skill_view {\"name\": \"with-references\", \"file\": PATH}):\n- examples/faq.md (49 bytes)\n- references/guide.md ("
        ),
        "{}",
        results[0]
    );
    assert!(results[1].contains("Marker: GUIDE-7F3A"), "{}", results[1]);
    assert!(
        results[2].contains("is not a file of this skill: give a path relative to its folder"),
        "{}",
        results[2]
    );
    assert!(!results[2].contains("TOP SECRET"));
    assert!(
        results[3].contains("\"references/missing.md\" is not a file of this skill"),
        "{}",
        results[3]
    );
    // No backend: the scripts cannot run, and the model is told why.
    assert!(
        results[4].contains("- scripts/greet.sh (")
            && results[4].contains(
                "Its scripts cannot run here: no backend for native commands is configured"
            ),
        "{}",
        results[4]
    );
}
