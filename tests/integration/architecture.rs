//! The module map of `runtime/src` holds: data flows one way, from the entry
//! points (`cli`, `doctor`, `gateway` and `container`) through
//! `app` to `agent`, the skill registry and the sandbox, and no module
//! reaches up. These tests read the `crate::` paths of every source file
//! and fail naming the file and the path when a module depends the wrong
//! way (see ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::repo_root;

/// What each top-level module must never use. A module not listed here
/// must be added, with its rule, before it can exist.
const FORBIDDEN: &[(&str, &[&str])] = &[
    // Entry points: parse and print, or check a home.
    ("cli", &[]),
    ("doctor", &["cli"]),
    ("gateway", &["cli", "doctor"]),
    // The image's entrypoint runs before everything else, as root for a
    // moment: it uses the home's layout and the ground floor, nothing that
    // reads settings, skills or a model.
    (
        "container",
        &[
            "cli", "doctor", "gateway", "app", "config", "agent", "skill", "memory", "sandbox",
            "backend", "approval",
        ],
    ),
    // The application core assembles everything below it.
    ("app", &["cli", "doctor", "gateway", "container"]),
    // Settings: read by app, passed down; it reads the defaults of the
    // modules whose settings it resolves.
    (
        "config",
        &[
            "cli",
            "doctor",
            "gateway",
            "container",
            "app",
            "agent",
            "skill",
        ],
    ),
    (
        "agent",
        &["cli", "doctor", "gateway", "container", "app", "config"],
    ),
    (
        "skill",
        &[
            "cli",
            "doctor",
            "gateway",
            "container",
            "app",
            "config",
            "agent",
            "memory",
        ],
    ),
    (
        "memory",
        &[
            "cli",
            "doctor",
            "gateway",
            "container",
            "app",
            "config",
            "agent",
            "skill",
            "sandbox",
        ],
    ),
    (
        "approval",
        &[
            "cli",
            "doctor",
            "gateway",
            "container",
            "app",
            "config",
            "agent",
            "skill",
            "sandbox",
            "memory",
        ],
    ),
    (
        "backend",
        &[
            "cli",
            "doctor",
            "gateway",
            "container",
            "app",
            "config",
            "agent",
            "skill",
            "sandbox",
            "memory",
        ],
    ),
    (
        "sandbox",
        &[
            "cli",
            "doctor",
            "gateway",
            "container",
            "app",
            "config",
            "agent",
            "skill",
            "memory",
            "backend",
            "approval",
        ],
    ),
    // The ground floor uses nothing but the ground floor.
    ("home", ABOVE_GROUND),
    ("clock", ABOVE_GROUND),
    ("untrusted_text", ABOVE_GROUND),
    ("untrusted_file", ABOVE_GROUND),
    ("toml_file", ABOVE_GROUND),
    ("log_buffer", ABOVE_GROUND),
    ("leak_scan", ABOVE_GROUND),
];

const ABOVE_GROUND: &[&str] = &[
    "cli",
    "doctor",
    "gateway",
    "container",
    "app",
    "config",
    "agent",
    "skill",
    "memory",
    "sandbox",
    "backend",
    "approval",
];

/// Every `crate::MODULE` a source text uses, outside comments.
fn used_modules(source: &str) -> Vec<String> {
    let mut used = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                // `use crate::{a, b::c};`
                let inner = group.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        used.push(name);
                    }
                }
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    used.push(name);
                }
            }
            rest = after;
        }
    }
    used
}

/// The top-level module a file of `runtime/src` belongs to (`sandbox` for
/// `sandbox.rs` and `sandbox/policy.rs`); `None` for the crate root and
/// the binary.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_owned();
    (!matches!(name.as_str(), "talaria_runtime" | "main")).then_some(name)
}

/// Each wrong-way dependency as `file: uses crate::X (MODULE must not use X)`.
fn violations(files: &BTreeMap<PathBuf, String>) -> Vec<String> {
    let rules: BTreeMap<&str, &[&str]> = FORBIDDEN.iter().copied().collect();
    let mut found = Vec::new();
    for (path, source) in files {
        let Some(module) = module_of(path) else {
            continue;
        };
        let Some(forbidden) = rules.get(module.as_str()) else {
            found.push(format!(
                "{}: module `{module}` has no rule in the architecture test; add one",
                path.display()
            ));
            continue;
        };
        for used in used_modules(source) {
            if used != module && forbidden.contains(&used.as_str()) {
                found.push(format!(
                    "{}: uses crate::{used} (`{module}` must not use `{used}`)",
                    path.display()
                ));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn runtime_sources() -> BTreeMap<PathBuf, String> {
    let root = repo_root().join("runtime/src");
    let mut files = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&root).unwrap().to_owned();
                files.insert(relative, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn no_module_depends_the_wrong_way() {
    let files = runtime_sources();
    assert!(files.len() > 20, "found the sources: {}", files.len());
    let found = violations(&files);
    assert!(
        found.is_empty(),
        "wrong-way dependencies:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_cli_uses_the_cli() {
    let files = runtime_sources();
    let users: Vec<&PathBuf> = files
        .iter()
        .filter(|(path, source)| {
            module_of(path).is_some_and(|m| m != "cli")
                && used_modules(source).iter().any(|m| m == "cli")
        })
        .map(|(path, _)| path)
        .collect();
    assert!(users.is_empty(), "{users:?}");
}

#[test]
fn the_checker_sees_every_form_of_path() {
    let mut files = BTreeMap::new();
    files.insert(
        PathBuf::from("sandbox/policy.rs"),
        "use crate::skill::Skill;\n// crate::agent in a comment does not count\nlet x = crate::untrusted_text::message(\"\");".to_owned(),
    );
    files.insert(
        PathBuf::from("skill.rs"),
        "use crate::{home::Home, agent::Agent};".to_owned(),
    );
    files.insert(PathBuf::from("gizmo.rs"), "fn main() {}".to_owned());
    files.insert(
        PathBuf::from("app.rs"),
        "use crate::skill::registry::SkillRegistry;".to_owned(),
    );
    assert_eq!(
        violations(&files),
        [
            "gizmo.rs: module `gizmo` has no rule in the architecture test; add one",
            "sandbox/policy.rs: uses crate::skill (`sandbox` must not use `skill`)",
            "skill.rs: uses crate::agent (`skill` must not use `agent`)",
        ]
    );
}
