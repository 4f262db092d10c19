//! The data home (`TALARIA_HOME`, default `~/.talaria`, `/opt/data` in the
//! container): the single place where Talaria keeps state.
//!
//! ```text
//! config.toml           settings (0640)
//! .env                  secrets, KEY=VALUE (0600)
//! SOUL.md               the agent's identity
//! memories/             MEMORY.md, USER.md
//! state.db              sessions (0600, as are its -wal and -shm)
//! skills/               installed skills
//! grants.toml           operator grants, pinned to each skill's hash
//! skill-data/<skill>/   a skill's private writable space
//! workspace/            default working directory for skills and backends
//! home/                 HOME for native subprocesses
//! cron/ hooks/ logs/    schedules, hooks, logs
//! cache/                compiled components (safe to delete)
//! talaria.lock          single-writer lock
//! ```
//!
//! [`Home::bootstrap`] creates what is missing on every start and seeds
//! `config.toml`, `SOUL.md` and `.env` only when absent; it never overwrites.

mod files;
mod lock;

use std::path::{Path, PathBuf};

use anyhow::Context;

pub use files::{
    create_private_dir, create_private_file, restrict_to_owner, write_atomically, write_new,
};
pub(crate) use lock::open_lock_file;
pub use lock::{LockError, LockHolder, WriterLock};

/// Directories of the layout, created (mode 0700) when missing.
const DIRECTORIES: &[&str] = &[
    "memories",
    "skills",
    "skill-data",
    "workspace",
    "home",
    "cron",
    "hooks",
    "logs",
    "cache",
];

/// Everything Talaria keeps at the top of a home: the [`DIRECTORIES`],
/// `run/` (the SSH backend's sockets), and these files. The container's
/// entrypoint hands exactly these to the service user, nothing else a
/// mounted folder holds.
const TOP_LEVEL_FILES: &[&str] = &[
    CONFIG_FILE,
    ENV_FILE,
    SOUL_FILE,
    "state.db",
    "state.db-wal",
    "state.db-shm",
    "grants.toml",
    "talaria.lock",
    "gateway.lock",
    "dashboard.password",
    "chat_history",
];

/// The names of [`TOP_LEVEL_FILES`], the [`DIRECTORIES`] and `run`.
pub fn top_level_entries() -> impl Iterator<Item = &'static str> {
    DIRECTORIES
        .iter()
        .chain(&["run"])
        .chain(TOP_LEVEL_FILES)
        .copied()
}

const CONFIG_FILE: &str = "config.toml";
const ENV_FILE: &str = ".env";
const SOUL_FILE: &str = "SOUL.md";

/// The `config.toml` seeded into a new home: every key commented out.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("home/default_config.toml");
const DEFAULT_ENV: &str = "\
# Secrets for Talaria, one KEY=VALUE per line (this file is mode 0600).
# Variables already set in the environment win over this file.
# Skills see only the variables their grant lists.
#
# OPENAI_API_KEY=...
";
const DEFAULT_SOUL: &str = "\
# Soul

You are Talaria, a careful and capable assistant. You use tools when they
help, say plainly when you are unsure, and never guess at facts you can check.
";

/// The data home at a given root.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

/// What [`Home::bootstrap`] created.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Bootstrap {
    pub created_dirs: Vec<PathBuf>,
    pub seeded_files: Vec<PathBuf>,
}

impl Home {
    /// The home at `root`, without touching the file system.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `~/.talaria`, the home when neither `--home` nor `TALARIA_HOME` is set.
    pub fn default_root() -> anyhow::Result<PathBuf> {
        Ok(std::env::home_dir()
            .context("cannot find the user's home directory; set TALARIA_HOME or pass --home")?
            .join(".talaria"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    pub fn env_file(&self) -> PathBuf {
        self.root.join(ENV_FILE)
    }

    pub fn soul_file(&self) -> PathBuf {
        self.root.join(SOUL_FILE)
    }

    pub fn skills_dir(&self) -> PathBuf {
        self.root.join("skills")
    }

    pub fn grants_file(&self) -> PathBuf {
        self.root.join("grants.toml")
    }

    pub fn skill_data_dir(&self) -> PathBuf {
        self.root.join("skill-data")
    }

    pub fn workspace_dir(&self) -> PathBuf {
        self.root.join("workspace")
    }

    pub fn components_cache_dir(&self) -> PathBuf {
        self.root.join("cache").join("components")
    }

    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }

    pub fn memories_dir(&self) -> PathBuf {
        self.root.join("memories")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("talaria.lock")
    }

    /// Held by the running gateway: one per home. Separate from the
    /// single-writer lock, which the gateway takes only while it writes, so
    /// CLI commands keep working beside a running gateway.
    pub fn gateway_lock_file(&self) -> PathBuf {
        self.root.join("gateway.lock")
    }

    /// Create what is missing and seed the default files that are absent.
    /// Safe to run concurrently: directories are created idempotently and
    /// seeds are linked into place only if nothing is there.
    pub fn bootstrap(&self) -> anyhow::Result<Bootstrap> {
        let mut report = Bootstrap::default();
        for dir in
            std::iter::once(self.root.clone()).chain(DIRECTORIES.iter().map(|d| self.root.join(d)))
        {
            if !dir.is_dir() {
                create_private_dir(&dir)?;
                report.created_dirs.push(dir);
            }
        }
        let seeds = [
            (self.config_file(), DEFAULT_CONFIG, 0o640),
            (self.env_file(), DEFAULT_ENV, 0o600),
            (self.soul_file(), DEFAULT_SOUL, 0o600),
        ];
        for (path, contents, mode) in seeds {
            if write_new(&path, contents.as_bytes(), mode)
                .with_context(|| format!("cannot seed {}", path.display()))?
            {
                report.seeded_files.push(path);
            }
        }
        Ok(report)
    }

    /// Take the single-writer lock, recording `command` as the holder.
    pub fn lock(&self, command: &str) -> Result<WriterLock, LockError> {
        WriterLock::acquire(&self.lock_file(), command)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn every_top_level_path_of_the_home_is_listed() {
        let home = Home::at("/h");
        let listed: Vec<&str> = top_level_entries().collect();
        for path in [
            home.config_file(),
            home.env_file(),
            home.soul_file(),
            home.skills_dir(),
            home.grants_file(),
            home.skill_data_dir(),
            home.workspace_dir(),
            home.state_db(),
            home.memories_dir(),
            home.lock_file(),
            home.gateway_lock_file(),
        ] {
            let name = path.strip_prefix("/h").unwrap().to_str().unwrap();
            assert!(
                listed.contains(&name),
                "{name} is not in top_level_entries()"
            );
        }
        assert!(
            home.components_cache_dir()
                .starts_with(home.root().join("cache"))
                && listed.contains(&"cache")
        );
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn bootstrap_creates_the_layout_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("data"));
        let report = home.bootstrap().unwrap();
        assert_eq!(report.created_dirs.len(), DIRECTORIES.len() + 1);
        assert_eq!(report.seeded_files.len(), 3);
        assert_eq!(mode(home.root()), 0o700);
        for name in DIRECTORIES {
            assert_eq!(mode(&home.root().join(name)), 0o700, "{name}");
        }
        assert_eq!(mode(&home.config_file()), 0o640);
        assert_eq!(mode(&home.env_file()), 0o600);
        assert!(
            std::fs::read_to_string(home.soul_file())
                .unwrap()
                .contains("Talaria")
        );
        // A second start creates nothing.
        assert_eq!(home.bootstrap().unwrap(), Bootstrap::default());
    }

    #[test]
    fn bootstrap_never_overwrites_and_keeps_chosen_modes() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::write(home.config_file(), "# mine\n").unwrap();
        std::fs::write(home.soul_file(), "my soul").unwrap();
        std::fs::create_dir(home.workspace_dir()).unwrap();
        std::fs::set_permissions(home.workspace_dir(), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        let report = home.bootstrap().unwrap();
        assert_eq!(report.seeded_files, vec![home.env_file()]);
        assert_eq!(
            std::fs::read_to_string(home.config_file()).unwrap(),
            "# mine\n"
        );
        assert_eq!(
            std::fs::read_to_string(home.soul_file()).unwrap(),
            "my soul"
        );
        assert_eq!(mode(&home.workspace_dir()), 0o750);
    }
}
