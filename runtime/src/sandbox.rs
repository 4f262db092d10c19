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
pub mod http;
mod loaded;
mod mounts;
pub mod native;
pub mod policy;
mod traps;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{Component, ComponentExportIndex, Linker};
use wasmtime_wasi::FsPerms;

use bindings::{self as host_api, SkillPre};
pub use bindings::{WIT_PACKAGE, WIT_VERSION};
pub use cache::CacheOutcome;
use cache::ComponentCache;
pub use data_quota::usage as data_usage;
pub use engine::{EPOCH_TICK, PoolSize};
use engine::{EpochTicker, new_engine};
use guest_state::GuestState;
pub use loaded::{LoadedSkill, WarmInstance};
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
    cache: Option<Arc<ComponentCache>>,
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
    pub wasm: Arc<[u8]>,
    /// Where the bytes were read from, for messages.
    pub origin: &'a Path,
    /// The versions of the WIT package the component says it works with.
    pub api: &'a semver::VersionReq,
    /// For a `${skill_dir}` mount: the folder's tree hash and its files, as
    /// read with the component. The guest is shown a frozen copy of them.
    pub folder: Option<(&'a str, &'a [FolderFile])>,
}

/// A tool a skill offers, as the skill described it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments, as valid JSON text: kept as text
    /// because it is only ever sent on, and a start with many skills should
    /// not build (and drop) a tree per schema.
    pub parameters: Box<serde_json::value::RawValue>,
}

impl ToolSpec {
    /// The schema as a tree, for the CLI to describe it.
    pub fn parameters_value(&self) -> serde_json::Value {
        // `RawValue` holds valid JSON by construction.
        serde_json::from_str(self.parameters.get()).unwrap_or_default()
    }
}

impl PartialEq for ToolSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.description == other.description
            && self.parameters.get() == other.parameters.get()
    }
}

impl Eq for ToolSpec {}

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

impl Sandbox {
    pub fn new(config: SandboxConfig) -> anyhow::Result<Self> {
        let engine = new_engine(config.pool)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // Linked for every component: one without a network grant gets a
        // refusal naming it, not a link error (see `http`).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        host_api::Skill::add_to_linker::<GuestState, wasmtime::component::HasSelf<GuestState>>(
            &mut linker,
            |state| state,
        )?;
        // The cache is an optimisation: an unusable one is reported, not fatal.
        let cache = config
            .cache_dir
            .and_then(|dir| match ComponentCache::open(&dir, &engine) {
                Ok(cache) => Some(Arc::new(cache)),
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
        let (component, cache_outcome) =
            self.compile_off_thread(source.wasm).await.map_err(|e| {
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
        LoadedSkill::new(
            self,
            &label,
            pre,
            call_export,
            capabilities,
            mounts,
            cache_outcome,
        )
        .await
        .map_err(|e| error(e.to_string()))
    }

    /// The process's one engine, configured as every guest runs (pooling
    /// allocator, epoch interruption). For benchmarks that compare the
    /// sandbox's call path with bare wasmtime on the same engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile `wasm`, or fetch it from the cache, without linking or
    /// instantiating it. For benchmarks and health checks.
    pub fn prepare_component(&self, wasm: &[u8]) -> anyhow::Result<CacheOutcome> {
        self.compile(wasm).map(|(_, outcome)| outcome)
    }

    fn compile(&self, wasm: &[u8]) -> anyhow::Result<(Component, CacheOutcome)> {
        compile(&self.engine, self.cache.as_deref(), wasm)
    }

    /// [`Sandbox::compile`] on a blocking thread: compiling takes from tens
    /// of milliseconds to seconds of CPU, which must not stall the async
    /// workers, and several skills loading at once compile in parallel.
    async fn compile_off_thread(
        &self,
        wasm: Arc<[u8]>,
    ) -> anyhow::Result<(Component, CacheOutcome)> {
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        tokio::task::spawn_blocking(move || compile(&engine, cache.as_deref(), &wasm))
            .await
            .map_err(|e| anyhow::anyhow!("the compile task failed: {e}"))?
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

fn compile(
    engine: &Engine,
    cache: Option<&ComponentCache>,
    wasm: &[u8],
) -> anyhow::Result<(Component, CacheOutcome)> {
    match cache {
        // The cache key is derived from the same bytes that are compiled.
        Some(cache) => cache.load_or_compile(engine, wasm, &blake3::hash(wasm)),
        None => Component::new(engine, wasm)
            .map(|component| (component, CacheOutcome::Disabled))
            .map_err(anyhow::Error::from),
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
