//! A loaded skill and its call path: every tool call in a fresh `Store`
//! with a fresh WASI context, under the skill's limits, and the reply read
//! out of the guest within the output limit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{ComponentExportIndex, ComponentType, Lift};
use wasmtime::{Engine, Store, UpdateDeadline};

use super::bindings::{self as host_api, SkillPre};
use super::bounded_text::{BoundedText, with_output_limit};
use super::cache::CacheOutcome;
use super::data_quota::DataQuota;
use super::engine::EpochTicker;
use super::guest_state::{CallSetup, GuestState};
use super::http::{NetworkSetup, SecretLookup};
use super::mounts::{FolderCopies, HeldMount};
use super::policy::{Access, Capabilities, MountSource};
use super::traps::classify_trap;
use super::{InstanceSlots, Sandbox, ToolCallError, ToolCallErrorKind, ToolOutput, ToolSpec};
use crate::untrusted_text as guest_text;

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
    /// Where the skill's allowed native commands go.
    native: Option<Arc<dyn super::native::NativeCommands>>,
    /// What its outgoing HTTP requests may reach and carry.
    network: NetworkSetup,
    /// Keeps the frozen folder copies (when temporary) while this skill
    /// may mount one.
    _folder_copies: Arc<FolderCopies>,
}

impl LoadedSkill {
    /// A skill [`Sandbox::load`] compiled and linked, its mounts held; it is
    /// ready once it has listed its tools.
    pub(super) async fn new(
        sandbox: &Sandbox,
        label: &str,
        pre: SkillPre<GuestState>,
        call_export: ComponentExportIndex,
        capabilities: Capabilities,
        mounts: Vec<HeldMount>,
        cache_outcome: CacheOutcome,
    ) -> Result<Self, ToolCallError> {
        let data_quota = capabilities
            .mounts
            .iter()
            .find(|m| m.source == MountSource::SkillData && m.access == Access::ReadWrite)
            .map(|m| (m.host.clone(), capabilities.limits.data_mb));
        let capabilities_network = capabilities.network.clone();
        let mut loaded = Self {
            label: Arc::from(label),
            pre,
            call_export,
            capabilities,
            mounts,
            data_quota,
            engine: sandbox.engine.clone(),
            ticker: Arc::clone(&sandbox.ticker),
            slots: sandbox.slots.clone(),
            max_open_handles: sandbox.max_open_handles,
            tools: Vec::new(),
            cache_outcome,
            env: Arc::new(|name: &str| std::env::var(name).ok()),
            native: None,
            network: NetworkSetup {
                access: Arc::new(capabilities_network),
                ..NetworkSetup::default()
            },
            _folder_copies: Arc::clone(&sandbox.folder_copies),
        };
        loaded.tools = loaded.list_tools().await?;
        Ok(loaded)
    }

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

    /// Send the native commands its `exec` rules allow to `native` (the
    /// approvals and a backend); without it, every `exec` is denied.
    pub fn with_native(mut self, native: Arc<dyn super::native::NativeCommands>) -> Self {
        self.native = Some(native);
        self
    }

    /// Read the values of the secrets its grant routes to some hosts with
    /// `secrets` (at each request), scan what it sends with `scanner`, and
    /// treat `protected_ports` (the gateway's, the dashboard's) as internal.
    /// Without it no secret has a value, and only the credential shapes are
    /// scanned for.
    pub fn with_network(
        mut self,
        secrets: SecretLookup,
        scanner: Arc<crate::leak_scan::LeakScanner>,
        protected_ports: Arc<[u16]>,
    ) -> Self {
        self.network.secrets = secrets;
        self.network.scanner = scanner;
        self.network.protected_ports = protected_ports;
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
                stderr = %self.network.scanner.redact(&guest_text::log_line(&String::from_utf8_lossy(&stderr))).0,
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
            native: self.native.clone(),
            network: self.network.clone(),
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
            let parameters =
                serde_json::value::RawValue::from_string(tool.parameters).map_err(|e| {
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
