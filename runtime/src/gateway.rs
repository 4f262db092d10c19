//! `talaria gateway run`: Talaria as a long-running service, an
//! OpenAI-compatible API over the same [`App`] the CLI uses.
//!
//! - `GET /health`: no key, no detail (for load balancers and probes).
//! - `GET /health/detailed`, `GET /v1/models`, `POST /v1/chat/completions`
//!   (see [`chat`]), `POST /v1/responses` and `GET`/`DELETE
//!   /v1/responses/{id}` (see [`responses`]): `Authorization: Bearer
//!   <TALARIA_API_KEY>` required, loopback included.
//!
//! Safe by default: it binds loopback unless told otherwise, refuses to run
//! as root unless allowed, generates its key on a first start (see
//! [`api_key`]), answers every error in OpenAI's shape (see [`error`]),
//! sends CORS headers only to the origins listed in `gateway.cors_origins`,
//! bounds request bodies (413), concurrent runs (429) and their time, and
//! logs one line per request without bodies or keys. One gateway per home:
//! a second one is refused, naming the process that holds the home.
//!
//! This module is an entry point: it uses [`App`] and what is below it,
//! never the CLI.

pub mod api_key;
mod chat;
pub mod dashboard;
pub mod error;
pub mod probe;
mod responses;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::App;
use crate::config::GatewayConfig;
use crate::home::{LockError, WriterLock};
use api_key::{ApiKey, KeyOrigin};
use error::ApiError;

/// The id the configured model is exposed under, whatever it is: clients
/// keep working when the operator changes the model behind it.
pub const MODEL_ID: &str = "talaria";

/// Continues a stored session; the response names the session it stored.
pub const SESSION_HEADER: &str = "x-talaria-session-id";

/// How long in-flight requests may take to finish after SIGTERM or SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the entry point was told, over `[gateway]` in the configuration.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// `--host`: overrides `gateway.host` / `TALARIA_API_HOST`.
    pub host: Option<String>,
    /// `--port`: overrides `gateway.port` / `TALARIA_API_PORT`; 0 picks a
    /// free port (the started line says which).
    pub port: Option<u16>,
    /// `--dashboard-port`: overrides `gateway.dashboard_port` /
    /// `TALARIA_DASHBOARD_PORT`; 0 picks a free port.
    pub dashboard_port: Option<u16>,
    /// `--no-dashboard`: serve the API only.
    pub no_dashboard: bool,
    /// `--allow-root` (or `TALARIA_ALLOW_ROOT=1` in the process
    /// environment): run as root anyway.
    pub allow_root: bool,
}

/// What the gateway reports once it listens.
#[derive(Debug, Clone)]
pub struct Started {
    pub address: SocketAddr,
    /// Where the dashboard listens, when it is served.
    pub dashboard: Option<SocketAddr>,
    pub key_origin: KeyOrigin,
}

/// The state every request shares.
pub(crate) struct Gateway {
    app: App,
    config: GatewayConfig,
    key: ApiKey,
    runs: Arc<Semaphore>,
    started: Instant,
    /// Commands waiting for a person (the dashboard answers them).
    approvals: Arc<crate::approval::pending::PendingApprovals>,
}

impl Gateway {
    /// The home's session store, or 500.
    fn sessions(&self) -> Result<crate::memory::SessionStore, ApiError> {
        self.app
            .session_store()
            .map_err(|e| ApiError::internal(format!("cannot open the session store: {e:#}")))
    }

    /// A permit to run the agent, or 429.
    fn try_run(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.runs)
            .try_acquire_owned()
            .map_err(|_| ApiError::busy(self.config.max_concurrent_runs))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "refusing to run the gateway as root: a service reachable from the network should not hold every \
         privilege. Run it as an unprivileged user (the container image does), or pass --allow-root \
         (or set TALARIA_ALLOW_ROOT=1 in the environment) if you must"
    )]
    Root,
    #[error(
        "a gateway is already running on this data home (pid {pid}, `{command}`); stop it first, or start \
         this one with another --home"
    )]
    AlreadyRunning { pid: u32, command: String },
}

/// Whether `host` (an address or a name to bind) is this machine's
/// loopback only.
fn binds_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Run the gateway until SIGTERM or SIGINT; `on_started` is called once it
/// listens. Returns when in-flight requests have finished (or the grace
/// time ran out).
pub async fn run(
    app: App,
    options: GatewayOptions,
    on_started: impl FnOnce(&Started),
) -> anyhow::Result<()> {
    let allowed_by_env = app.env.get_from_process("TALARIA_ALLOW_ROOT") == Some("1");
    if rustix::process::geteuid().is_root() && !options.allow_root && !allowed_by_env {
        return Err(StartError::Root.into());
    }
    let _lock = WriterLock::acquire(&app.home.gateway_lock_file(), "talaria gateway run").map_err(
        |error| match error {
            LockError::Held { holder, .. } => StartError::AlreadyRunning {
                pid: holder.pid,
                command: holder.command,
            }
            .into(),
            other => anyhow::Error::from(other),
        },
    )?;
    let (key, key_origin) = ApiKey::load_or_generate(&app.home, &app.env)?;
    // Read the skills (and load those whose tools are not known yet) now,
    // not in the first request.
    if let Err(error) = app.registry().offered().await {
        tracing::warn!("cannot read the skills at start: {error:#}");
    }
    let mut config = app.config.gateway.clone();
    if let Some(host) = options.host {
        config.host.value = host;
    }
    if let Some(port) = options.port {
        config.port.value = port;
    }
    if let Some(port) = options.dashboard_port {
        config.dashboard_port.value = port;
    }
    if options.no_dashboard {
        config.dashboard.value = false;
    }
    let bind = (config.host.value.as_str(), config.port.value);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {}:{}", bind.0, bind.1))?;
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() {
        tracing::warn!(
            %address,
            "the API listens beyond loopback: put it behind a reverse proxy with TLS, since the key travels in every request"
        );
    }
    match &key_origin {
        KeyOrigin::Generated(path) => tracing::warn!(
            "no TALARIA_API_KEY was set: generated one into {} (clients send it as a bearer token)",
            path.display()
        ),
        KeyOrigin::Configured(origin) => tracing::info!("API key from {origin}"),
    }
    // On by default only: beyond loopback without a password the dashboard
    // stays off with a warning, so a container started with no settings
    // serves its API. Asked for (flag, variable, config), it is refused
    // below, saying why. Decided before binding, so a port in use cannot
    // stop the start of a dashboard that would be off.
    if config.dashboard.value
        && matches!(config.dashboard.source, crate::config::Source::Default)
        && !binds_loopback(&config.host.value)
        && dashboard::auth::load_password_hash(&dashboard::auth::password_file(&app.home))?
            .is_none()
    {
        tracing::warn!(
            "the dashboard is off: beyond loopback it needs a password. Set one with `talaria gateway \
             set-password` and start again"
        );
        config.dashboard.value = false;
    }
    let dashboard_listener = if config.dashboard.value {
        let bind = (config.host.value.as_str(), config.dashboard_port.value);
        Some(
            tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {}:{} for the dashboard (--dashboard-port picks another port, --no-dashboard turns it off)",
                        bind.0, bind.1
                    )
                })?,
        )
    } else {
        None
    };
    // Commands that need approval wait here for the dashboard, up to
    // `approvals.timeout_secs`, instead of being refused at once.
    let approvals = Arc::new(crate::approval::pending::PendingApprovals::new(
        std::time::Duration::from_secs(app.config.approvals.timeout_secs),
    ));
    // Without the dashboard nobody could answer: what needs approval is
    // refused at once rather than held until its time limit.
    if config.dashboard.value {
        app.set_approver(Arc::clone(&approvals) as Arc<dyn crate::approval::pending::Approver>);
    }
    let gateway = Arc::new(Gateway {
        runs: Arc::new(Semaphore::new(config.max_concurrent_runs)),
        config,
        app,
        key,
        started: Instant::now(),
        approvals,
    });
    let dashboard = match dashboard_listener {
        Some(listener) => {
            let dashboard_address = listener.local_addr()?;
            let dashboard = dashboard::Dashboard::new(Arc::clone(&gateway), dashboard_address)?;
            Some((listener, dashboard_address, Arc::new(dashboard)))
        }
        None => None,
    };
    if gateway.app.config.backend.value != crate::backend::Kind::None {
        // Reaps what dead processes left and starts the sandbox container
        // now, so the first command does not wait and problems show at start.
        let backend = gateway.app.backend();
        tokio::spawn(async move {
            match backend.prepare().await {
                Ok(()) => tracing::info!("backend ready: {}", backend.describe()),
                Err(error) => tracing::warn!("{error}"),
            }
        });
    }
    let router = router(Arc::clone(&gateway));
    // Watched before the started line: a supervisor may signal as soon as
    // it reads it.
    let shutdown = shutdown_signal()?;
    on_started(&Started {
        address,
        dashboard: dashboard.as_ref().map(|(_, address, _)| *address),
        key_origin,
    });
    tracing::info!(%address, "gateway listening");

    let stop = Arc::new(tokio::sync::Notify::new());
    let stop_dashboard = Arc::new(tokio::sync::Notify::new());
    let mut dashboard_server = dashboard.map(|(listener, address, dashboard)| {
        tracing::info!(%address, "dashboard listening");
        dashboard::serve(dashboard, listener, Arc::clone(&stop_dashboard))
    });
    let server = axum::serve(listener, router).with_graceful_shutdown({
        let stop = Arc::clone(&stop);
        async move { stop.notified().await }
    });
    let mut server = tokio::spawn(async move { server.await });
    let dashboard_failed = async {
        match dashboard_server.as_mut() {
            Some(handle) => handle.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = &mut server => return result.context("the server task failed")?.context("the server failed"),
        result = dashboard_failed => {
            result.context("the dashboard's task failed")??;
            anyhow::bail!("the dashboard's server stopped");
        }
        signal = shutdown => tracing::info!("{signal}: no new connections; finishing the requests in flight"),
    }
    // `notify_one` keeps the permit if the server is not waiting yet.
    stop.notify_one();
    stop_dashboard.notify_one();
    let both = async {
        let api = (&mut server).await;
        if let Some(handle) = dashboard_server.as_mut() {
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!("{error:#}"),
                Err(error) => tracing::warn!("the dashboard's task failed: {error}"),
            }
        }
        api
    };
    match tokio::time::timeout(SHUTDOWN_GRACE, both).await {
        Ok(result) => result
            .context("the server task failed")?
            .context("the server failed")?,
        Err(_) => {
            if let Some(handle) = &dashboard_server {
                handle.abort();
            }
            let running = gateway.config.max_concurrent_runs - gateway.runs.available_permits();
            tracing::warn!(
                running,
                "requests still running after {} s; stopping them",
                SHUTDOWN_GRACE.as_secs()
            );
            server.abort();
        }
    }
    gateway.app.shutdown().await;
    tracing::info!("gateway stopped");
    Ok(())
}

/// `N` bytes from a cryptographically secure generator (rand's thread RNG,
/// seeded by the operating system), in hex.
fn random_hex<const N: usize>() -> String {
    let bytes: [u8; N] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A future that ends at the first SIGTERM or SIGINT, with its name; the
/// handlers are in place when this returns.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}

fn router(gateway: Arc<Gateway>) -> Router {
    let protected = Router::new()
        .route("/health/detailed", get(health_detailed))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&gateway),
            require_key,
        ));
    let mut router = Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(gateway.config.max_body_bytes));
    if let Some(cors) = cors(&gateway.config) {
        router = router.layer(cors);
    }
    router
        .layer(middleware::from_fn(log_and_harden))
        .with_state(gateway)
}

/// CORS only for the listed origins; none listed, no CORS headers, so
/// browsers keep other sites' pages from reading the API.
fn cors(config: &GatewayConfig) -> Option<tower_http::cors::CorsLayer> {
    if config.cors_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            // OpenAI's JavaScript client sends its own `x-stainless-*` and
            // `openai-*` headers; the origin is what is checked.
            .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
            .expose_headers([HeaderName::from_static(SESSION_HEADER)])
            .max_age(Duration::from_secs(600)),
    )
}

async fn require_key(
    State(gateway): State<Arc<Gateway>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            // The scheme's name is case-insensitive (RFC 9110).
            let (scheme, key) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(key)
        })
        .map(str::trim);
    match presented {
        Some(key) if gateway.key.matches(key) => next.run(request).await,
        _ => ApiError::invalid_key().into_response(),
    }
}

/// One log line per request (method, path, status, duration, session), and
/// the headers every response carries.
async fn log_and_harden(request: Request, next: Next) -> Response {
    log_and_harden_at(request, next, false).await
}

/// [`log_and_harden`] with successful reads logged at debug level: the
/// dashboard polls its logs, and its own reads would push every other line
/// out of the log's memory.
async fn log_and_harden_quiet_reads(request: Request, next: Next) -> Response {
    log_and_harden_at(request, next, true).await
}

async fn log_and_harden_at(request: Request, next: Next, quiet_reads: bool) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // The path only: a query string could carry something secret.
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let session = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let path = crate::untrusted_text::sanitize(&path, 256, false);
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    if quiet_reads && method == Method::GET && status < 400 {
        tracing::debug!(
            target: "talaria::gateway::request",
            %method, %path, status, duration_ms, session, "request"
        );
    } else {
        tracing::info!(
            target: "talaria::gateway::request",
            %method, %path, status, duration_ms, session, "request"
        );
    }
    response
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn health_detailed(State(gateway): State<Arc<Gateway>>) -> Result<Response, ApiError> {
    Ok(axum::Json(gateway.detailed_health().await?).into_response())
}

impl Gateway {
    /// Version, uptime, the model, the skills and their states, sessions
    /// and runs: `/health/detailed` and the dashboard's status.
    async fn detailed_health(&self) -> Result<serde_json::Value, ApiError> {
        let gateway = self;
        let registry = gateway.app.registry();
        let entries = registry
            .entries(false)
            .await
            .map_err(|e| ApiError::internal(format!("cannot read the skills: {e:#}")))?;
        let skills: Vec<serde_json::Value> = entries
            .iter()
            .map(|entry| match entry {
                crate::skill::registry::SkillEntry::Invalid(error) => json!({
                    "state": "invalid",
                    "error": crate::untrusted_text::sanitize(&error.to_string(), 512, false),
                }),
                crate::skill::registry::SkillEntry::Known {
                    skill, assessment, ..
                } => json!({
                    "name": skill.manifest.name,
                    "version": skill.manifest.known_version().map(ToString::to_string),
                    "state": assessment.state.name(),
                }),
            })
            .collect();
        let sessions = match gateway.app.session_store() {
            Ok(store) => store.count_async().await.ok(),
            Err(_) => None,
        };
        let model = &gateway.app.config.model;
        let reachable = model_reachable(&model.base_url.value).await;
        Ok(json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": gateway.started.elapsed().as_secs(),
            "model": {
                "id": MODEL_ID,
                "name": model.name.value,
                "configured": model.is_configured(),
                "reachable": reachable,
            },
            "skills": skills,
            "sessions": sessions,
            "runs": {
                "running": gateway.config.max_concurrent_runs - gateway.runs.available_permits(),
                "max": gateway.config.max_concurrent_runs,
            },
        }))
    }
}

/// Whether a TCP connection to the model endpoint's host opens within a
/// second (no request is sent: that could cost the operator money).
async fn model_reachable(base_url: &str) -> bool {
    let Some(rest) = base_url
        .strip_prefix("http://")
        .map(|r| (r, 80))
        .or_else(|| base_url.strip_prefix("https://").map(|r| (r, 443)))
    else {
        return false;
    };
    let (rest, default_port) = rest;
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let target = if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    };
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(target)
        )
        .await,
        Ok(Ok(_))
    )
}

async fn models() -> impl IntoResponse {
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": MODEL_ID,
            "object": "model",
            "created": 0,
            "owned_by": "talaria",
        }],
    }))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}",
        request.method(),
        crate::untrusted_text::sanitize(request.uri().path(), 256, false)
    ))
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
