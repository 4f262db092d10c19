//! The leak scanner on a 1 MiB tool result: `cargo bench --bench leak_scan`
//! (see BENCHMARKS.md).
//!
//! Every tool result passes the scanner before the model sees it, so it
//! must cost little next to what a result already costs. Measured round by
//! round, interleaved (the machine's load falls on each alike):
//!
//! - the baseline: one `str::contains` of one 24-byte secret over the
//!   result (the least any check for a secret can do);
//! - the scan of a clean result (no hit: the usual case), with 20
//!   configured secrets (with their encodings, over 100 patterns) and
//!   every credential shape;
//! - the same with 60 secrets (past the 128 patterns where the automaton's
//!   SIMD prefilter gives up);
//! - the scan of a result holding 16 secrets and credentials, redacted.

mod support;

use std::time::{Duration, Instant};

use support::{machine, ratio, report};
use talaria_runtime::leak_scan::LeakScanner;

const ROUNDS: usize = 60;
const SIZE: usize = 1 << 20;

fn main() {
    let secrets = random_secrets(60);
    let scanner = LeakScanner::new(secrets[..20].iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let many = LeakScanner::new(secrets.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let clean = tool_result(SIZE, &[]);
    let github = format!("ghp_{}", "a1B2".repeat(9));
    let leaky = tool_result(
        SIZE,
        &[
            secrets[3].1.as_str(),
            secrets[17].1.as_str(),
            github.as_str(),
            "AKIAABCDEFGHIJKLMNOP",
        ],
    );
    assert!(scanner.redact(&clean).1.is_empty());
    assert_eq!(scanner.redact(&leaky).1.len(), 4);

    let needle = secrets[0].1.as_str();
    let (mut baseline, mut clean_scan, mut leaky_scan, mut many_scan) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        std::hint::black_box(clean.contains(std::hint::black_box(needle)));
        baseline.push(started.elapsed());

        let started = Instant::now();
        std::hint::black_box(scanner.redact(std::hint::black_box(&clean)));
        clean_scan.push(started.elapsed());

        let started = Instant::now();
        std::hint::black_box(scanner.redact(std::hint::black_box(&leaky)));
        leaky_scan.push(started.elapsed());

        let started = Instant::now();
        std::hint::black_box(many.redact(std::hint::black_box(&clean)));
        many_scan.push(started.elapsed());
    }
    for samples in [
        &mut baseline,
        &mut clean_scan,
        &mut leaky_scan,
        &mut many_scan,
    ] {
        samples.sort();
    }
    println!("leak scan of a 1 MiB tool result ({})", machine());
    report("one str::contains of one secret (baseline)", &baseline);
    let clean_name = format!("scan, clean ({} patterns + shapes)", scanner.value_count());
    report(&clean_name, &clean_scan);
    report("scan, 16 hits redacted", &leaky_scan);
    let many_name = format!("scan, clean ({} patterns + shapes)", many.value_count());
    report(&many_name, &many_scan);
    for (what, samples) in [
        ("clean", &clean_scan),
        ("16 hits", &leaky_scan),
        ("clean, many patterns", &many_scan),
    ] {
        println!(
            "  {what}: {:.0} MB/s, {:.1}x the baseline",
            throughput(samples),
            ratio(samples, &baseline)
        );
    }
}

/// `count` secrets as a `.env` holds them: varied lengths and alphabets,
/// from a fixed seed (the same every run).
fn random_secrets(count: usize) -> Vec<(String, String)> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|i| {
            let length = 16 + (next() % 32) as usize;
            let value: String = (0..length)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize] as char)
                .collect();
            (format!("SECRET_{i}"), value)
        })
        .collect()
}

/// MB/s at the median.
fn throughput(sorted: &[Duration]) -> f64 {
    SIZE as f64 / 1e6 / support::percentile(sorted, 50).as_secs_f64()
}

/// About `size` bytes of what tools return (source lines, log lines, JSON),
/// with each of `planted` written four times along it.
fn tool_result(size: usize, planted: &[&str]) -> String {
    let lines = [
        "    let mut conversation = agent.start(\"system\", None).await?;\n",
        "2026-11-30T04:12:33Z INFO talaria::gateway: request served in 1.2 ms\n",
        "{\"name\": \"files\", \"version\": \"0.3.1\", \"state\": \"granted\", \"tools\": 4}\n",
        "The skill reads the workspace and answers with line numbers and sizes.\n",
    ];
    let mut text = String::with_capacity(size + 256);
    let mut index = 0;
    let every = size / (planted.len() * 4 + 1).max(1);
    let mut next_plant = every;
    let mut plants = planted.iter().cycle().take(planted.len() * 4);
    while text.len() < size {
        text.push_str(lines[index % lines.len()]);
        index += 1;
        if text.len() >= next_plant {
            if let Some(secret) = plants.next() {
                text.push_str("token=");
                text.push_str(secret);
                text.push('\n');
            }
            next_plant += every;
        }
    }
    text
}
