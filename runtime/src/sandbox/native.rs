//! What a skill's `exec` reaches once its own rules allow the command: a
//! [`NativeCommands`] given by the layer that assembles Talaria (the
//! approvals, then the backend). The sandbox knows neither: it checks the
//! skill's granted `exec` rules, bounds the call by the tool call's
//! deadline and output limit, and hands the rest on.

use std::time::Duration;

/// A native command a skill's rules allowed.
#[derive(Debug, Clone)]
pub struct NativeRequest {
    /// `name vX.Y.Z` of the skill asking.
    pub skill: String,
    pub program: String,
    pub args: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    /// What is left of the tool call's time.
    pub timeout: Duration,
    /// Bytes kept of each of stdout and stderr.
    pub max_output_bytes: usize,
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeOutput {
    /// The exit code; `None` when a signal or the time limit ended it.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs the native commands of skills. Its error is the text the skill
/// gets (`denied: ...` when the command was not run).
#[async_trait::async_trait]
pub trait NativeCommands: Send + Sync {
    async fn run(&self, request: NativeRequest) -> Result<NativeOutput, String>;
}
