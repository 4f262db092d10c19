//! Reading a window of lines from a byte stream, without holding more of the
//! file than the output needs.

use std::io::{self, BufRead};

use super::{LineWindow, ReadProblem};
use crate::BINARY_SNIFF_BYTES;

/// `read` counts the lines after the shown range to report the total; past
/// this many bytes it gives up and says the file continues.
const MAX_LINE_COUNT_SCAN_BYTES: u64 = 32 * 1024 * 1024;

/// The lines of `window` from a text, read as a stream so that a window near
/// the start of a huge file costs little. A note in brackets after the lines
/// says when they are not the whole file, and how to go on after a cut.
pub(super) fn read_lines(
    mut reader: impl BufRead,
    window: &LineWindow,
) -> Result<String, ReadProblem> {
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

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

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
}
