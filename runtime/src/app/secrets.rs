//! The home's secrets: what the leak scanner looks for in tool results and
//! outgoing requests, and where the values the host adds to skills'
//! requests are read.

use std::sync::{Arc, Mutex};

use crate::config::{Config, Environment};
use crate::home::Home;
use crate::leak_scan::LeakScanner;
use crate::skill::grants::Grants;

/// Inode, size and change time of a file.
type FileStamp = (u64, u64, i64, i64);

/// The variables every process has, which a backend may forward: not
/// secrets, or every path would become `[REDACTED:HOME]/…`.
const NOT_SECRETS: [&str; 12] = [
    "HOME", "PATH", "USER", "LOGNAME", "LANG", "TZ", "SHELL", "TERM", "PWD", "TMPDIR", "HOSTNAME",
    "EDITOR",
];

pub(crate) struct Secrets {
    home: Home,
    env: Environment,
    /// Secrets by the configuration's choice: the model's key variable,
    /// the gateway's key, the backend's variables.
    configured: Vec<String>,
    /// The scanner, and the `grants.toml` it was made for: made again only
    /// when the grants change, not for every conversation.
    cached: Mutex<Option<(Option<FileStamp>, Arc<LeakScanner>)>>,
}

impl Secrets {
    pub(crate) fn new(home: &Home, env: &Environment, config: &Config) -> Self {
        let mut configured = vec![
            config.model.api_key_env.clone(),
            "TALARIA_API_KEY".to_owned(),
        ];
        configured.extend(config.backend_env.iter().cloned());
        Self {
            home: home.clone(),
            env: env.clone(),
            configured,
            cached: Mutex::new(None),
        }
    }

    /// A scanner for every secret this home knows of: each value of `.env`
    /// (but Talaria's own settings there), the model's API key, the
    /// gateway's key, and the variables and secrets the backend and the
    /// granted skills are given (from `.env` or the environment). Made again
    /// when `grants.toml` changed, so a new grant counts from the next
    /// conversation.
    pub(crate) fn scanner(&self) -> Arc<LeakScanner> {
        use std::os::unix::fs::MetadataExt;
        let stamp = std::fs::metadata(self.home.grants_file())
            .ok()
            .map(|m| (m.ino(), m.size(), m.ctime(), m.ctime_nsec()));
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((made_for, scanner)) = cached.as_ref()
            && *made_for == stamp
        {
            return Arc::clone(scanner);
        }
        let scanner = Arc::new(self.build());
        *cached = Some((stamp, Arc::clone(&scanner)));
        scanner
    }

    fn build(&self) -> LeakScanner {
        let mut names = self.configured.clone();
        if let Ok(grants) = Grants::load(&self.home.grants_file()) {
            for grant in grants.skills.values() {
                names.extend(grant.env.iter().cloned());
                names.extend(grant.secrets.iter().map(|secret| secret.name.clone()));
            }
        }
        let is_everyones = |name: &str| NOT_SECRETS.contains(&name) || name.starts_with("LC_");
        // Talaria's own settings in `.env` (`TALARIA_WORKSPACE`, the model's
        // URL) are not secrets: a path in every result would be redacted.
        let is_setting = |name: &str| {
            is_everyones(name)
                || (name.starts_with("TALARIA_")
                    && !["KEY", "TOKEN", "SECRET", "PASSWORD"]
                        .iter()
                        .any(|word| name.contains(word)))
        };
        let mut secrets: Vec<(String, String)> = self
            .env
            .dotenv_entries()
            .filter(|(name, _)| !is_setting(name))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        // Named for the backend or a skill: a secret by that choice, unless
        // every process has it.
        for name in names.into_iter().filter(|name| !is_everyones(name)) {
            if let Some(value) = self.env.get(&name) {
                secrets.push((name, value.to_owned()));
            }
        }
        LeakScanner::new(secrets)
    }
}
