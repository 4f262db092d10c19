//! Standard output of the commands, and what happens when its reader goes
//! away.
//!
//! `talaria tool list | head -1` closes the pipe after one line. Rust
//! ignores SIGPIPE, so the next write fails with EPIPE; every command writes
//! through [`stdout`], which marks that failure, and `main` ends quietly
//! with 0 when it sees the mark, as ripgrep does. Resetting SIGPIPE to its
//! default instead would end the process with a signal (status 141 under
//! `set -o pipefail`), and anywhere: while it holds the home's lock, in the
//! middle of an atomic write, or when a pipe to a child process closes,
//! which has nothing to do with the terminal. Only a write to standard
//! output carries the mark, so a broken pipe elsewhere stays an error.

use std::io::{self, Write};

/// Standard output, locked, marking a closed pipe (see the module
/// documentation).
pub(crate) fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

pub(crate) struct Stdout(io::StdoutLock<'static>);

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes).map_err(mark)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark)
    }
}

/// The reader of standard output has gone away.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed by its reader")]
struct StdoutClosed;

fn mark(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        error
    }
}

/// Whether `error` is a write to standard output whose reader went away.
pub(crate) fn is_closed_stdout(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_stdout_is_marked() {
        let closed = anyhow::Error::from(mark(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(is_closed_stdout(&closed));
        assert!(is_closed_stdout(&closed.context("printing the tools")));
        // A broken pipe to a child process is an error like any other.
        let elsewhere = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_closed_stdout(&elsewhere));
        let other = anyhow::Error::from(mark(io::Error::from(io::ErrorKind::StorageFull)));
        assert!(!is_closed_stdout(&other));
    }
}
