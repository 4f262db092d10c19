//! `talaria sessions list | show | search | export | delete`.
//!
//! Stored messages hold what the model, the tools and the user wrote, any
//! of which may carry terminal escape sequences: text output strips them
//! (newlines kept in transcripts). JSON output is escaped by serde and stays
//! byte-exact.

use std::io::Write;

use super::table::write_table;
use super::{Failure, SessionsCommand};
use crate::app::App;
use crate::memory::{Message, SessionStore};
use crate::untrusted_text::{log_line, sanitize};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// One JSON object per message.
    Jsonl,
    /// A readable transcript.
    Md,
}

pub(crate) fn run(app: &App, command: SessionsCommand) -> Result<(), Failure> {
    let store = app.session_store()?;
    let mut out = super::output::stdout();
    match command {
        SessionsCommand::List { limit, json } => {
            let sessions = store.list(limit)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&sessions)?)?;
            } else if sessions.is_empty() {
                writeln!(out, "no sessions yet")?;
            } else {
                let rows: Vec<[String; 4]> = sessions
                    .iter()
                    .map(|session| {
                        [
                            log_line(&session.id),
                            log_line(&session.updated_at),
                            session.messages.to_string(),
                            // Shortened by the store; stripped again for the terminal.
                            session
                                .title
                                .as_deref()
                                .map_or_else(|| "-".into(), log_line),
                        ]
                    })
                    .collect();
                write_table(&mut out, ["ID", "UPDATED", "MESSAGES", "TITLE"], &rows)?;
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
                    let snippet = sanitize(&hit.snippet, usize::MAX, false);
                    writeln!(
                        out,
                        "{}  {}  {:<9}  {snippet}",
                        log_line(&hit.session_id),
                        log_line(&hit.created_at),
                        log_line(&hit.role)
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

/// The transcript of `sessions show` and `sessions export --format md`.
fn write_markdown(out: &mut impl Write, id: &str, messages: &[Message]) -> std::io::Result<()> {
    let text = |text: &str| sanitize(text, usize::MAX, true);
    writeln!(out, "# Session {}\n", log_line(id))?;
    for message in messages {
        let who = match (message.role.as_str(), &message.name) {
            ("tool", Some(name)) => format!("tool `{}`", log_line(name)),
            (role, _) => log_line(role),
        };
        writeln!(out, "## {who} — {}\n", log_line(&message.created_at))?;
        if !message.content.is_empty() {
            writeln!(out, "{}\n", text(&message.content))?;
        }
        if let Some(calls) = message.tool_calls.as_ref().and_then(|c| c.as_array()) {
            for call in calls {
                let function = &call["function"];
                writeln!(
                    out,
                    "- calls `{}` with `{}`",
                    log_line(function["name"].as_str().unwrap_or("?")),
                    log_line(function["arguments"].as_str().unwrap_or(""))
                )?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_strip_escape_sequences_from_stored_content() {
        let message = |role: &str, content: &str, name: Option<&str>, calls| Message {
            id: 1,
            role: role.into(),
            content: content.into(),
            tool_calls: calls,
            tool_call_id: None,
            name: name.map(str::to_owned),
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        let messages = [
            message("user", "clear \u{1b}[2J\u{1b}[Hthe screen", None, None),
            message(
                "assistant",
                "line 1\n\u{1b}]0;pwned\u{7}line 2",
                None,
                Some(
                    serde_json::json!([{"id": "c", "type": "function", "function": {
                        "name": "evil\u{1b}[31m", "arguments": "{\"a\":\"\u{1b}]8;;x\u{7}\"}"
                    }}]),
                ),
            ),
            message(
                "tool",
                "result \u{9b}31mred",
                Some("files__read\u{1b}[0m"),
                None,
            ),
        ];
        let mut out = Vec::new();
        write_markdown(&mut out, "s1", &messages).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        for expected in [
            "clear the screen",
            "line 1\nline 2",
            "- calls `evil` with `{\"a\":\"\"}`",
            "## tool `files__read` — ",
            "result red",
        ] {
            assert!(out.contains(expected), "{expected:?} in {out}");
        }
    }
}
