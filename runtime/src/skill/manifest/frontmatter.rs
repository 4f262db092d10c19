//! The YAML frontmatter of an Agent Skills `SKILL.md`: the small subset of
//! YAML that format uses, parsed without a YAML library. Between a first
//! line `---` and the next `---`: top-level `key: value` lines, where a
//! value is a plain, single- or double-quoted scalar, a `|` or `>` block,
//! a list (`[a, b]` or `- a` lines) or, for `metadata`, a map of strings
//! (indented `key: value` lines or `{a: b}`). Keys other agents add are
//! kept as written, never fatal.
//!
//! Bounds (the Agent Skills rules): `name` is 1 to 64 characters of `a-z`,
//! `0-9` and `-`, not starting or ending with `-`, without `--`, equal to
//! the folder's name; `description` is one line of 1 to 1024 characters
//! without control characters; `compatibility` at most 500 characters.

use std::collections::BTreeMap;

use super::validate::MAX_DESCRIPTION_CHARS;

/// The most bytes a frontmatter may hold.
const MAX_FRONTMATTER_BYTES: usize = 64 * 1024;
const MAX_NAME_CHARS: usize = 64;
const MAX_COMPATIBILITY_CHARS: usize = 500;

/// What the frontmatter says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontmatter {
    pub name: String,
    pub description: String,
    pub license: Option<String>,
    /// Environment needs, in the author's words.
    pub compatibility: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// `allowed-tools` (experimental in the format; shown, not enforced).
    pub allowed_tools: Vec<String>,
    /// Keys other agents add, with their values as written.
    pub other: BTreeMap<String, String>,
    /// Where the Markdown after the frontmatter starts, in bytes of the
    /// text as given.
    pub body_offset: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontmatterError {
    #[error(
        "no frontmatter: SKILL.md must start with a line `---`, then `name:` and `description:` lines, then `---`"
    )]
    Missing,
    #[error("the frontmatter is not closed: expected a line `---` after it")]
    Unclosed,
    #[error("the frontmatter is larger than {MAX_FRONTMATTER_BYTES} bytes")]
    TooLarge,
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("key `{key}`: {message}")]
    Field { key: String, message: String },
}

fn field(key: &str, message: impl Into<String>) -> FrontmatterError {
    FrontmatterError::Field {
        key: key.to_owned(),
        message: message.into(),
    }
}

fn syntax(line: usize, message: impl Into<String>) -> FrontmatterError {
    FrontmatterError::Syntax {
        line,
        message: message.into(),
    }
}

/// One top-level key with what follows it: the rest of its line and the
/// indented lines below.
struct Entry<'a> {
    key: &'a str,
    /// 1-based line of the key, counting the opening `---` as line 1.
    line: usize,
    inline: &'a str,
    block: Vec<&'a str>,
}

/// Parse the frontmatter of `text` (a whole `SKILL.md`) for the skill in
/// the folder named `folder`.
pub fn parse(text: &str, folder: &str) -> Result<Frontmatter, FrontmatterError> {
    let start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let text_after_bom = &text[start..];
    let mut lines = text_after_bom.split_inclusive('\n');
    let first = lines.next().ok_or(FrontmatterError::Missing)?;
    if first.trim_end() != "---" {
        return Err(FrontmatterError::Missing);
    }
    let mut offset = start + first.len();
    let mut inside = Vec::new();
    let mut closed = false;
    for line in lines {
        offset += line.len();
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare.trim_end() == "---" || bare.trim_end() == "..." {
            closed = true;
            break;
        }
        inside.push(bare);
        if offset > MAX_FRONTMATTER_BYTES {
            return Err(FrontmatterError::TooLarge);
        }
    }
    if !closed {
        return Err(FrontmatterError::Unclosed);
    }
    let entries = entries(&inside)?;
    let mut seen = BTreeMap::new();
    let mut frontmatter = Frontmatter {
        body_offset: offset,
        ..Frontmatter::default()
    };
    for entry in &entries {
        if seen.insert(entry.key, entry.line).is_some() {
            return Err(syntax(
                entry.line,
                format!("key `{}` appears twice", entry.key),
            ));
        }
        match entry.key {
            "name" => frontmatter.name = scalar(entry)?,
            "description" => frontmatter.description = scalar(entry)?,
            "license" => frontmatter.license = Some(scalar(entry)?),
            "compatibility" => frontmatter.compatibility = Some(scalar(entry)?),
            "metadata" => frontmatter.metadata = map(entry)?,
            "allowed-tools" => frontmatter.allowed_tools = list(entry)?,
            other => {
                let mut written = entry.inline.trim().to_owned();
                for line in &entry.block {
                    written.push('\n');
                    written.push_str(line);
                }
                frontmatter.other.insert(other.to_owned(), written);
            }
        }
    }
    check(&mut frontmatter, folder, &seen)?;
    Ok(frontmatter)
}

/// The top-level entries of the lines between the `---`s.
fn entries<'a>(lines: &[&'a str]) -> Result<Vec<Entry<'a>>, FrontmatterError> {
    let mut entries: Vec<Entry<'a>> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let number = index + 2;
        if line.starts_with('\t') {
            return Err(syntax(
                number,
                "indented with a tab; YAML indents with spaces",
            ));
        }
        let top_level = !line.starts_with(' ') && !line.is_empty();
        if top_level && line.starts_with('#') {
            continue;
        }
        // A list at its key's own indent (`tags:` then `- a`, as PyYAML
        // writes it) belongs to that key.
        if top_level && (line.trim_end() == "-" || line.starts_with("- ")) {
            match entries.last_mut() {
                Some(entry) if entry.inline.trim().is_empty() => {
                    entry.block.push(line);
                    continue;
                }
                _ => {
                    return Err(syntax(
                        number,
                        "a list item `- ` after a key that has a value",
                    ));
                }
            }
        }
        if !top_level {
            match entries.last_mut() {
                Some(entry) => entry.block.push(line),
                None if line.trim().is_empty() || line.trim_start().starts_with('#') => {}
                None => return Err(syntax(number, "an indented line before any key")),
            }
            continue;
        }
        let Some((key, inline)) = line.split_once(':') else {
            return Err(syntax(
                number,
                format!("expected `key: value`, found {line:?}"),
            ));
        };
        let key = key.trim_end();
        let valid_key = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !valid_key || !(inline.is_empty() || inline.starts_with(' ')) {
            return Err(syntax(
                number,
                format!("expected `key: value`, found {line:?}"),
            ));
        }
        entries.push(Entry {
            key,
            line: number,
            inline,
            block: Vec::new(),
        });
    }
    Ok(entries)
}

/// A string value: plain, quoted or a block.
fn scalar(entry: &Entry<'_>) -> Result<String, FrontmatterError> {
    let inline = entry.inline.trim();
    let block: Vec<&str> = entry
        .block
        .iter()
        .copied()
        .filter(|line| !line.trim_start().starts_with('#') || line.trim().is_empty())
        .collect();
    if let Some(indicator) = inline
        .strip_prefix('|')
        .map(|rest| ('|', rest))
        .or_else(|| inline.strip_prefix('>').map(|rest| ('>', rest)))
    {
        return Ok(block_scalar(indicator.0, indicator.1.trim(), &entry.block));
    }
    // A quoted text may go on over the next lines (PyYAML wraps long
    // ones): each line break is a space, an empty line a newline.
    let quoted = || {
        let mut joined = inline.to_owned();
        for line in &entry.block {
            let line = line.trim();
            if line.is_empty() {
                joined.push('\n');
            } else {
                if !joined.ends_with('\n') {
                    joined.push(' ');
                }
                joined.push_str(line);
            }
        }
        joined
    };
    if inline.starts_with('"') {
        return double_quoted(&quoted()[1..], entry);
    }
    if inline.starts_with('\'') {
        return single_quoted(&quoted()[1..], entry);
    }
    if inline.starts_with('[') || inline.starts_with('{') {
        return Err(field(entry.key, "expected text, found a list or a map"));
    }
    // A plain scalar: continuation lines fold into one line.
    let mut words = vec![strip_comment(inline)];
    for line in block {
        let line = line.trim();
        if line.starts_with("- ") && words.iter().all(|w| w.is_empty()) {
            return Err(field(entry.key, "expected text, found a list"));
        }
        words.push(line);
    }
    Ok(words
        .into_iter()
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" "))
}

/// `text` without a trailing ` # comment`.
fn strip_comment(text: &str) -> &str {
    match text.find(" #") {
        Some(index) => text[..index].trim_end(),
        None if text.starts_with('#') => "",
        None => text,
    }
}

/// A `|` (literal) or `>` (folded) block with its chomping indicator.
fn block_scalar(style: char, chomping: &str, lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let content: Vec<&str> = lines
        .iter()
        .map(|line| line.get(indent..).unwrap_or(""))
        .collect();
    let mut text = String::new();
    for (index, line) in content.iter().enumerate() {
        if index > 0 {
            let previous_blank = content[index - 1].is_empty();
            // Folded: lines join with a space; an empty line is the one
            // newline between them.
            let separator = if style == '|' || line.is_empty() {
                "\n"
            } else if previous_blank {
                ""
            } else {
                " "
            };
            text.push_str(separator);
        }
        text.push_str(line);
    }
    let body = text.trim_end_matches('\n');
    match chomping {
        "-" => body.to_owned(),
        "+" => format!("{text}\n"),
        _ if body.is_empty() => String::new(),
        _ => format!("{body}\n"),
    }
}

fn double_quoted(rest: &str, entry: &Entry<'_>) -> Result<String, FrontmatterError> {
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let after = chars.as_str().trim();
                if !after.is_empty() && !after.starts_with('#') {
                    return Err(field(
                        entry.key,
                        format!("text after the closing quote: {after:?}"),
                    ));
                }
                return Ok(value);
            }
            '\\' => match chars.next() {
                Some('"') => value.push('"'),
                Some('\\') => value.push('\\'),
                Some('/') => value.push('/'),
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                other => {
                    return Err(field(
                        entry.key,
                        format!(
                            "unsupported escape `\\{}` in a double-quoted value",
                            other.unwrap_or(' ')
                        ),
                    ));
                }
            },
            c => value.push(c),
        }
    }
    Err(field(entry.key, "the double quote is not closed"))
}

fn single_quoted(rest: &str, entry: &Entry<'_>) -> Result<String, FrontmatterError> {
    let mut value = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                value.push('\'');
                continue;
            }
            let after: String = chars.collect();
            let after = after.trim();
            if !after.is_empty() && !after.starts_with('#') {
                return Err(field(
                    entry.key,
                    format!("text after the closing quote: {after:?}"),
                ));
            }
            return Ok(value);
        }
        value.push(c);
    }
    Err(field(entry.key, "the single quote is not closed"))
}

/// One item of a flow list or map: trimmed and unquoted.
fn unquote(item: &str) -> String {
    let item = item.trim();
    for quote in ['"', '\''] {
        if item.len() >= 2 && item.starts_with(quote) && item.ends_with(quote) {
            return item[1..item.len() - 1].to_owned();
        }
    }
    item.to_owned()
}

/// A list item or a map value: quoted text as quoted (a `#` inside it is
/// text), else the text without a trailing comment.
fn item_text(item: &str) -> String {
    let item = item.trim();
    if let Some(rest) = item.strip_prefix('\'') {
        // `''` is a quote inside.
        let mut text = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    text.push('\'');
                }
                '\'' => return text,
                c => text.push(c),
            }
        }
    } else if let Some(rest) = item.strip_prefix('"') {
        let mut text = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some(other) => text.push(other),
                    None => break,
                },
                '"' => return text,
                c => text.push(c),
            }
        }
    }
    strip_comment(item).to_owned()
}

/// `allowed-tools`: a space-separated string, `[a, b]`, or `- a` lines.
fn list(entry: &Entry<'_>) -> Result<Vec<String>, FrontmatterError> {
    let inline = strip_comment(entry.inline.trim());
    if let Some(inner) = inline.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| field(entry.key, "the list `[` is not closed on its line"))?;
        return Ok(inner
            .split(',')
            .map(unquote)
            .filter(|item| !item.is_empty())
            .collect());
    }
    if inline.is_empty() {
        let mut items = Vec::new();
        for line in &entry.block {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let item = line.strip_prefix("- ").ok_or_else(|| {
                field(
                    entry.key,
                    format!("expected `- item` lines, found {line:?}"),
                )
            })?;
            items.push(item_text(item));
        }
        return Ok(items);
    }
    Ok(scalar(entry)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// `metadata`: indented `key: value` lines, or `{a: b, c: d}`.
fn map(entry: &Entry<'_>) -> Result<BTreeMap<String, String>, FrontmatterError> {
    let inline = strip_comment(entry.inline.trim());
    let mut map = BTreeMap::new();
    let mut add = |key: &str, value: &str| -> Result<(), FrontmatterError> {
        let key = unquote(key);
        let value = item_text(value);
        if key.is_empty() {
            return Err(field(entry.key, "an entry without a key"));
        }
        if map.insert(key.clone(), value).is_some() {
            return Err(field(entry.key, format!("`{key}` appears twice")));
        }
        Ok(())
    };
    if let Some(inner) = inline.strip_prefix('{') {
        let inner = inner
            .strip_suffix('}')
            .ok_or_else(|| field(entry.key, "the map `{` is not closed on its line"))?;
        for item in inner.split(',').filter(|item| !item.trim().is_empty()) {
            let (key, value) = item.split_once(':').ok_or_else(|| {
                field(
                    entry.key,
                    format!("expected `key: value`, found {:?}", item.trim()),
                )
            })?;
            add(key, value)?;
        }
        return Ok(map);
    }
    if !inline.is_empty() {
        return Err(field(
            entry.key,
            "expected a map of `key: value` lines, found text",
        ));
    }
    for line in &entry.block {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (key, value) = trimmed.split_once(':').ok_or_else(|| {
            field(
                entry.key,
                format!("expected `key: value`, found {trimmed:?}"),
            )
        })?;
        if value.trim_start().starts_with(['|', '>', '[', '{']) || value.trim().is_empty() {
            return Err(field(
                &format!("{}.{}", entry.key, key.trim()),
                "expected text on the same line (metadata is a map of strings)",
            ));
        }
        add(key, value)?;
    }
    Ok(map)
}

/// Whether `name` is an Agent Skills name.
pub fn is_skill_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn check(
    frontmatter: &mut Frontmatter,
    folder: &str,
    seen: &BTreeMap<&str, usize>,
) -> Result<(), FrontmatterError> {
    for key in ["name", "description"] {
        if !seen.contains_key(key) {
            return Err(field(key, "missing field"));
        }
    }
    let name = &frontmatter.name;
    if !is_skill_name(name) {
        return Err(field(
            "name",
            format!(
                "expected 1 to {MAX_NAME_CHARS} characters of a-z, 0-9 and `-`, not starting or ending with `-`, without `--`, found {name:?}"
            ),
        ));
    }
    if name != folder {
        return Err(field(
            "name",
            format!("expected the folder's name {folder:?}, found {name:?}"),
        ));
    }
    let description = frontmatter.description.trim_end_matches('\n').to_owned();
    let chars = description.chars().count();
    if !(1..=MAX_DESCRIPTION_CHARS).contains(&chars) || description.chars().any(char::is_control) {
        return Err(field(
            "description",
            format!(
                "expected one line of 1 to {MAX_DESCRIPTION_CHARS} characters without control characters, found {chars} characters{}",
                if description.chars().any(char::is_control) {
                    " with control characters"
                } else {
                    ""
                }
            ),
        ));
    }
    frontmatter.description = description;
    if let Some(compatibility) = &frontmatter.compatibility {
        let chars = compatibility.chars().count();
        if chars > MAX_COMPATIBILITY_CHARS {
            return Err(field(
                "compatibility",
                format!("expected at most {MAX_COMPATIBILITY_CHARS} characters, found {chars}"),
            ));
        }
    }
    for (key, value) in &frontmatter.metadata {
        if key.chars().chain(value.chars()).any(char::is_control) {
            return Err(field(&format!("metadata.{key}"), "control characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Frontmatter {
        parse(text, "pdf").unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn error(text: &str) -> String {
        parse(text, "pdf").unwrap_err().to_string()
    }

    #[test]
    fn the_forms_skills_are_written_in_parse() {
        let plain = ok(
            "---\nname: pdf\ndescription: Read and fill PDF forms. Use when a PDF is involved.\n---\n# PDF\n",
        );
        assert_eq!(
            plain.description,
            "Read and fill PDF forms. Use when a PDF is involved."
        );
        assert_eq!(
            &"---\nname: pdf\ndescription: Read and fill PDF forms. Use when a PDF is involved.\n---\n# PDF\n"
                [plain.body_offset..],
            "# PDF\n"
        );

        let rich = ok(
            "\u{feff}---\r\nname: \"pdf\"\r\ndescription: >\r\n  Read PDFs,\r\n  fill forms.\r\nlicense: 'Apache-2.0' # SPDX\r\ncompatibility: needs python3 and pdftotext\r\nmetadata:\r\n  author: example-org\r\n  version: \"1.2\"\r\nallowed-tools: Bash(python:*) Read\r\nx-hermes-category: documents\r\n---\r\nbody",
        );
        assert_eq!(rich.name, "pdf");
        assert_eq!(rich.description, "Read PDFs, fill forms.");
        assert_eq!(rich.license.as_deref(), Some("Apache-2.0"));
        assert_eq!(rich.metadata["version"], "1.2");
        assert_eq!(rich.metadata["author"], "example-org");
        assert_eq!(rich.allowed_tools, ["Bash(python:*)", "Read"]);
        assert_eq!(rich.other["x-hermes-category"], "documents");

        let lists = ok(
            "---\nname: pdf\ndescription: |-\n  One line.\nallowed-tools:\n  - Read\n  - 'Write'\nmetadata: {a: b, \"c\": 'd'}\ntags: [x, y]\n---\n",
        );
        assert_eq!(lists.description, "One line.");
        assert_eq!(lists.allowed_tools, ["Read", "Write"]);
        assert_eq!(lists.metadata.len(), 2);
        assert_eq!(lists.other["tags"], "[x, y]");

        let pyyaml = ok(
            "---\nname: pdf\ndescription: \"A long description that PyYAML\n  wrapped over two lines\"\nallowed-tools:\n- Bash(git:*)\n- Read\ntags:\n- a\nmetadata:\n  author: \"A # B\" # the author\n---\n",
        );
        assert_eq!(
            pyyaml.description,
            "A long description that PyYAML wrapped over two lines"
        );
        assert_eq!(pyyaml.allowed_tools, ["Bash(git:*)", "Read"]);
        assert_eq!(pyyaml.metadata["author"], "A # B");
        let escaped = ok(
            "---\nname: pdf\ndescription: x\nmetadata:\n  a: 'it''s'\n  b: \"say \\\"hi\\\"\"\n---\n",
        );
        assert_eq!(escaped.metadata["a"], "it's");
        assert_eq!(escaped.metadata["b"], "say \"hi\"");
        assert_eq!(pyyaml.other["tags"], "\n- a");
        let paragraphs =
            ok("---\nname: pdf\ndescription: x\nlicense: >\n  one\n  two\n\n  three\n---\n");
        assert_eq!(paragraphs.license.as_deref(), Some("one two\nthree\n"));

        let folded = ok(
            "---\nname: pdf\ndescription: a long description\n  continued here # not a comment inside\n---\n",
        );
        assert_eq!(
            folded.description,
            "a long description continued here # not a comment inside"
        );
    }

    #[test]
    fn malformed_frontmatter_is_named_by_field_or_line() {
        let cases = [
            ("# PDF\n", "no frontmatter"),
            ("---\nname: pdf\ndescription: x\n", "not closed"),
            ("---\ndescription: x\n---\n", "key `name`: missing field"),
            ("---\nname: pdf\n---\n", "key `description`: missing field"),
            (
                "---\nname: PDF\ndescription: x\n---\n",
                "key `name`: expected 1 to 64 characters",
            ),
            (
                "---\nname: -pdf\ndescription: x\n---\n",
                "key `name`: expected",
            ),
            (
                "---\nname: p--df\ndescription: x\n---\n",
                "key `name`: expected",
            ),
            (
                "---\nname: word\ndescription: x\n---\n",
                "expected the folder's name \"pdf\", found \"word\"",
            ),
            (
                "---\nname: pdf\ndescription: x\nname: pdf\n---\n",
                "line 4: key `name` appears twice",
            ),
            (
                "---\nname: pdf\ndescription: |\n  two\n  lines\n---\n",
                "key `description`: expected one line",
            ),
            (
                "---\nname: pdf\ndescription: \"tab\\tinside\"\n---\n",
                "with control characters",
            ),
            (
                "---\nname: pdf\ndescription: \"open\n---\n",
                "key `description`: the double quote is not closed",
            ),
            (
                "---\nname: pdf\n\tdescription: x\n---\n",
                "line 3: indented with a tab",
            ),
            (
                "---\nname: pdf\ndescription: x\nmetadata: text\n---\n",
                "key `metadata`: expected a map",
            ),
            (
                "---\nname: pdf\ndescription: x\nmetadata:\n  nested:\n    deep: 1\n---\n",
                "key `metadata.nested`",
            ),
        ];
        for (text, expected) in cases {
            let message = error(text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
        let long = format!("---\nname: pdf\ndescription: {}\n---\n", "d".repeat(2048));
        assert!(error(&long).contains("found 2048 characters"));
        let name = "a".repeat(65);
        assert!(parse(&format!("---\nname: {name}\ndescription: x\n---\n"), &name).is_err());
        assert!(is_skill_name(&"a".repeat(64)));
    }

    /// The messages an author sees, pinned: each names the key or line.
    #[test]
    fn error_messages_are_pinned() {
        let cases = [
            ("no_frontmatter", "# PDF\nJust Markdown.\n".to_owned()),
            ("unclosed", "---\nname: pdf\ndescription: x\n".to_owned()),
            ("missing_name", "---\ndescription: x\n---\n".to_owned()),
            (
                "name_uppercase",
                "---\nname: PDF\ndescription: x\n---\n".to_owned(),
            ),
            (
                "name_mismatch",
                "---\nname: word\ndescription: x\n---\n".to_owned(),
            ),
            (
                "duplicate_key",
                "---\nname: pdf\ndescription: x\nname: pdf\n---\n".to_owned(),
            ),
            (
                "description_2kb",
                format!("---\nname: pdf\ndescription: {}\n---\n", "d".repeat(2048)),
            ),
            (
                "description_control_chars",
                "---\nname: pdf\ndescription: \"bell\\u0007\"\n---\n".replace("\\u0007", "\u{7}"),
            ),
            (
                "compatibility_501",
                format!(
                    "---\nname: pdf\ndescription: x\ncompatibility: {}\n---\n",
                    "c".repeat(501)
                ),
            ),
            (
                "metadata_not_a_map",
                "---\nname: pdf\ndescription: x\nmetadata: text\n---\n".to_owned(),
            ),
            (
                "unterminated_quote",
                "---\nname: pdf\ndescription: 'open\n---\n".to_owned(),
            ),
        ];
        for (name, text) in cases {
            insta::assert_snapshot!(name, error(&text));
        }
    }
}
