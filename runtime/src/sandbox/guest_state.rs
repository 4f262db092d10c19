//! What a `Store` holds for one tool call: the WASI context built from the
//! skill's capabilities, the resource limiter, the captured output, and the
//! implementation of the `talaria:skill/host` imports.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::v0_1::talaria::skill::{host, types};
use super::capture::BoundedCapture;
use super::data_quota::DataQuota;
use super::http::{NetworkSetup, OutgoingHttp};
use super::mounts::HeldMount;
use super::native::{NativeCommands, NativeRequest};
use super::policy::Capabilities;
use crate::untrusted_text as guest_text;

/// Most log lines a guest may write in one call; the rest are counted.
const MAX_LOG_LINES_PER_CALL: u32 = 1000;
/// Bytes of stderr kept per call (for panic messages and diagnostics).
const STDERR_CAPTURE_BYTES: usize = 16 * 1024;

pub struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    /// Judges and sends every outgoing HTTP request (see `http`).
    outgoing: OutgoingHttp,
    /// Redacts secrets from the guest's log lines.
    scanner: Arc<crate::leak_scan::LeakScanner>,
    table: ResourceTable,
    pub(super) limiter: MemoryBudget,
    skill: Arc<str>,
    log_lines: u32,
    pub(super) stdout: BoundedCapture,
    pub(super) stderr: BoundedCapture,
    /// When the call must stop, on the monotonic clock.
    pub(super) deadline: Instant,
    /// The skill's `${skill_data}` quota, checked while the guest runs.
    pub(super) data_quota: Option<DataQuota>,
    /// The skill's granted `exec` rules.
    exec_rules: Vec<super::policy::ExecRule>,
    /// Bytes kept of a native command's output.
    max_output_bytes: usize,
    /// Where allowed native commands go; `None`: no backend.
    native: Option<Arc<dyn NativeCommands>>,
}

/// What one call's state is built from.
pub struct CallSetup<'a> {
    pub skill: Arc<str>,
    pub capabilities: &'a Capabilities,
    /// The mounts held since load, in the order of `capabilities.mounts`.
    pub mounts: &'a [HeldMount],
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub deadline: Instant,
    pub data_quota: Option<DataQuota>,
    /// Most resources (files, directories, streams) open at once.
    pub max_open_handles: usize,
    /// Where allowed native commands go; `None`: none can run.
    pub native: Option<Arc<dyn NativeCommands>>,
    /// What `wasi:http` may reach, the secrets it adds, the leak scanner.
    pub network: NetworkSetup,
}

impl GuestState {
    /// Build the state for one call. The WASI context starts from nothing
    /// (`WasiCtxBuilder::new()`: no preopens, no env, no args, stdin closed)
    /// and gets exactly what the capabilities hold, through the mounts held
    /// since load.
    pub fn new(setup: CallSetup<'_>) -> anyhow::Result<Self> {
        let capabilities = setup.capabilities;
        let stdout = BoundedCapture::new(capabilities.limits.max_output_bytes as usize);
        let stderr = BoundedCapture::new(STDERR_CAPTURE_BYTES);
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        for mount in setup.mounts {
            mount.preopen(&mut builder)?;
        }
        for name in &capabilities.env {
            if let Some(value) = (setup.env)(name) {
                builder.env(name, value);
            }
        }
        // Every open file, directory and stream is an entry of this table
        // (and most hold a host file descriptor): a bound per call keeps one
        // skill from exhausting the process's descriptors for all others.
        let mut table = ResourceTable::new();
        table.set_max_capacity(setup.max_open_handles);
        let scanner = Arc::clone(&setup.network.scanner);
        let outgoing = OutgoingHttp::new(Arc::clone(&setup.skill), setup.network, setup.deadline);
        Ok(Self {
            wasi: builder.build(),
            http: WasiHttpCtx::new(),
            outgoing,
            scanner,
            table,
            limiter: MemoryBudget::new(capabilities.limits.memory_mb as usize * 1024 * 1024),
            skill: setup.skill,
            log_lines: 0,
            stdout,
            stderr,
            deadline: setup.deadline,
            data_quota: setup.data_quota,
            exec_rules: capabilities.exec.clone(),
            max_output_bytes: usize::try_from(capabilities.limits.max_output_bytes)
                .unwrap_or(usize::MAX),
            native: setup.native,
        })
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outgoing,
        }
    }
}

impl types::Host for GuestState {}

impl host::Host for GuestState {
    fn log(&mut self, level: host::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            if self.log_lines == MAX_LOG_LINES_PER_CALL + 1 {
                tracing::warn!(skill = %self.skill, "skill exceeded {MAX_LOG_LINES_PER_CALL} log lines in one call; dropping the rest");
            }
            return;
        }
        let message = guest_text::log_line(&message);
        // A guest that learned a secret does not get it into the log.
        let (message, _) = self.scanner.redact(&message);
        let skill = &*self.skill;
        match level {
            host::Level::Trace => tracing::trace!(target: "talaria::skill", skill, "{message}"),
            host::Level::Debug => tracing::debug!(target: "talaria::skill", skill, "{message}"),
            host::Level::Info => tracing::info!(target: "talaria::skill", skill, "{message}"),
            host::Level::Warn => tracing::warn!(target: "talaria::skill", skill, "{message}"),
            host::Level::Error => tracing::error!(target: "talaria::skill", skill, "{message}"),
        }
    }

    async fn exec(
        &mut self,
        program: String,
        args: Vec<String>,
        stdin: Option<Vec<u8>>,
    ) -> Result<types::ExecOutput, String> {
        let shown = || {
            let line = std::iter::once(&program)
                .chain(&args)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" ");
            guest_text::sanitize(&line, 256, false)
        };
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        if !self
            .exec_rules
            .iter()
            .any(|rule| rule.allows(&program, &arg_refs))
        {
            let granted = if self.exec_rules.is_empty() {
                "it is granted no exec rules".to_owned()
            } else {
                let rules: Vec<String> = self
                    .exec_rules
                    .iter()
                    .map(|rule| {
                        let words: Vec<&str> = std::iter::once(rule.program.as_str())
                            .chain(rule.args.iter().map(String::as_str))
                            .collect();
                        format!("`{}`", words.join(" "))
                    })
                    .collect();
                format!("its granted rules are {}", rules.join(", "))
            };
            tracing::warn!(skill = %self.skill, command = %shown(), "exec denied: no granted rule matches");
            return Err(format!(
                "denied: `{}` matches none of this skill's exec rules ({granted})",
                shown()
            ));
        }
        let Some(native) = self.native.clone() else {
            return Err(format!(
                "denied: no native backend is configured, so `{}` cannot run (the operator sets [backend] kind)",
                shown()
            ));
        };
        // The tool call's deadline covers the command: it gets what is left.
        let timeout = self.deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err("denied: the tool call's time is up".into());
        }
        let output = native
            .run(NativeRequest {
                skill: self.skill.to_string(),
                program,
                args,
                stdin,
                timeout,
                max_output_bytes: self.max_output_bytes,
            })
            .await?;
        Ok(types::ExecOutput {
            status: output.code.unwrap_or(-1),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

/// Limits memory across every linear memory and table of the component
/// combined, and the number of instances, memories and tables.
pub struct MemoryBudget {
    limit_bytes: usize,
    used_bytes: usize,
    exceeded: bool,
}

/// The error a guest gets (as a trap) when it grows past its memory limit.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit_mb} MiB exceeded (asked for {requested_mb} MiB in total)")]
pub struct MemoryLimitExceeded {
    pub limit_mb: usize,
    pub requested_mb: usize,
}

impl MemoryBudget {
    fn new(limit_bytes: usize) -> Self {
        Self {
            limit_bytes,
            used_bytes: 0,
            exceeded: false,
        }
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded
    }
}

const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let requested = self.used_bytes - current.min(self.used_bytes) + desired;
        if requested > self.limit_bytes {
            self.exceeded = true;
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit_mb: self.limit_bytes / (1024 * 1024),
                requested_mb: requested.div_ceil(1024 * 1024),
            }));
        }
        self.used_bytes = requested;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        32
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_all_memories_together() {
        let mb = 1024 * 1024;
        let mut budget = MemoryBudget::new(10 * mb);
        assert!(budget.memory_growing(0, 4 * mb, None).unwrap());
        assert!(budget.memory_growing(0, 4 * mb, None).unwrap());
        // 8 MiB used: growing one memory from 4 to 6 reaches the limit exactly;
        // growing the other from 4 to 5 would pass it.
        assert!(budget.memory_growing(4 * mb, 6 * mb, None).unwrap());
        let error = budget.memory_growing(4 * mb, 5 * mb, None).unwrap_err();
        assert!(error.downcast_ref::<MemoryLimitExceeded>().is_some());
        assert!(budget.exceeded());
    }
}
