//! The agent: prompt assembly, the model client, the tool registry and the
//! loop that calls the model, runs its tool calls and feeds the results back
//! until it answers.

pub mod prompt;
pub mod provider;
pub mod tools;

use std::collections::HashSet;
use std::sync::Arc;

use provider::{ChatMessage, Provider, ProviderError, Reply};
use tools::{CallOutcome, MemoryAction, ToolRegistry};

use crate::memory::{NewMessage, SessionStore, Target};

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub max_turns: u32,
    pub tool_output_chars: usize,
    /// Stream the model's text as it is produced.
    pub stream: bool,
}

/// What the loop reports while it works.
#[derive(Debug, Clone)]
pub enum Event {
    /// A piece of the model's answer (streaming only).
    Text(String),
    /// Size of a model request in bytes, and the number of tools offered.
    Request {
        turn: u32,
        bytes: usize,
        tools: usize,
    },
    ToolStarted {
        name: String,
        arguments: String,
    },
    ToolFinished {
        name: String,
        ok: bool,
        chars: usize,
    },
    /// What one model call used, as the model reported it.
    Usage(provider::Usage),
    /// The `memory` tool changed an entry (after its `ToolFinished`).
    MemoryChanged {
        action: MemoryAction,
        target: Target,
        /// The entry as saved, or as it was when removed.
        entry: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(
        "stopped after {0} turns without a final answer (agent.max_turns); the model kept calling tools"
    )]
    MaxTurns(u32),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

pub struct Agent {
    provider: Arc<Provider>,
    tools: Arc<ToolRegistry>,
    store: SessionStore,
    options: AgentOptions,
    /// Every tool result passes it before the model (and the session
    /// store) sees it.
    leak_scanner: Arc<crate::leak_scan::LeakScanner>,
}

/// A conversation: its id in the store and the messages sent to the model.
pub struct Conversation {
    pub session_id: String,
    messages: Vec<ChatMessage>,
    /// Skills whose tool schemas have been disclosed in this conversation.
    disclosed: HashSet<String>,
}

impl Conversation {
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }
}

impl Agent {
    /// After a turn was stopped part-way (Ctrl-C), answer the tool calls
    /// left without a result, so the conversation stays valid for the API
    /// (every tool call needs its result) and the store says what happened.
    pub async fn close_interrupted_turn(
        &self,
        conversation: &mut Conversation,
    ) -> anyhow::Result<()> {
        let Some(index) = conversation
            .messages
            .iter()
            .rposition(|m| m.role == "assistant")
        else {
            return Ok(());
        };
        let answered: Vec<String> = conversation.messages[index + 1..]
            .iter()
            .filter_map(|m| m.tool_call_id.clone())
            .collect();
        let missing: Vec<provider::ToolCall> = conversation.messages[index]
            .tool_calls
            .iter()
            .filter(|call| !answered.contains(&call.id))
            .cloned()
            .collect();
        for call in missing {
            let mut message = ChatMessage::new(
                "tool",
                "error: the user stopped this turn before the tool finished",
            );
            message.tool_call_id = Some(call.id);
            message.name = Some(call.function.name);
            self.record(conversation, message).await?;
        }
        Ok(())
    }
}

impl Agent {
    pub fn new(
        provider: Provider,
        tools: ToolRegistry,
        store: SessionStore,
        options: AgentOptions,
    ) -> Self {
        Self {
            provider: Arc::new(provider),
            tools: Arc::new(tools),
            store,
            options,
            leak_scanner: Arc::new(crate::leak_scan::LeakScanner::default()),
        }
    }

    /// Redact the secrets `scanner` knows from tool results (without one,
    /// only well-known credential shapes are).
    pub fn with_leak_scanner(mut self, scanner: Arc<crate::leak_scan::LeakScanner>) -> Self {
        self.leak_scanner = scanner;
        self
    }

    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// Start a conversation with `system_prompt`, stored as a new session.
    pub async fn start(
        &self,
        system_prompt: &str,
        parent: Option<&str>,
    ) -> anyhow::Result<Conversation> {
        let session_id = self.store.create_session_async(parent, None).await?;
        self.store
            .append_async(
                &session_id,
                &NewMessage {
                    role: "system",
                    content: system_prompt,
                    ..Default::default()
                },
            )
            .await?;
        Ok(Conversation {
            session_id,
            messages: vec![ChatMessage::new("system", system_prompt)],
            disclosed: HashSet::new(),
        })
    }

    /// Add a message the client already holds to `conversation`, stored
    /// like the loop's own: the history an OpenAI-compatible client sends
    /// with every request (the gateway). Only user and assistant text.
    pub async fn append_history(
        &self,
        conversation: &mut Conversation,
        role: &str,
        content: &str,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            role == "user" || role == "assistant",
            "only user and assistant messages are kept as history, not {role:?}"
        );
        self.record(conversation, ChatMessage::new(role, content))
            .await
    }

    /// Continue session `id` from the store (a fresh system prompt replaces
    /// the stored one), as a new session whose parent is `id`.
    pub async fn resume(&self, id: &str, system_prompt: &str) -> anyhow::Result<Conversation> {
        anyhow::ensure!(
            self.store.exists_async(id).await?,
            "no session {id:?}; see `talaria sessions list`"
        );
        let history = self.store.messages_async(id).await?;
        let mut conversation = self.start(system_prompt, Some(id)).await?;
        for message in history.into_iter().filter(|m| m.role != "system") {
            let tool_calls: Vec<provider::ToolCall> = message
                .tool_calls
                .clone()
                .and_then(|calls| serde_json::from_value(calls).ok())
                .unwrap_or_default();
            self.store
                .append_async(
                    &conversation.session_id,
                    &NewMessage {
                        role: &message.role,
                        content: &message.content,
                        tool_calls: message.tool_calls.as_ref(),
                        tool_call_id: message.tool_call_id.as_deref(),
                        name: message.name.as_deref(),
                    },
                )
                .await?;
            conversation.messages.push(ChatMessage {
                role: message.role,
                content: Some(message.content),
                tool_calls,
                tool_call_id: message.tool_call_id,
                name: message.name,
            });
        }
        Ok(conversation)
    }

    /// One user turn: call the model, run its tool calls (concurrently when
    /// there are several; results in call order), feed the results back,
    /// until a final answer or `max_turns`. Every message is committed to
    /// the store before the next model call.
    pub async fn ask(
        &self,
        conversation: &mut Conversation,
        input: &str,
        events: &mut (dyn FnMut(Event) + Send),
    ) -> Result<String, AgentError> {
        self.record(conversation, ChatMessage::new("user", input))
            .await?;
        for turn in 1..=self.options.max_turns {
            // The skills are read again for every model call: a grant or a
            // revoke since the last one takes effect now.
            self.tools.refresh().await;
            let tools = self.tools.definitions(&conversation.disclosed);
            let body = self.provider.request_body(
                &conversation.messages,
                &tools,
                !tools.is_empty(),
                self.options.stream,
            );
            let body_size = body.len();
            tracing::info!(
                turn,
                bytes = body_size,
                tools = tools.len(),
                "model request"
            );
            events(Event::Request {
                turn,
                bytes: body_size,
                tools: tools.len(),
            });
            let reply = self.request(body, events).await?;
            if let Some(usage) = reply.usage {
                events(Event::Usage(usage));
            }
            let calls = reply.tool_calls.clone();
            self.record(
                conversation,
                ChatMessage {
                    role: "assistant".into(),
                    content: Some(reply.content.clone()),
                    tool_calls: reply.tool_calls,
                    tool_call_id: None,
                    name: None,
                },
            )
            .await?;
            if calls.is_empty() {
                return Ok(reply.content);
            }
            let results = self
                .run_calls(&conversation.session_id, &calls, events)
                .await;
            for (call, result) in calls.iter().zip(results) {
                if let Some(skill) = ToolRegistry::skill_of(&call.function.name) {
                    conversation.disclosed.insert(skill.to_owned());
                }
                if call.function.name == "skill_view"
                    && let Ok(args) =
                        serde_json::from_str::<serde_json::Value>(&call.function.arguments)
                    && let Some(name) = args.get("name").and_then(|n| n.as_str())
                {
                    conversation.disclosed.insert(name.to_owned());
                }
                let mut message = ChatMessage::new("tool", result);
                message.tool_call_id = Some(call.id.clone());
                message.name = Some(call.function.name.clone());
                self.record(conversation, message).await?;
            }
        }
        Err(AgentError::MaxTurns(self.options.max_turns))
    }

    async fn request(
        &self,
        body: String,
        events: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Reply, AgentError> {
        let mut forward = |text: &str| events(Event::Text(text.to_owned()));
        let on_text: Option<provider::OnText<'_>> = if self.options.stream {
            Some(&mut forward)
        } else {
            None
        };
        Ok(self.provider.complete(&body, on_text).await?)
    }

    /// Run every call of one turn at once; results come back in call order.
    async fn run_calls(
        &self,
        session: &str,
        calls: &[provider::ToolCall],
        events: &mut (dyn FnMut(Event) + Send),
    ) -> Vec<String> {
        // Dropping this future (Ctrl-C) aborts the calls still running.
        let mut handles = AbortOnDrop(Vec::with_capacity(calls.len()));
        for call in calls {
            events(Event::ToolStarted {
                name: call.function.name.clone(),
                arguments: call.function.arguments.clone(),
            });
            let tools = Arc::clone(&self.tools);
            let (name, arguments) = (call.function.name.clone(), call.function.arguments.clone());
            let session = session.to_owned();
            handles.0.push(tokio::spawn(async move {
                tools.run_in(Some(&session), &name, &arguments).await
            }));
        }
        let mut results = Vec::with_capacity(calls.len());
        for (index, call) in calls.iter().enumerate() {
            let outcome = (&mut handles.0[index])
                .await
                .unwrap_or_else(|e| CallOutcome {
                    result: Err(format!("the tool crashed the host task: {e}")),
                    memory: None,
                });
            let ok = outcome.result.is_ok();
            let text = match outcome.result {
                Ok(text) => text,
                Err(error) => format!("error: {error}"),
            };
            // Before the cut: a secret split by it would pass unrecognised.
            let (redacted, found) = self.leak_scanner.redact(&text);
            if !found.is_empty() {
                // The name is the model's: sanitised, and itself redacted.
                let (tool, _) = self.leak_scanner.redact(&call.function.name);
                let tool = crate::untrusted_text::log_line(&tool);
                tracing::warn!(
                    tool = %tool,
                    skill = ToolRegistry::skill_of(&tool).unwrap_or("-"),
                    found = %found.join(", "),
                    "a tool result held secrets; they were redacted before the model saw it"
                );
            }
            let text = truncate(&redacted, self.options.tool_output_chars);
            events(Event::ToolFinished {
                name: call.function.name.clone(),
                ok,
                chars: text.chars().count(),
            });
            if let Some(change) = outcome.memory {
                events(Event::MemoryChanged {
                    action: change.action,
                    target: change.target,
                    entry: change.entry,
                });
            }
            results.push(text);
        }
        results
    }

    /// Commit `message` and add it to the conversation.
    async fn record(
        &self,
        conversation: &mut Conversation,
        message: ChatMessage,
    ) -> anyhow::Result<()> {
        let tool_calls = (!message.tool_calls.is_empty())
            .then(|| serde_json::to_value(&message.tool_calls))
            .transpose()?;
        let committed = self.store.append_async(
            &conversation.session_id,
            &NewMessage {
                role: &message.role,
                content: message.content.as_deref().unwrap_or(""),
                tool_calls: tool_calls.as_ref(),
                tool_call_id: message.tool_call_id.as_deref(),
                name: message.name.as_deref(),
            },
        );
        // Queued now, the message is committed even if this turn is dropped
        // (Ctrl-C) while it waits, so the conversation holds it from here
        // on, as the store will; a write that fails takes it back out.
        conversation.messages.push(message);
        if let Err(error) = committed.await {
            conversation.messages.pop();
            return Err(error);
        }
        Ok(())
    }
}

/// Tool tasks of a turn, aborted if the turn is abandoned.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<CallOutcome>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for handle in &self.0 {
            handle.abort();
        }
    }
}

/// Cut `text` to `max_chars` characters with a marker saying how much was cut.
fn truncate(text: &str, max_chars: usize) -> String {
    let total = text.chars().count();
    if total <= max_chars {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max_chars).collect();
    format!(
        "{kept}\n[… {} more characters cut (agent.tool_output_chars)]",
        total - max_chars
    )
}
