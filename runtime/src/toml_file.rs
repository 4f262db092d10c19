//! TOML files (`skill.toml`, `config.toml`, `grants.toml`) parsed with serde,
//! with errors that name the key and the position:
//! ``key `limits.memory_mb`: invalid type: string "64", expected u32 (line 19, column 13)``.

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
    let position = error
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" (line {line}, column {column})")
        })
        .unwrap_or_default();
    let message = error.message().trim_end();
    let described = match key {
        Some(key) => format!("key `{key}`: {message}{position}"),
        None => format!("invalid TOML: {message}{position}"),
    };
    // The message repeats key names and values from the file, and a quoted
    // TOML key may hold any character: a `skill.toml` from an untrusted skill
    // must not reach the operator's terminal with its escape sequences.
    crate::untrusted_text::log_line(&described)
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
    fn errors_never_repeat_control_characters_from_the_file() {
        let text = "name = \"x\"\n\"\\u001b[2J\\u001b]0;pwned\\u0007\\nforged\" = 1\n";
        let error = super::parse::<Table>(text).unwrap_err();
        assert!(!error.contains(['\u{1b}', '\u{7}', '\n']), "{error:?}");
        assert!(error.contains("unknown field"), "{error}");
    }
}
