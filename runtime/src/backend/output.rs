//! What every backend does with a command's output: keep a bounded
//! prefix of each stream (the rest is read and dropped, so the command
//! never blocks on a full pipe), and, for commands started elsewhere (in a
//! container, over SSH), read the process group the wrapper announces on
//! its first line of stderr, so that a time limit or a dropped call can
//! stop the command with everything it started.

/// The wrapper that runs a command on a remote backend: it writes its
/// process id (which is also its process group and session: both Docker's
/// `exec` and sshd start each command as a session leader) to stderr, then
/// becomes the command. Arguments follow as `"$@"`, never through a shell
/// line, so nothing in them is interpreted.
pub(crate) const ANNOUNCE_GROUP: &str = "echo \"$$\" >&2 && exec \"$@\"";

/// Stops a process group announced by [`ANNOUNCE_GROUP`] (`$1`), or the
/// process alone where it leads no group. (`-9 -PGID`: dash, Debian's
/// `sh`, takes neither `--` nor `-s KILL` before a negative number.)
pub(crate) const KILL_GROUP: &str = "kill -9 \"-$1\" 2>/dev/null || kill -9 \"$1\"";

/// The first `limit` bytes of a stream, and whether more came.
#[derive(Debug, Default)]
pub(crate) struct Bounded {
    pub kept: Vec<u8>,
    pub truncated: bool,
    limit: usize,
}

impl Bounded {
    pub fn new(limit: usize) -> Self {
        Self {
            kept: Vec::new(),
            truncated: false,
            limit,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.kept.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// The stderr of a command started through [`ANNOUNCE_GROUP`]: its first
/// line is the process group, the rest is the command's own.
#[derive(Debug)]
pub(crate) struct AnnouncedStderr {
    /// The first line, until it is complete.
    pending: Option<Vec<u8>>,
    group: Option<u32>,
    pub stderr: Bounded,
}

impl AnnouncedStderr {
    pub fn new(limit: usize) -> Self {
        Self {
            pending: Some(Vec::new()),
            group: None,
            stderr: Bounded::new(limit),
        }
    }

    /// The announced process group, once its line has arrived.
    pub fn group(&self) -> Option<u32> {
        self.group
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let Some(pending) = self.pending.as_mut() else {
            self.stderr.push(bytes);
            return;
        };
        match bytes.iter().position(|&byte| byte == b'\n') {
            Some(end) => {
                pending.extend_from_slice(&bytes[..end]);
                self.group = std::str::from_utf8(pending)
                    .ok()
                    .and_then(|line| line.trim().parse().ok())
                    .filter(|&pid| pid > 1);
                if self.group.is_none() {
                    // Not the wrapper's line (a shell that failed before
                    // it): it belongs to the command's stderr.
                    let line = std::mem::take(pending);
                    self.stderr.push(&line);
                    self.stderr.push(b"\n");
                }
                self.pending = None;
                self.stderr.push(&bytes[end + 1..]);
            }
            // A line this long is no process id.
            None if pending.len() + bytes.len() > 32 => {
                let line = std::mem::take(pending);
                self.pending = None;
                self.stderr.push(&line);
                self.stderr.push(bytes);
            }
            None => pending.extend_from_slice(bytes),
        }
    }

    /// Whatever remains of an unfinished first line goes to stderr.
    pub fn finish(mut self) -> Bounded {
        if let Some(pending) = self.pending.take() {
            self.stderr.push(&pending);
        }
        self.stderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_stream_keeps_its_prefix_and_marks_the_rest() {
        let mut bounded = Bounded::new(5);
        bounded.push(b"abc");
        assert!(!bounded.truncated);
        bounded.push(b"defg");
        bounded.push(b"h");
        assert_eq!(bounded.kept, b"abcde");
        assert!(bounded.truncated);
    }

    #[test]
    fn the_announced_group_is_taken_from_the_first_line_in_any_chunking() {
        let text = b"4242\nwarning: x\nmore\n";
        for split in 0..text.len() {
            let mut stderr = AnnouncedStderr::new(1024);
            stderr.push(&text[..split]);
            stderr.push(&text[split..]);
            assert_eq!(stderr.group(), Some(4242), "split at {split}");
            assert_eq!(stderr.finish().kept, b"warning: x\nmore\n");
        }
    }

    #[test]
    fn a_first_line_that_is_no_process_id_stays_in_stderr() {
        for text in [
            &b"sh: cannot execute\n"[..],
            b"1\n",
            b"no newline at all",
            b"0123456789012345678901234567890123456789",
        ] {
            let mut stderr = AnnouncedStderr::new(1024);
            stderr.push(text);
            assert_eq!(stderr.group(), None);
            assert_eq!(stderr.finish().kept, text);
        }
    }
}
