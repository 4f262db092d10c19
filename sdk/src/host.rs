//! What the host offers a skill besides WASI: the operator's log and native
//! commands run through the configured backend.

use crate::bindings::talaria::skill::host as wit;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Output of a native command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status; -1 when the command was killed by a signal.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Write a line to the operator's log. The host bounds its length and strips
/// control characters, so it is safe to log untrusted text.
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => wit::Level::Trace,
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
        Level::Error => wit::Level::Error,
    };
    wit::log(level, message);
}

/// Run a native command through the host's backend, if the operator granted
/// it to this skill. The error text explains a refusal (no backend, rule not
/// granted, approval denied) and can be handed to the model as is.
pub fn exec(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<ExecOutput, String> {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    let output = wit::exec(program, &args, stdin)?;
    Ok(ExecOutput {
        status: output.status,
        stdout: output.stdout,
        stderr: output.stderr,
    })
}
