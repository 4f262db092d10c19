//! The API key of the gateway: required on every request but `/health`,
//! loopback included (any local process or web page can reach loopback).
//!
//! The key is `TALARIA_API_KEY` in the process environment or the home's
//! `.env`. On a first start without one, a random key is generated into
//! `.env` (mode 0600) and the log says where it is, never what it is. A key
//! shorter than [`MIN_KEY_CHARS`] or one that looks like a placeholder is
//! refused: a gateway that starts with `changeme` is worse than one that
//! does not start.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::Environment;
use crate::home::{Home, write_atomically};

pub const KEY_VARIABLE: &str = "TALARIA_API_KEY";
pub const MIN_KEY_CHARS: usize = 16;

/// Parts of keys copied from examples and templates.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "your-key",
    "your_key",
    "yourkey",
    "your-api-key",
    "your_api_key",
    "example",
    "xxxxxxxx",
    "00000000",
    "12345678",
    "password",
    "api-key-here",
    "insert",
    "replace",
];

/// The key the gateway checks requests against.
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Where the key came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The process environment or `.env` (`origin` says which).
    Configured(&'static str),
    /// Generated at this start into this file.
    Generated(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{KEY_VARIABLE} (in {origin}) is {chars} characters long; the gateway needs at least {MIN_KEY_CHARS}. \
         Remove it to have one generated, or set a longer random one (e.g. `openssl rand -hex 32`)"
    )]
    TooShort { origin: &'static str, chars: usize },
    #[error(
        "{KEY_VARIABLE} (in {origin}) looks like a placeholder, not a secret; set a random one \
         (e.g. `openssl rand -hex 32`) or remove it to have one generated"
    )]
    Placeholder { origin: &'static str },
}

impl ApiKey {
    /// The configured key, checked; or a new one written into `.env`.
    pub fn load_or_generate(home: &Home, env: &Environment) -> anyhow::Result<(Self, KeyOrigin)> {
        if let Some(key) = env.get(KEY_VARIABLE) {
            let origin = env.origin(KEY_VARIABLE).unwrap_or("the environment");
            return Ok((Self::checked(key, origin)?, KeyOrigin::Configured(origin)));
        }
        let key = generate();
        append_to_dotenv(&home.env_file(), &key)?;
        Ok((Self(key), KeyOrigin::Generated(home.env_file())))
    }

    /// `key` if it is long enough and not a placeholder.
    pub fn checked(key: &str, origin: &'static str) -> Result<Self, KeyError> {
        let chars = key.chars().count();
        if chars < MIN_KEY_CHARS {
            return Err(KeyError::TooShort { origin, chars });
        }
        let lower = key.to_ascii_lowercase();
        let distinct = lower
            .chars()
            .collect::<std::collections::HashSet<_>>()
            .len();
        if distinct < 6 || PLACEHOLDERS.iter().any(|p| lower.contains(p)) {
            return Err(KeyError::Placeholder { origin });
        }
        Ok(Self(key.to_owned()))
    }

    /// Whether `presented` is the key, in time that does not depend on
    /// where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq::constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }

    /// The key itself: for a test or a client started by the operator,
    /// never for a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// 256 random bits, hex.
fn generate() -> String {
    format!("tk-{}", super::random_hex::<32>())
}

/// Add `TALARIA_API_KEY=key` to `.env`, keeping what is there: the whole
/// file is rewritten atomically (temporary file, fsync, rename), 0600.
fn append_to_dotenv(path: &Path, key: &str) -> anyhow::Result<()> {
    let mut text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", path.display()));
        }
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# The gateway's API key, generated at its first start. Clients send it as\n");
    text.push_str(
        "# `Authorization: Bearer ...`. Replace it with any random string of 16+ characters.\n",
    );
    text.push_str(&format!("{KEY_VARIABLE}={key}\n"));
    write_atomically(path, text.as_bytes(), 0o600)
        .with_context(|| format!("cannot write the generated API key into {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_placeholder_keys_are_refused_and_random_ones_accepted() {
        let cases: &[(&str, bool)] = &[
            ("", false),
            ("short-key", false),
            ("fifteen-chars-x", false),
            ("changeme-changeme-changeme", false),
            ("your-api-key-goes-here", false),
            ("sk-xxxxxxxxxxxxxxxxxxxxxxxx", false),
            ("aaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("abababababababababababab", false),
            ("k7Qp2vX9mZ4wL1tR", true),
            (&generate(), true),
        ];
        for (key, accepted) in cases {
            assert_eq!(
                ApiKey::checked(key, ".env").is_ok(),
                *accepted,
                "key {key:?}"
            );
        }
    }

    #[test]
    fn errors_and_debug_output_never_carry_the_key() {
        let secret = "changeme-0123456789-abcdef";
        let error = ApiKey::checked(secret, ".env").err().unwrap().to_string();
        assert!(!error.contains(secret), "{error}");
        let key = ApiKey::checked("k7Qp2vX9mZ4wL1tR", ".env").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
    }

    #[test]
    fn matching_is_exact() {
        let key = ApiKey::checked("k7Qp2vX9mZ4wL1tR", ".env").unwrap();
        assert!(key.matches("k7Qp2vX9mZ4wL1tR"));
        assert!(!key.matches("k7Qp2vX9mZ4wL1tr"));
        assert!(!key.matches("k7Qp2vX9mZ4wL1tR "));
        assert!(!key.matches(""));
    }

    #[test]
    fn a_generated_key_is_added_to_dotenv_without_losing_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        home.bootstrap().unwrap();
        std::fs::write(home.env_file(), "OPENAI_API_KEY=sk-model").unwrap();
        let env = Environment::from_maps(Default::default(), Default::default());
        let (key, origin) = ApiKey::load_or_generate(&home, &env).unwrap();
        assert_eq!(origin, KeyOrigin::Generated(home.env_file()));
        let text = std::fs::read_to_string(home.env_file()).unwrap();
        assert!(text.starts_with("OPENAI_API_KEY=sk-model\n"), "{text}");
        assert!(text.contains(&format!("{KEY_VARIABLE}={}\n", key.expose())));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.env_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The next start reads it back.
        let env = Environment::load_quietly(&home).unwrap();
        let (again, origin) = ApiKey::load_or_generate(&home, &env).unwrap();
        assert_eq!(again.expose(), key.expose());
        assert_eq!(origin, KeyOrigin::Configured(".env"));
    }
}
