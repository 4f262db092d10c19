//! Agent benchmark: `cargo bench --bench agent` (see BENCHMARKS.md).
//!
//! - Agent-loop overhead per turn against a model on loopback that answers
//!   instantly: HTTP round trip, JSON, prompt and tool definitions, two
//!   SQLite commits. The model's own time is zero, so this is the overhead.
//!   Compared, in the same run, with the baseline: the same request sent
//!   straight to the model over a kept-alive connection.
//! - `session search` latency over 100k and 1M generated messages.

mod support;

use std::time::{Duration, Instant};

use support::{Client, instant_model, machine, ratio, report};

use talaria_runtime::agent::provider::{Provider, ProviderConfig};
use talaria_runtime::agent::tools::ToolRegistry;
use talaria_runtime::agent::{Agent, AgentOptions};
use talaria_runtime::memory::{NoteLimits, Notes, SessionStore};

const TURNS: usize = 2_000;
const SEARCHES: usize = 50;

fn main() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    println!("machine: {}", machine());
    println!();
    println!("== agent loop, zero-latency model on loopback, {TURNS} turns");
    let base_url = instant_model()?;
    let store = SessionStore::open(&scratch.path().join("agent.db"))?;
    let registry = ToolRegistry::fixed(
        Vec::new(),
        Notes::new(scratch.path().join("memories"), NoteLimits::default()),
        store.clone(),
        24_000,
    );
    let agent = Agent::new(
        Provider::new(ProviderConfig {
            base_url: base_url.clone(),
            model: "bench".into(),
            api_key: None,
            timeout: Duration::from_secs(10),
            max_retries: 3,
            backoff: Duration::from_millis(10),
        }),
        registry,
        store,
        AgentOptions {
            max_turns: 5,
            tool_output_chars: 16_000,
            stream: false,
        },
    );
    let mut turns = Vec::with_capacity(TURNS);
    for _ in 0..TURNS {
        // A fresh conversation each time keeps the request size constant.
        let mut conversation = runtime.block_on(agent.start("You are a benchmark.", None))?;
        let started = Instant::now();
        let answer = runtime.block_on(agent.ask(&mut conversation, "hello", &mut |_| {}))?;
        turns.push(started.elapsed());
        anyhow::ensure!(answer == "ok");
    }
    turns.sort();
    report("per turn (request, reply, 2 commits)", &turns);
    // The same request body an agent sends, straight to the model.
    let body = r#"{"model":"bench","messages":[{"role":"system","content":"You are a benchmark."},{"role":"user","content":"hello"}],"stream":false}"#;
    let mut client = Client::connect(&base_url)?;
    let mut direct = Vec::with_capacity(TURNS);
    for _ in 0..TURNS {
        let started = Instant::now();
        client.ask(body)?;
        direct.push(started.elapsed());
    }
    direct.sort();
    report("baseline: the request sent straight to the model", &direct);
    println!(
        "  the agent's turn costs {:.1}x the bare request; its overhead, p50: {:.3} ms",
        ratio(&turns, &direct),
        (support::percentile(&turns, 50).saturating_sub(support::percentile(&direct, 50)))
            .as_secs_f64()
            * 1e3
    );

    for messages in [100_000usize, 1_000_000] {
        let path = scratch.path().join(format!("search-{messages}.db"));
        let started = Instant::now();
        generate(&path, messages)?;
        println!();
        println!(
            "== session search over {messages} messages (generated in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        let store = SessionStore::open(&path)?;
        for (what, query) in [
            ("common word, top 20", "w17"),
            ("rare word", "zebracorn"),
            ("two words", "w17 w42"),
        ] {
            let mut samples = Vec::with_capacity(SEARCHES);
            let mut found = 0;
            for _ in 0..SEARCHES {
                let started = Instant::now();
                found = store.search(query, 20)?.len();
                samples.push(started.elapsed());
            }
            samples.sort();
            report(&format!("{what} ({found} hits shown)"), &samples);
        }
    }
    println!();
    println!("after the run: {}", support::load());
    Ok(())
}

/// `messages` messages of 12–30 words over 1,000 sessions, in one
/// transaction; a few hold the rare word.
fn generate(path: &std::path::Path, messages: usize) -> anyhow::Result<()> {
    drop(SessionStore::open(path)?);
    let mut conn = rusqlite::Connection::open(path)?;
    let tx = conn.transaction()?;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for session in 0..1_000 {
        tx.execute(
            "INSERT INTO sessions (id, created_at, updated_at) VALUES (?1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            [format!("s{session}")],
        )?;
    }
    {
        let mut insert = tx.prepare(
            "INSERT INTO messages (session_id, role, content, created_at) VALUES (?1, ?2, ?3, '2026-01-01T00:00:00Z')",
        )?;
        for index in 0..messages {
            let words = 12 + (next() % 19) as usize;
            let mut content = String::with_capacity(words * 6);
            for _ in 0..words {
                // Zipf-like: low word numbers are common.
                let rank = (next() % 5_000) * (next() % 5_000) / 5_000;
                content.push_str(&format!("w{rank} "));
            }
            if index % 50_000 == 7 {
                content.push_str("zebracorn");
            }
            let role = if index % 2 == 0 { "user" } else { "assistant" };
            insert.execute(rusqlite::params![
                format!("s{}", index % 1_000),
                role,
                content
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}
