//! `.env` in the data home: `KEY=VALUE` lines for secrets. Values never
//! appear in errors or logs; errors name the file and the line number only.

use std::collections::BTreeMap;

/// Parse `.env` text. Accepts `KEY=VALUE`, `export KEY=VALUE`, comments
/// (`#`), blank lines, and values in single or double quotes.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "line {}: expected KEY=VALUE (the value is not shown)",
                index + 1
            ));
        };
        let key = key.trim();
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            // The text before `=` may be a pasted secret: never echo it.
            return Err(format!(
                "line {}: expected a variable name (letters, digits, `_`) before `=` (the line is not shown)",
                index + 1
            ));
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|quote| {
                value
                    .strip_prefix(*quote)
                    .and_then(|v| v.strip_suffix(*quote))
            })
            .unwrap_or(value);
        values.insert(key.to_owned(), value.to_owned());
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let values = parse(
            "# secrets\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='single'\nE=\n",
        )
        .unwrap();
        assert_eq!(values["A"], "1");
        assert_eq!(values["B"], "two words");
        assert_eq!(values["C"], "quoted # not a comment");
        assert_eq!(values["D"], "single");
        assert_eq!(values["E"], "");
    }

    #[test]
    fn errors_name_the_line_but_never_the_value() {
        let error = parse("A=1\nsk-secret-value\n").unwrap_err();
        assert_eq!(error, "line 2: expected KEY=VALUE (the value is not shown)");
        assert!(!error.contains("sk-secret"));
        assert_eq!(
            parse("ab+cd/ef==").unwrap_err(),
            "line 1: expected a variable name (letters, digits, `_`) before `=` (the line is not shown)"
        );
    }
}
