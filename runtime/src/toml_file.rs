//! TOML files (`skill.toml`, `config.toml`, `grants.toml`) parsed with serde,
//! with errors that name the key and the position:
//! ``key `limits.memory_mb`: invalid type: string "64", expected u32 (line 19, column 13)``;
//! syntax errors name the table they are in, and a table or key defined twice
//! names where it was first.

use std::path::Path;

use serde::de::DeserializeOwned;

/// The TOML file at `path`, or `T::default()` when there is none (an absent
/// `config.toml`, `grants.toml` or `.bundled.toml` is the empty one). Errors
/// name the file.
pub fn load_or_default<T: DeserializeOwned + Default>(path: &Path) -> anyhow::Result<T> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(error) => Err(anyhow::anyhow!("cannot read {}: {error}", path.display())),
    }
}

pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    // Tracking the key path costs as much as the parse itself; a valid file
    // (nearly every one) is parsed without it, and an invalid one parsed
    // again to name the key.
    if let Ok(value) = toml::from_str(text) {
        return Ok(value);
    }
    let deserializer = toml::Deserializer::parse(text).map_err(|e| describe(text, &e, None))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let path = (path != ".").then_some(path);
        describe(text, e.inner(), path.as_deref())
    })
}

fn describe(text: &str, error: &toml::de::Error, key: Option<&str>) -> String {
    let span = error.span();
    let position = span
        .as_ref()
        .map(|span| {
            let (line, column) = line_and_column(text, span.start);
            format!(" (line {line}, column {column})")
        })
        .unwrap_or_default();
    let message = error.message().trim_end();
    let described = match (key, span) {
        (Some(key), _) => format!("key `{key}`: {message}{position}"),
        (None, Some(span)) => describe_syntax(text, span, message, &position),
        (None, None) => format!("invalid TOML: {message}"),
    };
    // The message repeats key names and values from the file, and a quoted
    // TOML key may hold any character: a `skill.toml` from an untrusted skill
    // must not reach the operator's terminal with its escape sequences.
    crate::untrusted_text::log_line(&described)
}

/// A syntax error with the table it lies in. The parser says only
/// `duplicate key`, for a repeated key and for a table defined twice alike
/// (say a `[model]` block pasted below the seeded one), and not where the
/// first one is: both are read back from the text.
fn describe_syntax(
    text: &str,
    span: std::ops::Range<usize>,
    message: &str,
    position: &str,
) -> String {
    let start = span.start.min(text.len());
    let (line, _) = line_and_column(text, start);
    let lines: Vec<&str> = text.lines().collect();
    let header = |index: usize| lines.get(index).and_then(|l| table_header(l));
    let above = 0..line.saturating_sub(1);
    // The table a key line belongs to: the last header above it.
    let section = above.clone().rev().find(|&i| header(i).is_some());
    let table = section.and_then(header);
    let on_header_line = lines
        .get(line.saturating_sub(1))
        .is_some_and(|l| l.trim_start().starts_with('['));
    if message != "duplicate key" {
        return match table {
            // A broken header is in no table yet.
            Some(table) if !on_header_line => {
                format!("invalid TOML in table `{table}`: {message}{position}")
            }
            _ => format!("invalid TOML: {message}{position}"),
        };
    }
    if let Some(repeated) = header(line.saturating_sub(1)) {
        let first = above
            .clone()
            .find(|&i| header(i).as_ref() == Some(&repeated));
        return format!(
            "invalid TOML: duplicate table `{repeated}`{position}{}: keep one `{repeated}` header \
             and put all its keys under it",
            first.map_or_else(String::new, |i| format!(
                ", already defined at line {}",
                i + 1
            ))
        );
    }
    let key = text
        .get(start..span.end.min(text.len()))
        .filter(|key| !key.is_empty() && !key.contains('\n'))
        .unwrap_or("?");
    let first =
        (section.map_or(0, |i| i + 1)..line.saturating_sub(1)).find(|&i| sets_key(lines[i], key));
    format!(
        "invalid TOML: duplicate key `{key}` in {}{position}{}",
        table.map_or_else(
            || "the top-level table".to_owned(),
            |table| format!("table `{table}`")
        ),
        first.map_or_else(String::new, |i| format!(", already set at line {}", i + 1))
    )
}

/// 1-based line and column (in bytes) of `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// `[name]` or `[[name]]` when `line` is a table header, as written.
fn table_header(line: &str) -> Option<String> {
    let line = line.trim_start();
    let (open, close) = if line.starts_with("[[") {
        ("[[", "]]")
    } else if line.starts_with('[') {
        ("[", "]")
    } else {
        return None;
    };
    let name = line[open.len()..].split(close).next()?.trim();
    line[open.len()..]
        .contains(close)
        .then(|| format!("{open}{name}{close}"))
}

/// Whether `line` sets `key` (`key = ...` or a dotted `key.sub = ...`).
fn sets_key(line: &str, key: &str) -> bool {
    line.trim_start()
        .strip_prefix(key)
        .is_some_and(|rest| rest.trim_start().starts_with(['=', '.']))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Table {
        name: String,
    }

    #[test]
    fn a_table_defined_twice_is_named_with_both_lines() {
        // The seeded config.toml of older homes had a bare `[model]` header;
        // a `[model]` block pasted below it defines the table twice.
        let text =
            "[log]\n\n[model]\n# name = \"default\"\n\n[agent]\n\n[model]\nbase_url = \"x\"\n";
        let error = super::parse::<toml::Table>(text).unwrap_err();
        assert_eq!(
            error,
            "invalid TOML: duplicate table `[model]` (line 8, column 2), already defined at line 3: \
             keep one `[model]` header and put all its keys under it"
        );
    }

    #[test]
    fn a_key_set_twice_is_named_with_its_table_and_both_lines() {
        let text = "[model]\nname = \"a\"\nbase_url = \"x\"\nname = \"b\"\n";
        assert_eq!(
            super::parse::<toml::Table>(text).unwrap_err(),
            "invalid TOML: duplicate key `name` in table `[model]` (line 4, column 1), already set at line 2"
        );
        assert_eq!(
            super::parse::<toml::Table>("workspace = \"a\"\nworkspace = \"b\"\n").unwrap_err(),
            "invalid TOML: duplicate key `workspace` in the top-level table (line 2, column 1), already set at line 1"
        );
        assert_eq!(
            super::parse::<toml::Table>("[model]\nname = \"a\n").unwrap_err(),
            "invalid TOML in table `[model]`: invalid basic string, expected `\"` (line 2, column 10)"
        );
    }

    #[test]
    fn the_file_is_named_before_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[model]\n[model]\n").unwrap();
        let error = super::load_or_default::<toml::Table>(&path).unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "{}: invalid TOML: duplicate table `[model]` (line 2",
                path.display()
            )),
            "{error}"
        );
    }

    #[test]
    fn errors_never_repeat_control_characters_from_the_file() {
        let text = "name = \"x\"\n\"\\u001b[2J\\u001b]0;pwned\\u0007\\nforged\" = 1\n";
        let error = super::parse::<Table>(text).unwrap_err();
        assert!(!error.contains(['\u{1b}', '\u{7}', '\n']), "{error:?}");
        assert!(error.contains("unknown field"), "{error}");
    }
}
