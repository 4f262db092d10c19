//! `talaria skills new NAME`: a skill folder an author starts from, with the
//! commands that build, install and grant it.
//!
//! The crate depends on `talaria-sdk` by path (the SDK is not published):
//! the `sdk` folder of the source tree this binary was built from, or
//! `--sdk`. The source tree's `Cargo.lock` is copied in when there is one,
//! so the first build uses the versions the workspace was tested with, all
//! already in cargo's cache. The crate is its own workspace (an empty
//! `[workspace]` table), so a workspace around the folder does not claim
//! it, and builds with the settings of the bundled skills.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::Failure;
use crate::cli::hint;
use crate::cli::output::stdout;
use crate::skill::manifest::is_skill_name;

/// The `sdk` folder of the source tree this binary was built from.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");

const WASM_TARGET: &str = "wasm32-wasip2";

pub(crate) fn new(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> Result<(), Failure> {
    if !is_skill_name(name) {
        return Err(Failure::usage(anyhow::anyhow!(
            "{name:?} is not a skill name: expected 1 to 64 characters of a-z, 0-9 and `-`, \
             starting with a letter, e.g. `my-skill`"
        )));
    }
    let parent = std::path::absolute(dir.unwrap_or(Path::new(".")))
        .context("cannot tell where to create the skill")?;
    let folder = parent.join(name);
    if folder.exists() {
        return Err(Failure::usage(anyhow::anyhow!(
            "{} already exists; choose another name, or another place with --dir",
            folder.display()
        )));
    }
    let sdk = find_sdk(sdk).map_err(Failure::usage)?;
    let lock = sdk.parent().map(|root| root.join("Cargo.lock"));
    let lock = lock.filter(|lock| lock.is_file());
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    std::fs::create_dir(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let scaffold = Scaffold::new(name, &sdk);
    if let Err(error) = scaffold.write(&folder, lock.as_deref()) {
        // Nothing half-made is left behind.
        let _ = std::fs::remove_dir_all(&folder);
        return Err(error.into());
    }

    let mut out = stdout();
    writeln!(out, "created skill {name} in {}:", folder.display())?;
    writeln!(
        out,
        "  skill.toml   the manifest: what the skill is and what it may use"
    )?;
    writeln!(out, "  SKILL.md     what the model reads about it")?;
    writeln!(
        out,
        "  Cargo.toml   a cdylib depending on talaria-sdk in {}",
        sdk.display()
    )?;
    writeln!(out, "  src/lib.rs   one example tool, `greet`")?;
    writeln!(out)?;
    writeln!(out, "Build it, install it, grant it and call its tool:")?;
    for command in scaffold.next_commands(&folder) {
        writeln!(out, "  {command}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "If cargo says the {WASM_TARGET} target is not installed: `rustup target add {WASM_TARGET}`."
    )?;
    writeln!(
        out,
        "After a change, build and copy again, then install and grant again (the grant is pinned \
         to the component's hash)."
    )?;
    Ok(())
}

/// The `sdk` folder to depend on: `--sdk`, or the source tree this binary
/// was built from.
fn find_sdk(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let is_sdk = |dir: &Path| {
        std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|text| text.contains("name = \"talaria-sdk\""))
    };
    match given {
        Some(dir) => {
            anyhow::ensure!(
                is_sdk(dir),
                "{} is not the talaria-sdk crate (no Cargo.toml naming talaria-sdk); pass --sdk \
                 the `sdk` folder of a Talaria source tree",
                dir.display()
            );
            dir.canonicalize()
                .with_context(|| format!("cannot open {}", dir.display()))
        }
        None => {
            let built_from = Path::new(BUILT_FROM_SDK);
            anyhow::ensure!(
                is_sdk(built_from),
                "cannot find the talaria-sdk crate: this talaria was built from a source tree \
                 whose sdk folder ({}) is not there any more; pass --sdk with the `sdk` folder of \
                 a Talaria source tree (the SDK is not on crates.io)",
                built_from.display()
            );
            built_from
                .canonicalize()
                .with_context(|| format!("cannot open {}", built_from.display()))
        }
    }
}

/// The files of a new skill.
struct Scaffold {
    name: String,
    /// The Cargo package: prefixed, so that no skill name (`serde`, `test`)
    /// clashes with a crate it depends on or one of Rust's own.
    package: String,
    sdk: PathBuf,
}

impl Scaffold {
    fn new(name: &str, sdk: &Path) -> Self {
        Self {
            name: name.to_owned(),
            package: format!("talaria-skill-{name}"),
            sdk: sdk.to_owned(),
        }
    }

    /// Where cargo puts the component, relative to the skill folder.
    fn built_component(&self) -> String {
        format!(
            "target/{WASM_TARGET}/release/{}.wasm",
            self.package.replace('-', "_")
        )
    }

    /// The component named in skill.toml: inside the folder, outside
    /// `target/` (which `skills install` does not copy).
    fn component(&self) -> String {
        format!("{}.wasm", self.name)
    }

    fn files(&self) -> Vec<(&'static str, String)> {
        let fill = |template: &str| {
            template
                .replace("__NAME__", &self.name)
                .replace("__PACKAGE__", &self.package)
                .replace("__COMPONENT__", &self.component())
                .replace("__BUILT__", &self.built_component())
                .replace("__SDK__", &toml_string(&self.sdk.to_string_lossy()))
        };
        vec![
            ("skill.toml", fill(SKILL_TOML)),
            ("SKILL.md", fill(SKILL_MD)),
            ("Cargo.toml", fill(CARGO_TOML)),
            ("src/lib.rs", fill(LIB_RS)),
            (".gitignore", fill(GITIGNORE)),
        ]
    }

    fn write(&self, folder: &Path, lock: Option<&Path>) -> anyhow::Result<()> {
        for (file, text) in self.files() {
            let path = folder.join(file);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if let Some(lock) = lock {
            std::fs::copy(lock, folder.join("Cargo.lock"))
                .with_context(|| format!("cannot copy {}", lock.display()))?;
        }
        Ok(())
    }

    /// Build, copy the component where skill.toml says, install, grant,
    /// call: each a command that works when pasted, in order.
    fn next_commands(&self, folder: &Path) -> Vec<String> {
        vec![
            format!("cd {}", hint::quote(&folder.to_string_lossy())),
            format!("cargo build --target {WASM_TARGET} --release"),
            format!("cp {} {}", self.built_component(), self.component()),
            hint::talaria("skills install ."),
            hint::talaria(&format!("skills grant {}", self.name)),
            hint::talaria(&format!(
                "tool call {}.greet '{{\"name\": \"world\"}}'",
                self.name
            )),
        ]
    }
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

const SKILL_TOML: &str = r#"# The manifest of the __NAME__ skill. Every key: see "The skill manifest" in
# Talaria's README.

[skill]
name = "__NAME__"
version = "0.1.0"
# One line for the model: what the skill does, so it knows when to use it.
description = "Greets someone by name"
# Built by `cargo build --target wasm32-wasip2 --release`, then copied here:
#   cp __BUILT__ __COMPONENT__
component = "__COMPONENT__"
# The versions of the talaria:skill WIT package this skill works with.
api = "^0.1"

# What the skill may use besides its arguments: nothing unless requested
# here AND granted by the operator (`talaria skills grant __NAME__`).
# [capabilities]
# mounts = [{ source = "${workspace}", guest = "/workspace", access = "read-only" }]
# env = ["MY_SERVICE_TOKEN"]

[limits]
memory_mb = 32
timeout_ms = 2000
"#;

const SKILL_MD: &str = r#"---
name: __NAME__
description: Greets someone by name
---

# __NAME__

Use `greet` to greet someone by name.

- `name` (required): who to greet.

The result is the greeting, as plain text.
"#;

const CARGO_TOML: &str = r#"[package]
name = "__PACKAGE__"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
schemars = "1"
serde = { version = "1", features = ["derive"] }
# Not on crates.io: the sdk folder of a Talaria source tree.
talaria-sdk = { path = __SDK__ }

# A crate of its own, even inside another workspace's folder.
[workspace]

# As the bundled skills are built: small components compile and load faster.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
"#;

const LIB_RS: &str = r#"//! The __NAME__ skill: its tools, exported to Talaria.
//!
//! Each tool is a function from an argument struct to a result; the SDK
//! derives the JSON Schema the model sees from the struct (doc comments
//! become descriptions) and turns arguments that do not fit into an
//! `invalid-arguments` error.

use schemars::JsonSchema;
use serde::Deserialize;
use talaria_sdk::{ToolError, Toolset};

/// Arguments of `greet`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GreetArgs {
    /// Who to greet.
    name: String,
}

/// A greeting for `name`.
fn greet(args: GreetArgs) -> Result<String, ToolError> {
    let name = args.name.trim();
    if name.is_empty() {
        return Err(ToolError::invalid_arguments("`name` must not be empty"));
    }
    Ok(format!("Hello, {name}!"))
}

fn tools() -> Toolset {
    Toolset::new().tool("greet", "Greet someone by name.", greet)
}

talaria_sdk::export_skill!(tools);
"#;

const GITIGNORE: &str = "/target\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_and_the_instructions_agree_and_validate() {
        let scaffold = Scaffold::new("demo-skill", Path::new("/src/talaria/sdk"));
        let files: std::collections::HashMap<_, _> = scaffold.files().into_iter().collect();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("skill.toml"), &files["skill.toml"]).unwrap();
        let manifest =
            crate::skill::Manifest::load(&dir.path().join("skill.toml")).expect("valid manifest");
        assert_eq!(manifest.name, "demo-skill");
        assert_eq!(
            manifest.component.as_deref(),
            Some(Path::new("demo-skill.wasm"))
        );
        assert_eq!(
            crate::skill::frontmatter_description(&files["SKILL.md"]).as_deref(),
            Some(manifest.description.as_str())
        );
        assert!(files["SKILL.md"].starts_with("---\nname: demo-skill\n"));
        assert!(
            files["Cargo.toml"].contains("talaria-sdk = { path = \"/src/talaria/sdk\" }"),
            "{}",
            files["Cargo.toml"]
        );
        assert!(files["Cargo.toml"].contains("name = \"talaria-skill-demo-skill\""));
        assert_eq!(
            scaffold.built_component(),
            "target/wasm32-wasip2/release/talaria_skill_demo_skill.wasm"
        );
    }

    #[test]
    fn paths_are_quoted_for_toml() {
        assert_eq!(toml_string(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
    }
}
