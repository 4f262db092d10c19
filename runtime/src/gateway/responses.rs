//! The Responses API: `POST /v1/responses`, `GET /v1/responses/{id}`,
//! `DELETE /v1/responses/{id}`.
//!
//! A response is a turn of the agent like a chat completion (see
//! [`chat`](super::chat)): `input` is text or message items, `instructions`
//! are added to Talaria's system prompt, and `previous_response_id`
//! continues the session that response was stored in. With `store` (the
//! default) the response is kept in `state.db` with its session, to be read
//! back, continued, or deleted (which deletes its session too). Streaming
//! sends the Responses API's events, from `response.created` through
//! `response.output_text.delta` to `response.completed`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::chat::{
    Content, InMessage, Turn, Update, finish, first_session, insert_session_header, random_id,
    session_header, start_run, tool_progress, tool_status, unix_now,
};
use super::error::ApiError;
use super::{Gateway, MODEL_ID, SESSION_HEADER};
use crate::agent::provider::Usage;

#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub input: Input,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default = "stored_by_default")]
    pub store: bool,
    #[serde(default)]
    pub stream: bool,
    // `model`, sampling parameters and `tools` are accepted and left to
    // Talaria's configuration, as for chat completions.
}

fn stored_by_default() -> bool {
    true
}

/// `input`: text (one user message) or a list of message items.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<InputItem>),
}

/// A message item: `{"role", "content"}`, with or without `"type":
/// "message"`.
#[derive(Debug, Deserialize)]
pub struct InputItem {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

impl Input {
    fn messages(self) -> Result<Vec<InMessage>, ApiError> {
        match self {
            Self::Text(text) => Ok(vec![InMessage {
                role: "user".into(),
                content: Some(Content::Text(text)),
            }]),
            Self::Items(items) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| match item.kind.as_deref() {
                    None | Some("message") => Ok(InMessage {
                        role: item.role,
                        content: item.content,
                    }),
                    Some(other) => Err(ApiError::bad_request(format!(
                        "input[{index}].type: only message items are accepted, found {other:?}"
                    ))),
                })
                .collect(),
        }
    }
}

pub async fn create(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Json<ResponsesRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let resume = match &request.previous_response_id {
        Some(previous) => Some(stored(&gateway, previous).await?.session_id),
        None => session_header(&headers)?,
    };
    let store = request.store;
    let stream = request.stream;
    let previous = request.previous_response_id.clone();
    let instructions = request.instructions.clone();
    let messages = request.input.messages()?;
    let mut turn = Turn::from_messages(&messages, resume, true, "input")?;
    // Added after the items are read, so errors name `input[i]` as sent.
    if let Some(instructions) = &instructions {
        turn.client_system = if turn.client_system.is_empty() {
            instructions.clone()
        } else {
            format!("{instructions}\n\n{}", turn.client_system)
        };
    }
    let permit = gateway.try_run()?;
    let mut updates = start_run(Arc::clone(&gateway), turn, stream, permit);
    let shape = Shape {
        id: random_id("resp_"),
        message_id: random_id("msg_"),
        created_at: unix_now(),
        previous,
        instructions,
        store,
    };
    if stream {
        let session = first_session(&mut updates).await?;
        let mut response = stream_events(gateway, updates, shape, session.clone()).into_response();
        insert_session_header(&mut response, &session);
        Ok(response)
    } else {
        whole(gateway, updates, shape).await
    }
}

pub async fn get(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let stored = stored(&gateway, &id).await?;
    let mut response = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        stored.body,
    )
        .into_response();
    if let Ok(session) = HeaderValue::from_str(&stored.session_id) {
        response.headers_mut().insert(SESSION_HEADER, session);
    }
    Ok(response)
}

pub async fn delete(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = gateway.sessions()?;
    let deleted = store
        .delete_response_async(&id)
        .await
        .map_err(|e| ApiError::internal(format!("cannot delete the response: {e:#}")))?;
    if !deleted {
        return Err(not_found(&id));
    }
    Ok(Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
}

async fn stored(gateway: &Gateway, id: &str) -> Result<crate::memory::StoredResponse, ApiError> {
    if id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(not_found(id));
    }
    let store = gateway.sessions()?;
    store
        .response_async(id)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the response: {e:#}")))?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no stored response {:?}",
        crate::untrusted_text::sanitize(id, 128, false)
    ))
}

/// What a response object is built from besides the answer.
struct Shape {
    id: String,
    message_id: String,
    created_at: u64,
    previous: Option<String>,
    instructions: Option<String>,
    store: bool,
}

impl Shape {
    /// The response object; `text` is `None` while in progress.
    fn object(&self, status: &str, text: Option<&str>, usage: Option<Usage>) -> Value {
        let output = match text {
            Some(text) => json!([self.message(text, "completed")]),
            None => json!([]),
        };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": MODEL_ID,
            "output": output,
            "output_text": text.unwrap_or_default(),
            "usage": usage.map(|u| json!({
                "input_tokens": u.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": u.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": u.total_tokens,
            })),
            "previous_response_id": self.previous,
            "instructions": self.instructions,
            "store": self.store,
            "error": null,
            "incomplete_details": null,
            "metadata": {},
            "parallel_tool_calls": true,
            "tool_choice": "auto",
            "tools": [],
            "temperature": null,
            "top_p": null,
        })
    }

    fn message(&self, text: &str, status: &str) -> Value {
        json!({
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        })
    }
}

/// Keep a finished response when asked to (`store`), or forget its turn:
/// with `store: false` the session the turn was run in is deleted too. A
/// failure to do either fails the request (the client was told).
async fn settle(
    gateway: &Gateway,
    shape: &Shape,
    session: &str,
    body: Option<&Value>,
) -> Result<(), ApiError> {
    let store = gateway.sessions()?;
    match body {
        Some(body) if shape.store => store
            .save_response_async(&shape.id, session, &body.to_string())
            .await
            .map_err(|e| ApiError::internal(format!("cannot store the response: {e:#}"))),
        _ if !shape.store && !session.is_empty() => store
            .delete_async(session)
            .await
            .map(|_| ())
            .map_err(|e| ApiError::internal(format!("cannot forget the unstored turn: {e:#}"))),
        _ => Ok(()),
    }
}

async fn whole(
    gateway: Arc<Gateway>,
    updates: mpsc::UnboundedReceiver<Update>,
    shape: Shape,
) -> Result<Response, ApiError> {
    let finished = finish(updates).await;
    let answer = match finished.answer {
        Ok(answer) => answer,
        Err(error) => {
            settle(&gateway, &shape, &finished.session, None).await?;
            return Err(error);
        }
    };
    let body = shape.object("completed", Some(&answer), Some(finished.usage));
    settle(&gateway, &shape, &finished.session, Some(&body)).await?;
    let mut response = Json(body).into_response();
    if shape.store {
        insert_session_header(&mut response, &finished.session);
    }
    Ok(response)
}

fn stream_events(
    gateway: Arc<Gateway>,
    updates: mpsc::UnboundedReceiver<Update>,
    shape: Shape,
    session: String,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    struct State {
        gateway: Arc<Gateway>,
        updates: mpsc::UnboundedReceiver<Update>,
        shape: Shape,
        sequence: u64,
        text: String,
        session: String,
        usage: Option<Usage>,
        started: bool,
        finished: bool,
    }
    impl State {
        fn event(&mut self, kind: &str, mut data: Value) -> SseEvent {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(self.sequence);
            self.sequence += 1;
            SseEvent::default().event(kind).data(data.to_string())
        }

        fn opening(&mut self) -> Vec<SseEvent> {
            let created = self.shape.object("in_progress", None, None);
            vec![
                self.event("response.created", json!({"response": created})),
                self.event("response.in_progress", json!({"response": created})),
                self.event(
                    "response.output_item.added",
                    json!({"output_index": 0, "item": self.shape.message("", "in_progress")}),
                ),
                self.event(
                    "response.content_part.added",
                    json!({
                        "item_id": self.shape.message_id,
                        "output_index": 0,
                        "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": []},
                    }),
                ),
            ]
        }
    }
    let state = State {
        gateway,
        updates,
        shape,
        sequence: 0,
        text: String::new(),
        session,
        usage: None,
        started: false,
        finished: false,
    };
    let events = futures_util::stream::unfold(state, |mut state| async move {
        if state.finished {
            return None;
        }
        loop {
            let mut out = Vec::new();
            if !state.started {
                state.started = true;
                out = state.opening();
            }
            let Some(update) = state.updates.recv().await else {
                state.finished = true;
                return Some((out, state));
            };
            match update {
                // Named in the response's header already.
                Update::Session(_) => {}
                Update::Text(delta) => {
                    state.text.push_str(&delta);
                    let item_id = state.shape.message_id.clone();
                    out.push(state.event(
                        "response.output_text.delta",
                        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": delta}),
                    ));
                }
                Update::ToolStarted(name) => out.push(tool_progress(&name, "started")),
                Update::ToolFinished { name, ok } => {
                    out.push(tool_progress(&name, tool_status(ok)))
                }
                Update::Usage(more) => state.usage.get_or_insert_with(Usage::default).add(more),
                Update::Done(result) => {
                    state.finished = true;
                    let item_id = state.shape.message_id.clone();
                    match result {
                        Ok(answer) => {
                            // What the deltas said, all of it (text the model
                            // wrote before a tool call included), so the
                            // client's assembled text and `done` agree.
                            let text = if state.text.is_empty() {
                                answer
                            } else {
                                std::mem::take(&mut state.text)
                            };
                            out.push(state.event(
                                "response.output_text.done",
                                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text}),
                            ));
                            out.push(state.event(
                                "response.content_part.done",
                                json!({
                                    "item_id": item_id,
                                    "output_index": 0,
                                    "content_index": 0,
                                    "part": {"type": "output_text", "text": text, "annotations": []},
                                }),
                            ));
                            let item = state.shape.message(&text, "completed");
                            out.push(state.event(
                                "response.output_item.done",
                                json!({"output_index": 0, "item": item}),
                            ));
                            let body = state.shape.object(
                                "completed",
                                Some(&text),
                                Some(state.usage.unwrap_or_default()),
                            );
                            match settle(&state.gateway, &state.shape, &state.session, Some(&body))
                                .await
                            {
                                Ok(()) => out.push(
                                    state.event("response.completed", json!({"response": body})),
                                ),
                                Err(error) => out.push(state.event(
                                    "error",
                                    json!({"code": error.code, "message": error.message}),
                                )),
                            }
                        }
                        Err(error) => {
                            if let Err(forgetting) =
                                settle(&state.gateway, &state.shape, &state.session, None).await
                            {
                                tracing::warn!("{}", forgetting.message);
                            }
                            let mut failed = state.shape.object("failed", None, None);
                            failed["error"] = json!({"code": error.code, "message": error.message});
                            out.push(state.event(
                                "error",
                                json!({"code": error.code, "message": error.message}),
                            ));
                            out.push(state.event("response.failed", json!({"response": failed})));
                        }
                    }
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
