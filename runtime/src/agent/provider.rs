//! The model client: OpenAI-compatible `POST {base_url}/chat/completions`
//! with tools, plain or streamed (server-sent events), with bounded retries
//! on rate limits, server errors and connection failures.
//!
//! Works with any server speaking that API: vLLM, Ollama, llama.cpp's
//! server, OpenRouter. The API key is sent as a bearer token and never
//! logged or shown in errors.
//!
//! Async, on hyper's pooled client over rustls (the WebPKI roots): a turn
//! that is dropped (a gateway client hung up, Ctrl-C) drops its request,
//! which closes the connection, so the endpoint stops generating too.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most tool calls accepted in one reply, streamed or not: each one runs.
const MAX_TOOL_CALLS: usize = 128;
/// Largest response body read from the endpoint.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// e.g. `http://127.0.0.1:8080/v1`
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub max_retries: u32,
    /// First retry delay; doubled each time, with jitter.
    pub backoff: Duration,
}

/// One message of the conversation, in the API's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as the model wrote it.
    #[serde(default)]
    pub arguments: String,
}

/// What the model answered in one request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    /// Tokens the model says it used, when it says.
    pub usage: Option<Usage>,
}

/// The `usage` object of an OpenAI-compatible reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

impl Usage {
    /// Add the usage of another model call of the same turn.
    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
    }
}

fn usage_of(value: &Value) -> Option<Usage> {
    value
        .get("usage")
        .filter(|usage| usage.is_object())
        .and_then(|usage| serde_json::from_value(usage.clone()).ok())
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(
        "the model endpoint refused the API key (HTTP 401); set the key in .env under the name given by model.api_key_env"
    )]
    Unauthorized,
    #[error(
        "the model endpoint answered 404 for {url}: check model.base_url (it usually ends in /v1) and model.name ({model:?})"
    )]
    NotFound { url: String, model: String },
    #[error("the model endpoint answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the model endpoint sent invalid JSON: {0}")]
    InvalidJson(String),
    #[error("cannot reach the model endpoint at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the model endpoint did not answer within {0:?}")]
    Timeout(Duration),
}

impl ProviderError {
    fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Unreachable { .. } => true,
            _ => false,
        }
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct Provider {
    config: ProviderConfig,
    client: Result<HttpsClient, String>,
}

/// Text deltas of a streamed reply, as they come.
pub type OnText<'a> = &'a mut (dyn FnMut(&str) + Send);

impl Provider {
    pub fn new(config: ProviderConfig) -> Self {
        Self {
            config,
            client: https_client(),
        }
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    fn url(&self) -> String {
        format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// The request body, serialised once: lean on purpose, every byte is
    /// paid per turn.
    pub fn request_body(
        &self,
        messages: &[ChatMessage],
        tools: &impl Serialize,
        has_tools: bool,
        stream: bool,
    ) -> String {
        #[derive(Serialize)]
        struct Body<'a, T: Serialize> {
            model: &'a str,
            messages: &'a [ChatMessage],
            stream: bool,
            /// Streamed replies carry no usage unless asked for it.
            #[serde(skip_serializing_if = "Option::is_none")]
            stream_options: Option<StreamOptions>,
            #[serde(skip_serializing_if = "Option::is_none")]
            tools: Option<&'a T>,
        }
        #[derive(Serialize)]
        struct StreamOptions {
            include_usage: bool,
        }
        let body = Body {
            model: &self.config.model,
            messages,
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
            tools: has_tools.then_some(tools),
        };
        // Serialising plain data into a string cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }

    /// Send `body` (from [`Provider::request_body`]); with `on_text`,
    /// stream and hand it each text delta. Dropping the future stops the
    /// request and closes its connection.
    pub async fn complete(
        &self,
        body: &str,
        mut on_text: Option<OnText<'_>>,
    ) -> Result<Reply, ProviderError> {
        let body = Bytes::copy_from_slice(body.as_bytes());
        let mut attempt = 0;
        loop {
            let mut delivered = false;
            let outcome = match on_text {
                Some(ref mut forward) => {
                    let mut counting = |text: &str| {
                        delivered = true;
                        forward(text);
                    };
                    self.send_once(body.clone(), Some(&mut counting)).await
                }
                None => self.send_once(body.clone(), None).await,
            };
            match outcome {
                // Text already shown cannot be taken back: a stream that
                // breaks after its first words is not retried.
                Err(error)
                    if error.retryable() && !delivered && attempt < self.config.max_retries =>
                {
                    let delay = self.backoff(attempt);
                    tracing::warn!(
                        attempt = attempt + 1,
                        ?delay,
                        "model request failed, retrying: {error}"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.backoff.saturating_mul(1 << attempt.min(10));
        // Full jitter between half and all of the delay spreads retries of
        // many clients hitting one rate limit.
        let jitter = rand::random::<f64>() * 0.5 + 0.5;
        base.mul_f64(jitter).min(Duration::from_secs(60))
    }

    /// One attempt, bounded as a whole by `timeout` (connecting, waiting,
    /// reading every byte).
    async fn send_once(
        &self,
        body: Bytes,
        on_text: Option<OnText<'_>>,
    ) -> Result<Reply, ProviderError> {
        let url = self.url();
        match tokio::time::timeout(self.config.timeout, self.exchange(&url, body, on_text)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ProviderError::Timeout(self.config.timeout)),
        }
    }

    async fn exchange(
        &self,
        url: &str,
        body: Bytes,
        on_text: Option<OnText<'_>>,
    ) -> Result<Reply, ProviderError> {
        let unreachable = |detail: String| ProviderError::Unreachable {
            url: url.to_owned(),
            detail,
        };
        let mut request = hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("talaria/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(key) = &self.config.api_key {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        // An invalid URL or a key that is not a valid header value; the
        // error names neither the key nor its bytes.
        let request = request
            .body(Full::new(body))
            .map_err(|_| unreachable("model.base_url is not a valid http(s) URL, or the API key is not a valid header value".into()))?;
        let client = self
            .client
            .as_ref()
            .map_err(|error| unreachable(error.clone()))?;
        let response = client
            .request(request)
            .await
            .map_err(|error| unreachable(connection_error(&error)))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        match status {
            200..=299 => {}
            401 | 403 => return Err(ProviderError::Unauthorized),
            404 => {
                return Err(ProviderError::NotFound {
                    url: url.to_owned(),
                    model: self.config.model.clone(),
                });
            }
            status => {
                let mut text = Vec::new();
                // The start of the error body is enough to say what failed.
                let _ = read_bounded(&mut body, 4096, |bytes| {
                    text.extend_from_slice(bytes);
                    Ok(())
                })
                .await;
                text.truncate(4096);
                return Err(ProviderError::Status {
                    status,
                    body: crate::untrusted_text::sanitize(
                        &String::from_utf8_lossy(&text),
                        512,
                        false,
                    ),
                });
            }
        }
        match on_text {
            None => {
                let mut text = Vec::new();
                read_bounded(&mut body, MAX_RESPONSE_BYTES, |bytes| {
                    text.extend_from_slice(bytes);
                    Ok(())
                })
                .await
                .map_err(|error| match error {
                    StreamError::Io(detail) => unreachable(detail),
                    StreamError::Json(detail) => ProviderError::InvalidJson(detail),
                })?;
                parse_completion(&String::from_utf8_lossy(&text))
            }
            Some(on_text) => {
                let mut parser = StreamParser::default();
                let mut pending: Vec<u8> = Vec::new();
                let mut done = false;
                let read = read_bounded(&mut body, MAX_RESPONSE_BYTES, |bytes| {
                    if done {
                        return Ok(());
                    }
                    pending.extend_from_slice(bytes);
                    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        let line = String::from_utf8_lossy(&line);
                        if parser.line(line.trim_end_matches(['\n', '\r']), on_text)? {
                            done = true;
                            break;
                        }
                    }
                    Ok(())
                })
                .await;
                read.map_err(|error| match error {
                    StreamError::Io(detail) => unreachable(detail),
                    StreamError::Json(detail) => ProviderError::InvalidJson(detail),
                })?;
                if !done && !pending.is_empty() {
                    let line = String::from_utf8_lossy(&pending).into_owned();
                    parser.line(line.trim_end_matches('\r'), on_text).map_err(
                        |error| match error {
                            StreamError::Io(detail) => unreachable(detail),
                            StreamError::Json(detail) => ProviderError::InvalidJson(detail),
                        },
                    )?;
                }
                Ok(parser.finish())
            }
        }
    }
}

/// The client every provider shares: one connection pool per process, TLS
/// with the WebPKI roots (certificate errors are never ignored). An error
/// here (it cannot happen with ring's defaults) is reported by each request.
fn https_client() -> Result<HttpsClient, String> {
    static CLIENT: std::sync::OnceLock<Result<HttpsClient, String>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("cannot set up TLS for the model client: {error}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .build();
            Ok(Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .build(connector))
        })
        .clone()
}

/// What went wrong opening or using a connection, without the URL's
/// credentials (the caller names the URL).
fn connection_error(error: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut detail = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    detail
}

/// Read `body` frame by frame into `each`, failing beyond `limit` bytes.
async fn read_bounded(
    body: &mut Incoming,
    limit: u64,
    mut each: impl FnMut(&[u8]) -> Result<(), StreamError>,
) -> Result<(), StreamError> {
    let mut read: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| StreamError::Io(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        read += data.len() as u64;
        if read > limit {
            return Err(StreamError::Io(format!(
                "the response is larger than {limit} bytes"
            )));
        }
        each(&data)?;
    }
    Ok(())
}

/// A non-streamed completion: `choices[0].message`.
fn parse_completion(text: &str) -> Result<Reply, ProviderError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ProviderError::InvalidJson(e.to_string()))?;
    let message = value.pointer("/choices/0/message").ok_or_else(|| {
        ProviderError::InvalidJson("no choices[0].message in the response".into())
    })?;
    // Counted before the calls are copied out: every call would run.
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if calls > MAX_TOOL_CALLS {
        return Err(ProviderError::InvalidJson(format!(
            "the reply has {calls} tool calls; at most {MAX_TOOL_CALLS} are accepted in one reply"
        )));
    }
    let message: ChatMessage = serde_json::from_value(message.clone())
        .map_err(|e| ProviderError::InvalidJson(e.to_string()))?;
    Ok(Reply {
        content: message.content.unwrap_or_default(),
        tool_calls: message.tool_calls,
        usage: usage_of(&value),
    })
}

enum StreamError {
    Io(String),
    Json(String),
}

/// Server-sent events: `data: {chunk}` lines until `data: [DONE]`. Tool
/// calls arrive in pieces keyed by `index`: the id and name once, the
/// arguments as fragments to concatenate.
#[derive(Default)]
struct StreamParser {
    reply: Reply,
    calls: Vec<ToolCall>,
}

impl StreamParser {
    /// Take one line; returns whether the stream said it is done.
    fn line(&mut self, line: &str, on_text: &mut dyn FnMut(&str)) -> Result<bool, StreamError> {
        let Some(data) = line.strip_prefix("data:") else {
            return Ok(false);
        };
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| StreamError::Json(e.to_string()))?;
        // With `include_usage`, the last chunk carries it (and no choices).
        if let Some(usage) = usage_of(&chunk) {
            self.reply.usage = Some(usage);
        }
        let Some(delta) = chunk.pointer("/choices/0/delta") else {
            return Ok(false);
        };
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.reply.content.push_str(text);
            on_text(text);
        }
        for piece in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = piece
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(self.calls.len() as u64) as usize;
            if index >= MAX_TOOL_CALLS {
                return Err(StreamError::Json(format!(
                    "tool call index {index} is beyond the {MAX_TOOL_CALLS} calls accepted in one reply"
                )));
            }
            while self.calls.len() <= index {
                self.calls.push(ToolCall {
                    id: String::new(),
                    kind: function_type(),
                    function: FunctionCall {
                        name: String::new(),
                        arguments: String::new(),
                    },
                });
            }
            let call = &mut self.calls[index];
            if let Some(id) = piece.get("id").and_then(Value::as_str) {
                call.id = id.to_owned();
            }
            if let Some(name) = piece.pointer("/function/name").and_then(Value::as_str) {
                call.function.name.push_str(name);
            }
            if let Some(arguments) = piece.pointer("/function/arguments").and_then(Value::as_str) {
                call.function.arguments.push_str(arguments);
            }
        }
        Ok(false)
    }

    fn finish(mut self) -> Reply {
        self.reply.tool_calls = self.calls;
        self.reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_tool_call_deltas_are_assembled() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Let me \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"check.\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"text__count\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"text\\\":\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_2\",\"function\":{\"name\":\"memory\",\"arguments\":\"{}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\" \\\"a b\\\"}\"}}]}}]}\n\n",
            ": keep-alive comment\n\n",
            "data: [DONE]\n\n",
        );
        let mut seen = String::new();
        let mut parser = StreamParser::default();
        for line in stream.lines() {
            let Ok(done) = parser.line(line, &mut |text| seen.push_str(text)) else {
                panic!("stream must parse");
            };
            if done {
                break;
            }
        }
        let reply = parser.finish();
        assert_eq!(seen, "Let me check.");
        assert_eq!(reply.content, "Let me check.");
        assert_eq!(reply.tool_calls.len(), 2);
        assert_eq!(reply.tool_calls[0].id, "call_1");
        assert_eq!(reply.tool_calls[0].function.name, "text__count");
        assert_eq!(
            reply.tool_calls[0].function.arguments,
            "{\"text\": \"a b\"}"
        );
        assert_eq!(reply.tool_calls[1].function.name, "memory");
    }

    #[test]
    fn completions_without_choices_are_invalid() {
        assert!(matches!(
            parse_completion("{}"),
            Err(ProviderError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_completion("<html>"),
            Err(ProviderError::InvalidJson(_))
        ));
        let reply =
            parse_completion(r#"{"choices":[{"message":{"role":"assistant","content":"hi"}}]}"#)
                .unwrap();
        assert_eq!(reply.content, "hi");
    }

    fn completion_with_calls(count: usize) -> String {
        let calls: Vec<Value> = (0..count)
            .map(|i| serde_json::json!({"id": format!("call_{i}"), "type": "function", "function": {"name": "skills_list", "arguments": "{}"}}))
            .collect();
        serde_json::json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": calls}}]})
            .to_string()
    }

    #[test]
    fn plain_replies_are_held_to_the_tool_call_cap() {
        let reply = parse_completion(&completion_with_calls(MAX_TOOL_CALLS)).unwrap();
        assert_eq!(reply.tool_calls.len(), MAX_TOOL_CALLS);
        for count in [MAX_TOOL_CALLS + 1, 3_000] {
            let Err(ProviderError::InvalidJson(message)) =
                parse_completion(&completion_with_calls(count))
            else {
                panic!("{count} tool calls must be refused");
            };
            assert_eq!(
                message,
                format!("the reply has {count} tool calls; at most 128 are accepted in one reply")
            );
        }
    }
}
