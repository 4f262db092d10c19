//! What a trap, a limit or a failure in the guest means, in words for the
//! model and the operator.

use wasmtime::component::ResourceTableError;
use wasmtime::{Trap, WasmBacktrace};

use super::ToolCallErrorKind;
use super::data_quota::DataQuotaExceeded;
use super::guest_state::MemoryLimitExceeded;
use crate::untrusted_text as guest_text;

/// What a trap means, in words for the model and the operator; `None` for
/// the deadline (the caller knows the time used).
pub(super) fn classify_trap(
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
