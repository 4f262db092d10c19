//! The sandbox: runs skill components under wasmtime with only what they were
//! granted.
//!
//! - One [`Sandbox`] (one engine, one linker) per process.
//! - [`Sandbox::load`] compiles (or loads from the cache) a skill's
//!   component, checks its WIT package version and imports, and pre-links it
//!   once into an `InstancePre`.
//! - [`LoadedSkill::call`] runs every tool call in a fresh `Store` with a
//!   fresh WASI context, so nothing leaks from one call to the next, under a
//!   memory limit, a wall-time limit (covering time blocked in host calls
//!   too) and an output limit.
//!
//! A trap, a limit or a panic in the guest becomes a [`ToolCallError`] naming
//! the skill, its version and the cause; the host and other skills go on.

mod cache;
mod capture;
mod engine;
mod guest_state;
pub mod guest_text;
mod host_api;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Engine, Store, Trap};

pub use cache::CacheOutcome;
use cache::ComponentCache;
pub use engine::{EPOCH_TICK, PoolSize};
use engine::{EpochTicker, new_engine};
use guest_state::{GuestState, MemoryLimitExceeded};
use host_api::{SkillPre, talaria::skill::types as wit};
pub use host_api::{WIT_PACKAGE, WIT_VERSION};

use crate::skill::{Capabilities, Skill};

/// Largest component file accepted; bundled skills are well under 1 MiB.
const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;

/// How the sandbox is set up. The defaults deny nothing extra and cache
/// nothing: name a cache directory to keep compiled components.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Where compiled components are kept (`$TALARIA_HOME/cache/components`).
    pub cache_dir: Option<PathBuf>,
    pub pool: PoolSize,
}

pub struct Sandbox {
    engine: Engine,
    linker: Linker<GuestState>,
    cache: Option<ComponentCache>,
    ticker: Arc<EpochTicker>,
}

/// A tool a skill offers, as the skill described it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// Why a skill could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("skill {skill}: {message}")]
pub struct LoadError {
    /// `name vX.Y.Z`
    pub skill: String,
    pub message: String,
}

/// Why a tool call produced no result.
#[derive(Debug, thiserror::Error)]
#[error("skill {skill}: tool `{tool}`: {kind}")]
pub struct ToolCallError {
    pub skill: String,
    pub tool: String,
    pub kind: ToolCallErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolCallErrorKind {
    /// The tool rejected its arguments.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool ran and reported a failure.
    #[error("failed: {0}")]
    Failed(String),
    /// The tool was refused something it needed.
    #[error("denied: {0}")]
    Denied(String),
    #[error("no such tool; this skill offers: {0}")]
    UnknownTool(String),
    #[error("timed out after {0} ms and was stopped")]
    Timeout(u64),
    #[error("stopped: {0}")]
    MemoryLimit(String),
    #[error(
        "result of {actual} bytes exceeds the skill's limit of {limit} bytes (limits.max_output_bytes)"
    )]
    OutputLimit { actual: usize, limit: u64 },
    #[error("crashed: {0}")]
    Crashed(String),
    /// The sandbox could not start the call (e.g. every instance slot busy).
    #[error("could not start: {0}")]
    Unavailable(String),
}

/// A successful tool call.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// What the tool returned, for the model.
    pub result: String,
    /// The guest's stdout, bounded by `limits.max_output_bytes`.
    pub stdout: Vec<u8>,
    /// Bytes of stdout dropped past the bound.
    pub stdout_dropped: u64,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> anyhow::Result<Self> {
        let engine = new_engine(config.pool)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        host_api::Skill::add_to_linker::<GuestState, wasmtime::component::HasSelf<GuestState>>(
            &mut linker,
            |state| state,
        )?;
        // The cache is an optimisation: an unusable one is reported, not fatal.
        let cache = config
            .cache_dir
            .and_then(|dir| match ComponentCache::open(&dir, &engine) {
                Ok(cache) => Some(cache),
                Err(error) => {
                    tracing::warn!("component cache disabled: {error:#}");
                    None
                }
            });
        let tick_engine = engine.clone();
        let ticker = Arc::new(EpochTicker::start(move || tick_engine.increment_epoch())?);
        Ok(Self {
            engine,
            linker,
            cache,
            ticker,
        })
    }

    /// Load `skill`'s component with `capabilities`, the effective set the
    /// caller decided the skill may use. Fails for an instruction-only skill.
    pub async fn load(
        &self,
        skill: &Skill,
        capabilities: Capabilities,
    ) -> Result<LoadedSkill, LoadError> {
        let label = skill.label();
        let error = |message: String| LoadError {
            skill: label.clone(),
            message,
        };
        if !skill.manifest.api.matches(&WIT_VERSION) {
            return Err(error(format!(
                "skill.toml asks for {WIT_PACKAGE} {} but this host implements {WIT_PACKAGE}@{WIT_VERSION}",
                skill.manifest.api
            )));
        }
        let path = skill
            .component_path()
            .ok_or_else(|| error("has no component (instruction-only skill)".into()))?;
        let (component, cache_outcome) =
            self.compile(&path).map_err(|e| error(format!("{e:#}")))?;
        check_wit_version(&self.engine, &component).map_err(error)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            error(format!(
                "component {} cannot be linked: {e:#}; the Talaria host provides WASI 0.2 and {WIT_PACKAGE}/host@{WIT_VERSION} only",
                path.display()
            ))
        })?;
        let pre = SkillPre::new(instance_pre).map_err(|e| {
            error(format!(
                "component {} does not export {WIT_PACKAGE}/tools@{WIT_VERSION}: {e:#}",
                path.display()
            ))
        })?;
        let mut loaded = LoadedSkill {
            label: Arc::from(label.as_str()),
            pre,
            capabilities,
            engine: self.engine.clone(),
            ticker: Arc::clone(&self.ticker),
            tools: Vec::new(),
            cache_outcome,
            env: Arc::new(|name: &str| std::env::var(name).ok()),
        };
        loaded.tools = loaded
            .list_tools()
            .await
            .map_err(|e| error(e.to_string()))?;
        Ok(loaded)
    }

    /// Compile the component at `path`, or fetch it from the cache, without
    /// linking or instantiating it. For benchmarks and health checks.
    pub fn prepare_component(&self, path: &Path) -> anyhow::Result<CacheOutcome> {
        self.compile(path).map(|(_, outcome)| outcome)
    }

    fn compile(&self, path: &Path) -> anyhow::Result<(Component, CacheOutcome)> {
        let cannot_read =
            |e: std::io::Error| anyhow::anyhow!("cannot read component {}: {e}", path.display());
        let size = std::fs::metadata(path).map_err(cannot_read)?.len();
        anyhow::ensure!(
            size <= MAX_COMPONENT_BYTES,
            "component {} is {size} bytes; the limit is {MAX_COMPONENT_BYTES}",
            path.display()
        );
        let wasm = std::fs::read(path).map_err(cannot_read)?;
        let invalid = |e: wasmtime::Error| {
            anyhow::anyhow!(
                "{} is not a valid WebAssembly component: {e:#}",
                path.display()
            )
        };
        match &self.cache {
            Some(cache) => cache
                .load_or_compile(&self.engine, &wasm, &blake3::hash(&wasm))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{} is not a valid WebAssembly component: {e:#}",
                        path.display()
                    )
                }),
            None => Component::new(&self.engine, &wasm)
                .map(|component| (component, CacheOutcome::Disabled))
                .map_err(invalid),
        }
    }
}

/// Refuse a component built against another version of the WIT package
/// with a message naming both versions, before the linker reports a less
/// helpful "missing import".
fn check_wit_version(engine: &Engine, component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .chain(ty.exports(engine))
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_owned());
    for name in names {
        let Some(rest) = name.strip_prefix(&format!("{WIT_PACKAGE}/")) else {
            continue;
        };
        let Some((_, version)) = rest.split_once('@') else {
            return Err(format!(
                "component uses {name} without a version; this host implements {WIT_PACKAGE}@{WIT_VERSION}"
            ));
        };
        let compatible = semver::Version::parse(version)
            .is_ok_and(|found| semver_compatible(&found, &WIT_VERSION));
        if !compatible {
            return Err(format!(
                "component was built against {WIT_PACKAGE}@{version} but this host implements {WIT_PACKAGE}@{WIT_VERSION}; rebuild the skill with a talaria-sdk for {WIT_VERSION}"
            ));
        }
    }
    Ok(())
}

/// The component model's rule: same major, or for 0.x the same minor.
fn semver_compatible(found: &semver::Version, host: &semver::Version) -> bool {
    if host.major != 0 {
        found.major == host.major && found.minor <= host.minor
    } else {
        found.major == 0 && found.minor == host.minor && found.patch <= host.patch
    }
}

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A skill ready to run: compiled, linked, its tools listed.
pub struct LoadedSkill {
    label: Arc<str>,
    pre: SkillPre<GuestState>,
    capabilities: Capabilities,
    engine: Engine,
    ticker: Arc<EpochTicker>,
    tools: Vec<ToolSpec>,
    cache_outcome: CacheOutcome,
    env: EnvLookup,
}

impl LoadedSkill {
    /// `name vX.Y.Z`
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn tools(&self) -> &[ToolSpec] {
        &self.tools
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache_outcome
    }

    /// Replace where allowlisted environment variables are read from (the
    /// process environment by default).
    pub fn with_env(
        mut self,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// Call `tool` with JSON `arguments` in a fresh instance. Must run inside
    /// a Tokio runtime with the time driver enabled (the wall-time limit uses
    /// it).
    pub async fn call(&self, tool: &str, arguments: &str) -> Result<ToolOutput, ToolCallError> {
        let error = |kind| ToolCallError {
            skill: self.label.to_string(),
            tool: guest_text::sanitize(tool, 128, false),
            kind,
        };
        if !self.tools.iter().any(|spec| spec.name == tool) {
            let known: Vec<&str> = self.tools.iter().map(|spec| spec.name.as_str()).collect();
            return Err(error(ToolCallErrorKind::UnknownTool(known.join(", "))));
        }
        let mut store = self
            .new_store()
            .map_err(|e| error(ToolCallErrorKind::Unavailable(format!("{e:#}"))))?;
        let pre = &self.pre;
        let outcome = self
            .run(&mut store, async |store: &mut Store<GuestState>| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance
                    .talaria_skill_tools()
                    .call_call(&mut *store, tool, arguments)
                    .await
            })
            .await;
        let (stdout, stdout_dropped) = store.data().stdout.contents();
        let (stderr, stderr_dropped) = store.data().stderr.contents();
        if !stderr.is_empty() {
            tracing::debug!(
                skill = %self.label,
                tool,
                stderr = %guest_text::log_line(&String::from_utf8_lossy(&stderr)),
                stderr_dropped,
                "skill wrote to stderr"
            );
        }
        if stdout_dropped > 0 {
            tracing::warn!(skill = %self.label, tool, stdout_dropped, "skill stdout exceeded its bound; the rest was dropped");
        }
        let result = match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(tool_error)) => {
                return Err(error(match tool_error {
                    wit::ToolError::InvalidArguments(m) => {
                        ToolCallErrorKind::InvalidArguments(guest_text::message(&m))
                    }
                    wit::ToolError::Failed(m) => ToolCallErrorKind::Failed(guest_text::message(&m)),
                    wit::ToolError::Denied(m) => ToolCallErrorKind::Denied(guest_text::message(&m)),
                }));
            }
            Err(kind) => {
                let kind = match kind {
                    ToolCallErrorKind::Crashed(cause) if !stderr.is_empty() => {
                        ToolCallErrorKind::Crashed(format!(
                            "{cause}; stderr: {}",
                            stderr_summary(&stderr)
                        ))
                    }
                    kind => kind,
                };
                // The caller reports the error; this is the operator's trace.
                tracing::debug!(skill = %self.label, tool, "{kind}");
                return Err(error(kind));
            }
        };
        let limit = self.capabilities.limits.max_output_bytes;
        if result.len() as u64 > limit {
            return Err(error(ToolCallErrorKind::OutputLimit {
                actual: result.len(),
                limit,
            }));
        }
        Ok(ToolOutput {
            // Already bounded by the limit above; strip what could drive a
            // terminal, keeping newlines and tabs.
            result: guest_text::sanitize(&result, usize::MAX, true),
            stdout,
            stdout_dropped,
        })
    }

    /// Instantiate once and keep the instance, for repeated calls where
    /// isolation between calls is not wanted (benchmarks, tests). Production
    /// paths use [`LoadedSkill::call`].
    pub async fn warm_instance(&self) -> anyhow::Result<WarmInstance> {
        let mut store = self.new_store()?;
        store.set_epoch_deadline(u64::MAX / 2);
        let skill = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(WarmInstance { store, skill })
    }

    fn new_store(&self) -> anyhow::Result<Store<GuestState>> {
        let state = GuestState::new(Arc::clone(&self.label), &self.capabilities, &*self.env)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        Ok(store)
    }

    async fn list_tools(&self) -> Result<Vec<ToolSpec>, ToolCallError> {
        let error = |kind| ToolCallError {
            skill: self.label.to_string(),
            tool: "list".into(),
            kind,
        };
        let mut store = self
            .new_store()
            .map_err(|e| error(ToolCallErrorKind::Unavailable(format!("{e:#}"))))?;
        let pre = &self.pre;
        let tools = self
            .run(&mut store, async |store: &mut Store<GuestState>| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance.talaria_skill_tools().call_list(&mut *store).await
            })
            .await
            .map_err(error)?;
        let mut specs: Vec<ToolSpec> = Vec::with_capacity(tools.len());
        for tool in tools {
            let name = guest_text::sanitize(&tool.name, 64, false);
            if name.is_empty()
                || name != tool.name
                || !tool
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(error(ToolCallErrorKind::Crashed(format!(
                    "tool name {name:?} is not allowed (expected letters, digits, `-`, `_`)"
                ))));
            }
            if specs.iter().any(|spec| spec.name == name) {
                return Err(error(ToolCallErrorKind::Crashed(format!(
                    "tool `{name}` is listed twice"
                ))));
            }
            let parameters = serde_json::from_str(&tool.parameters).map_err(|e| {
                error(ToolCallErrorKind::Crashed(format!(
                    "tool `{name}` has an invalid JSON Schema: {e}"
                )))
            })?;
            specs.push(ToolSpec {
                name,
                description: guest_text::message(&tool.description),
                parameters,
            });
        }
        Ok(specs)
    }

    /// Run `body` under the wall-time limit: the epoch deadline stops a guest
    /// spinning in its own code; the timeout stops one blocked in a host
    /// call (a sleep, a poll), which the epoch cannot interrupt.
    async fn run<R>(
        &self,
        store: &mut Store<GuestState>,
        body: impl AsyncFnOnce(&mut Store<GuestState>) -> wasmtime::Result<R>,
    ) -> Result<R, ToolCallErrorKind> {
        let timeout_ms = self.capabilities.limits.timeout_ms;
        let timeout = Duration::from_millis(timeout_ms);
        let _running = self.ticker.call_guard();
        store.set_epoch_deadline(EpochTicker::ticks_for(timeout));
        let outcome = tokio::time::timeout(timeout, body(&mut *store)).await;
        match outcome {
            Err(_elapsed) => Err(ToolCallErrorKind::Timeout(timeout_ms)),
            Ok(Ok(result)) => Ok(result),
            Ok(Err(trap)) => Err(classify_trap(
                &trap,
                store.data().limiter.exceeded(),
                timeout_ms,
            )),
        }
    }
}

fn classify_trap(
    error: &wasmtime::Error,
    memory_exceeded: bool,
    timeout_ms: u64,
) -> ToolCallErrorKind {
    if let Some(limit) = error.downcast_ref::<MemoryLimitExceeded>() {
        return ToolCallErrorKind::MemoryLimit(limit.to_string());
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => ToolCallErrorKind::Timeout(timeout_ms),
        Some(Trap::StackOverflow) => {
            ToolCallErrorKind::Crashed("stack overflow (recursion too deep)".into())
        }
        Some(_) if memory_exceeded => {
            ToolCallErrorKind::MemoryLimit("memory limit exceeded".into())
        }
        Some(trap) => ToolCallErrorKind::Crashed(trap.to_string()),
        None if memory_exceeded => ToolCallErrorKind::MemoryLimit("memory limit exceeded".into()),
        None => ToolCallErrorKind::Crashed(guest_text::message(&format!("{error:#}"))),
    }
}

/// The guest's stderr as one bounded message, without Rust's hint about
/// `RUST_BACKTRACE`, which means nothing to a model or an operator here.
fn stderr_summary(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE=1`"))
        .collect();
    guest_text::message(kept.join("\n").trim())
}

/// An instance kept across calls; see [`LoadedSkill::warm_instance`].
pub struct WarmInstance {
    store: Store<GuestState>,
    skill: host_api::Skill,
}

impl WarmInstance {
    pub async fn call(&mut self, tool: &str, arguments: &str) -> anyhow::Result<String> {
        let result = self
            .skill
            .talaria_skill_tools()
            .call_call(&mut self.store, tool, arguments)
            .await
            .map_err(anyhow::Error::from)?;
        result.map_err(|e| anyhow::anyhow!("{e:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_versions_follow_the_component_model_rule() {
        let host = semver::Version::new(0, 1, 0);
        let cases = [
            ("0.1.0", true),
            ("0.1.1", false),
            ("0.2.0", false),
            ("1.0.0", false),
            ("0.0.9", false),
        ];
        for (found, compatible) in cases {
            let found = semver::Version::parse(found).unwrap();
            assert_eq!(semver_compatible(&found, &host), compatible, "{found}");
        }
    }
}
