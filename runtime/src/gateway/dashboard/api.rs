//! `/api/`: what the dashboard's page reads and changes. Every route but
//! `session` and `login` needs a signed-in session (see [`super`]); the
//! work is the same `App`'s the CLI uses, so a grant from here is the grant
//! `talaria skills grant` records, and a memory edit obeys the bounds and
//! the lock the memory tool obeys.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Dashboard, SessionId, clear_cookie, client_ip, from_this_machine, session_cookie};
use crate::gateway::chat::{self, Turn, Update};
use crate::gateway::dashboard::auth::{self, PasswordEpoch};
use crate::gateway::error::ApiError;
use crate::memory::notes::{DELIMITER, NoteError, Target};
use crate::skill::grants::GrantChoices;
use crate::skill::registry::{ActionError, GrantOutcome};

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// `GET /api/session`: whether this browser is signed in, and its CSRF
/// token when it is. On loopback without a password, a session is handed
/// out here to a browser on this machine (see [`from_this_machine`]): the
/// `Host` check and `SameSite=Strict` keep other sites' pages from using
/// it, and without CORS they cannot read the token.
pub async fn session(State(dashboard): State<Arc<Dashboard>>, request: Request) -> Response {
    let password = match dashboard.password_hash() {
        Ok(hash) => hash.is_some(),
        Err(error) => return error.into_response(),
    };
    let body = |csrf: Option<String>| {
        json!({
            "signed_in": csrf.is_some(),
            "csrf": csrf,
            "password": password,
            "version": env!("CARGO_PKG_VERSION"),
        })
    };
    match dashboard.session_of(request.headers()) {
        Ok(Some(id)) => {
            return Json(body(Some(dashboard.sessions.csrf_token(&id)))).into_response();
        }
        Ok(None) => {}
        Err(error) => return error.into_response(),
    }
    if password || !dashboard.loopback || !from_this_machine(&request) {
        return Json(body(None)).into_response();
    }
    open_session(&dashboard, PasswordEpoch::of(None), |csrf| body(Some(csrf)))
}

/// Open a session under `epoch` and answer `body(its CSRF token)`, with
/// its cookie set.
fn open_session(
    dashboard: &Dashboard,
    epoch: PasswordEpoch,
    body: impl FnOnce(String) -> Value,
) -> Response {
    let cookie = dashboard.sessions.create(Instant::now(), epoch);
    let id = cookie.split('.').next().unwrap_or_default();
    let mut response = Json(body(dashboard.sessions.csrf_token(id))).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&cookie));
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    password: String,
}

/// `POST /api/login`: the password for a session (JSON only, so a
/// cross-site form cannot post it without a preflight that is refused).
pub async fn login(State(dashboard): State<Arc<Dashboard>>, request: Request) -> Response {
    let client = client_ip(request.extensions());
    if let Err(wait) = dashboard.logins.attempt(client, Instant::now()) {
        tracing::warn!(%client, "dashboard login refused: too many attempts");
        return ApiError::too_many("too many login attempts; wait a minute", wait.as_secs() + 1)
            .into_response();
    }
    let body = <Json<Login> as axum::extract::FromRequest<()>>::from_request(request, &()).await;
    let Json(Login { password }) = match body {
        Ok(body) => body,
        // Not the rejection's own text: it can quote the body, the password.
        Err(axum::extract::rejection::JsonRejection::MissingJsonContentType(rejection)) => {
            return ApiError::from(
                axum::extract::rejection::JsonRejection::MissingJsonContentType(rejection),
            )
            .into_response();
        }
        Err(_) => {
            return ApiError::bad_request("the body must be {\"password\": \"...\"}")
                .into_response();
        }
    };
    let stored = match dashboard.password_hash() {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            return ApiError::forbidden(
                "no_password",
                "no dashboard password is set; set one with `talaria gateway set-password`",
            )
            .into_response();
        }
        Err(error) => return error.into_response(),
    };
    // Argon2 takes tens of milliseconds of CPU and 19 MiB: a few at a time,
    // off the async threads.
    let Some(permit) = dashboard.logins.verification() else {
        return ApiError::too_many("too many logins at once; try again in a moment", 1)
            .into_response();
    };
    let epoch = PasswordEpoch::of(Some(stored.as_str()));
    let matches = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        auth::verify_password(&stored, &password)
    })
    .await;
    if !matches.unwrap_or(false) {
        tracing::warn!(%client, "dashboard login failed: wrong password");
        return ApiError::forbidden("wrong_password", "wrong password").into_response();
    }
    tracing::info!(%client, "dashboard login");
    open_session(
        &dashboard,
        epoch,
        |csrf| json!({"signed_in": true, "csrf": csrf}),
    )
}

pub async fn logout(
    State(dashboard): State<Arc<Dashboard>>,
    Extension(SessionId(id)): Extension<SessionId>,
) -> Response {
    dashboard.sessions.end(&id);
    let mut response = Json(json!({"signed_in": false})).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_cookie());
    response
}

/// `GET /api/status`: what `/health/detailed` says, and recent problems.
pub async fn status(State(dashboard): State<Arc<Dashboard>>) -> Result<Response, ApiError> {
    let gateway = &dashboard.gateway;
    let mut body = gateway.detailed_health().await?;
    let problems: Vec<_> = crate::log_buffer::global()
        .map(|buffer| buffer.problems(20))
        .unwrap_or_default();
    body["recent_problems"] = json!(problems);
    body["home"] = json!(gateway.app.home.root());
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    message: String,
    #[serde(default)]
    session_id: Option<String>,
}

/// `POST /api/chat`: one turn, streamed as server-sent events: `session`
/// (where it is stored), `text` (pieces of the answer), `tool` (a tool
/// started or finished), then `done` or `error`.
pub async fn chat(
    State(dashboard): State<Arc<Dashboard>>,
    body: JsonBody<ChatMessage>,
) -> Result<Response, ApiError> {
    let Json(message) = body?;
    if message.message.trim().is_empty() {
        return Err(ApiError::bad_request("message: the message is empty"));
    }
    if let Some(id) = &message.session_id {
        check_session_id(id)?;
    }
    let gateway = Arc::clone(&dashboard.gateway);
    let permit = gateway.try_run()?;
    let turn = Turn {
        resume: message.session_id,
        client_system: String::new(),
        history: Vec::new(),
        input: message.message,
    };
    let mut updates = chat::start_run(gateway, turn, true, permit);
    let session = chat::first_session(&mut updates).await?;
    let first = futures_util::stream::once(async move {
        SseEvent::default()
            .event("session")
            .data(json!({"id": session}).to_string())
    });
    let rest = futures_util::stream::unfold(Some(updates), |updates| async move {
        let mut updates = updates?;
        loop {
            let event = match updates.recv().await? {
                Update::Session(_) | Update::Usage(_) => continue,
                Update::Text(text) => SseEvent::default()
                    .event("text")
                    .data(json!({"text": text}).to_string()),
                Update::ToolStarted(name) => SseEvent::default()
                    .event("tool")
                    .data(json!({"name": name, "status": "started"}).to_string()),
                Update::ToolFinished { name, ok } => SseEvent::default()
                    .event("tool")
                    .data(json!({"name": name, "status": chat::tool_status(ok)}).to_string()),
                Update::Done(Ok(answer)) => {
                    let event = SseEvent::default()
                        .event("done")
                        .data(json!({"answer": answer}).to_string());
                    return Some((event, None));
                }
                Update::Done(Err(error)) => {
                    let event = SseEvent::default()
                        .event("error")
                        .data(json!({"message": error.message}).to_string());
                    return Some((event, None));
                }
            };
            return Some((event, Some(updates)));
        }
    });
    let events = futures_util::StreamExt::map(
        futures_util::StreamExt::chain(first, rest),
        Ok::<_, std::convert::Infallible>,
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn check_session_id(id: &str) -> Result<(), ApiError> {
    if chat::is_session_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request("not a session id"))
    }
}

#[derive(Deserialize)]
pub struct SessionQuery {
    #[serde(default)]
    q: Option<String>,
}

/// `GET /api/sessions[?q=TEXT]`: the latest sessions, or full-text matches.
pub async fn sessions(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<SessionQuery>,
) -> Result<Response, ApiError> {
    let store = dashboard.gateway.sessions()?;
    let query = query.q.unwrap_or_default();
    if query.trim().is_empty() {
        let sessions = store
            .list_async(100)
            .await
            .map_err(|e| ApiError::internal(format!("cannot list the sessions: {e:#}")))?;
        return Ok(Json(json!({"sessions": sessions})).into_response());
    }
    let hits = store
        .search_async(&query, 50)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot search for that: {e:#}")))?;
    Ok(Json(json!({"query": query, "hits": hits})).into_response())
}

/// `GET /api/sessions/{id}`: the session's messages.
pub async fn session_messages(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let messages = messages_of(&dashboard, &id).await?;
    Ok(Json(json!({"id": id, "messages": messages})).into_response())
}

async fn messages_of(
    dashboard: &Dashboard,
    id: &str,
) -> Result<Vec<crate::memory::sessions::Message>, ApiError> {
    check_session_id(id)?;
    let store = dashboard.gateway.sessions()?;
    if !store
        .exists_async(id)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the sessions: {e:#}")))?
    {
        return Err(ApiError::not_found(format!("no session {id:?}")));
    }
    store
        .messages_async(id)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the session: {e:#}")))
}

/// `GET /api/sessions/{id}/export`: the session as a JSON download.
pub async fn export_session(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let messages = messages_of(&dashboard, &id).await?;
    let body = serde_json::to_string_pretty(&json!({"session": id, "messages": messages}))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"talaria-session-{id}.json\""
    ))
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// `DELETE /api/sessions/{id}`.
pub async fn delete_session(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_session_id(&id)?;
    let store = dashboard.gateway.sessions()?;
    let deleted = store
        .delete_async(&id)
        .await
        .map_err(|e| ApiError::internal(format!("cannot delete the session: {e:#}")))?;
    if !deleted {
        return Err(ApiError::not_found(format!("no session {id:?}")));
    }
    tracing::info!(session = %id, "session deleted from the dashboard");
    Ok(Json(json!({"deleted": id})).into_response())
}

/// `GET /api/skills`: every skill as `skills audit --json` shows it, with
/// its description.
pub async fn skills(State(dashboard): State<Arc<Dashboard>>) -> Result<Response, ApiError> {
    let app = &dashboard.gateway.app;
    let registry = app.registry();
    let entries = registry
        .entries(false)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the skills: {e:#}")))?;
    let grants = registry
        .grants()
        .map_err(|e| ApiError::internal(format!("cannot read the grants: {e:#}")))?;
    let is_set = |name: &str| app.env.get(name).is_some();
    let skills: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut skill = crate::skill::report::audit_json(entry, &grants, &is_set);
            if let crate::skill::registry::SkillEntry::Known { skill: known, .. } = entry {
                skill["description"] = json!(known.manifest.description);
                skill["tools_from_component"] = json!(known.manifest.component.is_some());
            }
            skill
        })
        .collect();
    Ok(Json(json!({"skills": skills})).into_response())
}

/// A registry action's failure, with the status that says whose it is.
fn action_error(error: anyhow::Error) -> ApiError {
    if let Some(action) = error.downcast_ref::<ActionError>() {
        return match action {
            ActionError::NoSuchSkill { name, .. } => {
                ApiError::not_found(format!("no skill named {name:?}"))
            }
            ActionError::Invalid(invalid) => ApiError::bad_request(invalid.to_string()),
        };
    }
    if error.downcast_ref::<crate::home::LockError>().is_some() {
        // Another talaria command is changing the home: try again.
        return ApiError::conflict(format!("{error:#}"));
    }
    let message = format!("{error:#}");
    if message.starts_with("refusing to grant") {
        ApiError::bad_request(message)
    } else {
        ApiError::internal(message)
    }
}

/// `GET /api/skills/{name}/grant`: exactly what a grant would record, and
/// the difference from the previous grant, for the operator to confirm.
/// Nothing is written.
pub async fn grant_preview(
    State(dashboard): State<Arc<Dashboard>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let app = &dashboard.gateway.app;
    let mut preview = None;
    let outcome = app
        .registry()
        .grant(&name, &GrantChoices::default(), |request| {
            preview = Some(grant_json(app, request));
            Ok(false)
        })
        .await
        .map_err(action_error)?;
    let body = match (outcome, preview) {
        (GrantOutcome::Unchanged, _) => json!({"name": name, "unchanged": true}),
        (_, Some(preview)) => preview,
        (_, None) => return Err(ApiError::internal("the grant was not previewed")),
    };
    Ok(Json(body).into_response())
}

fn grant_json(app: &crate::app::App, request: &crate::skill::registry::GrantRequest<'_>) -> Value {
    let is_set = |name: &str| app.env.get(name).is_some();
    json!({
        "name": request.skill.name(),
        "version": request.skill.manifest.known_version().map(ToString::to_string),
        "hash": request.grant.hash,
        "unchanged": false,
        "capabilities": crate::skill::report::capabilities_json(
            request.grant,
            &request.requested.mounts,
            &is_set,
        ),
        "previous": request.previous.map(|previous| json!({
            "version": previous.version,
            "granted_at": previous.granted_at,
            "granted_by": previous.granted_by.to_string(),
        })),
        "changes": request.changes,
        "notes": request.notes,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfirmation {
    /// The hash the operator saw in the preview: the grant is recorded only
    /// if the skill is still exactly that.
    hash: String,
    /// The destinations the operator chose (`--network`); the manifest's
    /// own rules that are not wide when absent.
    #[serde(default)]
    network: Option<Vec<String>>,
    /// `--network-any`.
    #[serde(default)]
    network_any: bool,
    /// `--secret NAME[@HOST]`; every secret the manifest names when absent.
    #[serde(default)]
    secrets: Option<Vec<String>>,
}

/// `POST /api/skills/{name}/grant` with the previewed hash.
pub async fn grant(
    State(dashboard): State<Arc<Dashboard>>,
    Path(name): Path<String>,
    body: JsonBody<GrantConfirmation>,
) -> Result<Response, ApiError> {
    let Json(confirmation) = body?;
    let app = &dashboard.gateway.app;
    let mut changed_since_preview = false;
    let choices = GrantChoices {
        network: confirmation.network,
        network_any: confirmation.network_any,
        secrets: confirmation.secrets,
    };
    let outcome = app
        .registry()
        .grant(&name, &choices, |request| {
            changed_since_preview = request.grant.hash != confirmation.hash;
            Ok(!changed_since_preview)
        })
        .await
        .map_err(action_error)?;
    if changed_since_preview {
        return Err(ApiError::conflict(
            "the skill changed since the preview; review it again",
        ));
    }
    let state = match outcome {
        GrantOutcome::Granted => {
            tracing::info!(skill = %name, "granted from the dashboard");
            "granted"
        }
        GrantOutcome::Unchanged => "unchanged",
        GrantOutcome::Declined => return Err(ApiError::internal("the grant was declined")),
    };
    Ok(Json(json!({"name": name, "outcome": state})).into_response())
}

/// `POST /api/skills/{name}/revoke`.
pub async fn revoke(
    State(dashboard): State<Arc<Dashboard>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let revoked = dashboard
        .gateway
        .app
        .registry()
        .revoke(&name)
        .map_err(action_error)?;
    if revoked.is_some() {
        tracing::info!(skill = %name, "grant revoked from the dashboard");
    }
    Ok(Json(json!({"name": name, "revoked": revoked.is_some()})).into_response())
}

/// `GET /api/memory`: both notes files, entry by entry, with their size
/// against their bound.
pub async fn memory(State(dashboard): State<Arc<Dashboard>>) -> Result<Response, ApiError> {
    let notes = dashboard.gateway.app.notes();
    let body = tokio::task::spawn_blocking(move || -> anyhow::Result<Value> {
        let mut body = json!({});
        for target in [Target::Memory, Target::User] {
            let entries = notes.entries(target)?;
            body[target.name()] = json!({
                "entries": entries,
                "chars": entries.join(DELIMITER).chars().count(),
                "limit": notes.limit(target),
            });
        }
        Ok(body)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("cannot read the memory: {e:#}")))?;
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "action", rename_all = "lowercase")]
pub enum MemoryChange {
    Add { content: String },
    Replace { old_text: String, content: String },
    Remove { old_text: String },
}

/// `POST /api/memory/{memory|user}`: add, replace or remove an entry, with
/// the memory tool's bounds, rules and lock.
pub async fn change_memory(
    State(dashboard): State<Arc<Dashboard>>,
    Path(target): Path<String>,
    body: JsonBody<MemoryChange>,
) -> Result<Response, ApiError> {
    let target = match target.as_str() {
        "memory" => Target::Memory,
        "user" => Target::User,
        other => {
            return Err(ApiError::not_found(format!(
                "no memory file {other:?}: expected memory or user"
            )));
        }
    };
    let Json(change) = body?;
    let notes = dashboard.gateway.app.notes();
    let result = tokio::task::spawn_blocking(move || match change {
        MemoryChange::Add { content } => notes.add(target, &content),
        MemoryChange::Replace { old_text, content } => notes.replace(target, &old_text, &content),
        MemoryChange::Remove { old_text } => notes.remove(target, &old_text),
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    match result {
        Ok(change) => {
            tracing::info!(target = target.name(), "memory changed from the dashboard");
            Ok(Json(json!({
                "summary": change.to_string(),
                "entries": change.entries,
                "chars": change.chars,
                "limit": change.limit,
                "archived": change.archived,
            }))
            .into_response())
        }
        Err(NoteError::Io(error)) => Err(ApiError::internal(format!(
            "cannot change the memory: {error:#}"
        ))),
        Err(refused) => Err(ApiError::bad_request(refused.to_string())),
    }
}

#[derive(Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    level: Option<String>,
}

/// `GET /api/logs?after=SEQ&level=LEVEL`: the log lines after `after`, at
/// `level` or more severe (default: info). The page polls it.
pub async fn logs(Query(query): Query<LogQuery>) -> Result<Response, ApiError> {
    let level = match query.level.as_deref() {
        None | Some("") => tracing::Level::INFO,
        Some(name) => crate::log_buffer::parse_level(name).ok_or_else(|| {
            ApiError::bad_request("level: expected error, warn, info, debug or trace")
        })?,
    };
    let lines = crate::log_buffer::global()
        .map(|buffer| buffer.since(query.after, level, 200))
        .unwrap_or_default();
    Ok(Json(json!({"lines": lines})).into_response())
}

/// `GET /api/approvals`: the commands waiting for a person, oldest first.
pub async fn approvals(State(dashboard): State<Arc<Dashboard>>) -> Response {
    Json(json!({"approvals": dashboard.gateway.approvals.list()})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalAnswer {
    verdict: crate::approval::pending::Verdict,
}

/// `POST /api/approvals/{id}` with `{"verdict": "once" | "session" |
/// "deny"}`.
pub async fn answer_approval(
    State(dashboard): State<Arc<Dashboard>>,
    Path(id): Path<String>,
    body: JsonBody<ApprovalAnswer>,
) -> Result<Response, ApiError> {
    let Json(answer) = body?;
    if !dashboard
        .gateway
        .approvals
        .answer(&id, answer.verdict, "on the dashboard")
    {
        return Err(ApiError::not_found(
            "no command waits for this answer: it was answered, denied at its time limit, or its request ended",
        ));
    }
    tracing::info!(id = %id, verdict = ?answer.verdict, "approval answered on the dashboard");
    Ok(Json(json!({"id": id, "verdict": answer.verdict})).into_response())
}
