//! Commands waiting for a person: the one stateful part of the approvals.
//!
//! A caller whose command needs approval asks an [`Approver`]. The
//! gateway's approver is [`PendingApprovals`]: the question waits where the
//! dashboard and `GET /api/approvals` show it, until someone answers
//! (`POST /api/approvals/{id}`) or its time runs out, which denies it. A
//! caller that gives up (its request dropped) takes its question back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A person's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// This command, this time.
    Once,
    /// This command and any other the same rule catches, for the rest of
    /// the session.
    Session,
    /// This command from now on: it joins `[approvals] allowlist` (only
    /// offered when the question says `can_always`).
    Always,
    Deny,
}

/// What a person is asked.
#[derive(Debug, Clone, Serialize)]
pub struct Question {
    /// The whole command line (bounded, without control characters).
    pub command: String,
    /// The part of it the rule caught (the whole line for rules about it).
    pub part: String,
    /// The dangerous pattern it matched.
    pub rule: &'static str,
    /// Who asks: `the agent's terminal` or `skill NAME vX.Y.Z`.
    pub origin: String,
    /// The conversation it belongs to, when there is one.
    pub session: Option<String>,
    /// Whether "always" can be remembered: the command part is exact (no
    /// `*`, which a pattern would read as any text) and whole.
    pub can_always: bool,
}

/// An answer and how it came: `on the dashboard`, `earlier in this
/// session`, `automatically: nobody answered within 60 s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub verdict: Verdict,
    pub by: String,
}

/// Someone who can answer a [`Question`].
#[async_trait::async_trait]
pub trait Approver: Send + Sync {
    async fn ask(&self, question: Question) -> Answer;
}

/// A question as the API and the dashboard show it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingView {
    pub id: String,
    #[serde(flatten)]
    pub question: Question,
    pub asked_at: String,
    /// Seconds until it is denied by itself.
    pub seconds_left: u64,
}

struct Waiting {
    question: Question,
    asked_at: String,
    deadline: Instant,
    reply: tokio::sync::oneshot::Sender<Answer>,
}

/// The questions waiting for an answer in this process.
pub struct PendingApprovals {
    timeout: Duration,
    waiting: Arc<Mutex<HashMap<String, Waiting>>>,
}

impl PendingApprovals {
    /// Questions are denied `timeout` after they are asked.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            waiting: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The questions waiting now, oldest first.
    pub fn list(&self) -> Vec<PendingView> {
        let now = Instant::now();
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let mut views: Vec<PendingView> = waiting
            .iter()
            .map(|(id, waiting)| PendingView {
                id: id.clone(),
                question: waiting.question.clone(),
                asked_at: waiting.asked_at.clone(),
                seconds_left: waiting.deadline.saturating_duration_since(now).as_secs(),
            })
            .collect();
        views.sort_by(|a, b| a.asked_at.cmp(&b.asked_at).then(a.id.cmp(&b.id)));
        views
    }

    /// Answer the question `id`; `false` when it is no longer waiting
    /// (answered, denied by its time limit, or given up by its caller).
    pub fn answer(&self, id: &str, verdict: Verdict, by: &str) -> bool {
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        match waiting {
            Some(waiting) => waiting
                .reply
                .send(Answer {
                    verdict,
                    by: by.to_owned(),
                })
                .is_ok(),
            None => false,
        }
    }
}

/// Takes a question back when its caller stops waiting for any reason.
struct Withdraw {
    waiting: Arc<Mutex<HashMap<String, Waiting>>>,
    id: String,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

#[async_trait::async_trait]
impl Approver for PendingApprovals {
    async fn ask(&self, question: Question) -> Answer {
        let id: String = rand::random::<[u8; 8]>()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let (reply, answered) = tokio::sync::oneshot::channel();
        tracing::warn!(
            id = %id,
            command = %question.command,
            rule = question.rule,
            origin = %question.origin,
            "a command waits for approval (the dashboard, or POST /api/approvals/{id}); denied in {} s",
            self.timeout.as_secs()
        );
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id.clone(),
                Waiting {
                    question: question.clone(),
                    asked_at: crate::clock::now_rfc3339(),
                    deadline: Instant::now() + self.timeout,
                    reply,
                },
            );
        let _withdraw = Withdraw {
            waiting: Arc::clone(&self.waiting),
            id: id.clone(),
        };
        let answer = match tokio::time::timeout(self.timeout, answered).await {
            Ok(Ok(answer)) => answer,
            _ => Answer {
                verdict: Verdict::Deny,
                by: format!(
                    "automatically: nobody answered within {} s",
                    self.timeout.as_secs()
                ),
            },
        };
        tracing::info!(
            id = %id,
            command = %question.command,
            verdict = ?answer.verdict,
            by = %answer.by,
            "approval answered"
        );
        answer
    }
}

/// No one to ask: every question is denied at once.
pub struct NobodyToAsk {
    /// How, for the answer (`automatically: no one can be asked from here`).
    pub why: &'static str,
}

#[async_trait::async_trait]
impl Approver for NobodyToAsk {
    async fn ask(&self, _question: Question) -> Answer {
        Answer {
            verdict: Verdict::Deny,
            by: self.why.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(session: Option<&str>) -> Question {
        Question {
            command: "git reset --hard".into(),
            part: "git reset --hard".into(),
            rule: "git reset --hard",
            origin: "the agent's terminal".into(),
            session: session.map(str::to_owned),
            can_always: false,
        }
    }

    #[tokio::test]
    async fn a_question_waits_until_answered_and_is_listed_meanwhile() {
        let pending = Arc::new(PendingApprovals::new(Duration::from_secs(60)));
        let asking = tokio::spawn({
            let pending = Arc::clone(&pending);
            async move { pending.ask(question(Some("s1"))).await }
        });
        let id = loop {
            if let Some(view) = pending.list().first() {
                assert_eq!(view.question.command, "git reset --hard");
                assert!(view.seconds_left > 50);
                break view.id.clone();
            }
            tokio::task::yield_now().await;
        };
        assert!(!pending.answer("nope", Verdict::Once, "test"));
        assert!(pending.answer(&id, Verdict::Session, "on the dashboard"));
        let answer = asking.await.unwrap();
        assert_eq!(answer.verdict, Verdict::Session);
        assert_eq!(answer.by, "on the dashboard");
        assert!(pending.list().is_empty());
        let dropped =
            tokio::time::timeout(Duration::from_millis(50), pending.ask(question(Some("s2"))));
        assert!(dropped.await.is_err());
        assert!(pending.list().is_empty(), "a dropped question is withdrawn");
    }

    #[tokio::test]
    async fn an_unanswered_question_is_denied_at_its_time_limit() {
        let pending = PendingApprovals::new(Duration::from_secs(1));
        let answer = pending.ask(question(None)).await;
        assert_eq!(answer.verdict, Verdict::Deny);
        assert_eq!(answer.by, "automatically: nobody answered within 1 s");
        assert!(pending.list().is_empty());
        assert!(!pending.answer("late", Verdict::Once, "x"));
    }
}

/// Whoever answers this process's questions: nobody (every question
/// denied at once) until an entry point that can ask someone, the gateway,
/// puts its approver in.
pub struct ApproverSlot(std::sync::RwLock<Arc<dyn Approver>>);

impl Default for ApproverSlot {
    fn default() -> Self {
        Self(std::sync::RwLock::new(Arc::new(NobodyToAsk {
            why: "automatically: no one can be asked from here (the gateway's dashboard can; a CLI cannot yet)",
        })))
    }
}

impl ApproverSlot {
    pub fn set(&self, approver: Arc<dyn Approver>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = approver;
    }
}

#[async_trait::async_trait]
impl Approver for ApproverSlot {
    async fn ask(&self, question: Question) -> Answer {
        let approver = Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()));
        approver.ask(question).await
    }
}

/// Rule approvals for sessions kept at most (see [`Gate`]).
const MAX_SESSION_APPROVALS: usize = 10_000;

/// Characters of a command line a person is shown (and the log gets).
const MAX_SHOWN_CHARS: usize = 2000;

/// One command of words made of characters that mean nothing to a shell,
/// single spaces between them, no assignment in front: the text the
/// policy matches patterns against is then exactly the line.
fn is_plain(line: &str) -> bool {
    let plain_word = |word: &str| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:,+@%".contains(c))
    };
    line.len() < 200
        && line.split(' ').all(plain_word)
        && line
            .split(' ')
            .next()
            .is_some_and(|first| !first.contains('='))
}

/// Writes a pattern a person approved "always" where the next start reads
/// it (the home's `config.toml`).
pub type Remember = Arc<dyn Fn(&str) -> anyhow::Result<()> + Send + Sync>;

/// The approvals in front of native commands: the policy decides, and a
/// person is asked when it says so.
pub struct Gate {
    policy: std::sync::RwLock<super::Policy>,
    approver: Arc<dyn Approver>,
    remember: Option<Remember>,
    /// Rules a person approved for the rest of a session, whoever asked.
    for_session: Mutex<HashSet<(String, &'static str)>>,
}

/// Whether a command may run, and what to tell about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clearance {
    /// Runs; `note` says who approved it, when someone did.
    Run { note: Option<String> },
    /// Was not run: why, for the caller to pass on.
    Refused(String),
}

impl Gate {
    /// `policy`, asking `approver`; "always" is refused (answered as once)
    /// until [`remembering`](Self::remembering) says where to write it.
    pub fn new(policy: super::Policy, approver: Arc<dyn Approver>) -> Self {
        Self {
            policy: std::sync::RwLock::new(policy),
            approver,
            remember: None,
            for_session: Mutex::new(HashSet::new()),
        }
    }

    pub fn remembering(mut self, remember: Remember) -> Self {
        self.remember = Some(remember);
        self
    }

    /// Decide about `line`, asking a person when the policy wants one.
    /// `origin` and `session` tell the person who asks.
    pub async fn clear(&self, line: &str, origin: &str, session: Option<&str>) -> Clearance {
        self.decide(line, origin, session, true).await
    }

    /// Decide about `line` without asking anyone: what needs approval is
    /// refused. For skills, whose calls have a time limit of seconds that a
    /// person's answer would not fit in.
    pub async fn clear_unattended(&self, line: &str, origin: &str) -> Clearance {
        self.decide(line, origin, None, false).await
    }

    async fn decide(
        &self,
        line: &str,
        origin: &str,
        session: Option<&str>,
        ask: bool,
    ) -> Clearance {
        use super::Decision;
        let decision = self
            .policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .check(line);
        let shown = crate::untrusted_text::sanitize(line, MAX_SHOWN_CHARS, false);
        tracing::info!(decision = decision.kind(), command = %shown, origin, "approvals: {decision}");
        let (rule, part) = match &decision {
            Decision::Allowed { .. } => return Clearance::Run { note: None },
            Decision::NeedsApproval { rule, command } => (*rule, command.clone()),
            _ => return Clearance::Refused(format!("{decision}; it was not run")),
        };
        let Some(approver) = ask.then_some(&self.approver) else {
            return Clearance::Refused(format!(
                "{decision}; a skill's command is never held for a person, so it was not run (the operator can approve it in advance in approvals.allowlist)"
            ));
        };
        // "Always" saves the command as a pattern that must match exactly
        // what was shown: one plain command, no quotes, variables, globs
        // or assignments that the saved words would read differently.
        let session_key = session.map(|session| (session.to_owned(), rule));
        let approved_before = session_key.as_ref().is_some_and(|key| {
            self.for_session
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(key)
        });
        if approved_before {
            return Clearance::Run {
                note: Some(format!(
                    "{decision}; approved for this session earlier in this session"
                )),
            };
        }
        let can_always = self.remember.is_some() && part == line.trim() && is_plain(&part);
        let answer = approver
            .ask(Question {
                command: shown,
                part: part.clone(),
                rule,
                origin: origin.to_owned(),
                session: session.map(str::to_owned),
                can_always,
            })
            .await;
        let by = &answer.by;
        match answer.verdict {
            Verdict::Once => Clearance::Run {
                note: Some(format!("{decision}; approved once {by}")),
            },
            Verdict::Session => {
                if let Some(key) = session_key {
                    let mut approved = self.for_session.lock().unwrap_or_else(|e| e.into_inner());
                    // A gateway runs for months: past this many, every
                    // session's approvals are forgotten at once (their
                    // commands are asked about again), so the set stays
                    // bounded.
                    if approved.len() >= MAX_SESSION_APPROVALS {
                        approved.clear();
                    }
                    approved.insert(key);
                }
                Clearance::Run {
                    note: Some(format!("{decision}; approved for this session {by}")),
                }
            }
            Verdict::Always => Clearance::Run {
                note: Some(match self.remember_always(&part, can_always) {
                    Ok(()) => format!(
                        "{decision}; approved for good {by}: `{part}` joined approvals.allowlist"
                    ),
                    Err(why) => format!("{decision}; approved once {by} (not for good: {why})"),
                }),
            },
            Verdict::Deny => {
                Clearance::Refused(format!("{decision}; denied {by}, so it was not run"))
            }
        }
    }

    fn remember_always(&self, part: &str, can_always: bool) -> Result<(), String> {
        let Some(remember) = self.remember.as_ref().filter(|_| can_always) else {
            return Err("this command cannot be remembered as a pattern".into());
        };
        remember(part).map_err(|error| format!("{error:#}"))?;
        self.policy
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .allowlist
            .push(part.to_owned());
        tracing::info!(pattern = %part, "approved for good: added to approvals.allowlist");
        Ok(())
    }
}

#[cfg(test)]
mod gate_tests {
    use super::*;

    /// Answers every question with one verdict, and remembers them.
    struct Answering(Verdict, Mutex<Vec<Question>>);

    #[async_trait::async_trait]
    impl Approver for Answering {
        async fn ask(&self, question: Question) -> Answer {
            self.1.lock().unwrap().push(question);
            Answer {
                verdict: self.0,
                by: "by the test".into(),
            }
        }
    }

    #[tokio::test]
    async fn a_session_approval_covers_the_rule_in_that_session_only() {
        let approver = Arc::new(Answering(Verdict::Session, Mutex::new(Vec::new())));
        let gate = Gate::new(super::super::Policy::default(), approver.clone());
        let first = gate.clear("git reset --hard", "test", Some("s1")).await;
        assert!(
            matches!(&first, Clearance::Run { note: Some(note) } if note.ends_with("approved for this session by the test")),
            "{first:?}"
        );
        // The same rule in the same session is not asked again...
        let again = gate
            .clear("git reset --hard HEAD~1", "test", Some("s1"))
            .await;
        assert!(
            matches!(&again, Clearance::Run { note: Some(note) } if note.ends_with("earlier in this session")),
            "{again:?}"
        );
        assert_eq!(approver.1.lock().unwrap().len(), 1);
        // ...in another session, or without one, it is.
        gate.clear("git reset --hard", "test", Some("s2")).await;
        gate.clear("git reset --hard", "test", None).await;
        assert_eq!(approver.1.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn always_is_remembered_for_this_process_and_written_for_the_next() {
        let written = Arc::new(Mutex::new(Vec::<String>::new()));
        let approver = Arc::new(Answering(Verdict::Always, Mutex::new(Vec::new())));
        let gate = Gate::new(super::super::Policy::default(), approver.clone()).remembering({
            let written = Arc::clone(&written);
            Arc::new(move |pattern: &str| {
                written.lock().unwrap().push(pattern.to_owned());
                Ok(())
            })
        });
        let first = gate.clear("git reset --hard", "test", None).await;
        assert!(
            matches!(&first, Clearance::Run { note: Some(note) } if note.contains("approved for good by the test")),
            "{first:?}"
        );
        assert_eq!(*written.lock().unwrap(), ["git reset --hard"]);
        // Not asked again.
        assert_eq!(
            gate.clear("git reset --hard", "test", None).await,
            Clearance::Run { note: None }
        );
        assert_eq!(approver.1.lock().unwrap().len(), 1);
        // A command with `*` cannot be an exact pattern: once, not for good.
        let globbed = gate
            .clear("find . -name '*.tmp' -delete", "test", None)
            .await;
        assert!(
            matches!(&globbed, Clearance::Run { note: Some(note) } if note.contains("not for good")),
            "{globbed:?}"
        );
        assert!(!approver.1.lock().unwrap()[1].can_always);
        assert_eq!(written.lock().unwrap().len(), 1);
        // Nor can anything the saved words would read differently.
        for line in [
            "rm -r 'build .'",
            "DIR=x; rm -r $DIR",
            "GIT_DIR=/x git clean -fd",
            "git clean  -fd",
            "echo x; git clean -fd",
        ] {
            let asked_before = approver.1.lock().unwrap().len();
            gate.clear(line, "test", None).await;
            let questions = approver.1.lock().unwrap();
            assert_eq!(questions.len(), asked_before + 1, "{line}");
            assert!(!questions[asked_before].can_always, "{line}");
        }
        assert_eq!(written.lock().unwrap().len(), 1);
        // The floor is never asked about.
        assert!(matches!(
            gate.clear("rm -rf /", "test", None).await,
            Clearance::Refused(_)
        ));
        // Unattended, nothing is asked.
        let asked_before = approver.1.lock().unwrap().len();
        let refused = gate.clear_unattended("git clean -fd", "skill x").await;
        assert!(
            matches!(&refused, Clearance::Refused(why) if why.contains("never held for a person")),
            "{refused:?}"
        );
        assert_eq!(approver.1.lock().unwrap().len(), asked_before);
    }
}
