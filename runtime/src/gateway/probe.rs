//! `talaria gateway health`: ask a running gateway's `/health`, for the
//! image's `HEALTHCHECK` and for scripts (the image has no curl).

use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::config::GatewayConfig;

/// The most of the answer read: a status line and a small JSON body.
const MAX_ANSWER: u64 = 16 * 1024;

/// GET `/health` of the gateway `config` describes, on loopback when it
/// listens on every interface. Returns the body of a 200 answer.
pub async fn probe(config: &GatewayConfig, timeout: Duration) -> anyhow::Result<String> {
    let host = match config.host.value.as_str() {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" | "[::]" => "::1",
        host => host,
    };
    let port = config.port.value;
    tokio::time::timeout(timeout, ask(host, port))
        .await
        .map_err(|_| {
            anyhow::anyhow!("http://{host}:{port}/health did not answer within {timeout:?}")
        })?
}

async fn ask(host: &str, port: u16) -> anyhow::Result<String> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let url = format!("http://{authority}/health");
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {url} (is the gateway running?)"))?;
    stream
        .write_all(
            format!("GET /health HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .with_context(|| format!("cannot send to {url}"))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .await
        .with_context(|| format!("cannot read the answer of {url}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "{url} answered {status:?}"
    );
    Ok(body.trim().to_owned())
}
