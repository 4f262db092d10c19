//! The first hour of a new user: configuring a model, the warnings and
//! errors met on the way.

use std::path::Path;

use crate::support::{
    FakeModel, Fixture, Reply, assert_exit, repo_root, stderr, stdout, talaria, talaria_with,
};

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
