//! What the agent is offered of a granted skill: its index line, its
//! instructions, and its component — loaded on the first call of one of its
//! tools, not at start.
//!
//! Starting an agent must not pay for every skill: reading, hashing,
//! compiling and instantiating twenty components before the model is asked
//! anything is most of the start-up time. A granted skill whose tool list is
//! known (recorded when it was last loaded, in `cache/component-tools/`,
//! keyed by the component's hash) is offered with that list and loaded when
//! a tool is called; the bytes are then read, checked against the hash the
//! grant was judged on, and compiled (see [`contents`](super::contents)).

use std::path::PathBuf;
use std::sync::Arc;

use super::Skill;
use super::registry::{EnvLookup, SharedSandbox};
use crate::home::{create_private_dir, write_atomically};
use crate::sandbox::policy::Capabilities;
use crate::sandbox::{LoadedSkill, ToolCallError, ToolCallErrorKind, ToolOutput, ToolSpec};

/// A granted skill the agent may offer to the model.
#[derive(Clone)]
pub struct OfferedSkill {
    pub name: String,
    /// For the skills index (see [`Skill::description`]).
    pub description: String,
    /// `SKILL.md`, as read (and hashed) with the skill.
    pub instructions: Option<String>,
    /// The other files the model may open (an Agent Skill's references,
    /// examples and scripts), as hashed with the skill.
    pub files: Option<Arc<super::FolderIndex>>,
    /// The component of a skill with tools.
    pub loaded: Option<Arc<SkillComponent>>,
}

/// A skill's component: its tools, and the loaded component once a tool
/// was called (or from the start, when it had to be loaded to learn them).
pub struct SkillComponent {
    label: String,
    tools: Vec<ToolSpec>,
    loaded: tokio::sync::OnceCell<Arc<LoadedSkill>>,
    loader: Option<Loader>,
}

/// What loading a component on first use needs.
pub(crate) struct Loader {
    pub skill: Skill,
    pub effective: Capabilities,
    pub sandbox: Arc<SharedSandbox>,
    pub env: EnvLookup,
    pub native: Option<Arc<dyn crate::sandbox::native::NativeCommands>>,
    pub network: Option<super::registry::NetworkHooks>,
}

impl SkillComponent {
    /// A component already loaded.
    pub fn loaded(loaded: LoadedSkill) -> Self {
        Self {
            label: loaded.label().to_owned(),
            tools: loaded.tools().to_vec(),
            loaded: tokio::sync::OnceCell::new_with(Some(Arc::new(loaded))),
            loader: None,
        }
    }

    /// A component offered with `tools`, loaded on the first call.
    pub(crate) fn lazy(tools: Vec<ToolSpec>, loader: Loader) -> Self {
        Self {
            label: loader.skill.label().to_owned(),
            tools,
            loaded: tokio::sync::OnceCell::new(),
            loader: Some(loader),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn tools(&self) -> &[ToolSpec] {
        &self.tools
    }

    /// Whether the component has been loaded (a tool was called, or its
    /// tools were not known without loading it).
    pub fn is_loaded(&self) -> bool {
        self.loaded.initialized()
    }

    /// Call `tool`, loading the component first if this is its first call.
    pub async fn call(&self, tool: &str, arguments: &str) -> Result<ToolOutput, ToolCallError> {
        let loaded = self
            .loaded
            .get_or_try_init(|| async {
                let Some(loader) = &self.loader else {
                    return Err("no component to load".to_owned());
                };
                load(loader)
                    .await
                    .map(Arc::new)
                    .map_err(|e| format!("{e:#}"))
            })
            .await
            .map_err(|why| ToolCallError {
                skill: self.label.clone(),
                tool: crate::untrusted_text::sanitize(tool, 128, false),
                kind: ToolCallErrorKind::Unavailable(why),
            })?;
        loaded.call(tool, arguments).await
    }
}

/// Load `loader.skill`'s component: prepare its mounts, read and check its
/// bytes, compile (or take from the cache) and instantiate it.
pub(crate) async fn load(loader: &Loader) -> anyhow::Result<LoadedSkill> {
    use anyhow::Context as _;
    let skill = &loader.skill;
    super::capabilities::prepare(&loader.effective)
        .with_context(|| format!("skill {}", skill.label()))?;
    let source = skill
        .component_source()
        .with_context(|| format!("skill {} has no component", skill.label()))?
        .with_context(|| format!("skill {}", skill.label()))?;
    let loaded = loader
        .sandbox
        .get()?
        .load(source, loader.effective.clone())
        .await?;
    let env = Arc::clone(&loader.env);
    let loaded = loaded.with_env(move |name| env(name));
    // The values of the secrets the host adds to requests: read like the
    // allowlisted variables (`.env` under the process environment), by the
    // host only.
    let secrets = Arc::clone(&loader.env);
    let (reserved, scanner, protected_ports): (Arc<[String]>, _, Arc<[u16]>) = match &loader.network
    {
        Some(network) => (
            Arc::clone(&network.reserved_secrets),
            (network.scanner)(),
            Arc::clone(&network.protected_ports),
        ),
        None => (
            Arc::from([]),
            Arc::new(crate::leak_scan::LeakScanner::default()),
            Arc::from([]),
        ),
    };
    let loaded = loaded.with_network(
        Arc::new(move |name| {
            if reserved.iter().any(|r| r == name) {
                return None;
            }
            secrets(name)
        }),
        scanner,
        protected_ports,
    );
    Ok(match &loader.native {
        Some(native) => loaded.with_native(Arc::clone(native)),
        None => loaded,
    })
}

/// The tool lists of components, by component hash
/// (`cache/component-tools/HEX.json`). Only what is offered to the model
/// comes from here; a call is always answered by the component itself.
#[derive(Debug, Clone)]
pub struct ToolCache {
    dir: PathBuf,
}

impl ToolCache {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn get(&self, component_hash: &str) -> Option<Vec<ToolSpec>> {
        let text = std::fs::read_to_string(self.entry(component_hash)?).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Remember `tools`; a cache that cannot be written is only slower.
    pub fn put(&self, component_hash: &str, tools: &[ToolSpec]) {
        let Some(path) = self.entry(component_hash) else {
            return;
        };
        let written = serde_json::to_vec(tools)
            .map_err(anyhow::Error::from)
            .and_then(|json| {
                create_private_dir(&self.dir)?;
                write_atomically(&path, &json, 0o600)
            });
        if let Err(error) = written {
            tracing::debug!("cannot remember a component's tools: {error:#}");
        }
    }

    fn entry(&self, component_hash: &str) -> Option<PathBuf> {
        let hex = component_hash.strip_prefix("blake3:")?;
        hex.chars()
            .all(|c| c.is_ascii_hexdigit())
            .then(|| self.dir.join(format!("{hex}.json")))
    }
}
