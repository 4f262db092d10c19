//! The quota of a skill's private data directory (`limits.data_mb`).
//!
//! WASI writes go straight to the host file system, so the sandbox cannot
//! refuse the one write that crosses the quota. It does the next best
//! thing: a call does not start while the directory is over its quota, and
//! while the guest runs its usage is measured every [`CHECK_EVERY`]; a guest
//! found over the quota is stopped. What one call can write past the quota
//! is therefore bounded by what it writes in that interval.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a running guest's data directory is measured.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Every entry costs at least this much, so a million empty files count.
const MIN_ENTRY_BYTES: u64 = 512;
/// Entries measured at most; a directory with more is over any quota.
const MAX_ENTRIES: u64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct DataQuota {
    pub dir: PathBuf,
    pub limit_bytes: u64,
    next_check: Instant,
}

/// The guest went over its quota while it ran.
#[derive(Debug, thiserror::Error)]
#[error("wrote past its data quota: {used_mb} MiB used of {limit_mb} MiB (limits.data_mb)")]
pub struct DataQuotaExceeded {
    pub used_mb: u64,
    pub limit_mb: u64,
}

impl DataQuota {
    pub fn new(dir: PathBuf, limit_mb: u32) -> Self {
        Self {
            dir,
            limit_bytes: u64::from(limit_mb) << 20,
            next_check: Instant::now() + CHECK_EVERY,
        }
    }

    /// The usage when it is over the quota, measured now.
    pub fn over(&self) -> Option<u64> {
        let used = usage(&self.dir);
        (used > self.limit_bytes).then_some(used)
    }

    /// Measure if [`CHECK_EVERY`] has passed since the last measurement.
    pub fn check_if_due(&mut self, now: Instant) -> Result<(), DataQuotaExceeded> {
        if now < self.next_check {
            return Ok(());
        }
        self.next_check = now + CHECK_EVERY;
        match self.over() {
            Some(used) => Err(DataQuotaExceeded {
                used_mb: used.div_ceil(1 << 20),
                limit_mb: self.limit_bytes >> 20,
            }),
            None => Ok(()),
        }
    }
}

/// Bytes a directory occupies on disk (allocated blocks, at least
/// [`MIN_ENTRY_BYTES`] per entry), without following symlinks. Entries that
/// vanish while being measured are skipped.
pub fn usage(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut entries = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in read.flatten() {
            entries += 1;
            if entries > MAX_ENTRIES {
                return u64::MAX;
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            total = total.saturating_add((metadata.blocks() * 512).max(MIN_ENTRY_BYTES));
            if metadata.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_blocks_and_entries() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(usage(dir.path()), 0);
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/empty"), "").unwrap();
        std::fs::write(dir.path().join("big"), vec![7u8; 1 << 20]).unwrap();
        let used = usage(dir.path());
        assert!(used >= (1 << 20) + 2 * MIN_ENTRY_BYTES, "{used}");

        let mut quota = DataQuota::new(dir.path().to_owned(), 1);
        assert!(quota.over().is_some(), "over 1 MiB");
        // Not measured again before the interval has passed.
        assert!(quota.check_if_due(Instant::now()).is_ok());
        let error = quota
            .check_if_due(Instant::now() + CHECK_EVERY * 2)
            .unwrap_err();
        assert_eq!(error.limit_mb, 1);
        assert!(error.used_mb >= 1);
    }
}
