//! The `files` skill: read-only access to the workspace the operator mounts
//! for it. The model names paths relative to the workspace (or starting with
//! `/workspace`); everything else lives in [`Workspace`], which takes its
//! root as a parameter so the logic runs natively in tests.
//!
//! Each tool has its module ([`list`], [`read`], [`glob`], [`search`]); they
//! share the workspace and its paths ([`workspace`]) and the directory walk
//! ([`walk`]).

mod glob;
mod list;
mod read;
mod search;
#[cfg(test)]
mod test_support;
mod walk;
mod workspace;

use std::path::Path;

use talaria_sdk::Toolset;

use crate::glob::GlobArgs;
use crate::list::ListArgs;
use crate::read::ReadArgs;
use crate::search::SearchArgs;
use crate::workspace::{GUEST_ROOT, Workspace};

/// How much of a file's start is checked for NUL bytes to call it binary,
/// as git and grep do.
const BINARY_SNIFF_BYTES: usize = 8 * 1024;

fn workspace() -> Workspace {
    Workspace::new(Path::new(GUEST_ROOT))
}

fn tools() -> Toolset {
    Toolset::new()
        .tool(
            "list",
            "List a workspace directory: each entry's path, type (file, dir, symlink) and file size, \
             optionally recursing `depth` levels. Start here to explore the workspace.",
            |args: ListArgs| workspace().list(args),
        )
        .tool(
            "read",
            "Read a UTF-8 text file from the workspace, whole or a range of lines (`start_line`, `end_line`), \
             with line numbers by default. Long output is cut with a note saying where to continue.",
            |args: ReadArgs| workspace().read(args),
        )
        .tool(
            "glob",
            "Find workspace paths matching a glob such as `src/**/*.rs` or `**/Cargo.toml`.",
            |args: GlobArgs| workspace().glob(args),
        )
        .tool(
            "search",
            "Search workspace text files for a regular expression, like grep -rn; returns `path:line:text` \
             for each matching line. Filter files with `glob` (e.g. `*.rs`) or restrict to `path`.",
            |args: SearchArgs| workspace().search(args),
        )
}

talaria_sdk::export_skill!(tools);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_schemas_describe_the_arguments() {
        let names: Vec<&str> = tools().descriptions().map(|(name, _, _)| name).collect();
        assert_eq!(names, ["list", "read", "glob", "search"]);
        let (_, _, schema) = tools().descriptions().nth(1).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["path"]));
        assert!(schema["properties"]["start_line"]["description"].is_string());
    }
}
