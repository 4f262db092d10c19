//! Untrusted text — what a guest says (log lines, error messages, stderr),
//! what a model writes, what a stored session or a manifest holds — could
//! carry terminal escape sequences that rewrite an operator's screen, forged
//! log lines, or megabytes meant to flood a log or a model's context.
//! All of it passes through here before it reaches a log, a terminal
//! or the model.
//!
//! The rule: remove control sequences, keep everything else. A complete
//! sequence goes whole; an introducer that never completes (the text ends,
//! or a control character such as a newline comes first) goes alone and the
//! text after it is kept, so one stray `ESC ]` cannot swallow a tool result.

/// Largest guest-provided message kept, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;
/// The UTF-8 lead byte of U+0080..=U+00BF; U+0080..=U+009F are the C1 controls.
const C1_LEAD: u8 = 0xc2;
/// The second byte of U+009C, STRING TERMINATOR.
const C1_ST: u8 = 0x9c;

/// `text` as one word for a POSIX shell: as is when it holds only
/// characters no shell treats specially, else single-quoted. For commands
/// printed to be pasted (hints, doctor's fixes).
pub fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Bound `text` to `max_bytes` (cut on a character boundary, with a marker)
/// and strip terminal escape sequences and control characters. Newlines and
/// tabs survive when `keep_newlines` is true (error messages for the model);
/// otherwise they become spaces (one log event per line).
///
/// One pass over the text; a sequence's body is looked at twice at most (to
/// find its end, then, if it has none, as plain text), and every scan stops
/// at the next control character, so the cost stays linear.
pub fn sanitize(text: &str, max_bytes: usize, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes));
    let mut rest = text;
    let mut truncated = false;
    while let Some(c) = rest.chars().next() {
        if let Some(length) = control_sequence_len(rest) {
            rest = &rest[length..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
        let replacement = match c {
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

/// If `text` starts with a control sequence, the number of bytes to remove:
/// the whole sequence when it is complete, only its introducer when not.
/// `None` when `text` does not start with ESC or a C1 introducer.
///
/// - CSI: `ESC [` or U+009B, parameters and intermediates (0x20–0x3F), one
///   final byte (0x40–0x7E).
/// - OSC, DCS, SOS, PM, APC: `ESC ]`, `ESC P`, `ESC X`, `ESC ^`, `ESC _` or
///   U+009D, U+0090, U+0098, U+009E, U+009F, a payload, then BEL or ST
///   (`ESC \` or U+009C).
/// - Any other escape: `ESC`, intermediates (0x20–0x2F), one final byte
///   (0x30–0x7E), e.g. `ESC c` (reset) or `ESC ( B`.
fn control_sequence_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    match bytes {
        [ESC, b'[', body @ ..] => Some(2 + csi_body_len(body).unwrap_or(0)),
        [ESC, b']' | b'P' | b'X' | b'^' | b'_', body @ ..] => {
            Some(2 + string_body_len(body).unwrap_or(0))
        }
        [ESC, body @ ..] => Some(1 + escape_body_len(body).unwrap_or(0)),
        [C1_LEAD, 0x9b, body @ ..] => Some(2 + csi_body_len(body).unwrap_or(0)),
        [C1_LEAD, 0x9d | 0x90 | 0x98 | 0x9e | 0x9f, body @ ..] => {
            Some(2 + string_body_len(body).unwrap_or(0))
        }
        _ => None,
    }
}

/// Length of a CSI body up to and including its final byte, or `None` if
/// anything else (a control character, non-ASCII text, the end) comes first.
fn csi_body_len(body: &[u8]) -> Option<usize> {
    for (index, &byte) in body.iter().enumerate() {
        match byte {
            0x20..=0x3f => {}
            0x40..=0x7e => return Some(index + 1),
            _ => return None,
        }
    }
    None
}

/// Length of a string payload up to and including its terminator (BEL,
/// `ESC \` or U+009C), or `None` if a control character or the end comes
/// first. Working on bytes is exact here: every byte of a multi-byte UTF-8
/// character is 0x80 or above, and a C1 control is `0xC2 0x80..=0x9F`.
fn string_body_len(body: &[u8]) -> Option<usize> {
    let mut index = 0;
    while let Some(&byte) = body.get(index) {
        match byte {
            BEL => return Some(index + 1),
            ESC => {
                return (body.get(index + 1) == Some(&b'\\')).then_some(index + 2);
            }
            C1_LEAD => match body.get(index + 1) {
                Some(&C1_ST) => return Some(index + 2),
                Some(0x80..=0x9f) => return None,
                _ => index += 1,
            },
            0x00..=0x1f | 0x7f => return None,
            _ => index += 1,
        }
    }
    None
}

/// Length of the rest of a two-character or nF escape after its ESC:
/// intermediates then a final byte, or `None`.
fn escape_body_len(body: &[u8]) -> Option<usize> {
    for (index, &byte) in body.iter().enumerate() {
        match byte {
            0x20..=0x2f => {}
            0x30..=0x7e => return Some(index + 1),
            _ => return None,
        }
    }
    None
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
            ("dcs\u{1b}Pq#0;2;0;0;0\u{1b}\\ done", "dcs done"),
            ("apc\u{1b}_payload\u{9c} done", "apc done"),
            ("reset\u{1b}c!", "reset!"),
            ("charset\u{1b}(Bx", "charsetx"),
            ("bell\u{7}null\u{0}del\u{7f}", "bellnulldel"),
            ("csi\u{9b}31mc1", "csic1"),
            ("osc\u{9d}0;title\u{7}c1", "oscc1"),
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

    /// An introducer that never completes loses only itself: the text after
    /// it is the rest of a tool result, not part of a sequence.
    #[test]
    fn unterminated_sequences_lose_only_their_introducer() {
        let cases = [
            ("before\u{1b}]0;never ends", "before0;never ends"),
            ("before\u{1b}[12;", "before12;"),
            ("end\u{1b}", "end"),
            (
                "line 1\nline\u{1b}] 2\nline 3\n",
                "line 1\nline 2\nline 3\n",
            ),
            ("osc\u{1b}]0;title\nnext", "osc0;title\nnext"),
            ("dcs\u{1b}Pdata\u{1b}[31mred", "dcsdatared"),
            ("sos\u{1b}Xkept", "soskept"),
            (
                "c1\u{9d}kept\u{90}too\u{98}and\u{9e}this\u{9f}also",
                "c1kepttooandthisalso",
            ),
            ("csi\u{9b}12;\nnext", "csi12;\nnext"),
            ("esc\u{1b}\nnext", "esc\nnext"),
            ("esc\u{1b}(\tnext", "esc(\tnext"),
            ("esc\u{1b}ékept", "escékept"),
            ("csi\u{1b}[1é", "csi1é"),
            ("st alone\u{9c} kept", "st alone kept"),
        ];
        for (input, expected) in cases {
            assert_eq!(message(input), expected, "{input:?}");
        }
    }

    #[test]
    fn a_long_run_of_stray_introducers_is_handled_in_linear_time() {
        let text = "\u{1b}]x".repeat(200_000);
        let started = std::time::Instant::now();
        assert_eq!(
            log_line(&text).len(),
            MAX_MESSAGE_BYTES + " […truncated]".len()
        );
        assert_eq!(sanitize(&text, usize::MAX, true), "x".repeat(200_000));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    mod properties {
        use super::super::sanitize;
        use proptest::prelude::*;

        /// One piece of generated input and what must survive of it.
        #[derive(Debug, Clone)]
        enum Piece {
            /// Printable text (and newlines or tabs), kept as is.
            Text(String),
            /// A complete control sequence, removed whole.
            Sequence(String),
            /// An introducer that cannot complete because a newline follows
            /// its body: the introducer goes, the body and newline stay.
            Stray { introducer: String, body: String },
        }

        fn printable() -> impl Strategy<Value = String> {
            // \PC: no control, format (bidi, zero-width), surrogate,
            // private-use or unassigned character.
            prop_oneof![
                "\\PC{0,12}",
                "[a-z \\[\\]\\\\;0-9]{0,12}",
                Just("\n".to_owned()),
                Just("\t".to_owned()),
            ]
        }

        fn csi() -> impl Strategy<Value = String> {
            (
                prop_oneof![Just("\u{1b}["), Just("\u{9b}")],
                "[0-9;?<=>]{0,6}",
                "[ -/]{0,2}",
                "[@-~]",
            )
                .prop_map(|(start, parameters, intermediates, last)| {
                    format!("{start}{parameters}{intermediates}{last}")
                })
        }

        fn string_introducer() -> impl Strategy<Value = &'static str> {
            prop_oneof![
                Just("\u{1b}]"),
                Just("\u{1b}P"),
                Just("\u{1b}X"),
                Just("\u{1b}^"),
                Just("\u{1b}_"),
                Just("\u{9d}"),
                Just("\u{90}"),
                Just("\u{98}"),
                Just("\u{9e}"),
                Just("\u{9f}"),
            ]
        }

        fn string_sequence() -> impl Strategy<Value = String> {
            (
                string_introducer(),
                "\\PC{0,16}",
                prop_oneof![Just("\u{7}"), Just("\u{1b}\\"), Just("\u{9c}")],
            )
                .prop_map(|(start, payload, end)| format!("{start}{payload}{end}"))
        }

        fn two_character_escape() -> impl Strategy<Value = String> {
            prop_oneof![
                // No intermediates: any final byte but those opening CSI or a string.
                "[0-OQ-WYZ\\\\`-~]".prop_map(|last| format!("\u{1b}{last}")),
                ("[ -/]{1,3}", "[0-~]")
                    .prop_map(|(intermediates, last)| format!("\u{1b}{intermediates}{last}")),
            ]
        }

        fn stray() -> impl Strategy<Value = Piece> {
            prop_oneof![
                Just(Piece::Stray {
                    introducer: "\u{1b}".into(),
                    body: String::new()
                }),
                (prop_oneof![Just("\u{1b}["), Just("\u{9b}")], "[0-9;?]{0,6}").prop_map(
                    |(introducer, body)| Piece::Stray {
                        introducer: introducer.into(),
                        body
                    }
                ),
                (string_introducer(), "\\PC{0,16}").prop_map(|(introducer, body)| {
                    Piece::Stray {
                        introducer: introducer.into(),
                        body,
                    }
                }),
            ]
        }

        fn piece() -> impl Strategy<Value = Piece> {
            prop_oneof![
                4 => printable().prop_map(Piece::Text),
                1 => csi().prop_map(Piece::Sequence),
                1 => string_sequence().prop_map(Piece::Sequence),
                1 => two_character_escape().prop_map(Piece::Sequence),
                1 => stray(),
            ]
        }

        /// The input, and what `sanitize` must make of it (newlines kept).
        fn build(pieces: &[Piece], stray_at_end: Option<&Piece>) -> (String, String) {
            let (mut input, mut expected) = (String::new(), String::new());
            for piece in pieces {
                match piece {
                    Piece::Text(text) => {
                        input.push_str(text);
                        expected.push_str(text);
                    }
                    Piece::Sequence(sequence) => input.push_str(sequence),
                    Piece::Stray { introducer, body } => {
                        input.push_str(&format!("{introducer}{body}\n"));
                        expected.push_str(&format!("{body}\n"));
                    }
                }
            }
            if let Some(Piece::Stray { introducer, body }) = stray_at_end {
                input.push_str(&format!("{introducer}{body}"));
                expected.push_str(body);
            }
            (input, expected)
        }

        fn no_control(text: &str, keep_newlines: bool) -> bool {
            text.chars().all(|c| {
                !(c.is_control() && !(keep_newlines && matches!(c, '\n' | '\t')))
                    && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn sequences_go_and_every_other_printable_character_stays(
                pieces in prop::collection::vec(piece(), 0..12),
                stray_at_end in prop::option::of(stray()),
            ) {
                let (input, expected) = build(&pieces, stray_at_end.as_ref());
                let output = sanitize(&input, usize::MAX, true);
                prop_assert_eq!(&output, &expected, "input {:?}", input);
                prop_assert!(no_control(&output, true));
                let one_line = sanitize(&input, usize::MAX, false);
                prop_assert_eq!(one_line, expected.replace(['\n', '\t'], " "));
            }

            #[test]
            fn no_input_yields_a_control_character(
                input in "(\\PC|[\\x00-\\x1f\\x7f-\\x9f]|\u{202e}|\u{2066}){0,64}",
                keep_newlines: bool,
            ) {
                let output = sanitize(&input, usize::MAX, keep_newlines);
                prop_assert!(no_control(&output, keep_newlines), "{:?} -> {:?}", input, output);
                // Removing is all it does: the output is never longer.
                prop_assert!(output.len() <= input.len());
            }
        }
    }
}
