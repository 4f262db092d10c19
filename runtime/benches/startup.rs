//! Start-up benchmark: `cargo bench --bench startup` (after
//! `cargo xtask build-skills`; see BENCHMARKS.md).
//!
//! Runs `talaria chat -q hello` against a model on loopback that answers at
//! once, as a user would, and measures the whole process:
//!
//! - with 3 and with 20 granted skills, run alternately (the goal: 20 skills
//!   cost no more than 1.2x 3 skills: start must not pay for every skill);
//! - with the compiled-component cache emptied, a chat calling one tool
//!   (it compiles that one component);
//! - as the baseline, measured in the same run: `talaria --version`, the
//!   same binary started and stopped without touching a home.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{instant_model, machine, percentile, ratio, report};

const RUNS: usize = 30;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ lives in the repository")
        .to_owned();
    let text_skill = root.join("skills/text");
    anyhow::ensure!(
        text_skill.join("text.wasm").is_file(),
        "{} is missing: run `cargo xtask build-skills` first",
        text_skill.join("text.wasm").display()
    );
    let scratch = tempfile::tempdir()?;
    println!("machine: {}", machine());
    println!();

    let model = instant_model()?;
    let three = Home::with_skills(scratch.path().join("three"), &text_skill, 3, &model)?;
    let twenty = Home::with_skills(scratch.path().join("twenty"), &text_skill, 20, &model)?;
    // One warm-up each: the first start after a grant may still write caches.
    three.chat()?;
    twenty.chat()?;

    println!("== `talaria chat -q hello`, instant model, {RUNS} runs each, alternating");
    let (mut with_three, mut with_twenty, mut version) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        with_three.push(timed(|| three.chat())?);
        with_twenty.push(timed(|| twenty.chat())?);
        version.push(timed(|| {
            run(Command::new(env!("CARGO_BIN_EXE_talaria")).arg("--version"))
        })?);
    }
    for samples in [&mut with_three, &mut with_twenty, &mut version] {
        samples.sort();
    }
    report("3 granted skills", &with_three);
    report("20 granted skills", &with_twenty);
    report("baseline: `talaria --version`", &version);
    println!(
        "  20 skills ÷ 3 skills, p50: {:.2}x (goal ≤ 1.2x); 3 skills ÷ baseline: {:.1}x",
        ratio(&with_twenty, &with_three),
        ratio(&with_three, &version)
    );

    println!();
    println!("== empty compiled-component cache, a chat calling one tool (3 skills)");
    let mut cold = Vec::new();
    let mut compiled = 0;
    for _ in 0..5 {
        std::fs::remove_dir_all(three.root.join("cache/components"))?;
        let started = Instant::now();
        let output = three.chat_calling_a_tool()?;
        cold.push(started.elapsed());
        compiled = String::from_utf8_lossy(&output.stderr)
            .matches("compiled a component into the cache")
            .count();
    }
    cold.sort();
    report(&format!("components compiled: {compiled}"), &cold);
    println!(
        "  cold ÷ warm 3-skill start, p50: {:.1}x",
        percentile(&cold, 50).as_secs_f64() / percentile(&with_three, 50).as_secs_f64()
    );
    println!();
    println!("after the run: {}", support::load());
    Ok(())
}

/// A data home with `count` granted copies of a skill.
struct Home {
    root: PathBuf,
    model: String,
}

impl Home {
    fn with_skills(
        root: PathBuf,
        source: &Path,
        count: usize,
        model: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&root)?;
        let home = Self {
            root,
            model: model.to_owned(),
        };
        let incoming = home.root.join("incoming");
        for index in 0..count {
            let name = format!("text{index}");
            let dir = incoming.join(&name);
            std::fs::create_dir_all(&dir)?;
            for file in ["SKILL.md", "text.wasm"] {
                std::fs::copy(source.join(file), dir.join(file))?;
            }
            let manifest = std::fs::read_to_string(source.join("skill.toml"))?.replacen(
                "name = \"text\"",
                &format!("name = \"{name}\""),
                1,
            );
            std::fs::write(dir.join("skill.toml"), manifest)?;
            home.talaria(&["skills", "install", dir.to_str().unwrap_or_default()])?;
            home.talaria(&["skills", "grant", &name, "--yes"])?;
        }
        Ok(home)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_talaria"));
        command
            .env_clear()
            .env("TALARIA_HOME", &self.root)
            .env("TALARIA_MODEL_BASE_URL", &self.model)
            .env("TALARIA_MODEL", "bench");
        command
    }

    fn talaria(&self, args: &[&str]) -> anyhow::Result<Output> {
        run(self.command().args(args))
    }

    fn chat(&self) -> anyhow::Result<Output> {
        self.talaria(&["chat", "-q", "hello"])
    }

    /// A chat whose model calls `text0__count` once (see
    /// [`instant_model`]).
    fn chat_calling_a_tool(&self) -> anyhow::Result<Output> {
        run(self
            .command()
            .env("TALARIA_LOG", "talaria_runtime::sandbox=debug")
            .args(["chat", "-q", "count please"]))
    }
}

fn run(command: &mut Command) -> anyhow::Result<Output> {
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

fn timed(body: impl FnOnce() -> anyhow::Result<Output>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    body()?;
    Ok(started.elapsed())
}
