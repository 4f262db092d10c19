use std::fmt;

/// Why a tool did not produce a result. The message is shown to the model,
/// so say what went wrong and, where possible, what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// The arguments do not fit the tool's schema.
    InvalidArguments(String),
    /// The tool ran and failed.
    Failed(String),
    /// The tool was refused something it needs: a path outside its mounts, a
    /// command it may not run.
    Denied(String),
}

impl ToolError {
    pub fn invalid_arguments(message: impl fmt::Display) -> Self {
        Self::InvalidArguments(message.to_string())
    }

    pub fn failed(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }

    pub fn denied(message: impl fmt::Display) -> Self {
        Self::Denied(message.to_string())
    }

    pub fn message(&self) -> &str {
        match self {
            Self::InvalidArguments(message) | Self::Failed(message) | Self::Denied(message) => {
                message
            }
        }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidArguments(message) => write!(f, "invalid arguments: {message}"),
            Self::Failed(message) => write!(f, "failed: {message}"),
            Self::Denied(message) => write!(f, "denied: {message}"),
        }
    }
}

impl std::error::Error for ToolError {}

/// I/O errors from WASI become `denied` when the sandbox refused the access
/// and `failed` otherwise, so the model can tell "not allowed" from "broken".
impl From<std::io::Error> for ToolError {
    fn from(error: std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::PermissionDenied => Self::Denied(error.to_string()),
            _ => Self::Failed(error.to_string()),
        }
    }
}
