//! The sandbox: runs skill components under wasmtime with only what they were
//! granted.
//!
//! - One [`Sandbox`] (one engine, one linker, one pool of instance slots)
//!   per process.
//! - [`Sandbox::load`] compiles (or loads from the cache) a skill's
//!   component from the very bytes its grant was checked against, checks
//!   its WIT package version and imports, pre-links it once into an
//!   `InstancePre`, and opens its mounts once (see [`mounts`]).
//! - [`LoadedSkill::call`] runs every tool call in a fresh `Store` with a
//!   fresh WASI context, so nothing leaks from one call to the next, under a
//!   memory limit, a wall-time limit on the monotonic clock (covering time
//!   blocked in host calls and time waiting for a free instance slot), a
//!   bound on open handles, the data-directory quota and an output limit
//!   checked before the result is copied out of the guest.
//!
//! A trap, a limit or a panic in the guest becomes a [`ToolCallError`] naming
//! the skill, its version and the cause; the host and other skills go on.

mod bindings;
mod bounded_text;
mod cache;
mod capture;
mod data_quota;
mod engine;
mod guest_state;
mod mounts;
pub mod policy;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{
    Component, ComponentExportIndex, ComponentType, Lift, Linker, ResourceTableError,
};
use wasmtime::{Engine, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::FsPerms;

use bindings::{self as host_api, SkillPre};
pub use bindings::{WIT_PACKAGE, WIT_VERSION};
use bounded_text::{BoundedText, with_output_limit};
pub use cache::CacheOutcome;
use cache::ComponentCache;
pub use data_quota::usage as data_usage;
use data_quota::{DataQuota, DataQuotaExceeded};
pub use engine::{EPOCH_TICK, PoolSize};
use engine::{EpochTicker, new_engine};
use guest_state::{CallSetup, GuestState, MemoryLimitExceeded};
use mounts::{FolderCopies, HeldMount};

use crate::untrusted_text as guest_text;
use policy::{Access, Capabilities, FolderFile, MountSource};

/// Files, directories and streams one call may hold open at once by
/// default (`sandbox.max_open_handles`).
pub const DEFAULT_MAX_OPEN_HANDLES: usize = 256;

/// How the sandbox is set up. The defaults cache nothing: name a cache
/// directory to keep compiled components.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where compiled components are kept (`$TALARIA_HOME/cache/components`).
    pub cache_dir: Option<PathBuf>,
    /// Where the frozen copies of skill folders mounted as `${skill_dir}`
    /// are kept (`$TALARIA_HOME/cache/skill-folders`); a private temporary
    /// directory, removed with the sandbox, when unset.
    pub folder_copies_dir: Option<PathBuf>,
    pub pool: PoolSize,
    /// Most files, directories and streams one call may hold open at once.
    pub max_open_handles: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            folder_copies_dir: None,
            pool: PoolSize::default(),
            max_open_handles: DEFAULT_MAX_OPEN_HANDLES,
        }
    }
}

pub struct Sandbox {
    engine: Engine,
    linker: Linker<GuestState>,
    cache: Option<ComponentCache>,
    ticker: Arc<EpochTicker>,
    slots: InstanceSlots,
    max_open_handles: usize,
    folder_copies: Arc<FolderCopies>,
}

/// The instance slots of the pooling allocator, as permits: a call waits
/// for one (within its time budget) instead of failing when all are busy.
#[derive(Clone)]
struct InstanceSlots {
    permits: Arc<tokio::sync::Semaphore>,
    count: u32,
}

/// A component to load, as its owner read it.
pub struct ComponentSource<'a> {
    /// `name vX.Y.Z`, the prefix of every message about it.
    pub label: &'a str,
    /// The bytes to compile: the very ones whose hash the owner checked.
    pub wasm: &'a [u8],
    /// Where the bytes were read from, for messages.
    pub origin: &'a Path,
    /// The versions of the WIT package the component says it works with.
    pub api: &'a semver::VersionReq,
    /// For a `${skill_dir}` mount: the folder's tree hash and its files, as
    /// read with the component. The guest is shown a frozen copy of them.
    pub folder: Option<(&'a str, &'a [FolderFile])>,
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
    /// Wall time ran out; `used_ms` is what the call actually took, waiting
    /// for an instance slot included.
    #[error(
        "timed out after {used_ms} ms (its limit is {limit_ms} ms, limits.timeout_ms) and was stopped"
    )]
    Timeout { limit_ms: u64, used_ms: u64 },
    #[error("stopped: {0}")]
    MemoryLimit(String),
    #[error(
        "result of {actual} bytes exceeds the skill's limit of {limit} bytes (limits.max_output_bytes)"
    )]
    OutputLimit { actual: usize, limit: u64 },
    #[error(
        "too many open files: the skill held more than {limit} files, directories and streams open \
         at once (sandbox.max_open_handles) and was stopped"
    )]
    TooManyOpenFiles { limit: usize },
    #[error(
        "its data directory holds {used_mb} MiB, over its quota of {limit_mb} MiB (limits.data_mb); \
         the skill was stopped and cannot run until files are removed from it"
    )]
    DataQuota { used_mb: u64, limit_mb: u64 },
    /// Every instance slot stayed busy until the call's time ran out: the
    /// host was busy, the skill never ran.
    #[error(
        "the host is busy: all {slots} sandbox instance slots stayed in use for {waited_ms} ms \
         (sandbox.max_instances); the tool did not run, try again"
    )]
    Busy { slots: u32, waited_ms: u64 },
    #[error("crashed: {0}")]
    Crashed(String),
    /// The sandbox could not start the call.
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

/// `tool-error` of the WIT contract, its text copied out of the guest only
/// within the output limit.
#[derive(ComponentType, Lift)]
#[component(variant)]
enum GuestToolError {
    #[component(name = "invalid-arguments")]
    InvalidArguments(BoundedText),
    #[component(name = "failed")]
    Failed(BoundedText),
    #[component(name = "denied")]
    Denied(BoundedText),
}

/// The signature of `tools.call`, with texts bounded as they are lifted.
type CallParams<'a> = (&'a str, &'a str);
type CallResults = (Result<BoundedText, GuestToolError>,);

/// What a call returned, read out of the guest within the limits.
enum GuestReply {
    Result(String),
    TooLarge(usize),
    ToolError(ToolCallErrorKind),
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
        let slots = config.pool.concurrent_instances;
        Ok(Self {
            engine,
            linker,
            cache,
            ticker,
            slots: InstanceSlots {
                permits: Arc::new(tokio::sync::Semaphore::new(slots as usize)),
                count: slots,
            },
            max_open_handles: config.max_open_handles,
            folder_copies: Arc::new(FolderCopies::new(config.folder_copies_dir)?),
        })
    }

    /// Load a component with `capabilities`, the effective set its owner
    /// decided it may use.
    ///
    /// The component compiled is `source.wasm`, never a second read of a
    /// file; mounts are opened here, once.
    pub async fn load(
        &self,
        source: ComponentSource<'_>,
        capabilities: Capabilities,
    ) -> Result<LoadedSkill, LoadError> {
        let label = source.label.to_owned();
        let error = |message: String| LoadError {
            skill: label.clone(),
            message,
        };
        if !bindings::ApiVersion::ALL
            .iter()
            .any(|api| source.api.matches(&api.version()))
        {
            return Err(error(format!(
                "skill.toml asks for {WIT_PACKAGE} {} but this host implements {}",
                source.api,
                bindings::implemented()
            )));
        }
        let path = source.origin;
        let (component, cache_outcome) = self.compile(source.wasm).map_err(|e| {
            error(format!(
                "{} is not a valid WebAssembly component: {e:#}",
                path.display()
            ))
        })?;
        let api = bindings::version_of(&component).map_err(error)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| error(describe_link_error(path, &e)))?;
        let pre = SkillPre::new(instance_pre).map_err(|e| {
            error(format!(
                "component {} does not export {WIT_PACKAGE}/tools@{WIT_VERSION}: {e:#}",
                path.display()
            ))
        })?;
        let call_export = call_export_index(&component, api).ok_or_else(|| {
            error(format!(
                "component {} does not export {WIT_PACKAGE}/tools@{}#call",
                path.display(),
                api.version()
            ))
        })?;
        let mounts = self
            .hold_mounts(source.folder, &capabilities)
            .map_err(|e| error(format!("{e:#}")))?;
        let data_quota = capabilities
            .mounts
            .iter()
            .find(|m| m.source == MountSource::SkillData && m.access == Access::ReadWrite)
            .map(|m| (m.host.clone(), capabilities.limits.data_mb));
        let mut loaded = LoadedSkill {
            label: Arc::from(label.as_str()),
            pre,
            call_export,
            capabilities,
            mounts,
            data_quota,
            engine: self.engine.clone(),
            ticker: Arc::clone(&self.ticker),
            slots: self.slots.clone(),
            max_open_handles: self.max_open_handles,
            tools: Vec::new(),
            cache_outcome,
            env: Arc::new(|name: &str| std::env::var(name).ok()),
            _folder_copies: Arc::clone(&self.folder_copies),
        };
        loaded.tools = loaded
            .list_tools()
            .await
            .map_err(|e| error(e.to_string()))?;
        Ok(loaded)
    }

    /// Compile `wasm`, or fetch it from the cache, without linking or
    /// instantiating it. For benchmarks and health checks.
    pub fn prepare_component(&self, wasm: &[u8]) -> anyhow::Result<CacheOutcome> {
        self.compile(wasm).map(|(_, outcome)| outcome)
    }

    fn compile(&self, wasm: &[u8]) -> anyhow::Result<(Component, CacheOutcome)> {
        match &self.cache {
            // The cache key is derived from the same bytes that are compiled.
            Some(cache) => cache.load_or_compile(&self.engine, wasm, &blake3::hash(wasm)),
            None => Component::new(&self.engine, wasm)
                .map(|component| (component, CacheOutcome::Disabled))
                .map_err(anyhow::Error::from),
        }
    }

    /// Open every granted mount once. `${skill_dir}` is the frozen copy of
    /// the files read (and hashed) with the component, not the live folder.
    fn hold_mounts(
        &self,
        folder: Option<(&str, &[FolderFile])>,
        capabilities: &Capabilities,
    ) -> anyhow::Result<Vec<HeldMount>> {
        capabilities
            .mounts
            .iter()
            .map(|mount| {
                let perms = match mount.access {
                    Access::ReadOnly => FsPerms::ReadOnly,
                    Access::ReadWrite => FsPerms::ReadWrite,
                };
                let host = match mount.source {
                    MountSource::SkillDir => {
                        let Some((hash, files)) = folder else {
                            anyhow::bail!(
                                "${{skill_dir}} is granted but the skill's folder was not read with it"
                            );
                        };
                        self.folder_copies.freeze(hash, files)?
                    }
                    MountSource::Workspace | MountSource::SkillData => mount.host.clone(),
                };
                HeldMount::open(&host, &mount.guest, perms)
            })
            .collect()
    }
}

/// Where `tools.call` is exported, looked up once per component.
fn call_export_index(
    component: &Component,
    api: bindings::ApiVersion,
) -> Option<ComponentExportIndex> {
    let interface = format!("{WIT_PACKAGE}/tools@{}", api.version());
    let tools = component.get_export_index(None, &interface)?;
    component.get_export_index(Some(&tools), "call")
}

/// A link error that says what is missing. wasmtime reports the import it
/// could not satisfy and, in nested causes, the export of that instance
/// that failed ("instance export `f` has the wrong type: function
/// implementation is missing"); put the two together in one sentence.
fn describe_link_error(path: &Path, error: &wasmtime::Error) -> String {
    let chain: Vec<String> = error.chain().map(|cause| cause.to_string()).collect();
    let quoted = |text: &str, prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let instance = chain
        .iter()
        .find_map(|cause| quoted(cause, "component imports instance `"));
    let function = chain
        .iter()
        .find_map(|cause| quoted(cause, "instance export `"));
    let missing = chain
        .iter()
        .any(|cause| cause.contains("implementation is missing"));
    let what = match (instance, function) {
        (Some(instance), Some(function)) if missing => format!(
            "it imports the function `{function}` of `{instance}`, which this host does not provide"
        ),
        (Some(instance), Some(function)) => format!(
            "it imports the function `{function}` of `{instance}` with another signature than this host's"
        ),
        (Some(instance), None) => {
            format!("it imports `{instance}`, which this host does not provide")
        }
        _ => chain.join(": "),
    };
    format!(
        "component {} cannot be linked: {}; the Talaria host provides WASI 0.2 and the host \
         interface (log, exec) of {} only",
        path.display(),
        guest_text::message(&what),
        bindings::implemented()
    )
}

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A skill ready to run: compiled, linked, its mounts held, its tools listed.
pub struct LoadedSkill {
    label: Arc<str>,
    pre: SkillPre<GuestState>,
    call_export: ComponentExportIndex,
    capabilities: Capabilities,
    mounts: Vec<HeldMount>,
    /// The read-write `${skill_data}` directory and its quota in MiB.
    data_quota: Option<(PathBuf, u32)>,
    engine: Engine,
    ticker: Arc<EpochTicker>,
    slots: InstanceSlots,
    max_open_handles: usize,
    tools: Vec<ToolSpec>,
    cache_outcome: CacheOutcome,
    env: EnvLookup,
    /// Keeps the frozen folder copies (when temporary) while this skill
    /// may mount one.
    _folder_copies: Arc<FolderCopies>,
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

    /// The host directories the guest is shown, by guest path (for
    /// `${skill_dir}`, the frozen copy).
    pub fn mounted_dirs(&self) -> Vec<(&str, &Path)> {
        self.mounts.iter().map(|m| (m.guest(), m.host())).collect()
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
        let started = Instant::now();
        let error = |kind| ToolCallError {
            skill: self.label.to_string(),
            tool: guest_text::sanitize(tool, 128, false),
            kind,
        };
        if !self.tools.iter().any(|spec| spec.name == tool) {
            let known: Vec<&str> = self.tools.iter().map(|spec| spec.name.as_str()).collect();
            return Err(error(ToolCallErrorKind::UnknownTool(known.join(", "))));
        }
        let deadline = started + Duration::from_millis(self.capabilities.limits.timeout_ms);
        let _slot = self.take_slot(started, deadline).await.map_err(error)?;
        let data_quota = self.data_quota().map_err(error)?;
        let mut store = self
            .new_store(deadline, data_quota)
            .map_err(|e| error(ToolCallErrorKind::Unavailable(format!("{e:#}"))))?;
        let (pre, call_export) = (&self.pre, &self.call_export);
        let max_output = self.capabilities.limits.max_output_bytes;
        let outcome = self
            .run(
                &mut store,
                started,
                async |store: &mut Store<GuestState>| {
                    let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
                    let call = instance
                        .get_typed_func::<CallParams<'_>, CallResults>(&mut *store, call_export)?;
                    let (returned,) = with_output_limit(
                        max_output,
                        call.call_async(&mut *store, (tool, arguments)),
                    )
                    .await?;
                    Ok(read_reply(returned))
                },
            )
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
            Ok(GuestReply::Result(result)) => result,
            Ok(GuestReply::TooLarge(actual)) => {
                return Err(error(ToolCallErrorKind::OutputLimit {
                    actual,
                    limit: max_output,
                }));
            }
            Ok(GuestReply::ToolError(kind)) => return Err(error(kind)),
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
        // Lifted within the limit; a guest using another string encoding
        // can still come out longer once transcoded to UTF-8.
        if result.len() as u64 > max_output {
            return Err(error(ToolCallErrorKind::OutputLimit {
                actual: result.len(),
                limit: max_output,
            }));
        }
        Ok(ToolOutput {
            // Strip what could drive a terminal, keeping newlines and tabs.
            result: guest_text::sanitize(&result, usize::MAX, true),
            stdout,
            stdout_dropped,
        })
    }

    /// Wait for a free instance slot, within the call's time budget.
    async fn take_slot(
        &self,
        started: Instant,
        deadline: Instant,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ToolCallErrorKind> {
        let permits = Arc::clone(&self.slots.permits);
        match tokio::time::timeout_at(deadline.into(), permits.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(ToolCallErrorKind::Unavailable(
                "the sandbox is shutting down".into(),
            )),
            Err(_elapsed) => Err(ToolCallErrorKind::Busy {
                slots: self.slots.count,
                waited_ms: started.elapsed().as_millis() as u64,
            }),
        }
    }

    /// The data quota to watch during a call, refusing the call outright
    /// while the directory is already over it.
    fn data_quota(&self) -> Result<Option<DataQuota>, ToolCallErrorKind> {
        let Some((dir, limit_mb)) = &self.data_quota else {
            return Ok(None);
        };
        let quota = DataQuota::new(dir.clone(), *limit_mb);
        if let Some(used) = quota.over() {
            return Err(ToolCallErrorKind::DataQuota {
                used_mb: used.div_ceil(1 << 20),
                limit_mb: u64::from(*limit_mb),
            });
        }
        Ok(Some(quota))
    }

    /// Instantiate once and keep the instance, for repeated calls where
    /// isolation between calls is not wanted (benchmarks, tests). Production
    /// paths use [`LoadedSkill::call`]. The instance holds a slot until
    /// dropped.
    pub async fn warm_instance(&self) -> anyhow::Result<WarmInstance> {
        let slot = Arc::clone(&self.slots.permits).acquire_owned().await?;
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let mut store = self.new_store(far, None)?;
        let skill = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(WarmInstance {
            store,
            skill,
            _slot: slot,
        })
    }

    fn new_store(
        &self,
        deadline: Instant,
        data_quota: Option<DataQuota>,
    ) -> anyhow::Result<Store<GuestState>> {
        let state = GuestState::new(CallSetup {
            skill: Arc::clone(&self.label),
            capabilities: &self.capabilities,
            mounts: &self.mounts,
            env: &*self.env,
            deadline,
            data_quota,
            max_open_handles: self.max_open_handles,
        })?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Every epoch tick while the guest runs: stop it at its deadline on
        // the monotonic clock (ticks stretch under load, the clock does not),
        // watch its data quota, and yield so that other tasks on this worker
        // (the other tool calls of a turn, the timeout) make progress.
        store.epoch_deadline_callback(|mut context| {
            let now = Instant::now();
            let state = context.data_mut();
            if now >= state.deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            if let Some(quota) = &mut state.data_quota {
                quota.check_if_due(now)?;
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);
        Ok(store)
    }

    async fn list_tools(&self) -> Result<Vec<ToolSpec>, ToolCallError> {
        let started = Instant::now();
        let error = |kind| ToolCallError {
            skill: self.label.to_string(),
            tool: "list".into(),
            kind,
        };
        let deadline = started + Duration::from_millis(self.capabilities.limits.timeout_ms);
        let _slot = self.take_slot(started, deadline).await.map_err(error)?;
        let mut store = self
            .new_store(deadline, None)
            .map_err(|e| error(ToolCallErrorKind::Unavailable(format!("{e:#}"))))?;
        let pre = &self.pre;
        let tools = self
            .run(
                &mut store,
                started,
                async |store: &mut Store<GuestState>| {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    instance.talaria_skill_tools().call_list(&mut *store).await
                },
            )
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

    /// Run `body` until the deadline the store holds: the epoch callback
    /// stops a guest spinning in its own code; the timeout stops one blocked
    /// in a host call (a sleep, a poll), which the epoch cannot interrupt.
    async fn run<R>(
        &self,
        store: &mut Store<GuestState>,
        started: Instant,
        body: impl AsyncFnOnce(&mut Store<GuestState>) -> wasmtime::Result<R>,
    ) -> Result<R, ToolCallErrorKind> {
        let _running = self.ticker.call_guard();
        let deadline = store.data().deadline;
        let outcome = tokio::time::timeout_at(deadline.into(), body(&mut *store)).await;
        let limit_ms = self.capabilities.limits.timeout_ms;
        let timeout = || ToolCallErrorKind::Timeout {
            limit_ms,
            used_ms: started.elapsed().as_millis() as u64,
        };
        match outcome {
            Err(_elapsed) => Err(timeout()),
            Ok(Ok(result)) => Ok(result),
            Ok(Err(trap)) => Err(classify_trap(
                &trap,
                store.data().limiter.exceeded(),
                self.max_open_handles,
            )
            .unwrap_or_else(timeout)),
        }
    }
}

/// What `tools.call` returned, its texts already bounded by the lift.
fn read_reply(returned: Result<BoundedText, GuestToolError>) -> GuestReply {
    // A message keeps its beginning whatever its length (bounded again by
    // `guest_text::message`).
    let message = |text: BoundedText| match text {
        BoundedText::Text(text) => guest_text::message(&text),
        BoundedText::TooLarge { prefix, .. } => {
            let mut kept = guest_text::message(&prefix);
            if !kept.ends_with("[…truncated]") {
                kept.push_str(" […truncated]");
            }
            kept
        }
    };
    match returned {
        Ok(BoundedText::Text(text)) => GuestReply::Result(text),
        Ok(BoundedText::TooLarge { length, .. }) => GuestReply::TooLarge(length),
        Err(GuestToolError::InvalidArguments(text)) => {
            GuestReply::ToolError(ToolCallErrorKind::InvalidArguments(message(text)))
        }
        Err(GuestToolError::Failed(text)) => {
            GuestReply::ToolError(ToolCallErrorKind::Failed(message(text)))
        }
        Err(GuestToolError::Denied(text)) => {
            GuestReply::ToolError(ToolCallErrorKind::Denied(message(text)))
        }
    }
}

/// What a trap means, in words for the model and the operator; `None` for
/// the deadline (the caller knows the time used).
fn classify_trap(
    error: &wasmtime::Error,
    memory_exceeded: bool,
    max_open_handles: usize,
) -> Option<ToolCallErrorKind> {
    if let Some(limit) = error.downcast_ref::<MemoryLimitExceeded>() {
        return Some(ToolCallErrorKind::MemoryLimit(limit.to_string()));
    }
    if let Some(quota) = error.downcast_ref::<DataQuotaExceeded>() {
        return Some(ToolCallErrorKind::DataQuota {
            used_mb: quota.used_mb,
            limit_mb: quota.limit_mb,
        });
    }
    if let Some(ResourceTableError::Full) = error.downcast_ref::<ResourceTableError>() {
        return Some(ToolCallErrorKind::TooManyOpenFiles {
            limit: max_open_handles,
        });
    }
    let kind = match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return None,
        Some(Trap::StackOverflow) => recursion_too_deep(),
        Some(Trap::MemoryOutOfBounds) if looks_like_recursion(error) => recursion_too_deep(),
        Some(_) if memory_exceeded => {
            ToolCallErrorKind::MemoryLimit("memory limit exceeded".into())
        }
        Some(trap) => ToolCallErrorKind::Crashed(trap.to_string()),
        None if memory_exceeded => ToolCallErrorKind::MemoryLimit("memory limit exceeded".into()),
        None => ToolCallErrorKind::Crashed(guest_text::message(&format!("{error:#}"))),
    };
    Some(kind)
}

fn recursion_too_deep() -> ToolCallErrorKind {
    ToolCallErrorKind::Crashed("stack overflow: recursion too deep".into())
}

/// Rust and C guests keep most of their stack in linear memory, below the
/// data; running out of it is an out-of-bounds access, not an engine stack
/// overflow. Deep recursion shows as one function repeated down the
/// backtrace.
fn looks_like_recursion(error: &wasmtime::Error) -> bool {
    let Some(backtrace) = error.downcast_ref::<WasmBacktrace>() else {
        return false;
    };
    let frames = backtrace.frames();
    if frames.len() < 8 {
        return false;
    }
    let mut counts = std::collections::HashMap::new();
    for frame in frames {
        *counts.entry(frame.func_index()).or_insert(0usize) += 1;
    }
    counts.values().any(|&count| count * 2 >= frames.len())
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
    _slot: tokio::sync::OwnedSemaphorePermit,
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
