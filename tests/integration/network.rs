//! Outgoing HTTP of skills: the `netprobe` test skill against servers on
//! loopback (127.0.0.1 and 127.0.0.2; nothing beyond this machine). Each
//! refusal is checked by its message, each secret by what the server
//! received and what the guest saw.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use talaria_runtime::leak_scan::LeakScanner;
use talaria_runtime::sandbox::policy::NetworkRule;
use talaria_runtime::sandbox::{LoadedSkill, ToolCallErrorKind};
use talaria_runtime::skill::Skill;

use crate::support::{Fixture, assert_exit, skill_source, stderr, stdout, talaria};

const TOKEN: &str = "ntp-0123456789abcdef-secret";
const ENDPOINT: &str = "endpoint-setting-0123456789";

/// What a test server received: the `Authorization` header of each
/// request, by path.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Received>>>);

/// A request's path and `Authorization` header.
type Received = (String, Option<String>);

impl Seen {
    /// Note a request; its `Authorization` header.
    fn record(&self, uri: &Uri, headers: &HeaderMap) -> Option<String> {
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        self.0
            .lock()
            .unwrap()
            .push((uri.path().to_owned(), auth.clone()));
        auth
    }

    fn authorization_of(&self, path: &str) -> Vec<Option<String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, auth)| auth.clone())
            .collect()
    }
}

/// A server on `ip`: `/hello`, `/echo` (the request's headers, in the body
/// and back as `x-echo-*` headers), `/redirect?to=URL`, `/big` (17 MiB),
/// `/slow` (answers after 20 s), `/public/...`.
async fn serve(ip: &str) -> (SocketAddr, Seen) {
    serve_with(ip, handle).await
}

/// A server on `ip` answering every request with `handler`.
async fn serve_with<H, T>(ip: &str, handler: H) -> (SocketAddr, Seen)
where
    H: axum::handler::Handler<T, Seen>,
    T: 'static,
{
    let seen = Seen::default();
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .fallback(any(handler))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, seen)
}

async fn handle(
    State(seen): State<Seen>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let auth = seen.record(&uri, &headers);
    match uri.path() {
        "/hello" => "hello from loopback".into_response(),
        "/echo" => {
            let received: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
                .collect();
            let mut response =
                axum::Json(json!({"method": method.as_str(), "headers": received})).into_response();
            if let Some(auth) = auth {
                response
                    .headers_mut()
                    .insert("x-echo-authorization", auth.parse().unwrap());
            }
            response
        }
        "/redirect" => (
            StatusCode::FOUND,
            [("location", query.get("to").cloned().unwrap_or_default())],
        )
            .into_response(),
        "/big" => vec![b'x'; 17 * 1024 * 1024].into_response(),
        "/gzip" => ([("content-encoding", "gzip")], vec![0x1fu8, 0x8b, 0, 0]).into_response(),
        "/loop" => (StatusCode::FOUND, [("location", "/loop")]).into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(20)).await;
            "too late".into_response()
        }
        path if path.starts_with("/public/") => format!("public {path}").into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `netprobe` with the grant `granted`, the secret values `secrets`
/// (also what the scanner looks for), and nothing else.
async fn netprobe(fixture: &Fixture, granted: &[String], secrets: &[(&str, &str)]) -> LoadedSkill {
    netprobe_with(fixture, granted, secrets, &[]).await
}

/// [`netprobe`], with `protected` as the host's own service ports.
async fn netprobe_with(
    fixture: &Fixture,
    granted: &[String],
    secrets: &[(&str, &str)],
    protected: &[u16],
) -> LoadedSkill {
    let dir = fixture.skills_dir.join("netprobe");
    if !dir.exists() {
        fixture.install(&skill_source("tests/skills/netprobe"), "netprobe", None);
    }
    let skill = Skill::load(&dir).unwrap();
    let mut capabilities =
        talaria_runtime::skill::capabilities::requested(&skill, &fixture.roots());
    capabilities.network.granted = granted
        .iter()
        .map(|text| NetworkRule::parse(text, &[]).unwrap())
        .collect();
    if secrets.is_empty() {
        // As a grant that approves none.
        capabilities.network.secrets.clear();
    }
    let loaded = fixture
        .sandbox()
        .load(skill.component_source().unwrap().unwrap(), capabilities)
        .await
        .unwrap();
    let values: HashMap<String, String> = secrets
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    // The skill's own variable is a value of `.env` too: the scanner knows
    // it.
    let scanner = LeakScanner::new(
        secrets
            .iter()
            .copied()
            .chain([("NETPROBE_ENDPOINT", ENDPOINT)]),
    );
    loaded
        .with_env(|name| (name == "NETPROBE_ENDPOINT").then(|| ENDPOINT.to_owned()))
        .with_network(
            Arc::new(move |name| values.get(name).cloned()),
            Arc::new(scanner),
            Arc::from(protected),
        )
}

async fn fetch(skill: &LoadedSkill, arguments: Value) -> Result<Value, ToolCallErrorKind> {
    skill
        .call("fetch", &arguments.to_string())
        .await
        .map(|output| serde_json::from_str(&output.result).unwrap())
        .map_err(|error| error.kind)
}

fn refused(outcome: Result<Value, ToolCallErrorKind>) -> String {
    match outcome {
        Err(ToolCallErrorKind::Denied(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_granted_destination_is_reached_and_every_other_one_is_refused() {
    let fixture = Fixture::new();
    let (server, _) = serve("127.0.0.1").await;
    let (other, _) = serve("127.0.0.2").await;
    let probe = netprobe(
        &fixture,
        &[
            format!("http://127.0.0.1:{}", server.port()),
            format!("http://127.0.0.2:{}", other.port()),
        ],
        &[],
    )
    .await;

    let ok = fetch(&probe, json!({"url": format!("http://{server}/hello")}))
        .await
        .unwrap();
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["body"], "hello from loopback");

    // Another port of the same host.
    let message = refused(
        fetch(
            &probe,
            json!({"url": format!("http://127.0.0.1:{}/hello", other.port())}),
        )
        .await,
    );
    assert!(message.contains("skill netprobe v0.1.0"), "{message}");
    assert!(
        message.contains(&format!(
            "GET http://127.0.0.1:{}/hello is not allowed",
            other.port()
        )),
        "{message}"
    );
    assert!(message.contains("the operator granted only"), "{message}");
    // Another scheme.
    let message = refused(fetch(&probe, json!({"url": format!("https://{server}/hello")})).await);
    assert!(
        message.contains(&format!("GET https://{server}/hello is not allowed")),
        "{message}"
    );
    // Another host: the manifest reaches 127.0.0.2 only for GET /public/**.
    let public = fetch(
        &probe,
        json!({"url": format!("http://{other}/public/page")}),
    )
    .await
    .unwrap();
    assert_eq!(public["body"], "public /public/page");
    let message = refused(fetch(&probe, json!({"url": format!("http://{other}/hello")})).await);
    assert!(message.contains("its manifest asks only for"), "{message}");
    let message = refused(
        fetch(
            &probe,
            json!({"method": "POST", "url": format!("http://{other}/public/page"), "body": "x"}),
        )
        .await,
    );
    assert!(
        message.contains(&format!("POST http://{other}/public/page is not allowed")),
        "{message}"
    );
    // A path that a server would resolve out of the pattern.
    let message = refused(
        fetch(
            &probe,
            json!({"url": format!("http://{other}/public/../hello")}),
        )
        .await,
    );
    assert!(message.contains("`.`/`..` segments"), "{message}");
    // A header some servers take as the method.
    let message = refused(
        fetch(
            &probe,
            json!({"url": format!("http://{other}/public/page"), "headers": [["X-HTTP-Method-Override", "DELETE"]]}),
        )
        .await,
    );
    assert!(message.contains("would change the method"), "{message}");
    // A host the grant does not name at all.
    let message = refused(fetch(&probe, json!({"url": "http://127.0.0.3:9/hello"})).await);
    assert!(message.contains("is not allowed"), "{message}");

    // Nothing granted: the operator is told how.
    let ungranted = netprobe(&fixture, &[], &[]).await;
    let message =
        refused(fetch(&ungranted, json!({"url": format!("http://{server}/hello")})).await);
    assert!(
        message.contains(
            "the operator granted it no destination (`talaria skills grant SKILL --network URL`)"
        ),
        "{message}"
    );

    // Raw sockets stay closed whatever is granted.
    let raw = probe
        .call(
            "raw_socket",
            &json!({"address": server.to_string()}).to_string(),
        )
        .await
        .unwrap_err();
    assert!(matches!(raw.kind, ToolCallErrorKind::Denied(_)), "{raw}");
}

#[tokio::test]
async fn redirects_are_judged_like_the_first_request() {
    let fixture = Fixture::new();
    let (server, seen) = serve("127.0.0.1").await;
    let (other, other_seen) = serve("127.0.0.2").await;
    let probe = netprobe(
        &fixture,
        &[format!("http://127.0.0.1:{}", server.port())],
        &[],
    )
    .await;
    let to_other = format!("http://{server}/redirect?to=http://{other}/public/x");
    let message = refused(fetch(&probe, json!({"url": to_other})).await);
    assert!(
        message.contains(&format!("GET http://{other}/public/x is not allowed")),
        "{message}"
    );
    assert!(
        other_seen.authorization_of("/public/x").is_empty(),
        "the other host was reached"
    );
    assert_eq!(seen.authorization_of("/redirect").len(), 1);

    // Not followed: the 3xx is the guest's.
    let handed = fetch(&probe, json!({"url": to_other, "max_redirects": 0}))
        .await
        .unwrap();
    assert_eq!(handed["status"], 302);

    // Followed within the grant.
    let within = format!("http://{server}/redirect?to=/hello");
    let followed = fetch(&probe, json!({"url": within})).await.unwrap();
    assert_eq!(followed["body"], "hello from loopback");
    assert_eq!(followed["url"], format!("http://{server}/hello"));
}

#[tokio::test]
async fn a_host_name_is_judged_by_the_address_it_resolves_to() {
    let fixture = Fixture::new();
    let (server, _) = serve("127.0.0.1").await;
    let by_name = format!("http://localhost:{}", server.port());
    let probe = netprobe(&fixture, std::slice::from_ref(&by_name), &[]).await;
    let message = refused(fetch(&probe, json!({"url": format!("{by_name}/hello")})).await);
    assert!(
        message.contains("localhost resolves to") && message.contains("an internal address"),
        "{message}"
    );
    assert!(
        message.contains(&format!("`--network http://127.0.0.1:{}`", server.port()))
            || message.contains(&format!("`--network http://[::1]:{}`", server.port())),
        "the message says what to grant: {message}"
    );

    // This host's own service port is reached only when granted by its
    // number, not by `:*`.
    let service = format!("http://127.0.0.1:{}", server.port());
    let any_port = netprobe_with(
        &fixture,
        &["http://127.0.0.1:*".to_owned()],
        &[],
        &[server.port()],
    )
    .await;
    let message = refused(fetch(&any_port, json!({"url": format!("{service}/hello")})).await);
    assert!(message.contains("an internal address"), "{message}");
    let named = netprobe_with(
        &fixture,
        std::slice::from_ref(&service),
        &[],
        &[server.port()],
    )
    .await;
    fetch(&named, json!({"url": format!("{service}/hello")}))
        .await
        .unwrap();

    // The operator names the address itself: now it is reached.
    let probe = netprobe(
        &fixture,
        &[
            by_name.clone(),
            format!("http://127.0.0.1:{}", server.port()),
            format!("http://[::1]:{}", server.port()),
        ],
        &[],
    )
    .await;
    let ok = fetch(&probe, json!({"url": format!("{by_name}/hello")}))
        .await
        .unwrap();
    assert_eq!(ok["body"], "hello from loopback");
}

#[tokio::test]
async fn a_secret_is_added_by_the_host_and_never_seen_by_the_guest() {
    let fixture = Fixture::new();
    let (server, seen) = serve("127.0.0.1").await;
    let granted = [
        format!("http://127.0.0.1:{}", server.port()),
        format!("http://localhost:{}", server.port()),
    ];
    let probe = netprobe(&fixture, &granted, &[("NETPROBE_TOKEN", TOKEN)]).await;

    // The server gets the secret; the guest sees neither it in the echoed
    // body nor in the echoed header.
    let echoed = fetch(&probe, json!({"url": format!("http://{server}/echo")}))
        .await
        .unwrap();
    assert_eq!(
        seen.authorization_of("/echo"),
        [Some(format!("Bearer {TOKEN}"))]
    );
    let shown = echoed.to_string();
    assert!(!shown.contains(TOKEN), "the guest saw the secret: {shown}");
    assert!(
        shown.contains("Bearer [REDACTED:NETPROBE_TOKEN]"),
        "{shown}"
    );
    let header = echoed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == "x-echo-authorization")
        .unwrap();
    assert_eq!(header[1], "Bearer [REDACTED:NETPROBE_TOKEN]");

    // The host names the server in `Host`, from the judged destination.
    let host = echoed["body"].as_str().unwrap().to_owned();
    assert!(host.contains(&format!("[\"host\",\"{server}\"]")), "{host}");
    // An encoded answer to a request with a secret could hide it: refused.
    let message = refused(fetch(&probe, json!({"url": format!("http://{server}/gzip")})).await);
    assert!(
        message.contains("is encoded (Content-Encoding)"),
        "{message}"
    );
    // Not even the value of a variable the skill may read: it is a value of
    // `.env`, and the network is not where a skill's variables go.
    let message = refused(
        fetch(
            &probe,
            json!({"url": format!("http://{server}/echo"), "headers": [["X-Endpoint", ENDPOINT]]}),
        )
        .await,
    );
    assert!(message.contains("carries NETPROBE_ENDPOINT"), "{message}");
    // A value too short to be searched for in the response is not sent.
    let short = netprobe(&fixture, &granted, &[("NETPROBE_TOKEN", "short")]).await;
    let message = refused(fetch(&short, json!({"url": format!("http://{server}/hello")})).await);
    assert!(message.contains("shorter than 8 characters"), "{message}");

    // The guest's own Authorization is replaced, not sent beside it.
    fetch(
        &probe,
        json!({"url": format!("http://{server}/echo"), "headers": [["Authorization", "Bearer mine"]]}),
    )
    .await
    .unwrap();
    assert_eq!(
        seen.authorization_of("/echo")[1],
        Some(format!("Bearer {TOKEN}"))
    );

    // Not to another host: the secret is granted for 127.0.0.1 only, by
    // name, whatever `localhost` resolves to.
    let probe_by_name = netprobe(
        &fixture,
        &[
            granted[1].clone(),
            format!("http://[::1]:{}", server.port()),
            format!("http://127.0.0.1:{}", server.port()),
        ],
        &[("NETPROBE_TOKEN", TOKEN)],
    )
    .await;
    let before = seen.authorization_of("/hello").len();
    fetch(
        &probe_by_name,
        json!({"url": format!("http://localhost:{}/hello", server.port())}),
    )
    .await
    .unwrap();
    assert_eq!(
        seen.authorization_of("/hello")[before..],
        [None],
        "a request to another host name carries no secret"
    );

    // The guest's environment, arguments, files and host calls hold none.
    let environment = probe.call("environment", "{}").await.unwrap().result;
    assert!(!environment.contains(TOKEN), "{environment}");
    assert!(!environment.contains("NETPROBE_TOKEN"), "{environment}");

    // A guest that learned the value cannot send it itself: not in a
    // header, the URL or the body (plain or base64), to any host.
    let encoded = base64_of(TOKEN);
    for request in [
        json!({"url": format!("http://localhost:{}/echo", server.port()), "headers": [["X-Token", TOKEN]]}),
        json!({"url": format!("http://{server}/echo?t={TOKEN}")}),
        json!({"method": "POST", "url": format!("http://{server}/echo"), "body": format!("token={encoded}")}),
    ] {
        let message = refused(fetch(&probe, request.clone()).await);
        assert!(
            message.contains("carries NETPROBE_TOKEN"),
            "{request}: {message}"
        );
        assert!(!message.contains(TOKEN), "{message}");
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn responses_are_bounded_in_bytes_and_time() {
    let fixture = Fixture::new();
    let (server, _) = serve("127.0.0.1").await;
    let probe = netprobe(
        &fixture,
        &[format!("http://127.0.0.1:{}", server.port())],
        &[],
    )
    .await;
    let message = refused(fetch(&probe, json!({"url": format!("http://{server}/big")})).await);
    assert!(
        message.contains("passes the 16777216 bytes a tool call may receive"),
        "{message}"
    );
    // A redirect loop followed far: the 33rd request of the call is refused.
    let message = refused(
        fetch(
            &probe,
            json!({"url": format!("http://{server}/loop"), "max_redirects": 100}),
        )
        .await,
    );
    assert!(
        message.contains("a tool call may send at most 32 requests"),
        "{message}"
    );
    // The manifest's 3 s limit stops the call waiting on a slow server.
    let started = std::time::Instant::now();
    let slow = fetch(&probe, json!({"url": format!("http://{server}/slow")})).await;
    assert!(
        matches!(slow, Err(ToolCallErrorKind::Timeout { limit_ms: 3000, .. })),
        "{slow:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the deadline held"
    );
}

/// The operator's side: `skills grant --network`, the audit, and a guest's
/// log line with a secret it learned.
#[test]
fn the_operator_grants_destinations_and_secrets_and_the_audit_shows_them() {
    let fixture = Fixture::new();
    fixture.install(&skill_source("tests/skills/netprobe"), "netprobe", None);
    std::fs::write(
        fixture.root.path().join(".env"),
        format!("NETPROBE_TOKEN={TOKEN}\n"),
    )
    .unwrap();

    // Outside the manifest, and a wide grant without --network-any.
    let outside = talaria(
        &fixture,
        &[
            "skills",
            "grant",
            "netprobe",
            "--network",
            "https://api.github.com",
            "--yes",
        ],
    );
    assert_exit(&outside, 1);
    assert!(
        stderr(&outside)
            .contains("--network https://api.github.com: the skill's manifest does not ask for it"),
        "{}",
        stderr(&outside)
    );
    let bad = talaria(
        &fixture,
        &[
            "skills",
            "grant",
            "netprobe",
            "--network",
            "http://127.0.0.1:99999",
            "--yes",
        ],
    );
    assert_exit(&bad, 1);
    assert!(
        stderr(&bad).contains("is not 1 to 65535"),
        "{}",
        stderr(&bad)
    );
    let unknown_secret = talaria(
        &fixture,
        &[
            "skills",
            "grant",
            "netprobe",
            "--secret",
            "OTHER_TOKEN",
            "--yes",
        ],
    );
    assert_exit(&unknown_secret, 1);
    assert!(
        stderr(&unknown_secret)
            .contains("names no secret \"OTHER_TOKEN\" (it names NETPROBE_TOKEN)"),
        "{}",
        stderr(&unknown_secret)
    );

    let granted = talaria(
        &fixture,
        &[
            "skills",
            "grant",
            "netprobe",
            "--network",
            "http://127.0.0.1:8080",
            "--secret",
            "NETPROBE_TOKEN@127.0.0.1",
            "--yes",
        ],
    );
    assert_exit(&granted, 0);
    let shown = stdout(&granted);
    assert!(shown.contains("network  http://127.0.0.1:8080"), "{shown}");
    assert!(
        shown.contains("secrets  NETPROBE_TOKEN → 127.0.0.1 (set)"),
        "{shown}"
    );
    assert!(!shown.contains(TOKEN), "{shown}");
    let grants = std::fs::read_to_string(fixture.root.path().join("grants.toml")).unwrap();
    assert!(
        grants.contains("network = [\"http://127.0.0.1:8080\"]"),
        "{grants}"
    );

    let audit = talaria(&fixture, &["skills", "audit", "--json"]);
    let audit: Value = serde_json::from_str(&stdout(&audit)).unwrap();
    let skill = audit["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "netprobe")
        .unwrap();
    assert_eq!(skill["network"], json!(["http://127.0.0.1:8080"]));
    assert_eq!(skill["secrets"][0]["name"], "NETPROBE_TOKEN");
    assert_eq!(skill["secrets"][0]["granted_hosts"], json!(["127.0.0.1"]));
    assert_eq!(skill["secrets"][0]["set"], true);
    assert!(!audit.to_string().contains(TOKEN));

    let text = stdout(&talaria(&fixture, &["skills", "audit"]));
    assert!(text.contains("network  http://127.0.0.1:8080"), "{text}");
    assert!(
        text.contains("secrets  NETPROBE_TOKEN → 127.0.0.1 (set)"),
        "{text}"
    );
    let info = stdout(&talaria(&fixture, &["skills", "info", "netprobe"]));
    assert!(
        info.contains("http://127.0.0.2:*/public/** (GET)"),
        "the request, methods included: {info}"
    );

    // A guest that learned the value does not get it into the log.
    let said = talaria(
        &fixture,
        &[
            "tool",
            "call",
            "netprobe.say",
            &json!({"text": TOKEN}).to_string(),
        ],
    );
    let log = stderr(&said);
    assert!(
        log.contains("the guest says [REDACTED:NETPROBE_TOKEN]"),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "{log}");
}

/// A page, a JSON document and a SearXNG-style search API on loopback.
async fn serve_web() -> (SocketAddr, Seen) {
    serve_with("127.0.0.1", web_page).await
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Talaria &mdash; a test page</title>
<style>.x { display: none }</style><script>document.write("tracking")</script></head>
<body><nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<main><h1>Sandboxed skills</h1>
<p>Every skill runs as a <em>WebAssembly component</em>. Read the
<a href="/docs/design.html">design notes</a> first.</p>
<h2>Why</h2><ul><li>Deny by default</li><li>Grants pinned to a hash</li></ul>
</main></body></html>"#;

async fn web_page(State(seen): State<Seen>, uri: Uri, headers: HeaderMap) -> Response {
    seen.record(&uri, &headers);
    match uri.path() {
        "/page.html" => ([("content-type", "text/html; charset=utf-8")], PAGE).into_response(),
        "/data.json" => axum::Json(json!({"b": [1, 2], "a": "x"})).into_response(),
        "/image.png" => (
            [("content-type", "image/png")],
            vec![0x89u8, b'P', b'N', b'G'],
        )
            .into_response(),
        "/search" => {
            let query = uri.query().unwrap_or_default().to_owned();
            axum::Json(json!({
                "query": query,
                "results": [
                    {"title": "WASI HTTP", "url": "https://example.org/wasi-http", "content": "The proposal."},
                    {"title": "Rust", "url": "https://www.rust-lang.org/", "content": "A language."},
                    {"title": "no url"},
                ]
            }))
            .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[tokio::test]
async fn the_bundled_web_skill_reads_pages_and_searches_what_the_operator_granted() {
    let fixture = Fixture::new();
    let (server, seen) = serve_web().await;
    fixture.install(&skill_source("skills/web"), "web", None);
    let skill = Skill::load(&fixture.skills_dir.join("web")).unwrap();
    let requested = talaria_runtime::skill::capabilities::requested(&skill, &fixture.roots());
    let key = "web-search-key-0123456789";
    // The operator's search endpoint, in the skill's data directory.
    let data = fixture.skill_data.join("web");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("search-url"), format!("http://{server}/search\n")).unwrap();
    let load = |granted: Vec<String>, secret_host: Option<&str>| {
        let mut capabilities = requested.clone();
        capabilities.network.granted = granted
            .iter()
            .map(|text| NetworkRule::parse(text, &[]).unwrap())
            .collect();
        capabilities.network.secrets.retain_mut(|secret| {
            secret.hosts = secret_host
                .map(|host| {
                    vec![talaria_runtime::sandbox::policy::HostPattern::parse(host).unwrap()]
                })
                .unwrap_or_default();
            !secret.hosts.is_empty()
        });
        talaria_runtime::skill::capabilities::prepare(&capabilities).unwrap();
        let sandbox = fixture.sandbox();
        let source = skill.component_source().unwrap().unwrap();
        async move {
            let loaded = sandbox.load(source, capabilities).await.unwrap();
            let scanner = LeakScanner::new([("WEB_SEARCH_API_KEY", key)]);
            loaded.with_network(
                Arc::new(move |name| (name == "WEB_SEARCH_API_KEY").then(|| key.to_owned())),
                Arc::new(scanner),
                Arc::from([]),
            )
        }
    };

    // As bundled: no destination until the operator names one.
    let web = load(Vec::new(), None).await;
    let error = web
        .call(
            "fetch",
            &json!({"url": format!("http://{server}/page.html")}).to_string(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error.kind, ToolCallErrorKind::Denied(m) if m.contains("the operator granted it no destination")),
        "{error}"
    );

    let web = load(
        vec![format!("http://127.0.0.1:{}", server.port())],
        Some("127.0.0.1"),
    )
    .await;
    let page: Value = serde_json::from_str(
        &web.call(
            "fetch",
            &json!({"url": format!("http://{server}/page.html")}).to_string(),
        )
        .await
        .unwrap()
        .result,
    )
    .unwrap();
    assert_eq!(page["title"], "Talaria — a test page");
    assert_eq!(page["status"], 200);
    assert_eq!(page["truncated"], false);
    assert_eq!(
        page["text"],
        format!(
            "# Sandboxed skills\n\nEvery skill runs as a WebAssembly component. Read the \
             [design notes](/docs/design.html) first.\n\n## Why\n\n- Deny by default\n- Grants pinned to a hash"
        )
    );
    let cut: Value = serde_json::from_str(
        &web.call(
            "fetch",
            &json!({"url": format!("http://{server}/page.html"), "max_chars": 10}).to_string(),
        )
        .await
        .unwrap()
        .result,
    )
    .unwrap();
    assert_eq!(
        (cut["text"].as_str().unwrap(), &cut["truncated"]),
        ("# Sandboxe", &json!(true))
    );
    let data: Value = serde_json::from_str(
        &web.call(
            "fetch",
            &json!({"url": format!("http://{server}/data.json")}).to_string(),
        )
        .await
        .unwrap()
        .result,
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(data["text"].as_str().unwrap()).unwrap(),
        json!({"a": "x", "b": [1, 2]})
    );
    let image = web
        .call(
            "fetch",
            &json!({"url": format!("http://{server}/image.png")}).to_string(),
        )
        .await
        .unwrap_err();
    assert!(
        error_text(&image).contains("is image/png (4 bytes), which this tool does not read"),
        "{image}"
    );
    // GET only, as its manifest says; another port is not granted.
    let elsewhere = web
        .call(
            "fetch",
            &json!({"url": format!("http://127.0.0.1:{}/page.html", server.port() + 1)})
                .to_string(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(elsewhere.kind, ToolCallErrorKind::Denied(_)),
        "{elsewhere}"
    );

    // Search: the configured endpoint, the key added by the host.
    let found: Value = serde_json::from_str(
        &web.call(
            "search",
            &json!({"query": "wasi http & more", "max_results": 5}).to_string(),
        )
        .await
        .unwrap()
        .result,
    )
    .unwrap();
    assert_eq!(
        found["results"],
        json!([
            {"title": "WASI HTTP", "url": "https://example.org/wasi-http", "snippet": "The proposal."},
            {"title": "Rust", "url": "https://www.rust-lang.org/", "snippet": "A language."},
        ])
    );
    assert_eq!(
        seen.authorization_of("/search"),
        [Some(format!("Bearer {key}"))]
    );
    // A secret goes with every request to the host it is granted for
    // (here the page is on the search host).
    assert_eq!(
        seen.authorization_of("/page.html")[0],
        Some(format!("Bearer {key}"))
    );
    // Without the secret's grant no request carries it.
    let web = load(vec![format!("http://127.0.0.1:{}", server.port())], None).await;
    web.call("search", &json!({"query": "x"}).to_string())
        .await
        .unwrap();
    assert_eq!(seen.authorization_of("/search")[1], None);
}

fn error_text(error: &talaria_runtime::sandbox::ToolCallError) -> String {
    error.to_string()
}

/// A TLS server on loopback whose certificate no root trusts: the request
/// fails on the certificate, never goes through.
#[tokio::test]
async fn a_certificate_no_root_trusts_fails_the_request() {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let dir = crate::support::repo_root().join("tests/fixtures/tls");
    let certificate = CertificateDer::from_pem_file(dir.join("cert.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certificate], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&handshakes);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let outcome = acceptor.accept(stream).await.map(|_| ());
            seen.lock().unwrap().push(outcome.is_ok());
        }
    });

    let fixture = Fixture::new();
    let probe = netprobe(&fixture, &[format!("https://127.0.0.1:{port}")], &[]).await;
    let outcome = fetch(
        &probe,
        json!({"url": format!("https://127.0.0.1:{port}/hello")}),
    )
    .await;
    let Err(ToolCallErrorKind::Failed(message)) = outcome else {
        panic!("expected the request to fail: {outcome:?}");
    };
    assert!(
        message.contains("TLS with 127.0.0.1 failed") && message.contains("certificate"),
        "{message}"
    );
    // The server sees the client give up (its side ends a moment later).
    for _ in 0..100 {
        if !handshakes.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        *handshakes.lock().unwrap(),
        [false],
        "no handshake completed"
    );
}
