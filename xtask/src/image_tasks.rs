//! `cargo xtask image` and `cargo xtask bench-image`: the container image
//! built locally from a binary this machine built (see `image.rs`), and the
//! time from `docker run` to a healthy gateway.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::image;

/// Debian's busybox-static, the image's `/bin/sh` and tools.
pub const BUSYBOX: &str = "/bin/busybox";
/// The image `cargo xtask image` tags by default.
pub const LOCAL_IMAGE: &str = "talaria:local";
/// A start that takes longer than this has failed.
const START_LIMIT: Duration = Duration::from_secs(180);
/// A key for the benchmark's gateways (not a secret: they live a second).
const BENCH_KEY: &str = "bench-7f3a9c21e4b86d05aa91";

/// Build `tag` from `binary` on the locally made base; returns its size in
/// bytes.
pub fn build(root: &Path, binary: &Path, tag: &str) -> anyhow::Result<u64> {
    let work = std::env::temp_dir().join(format!("talaria-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let built = image::build_image(binary, root, Path::new(BUSYBOX), tag, &work, &[]);
    let _ = std::fs::remove_dir_all(&work);
    built?;
    let size = image::docker()
        .args(["image", "inspect", "--format", "{{.Size}}", tag])
        .output()
        .context("cannot run docker")?;
    String::from_utf8_lossy(&size.stdout)
        .trim()
        .parse()
        .with_context(|| format!("docker reports no size for {tag}"))
}

/// Median start-to-healthy times, each against a baseline measured in the
/// same run: the same binary started on the host, and an empty container.
pub fn bench(binary: &Path, busybox_image: &str, tag: &str, runs: usize) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("talaria-bench-image-{}", std::process::id()));
    let host_home = data.with_extension("host");
    for dir in [&data, &host_home] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
    }
    let outcome = (|| {
        let first_boot = container_start(tag, &data)?;
        println!(
            "xtask: first boot (seeds the home, compiles the bundled components): {:.2} s",
            first_boot.as_secs_f64()
        );
        // The host's home gets its first start too, outside the timing.
        host_start(binary, &host_home)?;
        let mut container = Vec::new();
        let mut host = Vec::new();
        let mut bare = Vec::new();
        for _ in 0..runs {
            container.push(container_start(tag, &data)?);
            host.push(host_start(binary, &host_home)?);
            bare.push(bare_server_container(busybox_image)?);
        }
        let (container, host, bare) = (median(container), median(host), median(bare));
        println!(
            "xtask: start to healthy, median of {runs} (warm home):\n  \
             talaria's image (docker run to /health 200 on the published port): {:.1} ms\n  \
             busybox httpd (docker run to its first answer on the published port): {:.1} ms\n  \
             the same talaria binary on the host (spawn to /health 200): {:.1} ms\n  \
             image / busybox httpd: {:.2}x; talaria's own share in the container: {:.1} ms",
            ms(container),
            ms(bare),
            ms(host),
            container.as_secs_f64() / bare.as_secs_f64(),
            ms(container) - ms(bare),
        );
        Ok(())
    })();
    for dir in [&data, &host_home] {
        let _ = std::fs::remove_dir_all(dir);
    }
    outcome
}

fn container_start(tag: &str, data: &Path) -> anyhow::Result<Duration> {
    let name = format!("talaria-bench-{}", std::process::id());
    let _ = image::docker().args(["rm", "-f", &name]).output();
    let volume = format!("{}:/opt/data", data.display());
    let key = format!("TALARIA_API_KEY={BENCH_KEY}");
    let started = Instant::now();
    let run = image::docker()
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "-v",
            &volume,
            "-p",
            "127.0.0.1::8642",
        ])
        .args(["-e", &key, tag])
        .output()
        .context("cannot run docker")?;
    anyhow::ensure!(
        run.status.success(),
        "docker run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let healthy =
        image::published_port(&name, 8642).and_then(|port| wait_answer(port, true, started));
    let _ = image::docker().args(["rm", "-f", &name]).output();
    healthy
}

fn host_start(binary: &Path, home: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut gateway = Command::new(binary)
        .args([
            "gateway",
            "run",
            "--port",
            "0",
            "--no-dashboard",
            "--allow-root",
        ])
        .env("TALARIA_HOME", home)
        .env("TALARIA_API_KEY", BENCH_KEY)
        .env_remove("TALARIA_CONTAINER")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the gateway")?;
    let mut first_line = Vec::new();
    let mut stdout = gateway.stdout.take().context("no stdout")?;
    let mut byte = [0u8];
    while stdout.read(&mut byte)? == 1 && byte[0] != b'\n' {
        first_line.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&first_line);
    let port: Option<u16> = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|address| address.rsplit(':').next())
        .and_then(|port| port.parse().ok());
    let healthy = match port {
        Some(port) => wait_answer(port, true, started),
        None => Err(anyhow::anyhow!("the gateway said {line:?}")),
    };
    let _ = gateway.kill();
    let _ = gateway.wait();
    healthy
}

/// The engine's own cost: `docker run` of busybox's `httpd` with a
/// published port, to its first HTTP answer (any status).
fn bare_server_container(busybox_image: &str) -> anyhow::Result<Duration> {
    let name = format!("talaria-bench-bare-{}", std::process::id());
    let _ = image::docker().args(["rm", "-f", &name]).output();
    let started = Instant::now();
    let run = image::docker()
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "-p",
            "127.0.0.1::8000",
            busybox_image,
        ])
        .args(["httpd", "-f", "-p", "8000", "-h", "/"])
        .output()
        .context("cannot run docker")?;
    anyhow::ensure!(
        run.status.success(),
        "docker run {busybox_image} httpd failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let answered =
        image::published_port(&name, 8000).and_then(|port| wait_answer(port, false, started));
    let _ = image::docker().args(["rm", "-f", &name]).output();
    answered
}

/// Poll `/health` on loopback `port` until it answers (200 when `healthy`
/// is asked for); the time since `started`.
fn wait_answer(port: u16, healthy: bool, started: Instant) -> anyhow::Result<Duration> {
    loop {
        if answers(port, healthy) {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < START_LIMIT,
            "no answer to /health on port {port} within {START_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether GET `/health` on loopback `port` answers: 200 when `healthy`
/// is asked for, any HTTP status otherwise.
fn answers(port: u16, healthy: bool) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    if healthy {
        answer.starts_with("HTTP/1.1 200")
    } else {
        answer.starts_with("HTTP/1.")
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Where `cargo xtask image --release` puts the optimised binary.
pub fn release_binary(target_dir: &Path) -> PathBuf {
    target_dir.join("release").join("talaria")
}
