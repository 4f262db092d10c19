//! The `search` tool: lines matching a regular expression in the
//! workspace's text files, like `grep -rn`.

use std::fs::File;
use std::io::Read;
use std::ops::ControlFlow;

use globset::{GlobBuilder, GlobMatcher};
use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::Deserialize;
use talaria_sdk::{ToolError, bounded_count, clip};

use crate::BINARY_SNIFF_BYTES;
use crate::walk::{Kind, Walk, WalkEntry, WalkSummary};
use crate::workspace::{Workspace, relative_path};

const DEFAULT_MAX_MATCHES: usize = 100;
const MAX_MATCHES_LIMIT: usize = 1000;
/// Files larger than this are skipped by `search`: they are rarely source
/// and would eat the time budget.
const MAX_SEARCH_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Total bytes `search` reads in one call before it stops with a note.
const MAX_SEARCH_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// Matching lines longer than this are cut in `search` results.
const MAX_MATCH_LINE_BYTES: usize = 300;
const REGEX_SIZE_LIMIT: usize = 8 * 1024 * 1024;

/// Arguments of `search`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchArgs {
    /// Regular expression (Rust `regex` syntax), matched against each line.
    pub(crate) pattern: String,
    /// File or directory to search, relative to the workspace root (default:
    /// the whole workspace).
    #[serde(default)]
    pub(crate) path: Option<String>,
    /// Only search files matching this glob: without `/` it matches file
    /// names (`*.rs`), with `/` paths from the workspace root (`src/**/*.rs`).
    #[serde(default)]
    pub(crate) glob: Option<String>,
    /// Ignore case.
    #[serde(default)]
    pub(crate) case_insensitive: bool,
    /// Most matching lines to return (default 100, at most 1000).
    #[serde(default)]
    pub(crate) max_matches: Option<usize>,
    /// Also search files and directories whose names start with `.`.
    #[serde(default)]
    pub(crate) include_hidden: bool,
}

/// Which files a search looks at.
enum FileFilter {
    All,
    Name(GlobMatcher),
    Path(GlobMatcher),
}

impl FileFilter {
    fn new(glob: Option<&str>) -> Result<Self, ToolError> {
        let Some(glob) = glob else {
            return Ok(Self::All);
        };
        let build = |pattern: &str| {
            GlobBuilder::new(pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map(|glob| glob.compile_matcher())
                .map_err(|error| {
                    ToolError::invalid_arguments(format!(
                        "invalid `glob`: {error}; examples: `*.rs`, `src/**/*.toml`"
                    ))
                })
        };
        if glob.contains('/') {
            Ok(Self::Path(build(&relative_path(glob)?)?))
        } else {
            Ok(Self::Name(build(glob)?))
        }
    }

    fn accepts(&self, entry: &WalkEntry) -> bool {
        match self {
            Self::All => true,
            Self::Name(matcher) => matcher.is_match(&entry.name),
            Self::Path(matcher) => matcher.is_match(&entry.relative),
        }
    }
}

#[derive(Default)]
struct SearchReport {
    lines: Vec<String>,
    files_searched: usize,
    files_matched: usize,
    skipped_binary: usize,
    skipped_large: usize,
    unreadable: usize,
    hit_match_limit: bool,
    hit_byte_limit: bool,
    walk: WalkSummary,
}

impl Workspace {
    pub(crate) fn search(&self, args: SearchArgs) -> Result<String, ToolError> {
        let max_matches = bounded_count(
            "max_matches",
            args.max_matches,
            DEFAULT_MAX_MATCHES,
            MAX_MATCHES_LIMIT,
        )?;
        let regex = build_regex(&args.pattern, args.case_insensitive)?;
        let filter = FileFilter::new(args.glob.as_deref())?;
        let relative = relative_path(args.path.as_deref().unwrap_or(""))?;
        let metadata = self.metadata(&relative)?;
        let mut report = SearchReport::default();
        let mut bytes_read = 0;
        if metadata.is_file() {
            // A file named explicitly is searched whatever the glob says.
            let name = relative.rsplit('/').next().unwrap_or_default().to_owned();
            let entry = WalkEntry {
                relative: relative.clone(),
                name,
                kind: Kind::File,
                size: metadata.len(),
            };
            // Whether to go on matters only to a walk.
            let _ = self.search_file(&entry, &regex, max_matches, &mut report, &mut bytes_read);
        } else {
            let options = Walk {
                max_depth: usize::MAX,
                include_hidden: args.include_hidden,
            };
            report.walk = self.walk(&relative, &options, &mut |entry| {
                if entry.kind != Kind::File || !filter.accepts(entry) {
                    return ControlFlow::Continue(());
                }
                self.search_file(entry, &regex, max_matches, &mut report, &mut bytes_read)
            })?;
        }
        Ok(render_search(&args.pattern, report))
    }

    fn search_file(
        &self,
        entry: &WalkEntry,
        regex: &Regex,
        max_matches: usize,
        report: &mut SearchReport,
        bytes_read: &mut u64,
    ) -> ControlFlow<()> {
        if entry.size > MAX_SEARCH_FILE_BYTES {
            report.skipped_large += 1;
            return ControlFlow::Continue(());
        }
        let Ok(mut file) = File::open(self.absolute(&entry.relative)) else {
            report.unreadable += 1;
            return ControlFlow::Continue(());
        };
        // Look at the start first: binary files (build outputs, images) are
        // common in workspaces and should not use up the byte budget.
        let mut bytes = Vec::new();
        if (&mut file)
            .take(BINARY_SNIFF_BYTES as u64)
            .read_to_end(&mut bytes)
            .is_err()
        {
            report.unreadable += 1;
            return ControlFlow::Continue(());
        }
        *bytes_read += bytes.len() as u64;
        if bytes.contains(&0) {
            report.skipped_binary += 1;
            return ControlFlow::Continue(());
        }
        if *bytes_read + entry.size.saturating_sub(bytes.len() as u64) > MAX_SEARCH_TOTAL_BYTES {
            report.hit_byte_limit = true;
            return ControlFlow::Break(());
        }
        // The size checks came from metadata; bound the read too in case the
        // file grew since.
        let before = bytes.len();
        if file
            .take(MAX_SEARCH_FILE_BYTES.saturating_sub(before as u64))
            .read_to_end(&mut bytes)
            .is_err()
        {
            report.unreadable += 1;
            return ControlFlow::Continue(());
        }
        *bytes_read += (bytes.len() - before) as u64;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            report.skipped_binary += 1;
            return ControlFlow::Continue(());
        };
        report.files_searched += 1;
        let mut matched = false;
        for (index, line) in text.lines().enumerate() {
            if !regex.is_match(line) {
                continue;
            }
            if report.lines.len() == max_matches {
                report.hit_match_limit = true;
                return ControlFlow::Break(());
            }
            if !matched {
                matched = true;
                report.files_matched += 1;
            }
            report.lines.push(format!(
                "{}:{}:{}",
                entry.relative,
                index + 1,
                clip(line, MAX_MATCH_LINE_BYTES)
            ));
        }
        ControlFlow::Continue(())
    }
}

fn render_search(pattern: &str, report: SearchReport) -> String {
    let mut output = String::new();
    for line in &report.lines {
        output.push_str(line);
        output.push('\n');
    }
    let files = report.files_searched;
    if report.lines.is_empty() {
        output.push_str(&format!(
            "[no matches for `{pattern}` in {files} file(s) searched"
        ));
    } else {
        output.push_str(&format!(
            "[{} matching line(s) in {} file(s); {files} file(s) searched",
            report.lines.len(),
            report.files_matched
        ));
    }
    let mut notes = Vec::new();
    if report.skipped_binary > 0 {
        notes.push(format!(
            "skipped {} binary or non-UTF-8 file(s)",
            report.skipped_binary
        ));
    }
    if report.skipped_large > 0 {
        notes.push(format!(
            "skipped {} file(s) over {} MiB",
            report.skipped_large,
            MAX_SEARCH_FILE_BYTES / (1024 * 1024)
        ));
    }
    let unreadable = report.unreadable + report.walk.unreadable;
    if unreadable > 0 {
        notes.push(format!("{unreadable} unreadable file(s) or directory(ies)"));
    }
    if report.walk.hidden_skipped > 0 {
        notes.push(format!(
            "{} hidden entry(ies) not searched (set include_hidden to search them)",
            report.walk.hidden_skipped
        ));
    }
    if report.hit_match_limit {
        notes.push(
            "stopped at the match limit; narrow the pattern, `path` or `glob`, or raise `max_matches`"
                .to_owned(),
        );
    }
    if report.hit_byte_limit || report.walk.exhausted {
        notes.push(
            "stopped before the end: the workspace is too large to search at once; narrow `path` or `glob`"
                .to_owned(),
        );
    }
    for note in notes {
        output.push_str("; ");
        output.push_str(&note);
    }
    output.push(']');
    output
}

fn build_regex(pattern: &str, case_insensitive: bool) -> Result<Regex, ToolError> {
    if pattern.is_empty() {
        return Err(ToolError::invalid_arguments(
            "the pattern is empty; give the regular expression to look for",
        ));
    }
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|error| {
            ToolError::invalid_arguments(format!(
                "invalid regular expression: {error}\n(Rust `regex` syntax: no look-around or backreferences; \
                 escape special characters such as `(`, `.` or `[` with `\\`)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{TempTree, sample};

    fn search_args(pattern: &str) -> SearchArgs {
        SearchArgs {
            pattern: pattern.into(),
            path: None,
            glob: None,
            case_insensitive: false,
            max_matches: None,
            include_hidden: false,
        }
    }

    #[test]
    fn search_lists_matching_lines_and_skips_binary_files() {
        let tree = sample();
        let output = tree.workspace().search(search_args(r"\badd\b")).unwrap();
        assert_eq!(
            output,
            "docs/guide.md:2:Call add to add.\n\
             src/bin/main.rs:2:    println!(\"{}\", demo::add(1, 2));\n\
             src/lib.rs:1:pub fn add(a: i32, b: i32) -> i32 {\n\
             [3 matching line(s) in 3 file(s); 4 file(s) searched; skipped 2 binary or non-UTF-8 file(s); \
             1 hidden entry(ies) not searched (set include_hidden to search them)]"
        );
    }

    #[test]
    fn search_filters_by_glob_and_path() {
        let tree = sample();
        let mut args = search_args("ADD");
        args.case_insensitive = true;
        args.glob = Some("*.rs".into());
        let output = tree.workspace().search(args).unwrap();
        assert!(output.starts_with("src/bin/main.rs:2:"), "{output}");
        assert!(!output.contains("guide.md"), "{output}");

        let mut args = search_args("add");
        args.glob = Some("src/bin/**".into());
        let output = tree.workspace().search(args).unwrap();
        assert!(
            output.starts_with("src/bin/main.rs:2:") && !output.contains("src/lib.rs"),
            "{output}"
        );

        let mut args = search_args("fn");
        args.path = Some("src/lib.rs".into());
        let output = tree.workspace().search(args).unwrap();
        assert!(output.starts_with("src/lib.rs:1:pub fn"), "{output}");
        assert!(output.contains("1 file(s) searched"), "{output}");

        let mut args = search_args("add");
        args.include_hidden = true;
        args.path = Some(".hidden".into());
        assert!(
            tree.workspace()
                .search(args)
                .unwrap()
                .starts_with(".hidden/secret.rs:1:")
        );
    }

    #[test]
    fn search_stops_at_the_match_limit() {
        let tree = TempTree::new();
        tree.file("many.txt", "hit\n".repeat(50));
        let mut args = search_args("hit");
        args.max_matches = Some(10);
        let output = tree.workspace().search(args).unwrap();
        assert_eq!(
            output
                .lines()
                .filter(|line| line.starts_with("many.txt:"))
                .count(),
            10
        );
        assert!(output.contains("stopped at the match limit"), "{output}");
    }

    #[test]
    fn search_clips_long_lines_and_reports_no_matches() {
        let tree = TempTree::new();
        tree.file("long.txt", format!("needle {}\n", "x".repeat(1000)));
        let output = tree.workspace().search(search_args("needle")).unwrap();
        let first = output.lines().next().unwrap();
        assert!(first.ends_with('…') && first.len() < 400, "{first}");
        let output = tree.workspace().search(search_args("absent")).unwrap();
        assert_eq!(output, "[no matches for `absent` in 1 file(s) searched]");
    }

    #[test]
    fn search_rejects_bad_patterns_and_paths() {
        let tree = sample();
        assert!(matches!(
            tree.workspace().search(search_args("(unclosed")),
            Err(ToolError::InvalidArguments(_))
        ));
        let mut args = search_args("x");
        args.path = Some("../..".into());
        assert!(matches!(
            tree.workspace().search(args),
            Err(ToolError::Denied(_))
        ));
    }
}
