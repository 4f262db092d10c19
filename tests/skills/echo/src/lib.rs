//! The benchmark's trivial tool: the cost of a call is the sandbox's, not
//! the tool's.

use schemars::JsonSchema;
use serde::Deserialize;
use talaria_sdk::{ToolError, Toolset};

#[derive(Deserialize, JsonSchema)]
struct EchoArgs {
    text: String,
}

fn echo(args: EchoArgs) -> Result<String, ToolError> {
    Ok(args.text)
}

fn tools() -> Toolset {
    Toolset::new().tool("echo", "Return the text unchanged.", echo)
}

talaria_sdk::export_skill!(tools);
