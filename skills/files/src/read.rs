//! The `read` tool: a text file, whole or a window of lines. The lines are
//! read from the stream in [`lines`]; this module checks the arguments and
//! the file and words what went wrong.

mod lines;

use std::fs::File;
use std::io::{self, BufReader};

use schemars::JsonSchema;
use serde::Deserialize;
use talaria_sdk::ToolError;

use crate::workspace::{Workspace, display, io_error, relative_path};
use lines::read_lines;

const DEFAULT_READ_BYTES: usize = 64 * 1024;
const MAX_READ_BYTES: usize = 512 * 1024;
/// Leaves room for the longest line-number prefix and some text, so the
/// first line of a window always shows.
const MIN_READ_BYTES: usize = 64;

/// Arguments of `read`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadArgs {
    /// File to read, relative to the workspace root, e.g. `src/main.rs`.
    pub(crate) path: String,
    /// First line to show, 1-based (default 1).
    #[serde(default)]
    pub(crate) start_line: Option<usize>,
    /// Last line to show, inclusive (default: the end of the file).
    #[serde(default)]
    pub(crate) end_line: Option<usize>,
    /// Prefix each line with its number and a tab (default true).
    #[serde(default)]
    pub(crate) line_numbers: Option<bool>,
    /// Most bytes of output (default 65536, at most 524288); longer output
    /// ends with a note saying where to continue.
    #[serde(default)]
    pub(crate) max_bytes: Option<usize>,
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
    pub(crate) fn read(&self, args: ReadArgs) -> Result<String, ToolError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample;

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
}
