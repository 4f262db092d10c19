//! The one wasmtime `Engine` of a process and the epoch ticker that drives
//! the wall-time check of running guests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::policy::MAX_MEMORY_MB;

/// Wall-time granularity of the epoch deadline: a spinning guest is stopped
/// at most one tick after its timeout.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Bytes of each memory and table slot kept resident between instances.
const KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;

/// Sizing of the pooling allocator: how many instances may run at once
/// across all skills.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    pub concurrent_instances: u32,
}

impl Default for PoolSize {
    fn default() -> Self {
        Self {
            concurrent_instances: 64,
        }
    }
}

pub fn new_engine(pool: PoolSize) -> anyhow::Result<Engine> {
    let mut pooling = PoolingAllocationConfig::new();
    let instances = pool.concurrent_instances;
    pooling
        .total_component_instances(instances)
        // A Rust component holds a handful of core instances (the program,
        // WASI adapter shims) with one memory and a few tables.
        .total_core_instances(instances * 16)
        .total_memories(instances * 2)
        .total_tables(instances * 16)
        .total_stacks(instances)
        .max_memory_size(MAX_MEMORY_MB as usize * 1024 * 1024)
        // Reset freed slots in place instead of unmapping them, so the next
        // fresh instance does not fault every page in again; with
        // PAGEMAP_SCAN (Linux 6.7+) only the pages the guest dirtied are
        // reset.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        // Deep recursion traps cleanly instead of touching the host stack.
        .max_wasm_stack(1024 * 1024)
        .async_stack_size(2 * 1024 * 1024)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&config).map_err(anyhow::Error::from)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while at least one guest
/// call is running, and sleeps otherwise, so an idle host does not wake up
/// 200 times a second.
pub struct EpochTicker {
    shared: Arc<TickerShared>,
    thread: Option<JoinHandle<()>>,
}

struct TickerShared {
    active_calls: AtomicUsize,
    stop: AtomicBool,
}

impl EpochTicker {
    /// Start the ticker thread; `tick` is `Engine::increment_epoch` in
    /// production.
    pub fn start(tick: impl Fn() + Send + 'static) -> anyhow::Result<Self> {
        let shared = Arc::new(TickerShared {
            active_calls: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let ticker_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("talaria-epoch".into())
            .spawn(move || {
                while !ticker_shared.stop.load(Ordering::Acquire) {
                    if ticker_shared.active_calls.load(Ordering::Acquire) == 0 {
                        thread::park();
                        continue;
                    }
                    thread::sleep(EPOCH_TICK);
                    tick();
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Mark a guest call as running until the guard is dropped.
    pub fn call_guard(&self) -> CallGuard<'_> {
        if self.shared.active_calls.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(thread) = &self.thread
        {
            thread.thread().unpark();
        }
        CallGuard { ticker: self }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

pub struct CallGuard<'a> {
    ticker: &'a EpochTicker,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.ticker
            .shared
            .active_calls
            .fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_builds_with_the_pooling_allocator() {
        new_engine(PoolSize {
            concurrent_instances: 2,
        })
        .unwrap();
    }

    #[test]
    fn ticker_advances_only_while_calls_run_and_stops_with_its_owner() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ticks);
        let ticker = EpochTicker::start(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        thread::sleep(EPOCH_TICK * 4);
        assert_eq!(
            ticks.load(Ordering::SeqCst),
            0,
            "an idle ticker must not tick"
        );
        {
            let _guard = ticker.call_guard();
            while ticks.load(Ordering::SeqCst) < 3 {
                thread::sleep(EPOCH_TICK);
            }
        }
        drop(ticker);
        let stopped = ticks.load(Ordering::SeqCst);
        thread::sleep(EPOCH_TICK * 4);
        assert_eq!(
            ticks.load(Ordering::SeqCst),
            stopped,
            "a dropped ticker must stop"
        );
    }
}
