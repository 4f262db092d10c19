//! Sandbox benchmark: `cargo bench --bench sandbox` (after
//! `cargo xtask build-skills`; see BENCHMARKS.md).
//!
//! Prints, from one run: the machine and its load, component compile time,
//! cache load time, fresh-instance call latency (new Store + WASI context +
//! instantiate + call, the production path), warm-instance call latency (a
//! call into an instance kept alive: the raw cost of crossing into wasm),
//! and as baselines measured in the same run: bare wasmtime instantiating
//! and calling the same component on the same engine with an empty WASI
//! context (what the sandbox's policy adds), and fork/exec of `/bin/true`
//! (what a native process costs), with the ratios.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{format_duration, machine, percentile, ratio, report};

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

    let bare = runtime.block_on(bare_wasmtime_calls(
        cached.engine(),
        &std::fs::read(&echo_wasm)?,
        arguments,
    ))?;
    report(
        &format!("baseline: bare wasmtime, fresh instance ({FRESH_CALLS})"),
        &bare,
    );

    let true_binary = PathBuf::from("/bin/true");
    let spawn = measure(SPAWNS, || {
        let status = Command::new(&true_binary).status()?;
        anyhow::ensure!(status.success());
        Ok(())
    })?;
    report(&format!("baseline: fork/exec /bin/true ({SPAWNS})"), &spawn);

    println!();
    println!(
        "fork/exec ÷ fresh sandboxed call, p50: {:.0}x (the sandbox is that much cheaper than a process)",
        ratio(&spawn, &fresh)
    );
    println!(
        "fresh sandboxed ÷ bare wasmtime call, p50: {:.2}x (what the sandbox's policy adds: capabilities, limits, mounts, output checks)",
        ratio(&fresh, &bare)
    );
    println!(
        "fresh ÷ warm call, p50: {:.1}x (what a new store, WASI context and instance add to a call)",
        ratio(&fresh, &warm)
    );
    println!();
    println!("after the run: {}", support::load());
    Ok(())
}

/// The baseline a host without Talaria's policy would pay: a new `Store`
/// with an empty WASI context, instantiate, call `tools.call`, drop — on the
/// same engine (pooling allocator, epoch interruption), with the host
/// imports linked as traps (echo never calls them).
async fn bare_wasmtime_calls(
    engine: &wasmtime::Engine,
    wasm: &[u8],
    arguments: &str,
) -> anyhow::Result<Vec<Duration>> {
    use wasmtime::Store;
    use wasmtime::component::{Component, Linker, Val};
    use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

    struct Bare {
        wasi: WasiCtx,
        table: ResourceTable,
    }
    impl WasiView for Bare {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    let component = Component::new(engine, wasm)?;
    let mut linker = Linker::<Bare>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    linker.define_unknown_imports_as_traps(&component)?;
    let pre = linker.instantiate_pre(&component)?;
    let tools = pre
        .component()
        .get_export_index(None, "talaria:skill/tools@0.1.0")
        .ok_or_else(|| anyhow::anyhow!("echo exports no tools interface"))?;
    let call_index = pre
        .component()
        .get_export_index(Some(&tools), "call")
        .ok_or_else(|| anyhow::anyhow!("echo exports no tools.call"))?;

    let once = async || -> anyhow::Result<()> {
        let mut store = Store::new(
            engine,
            Bare {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = pre.instantiate_async(&mut store).await?;
        let call = instance
            .get_func(&mut store, call_index)
            .ok_or_else(|| anyhow::anyhow!("tools.call is not a function"))?;
        let mut results = [Val::Bool(false)];
        call.call_async(
            &mut store,
            &[Val::String("echo".into()), Val::String(arguments.into())],
            &mut results,
        )
        .await?;
        anyhow::ensure!(
            matches!(&results[0], Val::Result(Ok(Some(text))) if **text == Val::String("hello".into())),
            "unexpected result {:?}",
            results[0]
        );
        Ok(())
    };
    for _ in 0..1_000 {
        once().await?;
    }
    let mut samples = Vec::with_capacity(FRESH_CALLS);
    for _ in 0..FRESH_CALLS {
        let started = Instant::now();
        once().await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples)
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
