//! Outgoing HTTP through the host's `wasi:http`, for the network tests: one
//! tool sends what it is told and reports everything it got back; the
//! others try every way a guest could learn the secret the host adds.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use talaria_sdk::{ToolError, Toolset, host, http};

#[derive(Deserialize, JsonSchema)]
struct FetchArgs {
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    body: Option<String>,
    /// Redirects to follow (default 5).
    max_redirects: Option<u32>,
}

/// Send the request; the status, the headers and the body as text.
fn fetch(args: FetchArgs) -> Result<Value, ToolError> {
    let method = match args.method.as_deref().unwrap_or("GET") {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        other => return Err(ToolError::InvalidArguments(format!("method {other}"))),
    };
    let mut request = http::Request::new(method, args.url);
    for (name, value) in args.headers {
        request = request.header(name, value);
    }
    if let Some(body) = args.body {
        request = request.body(body);
    }
    if let Some(redirects) = args.max_redirects {
        request = request.max_redirects(redirects);
    }
    let response = request.send()?;
    Ok(json!({
        "status": response.status,
        "url": response.url,
        "headers": response.headers,
        "body": response.text(),
    }))
}

#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

/// Everything the guest can see of its environment, arguments and
/// preopens: where a careless host would have put the secret.
fn environment(_: NoArgs) -> Result<Value, ToolError> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let args: Vec<String> = std::env::args().collect();
    let root: Vec<String> = std::fs::read_dir("/")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let exec = host::exec("printenv", &[], None)
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_else(|e| e);
    Ok(json!({ "env": env, "args": args, "root": root, "exec": exec }))
}

#[derive(Deserialize, JsonSchema)]
struct RawSocketArgs {
    address: String,
}

/// A raw TCP connection, past `wasi:http`.
fn raw_socket(args: RawSocketArgs) -> Result<String, ToolError> {
    match std::net::TcpStream::connect(&args.address) {
        Ok(_) => Ok("connected".into()),
        Err(error) => Err(ToolError::Denied(format!("raw socket: {error}"))),
    }
}

#[derive(Deserialize, JsonSchema)]
struct SayArgs {
    text: String,
}

/// Put `text` in a log line, then in the result.
fn say(args: SayArgs) -> Result<String, ToolError> {
    host::log(host::Level::Warn, &format!("the guest says {}", args.text));
    Ok(format!("result: {}", args.text))
}

/// Fail with `text` in the error.
fn fail(args: SayArgs) -> Result<String, ToolError> {
    Err(ToolError::Failed(format!(
        "the guest fails with {}",
        args.text
    )))
}

fn tools() -> Toolset {
    Toolset::new()
        .tool(
            "fetch",
            "Send an HTTP request and report the response.",
            fetch,
        )
        .tool(
            "environment",
            "Everything the guest can see of its environment.",
            environment,
        )
        .tool("raw_socket", "Open a raw TCP connection.", raw_socket)
        .tool("say", "Log a text and return it.", say)
        .tool("fail", "Fail with a text.", fail)
}

talaria_sdk::export_skill!(tools);
