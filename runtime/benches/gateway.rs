//! Gateway benchmark: `cargo bench --bench gateway` (after
//! `cargo xtask build-skills`; see BENCHMARKS.md).
//!
//! Starts the release `talaria gateway run` as a process, with the bundled
//! skills granted and a model on loopback that answers at once, and
//! measures, each against a baseline from the same run:
//!
//! - `GET /health` requests per second over 8 kept-alive connections,
//!   against a bare axum hello-world server (this executable started again
//!   as one: same HTTP stack, same two worker threads);
//! - a chat completion's overhead: gateway round trip minus the same request
//!   sent straight to the model;
//! - chat completions per second at concurrency 1 and 8, each turn
//!   committed to `state.db`;
//! - start to healthy (the first `GET /health` answered), against starting
//!   `talaria --version`;
//! - resident memory idle, and after 10,000 chat completions.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{Client, instant_model, machine, percentile, report};

const KEY: &str = "bench-key-7Qp2vX9mZ4wL1tR8";
const HELLO_SERVER: &str = "--hello-server";
const LOAD_SECONDS: u64 = 3;
const OVERHEAD_TURNS: usize = 1_000;
const STARTS: usize = 20;
const MEMORY_TURNS: usize = 10_000;

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|arg| arg == HELLO_SERVER) {
        return hello_server();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ lives in the repository")
        .to_owned();
    let bundled = root.join("skills");
    anyhow::ensure!(
        bundled.join("text/text.wasm").is_file(),
        "the bundled skills are not built: run `cargo xtask build-skills` first"
    );
    let scratch = tempfile::tempdir()?;
    let home = scratch.path().join("home");
    let model = instant_model()?;
    println!("machine: {}", machine());
    println!();

    // A first start syncs, grants and compiles the bundled skills; the
    // figures are of a second one, as a service restarts (compiling keeps
    // the allocator's arenas large: that first process idles at ~175 MiB).
    drop(Gateway::start(&home, &bundled, &model)?);
    let gateway = Gateway::start(&home, &bundled, &model)?;
    let idle_rss = {
        std::thread::sleep(Duration::from_secs(1));
        rss_kib(gateway.child.id())?
    };

    println!("== GET /health, 8 kept-alive connections, {LOAD_SECONDS} s each");
    let hello = HelloServer::start()?;
    let (hello_rate, hello_errors) = requests_per_second(&hello.address, 8, health_request)?;
    let (gateway_rate, gateway_errors) = requests_per_second(&gateway.address, 8, health_request)?;
    println!(
        "  baseline: bare axum hello-world           {hello_rate:>10.0} req/s  ({hello_errors} errors)"
    );
    println!(
        "  gateway /health                           {gateway_rate:>10.0} req/s  ({gateway_errors} errors)"
    );
    println!(
        "  gateway ÷ hello-world: {:.0} % (goal ≥ 80 %, and ≥ 30,000 req/s on 2 cores)",
        gateway_rate / hello_rate * 100.0
    );
    drop(hello);

    println!();
    println!("== chat completion overhead, instant model, {OVERHEAD_TURNS} sequential requests");
    let body = CHAT_BODY;
    let mut client = Client::connect(&gateway.address)?.with_key(KEY);
    for _ in 0..50 {
        client.ask(body)?;
    }
    let mut through_gateway = Vec::with_capacity(OVERHEAD_TURNS);
    for _ in 0..OVERHEAD_TURNS {
        let started = Instant::now();
        client.ask(body)?;
        through_gateway.push(started.elapsed());
    }
    through_gateway.sort();
    let direct_body =
        r#"{"model":"bench","messages":[{"role":"user","content":"hello"}],"stream":false}"#;
    let mut direct_client = Client::connect(&model)?;
    let mut direct = Vec::with_capacity(OVERHEAD_TURNS);
    for _ in 0..OVERHEAD_TURNS {
        let started = Instant::now();
        anyhow::ensure!(direct_client.ask(direct_body)? == 200);
        direct.push(started.elapsed());
    }
    direct.sort();
    report(
        "through the gateway (agent turn, 2 commits)",
        &through_gateway,
    );
    report("baseline: the request sent straight to the model", &direct);
    let overhead = percentile(&through_gateway, 50).saturating_sub(percentile(&direct, 50));
    println!(
        "  gateway overhead, p50: {:.3} ms (goal ≤ 2 ms; Hermes 0.19: 360 ms)",
        overhead.as_secs_f64() * 1e3
    );

    println!();
    println!("== chat completions per second, instant model, {LOAD_SECONDS} s each");
    let chat = |client: &mut Client| client.ask(CHAT_BODY).map(|status| status == 200);
    let (one, one_errors) = requests_per_second(&gateway.address, 1, chat)?;
    let (eight, eight_errors) = requests_per_second(&gateway.address, 8, chat)?;
    println!(
        "  concurrency 1                             {one:>10.0} /s  ({one_errors} errors; goal ≥ 500/s)"
    );
    println!(
        "  concurrency 8                             {eight:>10.0} /s  ({eight_errors} errors; goal ≥ 1,000/s, not below concurrency 1)"
    );

    println!();
    println!("== resident memory");
    let before = rss_kib(gateway.child.id())?;
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let address = gateway.address.clone();
            let done = Arc::clone(&done);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut client = Client::connect(&address)?.with_key(KEY);
                while done.fetch_add(1, Ordering::Relaxed) < MEMORY_TURNS as u64 {
                    let status = client.ask(CHAT_BODY)?;
                    anyhow::ensure!(status == 200, "a chat request failed with HTTP {status}");
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(gateway.child.id())?;
    println!(
        "  idle after a start with warm caches       {:>10.1} MiB (goal ≤ 30 MiB; Hermes 94 MiB)",
        idle_rss as f64 / 1024.0
    );
    println!(
        "  before the {MEMORY_TURNS} requests (after the runs above) {:>6.1} MiB",
        before as f64 / 1024.0
    );
    println!(
        "  after {MEMORY_TURNS} more chat completions           {:>10.1} MiB (Hermes: 172 MiB)",
        after as f64 / 1024.0
    );
    drop(gateway);

    println!();
    println!("== start to healthy, bundled skills granted, warm caches, {STARTS} starts");
    let mut starts = Vec::with_capacity(STARTS);
    let mut versions = Vec::with_capacity(STARTS);
    for _ in 0..STARTS {
        let started = Instant::now();
        let gateway = Gateway::start(&home, &bundled, &model)?;
        starts.push(started.elapsed());
        drop(gateway);
        let started = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_talaria"))
            .arg("--version")
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success());
        versions.push(started.elapsed());
    }
    starts.sort();
    versions.sort();
    report("gateway start to first /health answered", &starts);
    report("baseline: `talaria --version`", &versions);
    println!(
        "  start to healthy ÷ --version, p50: {:.1}x (goal ≤ 50 ms; Hermes 0.74 s)",
        support::ratio(&starts, &versions)
    );
    println!();
    println!("after the run: {}", support::load());
    Ok(())
}

const CHAT_BODY: &str = r#"{"model":"talaria","messages":[{"role":"user","content":"hello"}]}"#;

fn health_request(client: &mut Client) -> anyhow::Result<bool> {
    Ok(client.request("GET", "/health", "")? == 200)
}

/// Requests per second over `connections` kept-alive connections for
/// [`LOAD_SECONDS`], and how many failed.
fn requests_per_second(
    address: &str,
    connections: usize,
    one: impl Fn(&mut Client) -> anyhow::Result<bool> + Send + Sync + Copy + 'static,
) -> anyhow::Result<(f64, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (stop, count, errors) =
                (Arc::clone(&stop), Arc::clone(&count), Arc::clone(&errors));
            let address = address.to_owned();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut client = Client::connect(&address)?.with_key(KEY);
                while !stop.load(Ordering::Relaxed) {
                    if one(&mut client)? {
                        count.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(LOAD_SECONDS));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    Ok((
        count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        errors.load(Ordering::Relaxed),
    ))
}

/// The release gateway as a process, on a free port.
struct Gateway {
    child: Child,
    address: String,
}

impl Gateway {
    /// Start it and wait until `GET /health` answers.
    fn start(home: &Path, bundled: &Path, model: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_talaria"))
            .args(["--home"])
            .arg(home)
            .args([
                "gateway",
                "run",
                "--port",
                "0",
                "--dashboard-port",
                "0",
                "--allow-root",
            ])
            .env("TALARIA_API_KEY", KEY)
            .env("TALARIA_BUNDLED_SKILLS", bundled)
            .env("TALARIA_MODEL_BASE_URL", model)
            .env("TALARIA_WORKSPACE", home.join("workspace"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // The production log (a line per request) is written, to nowhere.
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| anyhow::anyhow!("the gateway did not start: {line:?}"))?
            .to_owned();
        let mut client = loop {
            match Client::connect(&address).map(|client| client.with_key(KEY)) {
                Ok(client) => break client,
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        };
        anyhow::ensure!(client.request("GET", "/health", "")? == 200);
        Ok(Self { child, address })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let _ = self.child.wait();
    }
}

/// This executable started again as a bare axum server answering
/// `{"status":"ok"}` on every path, on the gateway's runtime shape.
struct HelloServer {
    child: Child,
    address: String,
}

impl HelloServer {
    fn start() -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(HELLO_SERVER)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        Ok(Self {
            child,
            address: line.trim().to_owned(),
        })
    }
}

impl Drop for HelloServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hello_server() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        let app = axum::Router::new()
            .fallback(|| async { axum::Json(serde_json::json!({"status": "ok"})) });
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// Resident set size of process `pid`, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))
}
