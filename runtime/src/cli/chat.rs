//! `talaria chat`: one question with `-q`, or a conversation at a terminal.

use std::io::{IsTerminal, Write};

use super::Failure;
use crate::agent::tools::MemoryAction;
use crate::agent::{Conversation, Event};
use crate::app::{AgentSession, App};

pub(crate) async fn run(
    app: &App,
    query: Option<String>,
    resume: Option<String>,
) -> Result<(), Failure> {
    // Without this, the first question fails with a connection error to a
    // placeholder address that says nothing about what to set.
    if let Some(setup) = crate::config::ModelSetup::needed(&app.config, &app.home.config_file()) {
        return Err(anyhow::anyhow!(setup.explain()).into());
    }
    let interactive = query.is_none();
    if interactive && !std::io::stdin().is_terminal() {
        return Err(Failure::usage(anyhow::anyhow!(
            "`talaria chat` without -q needs a terminal, and stdin is not one: in a container, start \
             it with `docker run -it` (or `docker exec -it`), or ask one question with \
             `talaria chat -q \"...\"`"
        )));
    }
    let session = app.agent(interactive).await?;
    let mut conversation = match &resume {
        Some(id) => session.resume(id).await?,
        None => session.start().await?,
    };
    match query {
        Some(question) => {
            let answer = session
                .agent
                .ask(&mut conversation, &question, &mut progress)
                .await
                .map_err(anyhow::Error::from)?;
            let answer = crate::untrusted_text::sanitize(answer.trim_end(), usize::MAX, true);
            writeln!(super::output::stdout(), "{answer}")?;
            eprintln!("(session {})", conversation.session_id);
            Ok(())
        }
        None => {
            repl(
                &session,
                conversation,
                &app.home.root().join("chat_history"),
            )
            .await
        }
    }
}

/// Longest tool name shown; names come from the model, unchecked.
const SHOWN_NAME_BYTES: usize = 128;
/// Longest memory entry shown in a progress line.
const SHOWN_ENTRY_BYTES: usize = 300;

/// Progress on stderr: tool calls and their outcome.
fn progress(event: Event) {
    if let Some(line) = progress_line(&event) {
        eprintln!("{line}");
    }
}

/// The progress line for `event`, if it has one. Everything here comes from
/// the model, tool names included, so all of it is sanitised and bounded.
fn progress_line(event: &Event) -> Option<String> {
    use crate::untrusted_text::sanitize;
    match event {
        Event::ToolStarted { name, arguments } => {
            let name = sanitize(name, SHOWN_NAME_BYTES, false);
            let arguments = sanitize(arguments, 200, false);
            Some(format!("→ {name} {arguments}"))
        }
        Event::ToolFinished { name, ok, chars } => {
            let name = sanitize(name, SHOWN_NAME_BYTES, false);
            let outcome = if *ok { "ok" } else { "error" };
            Some(format!("← {name}: {outcome} ({chars} characters)"))
        }
        // Every change to memory is shown: it reaches every later prompt.
        Event::MemoryChanged {
            action,
            target,
            entry,
        } => {
            let change = match action {
                MemoryAction::Added => "added to",
                MemoryAction::Replaced => "replaced in",
                MemoryAction::Removed => "removed from",
            };
            let entry = sanitize(entry, SHOWN_ENTRY_BYTES, false);
            Some(format!("memory: {change} {}: {entry:?}", target.name()))
        }
        Event::Request { .. } | Event::Text(_) | Event::Usage(_) => None,
    }
}

async fn repl(
    session: &AgentSession,
    mut conversation: Conversation,
    history: &std::path::Path,
) -> Result<(), Failure> {
    use rustyline::error::ReadlineError;
    eprintln!(
        "talaria chat — session {}. /help for commands; Ctrl-C stops a turn, Ctrl-D or /exit leaves.",
        conversation.session_id
    );
    let mut editor = rustyline::DefaultEditor::new().map_err(anyhow::Error::from)?;
    // A missing history file is the first conversation, not an error.
    let _ = editor.load_history(history);
    loop {
        let line = match editor.readline("you> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(anyhow::Error::from(error).into()),
        };
        let line = line.trim();
        if !line.is_empty() {
            let _ = editor.add_history_entry(line);
        }
        match line
            .split_once(' ')
            .map_or((line, ""), |(c, rest)| (c, rest.trim()))
        {
            ("", _) => continue,
            ("/exit" | "/quit", _) => break,
            ("/help", _) => eprintln!(
                "/new            start a new session\n/resume ID      continue an earlier session\n\
                 /skills         list the skills offered\n/exit           leave (or Ctrl-D)\n\
                 Ctrl-C          stop the current turn; the session goes on"
            ),
            ("/new", _) => {
                conversation = session.start().await?;
                eprintln!("new session {}", conversation.session_id);
            }
            ("/resume", id) if !id.is_empty() => match session.resume(id).await {
                Ok(resumed) => {
                    conversation = resumed;
                    eprintln!("resumed {id} as session {}", conversation.session_id);
                }
                Err(error) => eprintln!("error: {error:#}"),
            },
            ("/skills", _) => {
                for skill in session.agent.tools().refresh().await.iter() {
                    eprintln!("- {}: {}", skill.name, skill.description);
                }
            }
            (command, _) if command.starts_with('/') => {
                eprintln!("unknown command {command}; /help lists them")
            }
            _ => {
                let mut events = |event: Event| match event {
                    Event::Text(text) => {
                        // Model output may quote anything, escape sequences included.
                        let text = crate::untrusted_text::sanitize(&text, usize::MAX, true);
                        // A closed stdout shows when the turn's answer is ended below.
                        let mut out = super::output::stdout();
                        let _ = write!(out, "{text}").and_then(|()| out.flush());
                    }
                    other => progress(other),
                };
                let outcome = tokio::select! {
                    outcome = session.agent.ask(&mut conversation, line, &mut events) => Some(outcome),
                    _ = tokio::signal::ctrl_c() => None,
                };
                match outcome {
                    Some(Ok(_)) => writeln!(super::output::stdout())?,
                    Some(Err(error)) => eprintln!("\nerror: {error}"),
                    None => {
                        session
                            .agent
                            .close_interrupted_turn(&mut conversation)
                            .await?;
                        eprintln!("\n(turn stopped; the session goes on)");
                    }
                }
            }
        }
    }
    // What was typed may be private: the history is for this user only.
    let saved = editor
        .save_history(history)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(history, std::fs::Permissions::from_mode(0o600))
                .map_err(anyhow::Error::from)
        });
    if let Err(error) = saved {
        tracing::warn!("cannot save the chat history: {error:#}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_memory_change_is_shown() {
        use crate::memory::Target;
        let line = |action, target, entry: &str| {
            progress_line(&Event::MemoryChanged {
                action,
                target,
                entry: entry.to_owned(),
            })
            .unwrap()
        };
        assert_eq!(
            line(MemoryAction::Added, Target::User, "prefers metric units"),
            "memory: added to user: \"prefers metric units\""
        );
        assert_eq!(
            line(
                MemoryAction::Replaced,
                Target::Memory,
                "say \"hi\"\u{1b}[2J"
            ),
            "memory: replaced in memory: \"say \\\"hi\\\"\""
        );
        let removed = line(MemoryAction::Removed, Target::Memory, &"x".repeat(5000));
        assert!(removed.starts_with("memory: removed from memory: \"xxx"));
        assert!(removed.len() < 400, "bounded: {}", removed.len());
    }

    #[test]
    fn progress_lines_strip_escape_sequences_from_tool_names() {
        let name = "evil\u{1b}]0;pwned\u{7}\u{1b}[2J".to_owned();
        let started = progress_line(&Event::ToolStarted {
            name: name.clone(),
            arguments: "{\"a\": \"\u{1b}[31m\"}".into(),
        });
        assert_eq!(started.as_deref(), Some("→ evil {\"a\": \"\"}"));
        let finished = progress_line(&Event::ToolFinished {
            name: name.repeat(100),
            ok: false,
            chars: 3,
        })
        .unwrap();
        assert!(!finished.contains(|c: char| c.is_control()), "{finished:?}");
        assert!(finished.starts_with("← evilevil"), "{finished}");
        assert!(finished.len() < 200, "bounded: {finished}");
    }
}
