//! The web dashboard: a page for the operator, served beside the API by the
//! same process on its own port (`gateway.dashboard_port`, 9119).
//!
//! The page (HTML, CSS and script, embedded in the binary: no CDN, works
//! offline) talks to `/api/` (see [`api`]): status, chat, sessions, skills
//! and their grants, memory, logs.
//!
//! Who gets in (see [`auth`]):
//! - Bound to loopback without a password, a browser on this machine that
//!   reaches it directly (a loopback peer, a loopback `Host`, no proxy
//!   headers, not a cross-site request) gets a session on `GET
//!   /api/session`. Bound beyond loopback, or reached by name
//!   (`gateway.dashboard_hosts`, a reverse proxy), the gateway refuses to
//!   start unless a password is set (`talaria gateway set-password`); once
//!   one is set, every session starts with a login (10 attempts a minute
//!   per client, two password checks at a time), and setting another ends
//!   every session opened before.
//! - Sessions ride in a signed `HttpOnly`, `SameSite=Strict` cookie. Every
//!   request that changes something carries the session's CSRF token in
//!   `X-CSRF-Token` (and, when the browser sends one, an `Origin` of the
//!   same host or a listed name); browsers' `Sec-Fetch-Site: cross-site`
//!   requests to `/api/` are refused outright.
//! - Every request's `Host` must be a loopback address or `localhost` (bound
//!   to loopback), any IP address (bound beyond), or a name in
//!   `gateway.dashboard_hosts`: a page on another site whose name was made
//!   to resolve to this machine (DNS rebinding) gets 403.
//! - A strict Content-Security-Policy (scripts and styles from this origin
//!   only, no inline script, no framing); no secret is ever in the page.

mod api;
pub mod auth;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::Gateway;
use super::error::ApiError;

/// What the page may load and do: everything from this origin, nothing
/// inline, never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

pub(crate) struct Dashboard {
    gateway: Arc<Gateway>,
    sessions: auth::Sessions,
    logins: auth::LoginLimiter,
    password_file: PathBuf,
    /// Bound to loopback: without a password, sessions are handed out.
    loopback: bool,
    hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardStartError {
    #[error(
        "refusing to serve the dashboard on {address} without a password: anyone who can reach it \
         could grant skills and plant commands. Set one with `talaria gateway set-password`, bind \
         loopback (--host 127.0.0.1), or turn the dashboard off (--no-dashboard, \
         TALARIA_DASHBOARD=0 or gateway.dashboard = false)"
    )]
    NoPassword { address: SocketAddr },
    #[error(
        "refusing to serve the dashboard under gateway.dashboard_hosts without a password: a name \
         means it is reached through DNS or a reverse proxy, by more than this machine. Set one \
         with `talaria gateway set-password`, or empty gateway.dashboard_hosts"
    )]
    NamedWithoutPassword,
}

impl Dashboard {
    /// Check that serving on `address` is safe, and set the dashboard up.
    pub(super) fn new(gateway: Arc<Gateway>, address: SocketAddr) -> anyhow::Result<Self> {
        let password_file = auth::password_file(&gateway.app.home);
        let has_password = auth::load_password_hash(&password_file)?.is_some();
        let loopback = address.ip().is_loopback();
        if !loopback && !has_password {
            return Err(DashboardStartError::NoPassword { address }.into());
        }
        if !gateway.config.dashboard_hosts.is_empty() && !has_password {
            return Err(DashboardStartError::NamedWithoutPassword.into());
        }
        if !loopback {
            tracing::warn!(
                %address,
                "the dashboard listens beyond loopback over plain HTTP: put it behind a reverse proxy with TLS, since the password and the session cookie travel in every login and request"
            );
        }
        Ok(Self {
            hosts: gateway.config.dashboard_hosts.clone(),
            gateway,
            sessions: auth::Sessions::default(),
            logins: auth::LoginLimiter::default(),
            password_file,
            loopback,
        })
    }

    /// The stored password hash, read on every use: `set-password` takes
    /// effect without a restart, and ends the sessions opened before.
    fn password_hash(&self) -> Result<Option<String>, ApiError> {
        auth::load_password_hash(&self.password_file).map_err(|error| {
            tracing::error!("{error:#}");
            ApiError::internal(
                "the dashboard's password file cannot be read; see the gateway's log",
            )
        })
    }

    /// The session id of the request's cookie, if it is valid under the
    /// current password.
    fn session_of(&self, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        let epoch = auth::PasswordEpoch::of(self.password_hash()?.as_deref());
        let now = Instant::now();
        Ok(headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == auth::COOKIE)
            .find_map(|(_, value)| self.sessions.check(value, now, &epoch)))
    }

    fn host_allowed(&self, host: &str) -> bool {
        host_allowed(host, self.loopback, &self.hosts)
    }
}

/// Whether a request's `Host` names this dashboard: bound to loopback, a
/// loopback address or `localhost`; bound beyond, any IP address (a page
/// that rebinds a name to this machine still sends its name); or a name the
/// operator listed.
fn host_allowed(host: &str, loopback: bool, listed: &[String]) -> bool {
    let name = host_name(host).to_ascii_lowercase();
    if listed.contains(&name) {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => !loopback || ip.is_loopback(),
        Err(_) => loopback && name == "localhost",
    }
}

/// Whether `host` is this machine by a loopback name.
fn is_loopback_host(host: &str) -> bool {
    let name = host_name(host).to_ascii_lowercase();
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Headers a reverse proxy adds: a request that carries one came from
/// elsewhere, whatever its peer address.
const PROXY_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "via",
];

/// Whether a request comes straight from a browser on this machine: a
/// loopback peer, a loopback `Host`, no proxy's headers, not a cross-site
/// request. Only such a request gets a session without a password.
fn from_this_machine(request: &Request) -> bool {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    client_ip(request.extensions()).is_loopback()
        && is_loopback_host(host)
        && !PROXY_HEADERS.iter().any(|name| headers.contains_key(*name))
        && !cross_site(headers)
}

/// Whether the browser says the request comes from another site's page.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| matches!(site, "cross-site" | "same-site"))
}

/// The name part of a `Host` value: without its port, IPv6 brackets removed.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Serve the dashboard on `listener` until `stop` is notified.
pub(super) fn serve(
    dashboard: Arc<Dashboard>,
    listener: tokio::net::TcpListener,
    stop: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let router = router(dashboard);
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.notified().await })
        .await
        .context("the dashboard's server failed")
    })
}

fn router(dashboard: Arc<Dashboard>) -> Router {
    let max_body = dashboard.gateway.config.max_body_bytes;
    let signed_in = Router::new()
        .route("/api/logout", post(api::logout))
        .route("/api/status", get(api::status))
        .route("/api/chat", post(api::chat))
        .route("/api/sessions", get(api::sessions))
        .route(
            "/api/sessions/{id}",
            get(api::session_messages).delete(api::delete_session),
        )
        .route("/api/sessions/{id}/export", get(api::export_session))
        .route("/api/skills", get(api::skills))
        .route(
            "/api/skills/{name}/grant",
            get(api::grant_preview).post(api::grant),
        )
        .route("/api/skills/{name}/revoke", post(api::revoke))
        .route("/api/memory", get(api::memory))
        .route("/api/memory/{target}", post(api::change_memory))
        .route("/api/logs", get(api::logs))
        .route("/api/approvals", get(api::approvals))
        .route("/api/approvals/{id}", post(api::answer_approval))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&dashboard),
            require_session,
        ));
    Router::new()
        .route("/", get(page))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .route("/assets/icon.svg", get(icon))
        .route("/api/session", get(api::session))
        .route("/api/login", post(api::login))
        .merge(signed_in)
        .fallback(not_found)
        .method_not_allowed_fallback(super::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&dashboard),
            check_host_and_origin,
        ))
        .layer(middleware::from_fn(harden))
        .layer(middleware::from_fn(super::log_and_harden_quiet_reads))
        .with_state(dashboard)
}

/// A `Host` that is not ours is refused (DNS rebinding); so is a
/// state-changing request whose `Origin` is another site.
async fn check_host_and_origin(
    State(dashboard): State<Arc<Dashboard>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !dashboard.host_allowed(&host) {
        return ApiError::forbidden(
            "unknown_host",
            "this dashboard does not answer to that Host; add the name to gateway.dashboard_hosts if it is yours",
        )
        .into_response();
    }
    let refused =
        || ApiError::forbidden("cross_origin", "cross-origin requests are refused").into_response();
    if request.uri().path().starts_with("/api/") && cross_site(request.headers()) {
        return refused();
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD)
        && let Some(origin) = request.headers().get(header::ORIGIN)
    {
        // The page's own origin: the `Host` it was loaded from, or a listed
        // name (behind a proxy that rewrites `Host`).
        let same = origin.to_str().ok().is_some_and(|origin| {
            origin.split_once("://").is_some_and(|(_, authority)| {
                authority.eq_ignore_ascii_case(&host)
                    || dashboard
                        .hosts
                        .contains(&host_name(authority).to_ascii_lowercase())
            })
        });
        if !same {
            return refused();
        }
    }
    next.run(request).await
}

/// The signed-in part of `/api/`: a valid session cookie, and for anything
/// but reading, the session's CSRF token.
async fn require_session(
    State(dashboard): State<Arc<Dashboard>>,
    mut request: Request,
    next: Next,
) -> Response {
    let id = match dashboard.session_of(request.headers()) {
        Ok(Some(id)) => id,
        Ok(None) => return ApiError::login_required().into_response(),
        Err(error) => return error.into_response(),
    };
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let token = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !dashboard.sessions.csrf_matches(&id, token) {
            return ApiError::forbidden(
                "csrf",
                format!("missing or wrong {CSRF_HEADER} header: reload the page"),
            )
            .into_response();
        }
    }
    request.extensions_mut().insert(SessionId(id));
    next.run(request).await
}

/// The dashboard session a request belongs to.
#[derive(Clone)]
pub(crate) struct SessionId(pub String);

/// The `Set-Cookie` value of a session.
fn session_cookie(value: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        auth::COOKIE,
        auth::SESSION_LIFETIME.as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("talaria_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The client's address (for the login limit).
fn client_ip(request: &axum::http::Extensions) -> IpAddr {
    request
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

async fn harden(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

use axum::http::HeaderName;

const INDEX_HTML: &str = include_str!("dashboard/assets/index.html");
const APP_JS: &str = include_str!("dashboard/assets/app.js");
const APP_CSS: &str = include_str!("dashboard/assets/app.css");
const ICON_SVG: &str = include_str!("dashboard/assets/icon.svg");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON_SVG)
}

async fn not_found(request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        ApiError::not_found("no such dashboard API").into_response()
    } else {
        (StatusCode::NOT_FOUND, "not found").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_localhost_and_listed_names_are_this_dashboard() {
        let listed = vec!["talaria.example.com".to_owned()];
        let cases = [
            ("127.0.0.1:9119", true, true),
            ("[::1]:9119", true, true),
            ("192.0.2.10:9119", false, true),
            // Bound to loopback, only loopback names: a proxy that sends
            // its own address as `Host` is not this machine's browser.
            ("192.0.2.10:9119", true, false),
            ("localhost:9119", true, true),
            ("LOCALHOST:9119", true, true),
            // Beyond loopback, `localhost` is whatever the client thinks.
            ("localhost:9119", false, false),
            ("talaria.example.com", false, true),
            ("Talaria.Example.com:443", false, true),
            // DNS rebinding: a foreign name pointed at this machine.
            ("attacker.example:9119", true, false),
            ("talaria.example.com.attacker.example", false, false),
            ("", true, false),
        ];
        for (host, loopback, allowed) in cases {
            assert_eq!(
                host_allowed(host, loopback, &listed),
                allowed,
                "{host} (loopback: {loopback})"
            );
        }
    }

    #[test]
    fn host_names_lose_their_port() {
        let cases = [
            ("127.0.0.1:9119", "127.0.0.1"),
            ("localhost", "localhost"),
            ("[::1]:9119", "::1"),
            ("talaria.example.com:443", "talaria.example.com"),
            ("evil.example:x", "evil.example:x"),
        ];
        for (host, name) in cases {
            assert_eq!(host_name(host), name, "{host}");
        }
    }
}
