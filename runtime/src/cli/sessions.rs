//! `talaria sessions list | show | search | export | delete`.

use std::io::Write;

use super::context::Context;
use super::{Failure, SessionsCommand};
use crate::memory::{Message, SessionStore};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// One JSON object per message.
    Jsonl,
    /// A readable transcript.
    Md,
}

pub(crate) fn run(context: &Context, command: SessionsCommand) -> Result<(), Failure> {
    let store = SessionStore::open(&context.home.state_db())?;
    let mut out = std::io::stdout().lock();
    match command {
        SessionsCommand::List { limit, json } => {
            let sessions = store.list(limit)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&sessions)?)?;
            } else if sessions.is_empty() {
                writeln!(out, "no sessions yet")?;
            } else {
                for session in sessions {
                    writeln!(
                        out,
                        "{}  {}  {:>4} messages  {}",
                        session.id,
                        session.updated_at,
                        session.messages,
                        session.title.as_deref().unwrap_or("")
                    )?;
                }
            }
        }
        SessionsCommand::Show { id } => {
            let messages = messages(&store, &id)?;
            write_markdown(&mut out, &id, &messages)?;
        }
        SessionsCommand::Search { query, limit, json } => {
            let hits = store.search(&query, limit)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&hits)?)?;
            } else if hits.is_empty() {
                writeln!(out, "no message contains {query:?}")?;
            } else {
                for hit in hits {
                    let snippet = hit.snippet.replace('\n', " ");
                    writeln!(
                        out,
                        "{}  {}  {:<9}  {snippet}",
                        hit.session_id, hit.created_at, hit.role
                    )?;
                }
            }
        }
        SessionsCommand::Export { id, format } => {
            let messages = messages(&store, &id)?;
            match format {
                ExportFormat::Jsonl => {
                    for message in &messages {
                        writeln!(out, "{}", serde_json::to_string(message)?)?;
                    }
                }
                ExportFormat::Md => write_markdown(&mut out, &id, &messages)?,
            }
        }
        SessionsCommand::Delete { id } => {
            if !store.delete(&id)? {
                return Err(Failure::usage(anyhow::anyhow!(
                    "no session {id:?}; see `talaria sessions list`"
                )));
            }
            writeln!(out, "deleted session {id}")?;
        }
    }
    Ok(())
}

fn messages(store: &SessionStore, id: &str) -> Result<Vec<Message>, Failure> {
    if !store.exists(id)? {
        return Err(Failure::usage(anyhow::anyhow!(
            "no session {id:?}; see `talaria sessions list`"
        )));
    }
    Ok(store.messages(id)?)
}

fn write_markdown(out: &mut impl Write, id: &str, messages: &[Message]) -> std::io::Result<()> {
    writeln!(out, "# Session {id}\n")?;
    for message in messages {
        let who = match (message.role.as_str(), &message.name) {
            ("tool", Some(name)) => format!("tool `{name}`"),
            (role, _) => role.to_owned(),
        };
        writeln!(out, "## {who} — {}\n", message.created_at)?;
        if !message.content.is_empty() {
            writeln!(out, "{}\n", message.content)?;
        }
        if let Some(calls) = message.tool_calls.as_ref().and_then(|c| c.as_array()) {
            for call in calls {
                let function = &call["function"];
                writeln!(
                    out,
                    "- calls `{}` with `{}`",
                    function["name"].as_str().unwrap_or("?"),
                    function["arguments"].as_str().unwrap_or("")
                )?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}
