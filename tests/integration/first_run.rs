//! The first hour of a new user: `talaria` installed the way `cargo xtask
//! install` does it, the READMEs' commands run word for word, configuring a
//! model, the warnings and errors met on the way.
//!
//! The install is the xtask's own code (`xtask/src/install.rs`, included
//! in `main.rs`) applied to the binary these tests were built with: `cargo xtask
//! install` runs the same build first (`cargo test --workspace --no-run`),
//! so the binary is the one it would install, and nothing is built again
//! inside a test.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{
    FakeModel, Fixture, Reply, assert_exit, repo_root, skill_source, stderr, stdout, talaria,
    talaria_with,
};

/// A user's machine after `cargo xtask install --prefix PREFIX`: PREFIX
/// holds `bin/talaria` and `share/talaria/skills/`, HOME is empty (so the
/// data home is the default `~/.talaria`), and PATH has `PREFIX/bin` and
/// the system's directories only.
struct Machine {
    _dir: tempfile::TempDir,
    prefix: PathBuf,
    home: PathBuf,
    path: OsString,
}

impl Machine {
    fn installed() -> Self {
        for skill in ["skills/files", "skills/text", "skills/json"] {
            skill_source(skill);
        }
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("prefix");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        crate::install::install(
            Path::new(env!("CARGO_BIN_EXE_talaria")),
            &repo_root(),
            &prefix,
        )
        .unwrap();
        let path =
            std::env::join_paths([prefix.join("bin"), "/usr/bin".into(), "/bin".into()]).unwrap();
        Self {
            _dir: dir,
            prefix,
            home,
            path,
        }
    }

    /// `line` run by bash (the shell most users paste into, and the one the
    /// README's completion line is written for) from the repository root.
    fn run(&self, line: &str) -> Output {
        Command::new("bash")
            .args(["-c", line])
            .current_dir(repo_root())
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    /// `line` run in the state the machine is in now, which is then put
    /// back: to try a printed hint without changing what follows.
    fn try_run(&self, line: &str) -> Output {
        let saved = self.home.with_extension("saved");
        copy_tree(&self.home, &saved);
        let output = self.run(line);
        std::fs::remove_dir_all(&self.home).unwrap();
        std::fs::rename(&saved, &self.home).unwrap();
        output
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A command of a README: a line of a ```sh block, the exit code its
/// comment announces (`(exits N)`, else 0), and the output the next line
/// shows as a comment (`# ...` right below it), if any.
#[derive(Debug)]
struct Step {
    line: String,
    exit: i32,
    output: Option<String>,
}

/// The steps of the ```sh blocks of `markdown`, except blocks right below
/// an `<!-- not run by the tests: WHY -->` line.
fn steps(markdown: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut skipped = false;
    let mut previous = "";
    for line in markdown.lines() {
        let trimmed = line.trim();
        if !in_block && trimmed == "```sh" {
            in_block = true;
            skipped = previous.starts_with("<!-- not run by the tests:");
        } else if in_block && trimmed == "```" {
            in_block = false;
        } else if in_block && !skipped && !trimmed.is_empty() {
            match trimmed.strip_prefix("# ") {
                Some(shown) => {
                    let step = steps.last_mut().expect("an output line follows a command");
                    assert!(step.output.is_none(), "one output line per command: {line}");
                    step.output = Some(shown.to_owned());
                }
                None => {
                    let exit = trimmed
                        .rsplit_once("(exits ")
                        .and_then(|(_, rest)| rest.split(')').next())
                        .map_or(0, |code| code.parse().unwrap());
                    steps.push(Step {
                        line: trimmed.to_owned(),
                        exit,
                        output: None,
                    });
                }
            }
        }
        if !trimmed.is_empty() {
            previous = trimmed;
        }
    }
    steps
}

/// Every `talaria ...` command a CLI output quotes in backticks.
fn hints(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| quoted.starts_with("talaria "))
        .map(str::to_owned)
        .collect()
}

/// Run `steps` on `machine`, each with the exit code and output it
/// announces; every hint a command prints is tried where it was printed,
/// and must work too. Returns the number of commands run.
fn follow(machine: &Machine, steps: &[Step]) -> usize {
    for step in steps {
        let output = machine.run(&step.line);
        let shown = format!(
            "$ {}\nstdout: {}\nstderr: {}",
            step.line,
            stdout(&output),
            stderr(&output)
        );
        assert_eq!(output.status.code(), Some(step.exit), "{shown}");
        if let Some(expected) = &step.output {
            assert_eq!(stdout(&output).trim_end(), expected, "{shown}");
        }
        // `talaria chat` is named, not offered to paste: it needs a model.
        let printed = format!("{}{}", stdout(&output), stderr(&output));
        for hint in hints(&printed)
            .into_iter()
            .filter(|h| !h.starts_with("talaria chat"))
        {
            // Pasted at a terminal, `grant` asks; these tests have none.
            let pasted = if hint.contains(" skills grant ") {
                format!("{hint} --yes")
            } else {
                hint.clone()
            };
            let tried = machine.try_run(&pasted);
            // A hint may find something to report (`skills audit` exits 1
            // while a skill waits), but never fail to run.
            let ok = if hint.contains(" skills grant ") {
                tried.status.code() == Some(0)
            } else {
                matches!(tried.status.code(), Some(0 | 1))
            };
            assert!(
                ok,
                "the hint `{hint}` printed by `{}` does not work:\nstdout: {}\nstderr: {}",
                step.line,
                stdout(&tried),
                stderr(&tried)
            );
        }
    }
    steps.len()
}

#[test]
fn the_word_stats_walkthrough_works_word_for_word() {
    let readme =
        std::fs::read_to_string(repo_root().join("examples/word-stats/README.md")).unwrap();
    let steps = steps(&readme);
    assert!(
        steps
            .iter()
            .any(|s| s.line.starts_with("talaria skills install")),
        "{steps:?}"
    );
    let machine = Machine::installed();
    assert!(follow(&machine, &steps) >= 4);
}

/// The README's `## heading` section, up to the next one.
fn section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let start = markdown
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no {heading}"));
    let end = markdown[start + 1..]
        .find("\n## ")
        .map_or(markdown.len(), |end| start + 1 + end);
    &markdown[start..end]
}

#[test]
fn the_readmes_install_and_cli_commands_work_word_for_word() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut all = steps(section(&readme, "## Install"));
    assert!(
        all.iter().any(|s| s.line.starts_with("talaria doctor")),
        "{all:?}"
    );
    all.extend(steps(section(&readme, "## Using the CLI")));
    let machine = Machine::installed();
    assert!(follow(&machine, &all) >= 8, "{all:?}");
}

#[test]
fn the_installed_layout_has_the_binary_and_the_bundled_skills_beside_it() {
    let machine = Machine::installed();
    let skills = machine.prefix.join("share/talaria/skills");
    let mut names: Vec<String> = std::fs::read_dir(&skills)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["files", "json", "text", "web"]);
    let mut files: Vec<String> = std::fs::read_dir(skills.join("text"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["SKILL.md", "skill.toml", "text.wasm"]);
    // Found by the binary beside them, synced and granted on first use.
    let output = machine.run("talaria skills list --json");
    assert_exit(&output, 0);
    let listed: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let states: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("files", "granted"),
            ("json", "granted"),
            ("text", "granted"),
            ("web", "granted")
        ]
    );
    assert!(
        machine
            .home
            .join(".talaria/skills/text/text.wasm")
            .is_file()
    );
    // Installing again replaces both, and leaves nothing behind.
    crate::install::install(
        Path::new(env!("CARGO_BIN_EXE_talaria")),
        &repo_root(),
        &machine.prefix,
    )
    .unwrap();
    let mut share: Vec<String> = std::fs::read_dir(machine.prefix.join("share/talaria"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    share.sort();
    assert_eq!(share, ["skills"]);
    assert_exit(
        &machine.run("talaria tool call text.count '{\"text\": \"a b\"}'"),
        0,
    );
}

/// The lines of `text` after `intro`, up to the first blank line, without
/// their indentation: what a user would copy from an error message.
fn block_after<'a>(text: &'a str, intro: &str) -> Vec<&'a str> {
    let start = text
        .find(intro)
        .unwrap_or_else(|| panic!("no {intro:?} in {text}"))
        + intro.len();
    text[start..]
        .lines()
        .skip_while(|line| line.trim().is_empty())
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    write!(file, "\n{text}\n").unwrap();
}

#[test]
fn chat_without_a_model_says_what_to_paste_and_the_pasted_lines_work() {
    let fixture = Fixture::new();
    let config_file = fixture.root.path().join("config.toml");
    let output = talaria(&fixture, &["chat", "-q", "hello"]);
    assert_exit(&output, 1);
    let error = stderr(&output);
    assert!(
        error.starts_with("error: no model is configured"),
        "{error}"
    );
    let toml = block_after(&error, &format!("add to {}:", config_file.display()));
    assert_eq!(
        toml,
        [
            "[model]",
            "base_url = \"http://127.0.0.1:8000/v1\"",
            "name = \"qwen2.5-7b-instruct\""
        ]
    );
    let env = block_after(&error, "or set them in the environment:");
    assert_eq!(
        env,
        [
            "export TALARIA_MODEL_BASE_URL=http://127.0.0.1:8000/v1",
            "export TALARIA_MODEL=qwen2.5-7b-instruct"
        ]
    );

    // doctor says the same, as a warning: tools work without a model.
    let output = talaria(&fixture, &["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let model = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "model")
        .unwrap_or_else(|| panic!("no model finding: {report}"));
    assert_eq!(model["severity"], "warning", "{model}");
    assert!(
        model["fix"]
            .as_str()
            .unwrap()
            .contains("`base_url = \"http://127.0.0.1:8000/v1\"`"),
        "{model}"
    );

    // Pasted at the end of the seeded config.toml, with the address of the
    // server at hand, the lines are all chat needs.
    let server = FakeModel::start(vec![Reply::answer("Hello!")]);
    let pasted = toml
        .join("\n")
        .replace("http://127.0.0.1:8000/v1", &server.base_url);
    append(&config_file, &pasted);
    let output = talaria(&fixture, &["chat", "-q", "hello"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "Hello!\n");
    assert_eq!(
        server.requests()[0]["model"],
        "qwen2.5-7b-instruct",
        "the name pasted is the model asked for"
    );
    let output = talaria(&fixture, &["doctor", "--json"]);
    assert!(
        stdout(&output).contains(&format!("at {} (config.toml)", server.base_url)),
        "{}",
        stdout(&output)
    );
}

#[test]
fn the_readmes_model_block_pastes_into_the_seeded_config() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let chatting = &readme[readme.find("## Chatting").unwrap()..];
    let block = fenced_blocks(chatting, "toml")
        .into_iter()
        .next()
        .expect("a toml block in Chatting");
    let fixture = Fixture::new();
    assert_exit(&talaria(&fixture, &["config", "path"]), 0);
    assert_exit(&talaria(&fixture, &["skills", "list"]), 0);
    append(&fixture.root.path().join("config.toml"), &block);
    let output = talaria(&fixture, &["config", "show"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("http://127.0.0.1:8000/v1"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_table_pasted_twice_is_named_with_the_file_and_both_lines() {
    let fixture = Fixture::new();
    let config_file = fixture.root.path().join("config.toml");
    // A home seeded before the [model] header was commented out.
    std::fs::write(&config_file, "[model]\n# name = \"default\"\n").unwrap();
    append(
        &config_file,
        "[model]\nbase_url = \"http://127.0.0.1:8000/v1\"",
    );
    let output = talaria(&fixture, &["config", "show"]);
    assert_exit(&output, 1);
    assert_eq!(
        stderr(&output),
        format!(
            "error: {}: invalid TOML: duplicate table `[model]` (line 4, column 2), already defined at \
             line 1: keep one `[model]` header and put all its keys under it\n",
            config_file.display()
        )
    );
    // chat, asked without a model, says to add the lines under that table.
    std::fs::write(&config_file, "[model]\n# name = \"default\"\n").unwrap();
    let output = talaria(&fixture, &["chat", "-q", "hi"]);
    assert_exit(&output, 1);
    let error = stderr(&output);
    assert_eq!(
        block_after(
            &error,
            &format!("add under the [model] table of {}:", config_file.display())
        ),
        [
            "base_url = \"http://127.0.0.1:8000/v1\"",
            "name = \"qwen2.5-7b-instruct\""
        ]
    );
}

#[test]
fn a_dotenv_others_can_read_is_reported_by_every_command_that_reads_it() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new();
    assert_exit(&talaria(&fixture, &["skills", "list"]), 0);
    let dotenv = fixture.root.path().join(".env");
    std::fs::set_permissions(&dotenv, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warning = format!(
        "warning: {} holds secrets but is mode 644: other users can read it; fix: chmod 600 {}\n",
        dotenv.display(),
        dotenv.display()
    );
    for args in [
        &["skills", "list"][..],
        &["tool", "list"],
        &["config", "show"],
        &["sessions", "list"],
    ] {
        let output = talaria(&fixture, args);
        assert_exit(&output, 0);
        assert!(
            stderr(&output).contains(&warning),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // chat reads .env too (the API key), and warns before anything else.
    let server = FakeModel::start(vec![Reply::answer("hi")]);
    let env = [("TALARIA_MODEL_BASE_URL", Path::new(&server.base_url))];
    let output = talaria_with(&fixture, &env, &["chat", "-q", "hi"], None);
    assert_exit(&output, 0);
    assert!(stderr(&output).starts_with(&warning), "{}", stderr(&output));
    // doctor lists it among its findings instead, once.
    let output = talaria(&fixture, &["doctor"]);
    assert!(!stderr(&output).contains("warning:"), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(&format!("fix: chmod 600 {}", dotenv.display())),
        "{}",
        stdout(&output)
    );
    // The fix silences it.
    std::fs::set_permissions(&dotenv, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = talaria(&fixture, &["skills", "list"]);
    assert_eq!(stderr(&output), "");
}

/// The contents of every fenced block of `language` in `markdown`.
pub fn fenced_blocks(markdown: &str, language: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{language}") => current = Some(Vec::new()),
            Some(lines) if line.trim_start() == "```" => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            Some(lines) => lines.push(line),
            None => {}
        }
    }
    blocks
}

/// A refusal's hint must work from where the refused command ran: with the
/// skills directory it was given (`talaria skills grant word-stats` alone
/// would look in the home's `skills/` and answer "no skill named").
#[test]
fn a_refusal_hint_keeps_the_skills_dir_it_was_given() {
    let machine = Machine::installed();
    let refused = Step {
        line: r#"talaria --skills-dir examples tool call word-stats.top_words '{"text": "a b a"}'"#
            .to_owned(),
        exit: 1,
        output: None,
    };
    follow(&machine, &[refused]);
}
