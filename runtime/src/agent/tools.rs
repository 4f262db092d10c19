//! The tools offered to the model: the granted skills' tools, named
//! `SKILL__TOOL` (two underscores; OpenAI function names allow letters,
//! digits, `_` and `-`, and skill names never contain `__`), and the
//! built-ins `memory`, `session_search`, `skills_list` and `skill_view`,
//! and `terminal` when a native backend is configured (commands pass the
//! approvals, then run on the backend).
//!
//! Only the operator grants: no tool here can grant, revoke or widen a
//! capability.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::memory::{Notes, SessionStore, Target};
pub use crate::skill::registry::OfferedSkill as SkillEntry;
use crate::skill::registry::{OfferedSkill, SkillRegistry};

/// Where the skills offered to the model come from, asked again at every
/// model call: the live registry in the application (a grant, a revoke or a
/// changed skill folder takes effect for the next turn), a fixed list in
/// tests and embedders.
#[async_trait::async_trait]
pub trait SkillSource: Send + Sync {
    async fn offered(&self) -> anyhow::Result<Arc<[OfferedSkill]>>;
}

#[async_trait::async_trait]
impl SkillSource for SkillRegistry {
    async fn offered(&self) -> anyhow::Result<Arc<[OfferedSkill]>> {
        SkillRegistry::offered(self).await
    }
}

/// The same skills every time.
pub struct FixedSkills(pub Arc<[OfferedSkill]>);

#[async_trait::async_trait]
impl SkillSource for FixedSkills {
    async fn offered(&self) -> anyhow::Result<Arc<[OfferedSkill]>> {
        Ok(Arc::clone(&self.0))
    }
}

/// What a `memory` call changed, shown to the user: memory entries reach
/// every later system prompt, so none changes unseen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryChange {
    pub action: MemoryAction,
    pub target: Target,
    /// The entry as saved (added, replaced) or as it was (removed).
    pub entry: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryAction {
    Added,
    Replaced,
    Removed,
}

/// One call's result: text for the model (an `Err` is text it can act on),
/// and the memory change it made, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    pub result: Result<String, String>,
    pub memory: Option<MemoryChange>,
}

pub struct ToolRegistry {
    source: Arc<dyn SkillSource>,
    /// The skills as read at the last refresh: the tools of one model call
    /// and the calls it makes all see the same set.
    skills: RwLock<Arc<[OfferedSkill]>>,
    /// The tool definitions of that set, built once per set.
    definitions: RwLock<Arc<Definitions>>,
    notes: Notes,
    store: SessionStore,
    schema_budget_bytes: usize,
    /// The `terminal` tool, offered when a backend is configured.
    terminal: Option<Terminal>,
}

/// What the `terminal` tool runs commands with: the approvals first, then
/// the backend.
pub struct Terminal {
    pub backend: Arc<dyn crate::backend::Backend>,
    /// The approvals: the policy, and who is asked when it wants a person.
    pub gate: Arc<crate::approval::pending::Gate>,
    /// The longest a command may run; the model may ask for less.
    pub max_timeout: std::time::Duration,
    /// Bytes kept of each of stdout and stderr.
    pub max_output_bytes: usize,
}

const SEPARATOR: &str = "__";

impl ToolRegistry {
    pub fn new(
        source: Arc<dyn SkillSource>,
        notes: Notes,
        store: SessionStore,
        schema_budget_bytes: usize,
    ) -> Self {
        let skills: Arc<[OfferedSkill]> = Arc::from(Vec::new());
        Self {
            source,
            definitions: RwLock::new(Arc::new(Definitions::of(&skills, false))),
            skills: RwLock::new(skills),
            notes,
            store,
            schema_budget_bytes,
            terminal: None,
        }
    }

    /// Offer the `terminal` tool, running commands through `terminal`.
    pub fn with_terminal(mut self, terminal: Terminal) -> Self {
        self.terminal = Some(terminal);
        let skills = self.skills();
        self.set_skills(skills);
        self
    }

    /// A registry offering `skills`, always the same.
    pub fn fixed(
        skills: Vec<SkillEntry>,
        notes: Notes,
        store: SessionStore,
        schema_budget_bytes: usize,
    ) -> Self {
        let skills: Arc<[OfferedSkill]> = skills.into();
        let registry = Self::new(
            Arc::new(FixedSkills(Arc::clone(&skills))),
            notes,
            store,
            schema_budget_bytes,
        );
        registry.set_skills(skills);
        registry
    }

    /// Read the skills from the source again (at the start of every model
    /// call). A source that fails keeps the previous set, with a warning.
    pub async fn refresh(&self) -> Arc<[OfferedSkill]> {
        match self.source.offered().await {
            Ok(skills) => {
                if !Arc::ptr_eq(&skills, &self.skills()) {
                    self.set_skills(Arc::clone(&skills));
                }
                skills
            }
            Err(error) => {
                tracing::warn!("cannot refresh the skills; offering the previous set: {error:#}");
                self.skills()
            }
        }
    }

    fn set_skills(&self, skills: Arc<[OfferedSkill]>) {
        let definitions = Arc::new(Definitions::of(&skills, self.terminal.is_some()));
        *self.skills.write().unwrap_or_else(|e| e.into_inner()) = skills;
        *self.definitions.write().unwrap_or_else(|e| e.into_inner()) = definitions;
    }

    /// The skills as of the last refresh.
    pub fn skills(&self) -> Arc<[OfferedSkill]> {
        Arc::clone(&self.skills.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Tool definitions for one request. When all skill schemas together
    /// exceed the budget, a skill's tools are offered only once it is in
    /// `disclosed` (viewed with `skill_view` or used in this session).
    pub fn definitions(&self, disclosed: &HashSet<String>) -> ToolDefinitions {
        let all = Arc::clone(&self.definitions.read().unwrap_or_else(|e| e.into_inner()));
        let selected = (all.skill_bytes > self.schema_budget_bytes).then(|| {
            all.owners
                .iter()
                .enumerate()
                .filter(|(_, owner)| owner.as_ref().is_none_or(|skill| disclosed.contains(skill)))
                .map(|(index, _)| index)
                .collect()
        });
        ToolDefinitions { all, selected }
    }

    /// The skill a tool name belongs to, for disclosure bookkeeping.
    pub fn skill_of(name: &str) -> Option<&str> {
        name.split_once(SEPARATOR).map(|(skill, _)| skill)
    }

    /// Run one call; an `Err` is text for the model to act on.
    pub async fn call(&self, name: &str, arguments: &str) -> Result<String, String> {
        self.run(name, arguments).await.result
    }

    /// Run one call, and say what it changed in memory.
    pub async fn run(&self, name: &str, arguments: &str) -> CallOutcome {
        self.run_in(None, name, arguments).await
    }

    /// [`run`](Self::run) within a conversation: `session` is its id (a
    /// person may approve a command for the rest of it).
    pub async fn run_in(&self, session: Option<&str>, name: &str, arguments: &str) -> CallOutcome {
        let result = match name {
            "memory" => {
                return match self.memory(arguments) {
                    Ok((text, change)) => CallOutcome {
                        result: Ok(text),
                        memory: Some(change),
                    },
                    Err(error) => CallOutcome {
                        result: Err(error),
                        memory: None,
                    },
                };
            }
            "session_search" => self.session_search(arguments).await,
            "skills_list" => Ok(self.skills_list()),
            "skill_view" => self.skill_view(arguments),
            "terminal" if self.terminal.is_some() => self.terminal(arguments, session).await,
            _ => self.skill_call(name, arguments).await,
        };
        CallOutcome {
            result,
            memory: None,
        }
    }

    async fn skill_call(&self, name: &str, arguments: &str) -> Result<String, String> {
        let (skill_name, tool) = name
            .split_once(SEPARATOR)
            .ok_or_else(|| format!("there is no tool named {name:?}"))?;
        let skills = self.skills();
        let skill = skills
            .iter()
            .find(|s| s.name == skill_name)
            .ok_or_else(|| format!("there is no skill named {skill_name:?}; see skills_list"))?;
        let loaded = skill.loaded.as_ref().ok_or_else(|| {
            format!("skill {skill_name} has no tools (instructions only: use skill_view)")
        })?;
        loaded
            .call(tool, arguments)
            .await
            .map(|output| output.result)
            .map_err(|error| error.to_string())
    }

    fn memory(&self, arguments: &str) -> Result<(String, MemoryChange), String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            action: String,
            target: Target,
            #[serde(default)]
            content: Option<String>,
            #[serde(default)]
            old_text: Option<String>,
        }
        let args: Args = parse(arguments)?;
        let need = |value: Option<String>, field: &str| {
            value.ok_or_else(|| format!("`{field}` is required for action {:?}", args.action))
        };
        let (action, change) = match args.action.as_str() {
            "add" => (
                MemoryAction::Added,
                self.notes
                    .add(args.target, &need(args.content.clone(), "content")?),
            ),
            "replace" => (
                MemoryAction::Replaced,
                self.notes.replace(
                    args.target,
                    &need(args.old_text.clone(), "old_text")?,
                    &need(args.content.clone(), "content")?,
                ),
            ),
            "remove" => (
                MemoryAction::Removed,
                self.notes
                    .remove(args.target, &need(args.old_text.clone(), "old_text")?),
            ),
            other => {
                return Err(format!(
                    "unknown action {other:?}; expected add, replace or remove"
                ));
            }
        };
        let change = change.map_err(|e| e.to_string())?;
        Ok((
            format!("saved. {change}"),
            MemoryChange {
                action,
                target: change.target,
                entry: change.entry,
            },
        ))
    }

    async fn session_search(&self, arguments: &str) -> Result<String, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            query: String,
            #[serde(default)]
            limit: Option<usize>,
        }
        let args: Args = parse(arguments)?;
        let hits = self
            .store
            .search_async(&args.query, args.limit.unwrap_or(10).clamp(1, 50))
            .await
            .map_err(|e| format!("{e:#}"))?;
        if hits.is_empty() {
            return Ok(format!("no past message contains {:?}", args.query));
        }
        Ok(hits
            .iter()
            .map(|h| {
                format!(
                    "[{} {} {}] {}",
                    h.session_id, h.created_at, h.role, h.snippet
                )
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// `terminal`: the approvals decide (asking a person when they want
    /// one and someone can be asked), then the backend runs it.
    async fn terminal(&self, arguments: &str, session: Option<&str>) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Args {
            command: String,
            #[serde(default)]
            timeout_secs: Option<u64>,
        }
        let Some(terminal) = &self.terminal else {
            return Err("no native backend is configured".into());
        };
        let args: Args = parse(arguments)?;
        let note = match terminal
            .gate
            .clear(&args.command, "the agent's terminal", session)
            .await
        {
            crate::approval::pending::Clearance::Run { note } => note,
            crate::approval::pending::Clearance::Refused(why)
                if why.starts_with("needs approval") =>
            {
                return Err(format!(
                    "{why}. Do it another way, or ask the user to run it"
                ));
            }
            crate::approval::pending::Clearance::Refused(why) => return Err(why),
        };
        let timeout = args
            .timeout_secs
            .map(std::time::Duration::from_secs)
            .unwrap_or(terminal.max_timeout)
            .clamp(std::time::Duration::from_secs(1), terminal.max_timeout);
        let request = crate::backend::CommandRequest {
            program: "sh".into(),
            args: vec!["-c".into(), args.command.clone()],
            timeout,
            max_output_bytes: terminal.max_output_bytes,
            ..Default::default()
        };
        let output = terminal
            .backend
            .run(request)
            .await
            .map_err(|error| error.to_string())?;
        let mut text = note.map(|note| format!("{note}\n")).unwrap_or_default();
        text += &match (output.timed_out, output.code, output.signal) {
            (true, _, _) => format!("stopped after {} s (its time limit)\n", timeout.as_secs()),
            (false, Some(code), _) => format!("exit code {code}\n"),
            (false, None, Some(signal)) => format!("ended by signal {signal}\n"),
            (false, None, None) => "ended\n".to_owned(),
        };
        for (name, bytes, truncated) in [
            ("stdout", &output.stdout, output.stdout_truncated),
            ("stderr", &output.stderr, output.stderr_truncated),
        ] {
            if bytes.is_empty() {
                continue;
            }
            text.push_str(&format!("--- {name} ---\n"));
            text.push_str(&crate::untrusted_text::sanitize(
                &String::from_utf8_lossy(bytes),
                terminal.max_output_bytes,
                true,
            ));
            if truncated {
                text.push_str(&format!(
                    "\n[{name} truncated at {} bytes]",
                    terminal.max_output_bytes
                ));
            }
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
        Ok(text)
    }

    fn skills_list(&self) -> String {
        self.skills()
            .iter()
            .map(|skill| {
                let tools = skill
                    .loaded
                    .as_ref()
                    .map(|l| {
                        l.tools()
                            .iter()
                            .map(|t| format!("{}{SEPARATOR}{}", skill.name, t.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_else(|| "instructions only".into());
                format!("- {}: {} (tools: {tools})", skill.name, skill.description)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A skill's SKILL.md, followed by the list of its other files and
    /// where its scripts run; or, with `file`, one of those files.
    fn skill_view(&self, arguments: &str) -> Result<String, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Args {
            name: String,
            #[serde(default)]
            file: Option<String>,
        }
        let args: Args = parse(arguments)?;
        let skills = self.skills();
        let skill = skills
            .iter()
            .find(|s| s.name == args.name)
            .ok_or_else(|| format!("there is no skill named {:?}; see skills_list", args.name))?;
        if let Some(file) = &args.file {
            let files = skill.files.as_ref().ok_or_else(|| {
                format!(
                    "skill {} has no files to open: view it without `file`",
                    skill.name
                )
            })?;
            return files
                .open(file)
                .map_err(|error| format!("skill {}: {error}", skill.name));
        }
        let mut text = match &skill.instructions {
            // Written by the skill's author: no escape sequence reaches the
            // model (or a terminal showing the transcript).
            Some(text) => crate::untrusted_text::sanitize(
                text,
                crate::skill::contents::MAX_INSTRUCTIONS_BYTES as usize,
                true,
            ),
            None => format!("{} has no SKILL.md. {}", skill.name, skill.description),
        };
        if let Some(files) = &skill.files {
            self.describe_files(&mut text, &skill.name, files);
        }
        Ok(text)
    }

    /// The files of a skill besides SKILL.md, for the model to open, and
    /// where (whether) its scripts can run.
    fn describe_files(&self, text: &mut String, name: &str, files: &crate::skill::FolderIndex) {
        use std::fmt::Write;
        const MAX_LISTED: usize = 100;
        let others: Vec<_> = files
            .files()
            .iter()
            .filter(|file| file.path != std::path::Path::new(crate::skill::INSTRUCTIONS_FILE))
            .collect();
        if others.is_empty() {
            return;
        }
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let _ = writeln!(
            text,
            "\n---\nFiles of this skill (open one with skill_view {{\"name\": \"{name}\", \"file\": PATH}}):"
        );
        for file in others.iter().take(MAX_LISTED) {
            let _ = writeln!(
                text,
                "- {} ({})",
                crate::untrusted_text::log_line(&file.path.display().to_string()),
                size_text(file.size)
            );
        }
        if others.len() > MAX_LISTED {
            let _ = writeln!(text, "- ... and {} more", others.len() - MAX_LISTED);
        }
        let skills_path = self
            .terminal
            .as_ref()
            .map(|terminal| (terminal.backend.kind(), terminal.backend.skills_path()));
        match skills_path {
            Some((kind, Some(dir))) => {
                let access = if kind == crate::backend::Kind::Local {
                    "on this machine: never change it"
                } else {
                    "read-only"
                };
                let _ = writeln!(
                    text,
                    "In the terminal this skill's folder is {dir}/{name} ({access}): run its \
                     scripts from there, and write what they make to the workspace."
                );
            }
            _ if !files.has_dir("scripts") => {}
            Some((kind, None)) => {
                let _ = writeln!(
                    text,
                    "Its scripts cannot run here: the {kind} backend does not see the skill folders."
                );
            }
            None => {
                let _ = writeln!(
                    text,
                    "Its scripts cannot run here: no backend for native commands is configured \
                     (the operator sets [backend] kind = \"docker\", \"ssh\" or \"local\" in config.toml)."
                );
            }
        }
    }
}

/// `812 bytes`, `4.2 KiB`, `3.1 MiB`.
fn size_text(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} bytes"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

fn parse<T: serde::de::DeserializeOwned>(arguments: &str) -> Result<T, String> {
    let arguments = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    serde_json::from_str(arguments).map_err(|e| format!("invalid arguments: {e}"))
}

/// The definition of skill `skill`'s tool `tool` as sent to the model,
/// named `SKILL__TOOL`; `None` when that name is over the 64 characters
/// OpenAI-compatible APIs accept (such a tool is not offered).
pub fn skill_tool_definition(skill: &str, tool: &crate::sandbox::ToolSpec) -> Option<Value> {
    let text = skill_tool_definition_text(skill, tool)?;
    serde_json::from_str(text.get()).ok()
}

/// [`skill_tool_definition`] as JSON text, built without parsing the schema.
fn skill_tool_definition_text(
    skill: &str,
    tool: &crate::sandbox::ToolSpec,
) -> Option<Box<RawValue>> {
    #[derive(serde::Serialize)]
    struct Definition<'a> {
        r#type: &'static str,
        function: Function<'a>,
    }
    #[derive(serde::Serialize)]
    struct Function<'a> {
        name: &'a str,
        description: &'a str,
        parameters: &'a RawValue,
    }
    let name = format!("{skill}{SEPARATOR}{}", tool.name);
    if name.len() > 64 {
        return None;
    }
    let definition = Definition {
        r#type: "function",
        function: Function {
            name: &name,
            description: &tool.description,
            parameters: &tool.parameters,
        },
    };
    serde_json::value::to_raw_value(&definition).ok()
}

/// The definitions of the built-in tools and of every tool of one set of
/// skills, with the size of the skills' part: built once per set, as JSON
/// text, since the schemas are what most of a request's tools weigh.
pub struct Definitions {
    texts: Vec<Box<RawValue>>,
    /// The skill each definition belongs to; `None` for a built-in.
    owners: Vec<Option<String>>,
    /// Bytes of the skills' definitions as sent.
    skill_bytes: usize,
}

impl Definitions {
    fn of(skills: &[OfferedSkill], terminal: bool) -> Self {
        let mut texts: Vec<Box<RawValue>> = builtin_definitions(terminal)
            .iter()
            .filter_map(|definition| serde_json::value::to_raw_value(definition).ok())
            .collect();
        let mut owners = vec![None; texts.len()];
        let mut skill_bytes = 0;
        for skill in skills {
            let Some(component) = &skill.loaded else {
                continue;
            };
            for tool in component.tools() {
                if let Some(text) = skill_tool_definition_text(&skill.name, tool) {
                    skill_bytes += text.get().len();
                    texts.push(text);
                    owners.push(Some(skill.name.clone()));
                }
            }
        }
        Self {
            texts,
            owners,
            skill_bytes,
        }
    }
}

/// The tools offered in one request: all definitions of the set, or those
/// selected by disclosure. Serialises as the request's `tools` array without
/// copying a schema.
pub struct ToolDefinitions {
    all: Arc<Definitions>,
    selected: Option<Vec<usize>>,
}

impl ToolDefinitions {
    pub fn len(&self) -> usize {
        self.selected
            .as_ref()
            .map_or(self.all.texts.len(), Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn iter(&self) -> impl Iterator<Item = &RawValue> {
        let all = &self.all.texts;
        let chosen: Box<dyn Iterator<Item = &Box<RawValue>>> = match &self.selected {
            None => Box::new(all.iter()),
            Some(indices) => Box::new(indices.iter().filter_map(|&i| all.get(i))),
        };
        chosen.map(|text| &**text)
    }
}

impl serde::Serialize for ToolDefinitions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

fn builtin_definitions(terminal: bool) -> Vec<Value> {
    let function = |name: &str, description: &str, parameters: Value| json!({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}});
    let mut definitions = vec![
        function(
            "memory",
            "Save durable notes across sessions. target `memory` holds your own notes, `user` what you learn about the user. \
             action add (content), replace (old_text = a unique part of the entry, content), remove (old_text). \
             An entry is one short paragraph stating a fact; instructions are refused.",
            json!({"type": "object", "properties": {
                "action": {"type": "string", "enum": ["add", "replace", "remove"]},
                "target": {"type": "string", "enum": ["memory", "user"]},
                "content": {"type": "string"},
                "old_text": {"type": "string"}
            }, "required": ["action", "target"]}),
        ),
        function(
            "session_search",
            "Search the messages of past sessions for words; returns matching snippets with their session ids.",
            json!({"type": "object", "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50}
            }, "required": ["query"]}),
        ),
        function(
            "skills_list",
            "List the available skills with their tools.",
            json!({"type": "object", "properties": {}}),
        ),
        function(
            "skill_view",
            "Read a skill's instructions (SKILL.md) before using it; with `file`, one of the files it lists (references, examples, scripts).",
            json!({"type": "object", "properties": {
                "name": {"type": "string"},
                "file": {"type": "string", "description": "a path relative to the skill's folder"}
            }, "required": ["name"]}),
        ),
    ];
    if terminal {
        definitions.push(function(
            "terminal",
            "Run a shell command (sh -c) in the workspace on the configured backend; returns the exit code and bounded output. \
             Dangerous commands need a person's approval and some are never allowed; no background jobs.",
            json!({"type": "object", "properties": {
                "command": {"type": "string"},
                "timeout_secs": {"type": "integer", "minimum": 1}
            }, "required": ["command"]}),
        ));
    }
    definitions
}
