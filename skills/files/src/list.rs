//! The `list` tool: a directory's entries, optionally recursing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use talaria_sdk::{Capped, ToolError, bounded_count};

use crate::walk::{Kind, Walk};
use crate::workspace::{Workspace, display, relative_path};

const DEFAULT_LIST_DEPTH: usize = 1;
const MAX_LIST_DEPTH: usize = 16;
const DEFAULT_MAX_ENTRIES: usize = 500;
const MAX_ENTRIES_LIMIT: usize = 5000;

/// Arguments of `list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListArgs {
    /// Directory to list, relative to the workspace root (default: the root).
    #[serde(default)]
    pub(crate) path: Option<String>,
    /// How many levels to descend: 1 lists only the directory's own entries
    /// (the default), 2 adds their children, and so on (at most 16).
    #[serde(default)]
    pub(crate) depth: Option<usize>,
    /// Most entries to return (default 500, at most 5000).
    #[serde(default)]
    pub(crate) max_entries: Option<usize>,
    /// Include entries whose names start with `.` (and descend into them).
    #[serde(default)]
    pub(crate) include_hidden: bool,
}

#[derive(Serialize, Debug)]
pub(crate) struct Listing {
    pub(crate) path: String,
    pub(crate) entries: Vec<ListEntry>,
    /// True when the directory holds more entries than were returned.
    pub(crate) truncated: bool,
    /// Entries left out because their names start with `.`.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) hidden_skipped: usize,
    /// Subdirectories that could not be read.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) unreadable: usize,
}

#[derive(Serialize, Debug)]
pub(crate) struct ListEntry {
    pub(crate) path: String,
    #[serde(rename = "type")]
    pub(crate) kind: Kind,
    /// Bytes, for files only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) size: Option<u64>,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

impl Workspace {
    pub(crate) fn list(&self, args: ListArgs) -> Result<Listing, ToolError> {
        let relative = relative_path(args.path.as_deref().unwrap_or(""))?;
        let max_depth = bounded_count("depth", args.depth, DEFAULT_LIST_DEPTH, MAX_LIST_DEPTH)?;
        let max_entries = bounded_count(
            "max_entries",
            args.max_entries,
            DEFAULT_MAX_ENTRIES,
            MAX_ENTRIES_LIMIT,
        )?;
        if !self.metadata(&relative)?.is_dir() {
            return Err(ToolError::invalid_arguments(format!(
                "`{}` is a file, not a directory; use `read` to see its content",
                display(&relative)
            )));
        }
        let mut entries = Capped::new(max_entries);
        let options = Walk {
            max_depth,
            include_hidden: args.include_hidden,
        };
        let summary = self.walk(&relative, &options, &mut |entry| {
            entries.push(ListEntry {
                path: entry.relative.clone(),
                kind: entry.kind,
                size: (entry.kind == Kind::File).then_some(entry.size),
            })
        })?;
        let (entries, truncated) = entries.into_parts();
        Ok(Listing {
            path: display(&relative).to_owned(),
            entries,
            truncated: truncated || summary.exhausted,
            hidden_skipped: summary.hidden_skipped,
            unreadable: summary.unreadable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{list_args, sample};

    #[test]
    fn list_shows_types_and_sizes_in_name_order() {
        let tree = sample();
        let listing = tree.workspace().list(list_args(None, None)).unwrap();
        let entries: Vec<(&str, Kind, Option<u64>)> = listing
            .entries
            .iter()
            .map(|entry| (entry.path.as_str(), entry.kind, entry.size))
            .collect();
        assert_eq!(
            entries,
            vec![
                ("Cargo.toml", Kind::File, Some(24)),
                ("docs", Kind::Dir, None),
                ("empty", Kind::Dir, None),
                ("image.bin", Kind::File, Some(17)),
                ("latin1.txt", Kind::File, Some(9)),
                ("src", Kind::Dir, None),
            ]
        );
        assert!(!listing.truncated);
        assert_eq!(listing.hidden_skipped, 1);
        assert_eq!(listing.path, ".");
        let json = serde_json::to_string(&listing.entries[1]).unwrap();
        assert_eq!(json, r#"{"path":"docs","type":"dir"}"#);
    }

    #[test]
    fn list_recurses_depth_first() {
        let tree = sample();
        let listing = tree
            .workspace()
            .list(list_args(Some("/workspace/src"), Some(2)))
            .unwrap();
        let paths: Vec<&str> = listing
            .entries
            .iter()
            .map(|entry| entry.path.as_str())
            .collect();
        assert_eq!(paths, ["src/bin", "src/bin/main.rs", "src/lib.rs"]);

        let mut args = list_args(None, Some(16));
        args.include_hidden = true;
        let listing = tree.workspace().list(args).unwrap();
        assert!(
            listing
                .entries
                .iter()
                .any(|entry| entry.path == ".hidden/secret.rs")
        );
        assert_eq!(listing.hidden_skipped, 0);
    }

    #[test]
    fn list_truncates_at_the_entry_limit() {
        let tree = sample();
        let mut args = list_args(None, Some(3));
        args.max_entries = Some(2);
        let listing = tree.workspace().list(args).unwrap();
        assert_eq!(listing.entries.len(), 2);
        assert!(listing.truncated);
    }

    #[test]
    fn list_explains_files_and_missing_paths() {
        let tree = sample();
        let error = tree
            .workspace()
            .list(list_args(Some("src/lib.rs"), None))
            .unwrap_err();
        assert!(error.message().contains("use `read`"), "{error}");
        let error = tree
            .workspace()
            .list(list_args(Some("nope"), None))
            .unwrap_err();
        assert!(error.message().contains("does not exist"), "{error}");
        assert!(tree.workspace().list(list_args(None, Some(0))).is_err());
        assert!(tree.workspace().list(list_args(None, Some(17))).is_err());
    }
}
