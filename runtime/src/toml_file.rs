//! TOML files (`skill.toml`, `config.toml`, `grants.toml`) parsed with serde,
//! with errors that name the key and the position:
//! ``key `limits.memory_mb`: invalid type: string "64", expected u32 (line 19, column 13)``.

use serde::de::DeserializeOwned;

pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, String> {
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
    match key {
        Some(key) => format!("key `{key}`: {message}{position}"),
        None => format!("invalid TOML: {message}{position}"),
    }
}
