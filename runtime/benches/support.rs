//! What the benchmarks share: a model endpoint on loopback that answers at
//! once, the machine's load, and reporting. Included by each benchmark with
//! `mod support;`.

#![allow(dead_code)] // each benchmark uses a part

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

/// One line saying what the figures were measured on: CPU, cores, and the
/// load average now (other work on a shared machine shows here).
pub fn machine() -> String {
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
    format!("{cpu}, {cores} cores, {}", load())
}

/// `load average 1.23 0.98 0.71` (1, 5 and 15 minutes).
pub fn load() -> String {
    let average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".into());
    format!("load average {average}")
}

pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[((sorted.len() - 1) * p) / 100]
}

pub fn format_duration(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.2} µs")
    } else {
        format!("{:.3} ms", micros / 1_000.0)
    }
}

pub fn report(what: &str, samples: &[Duration]) {
    println!(
        "  {what:<48} p50 {:>11}   p99 {:>11}",
        format_duration(percentile(samples, 50)),
        format_duration(percentile(samples, 99))
    );
}

/// The ratio of two medians, `a / b`.
pub fn ratio(a: &[Duration], b: &[Duration]) -> f64 {
    percentile(a, 50).as_secs_f64() / percentile(b, 50).as_secs_f64()
}

/// HTTP/1.1 requests on one kept-alive connection, the way a client
/// would; each returns its status once the whole reply was read. Against
/// the model (the baseline an agent's turn is compared with) or the gateway
/// (with its key).
pub struct Client {
    stream: std::net::TcpStream,
    reader: BufReader<std::net::TcpStream>,
    host: String,
    key: Option<String>,
}

impl Client {
    /// `target` is an address (`127.0.0.1:8642`) or a URL as
    /// `instant_model` returns it.
    pub fn connect(target: &str) -> anyhow::Result<Self> {
        let host = target
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let stream = std::net::TcpStream::connect(&host)?;
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Self {
            stream,
            reader,
            host,
            key: None,
        })
    }

    /// Send `Authorization: Bearer key` with every request.
    pub fn with_key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    /// `POST /v1/chat/completions` with `body`.
    pub fn ask(&mut self, body: &str) -> anyhow::Result<u16> {
        self.request("POST", "/v1/chat/completions", body)
    }

    pub fn request(&mut self, method: &str, path: &str, body: &str) -> anyhow::Result<u16> {
        let authorization = self
            .key
            .as_ref()
            .map(|key| format!("Authorization: Bearer {key}\r\n"))
            .unwrap_or_default();
        write!(
            self.stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        )?;
        let mut line = String::new();
        anyhow::ensure!(self.reader.read_line(&mut line)? > 0, "connection closed");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0;
        loop {
            line.clear();
            anyhow::ensure!(self.reader.read_line(&mut line)? > 0, "connection closed");
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse()?;
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut reply = vec![0; length];
        self.reader.read_exact(&mut reply)?;
        if status >= 500 {
            eprintln!("HTTP {status}: {}", String::from_utf8_lossy(&reply));
        }
        Ok(status)
    }
}

/// A model endpoint that answers every request at once: "ok", except that
/// a question containing "count please" is first answered with a call of
/// the tool `text0__count` (and "ok" once its result came back).
pub fn instant_model() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    std::thread::spawn(move || {
        let answer = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;
        let call = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"text0__count","arguments":"{\"text\":\"a b c\"}"}}]},"finish_reason":"tool_calls"}]}"#;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            // A thread per connection: the agent's client keeps its
            // connection open in its pool while the baseline opens another.
            std::thread::spawn(move || serve_connection(stream, answer, call));
        }
    });
    Ok(url)
}

fn serve_connection(mut stream: std::net::TcpStream, answer: &'static str, call: &'static str) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    // Keep-alive: serve requests on this connection until it closes.
    loop {
        let mut length = 0;
        let mut line = String::new();
        let mut ended = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                ended = true;
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        if ended {
            break;
        }
        let mut request = vec![0; length];
        if reader.read_exact(&mut request).is_err() {
            break;
        }
        let request = String::from_utf8_lossy(&request);
        let body = if request.contains("count please") && !request.contains("\"role\":\"tool\"") {
            call
        } else {
            answer
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            break;
        }
    }
}
