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

/// How long a killed command's output may take to end before the backend
/// stops waiting for it (something outside its group may hold it open).
pub(crate) const AFTER_KILL: std::time::Duration = std::time::Duration::from_secs(5);

/// A piece of a remote command's output.
pub(crate) enum Chunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// What [`watch`] saw.
pub(crate) struct Watched {
    pub stdout: Bounded,
    pub stderr: Bounded,
    pub timed_out: bool,
    /// The process group the command announced, if it got that far.
    pub group: Option<u32>,
    /// The output broke off (not the command's end).
    pub error: Option<String>,
}

impl Watched {
    /// The command's output, as every backend returns it: a command
    /// stopped at its time limit has no exit code but the signal that
    /// ended it.
    pub fn into_output(
        self,
        code: Option<i32>,
        duration: std::time::Duration,
    ) -> super::CommandOutput {
        let timed_out = self.timed_out;
        super::CommandOutput {
            code: if timed_out { None } else { code },
            signal: timed_out.then_some(9),
            timed_out,
            stdout: self.stdout.kept,
            stdout_truncated: self.stdout.truncated,
            stderr: self.stderr.kept,
            stderr_truncated: self.stderr.truncated,
            duration,
        }
    }
}

/// Read a remote command's output to its end, bounded. At `deadline`, or
/// when `cancel` fires (its sender dropped: the caller gave up), `kill` is
/// called with the command's announced process group, as soon as it is
/// known; then the output gets [`AFTER_KILL`] to end. Meant to run on a
/// task of its own, so that a caller that gives up still has its command
/// stopped.
pub(crate) async fn watch<K, F>(
    mut chunks: impl futures_util::Stream<Item = Result<Chunk, String>> + Unpin,
    limit: usize,
    deadline: tokio::time::Instant,
    mut cancel: tokio::sync::oneshot::Receiver<()>,
    kill: K,
) -> Watched
where
    K: Fn(u32) -> F,
    F: std::future::Future<Output = ()>,
{
    use futures_util::StreamExt as _;
    let mut stdout = Bounded::new(limit);
    let mut stderr = AnnouncedStderr::new(limit);
    let (mut timed_out, mut cancelled, mut killed) = (false, false, false);
    let mut give_up: Option<tokio::time::Instant> = None;
    let mut error = None;
    loop {
        let stop_wanted = timed_out || cancelled;
        if stop_wanted
            && !killed
            && let Some(group) = stderr.group()
        {
            kill(group).await;
            killed = true;
        }
        let until = give_up.unwrap_or(deadline);
        tokio::select! {
            // A caller that gave up is seen before more output is read.
            biased;
            _ = &mut cancel, if !cancelled => {
                cancelled = true;
                give_up.get_or_insert_with(|| tokio::time::Instant::now() + AFTER_KILL);
            },
            chunk = chunks.next() => match chunk {
                Some(Ok(Chunk::Stdout(bytes))) => stdout.push(&bytes),
                Some(Ok(Chunk::Stderr(bytes))) => stderr.push(&bytes),
                Some(Err(why)) => {
                    error = Some(why);
                    break;
                }
                None => break,
            },
            () = tokio::time::sleep_until(until) => {
                if give_up.is_some() {
                    break;
                }
                timed_out = true;
                give_up = Some(tokio::time::Instant::now() + AFTER_KILL);
            },
        }
    }
    if (timed_out || cancelled)
        && !killed
        && let Some(group) = stderr.group()
    {
        kill(group).await;
    }
    Watched {
        stdout,
        group: stderr.group(),
        stderr: stderr.finish(),
        timed_out,
        error,
    }
}

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

    fn chunks(
        items: Vec<Chunk>,
        then_wait: bool,
    ) -> impl futures_util::Stream<Item = Result<Chunk, String>> + Unpin {
        use futures_util::StreamExt as _;
        let head = futures_util::stream::iter(items.into_iter().map(Ok));
        let tail = futures_util::stream::pending().take(usize::from(then_wait));
        Box::pin(head.chain(tail))
    }

    #[tokio::test]
    async fn a_dropped_caller_or_the_time_limit_kills_the_announced_group() {
        let killed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kill = |group: u32| {
            let killed = std::sync::Arc::clone(&killed);
            async move { killed.lock().unwrap().push(group) }
        };
        // The caller gives up before the group is known: it is killed once
        // it is announced.
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        drop(cancel);
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        let watched = watch(
            chunks(
                vec![
                    Chunk::Stderr(b"77\nsome".to_vec()),
                    Chunk::Stdout(b"out".to_vec()),
                ],
                false,
            ),
            1024,
            far,
            cancelled,
            kill,
        )
        .await;
        assert!(!watched.timed_out);
        assert_eq!(*killed.lock().unwrap(), [77]);
        assert_eq!(watched.stderr.kept, b"some");

        // The time limit passes with the command silent: killed, then the
        // wait for its output ends after AFTER_KILL at the latest.
        let (_keep, cancelled) = tokio::sync::oneshot::channel::<()>();
        let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
        let started = std::time::Instant::now();
        let watched = watch(
            chunks(vec![Chunk::Stderr(b"78\n".to_vec())], true),
            1024,
            soon,
            cancelled,
            kill,
        )
        .await;
        assert!(watched.timed_out);
        assert_eq!(*killed.lock().unwrap(), [77, 78]);
        assert!(started.elapsed() < AFTER_KILL + std::time::Duration::from_secs(30));
    }

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
