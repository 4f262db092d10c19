//! `POST /v1/chat/completions`: an OpenAI client's messages in, the agent's
//! final answer out, its tools run here on the server.
//!
//! Every request is a session in `state.db`. Without `X-Talaria-Session-Id`
//! a new session holds the client's history (user and assistant text; the
//! client's system messages are added to Talaria's system prompt) and the
//! last user message is the turn. With it, the stored session is continued
//! (as a new session whose parent it is, as `talaria chat --resume` does)
//! and only the last user message is taken from the request. The response
//! names the session it was stored in, in the same header.
//!
//! A run holds one of `gateway.max_concurrent_runs` permits (429 without
//! one), stops at `gateway.request_timeout_secs`, and stops when the client
//! goes away: the turn is closed in the store (tool calls left without a
//! result get one saying so), so the session stays valid to continue.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::error::ApiError;
use super::{Gateway, MODEL_ID, SESSION_HEADER};
use crate::agent::provider::{ProviderError, Usage};
use crate::agent::{AgentError, Event};

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    // `model` is accepted and ignored: whatever the client names, the
    // configured model answers (exposed as `talaria`).
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    // Sampling parameters, `tools`, `user`, ... are accepted and left to
    // Talaria's configuration: the tools are the server's own.
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// Text, or parts of which the text ones are kept.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

impl InMessage {
    pub(super) fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(text)) => text.clone(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter(|p| matches!(p.kind.as_str(), "text" | "input_text" | "output_text"))
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// What a request asks the agent to do, checked.
pub(super) struct Turn {
    pub(super) resume: Option<String>,
    pub(super) client_system: String,
    pub(super) history: Vec<(String, String)>,
    pub(super) input: String,
}

impl Turn {
    fn from_request(request: &ChatRequest, headers: &HeaderMap) -> Result<Self, ApiError> {
        // A chat client sends the whole conversation every time: with a
        // stored session, the stored history stands and the request's is
        // not added again.
        Self::from_messages(
            &request.messages,
            session_header(headers)?,
            false,
            "messages",
        )
    }

    /// The turn of `messages` (the request's `field`): the last one is the
    /// user's input; system and developer messages are instructions; user
    /// and assistant text before it is history, added to a stored session
    /// (`resume`) only when `add_to_stored` (the Responses API, whose input
    /// items are new items of the conversation).
    pub(super) fn from_messages(
        messages: &[InMessage],
        resume: Option<String>,
        add_to_stored: bool,
        field: &str,
    ) -> Result<Self, ApiError> {
        let Some((last, earlier)) = messages.split_last() else {
            return Err(ApiError::bad_request(format!(
                "{field}: at least one message is required"
            )));
        };
        if last.role != "user" {
            return Err(ApiError::bad_request(format!(
                "{field}[{}]: the last message must have role \"user\", found {:?}",
                messages.len() - 1,
                last.role
            )));
        }
        let input = last.text();
        if input.trim().is_empty() {
            return Err(ApiError::bad_request(format!(
                "{field}[{}].content: the user message has no text",
                messages.len() - 1
            )));
        }
        let mut client_system = Vec::new();
        let mut history = Vec::new();
        for (index, message) in earlier.iter().enumerate() {
            match message.role.as_str() {
                "system" | "developer" => client_system.push(message.text()),
                "user" | "assistant" => {
                    if resume.is_none() || add_to_stored {
                        let text = message.text();
                        if !text.is_empty() {
                            history.push((message.role.clone(), text));
                        }
                    }
                }
                // The client's own tool calls and results: the tools here
                // are the server's, so they are not part of this history.
                "tool" | "function" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "{field}[{index}].role: unknown role {other:?} (expected system, developer, user, assistant or tool)"
                    )));
                }
            }
        }
        Ok(Self {
            resume,
            client_system: client_system.join("\n\n"),
            history,
            input,
        })
    }
}

/// Whether `id` has the shape of a stored session's id (what clients may
/// send back to continue one).
pub(super) fn is_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether `ok`, as a tool's progress says it.
pub(super) fn tool_status(ok: bool) -> &'static str {
    if ok { "finished" } else { "failed" }
}

pub(super) fn session_header(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(SESSION_HEADER) else {
        return Ok(None);
    };
    let id = value
        .to_str()
        .ok()
        .filter(|id| is_session_id(id))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{SESSION_HEADER}: expected a session id as `talaria sessions list` shows it"
            ))
        })?;
    Ok(Some(id.to_owned()))
}

/// What the run sends back while it works.
pub(super) enum Update {
    /// The session the turn is stored in (first, always).
    Session(String),
    Text(String),
    ToolStarted(String),
    ToolFinished {
        name: String,
        ok: bool,
    },
    Usage(Usage),
    Done(Result<String, ApiError>),
}

pub async fn completions(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Json<ChatRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let turn = Turn::from_request(&request, &headers)?;
    let permit = gateway.try_run()?;
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let mut updates = start_run(Arc::clone(&gateway), turn, request.stream, permit);
    if request.stream {
        let session = first_session(&mut updates).await?;
        let mut response = stream_response(updates, include_usage).into_response();
        insert_session_header(&mut response, &session);
        Ok(response)
    } else {
        whole_response(updates).await
    }
}

/// Wait for the run's first update: the session its turn is stored in. A
/// run that fails before (an unknown session to continue) fails the request
/// with its own status, not as an error inside a 200 stream.
pub(super) async fn first_session(
    updates: &mut mpsc::UnboundedReceiver<Update>,
) -> Result<String, ApiError> {
    match updates.recv().await {
        Some(Update::Session(id)) => Ok(id),
        Some(Update::Done(Err(error))) => Err(error),
        _ => Err(ApiError::internal(
            "the run ended before it stored its session",
        )),
    }
}

pub(super) fn insert_session_header(response: &mut Response, session: &str) {
    if let Ok(value) = HeaderValue::from_str(session) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
}

/// A tool's progress in a stream, as an SSE comment (`: talaria.tool
/// {...}`): every SSE parser skips comments, so OpenAI clients see only
/// their own chunks, while a client that wants progress can read them.
pub(super) fn tool_progress(tool: &str, status: &str) -> SseEvent {
    SseEvent::default().comment(format!(
        "talaria.tool {}",
        json!({"tool": tool, "status": status})
    ))
}

/// Run the turn on its own task. It stops when `updates`' receiver is
/// dropped (the client went away), at the time limit, or at its answer.
pub(super) fn start_run(
    gateway: Arc<Gateway>,
    turn: Turn,
    stream: bool,
    permit: OwnedSemaphorePermit,
) -> mpsc::UnboundedReceiver<Update> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // A run that stops drops its model request with it (the connection
        // is closed), so the slot is free once the run is.
        let result = run(&gateway, turn, stream, &sender).await;
        // Freed before the answer goes out: a client that sends its next
        // request as soon as it has this one's answer must find its slot.
        drop(permit);
        let _ = sender.send(Update::Done(result));
    });
    receiver
}

async fn run(
    gateway: &Gateway,
    turn: Turn,
    stream: bool,
    updates: &mpsc::UnboundedSender<Update>,
) -> Result<String, ApiError> {
    let session = gateway
        .app
        .agent(stream)
        .await
        .map_err(|e| ApiError::internal(format!("cannot start the agent: {e:#}")))?;
    let mut session_prompt = session.system_prompt.clone();
    if !turn.client_system.is_empty() {
        session_prompt.push_str("\n\n# Instructions from the client\n\n");
        session_prompt.push_str(&turn.client_system);
    }
    let agent = &session.agent;
    let mut conversation = match &turn.resume {
        Some(id) => agent.resume(id, &session_prompt).await.map_err(|e| {
            if e.to_string().starts_with("no session") {
                ApiError::not_found(format!("{SESSION_HEADER}: no session {id:?}"))
            } else {
                ApiError::internal(format!("cannot resume the session: {e:#}"))
            }
        })?,
        None => agent
            .start(&session_prompt, None)
            .await
            .map_err(|e| ApiError::internal(format!("cannot store the session: {e:#}")))?,
    };
    let _ = updates.send(Update::Session(conversation.session_id.clone()));
    for (role, text) in &turn.history {
        agent
            .append_history(&mut conversation, role, text)
            .await
            .map_err(|e| ApiError::internal(format!("cannot store the history: {e:#}")))?;
    }
    let mut on_event = |event: Event| {
        let update = match event {
            Event::Text(text) => Update::Text(text),
            Event::ToolStarted { name, .. } => Update::ToolStarted(name),
            Event::ToolFinished { name, ok, .. } => Update::ToolFinished { name, ok },
            Event::Usage(usage) => Update::Usage(usage),
            Event::Request { .. } | Event::MemoryChanged { .. } => return,
        };
        let _ = updates.send(update);
    };
    let limit = Duration::from_secs(gateway.config.request_timeout_secs);
    enum Stop<T> {
        Answered(T),
        ClientGone,
        TimedOut,
    }
    let stop = tokio::select! {
        answer = agent.ask(&mut conversation, &turn.input, &mut on_event) => Stop::Answered(answer),
        () = updates.closed() => Stop::ClientGone,
        () = tokio::time::sleep(limit) => Stop::TimedOut,
    };
    match stop {
        Stop::Answered(Ok(answer)) => Ok(answer),
        Stop::Answered(Err(AgentError::Provider(error))) => {
            // The details (the endpoint's address, its answer) are for the
            // operator's log, not for the API's clients.
            tracing::warn!(session = %conversation.session_id, "model request failed: {error}");
            Err(ApiError::model_unavailable(client_message(&error)))
        }
        Stop::Answered(Err(error)) => Err(ApiError::internal(error.to_string())),
        Stop::ClientGone => {
            tracing::info!(
                session = %conversation.session_id,
                "the client went away; the turn was stopped"
            );
            close_turn(agent, &mut conversation).await;
            Err(ApiError::internal("the client went away"))
        }
        Stop::TimedOut => {
            close_turn(agent, &mut conversation).await;
            Err(ApiError::timeout(limit.as_secs()))
        }
    }
}

fn client_message(error: &ProviderError) -> String {
    let what = match error {
        ProviderError::Unauthorized => "refused the gateway's credentials".to_owned(),
        ProviderError::NotFound { .. } => {
            "answered 404 (check model.base_url and model.name)".to_owned()
        }
        ProviderError::Status { status, .. } => format!("answered HTTP {status}"),
        ProviderError::InvalidJson(_) => "sent a reply that is not valid".to_owned(),
        ProviderError::Unreachable { .. } => "cannot be reached".to_owned(),
        ProviderError::Timeout(limit) => format!("did not answer within {} s", limit.as_secs()),
    };
    format!("the model endpoint {what}; the gateway's log has the details")
}

/// Give the tool calls a stopped turn left without a result one that says
/// so, so the session stays valid to continue.
async fn close_turn(agent: &crate::agent::Agent, conversation: &mut crate::agent::Conversation) {
    if let Err(error) = agent.close_interrupted_turn(conversation).await {
        tracing::warn!(
            session = %conversation.session_id,
            "cannot close the stopped turn in the store: {error:#}"
        );
    }
}

/// A run read to its end: the session it was stored in, what the model
/// used, and the answer or the failure.
pub(super) struct Finished {
    pub(super) session: String,
    pub(super) usage: Usage,
    pub(super) answer: Result<String, ApiError>,
}

/// Read a run's updates to its end, for a response sent whole.
pub(super) async fn finish(mut updates: mpsc::UnboundedReceiver<Update>) -> Finished {
    let mut session = String::new();
    let mut usage = Usage::default();
    while let Some(update) = updates.recv().await {
        match update {
            Update::Session(id) => session = id,
            Update::Usage(more) => usage.add(more),
            Update::Text(_) | Update::ToolStarted(_) | Update::ToolFinished { .. } => {}
            Update::Done(answer) => {
                return Finished {
                    session,
                    usage,
                    answer,
                };
            }
        }
    }
    Finished {
        session,
        usage,
        answer: Err(ApiError::internal("the run ended without an answer")),
    }
}

async fn whole_response(updates: mpsc::UnboundedReceiver<Update>) -> Result<Response, ApiError> {
    let finished = finish(updates).await;
    let answer = finished.answer?;
    let body = json!({
        "id": completion_id(),
        "object": "chat.completion",
        "created": unix_now(),
        "model": MODEL_ID,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer},
            "finish_reason": "stop",
        }],
        "usage": usage_json(finished.usage),
    });
    let mut response = Json(body).into_response();
    insert_session_header(&mut response, &finished.session);
    Ok(response)
}

fn stream_response(
    updates: mpsc::UnboundedReceiver<Update>,
    include_usage: bool,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    struct StreamState {
        updates: mpsc::UnboundedReceiver<Update>,
        id: String,
        created: u64,
        usage: Option<Usage>,
        include_usage: bool,
        started: bool,
        finished: bool,
    }
    let state = StreamState {
        updates,
        id: completion_id(),
        created: unix_now(),
        usage: None,
        include_usage,
        started: false,
        finished: false,
    };
    let chunk = |state: &StreamState, delta: Value, finish: Option<&str>| {
        json!({
            "id": state.id,
            "object": "chat.completion.chunk",
            "created": state.created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let events = futures_util::stream::unfold(state, move |mut state| async move {
        if state.finished {
            return None;
        }
        loop {
            let Some(update) = state.updates.recv().await else {
                state.finished = true;
                return Some((Vec::new(), state));
            };
            let mut out = Vec::new();
            if !state.started {
                state.started = true;
                out.push(SseEvent::default().data(
                    chunk(&state, json!({"role": "assistant", "content": ""}), None).to_string(),
                ));
            }
            match update {
                // Named in the response's header already.
                Update::Session(_) => {}
                Update::Text(text) => {
                    out.push(
                        SseEvent::default()
                            .data(chunk(&state, json!({"content": text}), None).to_string()),
                    );
                }
                Update::ToolStarted(name) => out.push(tool_progress(&name, "started")),
                Update::ToolFinished { name, ok } => {
                    out.push(tool_progress(&name, tool_status(ok)))
                }
                Update::Usage(more) => state.usage.get_or_insert_with(Usage::default).add(more),
                Update::Done(result) => {
                    state.finished = true;
                    match result {
                        Ok(_) => {
                            out.push(
                                SseEvent::default()
                                    .data(chunk(&state, json!({}), Some("stop")).to_string()),
                            );
                            if state.include_usage {
                                let mut last = chunk(&state, json!({}), None);
                                last["choices"] = json!([]);
                                last["usage"] = usage_json(state.usage.unwrap_or_default());
                                out.push(SseEvent::default().data(last.to_string()));
                            }
                        }
                        Err(error) => {
                            out.push(SseEvent::default().data(
                                json!({"error": {"message": error.message, "type": error.kind, "code": error.code}})
                                    .to_string(),
                            ));
                        }
                    }
                    out.push(SseEvent::default().data("[DONE]"));
                }
            }
            if !out.is_empty() {
                return Some((out, state));
            }
        }
    });
    let flat = futures_util::StreamExt::flat_map(events, |batch| {
        futures_util::stream::iter(batch.into_iter().map(Ok))
    });
    Sse::new(flat).keep_alive(KeepAlive::default())
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    })
}

fn completion_id() -> String {
    random_id("chatcmpl-")
}

/// `prefix` and 24 random hex digits: ids a client cannot guess.
pub(super) fn random_id(prefix: &str) -> String {
    format!("{prefix}{}", super::random_hex::<12>())
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
