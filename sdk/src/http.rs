//! Outgoing HTTP for skills: a small client over `wasi:http`.
//!
//! ```no_run
//! use talaria_sdk::http;
//!
//! # fn run() -> Result<(), talaria_sdk::ToolError> {
//! let page = http::get("https://en.wikipedia.org/wiki/Rust")
//!     .header("Accept", "text/html")
//!     .send()?;
//! let repo: serde_json::Value = http::post("https://api.github.com/graphql")
//!     .json(&serde_json::json!({ "query": "{ viewer { login } }" }))?
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! # Ok(()) }
//! ```
//!
//! What reaches the network is the host's decision: a request goes out only
//! to a destination the skill's manifest asks for (`[capabilities] network`)
//! and the operator granted. A refusal is [`HttpError::Refused`], which a
//! tool returns to the model as `denied`. Secrets (API tokens) are never in
//! the skill's hands: the manifest names them (`[capabilities] secrets`) and
//! the host adds them to the requests for the hosts they are granted for.
//!
//! Redirects are followed (at most [`Request::max_redirects`], 5 by default),
//! each new destination judged by the host like the first.

use std::fmt;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// What the host prefixes a refusal with.
const REFUSED_PREFIX: &str = "talaria refused: ";

/// Bytes written to the host in one call (the stream's largest write).
const WRITE_CHUNK: usize = 4096;

/// A request being built; [`Request::send`] sends it.
#[derive(Debug, Clone)]
pub struct Request {
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    max_redirects: u32,
    timeout_ms: Option<u64>,
}

/// `GET url`.
pub fn get(url: impl Into<String>) -> Request {
    Request::new("GET", url)
}

/// `POST url`.
pub fn post(url: impl Into<String>) -> Request {
    Request::new("POST", url)
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Where the response came from, after redirects.
    pub url: String,
}

/// Why a request gave no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused the destination (not granted, an internal address,
    /// a secret in the request, a limit); the message says which.
    Refused(String),
    /// The URL or a header is not valid.
    Invalid(String),
    /// The network failed: no connection, TLS, a timeout.
    Failed(String),
    /// [`Response::error_for_status`] on a 4xx or 5xx.
    Status { status: u16, body: String },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(why) => write!(f, "refused by the host: {why}"),
            Self::Invalid(why) => write!(f, "invalid request: {why}"),
            Self::Failed(why) => write!(f, "request failed: {why}"),
            Self::Status { status, body } => write!(f, "HTTP status {status}: {body}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for crate::ToolError {
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::Refused(_) => crate::ToolError::Denied(error.to_string()),
            _ => crate::ToolError::Failed(error.to_string()),
        }
    }
}

impl Request {
    pub fn new(method: &'static str, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            max_redirects: 5,
            timeout_ms: None,
        }
    }

    /// Add a header (several with the same name are all sent).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// `value` as the JSON body, with `Content-Type: application/json`.
    pub fn json<T: serde::Serialize>(self, value: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| HttpError::Invalid(format!("the JSON body: {e}")))?;
        Ok(self.header("Content-Type", "application/json").body(body))
    }

    /// How many redirects to follow; 0 hands a 3xx back.
    pub fn max_redirects(mut self, redirects: u32) -> Self {
        self.max_redirects = redirects;
        self
    }

    /// Longest wait for the connection and for the response to start (the
    /// tool call's own time limit bounds it anyway).
    pub fn timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = Some(timeout_ms);
        self
    }

    /// Send the request and read the whole response, following redirects.
    pub fn send(self) -> Result<Response, HttpError> {
        let mut method = self.method;
        let mut url = self.url.clone();
        let mut headers = self.headers.clone();
        let mut body = self.body.clone();
        let mut redirects = 0;
        loop {
            let response = send_once(method, &url, &headers, &body, self.timeout_ms)?;
            let location = response.header("location").map(str::to_owned);
            match (response.status, location) {
                (301 | 302 | 303 | 307 | 308, Some(location)) if redirects < self.max_redirects => {
                    redirects += 1;
                    let next = resolve(&url, &location)?;
                    // Credentials the skill set go to their own origin only.
                    if origin(&next) != origin(&url) {
                        headers.retain(|(name, _)| {
                            !["authorization", "cookie", "proxy-authorization"]
                                .iter()
                                .any(|n| name.eq_ignore_ascii_case(n))
                        });
                    }
                    url = next;
                    if response.status == 303
                        || (matches!(response.status, 301 | 302) && method == "POST")
                    {
                        method = "GET";
                        body.clear();
                    }
                }
                _ => return Ok(response),
            }
        }
    }
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            HttpError::Failed(format!(
                "the response of {} is not the JSON expected: {e}",
                self.url
            ))
        })
    }

    /// The response, or [`HttpError::Status`] for a 4xx or 5xx (with the
    /// start of the body).
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.status >= 400 {
            let mut body = self.text();
            if body.len() > 512 {
                let mut end = 512;
                while !body.is_char_boundary(end) {
                    end -= 1;
                }
                body.truncate(end);
            }
            return Err(HttpError::Status {
                status: self.status,
                body,
            });
        }
        Ok(self)
    }
}

/// A URL taken apart as `wasi:http` wants it.
#[derive(Debug, PartialEq, Eq)]
struct Url<'a> {
    https: bool,
    authority: &'a str,
    path_and_query: String,
}

fn parse_url(url: &str) -> Result<Url<'_>, HttpError> {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let scheme = url[..scheme_end].to_ascii_lowercase();
    let rest = &url[scheme_end..];
    let https = if scheme == "https://" {
        true
    } else if scheme == "http://" {
        false
    } else {
        return Err(HttpError::Invalid(format!(
            "{url:?}: expected an http:// or https:// URL"
        )));
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(HttpError::Invalid(format!(
            "{url:?}: expected a host after the scheme (and no user)"
        )));
    }
    Ok(Url {
        https,
        authority,
        path_and_query: if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        },
    })
}

/// `scheme://authority` of `url`, lower case.
fn origin(url: &str) -> Option<String> {
    parse_url(url).ok().map(|parsed| {
        format!(
            "{}://{}",
            if parsed.https { "https" } else { "http" },
            parsed.authority.to_ascii_lowercase()
        )
    })
}

/// `location` taken relative to `base`.
fn resolve(base: &str, location: &str) -> Result<String, HttpError> {
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(location.to_owned());
    }
    let parsed = parse_url(base)?;
    let scheme = if parsed.https { "https" } else { "http" };
    if let Some(rest) = location.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{}{location}", parsed.authority));
    }
    let path = parsed.path_and_query.split('?').next().unwrap_or("/");
    if location.starts_with('?') {
        return Ok(format!("{scheme}://{}{path}{location}", parsed.authority));
    }
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Ok(format!("{scheme}://{}{dir}{location}", parsed.authority))
}

fn method_of(method: &str) -> Method {
    match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_owned()),
    }
}

fn send_once(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout_ms: Option<u64>,
) -> Result<Response, HttpError> {
    let parsed = parse_url(url)?;
    let fields: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&fields)
        .map_err(|e| HttpError::Invalid(format!("a header of the request: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let invalid = |what: &str| HttpError::Invalid(format!("{url:?}: {what}"));
    request
        .set_method(&method_of(method))
        .map_err(|()| invalid("the method"))?;
    request
        .set_scheme(Some(if parsed.https {
            &Scheme::Https
        } else {
            &Scheme::Http
        }))
        .map_err(|()| invalid("the scheme"))?;
    request
        .set_authority(Some(parsed.authority))
        .map_err(|()| invalid("the host"))?;
    request
        .set_path_with_query(Some(&parsed.path_and_query))
        .map_err(|()| invalid("the path"))?;
    let options = timeout_ms.map(|ms| {
        let options = RequestOptions::new();
        let nanos = ms.saturating_mul(1_000_000);
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        options
    });
    let outgoing = request.body().map_err(|()| invalid("the body"))?;
    // Sent first, the body written after: the host reads the body while
    // the request is under way.
    let future = outgoing_handler::handle(request, options).map_err(|e| from_code(url, e))?;
    // When the host refused the request at once, it dropped the body: the
    // refusal, not the failed write, is the answer.
    let refused_or = |failure: HttpError| match future.get() {
        Some(Ok(Err(code))) => from_code(url, code),
        _ => failure,
    };
    let written = (|| {
        let stream = outgoing.write().map_err(|()| invalid("the body"))?;
        for chunk in body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| HttpError::Failed(format!("{url}: writing the body: {e:?}")))?;
        }
        Ok(())
    })();
    if let Err(failure) = written {
        future.subscribe().block();
        return Err(refused_or(failure));
    }
    if let Err(code) = OutgoingBody::finish(outgoing, None) {
        future.subscribe().block();
        return Err(refused_or(from_code(url, code)));
    }
    let incoming = loop {
        match future.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(from_code(url, code)),
            Some(Err(())) => return Err(HttpError::Failed(format!("{url}: no response"))),
            None => future.subscribe().block(),
        }
    };
    let status = incoming.status();
    let headers = incoming
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let body = incoming
        .consume()
        .map_err(|()| HttpError::Failed(format!("{url}: the response has no body")))?;
    let bytes = read_body(&body, url)?;
    drop(IncomingBody::finish(body));
    Ok(Response {
        status,
        headers,
        body: bytes,
        url: url.to_owned(),
    })
}

fn read_body(body: &IncomingBody, url: &str) -> Result<Vec<u8>, HttpError> {
    let stream = body
        .stream()
        .map_err(|()| HttpError::Failed(format!("{url}: the response body")))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(HttpError::Failed(format!(
                    "{url}: reading the response: {}",
                    error.to_debug_string()
                )));
            }
        }
    }
}

/// The host's error code as an [`HttpError`]: its refusals carry a message
/// after [`REFUSED_PREFIX`].
fn from_code(url: &str, code: ErrorCode) -> HttpError {
    match code {
        ErrorCode::InternalError(Some(message)) => match message.strip_prefix(REFUSED_PREFIX) {
            Some(why) => HttpError::Refused(why.to_owned()),
            None => HttpError::Failed(message),
        },
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => {
            HttpError::Failed(format!("{url}: timed out"))
        }
        other => HttpError::Failed(format!("{url}: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_taken_apart() {
        assert_eq!(
            parse_url("https://api.github.com/repos?x=1#top").unwrap(),
            Url {
                https: true,
                authority: "api.github.com",
                path_and_query: "/repos?x=1".into()
            }
        );
        assert_eq!(
            parse_url("http://127.0.0.1:8080?q").unwrap().path_and_query,
            "/?q"
        );
        assert!(matches!(parse_url("ftp://x"), Err(HttpError::Invalid(_))));
        assert!(matches!(
            parse_url("https://u@x/"),
            Err(HttpError::Invalid(_))
        ));
    }

    #[test]
    fn redirects_resolve_against_the_request() {
        let base = "https://a.org/docs/page?x=1";
        assert_eq!(resolve(base, "https://b.org/").unwrap(), "https://b.org/");
        assert_eq!(resolve(base, "//c.org/x").unwrap(), "https://c.org/x");
        assert_eq!(resolve(base, "/top").unwrap(), "https://a.org/top");
        assert_eq!(resolve(base, "next").unwrap(), "https://a.org/docs/next");
        assert_eq!(
            resolve(base, "?y=2").unwrap(),
            "https://a.org/docs/page?y=2"
        );
        assert_eq!(resolve(base, "HTTPS://B.org/").unwrap(), "HTTPS://B.org/");
        assert_eq!(origin("HTTPS://B.org/x"), Some("https://b.org".into()));
        assert_ne!(origin("https://a.org/"), origin("https://b.org/"));
    }
}
