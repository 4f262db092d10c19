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
        stderr(&output)
            .contains("empty-skill: expected SKILL.md or skill.toml in it, or in folders of it"),
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
    install(&fixture, &agent_skill("unusual-frontmatter"));
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
    // A folded description is in the index as YAML reads it.
    assert!(
        first.contains(
            "Summarise meeting notes into decisions and actions. Use when given raw notes."
        ),
        "{first}"
    );
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

/// Entries under `skills/.staging` (scratch folders must be gone).
fn leftovers(fixture: &Fixture) -> Vec<String> {
    std::fs::read_dir(fixture.skills_dir.join(".staging"))
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_collection_installs_each_skill_and_reports_each() {
    let fixture = Fixture::new();
    let collection = repo_root().join("tests/agent-skills/collection");
    let output = talaria(
        &fixture,
        &["skills", "install", collection.to_str().unwrap()],
    );
    assert_exit(&output, 0);
    let said = stdout(&output);
    for name in [
        "plain",
        "unusual-frontmatter",
        "with-references",
        "with-scripts",
    ] {
        assert!(
            said.contains(&format!("installed {name}")),
            "{name}: {said}"
        );
        assert!(list_row(&fixture, name).ends_with("granted"));
    }
    assert!(said.contains("installed all 4 skills of"), "{said}");

    // One bad skill in a collection: the others are installed, it is named
    // with its reason, and the command fails.
    let mixed = fixture.outside.join("mixed");
    copy_folder(&agent_skill("plain"), &mixed.join("plain-copy"));
    std::fs::write(
        mixed.join("plain-copy/SKILL.md"),
        std::fs::read_to_string(agent_skill("plain").join("SKILL.md"))
            .unwrap()
            .replace("name: plain", "name: plain-copy"),
    )
    .unwrap();
    copy_folder(&malformed("missing-name"), &mixed.join("missing-name"));
    std::fs::create_dir(mixed.join("not-a-skill")).unwrap();
    let output = talaria(&fixture, &["skills", "install", mixed.to_str().unwrap()]);
    assert_exit(&output, 1);
    assert!(
        stdout(&output).contains("installed plain-copy"),
        "{}",
        stdout(&output)
    );
    assert!(
        stdout(&output).contains("not installed missing-name: ")
            && stdout(&output).contains("missing-name/SKILL.md: key `name`: missing field"),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains("1 of 2 skills in"),
        "{}",
        stderr(&output)
    );
}

fn tar_gz(root: &Path, prefix: &str, link: Option<(&str, &str)>) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    builder.append_dir_all(prefix, root).unwrap();
    if let Some((name, target)) = link {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder.append_link(&mut header, name, target).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn archives_install_and_links_or_escapes_in_them_are_refused() {
    let fixture = Fixture::new();
    // A tar.gz holding the skill's folder.
    let archive = fixture.outside.join("review.tar.gz");
    std::fs::write(
        &archive,
        tar_gz(&agent_skill("with-references"), "with-references", None),
    )
    .unwrap();
    let said = install(&fixture, &archive);
    assert!(
        said.starts_with("installed with-references v1.2.0"),
        "{said}"
    );
    assert!(
        fixture
            .skills_dir
            .join("with-references/references/guide.md")
            .is_file()
    );

    // A zip with SKILL.md at its top: the skill is named after the archive.
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("SKILL.md", options).unwrap();
    zip.write_all(&std::fs::read(agent_skill("plain").join("SKILL.md")).unwrap())
        .unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    let archive = fixture.outside.join("plain.zip");
    std::fs::write(&archive, bytes).unwrap();
    assert!(install(&fixture, &archive).starts_with("installed plain"));

    // A link in the archive: refused, nothing installed, no scratch left.
    let archive = fixture.outside.join("with-scripts.tar.gz");
    std::fs::write(
        &archive,
        tar_gz(
            &agent_skill("with-scripts"),
            "with-scripts",
            Some(("with-scripts/scripts/passwd", "/etc/passwd")),
        ),
    )
    .unwrap();
    let output = talaria(&fixture, &["skills", "install", archive.to_str().unwrap()]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("entry \"with-scripts/scripts/passwd\" is a link"),
        "{}",
        stderr(&output)
    );
    assert!(!fixture.skills_dir.join("with-scripts").exists());

    // A malformed skill in an archive is named inside the archive, never
    // by the scratch folder it was unpacked into.
    let archive = fixture.outside.join("missing-name.tar.gz");
    std::fs::write(
        &archive,
        tar_gz(&malformed("missing-name"), "missing-name", None),
    )
    .unwrap();
    let output = talaria(&fixture, &["skills", "install", archive.to_str().unwrap()]);
    assert_exit(&output, 2);
    let error = stderr(&output);
    assert!(
        error.contains(&format!(
            "{} → missing-name/SKILL.md: key `name`: missing field",
            archive.display()
        )),
        "{error}"
    );
    assert!(!error.contains(".fetch-"), "{error}");
    assert!(
        leftovers(&fixture)
            .iter()
            .all(|name| !name.starts_with(".fetch-")),
        "{:?}",
        leftovers(&fixture)
    );
}

/// `git` in `dir`, as a test's author would run it.
fn git(dir: &Path, args: &[&str]) {
    let output = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.org")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.org")
        .output()
        .expect("git is installed");
    assert!(output.status.success(), "git {args:?}: {}", stderr(&output));
}

#[test]
fn a_git_repository_installs_at_a_path_and_a_reference() {
    let fixture = Fixture::new();
    let repository = fixture.outside.join("skills-repo");
    copy_folder(
        &repo_root().join("tests/agent-skills/collection"),
        &repository.join("skills"),
    );
    git(&repository, &["init", "--quiet", "--initial-branch=main"]);
    git(&repository, &["add", "."]);
    git(&repository, &["commit", "--quiet", "-m", "skills"]);
    git(&repository, &["tag", "v1"]);
    // A later commit breaks the skill: the tag still names the good one.
    std::fs::write(
        repository.join("skills/with-references/SKILL.md"),
        "---\ndescription: broken\n---\n",
    )
    .unwrap();
    git(&repository, &["commit", "--quiet", "-am", "break it"]);

    let path = std::env::var("PATH").unwrap();
    let env = [("PATH", Path::new(&path))];
    let url = format!("file://{}", repository.display());
    let run = |args: &[&str]| talaria_with(&fixture, &env, args, None);
    let output = run(&[
        "skills",
        "install",
        &url,
        "--path",
        "skills/with-references",
        "--ref",
        "v1",
    ]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).starts_with("installed with-references v1.2.0"),
        "{}",
        stdout(&output)
    );
    assert!(!fixture.skills_dir.join("with-references/.git").exists());

    // The default branch holds the broken revision: refused, named by URL.
    let output = run(&[
        "skills",
        "install",
        &url,
        "--path",
        "skills/with-references",
    ]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains(&format!(
            "{url} → skills/with-references/SKILL.md: key `name`: missing field"
        )),
        "{}",
        stderr(&output)
    );
    // The installed revision is untouched.
    assert_eq!(
        list_row(&fixture, "with-references"),
        "with-references 1.2.0 0 granted"
    );
    // A whole collection at a reference.
    let output = run(&["skills", "install", &url, "--path", "skills", "--ref", "v1"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("installed all 4 skills of"),
        "{}",
        stdout(&output)
    );
    // A reference that does not exist, and options where a URL goes.
    let output = run(&["skills", "install", &url, "--ref", "v9"]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("cannot fetch v9 of"),
        "{}",
        stderr(&output)
    );
    // A link in what would be checked out: refused before the checkout.
    std::os::unix::fs::symlink("/etc/passwd", repository.join("skills/with-scripts/passwd"))
        .unwrap();
    git(&repository, &["add", "."]);
    git(&repository, &["commit", "--quiet", "-m", "a link"]);
    git(&repository, &["tag", "v2"]);
    let output = run(&[
        "skills",
        "install",
        &url,
        "--path",
        "skills/with-scripts",
        "--ref",
        "v2",
    ]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("skills/with-scripts/passwd is a symbolic link"),
        "{}",
        stderr(&output)
    );
    // The revision installed from v1 stays as it was.
    assert!(std::fs::symlink_metadata(fixture.skills_dir.join("with-scripts/passwd")).is_err());
    let output = run(&["skills", "install", "--", "--upload-pack=touch /tmp/x"]);
    assert_exit(&output, 2);
    assert!(
        leftovers(&fixture)
            .iter()
            .all(|name| !name.starts_with(".fetch-"))
    );
}

/// Every file under `dir`, relative, with its bytes.
fn files_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path.strip_prefix(dir).unwrap().to_owned(), bytes));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn export_writes_an_agent_skills_folder_that_installs_and_runs_again() {
    let fixture = Fixture::new();
    let source = crate::support::skill_source("examples/word-stats");
    let said = install(&fixture, &source);
    assert!(said.contains("is pending"), "{said}");
    let out = fixture.outside.join("exported");
    let output = talaria(
        &fixture,
        &["skills", "export", "word-stats", out.to_str().unwrap()],
    );
    assert_exit(&output, 0);
    assert!(
        stdout(&output).starts_with("exported word-stats v0.1.0 to"),
        "{}",
        stdout(&output)
    );
    let exported = out.join("word-stats");
    for file in ["SKILL.md", "skill.toml", "word-stats.wasm"] {
        assert!(exported.join(file).is_file(), "{file}");
    }
    // Another agent reads its frontmatter by the format's rules.
    let skill_md = std::fs::read_to_string(exported.join("SKILL.md")).unwrap();
    let frontmatter =
        talaria_runtime::skill::manifest::parse_frontmatter(&skill_md, "word-stats").unwrap();
    assert_eq!(frontmatter.description, "Word frequencies of a text");

    // Talaria installs it back, and its tool runs once granted.
    let other = Fixture::new();
    assert!(install(&other, &exported).contains("word-stats v0.1.0"));
    assert_exit(
        &talaria(&other, &["skills", "grant", "word-stats", "--yes"]),
        0,
    );
    let call = talaria(
        &other,
        &[
            "tool",
            "call",
            "word-stats.top_words",
            r#"{"text": "b a b"}"#,
        ],
    );
    assert_exit(&call, 0);
    assert!(stdout(&call).contains("\"b\""), "{}", stdout(&call));

    // An Agent Skill exports as it is, byte for byte.
    install(&fixture, &agent_skill("with-references"));
    let output = talaria(
        &fixture,
        &["skills", "export", "with-references", out.to_str().unwrap()],
    );
    assert_exit(&output, 0);
    assert_eq!(
        files_of(&out.join("with-references")),
        files_of(&agent_skill("with-references"))
    );
    // Never over what exists.
    let output = talaria(
        &fixture,
        &["skills", "export", "with-references", out.to_str().unwrap()],
    );
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );
}
