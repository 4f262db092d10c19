//! Outgoing HTTP for components, through `wasi:http`: every request a guest
//! sends ends in [`OutgoingHttp::send_request`], and is judged, completed
//! and sent here. What is enforced where:
//!
//! - **Raw sockets** stay closed: the WASI context of every call denies
//!   TCP, UDP and name lookups (`guest_state`). `wasi:http` is the only way
//!   out, and it is linked for every component, so a component without a
//!   grant gets a clear refusal rather than a link error.
//! - **Destination**: scheme, host, port, path and method must match a rule
//!   of the skill's manifest AND a rule of its grant ([`NetworkAccess`]).
//!   Redirects are not followed here: a 3xx goes back to the guest, whose
//!   next request is judged like the first.
//! - **Resolved address**: a host name is resolved once, here; every address
//!   is checked and the connection goes to a checked address, so DNS
//!   rebinding cannot swap one in between. Loopback, private, link-local
//!   (cloud metadata), shared and other internal ranges, and this host's own
//!   service ports, are reached only when the grant names that very address.
//! - **Secrets**: the guest's URL, headers and body are scanned for every
//!   configured secret (and its encodings) and for credential shapes; a hit
//!   refuses the request. Then the host adds the secrets the grant routes to
//!   this host, in the header the manifest names; the guest never holds the
//!   value. Their values are redacted from the response's headers and body
//!   before the guest reads them (a server that echoes headers).
//! - **Limits** per tool call: [`MAX_REQUESTS_PER_CALL`] requests,
//!   [`MAX_RESPONSE_BYTES_PER_CALL`] bytes of responses, a request body of
//!   at most [`MAX_REQUEST_BODY_BYTES`], [`CONNECT_TIMEOUT`] to connect, and
//!   everything within the call's deadline.
//! - **TLS**: rustls with the WebPKI roots; a certificate error fails the
//!   request, there is no way to skip verification.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::policy::network::{NetworkAccess, RequestTarget, Scheme, is_internal_address};
use crate::leak_scan::LeakScanner;
use crate::untrusted_text as guest_text;

/// Most requests one tool call may send.
pub const MAX_REQUESTS_PER_CALL: u32 = 32;
/// Most bytes of response bodies one tool call may receive, all requests
/// together.
pub const MAX_RESPONSE_BYTES_PER_CALL: u64 = 16 * 1024 * 1024;
/// Largest request body a guest may send.
pub const MAX_REQUEST_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Longest wait for a connection (and a name lookup), unless the guest asks
/// for less.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The methods a request may use (a rule may narrow them further).
const STANDARD_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Headers some servers take as the method or the path: they would get
/// around a rule's methods or path.
const METHOD_OVERRIDES: [&str; 5] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// Where secret values are read, by name, at each request.
pub type SecretLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What every call of one skill shares: its access, where secrets come
/// from, the scanner, the ports of this host's own services.
#[derive(Clone)]
pub struct NetworkSetup {
    pub access: Arc<NetworkAccess>,
    pub secrets: SecretLookup,
    pub scanner: Arc<LeakScanner>,
    /// The gateway's and the dashboard's ports: reached only at an address
    /// the grant names.
    pub protected_ports: Arc<[u16]>,
}

impl Default for NetworkSetup {
    fn default() -> Self {
        Self {
            access: Arc::new(NetworkAccess::default()),
            secrets: Arc::new(|_| None),
            scanner: Arc::new(LeakScanner::default()),
            protected_ports: Arc::from([]),
        }
    }
}

/// The `wasi:http` hooks of one call.
pub struct OutgoingHttp {
    skill: Arc<str>,
    setup: NetworkSetup,
    deadline: Instant,
    requests: u32,
    response_budget: Arc<AtomicU64>,
}

impl OutgoingHttp {
    pub fn new(skill: Arc<str>, setup: NetworkSetup, deadline: Instant) -> Self {
        Self {
            skill,
            setup,
            deadline,
            requests: 0,
            response_budget: Arc::new(AtomicU64::new(MAX_RESPONSE_BYTES_PER_CALL)),
        }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    hyper::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutgoingHttp {
    /// `Host` is set by [`Call::send`] from the judged destination.
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        self.requests = self.requests.saturating_add(1);
        let over = self.requests > MAX_REQUESTS_PER_CALL;
        let call = Call {
            skill: Arc::clone(&self.skill),
            setup: self.setup.clone(),
            deadline: self.deadline,
            response_budget: Arc::clone(&self.response_budget),
        };
        Box::new(async move {
            if over {
                return Err(call.refuse(format!(
                    "a tool call may send at most {MAX_REQUESTS_PER_CALL} requests"
                )));
            }
            let response = call.send(request, options).await?;
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// One request's view of the call.
struct Call {
    skill: Arc<str>,
    setup: NetworkSetup,
    deadline: Instant,
    response_budget: Arc<AtomicU64>,
}

/// The message a guest gets for a refused request, prefixed so that the
/// SDK can tell a refusal from a network failure.
pub const REFUSED_PREFIX: &str = "talaria refused: ";

impl Call {
    fn refuse(&self, why: String) -> HttpError {
        tracing::warn!(skill = %self.skill, "outgoing request refused: {why}");
        HttpError::InternalError(Some(format!("{REFUSED_PREFIX}skill {}: {why}", self.skill)))
    }

    fn failed(&self, why: String) -> HttpError {
        tracing::debug!(skill = %self.skill, "outgoing request failed: {why}");
        HttpError::InternalError(Some(why))
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    async fn send(
        &self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<hyper::Response<WasiBody>, HttpError> {
        let (mut parts, body) = request.into_parts();
        let target = target_of(&parts).map_err(|why| self.refuse(why))?;
        let url = self.shown(&target.url());
        let access = &self.setup.access;
        if !access.allows(&target) {
            return Err(self.refuse(format!(
                "{} {url} is not allowed: {}",
                target.method,
                why_not(access, &target)
            )));
        }

        // The guest's part of the request, before the host adds anything.
        let body = tokio::time::timeout(self.remaining(), collect_request_body(body))
            .await
            .map_err(|_| {
                self.failed(
                    "the tool call's time ran out while the request body was written".into(),
                )
            })?
            .map_err(|why| self.refuse(format!("{} {url}: {why}", target.method)))?;
        if let Some(name) = METHOD_OVERRIDES
            .iter()
            .find(|name| parts.headers.contains_key(**name))
        {
            return Err(self.refuse(format!(
                "{} {url}: the header {name} would change the method or path a server sees",
                target.method
            )));
        }
        let mut scanned: Vec<&[u8]> = vec![
            parts
                .uri
                .path_and_query()
                .map_or(&b""[..], |p| p.as_str().as_bytes()),
            &body,
        ];
        for (name, value) in &parts.headers {
            scanned.push(name.as_str().as_bytes());
            scanned.push(value.as_bytes());
        }
        if let Some(found) = scanned
            .iter()
            .map(|part| self.setup.scanner.find(part))
            .find(|found| !found.is_empty())
        {
            return Err(self.refuse(format!(
                "{} {url} carries {}; a skill never sends a secret itself (the host adds the ones it is granted)",
                target.method,
                found.join(", ")
            )));
        }
        let mut carries_secret = false;
        for secret in access.secrets_for(&target.host) {
            // In clear text only to an address the operator named (a
            // service on loopback), never across a network.
            let named_address = target.host.parse::<IpAddr>().is_ok_and(is_internal_address);
            if target.scheme == Scheme::Http && !named_address {
                return Err(self.refuse(format!(
                    "secret {} is sent only over https, not to {url}",
                    secret.name
                )));
            }
            let Some(value) = (self.setup.secrets)(&secret.name) else {
                return Err(self.refuse(format!(
                    "secret {} is granted for {} but has no value it may send: it is not set in the \
                     home's .env (or the environment), or it is one of Talaria's own keys",
                    secret.name, target.host
                )));
            };
            // A value too short to be searched for could come back
            // unredacted.
            if value.chars().count() < crate::leak_scan::MIN_SECRET_CHARS {
                return Err(self.refuse(format!(
                    "secret {} is shorter than {} characters, too short to be kept from the skill",
                    secret.name,
                    crate::leak_scan::MIN_SECRET_CHARS
                )));
            }
            let header = HeaderName::from_bytes(secret.header.as_bytes());
            let value = HeaderValue::from_str(&secret.format.replace("{}", &value));
            let (Ok(header), Ok(mut value)) = (header, value) else {
                return Err(self.refuse(format!(
                    "secret {} does not make a valid `{}` header",
                    secret.name, secret.header
                )));
            };
            value.set_sensitive(true);
            parts.headers.insert(header, value);
            carries_secret = true;
        }
        if carries_secret {
            // The response is searched for the value as sent: no compressed
            // body, no piece of it at a time.
            parts.headers.insert(
                hyper::header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
            parts.headers.remove(hyper::header::RANGE);
            parts.headers.remove(hyper::header::IF_RANGE);
        }
        // The host names the server: the guest's authority may hold what
        // the check did not judge.
        let host_header = match (
            target.host.contains(':'),
            target.port == target.scheme.default_port(),
        ) {
            (true, true) => format!("[{}]", target.host),
            (true, false) => format!("[{}]:{}", target.host, target.port),
            (false, true) => target.host.clone(),
            (false, false) => format!("{}:{}", target.host, target.port),
        };
        parts.headers.insert(
            hyper::header::HOST,
            HeaderValue::from_str(&host_header).map_err(|e| self.failed(format!("{url}: {e}")))?,
        );

        let addresses = self.resolve(&target).await?;
        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .unwrap_or(CONNECT_TIMEOUT)
            .min(CONNECT_TIMEOUT);
        let stream = self.connect(&target, &addresses, connect_timeout).await?;
        let first_byte_timeout = options.and_then(|o| o.first_byte_timeout);
        // Only the path goes on the request line; the host was connected to.
        parts.uri = hyper::Uri::builder()
            .path_and_query(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .map_err(|e| self.failed(format!("{url}: {e}")))?;
        let request = hyper::Request::from_parts(parts, Full::new(body));
        let response = self
            .exchange(
                &target,
                stream,
                request,
                &url,
                carries_secret,
                first_byte_timeout,
            )
            .await?;
        Ok(response)
    }

    /// Text fit for a message and a log: no control characters, no secret.
    fn shown(&self, text: &str) -> String {
        let text = guest_text::sanitize(text, 512, false);
        self.setup.scanner.redact(&text).0.into_owned()
    }

    /// Every address of the host that may be reached, in the resolver's
    /// order.
    async fn resolve(&self, target: &RequestTarget) -> Result<Vec<SocketAddr>, HttpError> {
        let found: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, target.port)],
            Err(_) => {
                let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
                match tokio::time::timeout(CONNECT_TIMEOUT.min(self.remaining()), lookup).await {
                    Ok(Ok(addresses)) => addresses.collect(),
                    Ok(Err(error)) => {
                        return Err(self.failed(format!("cannot resolve {}: {error}", target.host)));
                    }
                    Err(_) => return Err(HttpError::DnsTimeout),
                }
            }
        };
        let protected = self.setup.protected_ports.contains(&target.port);
        let (reachable, internal): (Vec<SocketAddr>, Vec<SocketAddr>) =
            found.iter().partition(|address| {
                (!is_internal_address(address.ip()) && !protected)
                    || self
                        .setup
                        .access
                        .names_address(target, address.ip(), protected)
            });
        if reachable.is_empty() {
            let Some(first) = internal.first() else {
                return Err(self.failed(format!("{} has no address", target.host)));
            };
            let what = if protected && !is_internal_address(first.ip()) {
                format!("port {} of this host's own services", target.port)
            } else {
                "an internal address (loopback, private, link-local or reserved)".to_owned()
            };
            return Err(self.refuse(format!(
                "{} resolves to {}, {what}; such an address is reached only when the grant names it \
                 (`--network {}://{}`)",
                target.host,
                first.ip(),
                target.scheme.as_str(),
                SocketAddr::new(first.ip(), target.port)
            )));
        }
        Ok(reachable)
    }

    async fn connect(
        &self,
        target: &RequestTarget,
        addresses: &[SocketAddr],
        connect_timeout: Duration,
    ) -> Result<Box<dyn Stream>, HttpError> {
        let mut last_error = None;
        let mut tcp = None;
        for address in addresses {
            let limit = connect_timeout.min(self.remaining());
            match tokio::time::timeout(limit, tokio::net::TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    tcp = Some(stream);
                    break;
                }
                Ok(Err(error)) => last_error = Some(format!("{address}: {error}")),
                Err(_) => last_error = Some(format!("{address}: no connection within {limit:?}")),
            }
        }
        let Some(tcp) = tcp else {
            let why = last_error.unwrap_or_default();
            return Err(self.failed(format!("cannot connect to {}: {why}", target.host)));
        };
        if target.scheme == Scheme::Http {
            return Ok(Box::new(tcp));
        }
        let config = tls_config().map_err(|e| self.failed(e.clone()))?;
        let name = match target.host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| self.failed(format!("{}: {e}", target.host)))?,
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match tokio::time::timeout(
            connect_timeout.min(self.remaining()),
            connector.connect(name, tcp),
        )
        .await
        {
            Ok(Ok(stream)) => Ok(Box::new(stream)),
            Ok(Err(error)) => Err(self.failed(format!("TLS with {} failed: {error}", target.host))),
            Err(_) => Err(HttpError::ConnectionTimeout),
        }
    }

    /// Send `request` and read the whole response, within the call's
    /// budget of bytes and time; secret values redacted from it.
    async fn exchange(
        &self,
        target: &RequestTarget,
        stream: Box<dyn Stream>,
        request: hyper::Request<Full<Bytes>>,
        url: &str,
        carries_secret: bool,
        first_byte_timeout: Option<Duration>,
    ) -> Result<hyper::Response<WasiBody>, HttpError> {
        let io = hyper_util::rt::TokioIo::new(stream);
        let exchange = async {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| self.failed(format!("{url}: {e}")))?;
            let connection = AbortOnDrop(tokio::spawn(connection));
            let waited = first_byte_timeout
                .unwrap_or(Duration::MAX)
                .min(self.remaining());
            let response = tokio::time::timeout(waited, sender.send_request(request))
                .await
                .map_err(|_| {
                    self.failed(format!(
                        "{} {url}: no response within {waited:?}",
                        target.method
                    ))
                })?
                .map_err(|e| self.failed(format!("{} {url}: {e}", target.method)))?;
            let (mut parts, mut incoming) = response.into_parts();
            let encoded = parts
                .headers
                .get(hyper::header::CONTENT_ENCODING)
                .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
            if carries_secret && encoded {
                // It could hold the secret where the scan cannot see it.
                return Err(self.refuse(format!(
                    "the response of {url} is encoded (Content-Encoding) although identity was asked for; \
                     a response to a request with a secret is read only as sent"
                )));
            }
            let mut body = Vec::new();
            while let Some(frame) = incoming.frame().await {
                let frame =
                    frame.map_err(|e| self.failed(format!("{url}: reading the response: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    let taken = data.len() as u64;
                    let within = self.response_budget.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |left| left.checked_sub(taken),
                    );
                    if within.is_err() {
                        return Err(self.refuse(format!(
                            "the response of {url} passes the {MAX_RESPONSE_BYTES_PER_CALL} bytes a tool call may receive"
                        )));
                    }
                    body.extend_from_slice(&data);
                }
            }
            drop(connection);
            // A server may echo what it was sent: no secret value reaches
            // the guest, in a header or in the body.
            for value in parts.headers.values_mut() {
                if let Some((redacted, _)) = self
                    .setup
                    .scanner
                    .redact_values(value.as_bytes(), &|_| false)
                {
                    *value = HeaderValue::from_bytes(&redacted)
                        .unwrap_or_else(|_| HeaderValue::from_static("[REDACTED]"));
                }
            }
            if let Some((redacted, found)) = self.setup.scanner.redact_values(&body, &|_| false) {
                tracing::warn!(skill = %self.skill, url, secrets = %found.join(", "), "a response held secret values; they were redacted before the skill saw it");
                body = redacted;
                parts
                    .headers
                    .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            }
            tracing::debug!(skill = %self.skill, method = %target.method, url, status = parts.status.as_u16(), bytes = body.len(), "outgoing request");
            let body: WasiBody = Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync();
            Ok(hyper::Response::from_parts(parts, body))
        };
        match tokio::time::timeout(self.remaining(), exchange).await {
            Ok(result) => result,
            Err(_) => Err(self.failed(format!(
                "{url}: the tool call's time ran out waiting for the response"
            ))),
        }
    }
}

/// A connection's I/O, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Stops the connection's task with the request.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, &'static String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|builder| Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|error| format!("cannot set up TLS: {error}"))
        })
        .as_ref()
        .map(Arc::clone)
}

/// The request as the policy judges it.
fn target_of(parts: &hyper::http::request::Parts) -> Result<RequestTarget, String> {
    let uri = &parts.uri;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("a URL with a user name or password is not sent".into());
    }
    let method = parts.method.as_str().to_ascii_uppercase();
    if !STANDARD_METHODS.contains(&method.as_str()) {
        return Err(format!(
            "method {:?} is not one of {}",
            guest_text::sanitize(&method, 32, false),
            STANDARD_METHODS.join(", ")
        ));
    }
    let scheme = match uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        other => return Err(format!("scheme {other:?} is not reachable")),
    };
    let host = uri
        .host()
        .ok_or("the request names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let path = uri.path();
    // A server would resolve `..` (or its encoding) and leave the path a
    // rule narrowed to.
    let lower = path.to_ascii_lowercase();
    if lower.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".");
        decoded == "." || decoded.starts_with("..") || decoded.starts_with(".;")
    }) || ["%2f", "%5c", "%25", ";/"]
        .iter()
        .any(|s| lower.contains(s))
        || path.contains('\\')
    {
        return Err(format!(
            "the path {:?} holds `.`/`..` segments or encoded slashes",
            guest_text::sanitize(path, 256, false)
        ));
    }
    Ok(RequestTarget {
        port: uri.port_u16().unwrap_or(scheme.default_port()),
        scheme,
        host,
        path: path.to_owned(),
        method,
    })
}

/// Why `access` does not let `target` through, for the guest and the
/// operator.
fn why_not(access: &NetworkAccess, target: &RequestTarget) -> String {
    let list = |rules: &[super::policy::network::NetworkRule]| {
        rules
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if access.requested.is_empty() {
        return "its manifest asks for no network access ([capabilities] network)".into();
    }
    if !access.requested.iter().any(|rule| rule.allows(target)) {
        return format!("its manifest asks only for {}", list(&access.requested));
    }
    if access.granted.is_empty() {
        return "the operator granted it no destination (`talaria skills grant SKILL --network URL`)".into();
    }
    format!("the operator granted only {}", list(&access.granted))
}

async fn collect_request_body(body: WasiBody) -> Result<Bytes, String> {
    let limited = http_body_util::Limited::new(body, MAX_REQUEST_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(format!(
            "the request body passes the {MAX_REQUEST_BODY_BYTES} bytes a request may send"
        )),
        Err(error) => Err(format!("the request body could not be read: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str) -> hyper::http::request::Parts {
        hyper::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn odd_requests_are_refused() {
        let cases = [
            ("GET", "https://user:pw@h/", "user name or password"),
            ("TRACE", "https://h/", "method \"TRACE\" is not one of"),
            ("BREW", "https://h/", "is not one of"),
        ];
        for (method, uri, expected) in cases {
            let error = target_of(&parts(method, uri)).unwrap_err();
            assert!(error.contains(expected), "{method} {uri}: {error}");
        }
    }

    #[test]
    fn requests_are_read_as_the_policy_judges_them() {
        let target = target_of(&parts("get", "https://API.GitHub.com./repos/a?x=1")).unwrap();
        assert_eq!(target.host, "api.github.com");
        assert_eq!(target.port, 443);
        assert_eq!(target.path, "/repos/a");
        assert_eq!(target.method, "GET");
        let target = target_of(&parts("GET", "http://[::1]:8080/")).unwrap();
        assert_eq!((target.host.as_str(), target.port), ("::1", 8080));
        for uri in [
            "https://h/repos/..;/admin",
            "https://h/repos/%252e%252e/admin",
            "https://h/repos/../admin",
            "https://h/repos/%2E%2E/admin",
            "https://h/a%2fb",
            "https://h/./a",
        ] {
            let error = target_of(&parts("GET", uri)).unwrap_err();
            assert!(
                error.contains("segments or encoded slashes"),
                "{uri}: {error}"
            );
        }
    }
}
