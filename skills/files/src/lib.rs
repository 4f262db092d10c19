//! The `files` skill: read-only access to the workspace the operator mounts
//! for it. The model names paths relative to the workspace (or starting with
//! `/workspace`); everything else lives in [`Workspace`], which takes its
//! root as a parameter so the logic runs natively in tests.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use talaria_sdk::{ToolError, Toolset, bounded_count, clip};

/// Where the host mounts the workspace inside the sandbox (see `skill.toml`).
const GUEST_ROOT: &str = "/workspace";

const DEFAULT_LIST_DEPTH: usize = 1;
const MAX_LIST_DEPTH: usize = 16;
const DEFAULT_MAX_ENTRIES: usize = 500;
const MAX_ENTRIES_LIMIT: usize = 5000;
const DEFAULT_READ_BYTES: usize = 64 * 1024;
const MAX_READ_BYTES: usize = 512 * 1024;
/// Leaves room for the longest line-number prefix and some text, so the
/// first line of a window always shows.
const MIN_READ_BYTES: usize = 64;
const DEFAULT_MAX_GLOB_RESULTS: usize = 500;
const MAX_GLOB_RESULTS_LIMIT: usize = 5000;
const DEFAULT_MAX_MATCHES: usize = 100;
const MAX_MATCHES_LIMIT: usize = 1000;
/// Every entry costs a host call; past this many a walk stops and says so,
/// which keeps a call on a huge tree inside the skill's time limit.
const MAX_WALK_ENTRIES: usize = 50_000;
/// Files larger than this are skipped by `search`: they are rarely source
/// and would eat the time budget.
const MAX_SEARCH_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Total bytes `search` reads in one call before it stops with a note.
const MAX_SEARCH_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// Matching lines longer than this are cut in `search` results.
const MAX_MATCH_LINE_BYTES: usize = 300;
/// `read` counts the lines after the shown range to report the total; past
/// this many bytes it gives up and says the file continues.
const MAX_LINE_COUNT_SCAN_BYTES: u64 = 32 * 1024 * 1024;
/// How much of a file's start is checked for NUL bytes to call it binary,
/// as git and grep do.
const BINARY_SNIFF_BYTES: usize = 8 * 1024;
const REGEX_SIZE_LIMIT: usize = 8 * 1024 * 1024;

// ---------------------------------------------------------------- paths

/// Turn a path from the model into a normalised path relative to the
/// workspace root ("" for the root itself). Refuses anything that could leave
/// the workspace before the file system is touched: the sandbox would refuse
/// too, but with a message that does not tell the model what to do instead.
fn relative_path(requested: &str) -> Result<String, ToolError> {
    if requested.contains('\0') {
        return Err(ToolError::invalid_arguments(
            "paths must not contain NUL characters",
        ));
    }
    let relative = match requested.strip_prefix(GUEST_ROOT) {
        Some("") => "",
        Some(rest) if rest.starts_with('/') => rest,
        _ if requested.starts_with('/') => {
            return Err(ToolError::denied(format!(
                "`{requested}` is outside the workspace; this skill sees only the workspace, \
                 so give a path relative to its root (e.g. `src/main.rs`) or starting with `{GUEST_ROOT}/`"
            )));
        }
        _ => requested,
    };
    let mut components = Vec::new();
    for component in relative.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                return Err(ToolError::denied(format!(
                    "`{requested}` uses `..`, which is not allowed: this skill sees only the workspace; \
                     give the path from the workspace root instead"
                )));
            }
            name => components.push(name),
        }
    }
    Ok(components.join("/"))
}

/// How a workspace-relative path is shown to the model.
fn display(relative: &str) -> &str {
    if relative.is_empty() { "." } else { relative }
}

fn join_relative(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// An I/O error on `relative`, worded for the model.
fn io_error(relative: &str, error: io::Error) -> ToolError {
    let shown = display(relative);
    match error.kind() {
        io::ErrorKind::NotFound => ToolError::failed(format!(
            "`{shown}` does not exist in the workspace; use `list` or `glob` to find the right path"
        )),
        io::ErrorKind::PermissionDenied => ToolError::denied(format!(
            "access to `{shown}` was refused ({error}); this skill reaches only the workspace, \
             and symbolic links leading out of it are blocked"
        )),
        _ => ToolError::failed(format!("could not read `{shown}`: {error}")),
    }
}

// ---------------------------------------------------------------- walking

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
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
struct WalkEntry {
    /// Relative to the workspace root.
    relative: String,
    name: String,
    kind: Kind,
    size: u64,
}

/// Options of a directory walk.
struct Walk {
    /// 1 visits only the start directory's own entries.
    max_depth: usize,
    include_hidden: bool,
}

#[derive(Default, Debug)]
struct WalkSummary {
    /// Entries not visited because their names start with `.`.
    hidden_skipped: usize,
    /// Subdirectories that could not be read.
    unreadable: usize,
    /// The walk hit [`MAX_WALK_ENTRIES`] and stopped.
    exhausted: bool,
}

/// The file tree under a root directory, as the model sees it.
struct Workspace {
    root: PathBuf,
}

impl Workspace {
    fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn absolute(&self, relative: &str) -> PathBuf {
        if relative.is_empty() {
            self.root.clone()
        } else {
            self.root.join(relative)
        }
    }

    /// Visit the tree under the directory `start` depth-first, entries of a
    /// directory in name order, each directory before its contents. Symbolic
    /// links are reported but never followed, so a link cycle cannot trap
    /// the walk. Unreadable subdirectories are counted and skipped; only an
    /// unreadable start is an error.
    fn walk(
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

    /// Metadata of `relative`, following a final symbolic link like opening
    /// the path would.
    fn metadata(&self, relative: &str) -> Result<fs::Metadata, ToolError> {
        fs::metadata(self.absolute(relative)).map_err(|error| io_error(relative, error))
    }
}

// ---------------------------------------------------------------- list

/// Arguments of `list`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    /// Directory to list, relative to the workspace root (default: the root).
    #[serde(default)]
    path: Option<String>,
    /// How many levels to descend: 1 lists only the directory's own entries
    /// (the default), 2 adds their children, and so on (at most 16).
    #[serde(default)]
    depth: Option<usize>,
    /// Most entries to return (default 500, at most 5000).
    #[serde(default)]
    max_entries: Option<usize>,
    /// Include entries whose names start with `.` (and descend into them).
    #[serde(default)]
    include_hidden: bool,
}

#[derive(Serialize, Debug)]
struct Listing {
    path: String,
    entries: Vec<ListEntry>,
    /// True when the directory holds more entries than were returned.
    truncated: bool,
    /// Entries left out because their names start with `.`.
    #[serde(skip_serializing_if = "is_zero")]
    hidden_skipped: usize,
    /// Subdirectories that could not be read.
    #[serde(skip_serializing_if = "is_zero")]
    unreadable: usize,
}

#[derive(Serialize, Debug)]
struct ListEntry {
    path: String,
    #[serde(rename = "type")]
    kind: Kind,
    /// Bytes, for files only.
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

impl Workspace {
    fn list(&self, args: ListArgs) -> Result<Listing, ToolError> {
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
        let mut entries = Vec::new();
        let mut truncated = false;
        let options = Walk {
            max_depth,
            include_hidden: args.include_hidden,
        };
        let summary = self.walk(&relative, &options, &mut |entry| {
            if entries.len() == max_entries {
                truncated = true;
                return ControlFlow::Break(());
            }
            entries.push(ListEntry {
                path: entry.relative.clone(),
                kind: entry.kind,
                size: (entry.kind == Kind::File).then_some(entry.size),
            });
            ControlFlow::Continue(())
        })?;
        Ok(Listing {
            path: display(&relative).to_owned(),
            entries,
            truncated: truncated || summary.exhausted,
            hidden_skipped: summary.hidden_skipped,
            unreadable: summary.unreadable,
        })
    }
}

// ---------------------------------------------------------------- read

/// Arguments of `read`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    /// File to read, relative to the workspace root, e.g. `src/main.rs`.
    path: String,
    /// First line to show, 1-based (default 1).
    #[serde(default)]
    start_line: Option<usize>,
    /// Last line to show, inclusive (default: the end of the file).
    #[serde(default)]
    end_line: Option<usize>,
    /// Prefix each line with its number and a tab (default true).
    #[serde(default)]
    line_numbers: Option<bool>,
    /// Most bytes of output (default 65536, at most 524288); longer output
    /// ends with a note saying where to continue.
    #[serde(default)]
    max_bytes: Option<usize>,
}

/// Why `read` shows no content, worded for the model by
/// [`ReadProblem::into_tool_error`].
#[derive(Debug)]
enum ReadProblem {
    Io(io::Error),
    Binary,
    NotUtf8 { line: usize },
    PastEnd { start_line: usize, lines: usize },
}

impl From<io::Error> for ReadProblem {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

impl ReadProblem {
    fn into_tool_error(self, relative: &str) -> ToolError {
        let shown = display(relative);
        match self {
            Self::Io(error) => io_error(relative, error),
            Self::Binary => ToolError::failed(format!(
                "`{shown}` looks like a binary file (it contains NUL bytes); `read` shows text files only"
            )),
            Self::NotUtf8 { line } => ToolError::failed(format!(
                "`{shown}` is not UTF-8 text (line {line} has invalid bytes); it is binary or uses another \
                 encoding, which `read` cannot show"
            )),
            Self::PastEnd { start_line, lines } => ToolError::invalid_arguments(format!(
                "`start_line` {start_line} is past the end of `{shown}`, which has {lines} line(s)"
            )),
        }
    }
}

/// Which lines to show and how.
struct LineWindow {
    start_line: usize,
    end_line: Option<usize>,
    numbered: bool,
    max_bytes: usize,
}

impl Workspace {
    fn read(&self, args: ReadArgs) -> Result<String, ToolError> {
        let relative = relative_path(&args.path)?;
        let window = line_window(&args)?;
        let metadata = self.metadata(&relative)?;
        if metadata.is_dir() {
            return Err(ToolError::invalid_arguments(format!(
                "`{}` is a directory; use `list` to see what it holds",
                display(&relative)
            )));
        }
        // Opening a FIFO blocks until someone writes to it, and a device
        // never ends: read regular files only.
        if !metadata.is_file() {
            return Err(ToolError::invalid_arguments(format!(
                "`{}` is not a regular file (a FIFO, socket or device); only regular files can be read",
                display(&relative)
            )));
        }
        let file =
            File::open(self.absolute(&relative)).map_err(|error| io_error(&relative, error))?;
        read_lines(BufReader::new(file), &window)
            .map_err(|problem| problem.into_tool_error(&relative))
    }
}

fn line_window(args: &ReadArgs) -> Result<LineWindow, ToolError> {
    let start_line = args.start_line.unwrap_or(1);
    if start_line == 0 {
        return Err(ToolError::invalid_arguments(
            "`start_line` is 1-based: the first line is 1",
        ));
    }
    if let Some(end_line) = args.end_line
        && end_line < start_line
    {
        return Err(ToolError::invalid_arguments(format!(
            "`end_line` ({end_line}) is before `start_line` ({start_line})"
        )));
    }
    let max_bytes = match args.max_bytes.unwrap_or(DEFAULT_READ_BYTES) {
        max_bytes @ MIN_READ_BYTES..=MAX_READ_BYTES => max_bytes,
        _ => {
            return Err(ToolError::invalid_arguments(format!(
                "`max_bytes` must be between {MIN_READ_BYTES} and {MAX_READ_BYTES}"
            )));
        }
    };
    Ok(LineWindow {
        start_line,
        end_line: args.end_line,
        numbered: args.line_numbers.unwrap_or(true),
        max_bytes,
    })
}

/// The lines of `window` from a text, read as a stream so that a window near
/// the start of a huge file costs little. A note in brackets after the lines
/// says when they are not the whole file, and how to go on after a cut.
fn read_lines(mut reader: impl BufRead, window: &LineWindow) -> Result<String, ReadProblem> {
    if reader
        .fill_buf()?
        .iter()
        .take(BINARY_SNIFF_BYTES)
        .any(|&byte| byte == 0)
    {
        return Err(ReadProblem::Binary);
    }
    let mut lines_before = 0;
    while lines_before + 1 < window.start_line {
        if !skip_line(&mut reader)? {
            return Err(ReadProblem::PastEnd {
                start_line: window.start_line,
                lines: lines_before,
            });
        }
        lines_before += 1;
    }

    let mut output = String::new();
    let mut last_shown = lines_before;
    // Lines whose end has been read, shown or not; with `mid_line` (a line
    // read only in part) this is where the reader stands.
    let mut lines_consumed = lines_before;
    let mut mid_line = false;
    let mut stopped_for_size = false;
    let mut cut_line = None;
    let mut line = Vec::new();
    while window.end_line.is_none_or(|end| last_shown < end) {
        let number = last_shown + 1;
        let prefix = if window.numbered {
            format!("{number}\t")
        } else {
            String::new()
        };
        let Some(room) = window
            .max_bytes
            .checked_sub(output.len() + prefix.len() + 1)
        else {
            // Not even an empty line fits any more (the first line always
            // does, see MIN_READ_BYTES).
            stopped_for_size = !reader.fill_buf()?.is_empty();
            break;
        };
        line.clear();
        // Two bytes past the room (for `\r\n`) tell a line that fits from
        // one that does not, without reading all of a huge line.
        let complete = read_line_bounded(&mut reader, &mut line, room + 2)?;
        if line.is_empty() {
            break;
        }
        if complete {
            lines_consumed += 1;
        } else {
            mid_line = true;
        }
        let content = strip_line_ending(&line);
        if !complete || content.len() > room {
            stopped_for_size = true;
            if output.is_empty() {
                // A single line longer than the budget: show its start rather
                // than nothing.
                let shown = utf8_prefix(&content[..content.len().min(room)])
                    .ok_or(ReadProblem::NotUtf8 { line: number })?;
                output.push_str(&prefix);
                output.push_str(shown);
                output.push('\n');
                cut_line = Some(number);
                last_shown = number;
            }
            break;
        }
        let text =
            std::str::from_utf8(content).map_err(|_| ReadProblem::NotUtf8 { line: number })?;
        output.push_str(&prefix);
        output.push_str(text);
        output.push('\n');
        last_shown = number;
    }

    if output.is_empty() {
        return Ok(if window.start_line == 1 {
            "[empty file]".to_owned()
        } else {
            format!(
                "[no lines from line {}: the file ends there]",
                window.start_line
            )
        });
    }
    let first_shown = lines_before + 1;
    let total = count_remaining_lines(&mut reader, mid_line, MAX_LINE_COUNT_SCAN_BYTES)?
        .map(|remaining| lines_consumed + remaining);
    let of_total = match total {
        Some(total) => format!(" of {total}"),
        None => "; the file continues".to_owned(),
    };
    if let Some(line) = cut_line {
        output.push_str(&format!(
            "[line {line}{of_total} is longer than the {} byte limit and was cut; raise `max_bytes`, \
             or use `search` to find the part you need]",
            window.max_bytes
        ));
    } else if stopped_for_size {
        output.push_str(&format!(
            "[truncated at the {} byte limit: showed lines {first_shown}-{last_shown}{of_total}; \
             continue with start_line={}]",
            window.max_bytes,
            last_shown + 1
        ));
    } else if first_shown > 1 || total != Some(last_shown) {
        output.push_str(&format!("[lines {first_shown}-{last_shown}{of_total}]"));
    }
    Ok(output)
}

/// Read one line (through its `\n`) into `line`, at most `limit` bytes.
/// Returns false when the limit was reached before the line ended.
fn read_line_bounded(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    limit: usize,
) -> io::Result<bool> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(true);
        }
        let room = limit - line.len();
        let window = &available[..available.len().min(room)];
        if let Some(newline) = window.iter().position(|&byte| byte == b'\n') {
            line.extend_from_slice(&window[..=newline]);
            reader.consume(newline + 1);
            return Ok(true);
        }
        let taken = window.len();
        line.extend_from_slice(window);
        reader.consume(taken);
        if line.len() == limit {
            return Ok(false);
        }
    }
}

/// Consume one line without keeping it. Returns false at the end of input.
fn skip_line(reader: &mut impl BufRead) -> io::Result<bool> {
    let mut consumed_any = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(consumed_any);
        }
        consumed_any = true;
        if let Some(newline) = available.iter().position(|&byte| byte == b'\n') {
            reader.consume(newline + 1);
            return Ok(true);
        }
        let taken = available.len();
        reader.consume(taken);
    }
}

/// Lines left in `reader` (a last line without `\n` counts, and so does the
/// rest of a line partly read when `mid_line`), or `None` when more than
/// `max_bytes` remain.
fn count_remaining_lines(
    reader: &mut impl BufRead,
    mid_line: bool,
    max_bytes: u64,
) -> io::Result<Option<usize>> {
    let mut lines = 0;
    let mut scanned: u64 = 0;
    let mut ends_with_newline = !mid_line;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(Some(lines + usize::from(!ends_with_newline)));
        }
        scanned += available.len() as u64;
        if scanned > max_bytes {
            return Ok(None);
        }
        lines += available.iter().filter(|&&byte| byte == b'\n').count();
        ends_with_newline = available.last() == Some(&b'\n');
        let taken = available.len();
        reader.consume(taken);
    }
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The longest valid UTF-8 start of `bytes`, which may end inside a
/// character; `None` when the bytes are not UTF-8 at all.
fn utf8_prefix(bytes: &[u8]) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        // An incomplete character at the very end comes from cutting.
        Err(error) if error.error_len().is_none() => {
            std::str::from_utf8(&bytes[..error.valid_up_to()]).ok()
        }
        Err(_) => None,
    }
}

// ---------------------------------------------------------------- glob

/// Arguments of `glob`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GlobArgs {
    /// Glob relative to the workspace root: `*` and `?` stay within one path
    /// component, `**` spans directories, `{a,b}` and `[abc]` work. E.g.
    /// `src/**/*.rs`, `**/Cargo.toml`, `docs/*.{md,txt}`.
    pattern: String,
    /// Most paths to return (default 500, at most 5000).
    #[serde(default)]
    max_results: Option<usize>,
    /// Also match entries under names starting with `.` (automatic when the
    /// pattern itself names such a component, like `.github/**`).
    #[serde(default)]
    include_hidden: bool,
}

#[derive(Serialize, Debug)]
struct GlobMatches {
    /// Matching paths relative to the workspace root, in walk order;
    /// directories end with `/`.
    matches: Vec<String>,
    /// True when the search stopped before seeing every match.
    truncated: bool,
}

/// A glob split into the directory to start walking from (its components
/// without wildcards) and how deep below it a match can be.
struct GlobPlan {
    matcher: GlobMatcher,
    base: String,
    max_depth: usize,
    names_hidden: bool,
}

fn plan_glob(pattern: &str) -> Result<GlobPlan, ToolError> {
    if pattern.is_empty() {
        return Err(ToolError::invalid_arguments(
            "the pattern is empty; give a glob such as `**/*.rs`",
        ));
    }
    let has_wildcard = |component: &str| component.contains(['*', '?', '[', '{', '\\']);
    // Wildcards must not hide a `..` from the check, so it sees only the
    // literal components; a `..` among wildcards never matches anything.
    let relative = relative_path(pattern)?;
    if relative.is_empty() {
        return Err(ToolError::invalid_arguments(
            "the pattern names the workspace root itself; add what to match below it, e.g. `*` or `**/*.md`",
        ));
    }
    let components: Vec<&str> = relative.split('/').collect();
    let literal_count = components
        .iter()
        .take_while(|component| !has_wildcard(component))
        .count()
        // The last component is what is matched, even without wildcards.
        .min(components.len() - 1);
    let base = components[..literal_count].join("/");
    let max_depth = if components[literal_count..]
        .iter()
        .any(|component| component.contains("**"))
    {
        usize::MAX
    } else {
        components.len() - literal_count
    };
    let matcher = GlobBuilder::new(&relative)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|error| {
            ToolError::invalid_arguments(format!(
                "invalid glob: {error}; examples: `src/**/*.rs`, `*.md`, `docs/{{a,b}}/*.txt`"
            ))
        })?
        .compile_matcher();
    Ok(GlobPlan {
        matcher,
        base,
        max_depth,
        names_hidden: components.iter().any(|component| is_hidden(component)),
    })
}

impl Workspace {
    fn glob(&self, args: GlobArgs) -> Result<GlobMatches, ToolError> {
        let max_results = bounded_count(
            "max_results",
            args.max_results,
            DEFAULT_MAX_GLOB_RESULTS,
            MAX_GLOB_RESULTS_LIMIT,
        )?;
        let plan = plan_glob(&args.pattern)?;
        let mut matches = Vec::new();
        let mut truncated = false;
        match fs::metadata(self.absolute(&plan.base)) {
            Ok(metadata) if metadata.is_dir() => {}
            // Nothing can match below a base that is missing or a file.
            Ok(_) => return Ok(GlobMatches { matches, truncated }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(GlobMatches { matches, truncated });
            }
            Err(error) => return Err(io_error(&plan.base, error)),
        }
        let options = Walk {
            max_depth: plan.max_depth,
            include_hidden: args.include_hidden || plan.names_hidden,
        };
        let summary = self.walk(&plan.base, &options, &mut |entry| {
            if plan.matcher.is_match(&entry.relative) {
                if matches.len() == max_results {
                    truncated = true;
                    return ControlFlow::Break(());
                }
                matches.push(if entry.kind == Kind::Dir {
                    format!("{}/", entry.relative)
                } else {
                    entry.relative.clone()
                });
            }
            ControlFlow::Continue(())
        })?;
        Ok(GlobMatches {
            matches,
            truncated: truncated || summary.exhausted,
        })
    }
}

// ---------------------------------------------------------------- search

/// Arguments of `search`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// Regular expression (Rust `regex` syntax), matched against each line.
    pattern: String,
    /// File or directory to search, relative to the workspace root (default:
    /// the whole workspace).
    #[serde(default)]
    path: Option<String>,
    /// Only search files matching this glob: without `/` it matches file
    /// names (`*.rs`), with `/` paths from the workspace root (`src/**/*.rs`).
    #[serde(default)]
    glob: Option<String>,
    /// Ignore case.
    #[serde(default)]
    case_insensitive: bool,
    /// Most matching lines to return (default 100, at most 1000).
    #[serde(default)]
    max_matches: Option<usize>,
    /// Also search files and directories whose names start with `.`.
    #[serde(default)]
    include_hidden: bool,
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
    fn search(&self, args: SearchArgs) -> Result<String, ToolError> {
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

// ---------------------------------------------------------------- shared

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
    use std::io::Cursor;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A directory tree under the system temp dir, removed on drop.
    struct TempTree {
        root: PathBuf,
    }

    impl TempTree {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let root = std::env::temp_dir().join(format!(
                "talaria-skill-files-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&root).unwrap();
            Self { root }
        }

        fn file(&self, relative: &str, content: impl AsRef<[u8]>) -> &Self {
            let path = self.root.join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
            self
        }

        fn dir(&self, relative: &str) -> &Self {
            fs::create_dir_all(self.root.join(relative)).unwrap();
            self
        }

        fn workspace(&self) -> Workspace {
            Workspace::new(&self.root)
        }
    }

    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    fn sample() -> TempTree {
        let tree = TempTree::new();
        tree.file("Cargo.toml", "[package]\nname = \"demo\"\n")
            .file(
                "src/lib.rs",
                "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n",
            )
            .file(
                "src/bin/main.rs",
                "fn main() {\n    println!(\"{}\", demo::add(1, 2));\n}\n",
            )
            .file("docs/guide.md", "# Guide\nCall add to add.\n")
            .file(".hidden/secret.rs", "fn add() {}\n")
            .file("image.bin", b"\x89PNG\0\0\0binary add")
            .file("latin1.txt", b"caf\xe9 add\n")
            .dir("empty");
        tree
    }

    fn list_args(path: Option<&str>, depth: Option<usize>) -> ListArgs {
        ListArgs {
            path: path.map(str::to_owned),
            depth,
            max_entries: None,
            include_hidden: false,
        }
    }

    #[test]
    fn relative_paths_are_normalised() {
        assert_eq!(relative_path("src/lib.rs").unwrap(), "src/lib.rs");
        assert_eq!(relative_path("./src//lib.rs/").unwrap(), "src/lib.rs");
        assert_eq!(
            relative_path("/workspace/src/lib.rs").unwrap(),
            "src/lib.rs"
        );
        assert_eq!(relative_path("/workspace").unwrap(), "");
        assert_eq!(relative_path("/workspace/").unwrap(), "");
        assert_eq!(relative_path("").unwrap(), "");
        assert_eq!(relative_path(".").unwrap(), "");
        assert_eq!(relative_path("a/.../b").unwrap(), "a/.../b");
    }

    #[test]
    fn paths_leaving_the_workspace_are_denied() {
        for path in [
            "../etc/passwd",
            "src/../../x",
            "/workspace/../etc",
            "/etc/passwd",
            "/workspaces/x",
            "/",
        ] {
            let error = relative_path(path).unwrap_err();
            assert!(matches!(error, ToolError::Denied(_)), "{path}: {error:?}");
        }
        assert!(
            relative_path("/tmp")
                .unwrap_err()
                .message()
                .contains("relative to its root")
        );
        assert!(relative_path("..").unwrap_err().message().contains("`..`"));
        assert!(matches!(
            relative_path("a\0b").unwrap_err(),
            ToolError::InvalidArguments(_)
        ));
    }

    #[test]
    fn denied_paths_are_refused_before_touching_the_file_system() {
        // The root does not exist: a denial here cannot come from the OS.
        let workspace = Workspace::new("/nonexistent-talaria-root");
        let error = workspace.read(ReadArgs {
            path: "../secret".into(),
            start_line: None,
            end_line: None,
            line_numbers: None,
            max_bytes: None,
        });
        assert!(matches!(error, Err(ToolError::Denied(_))));
        let error = workspace.list(list_args(Some("/etc"), None));
        assert!(matches!(error, Err(ToolError::Denied(_))));
    }

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

    fn window(
        start_line: usize,
        end_line: Option<usize>,
        numbered: bool,
        max_bytes: usize,
    ) -> LineWindow {
        LineWindow {
            start_line,
            end_line,
            numbered,
            max_bytes,
        }
    }

    fn read_text(text: &str, window: &LineWindow) -> String {
        read_lines(Cursor::new(text.as_bytes()), window).unwrap()
    }

    #[test]
    fn read_shows_numbered_lines_of_the_whole_file() {
        assert_eq!(
            read_text("a\nb\r\nc", &window(1, None, true, 1000)),
            "1\ta\n2\tb\n3\tc\n"
        );
        assert_eq!(read_text("a\nb\n", &window(1, None, false, 1000)), "a\nb\n");
        assert_eq!(read_text("", &window(1, None, true, 1000)), "[empty file]");
        assert_eq!(read_text("\n", &window(1, None, true, 1000)), "1\t\n");
    }

    #[test]
    fn read_shows_a_range_of_lines_with_the_total() {
        let text = "one\ntwo\nthree\nfour\nfive\n";
        assert_eq!(
            read_text(text, &window(2, Some(3), true, 1000)),
            "2\ttwo\n3\tthree\n[lines 2-3 of 5]"
        );
        assert_eq!(
            read_text(text, &window(4, None, true, 1000)),
            "4\tfour\n5\tfive\n[lines 4-5 of 5]"
        );
        assert_eq!(
            read_text(text, &window(5, Some(99), false, 1000)),
            "five\n[lines 5-5 of 5]"
        );
        assert_eq!(read_text(text, &window(1, Some(5), false, 1000)), text);
    }

    #[test]
    fn read_refuses_a_start_past_the_end() {
        let problem = read_lines(Cursor::new("a\nb\n"), &window(4, None, true, 1000)).unwrap_err();
        assert!(
            matches!(
                problem,
                ReadProblem::PastEnd {
                    start_line: 4,
                    lines: 2
                }
            ),
            "{problem:?}"
        );
        let message = problem.into_tool_error("f.txt").to_string();
        assert!(message.contains("has 2 line(s)"), "{message}");
        // Just past the last line is not an error: the range is empty.
        assert!(read_text("a\nb\n", &window(3, None, true, 1000)).contains("ends there"));
    }

    #[test]
    fn read_truncates_at_whole_lines_and_says_where_to_continue() {
        let text: String = (1..=100).map(|n| format!("line {n}\n")).collect();
        let output = read_text(&text, &window(1, None, true, 40));
        assert_eq!(
            output,
            "1\tline 1\n2\tline 2\n3\tline 3\n4\tline 4\n\
             [truncated at the 40 byte limit: showed lines 1-4 of 100; continue with start_line=5]"
        );
    }

    #[test]
    fn read_counts_the_total_lines_after_any_cut() {
        // Line read whole but too long: cut, and the reader is past it.
        let output = read_text("abcde\nx\n", &window(1, None, false, 5));
        assert!(
            output.starts_with("abcd\n[line 1 of 2 is longer"),
            "{output}"
        );
        // Stopped inside the next line.
        let output = read_text("ab\ncdefgh\nz\n", &window(1, None, false, 6));
        assert!(
            output.starts_with("ab\n[truncated") && output.contains("lines 1-1 of 3;"),
            "{output}"
        );
        // Stopped after reading the whole next line.
        let output = read_text("ab\ncde\nz\n", &window(1, None, false, 6));
        assert!(output.contains("lines 1-1 of 3;"), "{output}");
        // Stopped before an empty line that would overflow.
        let output = read_text("abcd\n\n", &window(1, None, false, 5));
        assert!(output.contains("lines 1-1 of 2;"), "{output}");
        // Exactly full at the end of the file: nothing left out.
        assert_eq!(read_text("abcd", &window(1, None, false, 5)), "abcd\n");
        // A cut line without a final newline still counts once.
        let output = read_text(&"x".repeat(50), &window(1, None, false, 10));
        assert!(output.contains("[line 1 of 1 is longer"), "{output}");
    }

    #[test]
    fn read_bounds_max_bytes() {
        let args = |max_bytes| ReadArgs {
            path: "x".into(),
            start_line: None,
            end_line: None,
            line_numbers: None,
            max_bytes: Some(max_bytes),
        };
        assert!(line_window(&args(MIN_READ_BYTES - 1)).is_err());
        assert!(line_window(&args(MAX_READ_BYTES + 1)).is_err());
        assert_eq!(
            line_window(&args(MIN_READ_BYTES)).unwrap().max_bytes,
            MIN_READ_BYTES
        );
    }

    #[test]
    fn read_cuts_a_single_overlong_line() {
        let text = format!("{}\nshort\n", "é".repeat(100));
        let output = read_text(&text, &window(1, None, false, 11));
        assert!(
            output.starts_with("ééééé\n[line 1 of 2 is longer"),
            "{output}"
        );
    }

    #[test]
    fn read_refuses_binary_and_non_utf8_files() {
        let problem = read_lines(
            Cursor::new(b"abc\0def".as_slice()),
            &window(1, None, true, 100),
        )
        .unwrap_err();
        assert!(matches!(problem, ReadProblem::Binary));
        let problem = read_lines(
            Cursor::new(b"ok\ncaf\xe9\n".as_slice()),
            &window(1, None, true, 100),
        )
        .unwrap_err();
        assert!(
            matches!(problem, ReadProblem::NotUtf8 { line: 2 }),
            "{problem:?}"
        );
    }

    #[test]
    fn read_validates_the_window() {
        let args = |start_line, end_line| ReadArgs {
            path: "x".into(),
            start_line,
            end_line,
            line_numbers: None,
            max_bytes: None,
        };
        assert!(line_window(&args(Some(0), None)).is_err());
        assert!(line_window(&args(Some(5), Some(4))).is_err());
        assert!(line_window(&args(Some(5), Some(5))).is_ok());
    }

    #[test]
    fn read_opens_files_from_the_workspace() {
        let tree = sample();
        let read_from = |path: &str, start_line| {
            tree.workspace().read(ReadArgs {
                path: path.into(),
                start_line: Some(start_line),
                end_line: None,
                line_numbers: Some(true),
                max_bytes: None,
            })
        };
        assert_eq!(
            read_from("/workspace/src/lib.rs", 2).unwrap(),
            "2\t    a + b\n3\t}\n[lines 2-3 of 3]"
        );
        let read = |path: &str| read_from(path, 1);
        assert!(read("src").unwrap_err().message().contains("use `list`"));
        assert!(read("image.bin").unwrap_err().message().contains("binary"));
        assert!(
            read("latin1.txt")
                .unwrap_err()
                .message()
                .contains("not UTF-8")
        );
        assert!(
            read("missing.rs")
                .unwrap_err()
                .message()
                .contains("does not exist")
        );
    }

    fn glob_args(pattern: &str) -> GlobArgs {
        GlobArgs {
            pattern: pattern.into(),
            max_results: None,
            include_hidden: false,
        }
    }

    #[test]
    fn glob_matches_relative_to_the_workspace() {
        let tree = sample();
        let glob = |pattern: &str| tree.workspace().glob(glob_args(pattern)).unwrap().matches;
        assert_eq!(glob("src/**/*.rs"), ["src/bin/main.rs", "src/lib.rs"]);
        assert_eq!(glob("**/*.rs"), ["src/bin/main.rs", "src/lib.rs"]);
        assert_eq!(glob("*.rs"), Vec::<String>::new());
        assert_eq!(
            glob("/workspace/*.{toml,txt}"),
            ["Cargo.toml", "latin1.txt"]
        );
        assert_eq!(glob("src/*"), ["src/bin/", "src/lib.rs"]);
        assert_eq!(glob("Cargo.toml"), ["Cargo.toml"]);
        assert_eq!(glob("missing/**"), Vec::<String>::new());
        assert_eq!(glob(".hidden/*.rs"), [".hidden/secret.rs"]);
    }

    #[test]
    fn glob_is_bounded_and_checked() {
        let tree = sample();
        let mut args = glob_args("**");
        args.max_results = Some(3);
        let found = tree.workspace().glob(args).unwrap();
        assert_eq!(found.matches.len(), 3);
        assert!(found.truncated);
        assert!(matches!(
            tree.workspace().glob(glob_args("../**")),
            Err(ToolError::Denied(_))
        ));
        assert!(matches!(
            tree.workspace().glob(glob_args("src/[")),
            Err(ToolError::InvalidArguments(_))
        ));
        assert!(tree.workspace().glob(glob_args("")).is_err());
    }

    #[test]
    fn glob_plan_starts_at_the_literal_prefix() {
        let plan = plan_glob("src/bin/*.rs").unwrap();
        assert_eq!((plan.base.as_str(), plan.max_depth), ("src/bin", 1));
        let plan = plan_glob("src/**/x/*.rs").unwrap();
        assert_eq!((plan.base.as_str(), plan.max_depth), ("src", usize::MAX));
        let plan = plan_glob("Cargo.toml").unwrap();
        assert_eq!((plan.base.as_str(), plan.max_depth), ("", 1));
        let plan = plan_glob("a/b/c").unwrap();
        assert_eq!((plan.base.as_str(), plan.max_depth), ("a/b", 1));
    }

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
