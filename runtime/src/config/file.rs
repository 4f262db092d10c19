//! `config.toml` as written: every section and key, all optional, unknown
//! keys refused. What the keys resolve to is the parent module's.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::LogFormat;

/// `config.toml` as written. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub(super) workspace: Option<PathBuf>,
    #[serde(default)]
    pub(super) log: LogSection,
    #[serde(default)]
    pub(super) sandbox: SandboxSection,
    #[serde(default)]
    pub(super) model: ModelSection,
    #[serde(default)]
    pub(super) agent: AgentSection,
    #[serde(default)]
    pub(super) memory: MemorySection,
    #[serde(default)]
    pub(super) skills: SkillsSection,
    #[serde(default)]
    pub(super) gateway: GatewaySection,
    #[serde(default)]
    pub(super) approvals: ApprovalsSection,
    #[serde(default)]
    pub(super) backend: BackendSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendSection {
    pub(super) kind: Option<String>,
    pub(super) env: Option<Vec<String>>,
    #[serde(default)]
    pub(super) docker: DockerSection,
    pub(super) ssh: Option<SshSection>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SshSection {
    pub(super) host: Option<String>,
    pub(super) user: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) identity_file: Option<PathBuf>,
    pub(super) known_hosts: Option<PathBuf>,
    pub(super) workdir: Option<String>,
    pub(super) connect_timeout_secs: Option<u64>,
    pub(super) control_persist_secs: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DockerSection {
    pub(super) socket: Option<String>,
    pub(super) image: Option<String>,
    pub(super) network: Option<bool>,
    pub(super) memory_mb: Option<u64>,
    pub(super) cpus: Option<f64>,
    pub(super) pids: Option<i64>,
    pub(super) tmp_mb: Option<u64>,
    pub(super) read_only: Option<bool>,
    pub(super) user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApprovalsSection {
    pub(super) mode: Option<crate::approval::Mode>,
    pub(super) allowlist: Option<Vec<String>>,
    pub(super) timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GatewaySection {
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) dashboard: Option<bool>,
    pub(super) dashboard_port: Option<u16>,
    pub(super) dashboard_hosts: Option<Vec<String>>,
    pub(super) cors_origins: Option<Vec<String>>,
    pub(super) max_concurrent_runs: Option<usize>,
    pub(super) request_timeout_secs: Option<u64>,
    pub(super) max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SkillsSection {
    pub(super) bundled: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelSection {
    pub(super) base_url: Option<String>,
    pub(super) name: Option<String>,
    pub(super) api_key_env: Option<String>,
    pub(super) timeout_secs: Option<u64>,
    pub(super) max_retries: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentSection {
    pub(super) max_turns: Option<u32>,
    pub(super) tool_output_chars: Option<usize>,
    pub(super) tool_schema_budget_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MemorySection {
    pub(super) memory_chars: Option<usize>,
    pub(super) user_chars: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogSection {
    pub(super) level: Option<String>,
    pub(super) format: Option<LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SandboxSection {
    pub(super) max_instances: Option<u32>,
    pub(super) max_open_handles: Option<usize>,
}

/// Add `pattern` to `[approvals] allowlist` of the config file at `path`
/// (made when missing), keeping everything else as written, comments
/// included; written atomically. A pattern already there is not added
/// twice.
pub fn add_to_allowlist(path: &Path, pattern: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", path.display()));
        }
    };
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let approvals = document
        .entry("approvals")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_like_mut()
        .with_context(|| format!("{}: approvals is not a table", path.display()))?;
    let allowlist = approvals
        .entry("allowlist")
        .or_insert(toml_edit::value(toml_edit::Array::new()))
        .as_array_mut()
        .with_context(|| format!("{}: approvals.allowlist is not a list", path.display()))?;
    if allowlist.iter().any(|item| item.as_str() == Some(pattern)) {
        return Ok(());
    }
    allowlist.push(pattern);
    crate::home::write_atomically(path, document.to_string().as_bytes(), 0o640)
}

impl ConfigFile {
    pub fn parse(text: &str) -> Result<Self, String> {
        crate::toml_file::parse(text)
    }

    /// The file at `path`; an absent file is the empty configuration.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        crate::toml_file::load_or_default(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_joins_the_allowlist_and_the_comments_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        add_to_allowlist(&path, "git reset --hard").unwrap();
        let parsed = ConfigFile::load(&path).unwrap();
        assert_eq!(
            parsed.approvals.allowlist,
            Some(vec!["git reset --hard".to_owned()])
        );
        std::fs::write(
            &path,
            "# my settings\n[approvals]\nmode = \"manual\" # asked\nallowlist = [\"ls*\"]\n",
        )
        .unwrap();
        add_to_allowlist(&path, "make clean").unwrap();
        add_to_allowlist(&path, "make clean").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my settings\n"), "{text}");
        assert!(text.contains("mode = \"manual\" # asked"), "{text}");
        let parsed = ConfigFile::parse(&text).unwrap();
        assert_eq!(
            parsed.approvals.allowlist,
            Some(vec!["ls*".to_owned(), "make clean".to_owned()])
        );
        // A file that is not TOML is left alone.
        std::fs::write(&path, "[approvals\n").unwrap();
        assert!(add_to_allowlist(&path, "x").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[approvals\n");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        assert_eq!(
            ConfigFile::parse("[log]\nlevle = \"x\"\n").unwrap_err(),
            "key `log.levle`: unknown field `levle`, expected `level` or `format` (line 2, column 1)"
        );
        assert_eq!(
            ConfigFile::parse("[log]\nformat = \"xml\"\n").unwrap_err(),
            "key `log.format`: unknown variant `xml`, expected `human` or `json` (line 2, column 10)"
        );
    }
}
