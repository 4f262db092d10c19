//! The environment settings are read from: the process environment, with
//! the home's `.env` underneath.

use std::collections::BTreeMap;

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
    /// The process environment and `home/.env` (absent is fine).
    pub fn load(home: &Home) -> anyhow::Result<Self> {
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
}
