//! Sandbox benchmark: `cargo bench -p talaria-runtime --bench sandbox`
//! (after `cargo xtask build-skills`).
//!
//! Prints, from one run: component compile time, cache load time, fresh-
//! instance call latency (new Store + WASI context + instantiate + call, the
//! production path), warm-instance call latency, and as the baseline measured
//! in the same run, fork/exec of a tiny native program doing the same work
//! (`/bin/echo`), with the ratio.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use talaria_runtime::sandbox::{CacheOutcome, Sandbox, SandboxConfig};
use talaria_runtime::skill::{MountRoots, Skill};

const FRESH_CALLS: usize = 20_000;
const WARM_CALLS: usize = 100_000;
const SPAWNS: usize = 1_000;
const COMPILES: usize = 5;
const CACHE_LOADS: usize = 200;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let scratch = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;

    println!("machine: {}", machine());
    println!();

    println!("== compile (no cache), {COMPILES} runs each, median");
    let uncached = Sandbox::new(SandboxConfig::default())?;
    let components = [
        "tests/skills/echo/echo.wasm",
        "skills/files/files.wasm",
        "skills/text/text.wasm",
        "skills/json/json.wasm",
    ];
    for relative in components {
        let path = root.join(relative);
        if !path.is_file() {
            anyhow::bail!(
                "{} is missing: run `cargo xtask build-skills` first",
                path.display()
            );
        }
        let wasm = std::fs::read(&path)?;
        let samples = measure(COMPILES, || uncached.prepare_component(&wasm).map(|_| ()))?;
        let size = std::fs::metadata(&path)?.len();
        println!(
            "  {:<32} {:>5} KiB  {:>9}",
            relative,
            size / 1024,
            format_duration(percentile(&samples, 50))
        );
    }

    println!();
    println!("== cache load (verify MAC + deserialize), {CACHE_LOADS} runs");
    let cached = Sandbox::new(SandboxConfig {
        cache_dir: Some(scratch.path().join("cache")),
        ..SandboxConfig::default()
    })?;
    let echo_wasm = root.join("tests/skills/echo/echo.wasm");
    let first = cached.prepare_component(&std::fs::read(&echo_wasm)?)?;
    anyhow::ensure!(
        matches!(first, CacheOutcome::Compiled { .. }),
        "the first load must compile"
    );
    let samples = measure(CACHE_LOADS, || {
        // Reading the file is part of a load from the cache.
        let outcome = cached.prepare_component(&std::fs::read(&echo_wasm)?)?;
        anyhow::ensure!(
            outcome == CacheOutcome::Hit,
            "expected a cache hit, got {outcome:?}"
        );
        Ok(())
    })?;
    report("echo.wasm from cache", &samples);

    let skill = Skill::load(&root.join("tests/skills/echo"))?;
    let roots = MountRoots {
        workspace: scratch.path().to_owned(),
        skill_data: scratch.path().join("skill-data"),
    };
    let capabilities = talaria_runtime::skill::capabilities::as_requested(&skill, &roots)?;
    let loaded =
        runtime.block_on(cached.load(skill.component_source().unwrap().unwrap(), capabilities))?;
    let arguments = r#"{"text":"hello"}"#;

    println!();
    println!("== tool call echo.echo");
    // Warm up the pool slots and the allocator.
    for _ in 0..1_000 {
        runtime.block_on(loaded.call("echo", arguments))?;
    }
    let fresh = measure(FRESH_CALLS, || {
        let output = runtime.block_on(loaded.call("echo", arguments))?;
        anyhow::ensure!(output.result == "hello");
        Ok(())
    })?;
    report(&format!("fresh instance per call ({FRESH_CALLS})"), &fresh);

    let mut warm_instance = runtime.block_on(loaded.warm_instance())?;
    let warm = measure(WARM_CALLS, || {
        let result = runtime.block_on(warm_instance.call("echo", arguments))?;
        anyhow::ensure!(result == "hello");
        Ok(())
    })?;
    report(&format!("warm instance ({WARM_CALLS})"), &warm);

    let echo_binary = PathBuf::from("/bin/echo");
    let spawn = measure(SPAWNS, || {
        let output = Command::new(&echo_binary).arg("hello").output()?;
        anyhow::ensure!(output.stdout == b"hello\n");
        Ok(())
    })?;
    report(&format!("baseline: fork/exec /bin/echo ({SPAWNS})"), &spawn);

    println!();
    let ratio = percentile(&spawn, 50).as_secs_f64() / percentile(&fresh, 50).as_secs_f64();
    println!("fresh sandboxed call vs fork/exec, p50: {ratio:.0}x faster");
    Ok(())
}

fn measure(
    runs: usize,
    mut body: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        body()?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[((sorted.len() - 1) * p) / 100]
}

fn report(what: &str, samples: &[Duration]) {
    println!(
        "  {what:<44} p50 {:>9}   p99 {:>9}",
        format_duration(percentile(samples, 50)),
        format_duration(percentile(samples, 99))
    );
}

fn format_duration(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.2} µs")
    } else {
        format!("{:.2} ms", micros / 1_000.0)
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                line.strip_prefix("model name")
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cpu}, {cores} cores")
}
