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
