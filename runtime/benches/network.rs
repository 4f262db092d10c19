//! A skill's HTTP request through the host: `cargo bench --bench network`
//! (see BENCHMARKS.md).
//!
//! Measured round by round, interleaved (the machine's load falls on each
//! alike), against a server on loopback that answers at once:
//!
//! - `netprobe.fetch`: a whole tool call (a fresh instance) whose guest
//!   sends one GET through `wasi:http`: the policy check, the scan of the
//!   request for 20 configured secrets and the credential shapes, a secret
//!   added, the address check, a new connection, the response read whole
//!   and searched for the secrets;
//! - `echo.echo`: a whole tool call that sends nothing (the sandbox's own
//!   cost);
//! - the baseline: the same GET sent straight from the host on a new
//!   connection (what any client pays).
//!
//! `fetch − echo` is what the request costs inside the sandbox; its ratio
//! to the baseline is the host's overhead per request.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{machine, ratio, report};
use talaria_runtime::leak_scan::LeakScanner;
use talaria_runtime::sandbox::{Sandbox, SandboxConfig};
use talaria_runtime::skill::{MountRoots, Skill};

const ROUNDS: usize = 400;
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let server = serve()?;
    let scratch = tempfile::tempdir()?;
    let roots = MountRoots {
        workspace: scratch.path().to_owned(),
        skill_data: scratch.path().join("skill-data"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let load = |relative: &str| -> anyhow::Result<_> {
        let skill = Skill::load(&root.join(relative))?;
        let capabilities = talaria_runtime::skill::capabilities::as_requested(&skill, &roots)?;
        Ok(runtime.block_on(
            sandbox.load(
                skill
                    .component_source()
                    .ok_or_else(|| anyhow::anyhow!("{relative} has no component"))??,
                capabilities,
            ),
        )?)
    };
    let secrets: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("SECRET_{i}"),
                format!("value-{i:02}-0123456789abcdef"),
            )
        })
        .chain([(
            "NETPROBE_TOKEN".to_owned(),
            "token-0123456789abcdef".to_owned(),
        )])
        .collect();
    let scanner = Arc::new(LeakScanner::new(secrets.clone()));
    let netprobe = load("tests/skills/netprobe")?.with_network(
        Arc::new(|name| (name == "NETPROBE_TOKEN").then(|| "token-0123456789abcdef".to_owned())),
        scanner,
        Arc::from([]),
    );
    let echo = load("tests/skills/echo")?;
    let fetch_arguments = format!(r#"{{"url": "http://{server}/hello"}}"#);
    let echo_arguments = r#"{"text":"hello"}"#;

    let fetch = || -> anyhow::Result<()> {
        let output = runtime.block_on(netprobe.call("fetch", &fetch_arguments))?;
        anyhow::ensure!(
            output.result.contains("\"body\":\"hello\""),
            "{}",
            output.result
        );
        Ok(())
    };
    let echo_call = || -> anyhow::Result<()> {
        let output = runtime.block_on(echo.call("echo", echo_arguments))?;
        anyhow::ensure!(output.result == "hello");
        Ok(())
    };
    let direct = || -> anyhow::Result<()> {
        let mut stream = TcpStream::connect(server)?;
        stream.write_all(b"GET /hello HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        anyhow::ensure!(reply.ends_with(b"hello"));
        Ok(())
    };
    for _ in 0..50 {
        fetch()?;
        echo_call()?;
        direct()?;
    }
    let (mut fetches, mut echoes, mut directs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        fetches.push(timed(fetch)?);
        echoes.push(timed(echo_call)?);
        directs.push(timed(direct)?);
    }
    for samples in [&mut fetches, &mut echoes, &mut directs] {
        samples.sort();
    }
    println!("a skill's HTTP request through the host ({})", machine());
    report("netprobe.fetch: tool call with one GET", &fetches);
    report("echo.echo: tool call, no request", &echoes);
    report("baseline: the GET straight from the host", &directs);
    let median = |samples: &[Duration]| samples[samples.len() / 2];
    let request_in_sandbox = median(&fetches).saturating_sub(median(&echoes));
    println!(
        "the request inside the sandbox (fetch − echo, p50): {:?}; {:.1}× the baseline's {:?}",
        request_in_sandbox,
        request_in_sandbox.as_secs_f64() / median(&directs).as_secs_f64(),
        median(&directs)
    );
    println!(
        "tool call with a request vs without (p50 ratio): {:.2}×",
        ratio(&fetches, &echoes)
    );
    Ok(())
}

fn timed(run: impl Fn() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    run()?;
    Ok(started.elapsed())
}

/// A server that answers every request with `hello` and closes.
fn serve() -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let mut read = 0;
            while !request[..read].windows(4).any(|w| w == b"\r\n\r\n") && read < request.len() {
                match stream.read(&mut request[read..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
            let _ = stream.write_all(RESPONSE);
        }
    });
    Ok(address)
}
