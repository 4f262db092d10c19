//! PID 1: run one child, pass it the signals meant for the container, reap
//! every process that ends up orphaned, and exit with the child's status.
//!
//! As PID 1, a process gets no default action for signals: an unhandled
//! SIGTERM would be ignored and `docker stop` would wait out its grace time
//! and kill. So every asynchronous signal is blocked from the entrypoint's
//! first step ([`block_signals`]) and taken with `sigtimedwait`; one that
//! asks to stop before the child started ends the entrypoint at once; the child gets the mask cleared again before its exec
//! (std's spawn would keep it, and a child with SIGTERM blocked never
//! stops). A signal someone sent (`docker stop`, `kill`) goes to the child; a
//! signal from the terminal (Ctrl-C under `docker run -it`) already reached
//! the child, which is in the terminal's process group, so it is not sent
//! twice.
//!
//! Orphans (a double fork in a native command, an ssh master whose parent
//! left) are re-parented to PID 1, or to this process as child subreaper
//! when it is not PID 1 (`docker run --init`). `wait4(-1, WNOHANG)` after
//! every SIGCHLD reaps them, so no `<defunct>` entry piles up.
//!
//! When the child exits, so does this process, with the child's code (128 +
//! the signal when a signal ended it). It never starts the child again: a
//! crash loop is the restart policy's to slow down (Docker doubles its delay
//! from 100 ms), not a respawn storm here.

use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use super::command::Program;

/// Signals raised by a fault in this process: blocking them would hide a
/// crash.
const SYNCHRONOUS: &[libc::c_int] = &[
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// Exit code when the program does not exist, as shells use.
const EXIT_NOT_FOUND: u8 = 127;
/// Exit code when the program exists but cannot run.
const EXIT_CANNOT_RUN: u8 = 126;

/// The asynchronous signals, blocked from the entrypoint's first step (as
/// PID 1, a SIGTERM that came while they were not would be lost), taken
/// with `sigtimedwait` from then on.
pub struct Signals(libc::sigset_t);

/// Block every asynchronous signal in this thread, the process's only one.
pub fn block_signals() -> anyhow::Result<Signals> {
    // SAFETY: the set is initialised by sigfillset before any other use, and
    // the mask call reads it through a valid pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for &signal in SYNCHRONOUS {
            libc::sigdelset(&mut set, signal);
        }
        let result = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        anyhow::ensure!(
            result == 0,
            "cannot block signals: {}",
            io::Error::from_raw_os_error(result)
        );
        Ok(Signals(set))
    }
}

/// Run `program` to its end; returns the exit code to leave with.
pub fn run(program: &Program, signals: &Signals) -> anyhow::Result<u8> {
    let pid = rustix::process::getpid();
    if !pid.is_init() {
        // Not PID 1 (say, under `docker run --init`): orphans of the child
        // come here rather than to an init that may not reap.
        rustix::process::set_child_subreaper(Some(pid))?;
    }
    // Asked to stop before anything ran (`docker stop` during the root
    // phase): stop, as the child would have.
    while let Some(signal) = next_signal(signals, Wait::No)? {
        if signal.number != libc::SIGCHLD && signal.sent_by_a_process && stops(signal.number) {
            return Ok(u8::try_from(128 + signal.number).unwrap_or(1));
        }
    }
    let mut command = Command::new(&program.program);
    command
        .args(&program.args)
        .envs(program.env.iter().cloned());
    // SAFETY: only async-signal-safe calls between fork and exec: the
    // child starts with no signal blocked (std keeps the parent's mask).
    unsafe {
        command.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            match libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) {
                0 => Ok(()),
                error => Err(io::Error::from_raw_os_error(error)),
            }
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            eprintln!(
                "talaria container: cannot run `{}`: {error}",
                program.display()
            );
            return Ok(match error.kind() {
                io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                _ => EXIT_CANNOT_RUN,
            });
        }
    };
    let child_pid = libc::pid_t::try_from(child.id())?;
    // The status is taken by `wait4(-1)` below, never through `child`.
    drop(child);
    loop {
        if let Some(signal) = next_signal(signals, Wait::Second)?
            && signal.number != libc::SIGCHLD
            && signal.sent_by_a_process
            // `kill 0` in the child reaches this process too: it already
            // reached the child.
            && signal.sender != child_pid
        {
            // SAFETY: sending a signal to a pid; a gone child is ESRCH.
            unsafe {
                libc::kill(child_pid, signal.number);
                if stops(signal.number) {
                    // A stopped child acts on it only once continued.
                    libc::kill(child_pid, libc::SIGCONT);
                }
            }
        }
        if let Some(code) = reap(child_pid)? {
            return Ok(code);
        }
    }
}

/// Signals whose default action ends a process.
fn stops(signal: libc::c_int) -> bool {
    matches!(
        signal,
        libc::SIGTERM | libc::SIGINT | libc::SIGQUIT | libc::SIGHUP
    )
}

enum Wait {
    /// Only what is pending.
    No,
    /// Up to a second.
    Second,
}

struct Signal {
    number: libc::c_int,
    /// `kill`, `sigqueue` or `tgkill`, as opposed to the kernel (a
    /// terminal's Ctrl-C, a child's exit).
    sent_by_a_process: bool,
    /// The sender's pid as this process sees it (0 from outside the
    /// container's pid namespace).
    sender: libc::pid_t,
}

/// The next signal, or `None` after a second without one (then the caller
/// reaps anyway, in case a SIGCHLD was merged with another).
fn next_signal(signals: &Signals, wait: Wait) -> anyhow::Result<Option<Signal>> {
    let timeout = libc::timespec {
        tv_sec: match wait {
            Wait::No => 0,
            Wait::Second => 1,
        },
        tv_nsec: 0,
    };
    // SAFETY: `info` is written by the kernel; the set and `timeout` are
    // valid.
    let (number, info) = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        (libc::sigtimedwait(&signals.0, &mut info, &timeout), info)
    };
    if number < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(None),
            _ => Err(anyhow::anyhow!("cannot wait for signals: {error}")),
        };
    }
    Ok(Some(Signal {
        number,
        // SI_USER is 0, SI_QUEUE and SI_TKILL are negative; the kernel's
        // codes are positive.
        sent_by_a_process: info.si_code <= 0,
        // SAFETY: for a signal a process sent, the kernel filled in its pid.
        sender: if info.si_code <= 0 {
            unsafe { info.si_pid() }
        } else {
            0
        },
    }))
}

/// Reap every process that has ended; the child's exit code once it has.
fn reap(child_pid: i32) -> anyhow::Result<Option<u8>> {
    let mut child_code = None;
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                if pid.as_raw_nonzero().get() == child_pid {
                    child_code = Some(exit_code(status));
                }
            }
            Ok(None) | Err(rustix::io::Errno::CHILD) => return Ok(child_code),
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(anyhow::anyhow!("cannot reap child processes: {error}")),
        }
    }
}

fn exit_code(status: rustix::process::WaitStatus) -> u8 {
    if let Some(code) = status.exit_status() {
        u8::try_from(code & 0xff).unwrap_or(1)
    } else if let Some(signal) = status.terminating_signal() {
        u8::try_from((128 + signal) & 0xff).unwrap_or(1)
    } else {
        1
    }
}
