//! Project tasks, run with `cargo xtask <task>`:
//!
//! - `build-skills`: build every skill crate (bundled skills, examples, test
//!   skills) to wasm32-wasip2 and put each component where its `skill.toml`
//!   says.
//! - `test`: `build-skills`, then every test of the workspace.
//! - `demo`: `build-skills`, then list, grant and call the bundled skills in
//!   a data home under `target/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const WASM_TARGET: &str = "wasm32-wasip2";
/// The Cargo profile skills are built with (see the workspace Cargo.toml).
const SKILL_PROFILE: &str = "skill";
/// Folders whose sub-folders with both `Cargo.toml` and `skill.toml` are skills.
const SKILL_ROOTS: &[&str] = &["skills", "examples", "tests/skills"];

fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "build-skills" => build_skills(&root),
        "test" => {
            build_skills(&root)?;
            run(Command::new(cargo())
                .current_dir(&root)
                .args(["test", "--workspace"]))
        }
        "demo" => demo(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 build-skills  build every skill to {WASM_TARGET} and place its component\n  \
                 test          build-skills, then run every test\n  \
                 demo          build-skills, list the bundled skills and call one tool"
            );
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

struct SkillCrate {
    dir: PathBuf,
    package: String,
    component: String,
}

fn build_skills(root: &Path) -> anyhow::Result<()> {
    ensure_wasm_target()?;
    let crates = skill_crates(root)?;
    let mut build = Command::new(cargo());
    build
        .current_dir(root)
        .args(["build", "--profile", SKILL_PROFILE, "--target", WASM_TARGET]);
    for skill in &crates {
        build.args(["--package", &skill.package]);
    }
    run(&mut build)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    for skill in &crates {
        let built = target_dir
            .join(WASM_TARGET)
            .join(SKILL_PROFILE)
            .join(format!("{}.wasm", skill.package.replace('-', "_")));
        let destination = skill.dir.join(&skill.component);
        copy_atomically(&built, &destination)?;
        println!(
            "{} -> {}",
            skill.package,
            destination
                .strip_prefix(root)
                .unwrap_or(&destination)
                .display()
        );
    }
    Ok(())
}

/// `rustup target add` is idempotent but slow to start; ask first.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(output)
            if String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET) =>
        {
            Ok(())
        }
        Ok(_) => run(Command::new("rustup").args(["target", "add", WASM_TARGET])),
        // Without rustup the toolchain must already have the target.
        Err(_) => Ok(()),
    }
}

fn skill_crates(root: &Path) -> anyhow::Result<Vec<SkillCrate>> {
    let mut crates = Vec::new();
    for skill_root in SKILL_ROOTS {
        let Ok(entries) = std::fs::read_dir(root.join(skill_root)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        for dir in dirs {
            let (cargo_toml, skill_toml) = (dir.join("Cargo.toml"), dir.join("skill.toml"));
            if !cargo_toml.is_file() || !skill_toml.is_file() {
                continue;
            }
            let package = read_toml(&cargo_toml)?
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .with_context(|| format!("{}: no package.name", cargo_toml.display()))?
                .to_owned();
            let component = read_toml(&skill_toml)?
                .get("skill")
                .and_then(|s| s.get("component"))
                .and_then(|c| c.as_str())
                .with_context(|| format!("{}: no skill.component", skill_toml.display()))?
                .to_owned();
            crates.push(SkillCrate {
                dir,
                package,
                component,
            });
        }
    }
    Ok(crates)
}

fn read_toml(path: &Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))
}

fn copy_atomically(from: &Path, to: &Path) -> anyhow::Result<()> {
    let temp = to.with_extension("wasm.tmp");
    std::fs::copy(from, &temp)
        .with_context(|| format!("cannot copy {} to {}", from.display(), temp.display()))?;
    std::fs::rename(&temp, to)
        .with_context(|| format!("cannot rename {} to {}", temp.display(), to.display()))?;
    Ok(())
}

fn demo(root: &Path) -> anyhow::Result<()> {
    build_skills(root)?;
    // A data home of its own, so the demo leaves the user's ~/.talaria alone.
    // The workspace is `examples/`: Talaria refuses a workspace that overlaps
    // its data home or the skills directory (`skills/` here).
    let home = std::env::temp_dir().join("talaria-demo-home");
    let home = home.to_string_lossy().into_owned();
    let talaria = |args: &[&str]| -> anyhow::Result<()> {
        println!("\n$ talaria {}", args.join(" "));
        run(Command::new(cargo())
            .current_dir(root)
            .args([
                "run",
                "--quiet",
                "--package",
                "talaria-runtime",
                "--bin",
                "talaria",
                "--",
            ])
            .args([
                "--home",
                &home,
                "--skills-dir",
                "skills",
                "--workspace",
                "examples",
            ])
            .args(args))
    };
    talaria(&["skills", "list"])?;
    talaria(&["skills", "grant", "text", "--yes"])?;
    talaria(&["skills", "grant", "files", "--yes"])?;
    talaria(&["tool", "list"])?;
    talaria(&[
        "tool",
        "call",
        "text.count",
        r#"{"text": "Talaria runs every skill in a sandbox."}"#,
    ])?;
    talaria(&[
        "tool",
        "call",
        "files.read",
        r#"{"path": "word-stats/README.md", "end_line": 5}"#,
    ])?;
    talaria(&["skills", "audit"]).or_else(|_| {
        println!("(audit exits 1 while a skill is not granted: json is still pending)");
        Ok(())
    })
}
