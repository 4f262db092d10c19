//! Text coming from a guest (log lines, error messages, stderr) is untrusted:
//! it could carry terminal escape sequences that rewrite an operator's screen,
//! forged log lines, or megabytes meant to flood a log or a model's context.
//! Everything a guest says passes through here before it reaches a log, a
//! terminal or the model.

/// Largest guest-provided message kept, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Bound `text` to `max_bytes` (cut on a character boundary, with a marker)
/// and strip terminal escape sequences and control characters. Newlines and
/// tabs survive when `keep_newlines` is true (error messages for the model);
/// otherwise they become spaces (one log event per line).
pub fn sanitize(text: &str, max_bytes: usize, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes));
    let mut chars = text.chars().peekable();
    let mut truncated = false;
    while let Some(c) = chars.next() {
        let replacement = match c {
            '\u{1b}' => {
                skip_escape_sequence(&mut chars);
                continue;
            }
            // C1 introducers act like their ESC forms on some terminals:
            // CSI like `ESC [`, OSC/DCS/PM/APC like `ESC ]`.
            '\u{9b}' => {
                skip_control_sequence(&mut chars);
                continue;
            }
            '\u{9d}' | '\u{90}' | '\u{9e}' | '\u{9f}' => {
                skip_until_terminator(&mut chars);
                continue;
            }
            '\n' | '\t' if keep_newlines => c,
            '\r' if keep_newlines => continue,
            '\n' | '\t' | '\r' => ' ',
            c if c.is_control() => continue,
            // Bidirectional overrides can make text display differently from what it is.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => continue,
            c => c,
        };
        if out.len() + replacement.len_utf8() > max_bytes {
            truncated = true;
            break;
        }
        out.push(replacement);
    }
    if truncated {
        out.push_str(" […truncated]");
    }
    out
}

/// `sanitize` for one log line.
pub fn log_line(text: &str) -> String {
    sanitize(text, MAX_MESSAGE_BYTES, false)
}

/// `sanitize` for a message shown to the model or printed as an error.
pub fn message(text: &str) -> String {
    sanitize(text, MAX_MESSAGE_BYTES, true)
}

/// Skip the rest of an escape sequence whose ESC was consumed: CSI
/// (`ESC [ ... final`), OSC/DCS/APC/PM/SOS (`ESC ] ... BEL|ESC \`), or a
/// two-character sequence.
fn skip_escape_sequence(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => skip_control_sequence(chars),
        Some(']' | 'P' | '_' | '^' | 'X') => skip_until_terminator(chars),
        _ => {}
    }
}

/// Parameters and intermediates, then one final byte in `@..~`.
fn skip_control_sequence(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('@'..='~').contains(&c) {
            break;
        }
    }
}

fn skip_until_terminator(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => return,
            '\u{1b}' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escape_sequences_and_controls() {
        let cases = [
            ("plain text", "plain text"),
            ("\u{1b}[31mred\u{1b}[0m", "red"),
            ("\u{1b}[2J\u{1b}[Hclear", "clear"),
            ("title\u{1b}]0;pwned\u{7}!", "title!"),
            ("link \u{1b}]8;;http://x\u{1b}\\here", "link here"),
            ("bell\u{7}null\u{0}del\u{7f}", "bellnulldel"),
            ("csi\u{9b}31mc1", "csic1"),
            ("bidi \u{202e}txt.exe", "bidi txt.exe"),
            ("a\r\nb", "a  b"),
        ];
        for (input, expected) in cases {
            assert_eq!(log_line(input), expected, "{input:?}");
        }
    }

    #[test]
    fn keeps_newlines_for_messages_only() {
        assert_eq!(message("line 1\nline 2\r\n"), "line 1\nline 2\n");
        assert_eq!(log_line("line 1\nINFO forged"), "line 1 INFO forged");
    }

    #[test]
    fn bounds_length_on_a_character_boundary() {
        let long = "é".repeat(10_000);
        let bounded = sanitize(&long, 101, false);
        assert!(bounded.ends_with(" […truncated]"));
        let kept = bounded.trim_end_matches(" […truncated]");
        assert_eq!(kept.len(), 100);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn unterminated_sequences_do_not_leak() {
        assert_eq!(log_line("before\u{1b}]0;never ends"), "before");
        assert_eq!(log_line("before\u{1b}[12;"), "before");
        assert_eq!(log_line("end\u{1b}"), "end");
    }
}
