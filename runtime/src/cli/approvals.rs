//! `talaria approvals check COMMAND`: print the decision and its rule;
//! `talaria backend check`: where native commands run, and how fast.

use std::io::Write as _;

use serde_json::json;

use crate::app::App;
use crate::approval::{Decision, Mode};

/// Returns whether the command would run without asking.
pub(crate) fn check(
    app: &App,
    command: &str,
    mode: Option<Mode>,
    as_json: bool,
) -> anyhow::Result<bool> {
    let policy = app.approval_policy(mode);
    let decision = policy.check(command);
    let mut out = super::output::stdout();
    if as_json {
        let (rule, part, pattern) = match &decision {
            Decision::Allowed { pattern } => (None, None, pattern.clone()),
            Decision::NeedsApproval { rule, command } | Decision::Hardline { rule, command } => {
                (Some(*rule), Some(command.clone()), None)
            }
            Decision::NotInAllowlist { command } => (None, Some(command.clone()), None),
        };
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({
                "decision": decision.kind(),
                "mode": policy.mode.name(),
                "rule": rule,
                "command": part,
                "pattern": pattern,
            }))?
        )?;
    } else {
        writeln!(out, "{decision} (mode {})", policy.mode)?;
    }
    Ok(decision.runs_without_asking())
}

/// `talaria backend check`: describe the backend and time `true` on it.
/// Returns whether commands can run.
pub(crate) async fn check_backend(app: &App) -> anyhow::Result<bool> {
    let backend = app.backend();
    let mut out = super::output::stdout();
    writeln!(out, "backend: {}", backend.describe())?;
    if let Err(error) = backend.prepare().await {
        writeln!(out, "cannot run commands: {error}")?;
        return Ok(false);
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let request = crate::backend::CommandRequest {
            program: "true".into(),
            timeout: std::time::Duration::from_secs(30),
            max_output_bytes: 4096,
            ..Default::default()
        };
        match backend.run(request).await {
            Ok(output) if output.success() => times.push(output.duration),
            Ok(output) => {
                writeln!(
                    out,
                    "`true` failed there: exit {:?}, signal {:?}",
                    output.code, output.signal
                )?;
                return Ok(false);
            }
            Err(error) => {
                writeln!(out, "cannot run commands: {error}")?;
                return Ok(false);
            }
        }
    }
    times.sort();
    writeln!(
        out,
        "`true` round trip: {:.2} ms (median of {})",
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times.len()
    )?;
    Ok(true)
}

/// Asks the person at the terminal (`talaria chat`, `talaria tool call`
/// run by hand) about each command that needs approval, one question at a
/// time: once, for this session, always (written to `config.toml`), or
/// deny, which is also what anything else answers.
#[derive(Default)]
pub(crate) struct TerminalApprover {
    one_at_a_time: tokio::sync::Mutex<()>,
}

#[async_trait::async_trait]
impl crate::approval::pending::Approver for TerminalApprover {
    async fn ask(
        &self,
        question: crate::approval::pending::Question,
    ) -> crate::approval::pending::Answer {
        use crate::approval::pending::{Answer, Verdict};
        let _turn = self.one_at_a_time.lock().await;
        let always = if question.can_always {
            ", [a]lways"
        } else {
            ""
        };
        let caught = if question.part == question.command {
            String::new()
        } else {
            format!("  the part the rule caught:\n    {}\n", question.part)
        };
        let prompt = format!(
            "\napproval needed ({}): {} wants to run\n    {}\n{caught}[o]nce, [s]ession{always}, [d]eny (default: deny): ",
            question.rule, question.origin, question.command
        );
        // The read stops when this question is dropped (the turn was
        // cancelled): a read left behind would eat the next line typed.
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _stop_reading = SetOnDrop(std::sync::Arc::clone(&dropped));
        let line = tokio::task::spawn_blocking(move || {
            let mut stderr = std::io::stderr();
            let _ = write!(stderr, "{prompt}");
            let _ = stderr.flush();
            let stdin = std::io::stdin();
            let tick = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 200_000_000,
            };
            loop {
                if dropped.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(std::io::Error::other("the question was withdrawn"));
                }
                let mut ready = [rustix::event::PollFd::new(
                    &stdin,
                    rustix::event::PollFlags::IN,
                )];
                match rustix::event::poll(&mut ready, Some(&tick)) {
                    Ok(0) => continue,
                    Ok(_) => break,
                    Err(error) => return Err(error.into()),
                }
            }
            let mut line = String::new();
            stdin.read_line(&mut line).map(|_| line)
        })
        .await;
        let answer = match line {
            Ok(Ok(line)) => line.trim().to_ascii_lowercase(),
            _ => String::new(),
        };
        let verdict = match answer.as_str() {
            "o" | "once" => Verdict::Once,
            "s" | "session" => Verdict::Session,
            "a" | "always" if question.can_always => Verdict::Always,
            _ => Verdict::Deny,
        };
        Answer {
            verdict,
            by: "at the terminal".into(),
        }
    }
}

/// Sets its flag when dropped.
struct SetOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
