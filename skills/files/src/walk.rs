//! The directory walk `list`, `glob` and `search` share: depth-first, in
//! name order, never following symbolic links, bounded in how many entries
//! it visits.

use std::fs;
use std::io;
use std::ops::ControlFlow;

use serde::Serialize;
use talaria_sdk::ToolError;

use crate::workspace::{Workspace, io_error, is_hidden, join_relative};

/// Every entry costs a host call; past this many a walk stops and says so,
/// which keeps a call on a huge tree inside the skill's time limit.
const MAX_WALK_ENTRIES: usize = 50_000;

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Kind {
    fn of(metadata: &fs::Metadata) -> Self {
        let file_type = metadata.file_type();
        if file_type.is_symlink() {
            Self::Symlink
        } else if file_type.is_dir() {
            Self::Dir
        } else if file_type.is_file() {
            Self::File
        } else {
            Self::Other
        }
    }
}

/// One entry met while walking a directory tree.
pub(crate) struct WalkEntry {
    /// Relative to the workspace root.
    pub(crate) relative: String,
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) size: u64,
}

/// Options of a directory walk.
pub(crate) struct Walk {
    /// 1 visits only the start directory's own entries.
    pub(crate) max_depth: usize,
    pub(crate) include_hidden: bool,
}

#[derive(Default, Debug)]
pub(crate) struct WalkSummary {
    /// Entries not visited because their names start with `.`.
    pub(crate) hidden_skipped: usize,
    /// Subdirectories that could not be read.
    pub(crate) unreadable: usize,
    /// The walk hit [`MAX_WALK_ENTRIES`] and stopped.
    pub(crate) exhausted: bool,
}

impl Workspace {
    /// Visit the tree under the directory `start` depth-first, entries of a
    /// directory in name order, each directory before its contents. Symbolic
    /// links are reported but never followed, so a link cycle cannot trap
    /// the walk. Unreadable subdirectories are counted and skipped; only an
    /// unreadable start is an error.
    pub(crate) fn walk(
        &self,
        start: &str,
        options: &Walk,
        visit: &mut dyn FnMut(&WalkEntry) -> ControlFlow<()>,
    ) -> Result<WalkSummary, ToolError> {
        let mut summary = WalkSummary::default();
        let mut visited = 0;
        let mut pending: Vec<(WalkEntry, usize)> = Vec::new();
        self.push_children(start, 1, options, &mut pending, &mut summary)
            .map_err(|error| io_error(start, error))?;
        while let Some((entry, depth)) = pending.pop() {
            if visited == MAX_WALK_ENTRIES {
                summary.exhausted = true;
                break;
            }
            visited += 1;
            if visit(&entry).is_break() {
                break;
            }
            if entry.kind == Kind::Dir
                && depth < options.max_depth
                && self
                    .push_children(
                        &entry.relative,
                        depth + 1,
                        options,
                        &mut pending,
                        &mut summary,
                    )
                    .is_err()
            {
                summary.unreadable += 1;
            }
        }
        Ok(summary)
    }

    /// Push the entries of `directory` onto the walk stack so that they pop
    /// in name order.
    fn push_children(
        &self,
        directory: &str,
        depth: usize,
        options: &Walk,
        pending: &mut Vec<(WalkEntry, usize)>,
        summary: &mut WalkSummary,
    ) -> io::Result<()> {
        let mut children = Vec::new();
        for dir_entry in fs::read_dir(self.absolute(directory))? {
            let dir_entry = dir_entry?;
            let name = dir_entry.file_name().to_string_lossy().into_owned();
            if !options.include_hidden && is_hidden(&name) {
                summary.hidden_skipped += 1;
                continue;
            }
            let Ok(metadata) = fs::symlink_metadata(dir_entry.path()) else {
                summary.unreadable += 1;
                continue;
            };
            children.push(WalkEntry {
                relative: join_relative(directory, &name),
                kind: Kind::of(&metadata),
                size: metadata.len(),
                name,
            });
        }
        children.sort_by(|a, b| b.name.cmp(&a.name));
        pending.extend(children.into_iter().map(|entry| (entry, depth)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{glob_args, list_args, sample};

    #[cfg(unix)]
    #[test]
    fn walks_do_not_follow_symlinks() {
        let tree = sample();
        std::os::unix::fs::symlink(&tree.root, tree.root.join("src/loop")).unwrap();
        let listing = tree.workspace().list(list_args(None, Some(16))).unwrap();
        let link = listing
            .entries
            .iter()
            .find(|entry| entry.path == "src/loop")
            .unwrap();
        assert_eq!(link.kind, Kind::Symlink);
        assert!(
            !listing
                .entries
                .iter()
                .any(|entry| entry.path.starts_with("src/loop/"))
        );

        let found = tree.workspace().glob(glob_args("**/*.rs")).unwrap();
        assert!(
            found
                .matches
                .iter()
                .all(|path| !path.starts_with("src/loop/")),
            "{:?}",
            found.matches
        );
    }
}
