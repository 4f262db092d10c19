//! The bundled skills (`skills/`), run as real components in the sandbox.

use crate::support::{Fixture, repo_root, skill_source};
use serde_json::{Value, json};
use talaria_runtime::sandbox::{LoadedSkill, Sandbox, ToolCallErrorKind};
use talaria_runtime::skill::{self, Skill};

const BUNDLED: [&str; 4] = ["files", "text", "json", "web"];

struct Bundled {
    fixture: Fixture,
    sandbox: Sandbox,
}

impl Bundled {
    fn new() -> Self {
        let fixture = Fixture::new();
        for name in BUNDLED {
            fixture.install(&skill_source(&format!("skills/{name}")), name, None);
        }
        let sandbox = fixture.sandbox();
        Self { fixture, sandbox }
    }

    async fn skill(&self, name: &str) -> LoadedSkill {
        self.fixture.load(&self.sandbox, name).await
    }
}

async fn call(skill: &LoadedSkill, tool: &str, arguments: Value) -> String {
    match skill.call(tool, &arguments.to_string()).await {
        Ok(output) => output.result,
        Err(error) => panic!("{tool}({arguments}): {error}"),
    }
}

async fn call_json(skill: &LoadedSkill, tool: &str, arguments: Value) -> Value {
    let text = call(skill, tool, arguments).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{tool} returned non-JSON ({e}): {text}"))
}

#[tokio::test]
async fn every_bundled_skill_is_complete_and_loads() {
    let bundled = Bundled::new();
    let found: Vec<String> = skill::discover(&repo_root().join("skills"))
        .unwrap()
        .into_iter()
        .map(|entry| entry.unwrap().manifest.name)
        .collect();
    assert_eq!(
        found,
        ["files", "json", "text", "web"],
        "every folder in skills/ is a valid skill"
    );
    for name in BUNDLED {
        let source = Skill::load(&skill_source(&format!("skills/{name}"))).unwrap();
        let instructions = source.instructions().expect("SKILL.md").to_owned();
        assert!(
            instructions.starts_with(&format!("---\nname: {name}\ndescription: ")),
            "{name}/SKILL.md starts with agentskills frontmatter"
        );
        let loaded = bundled.skill(name).await;
        assert!(!loaded.tools().is_empty(), "{name} offers tools");
        for tool in loaded.tools() {
            assert!(
                !tool.description.is_empty(),
                "{name}.{} has a description",
                tool.name
            );
            assert_eq!(
                tool.parameters_value()["type"],
                "object",
                "{name}.{} takes an object",
                tool.name
            );
            assert!(
                instructions.contains(&format!("`{}`", tool.name)),
                "{name}/SKILL.md documents `{}`",
                tool.name
            );
        }
    }
}

#[tokio::test]
async fn files_reads_lists_globs_and_searches_the_workspace() {
    let bundled = Bundled::new();
    let workspace = &bundled.fixture.workspace;
    std::fs::create_dir_all(workspace.join("src/nested")).unwrap();
    std::fs::write(
        workspace.join("src/main.rs"),
        "fn main() {\n    println!(\"hi\");\n}\n",
    )
    .unwrap();
    std::fs::write(
        workspace.join("src/nested/lib.rs"),
        "pub fn answer() -> u32 {\n    42\n}\n",
    )
    .unwrap();
    let files = bundled.skill("files").await;

    let text = call(
        &files,
        "read",
        json!({"path": "src/main.rs", "start_line": 2, "end_line": 2}),
    )
    .await;
    assert!(text.starts_with("2\t    println!(\"hi\");\n"), "{text}");
    assert!(text.contains("[lines 2-2 of 3]"), "{text}");

    let globbed = call_json(&files, "glob", json!({"pattern": "src/**/*.rs"})).await;
    assert_eq!(
        globbed["matches"],
        json!(["src/main.rs", "src/nested/lib.rs"])
    );

    let found = call(
        &files,
        "search",
        json!({"pattern": "fn \\w+\\(", "glob": "*.rs"}),
    )
    .await;
    assert!(found.contains("src/main.rs:1:fn main() {"), "{found}");
    assert!(
        found.contains("src/nested/lib.rs:1:pub fn answer() -> u32 {"),
        "{found}"
    );

    let listed = call_json(&files, "list", json!({"path": "src", "depth": 2})).await;
    let paths: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["src/main.rs", "src/nested", "src/nested/lib.rs"]);
}

#[tokio::test]
async fn files_refuses_paths_outside_the_workspace() {
    let bundled = Bundled::new();
    let files = bundled.skill("files").await;
    std::os::unix::fs::symlink(
        bundled.fixture.outside.join("secret.txt"),
        bundled.fixture.workspace.join("escape"),
    )
    .unwrap();
    for path in ["../outside/secret.txt", "/etc/passwd", "escape"] {
        let error = files
            .call("read", &json!({ "path": path }).to_string())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error.kind,
                ToolCallErrorKind::Denied(_) | ToolCallErrorKind::Failed(_)
            ),
            "{path}: {error}"
        );
        assert!(!error.to_string().contains("TOP SECRET"), "{path}: {error}");
    }
    let error = files.call("read", r#"{"path": "../x"}"#).await.unwrap_err();
    assert!(
        matches!(error.kind, ToolCallErrorKind::Denied(_)),
        "{error}"
    );
}

#[tokio::test]
async fn text_counts_finds_replaces_and_diffs() {
    let bundled = Bundled::new();
    let text = bundled.skill("text").await;
    assert_eq!(
        call_json(&text, "count", json!({"text": "one two\nthree é\n"})).await,
        json!({"lines": 2, "words": 4, "characters": 16, "bytes": 17})
    );
    let found = call_json(&text, "find", json!({"text": "a1\nb22", "pattern": "\\d+"})).await;
    let matches: Vec<(u64, &str)> = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["line"].as_u64().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(matches, [(1, "1"), (2, "22")]);
    assert_eq!(
        call_json(
            &text,
            "replace",
            json!({"text": "a-1 b-2", "find": "(\\w)-(\\d)", "replacement": "$2$1", "regex": true})
        )
        .await,
        json!({"text": "1a 2b", "replacements": 2})
    );
    let diff = call(&text, "diff", json!({"old": "a\nb\n", "new": "a\nc\n"})).await;
    assert_eq!(diff, "--- old\n+++ new\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n");
}

#[tokio::test]
async fn json_queries_formats_and_validates() {
    let bundled = Bundled::new();
    let skill = bundled.skill("json").await;
    let document = json!({"books": [{"title": "A", "price": 8}, {"title": "B", "price": 12}]});
    assert_eq!(
        call_json(
            &skill,
            "query",
            json!({"document": document, "path": "$.books[?@.price > 10].title"})
        )
        .await,
        json!(["B"])
    );
    assert_eq!(
        call(
            &skill,
            "format",
            json!({"document": "{\"b\":1,\"a\":2}", "sort_keys": true})
        )
        .await,
        "{\n  \"a\": 2,\n  \"b\": 1\n}"
    );
    let schema = json!({"type": "object", "properties": {"price": {"type": "integer"}}, "required": ["price"]});
    assert_eq!(
        call_json(
            &skill,
            "validate",
            json!({"document": {"price": 3}, "schema": schema})
        )
        .await["valid"],
        true
    );
    let report = call_json(
        &skill,
        "validate",
        json!({"document": {"price": "3"}, "schema": schema}),
    )
    .await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"][0]["instance_path"], "/price");

    let error = skill
        .call(
            "query",
            &json!({"document": "{not json", "path": "$"}).to_string(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind, ToolCallErrorKind::InvalidArguments(_)),
        "{error}"
    );
}
