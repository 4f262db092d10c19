//! The environment settings are read from: the process environment, with
//! the home's `.env` underneath.

use std::collections::BTreeMap;
use std::path::Path;

use super::dotenv;
use crate::home::Home;

/// The process environment with the home's `.env` underneath: a variable
/// set in the environment wins over the same name in `.env`.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    process: BTreeMap<String, String>,
    dotenv: BTreeMap<String, String>,
}

impl Environment {
    /// The process environment and `home/.env` (absent is fine). A `.env`
    /// other users can read is reported on stderr, by every command that
    /// reads it: it holds secrets, and `doctor` is seldom run.
    pub fn load(home: &Home) -> anyhow::Result<Self> {
        let environment = Self::load_quietly(home)?;
        if let Some(warning) = exposure(&home.env_file()) {
            eprintln!("warning: {warning}");
        }
        Ok(environment)
    }

    /// [`Environment::load`] without the warning, for `doctor`, which
    /// reports the file's mode among its findings.
    pub fn load_quietly(home: &Home) -> anyhow::Result<Self> {
        let path = home.env_file();
        let dotenv = match std::fs::read_to_string(&path) {
            Ok(text) => {
                dotenv::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(anyhow::anyhow!("cannot read {}: {error}", path.display())),
        };
        Ok(Self {
            process: std::env::vars().collect(),
            dotenv,
        })
    }

    pub fn from_maps(process: BTreeMap<String, String>, dotenv: BTreeMap<String, String>) -> Self {
        Self { process, dotenv }
    }

    /// `name` from the process environment only, never from `.env`: for
    /// settings that are trust decisions, which a file the service can
    /// write must not make.
    pub fn get_from_process(&self, name: &str) -> Option<&str> {
        self.process.get(name).map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.process
            .get(name)
            .or_else(|| self.dotenv.get(name))
            .map(String::as_str)
    }

    /// Every variable of the home's `.env` (all of them are the operator's
    /// secrets or settings: a tool result must never show one).
    pub fn dotenv_entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.dotenv.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Where `name` would be read from, for diagnostics.
    pub fn origin(&self, name: &str) -> Option<&'static str> {
        if self.process.contains_key(name) {
            Some("environment")
        } else if self.dotenv.contains_key(name) {
            Some(".env")
        } else {
            None
        }
    }
}

/// Why the `.env` at `path` is readable by others, with the fix; `None`
/// when it is private or absent.
pub(crate) fn exposure(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(path).ok()?.mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} holds secrets but is mode {mode:o}: other users can read it; fix: chmod 600 {}",
            path.display(),
            shell_quoted(path)
        )
    })
}

fn shell_quoted(path: &Path) -> String {
    crate::untrusted_text::shell_word(&path.display().to_string())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::env;

    #[test]
    fn the_environment_wins_over_dotenv() {
        let environment = env(&[("KEY", "process")], &[("KEY", "file"), ("ONLY", "file")]);
        assert_eq!(environment.get("KEY"), Some("process"));
        assert_eq!(environment.get("ONLY"), Some("file"));
        assert_eq!(environment.origin("ONLY"), Some(".env"));
        assert_eq!(environment.get("NONE"), None);
    }

    #[test]
    fn a_dotenv_others_can_read_is_named_with_its_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my home").join(".env");
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        assert_eq!(super::exposure(&path), None, "absent");
        std::fs::write(&path, "OPENAI_API_KEY=sk-secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(super::exposure(&path), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            super::exposure(&path).unwrap(),
            format!(
                "{} holds secrets but is mode 644: other users can read it; fix: chmod 600 '{}'",
                path.display(),
                path.display()
            )
        );
    }
}
