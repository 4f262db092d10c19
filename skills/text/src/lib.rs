//! The `text` skill: counting, regex search, find/replace and unified diffs
//! over texts passed in the arguments. Pure functions, no file system.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use similar::TextDiff;
use talaria_sdk::{Capped, ToolError, Toolset, bounded_count, clip, clip_with_note};

/// Texts produced by a tool stay below the host's 1 MiB output cap, leaving
/// room for the JSON around them.
const MAX_OUTPUT_BYTES: usize = 900 * 1024;
const DEFAULT_MAX_MATCHES: usize = 100;
const MAX_MATCHES_LIMIT: usize = 1000;
/// Matched texts and capture groups longer than this are cut, so that a
/// pattern like `(?s).*` does not echo the whole input back.
const MAX_MATCH_TEXT_BYTES: usize = 500;
/// Keeps a pathological pattern from exhausting the skill's memory.
const REGEX_SIZE_LIMIT: usize = 8 * 1024 * 1024;
/// Past this the diff algorithm settles for a correct but possibly longer
/// diff, keeping well inside the skill's time limit.
const DIFF_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_CONTEXT_LINES: usize = 3;
const MAX_CONTEXT_LINES: usize = 10_000;

// ---------------------------------------------------------------- count

/// Arguments of `count`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CountArgs {
    /// The text to measure.
    text: String,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
struct Counts {
    /// Lines as an editor shows them: a final newline does not start a new
    /// line, and an empty text has none.
    lines: usize,
    /// Runs of non-whitespace characters.
    words: usize,
    /// Unicode scalar values.
    characters: usize,
    /// UTF-8 bytes.
    bytes: usize,
}

fn count(args: CountArgs) -> Result<Counts, ToolError> {
    Ok(counts_of(&args.text))
}

fn counts_of(text: &str) -> Counts {
    Counts {
        lines: text.lines().count(),
        words: text.split_whitespace().count(),
        characters: text.chars().count(),
        bytes: text.len(),
    }
}

// ---------------------------------------------------------------- find

/// Arguments of `find`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FindArgs {
    /// The text to search.
    text: String,
    /// Regular expression in Rust `regex` syntax (no look-around or
    /// backreferences). Inline flags work: `(?m)` makes `^`/`$` match at
    /// line boundaries, `(?s)` lets `.` match newlines.
    pattern: String,
    /// Match `pattern` as literal text instead of a regular expression.
    #[serde(default)]
    literal: bool,
    /// Ignore case.
    #[serde(default)]
    case_insensitive: bool,
    /// Most matches to return (default 100, at most 1000).
    #[serde(default)]
    max_matches: Option<usize>,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
struct Found {
    matches: Vec<Match>,
    /// True when more matches exist than were returned.
    truncated: bool,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
struct Match {
    /// 1-based line where the match starts.
    line: usize,
    /// 1-based column (in characters) where the match starts.
    column: usize,
    /// Byte offset of the match start in the text.
    start: usize,
    /// Byte offset just past the match end.
    end: usize,
    text: String,
    /// Numbered capture groups from 1 on; `null` for a group that did not
    /// take part in the match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<Option<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    named: BTreeMap<String, Option<String>>,
}

fn find(args: FindArgs) -> Result<Found, ToolError> {
    let max_matches = bounded_count(
        "max_matches",
        args.max_matches,
        DEFAULT_MAX_MATCHES,
        MAX_MATCHES_LIMIT,
    )?;
    let regex = build_regex(&args.pattern, args.literal, args.case_insensitive)?;
    Ok(find_matches(&args.text, &regex, max_matches))
}

fn find_matches(text: &str, regex: &Regex, max_matches: usize) -> Found {
    let group_names: Vec<Option<&str>> = regex.capture_names().skip(1).collect();
    let mut cursor = LineCursor::default();
    let mut matches = Capped::new(max_matches);
    for captures in regex.captures_iter(text) {
        // Group 0 is the whole match and always present.
        let Some(whole) = captures.get(0) else {
            continue;
        };
        let (line, column) = cursor.advance_to(text, whole.start());
        let mut groups = Vec::with_capacity(group_names.len());
        let mut named = BTreeMap::new();
        for (index, name) in group_names.iter().enumerate() {
            let value = captures
                .get(index + 1)
                .map(|group| clip(group.as_str(), MAX_MATCH_TEXT_BYTES));
            if let Some(name) = name {
                named.insert((*name).to_owned(), value.clone());
            }
            groups.push(value);
        }
        let kept = matches.push(Match {
            line,
            column,
            start: whole.start(),
            end: whole.end(),
            text: clip(whole.as_str(), MAX_MATCH_TEXT_BYTES),
            groups,
            named,
        });
        if kept.is_break() {
            break;
        }
    }
    let (matches, truncated) = matches.into_parts();
    Found { matches, truncated }
}

/// Walks a text forward once, turning byte offsets into line and column
/// numbers without rescanning from the start for every match.
struct LineCursor {
    offset: usize,
    line: usize,
    column: usize,
}

impl Default for LineCursor {
    fn default() -> Self {
        Self {
            offset: 0,
            line: 1,
            column: 1,
        }
    }
}

impl LineCursor {
    /// `offset` must not be before the previous one and must be a char
    /// boundary, which regex match offsets are.
    fn advance_to(&mut self, text: &str, offset: usize) -> (usize, usize) {
        for character in text[self.offset..offset].chars() {
            if character == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.offset = offset;
        (self.line, self.column)
    }
}

// ---------------------------------------------------------------- replace

/// Arguments of `replace`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReplaceArgs {
    /// The text to change.
    text: String,
    /// What to look for: literal text, or a regular expression when `regex`
    /// is true.
    find: String,
    /// What to put instead. With `regex`, `$1` or `${name}` insert capture
    /// groups (write `${1}x` when letters or digits follow, `$$` for a
    /// dollar sign); without `regex` it is inserted verbatim.
    replacement: String,
    /// Treat `find` as a regular expression (Rust `regex` syntax).
    #[serde(default)]
    regex: bool,
    /// Ignore case when matching.
    #[serde(default)]
    case_insensitive: bool,
    /// Replace at most this many matches, from the start (default: all).
    #[serde(default)]
    max_replacements: Option<usize>,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
struct Replaced {
    text: String,
    replacements: usize,
}

fn replace(args: ReplaceArgs) -> Result<Replaced, ToolError> {
    if args.max_replacements == Some(0) {
        return Err(ToolError::invalid_arguments(
            "`max_replacements` must be at least 1; omit it to replace every match",
        ));
    }
    let regex = build_regex(&args.find, !args.regex, args.case_insensitive)?;
    if args.regex {
        check_group_references(&args.replacement, &regex)?;
    }
    replace_matches(
        &args.text,
        &regex,
        &args.replacement,
        args.regex,
        args.max_replacements.unwrap_or(usize::MAX),
    )
}

fn replace_matches(
    text: &str,
    regex: &Regex,
    replacement: &str,
    expand_groups: bool,
    max_replacements: usize,
) -> Result<Replaced, ToolError> {
    let mut output = String::with_capacity(text.len());
    let mut copied_up_to = 0;
    let mut replacements = 0;
    for captures in regex.captures_iter(text).take(max_replacements) {
        let Some(whole) = captures.get(0) else {
            continue;
        };
        output.push_str(&text[copied_up_to..whole.start()]);
        if expand_groups {
            captures.expand(replacement, &mut output);
        } else {
            output.push_str(replacement);
        }
        copied_up_to = whole.end();
        replacements += 1;
        if output.len() > MAX_OUTPUT_BYTES {
            return Err(too_large_result());
        }
    }
    output.push_str(&text[copied_up_to..]);
    if output.len() > MAX_OUTPUT_BYTES {
        return Err(too_large_result());
    }
    Ok(Replaced {
        text: output,
        replacements,
    })
}

fn too_large_result() -> ToolError {
    ToolError::failed(format!(
        "the result would exceed {} KiB; replace in smaller pieces of text or limit `max_replacements`",
        MAX_OUTPUT_BYTES / 1024
    ))
}

/// The regex crate silently inserts nothing for a group that does not exist,
/// and reads `$1a` as a group named `1a`; both are almost always mistakes, so
/// refuse them with a hint instead of returning a quietly wrong text.
fn check_group_references(replacement: &str, regex: &Regex) -> Result<(), ToolError> {
    for reference in group_references(replacement) {
        let exists = match reference.parse::<usize>() {
            Ok(index) => index < regex.captures_len(),
            Err(_) => regex
                .capture_names()
                .flatten()
                .any(|name| name == reference),
        };
        if !exists {
            let groups = regex.captures_len() - 1;
            return Err(ToolError::invalid_arguments(format!(
                "`replacement` refers to group `{reference}`, but the pattern has {groups} numbered group(s){}; \
                 write `${{1}}x` when a group is followed by letters or digits, and `$$` for a literal `$`",
                named_groups_hint(regex)
            )));
        }
    }
    Ok(())
}

fn named_groups_hint(regex: &Regex) -> String {
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" and named group(s) {}", names.join(", "))
    }
}

/// Group names referenced by `$name`, `${name}` or `$1` in a replacement, in
/// the same way the regex crate reads them.
fn group_references(replacement: &str) -> Vec<&str> {
    let mut references = Vec::new();
    let mut rest = replacement;
    while let Some(dollar) = rest.find('$') {
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            // An unclosed brace is copied literally by the regex crate.
            if let Some(close) = braced.find('}') {
                references.push(&braced[..close]);
                rest = &braced[close + 1..];
            }
        } else {
            let name_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if name_len > 0 {
                references.push(&rest[..name_len]);
                rest = &rest[name_len..];
            }
        }
    }
    references
}

// ---------------------------------------------------------------- diff

/// Arguments of `diff`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DiffArgs {
    /// The original text.
    old: String,
    /// The changed text.
    new: String,
    /// Unchanged lines shown around each change (default 3).
    #[serde(default)]
    context_lines: Option<usize>,
    /// Name of the original in the `---` header (default "old").
    #[serde(default)]
    old_label: Option<String>,
    /// Name of the changed text in the `+++` header (default "new").
    #[serde(default)]
    new_label: Option<String>,
}

fn diff(args: DiffArgs) -> Result<String, ToolError> {
    let context_lines = args.context_lines.unwrap_or(DEFAULT_CONTEXT_LINES);
    if context_lines > MAX_CONTEXT_LINES {
        return Err(ToolError::invalid_arguments(format!(
            "`context_lines` must be at most {MAX_CONTEXT_LINES}"
        )));
    }
    let old_label = args.old_label.as_deref().unwrap_or("old");
    let new_label = args.new_label.as_deref().unwrap_or("new");
    for label in [old_label, new_label] {
        if label.contains(['\n', '\r']) {
            return Err(ToolError::invalid_arguments(
                "`old_label` and `new_label` must be single lines",
            ));
        }
    }
    Ok(unified_diff(
        &args.old,
        &args.new,
        context_lines,
        old_label,
        new_label,
    ))
}

fn unified_diff(
    old: &str,
    new: &str,
    context_lines: usize,
    old_label: &str,
    new_label: &str,
) -> String {
    let diff = TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(context_lines)
        .header(old_label, new_label)
        .to_string();
    if text.is_empty() {
        return "No differences: the texts are identical.".to_owned();
    }
    clip_with_note(
        text,
        MAX_OUTPUT_BYTES,
        "diff truncated",
        "diff smaller pieces or lower `context_lines`",
    )
}

// ---------------------------------------------------------------- shared

fn build_regex(pattern: &str, literal: bool, case_insensitive: bool) -> Result<Regex, ToolError> {
    if pattern.is_empty() {
        return Err(ToolError::invalid_arguments(
            "the pattern is empty; give the text or regular expression to look for",
        ));
    }
    let source = if literal {
        regex::escape(pattern)
    } else {
        pattern.to_owned()
    };
    RegexBuilder::new(&source)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|error| {
            ToolError::invalid_arguments(format!(
                "invalid regular expression: {error}\n(Rust `regex` syntax: no look-around or backreferences; \
                 escape special characters with `\\` or set `literal`)"
            ))
        })
}

fn tools() -> Toolset {
    Toolset::new()
        .tool(
            "count",
            "Count the lines, words, characters and bytes of a text.",
            count,
        )
        .tool(
            "find",
            "Find regular-expression (or literal) matches in a text; returns each match with its line, column, \
             byte offsets and capture groups.",
            find,
        )
        .tool(
            "replace",
            "Replace literal text or regular-expression matches in a text (with `$1`/`${name}` group references \
             in regex mode); returns the new text and the number of replacements.",
            replace,
        )
        .tool(
            "diff",
            "Unified diff (like `diff -u`) between two texts, with configurable context lines and header labels.",
            diff,
        )
}

talaria_sdk::export_skill!(tools);

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(pattern: &str) -> Regex {
        build_regex(pattern, false, false).unwrap()
    }

    #[test]
    fn counts_lines_words_characters_and_bytes() {
        assert_eq!(
            counts_of("héllo wörld\nsecond line\n"),
            Counts {
                lines: 2,
                words: 4,
                characters: 24,
                bytes: 26
            }
        );
        assert_eq!(counts_of("no newline").lines, 1);
        assert_eq!(counts_of("").lines, 0);
        assert_eq!(counts_of("\n\n").lines, 2);
        assert_eq!(counts_of("  \t ").words, 0);
    }

    #[test]
    fn find_reports_lines_columns_offsets_and_groups() {
        let text = "alpha=1\nbéta=22\ngamma";
        let found = find_matches(text, &regex(r"(?<key>\w+)=(\d+)"), 10);
        assert!(!found.truncated);
        assert_eq!(found.matches.len(), 2);
        let second = &found.matches[1];
        assert_eq!((second.line, second.column), (2, 1));
        assert_eq!(&text[second.start..second.end], "béta=22");
        assert_eq!(second.text, "béta=22");
        assert_eq!(
            second.groups,
            vec![Some("béta".to_owned()), Some("22".to_owned())]
        );
        assert_eq!(second.named["key"], Some("béta".to_owned()));

        let found = find_matches("aé b", &regex("b"), 10);
        assert_eq!((found.matches[0].line, found.matches[0].column), (1, 4));
        assert_eq!(found.matches[0].start, 4);
    }

    #[test]
    fn find_marks_optional_groups_that_did_not_match() {
        let found = find_matches("ab", &regex("a(x)?(b)"), 10);
        assert_eq!(found.matches[0].groups, vec![None, Some("b".to_owned())]);
        let json = serde_json::to_string(&found.matches[0]).unwrap();
        assert!(json.contains(r#""groups":[null,"b"]"#), "{json}");
        assert!(!json.contains("named"), "{json}");
    }

    #[test]
    fn find_stops_at_the_limit() {
        let found = find_matches("a a a a", &regex("a"), 3);
        assert_eq!(found.matches.len(), 3);
        assert!(found.truncated);
        let found = find_matches("a a a", &regex("a"), 3);
        assert!(!found.truncated);
    }

    #[test]
    fn find_clips_long_matches() {
        let text = "x".repeat(2000);
        let found = find_matches(&text, &regex("(?s).*"), 10);
        assert_eq!(found.matches[0].end, 2000);
        assert!(found.matches[0].text.ends_with('…'));
        assert!(found.matches[0].text.len() <= MAX_MATCH_TEXT_BYTES + '…'.len_utf8());
    }

    #[test]
    fn literal_and_case_insensitive_patterns() {
        let literal = build_regex("a.b", true, false).unwrap();
        assert_eq!(find_matches("axb a.b", &literal, 10).matches.len(), 1);
        let folded = build_regex("HELLO", true, true).unwrap();
        assert_eq!(find_matches("hello Hello", &folded, 10).matches.len(), 2);
    }

    #[test]
    fn invalid_patterns_explain_the_syntax() {
        let error = build_regex("(a", false, false).unwrap_err();
        assert!(matches!(error, ToolError::InvalidArguments(_)));
        assert!(error.message().contains("literal"), "{error}");
        assert!(build_regex("", false, false).is_err());
        assert!(build_regex("(?<=a)b", false, false).is_err());
    }

    #[test]
    fn max_matches_is_bounded() {
        let args = |max| FindArgs {
            text: "a".into(),
            pattern: "a".into(),
            literal: false,
            case_insensitive: false,
            max_matches: max,
        };
        assert!(find(args(Some(0))).is_err());
        assert!(find(args(Some(MAX_MATCHES_LIMIT + 1))).is_err());
        assert_eq!(find(args(None)).unwrap().matches.len(), 1);
    }

    fn replace_args(text: &str, find: &str, replacement: &str, regex: bool) -> ReplaceArgs {
        ReplaceArgs {
            text: text.into(),
            find: find.into(),
            replacement: replacement.into(),
            regex,
            case_insensitive: false,
            max_replacements: None,
        }
    }

    #[test]
    fn literal_replace_inserts_the_replacement_verbatim() {
        let replaced = replace(replace_args("a.b a.b axb", "a.b", "$1", false)).unwrap();
        assert_eq!(
            replaced,
            Replaced {
                text: "$1 $1 axb".into(),
                replacements: 2
            }
        );
    }

    #[test]
    fn regex_replace_expands_groups() {
        let replaced = replace(replace_args(
            "x=1, y=22",
            r"(\w)=(?<n>\d+)",
            "${n}:$1 $$",
            true,
        ))
        .unwrap();
        assert_eq!(replaced.text, "1:x $, 22:y $");
        assert_eq!(replaced.replacements, 2);
    }

    #[test]
    fn replace_honours_the_limit_and_case() {
        let mut args = replace_args("A a A a", "a", "b", false);
        args.case_insensitive = true;
        args.max_replacements = Some(3);
        let replaced = replace(args).unwrap();
        assert_eq!(replaced.text, "b b b a");
        assert_eq!(replaced.replacements, 3);

        let mut args = replace_args("a", "a", "b", false);
        args.max_replacements = Some(0);
        assert!(replace(args).is_err());
    }

    #[test]
    fn replace_without_matches_returns_the_text_unchanged() {
        let replaced = replace(replace_args("abc", "z", "y", false)).unwrap();
        assert_eq!(replaced.text, "abc");
        assert_eq!(replaced.replacements, 0);
    }

    #[test]
    fn replace_refuses_unknown_group_references() {
        let error = replace(replace_args("ab", "(a)", "$2", true)).unwrap_err();
        assert!(error.message().contains("group `2`"), "{error}");
        let error = replace(replace_args("ab", "(a)", "$1b", true)).unwrap_err();
        assert!(error.message().contains("`${1}x`"), "{error}");
        let error = replace(replace_args("ab", "(?<x>a)", "${y}", true)).unwrap_err();
        assert!(error.message().contains("named group(s) x"), "{error}");
        assert!(replace(replace_args("ab", "(a)", "${1}b $$2 ${", true)).is_ok());
    }

    #[test]
    fn group_references_are_read_like_the_regex_crate_does() {
        assert_eq!(
            group_references("$1 ${name}x $$ $a_b-c $ ${open"),
            vec!["1", "name", "a_b"]
        );
    }

    #[test]
    fn replace_refuses_results_over_the_output_limit() {
        let text = "a".repeat(1000);
        let replacement = "b".repeat(1000);
        let error = replace(replace_args(&text, "a", &replacement, false)).unwrap_err();
        assert!(error.message().contains("KiB"), "{error}");
    }

    #[test]
    fn unified_diff_has_headers_hunks_and_context() {
        let old = "one\ntwo\nthree\nfour\nfive\nsix\nseven\n";
        let new = "one\ntwo\nthree\nFOUR\nfive\nsix\nseven\n";
        let diff = unified_diff(old, new, 1, "a/file.txt", "b/file.txt");
        assert_eq!(
            diff,
            "--- a/file.txt\n+++ b/file.txt\n@@ -3,3 +3,3 @@\n three\n-four\n+FOUR\n five\n"
        );
        let wide = unified_diff(old, new, 3, "old", "new");
        assert!(wide.contains("@@ -1,7 +1,7 @@"), "{wide}");
    }

    #[test]
    fn unified_diff_marks_a_missing_final_newline() {
        let diff = unified_diff("a\n", "a\nb", 3, "old", "new");
        assert!(diff.contains("+b\n\\ No newline at end of file"), "{diff}");
    }

    #[test]
    fn identical_texts_say_so() {
        assert!(unified_diff("same\n", "same\n", 3, "old", "new").starts_with("No differences"));
    }

    #[test]
    fn diff_rejects_multi_line_labels() {
        let args = DiffArgs {
            old: "a".into(),
            new: "b".into(),
            context_lines: None,
            old_label: Some("x\ny".into()),
            new_label: None,
        };
        assert!(diff(args).is_err());
    }

    #[test]
    fn tool_schemas_describe_the_arguments() {
        let descriptions: Vec<_> = tools().descriptions().collect();
        let names: Vec<&str> = descriptions.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(names, ["count", "find", "replace", "diff"]);
        let (_, _, schema) = &descriptions[2];
        let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
        assert_eq!(
            schema["required"],
            serde_json::json!(["text", "find", "replacement"])
        );
        assert_eq!(schema["additionalProperties"], false);
    }
}
