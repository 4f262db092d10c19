//! `skill.toml` as written (the raw TOML types) and the rule every key is
//! checked against on its way into a [`Manifest`].

use std::fmt;
use std::path::{Component as PathComponent, Path, PathBuf};

use semver::{Version, VersionReq};
use serde::Deserialize;

use super::{
    Access, DEFAULT_DATA_MB, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS,
    ExecRule, HostPattern, Limits, MAX_DATA_MB, MAX_MEMORY_MB, MAX_OUTPUT_BYTES, MAX_TIMEOUT_MS,
    Manifest, MountRequest, MountSource, NetworkRule, RequestedCapabilities, SecretRequest,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    skill: RawSkill,
    #[serde(default)]
    capabilities: RawCapabilities,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSkill {
    name: String,
    version: String,
    description: String,
    component: Option<String>,
    api: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCapabilities {
    #[serde(default)]
    mounts: Vec<RawMount>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    exec: Vec<ExecRule>,
    /// Each a URL pattern, or `{ url, methods }`; read by hand so that a
    /// malformed entry gets a message naming it.
    #[serde(default)]
    network: Vec<toml::Value>,
    #[serde(default)]
    secrets: Vec<RawSecret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    name: String,
    header: String,
    #[serde(default = "whole_value")]
    format: String,
    hosts: Vec<String>,
}

fn whole_value() -> String {
    "{}".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    source: String,
    guest: String,
    access: Access,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mb: Option<u32>,
    timeout_ms: Option<u64>,
    max_output_bytes: Option<u64>,
    data_mb: Option<u32>,
}

pub(super) fn parse_raw(text: &str) -> Result<RawManifest, String> {
    crate::toml_file::parse(text)
}

pub(super) fn validate(raw: RawManifest) -> Result<Manifest, String> {
    let RawManifest {
        skill,
        capabilities,
        limits,
    } = raw;

    if !is_skill_name(&skill.name) {
        return Err(format!(
            "key `skill.name`: expected 1 to 64 characters of a-z, 0-9 and `-`, starting with a letter, found {:?}",
            skill.name
        ));
    }
    let version = Version::parse(&skill.version).map_err(|e| {
        format!(
            "key `skill.version`: expected a semver version like \"1.2.3\", found {:?} ({e})",
            skill.version
        )
    })?;
    let description = skill.description.trim().to_owned();
    if !is_valid_description(&description) {
        return Err(
            "key `skill.description`: expected one line of 1 to 1024 characters without control characters"
                .to_owned(),
        );
    }
    let component = skill
        .component
        .map(|component| validate_component_path(&component))
        .transpose()?;
    let api = VersionReq::parse(&skill.api).map_err(|e| {
        format!(
            "key `skill.api`: expected a semver range of the talaria:skill WIT package like \"^0.1\", found {:?} ({e})",
            skill.api
        )
    })?;

    let network = validate_network(capabilities.network)?;
    let secrets = validate_secrets(capabilities.secrets, &network)?;
    if let Some(shown) = secrets.iter().find(|s| capabilities.env.contains(&s.name)) {
        return Err(format!(
            "key `capabilities.env`: {:?} is also a secret of capabilities.secrets; a secret is sent by \
             the host and never shown to the skill, so it may not be one of its variables",
            shown.name
        ));
    }
    let mut mounts: Vec<MountRequest> = Vec::with_capacity(capabilities.mounts.len());
    for (index, mount) in capabilities.mounts.into_iter().enumerate() {
        let key = format!("capabilities.mounts[{index}]");
        let source = MountSource::from_variable(&mount.source).ok_or_else(|| {
            format!(
                "key `{key}.source`: expected one of \"${{workspace}}\", \"${{skill_data}}\", \"${{skill_dir}}\", found {:?}; \
                 a manifest cannot name host paths",
                mount.source
            )
        })?;
        let guest =
            validate_guest_path(&mount.guest).map_err(|why| format!("key `{key}.guest`: {why}"))?;
        if source == MountSource::SkillDir && mount.access == Access::ReadWrite {
            return Err(format!(
                "key `{key}.access`: \"${{skill_dir}}\" can only be mounted \"read-only\" (a skill must not change its own files)"
            ));
        }
        if let Some(previous) = mounts.iter().position(|m| m.guest == guest) {
            return Err(format!(
                "key `{key}.guest`: {guest:?} is already used by capabilities.mounts[{previous}]; expected a distinct guest path"
            ));
        }
        mounts.push(MountRequest {
            source,
            guest,
            access: mount.access,
        });
    }

    let mut env: Vec<String> = Vec::with_capacity(capabilities.env.len());
    for (index, name) in capabilities.env.into_iter().enumerate() {
        if !is_env_name(&name) {
            return Err(format!(
                "key `capabilities.env[{index}]`: expected an environment variable name (A-Z, a-z, 0-9, `_`, not starting with a digit), found {name:?}"
            ));
        }
        if env.contains(&name) {
            return Err(format!(
                "key `capabilities.env[{index}]`: {name:?} is listed twice"
            ));
        }
        env.push(name);
    }

    for (index, rule) in capabilities.exec.iter().enumerate() {
        if let Some(position) = rule
            .args
            .iter()
            .position(|arg| arg.chars().any(char::is_control))
        {
            return Err(format!(
                "key `capabilities.exec[{index}].args[{position}]`: expected an argument pattern without control characters"
            ));
        }
        if rule.program.is_empty()
            || rule
                .program
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "key `capabilities.exec[{index}].program`: expected a program name without spaces, found {:?}",
                rule.program
            ));
        }
    }

    let limits = Limits {
        memory_mb: in_range(
            "limits.memory_mb",
            limits.memory_mb,
            DEFAULT_MEMORY_MB,
            1,
            MAX_MEMORY_MB,
        )?,
        timeout_ms: in_range(
            "limits.timeout_ms",
            limits.timeout_ms,
            DEFAULT_TIMEOUT_MS,
            1,
            MAX_TIMEOUT_MS,
        )?,
        max_output_bytes: in_range(
            "limits.max_output_bytes",
            limits.max_output_bytes,
            DEFAULT_MAX_OUTPUT_BYTES,
            1,
            MAX_OUTPUT_BYTES,
        )?,
        data_mb: in_range(
            "limits.data_mb",
            limits.data_mb,
            DEFAULT_DATA_MB,
            1,
            MAX_DATA_MB,
        )?,
    };

    Ok(Manifest {
        name: skill.name,
        form: super::Form::Toml,
        version,
        description,
        component,
        api,
        capabilities: RequestedCapabilities {
            mounts,
            env,
            exec: capabilities.exec,
            network,
            secrets,
        },
        limits,
    })
}

fn validate_network(entries: Vec<toml::Value>) -> Result<Vec<NetworkRule>, String> {
    let mut rules: Vec<NetworkRule> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let key = format!("capabilities.network[{index}]");
        let (url, methods) = match entry {
            toml::Value::String(url) => (url, Vec::new()),
            toml::Value::Table(mut table) => {
                let url = match table.remove("url") {
                    Some(toml::Value::String(url)) => url,
                    Some(_) => return Err(format!("key `{key}.url`: expected a string")),
                    None => return Err(format!("key `{key}`: missing key `url`")),
                };
                let methods = match table.remove("methods") {
                    None => Vec::new(),
                    Some(toml::Value::Array(methods)) => methods
                        .into_iter()
                        .map(|method| match method {
                            toml::Value::String(method) => Ok(method),
                            _ => Err(format!("key `{key}.methods`: expected a list of strings")),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => {
                        return Err(format!(
                            "key `{key}.methods`: expected a list like [\"GET\", \"POST\"]"
                        ));
                    }
                };
                if let Some(unknown) = table.keys().next() {
                    return Err(format!(
                        "key `{key}.{unknown}`: unknown key; expected `url` and `methods`"
                    ));
                }
                (url, methods)
            }
            _ => {
                return Err(format!(
                    "key `{key}`: expected a URL pattern like \"https://api.github.com\" or \
                     {{ url = \"https://api.github.com/repos/**\", methods = [\"GET\"] }}"
                ));
            }
        };
        let rule =
            NetworkRule::parse(&url, &methods).map_err(|why| format!("key `{key}`: {why}"))?;
        if rules
            .iter()
            .any(|r| r.text == rule.text && r.methods == rule.methods)
        {
            return Err(format!("key `{key}`: {url:?} is listed twice"));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// Headers a secret may not be sent in: the host sets them itself.
const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
];

fn validate_secrets(
    raw: Vec<RawSecret>,
    network: &[NetworkRule],
) -> Result<Vec<SecretRequest>, String> {
    let mut secrets: Vec<SecretRequest> = Vec::with_capacity(raw.len());
    for (index, secret) in raw.into_iter().enumerate() {
        let key = format!("capabilities.secrets[{index}]");
        if !is_env_name(&secret.name) {
            return Err(format!(
                "key `{key}.name`: expected the name of a variable of the home's .env (A-Z, a-z, 0-9, `_`), found {:?}",
                secret.name
            ));
        }
        if secret.name.starts_with("TALARIA_") {
            return Err(format!(
                "key `{key}.name`: {:?} is one of Talaria's own settings or keys, never sent by a skill",
                secret.name
            ));
        }
        if secrets.iter().any(|s| s.name == secret.name) {
            return Err(format!(
                "key `{key}.name`: {:?} is listed twice",
                secret.name
            ));
        }
        let header = secret.header.to_ascii_lowercase();
        if header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            || RESERVED_HEADERS.contains(&header.as_str())
        {
            return Err(format!(
                "key `{key}.header`: expected a header name like \"Authorization\" (not one the host sets itself), found {:?}",
                secret.header
            ));
        }
        if secret.format.matches("{}").count() != 1 || secret.format.chars().any(char::is_control) {
            return Err(format!(
                "key `{key}.format`: expected one `{{}}` where the value goes, like \"Bearer {{}}\", found {:?}",
                secret.format
            ));
        }
        if secret.hosts.is_empty() {
            return Err(format!(
                "key `{key}.hosts`: expected the hosts the secret is sent to, like [\"api.github.com\"]"
            ));
        }
        // A wide host (`*`) is for a destination the operator chooses: the
        // grant names it (`--secret NAME@HOST`), never the default.
        let mut hosts = Vec::with_capacity(secret.hosts.len());
        for (position, host) in secret.hosts.iter().enumerate() {
            let pattern = HostPattern::parse(host)
                .map_err(|why| format!("key `{key}.hosts[{position}]`: {why}"))?;
            if !network.iter().any(|rule| rule.host.covers(&pattern)) {
                return Err(format!(
                    "key `{key}.hosts[{position}]`: {host:?} is reached by no rule of capabilities.network"
                ));
            }
            hosts.push(pattern);
        }
        secrets.push(SecretRequest {
            name: secret.name,
            header: secret.header,
            format: secret.format,
            hosts,
        });
    }
    Ok(secrets)
}

fn in_range<T: PartialOrd + fmt::Display + Copy>(
    key: &str,
    value: Option<T>,
    default: T,
    min: T,
    max: T,
) -> Result<T, String> {
    let value = value.unwrap_or(default);
    if value < min || value > max {
        return Err(format!(
            "key `{key}`: expected a number from {min} to {max}, found {value}"
        ));
    }
    Ok(value)
}

/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// The rule for a skill's description, which goes into every system prompt:
/// one line of 1 to 1024 characters without control characters.
pub fn is_valid_description(description: &str) -> bool {
    let description = description.trim();
    !description.is_empty()
        && description.chars().count() <= MAX_DESCRIPTION_CHARS
        && !description.chars().any(char::is_control)
}

pub fn is_skill_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('A'..='Z' | 'a'..='z' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_component_path(component: &str) -> Result<PathBuf, String> {
    let path = Path::new(component);
    let plain = path
        .components()
        .all(|c| matches!(c, PathComponent::Normal(_)));
    if component.is_empty() || !plain || !component.ends_with(".wasm") {
        return Err(format!(
            "key `skill.component`: expected a `.wasm` file inside the skill folder (relative, no `..`), found {component:?}"
        ));
    }
    Ok(path.to_owned())
}

/// Guest paths are absolute, normalised, and never the root: mounting over
/// `/` would hide every other mount.
fn validate_guest_path(guest: &str) -> Result<String, String> {
    let path = Path::new(guest);
    if guest.chars().any(char::is_control) {
        return Err("expected a path without control characters".to_owned());
    }
    if !path.is_absolute() {
        return Err(format!(
            "expected an absolute path like \"/workspace\", found {guest:?}"
        ));
    }
    let mut normalised = String::new();
    for component in path.components() {
        match component {
            PathComponent::RootDir => {}
            PathComponent::Normal(part) => {
                normalised.push('/');
                normalised.push_str(&part.to_string_lossy());
            }
            PathComponent::CurDir | PathComponent::ParentDir | PathComponent::Prefix(_) => {
                return Err(format!(
                    "expected a path without `.` or `..`, found {guest:?}"
                ));
            }
        }
    }
    if normalised.is_empty() {
        return Err("expected a directory below `/`, found \"/\"".to_owned());
    }
    Ok(normalised)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skill::manifest::tests::VALID;

    #[test]
    fn parses_the_documented_example() {
        let manifest = Manifest::parse(VALID).unwrap();
        assert_eq!(manifest.name, "files");
        assert_eq!(manifest.version, Version::new(0, 3, 1));
        assert_eq!(manifest.component.as_deref(), Some(Path::new("files.wasm")));
        assert!(manifest.api.matches(&Version::new(0, 1, 0)));
        assert_eq!(
            manifest.capabilities.mounts,
            vec![
                MountRequest {
                    source: MountSource::Workspace,
                    guest: "/workspace".into(),
                    access: Access::ReadOnly
                },
                MountRequest {
                    source: MountSource::SkillData,
                    guest: "/data".into(),
                    access: Access::ReadWrite
                },
            ]
        );
        assert_eq!(manifest.capabilities.env, vec!["GITHUB_TOKEN".to_owned()]);
        assert_eq!(manifest.capabilities.exec[0].args, vec!["status", "**"]);
        let network = &manifest.capabilities.network;
        assert_eq!(network.len(), 2);
        assert_eq!(network[0].text, "https://api.github.com");
        assert_eq!(network[0].port, Some(443));
        assert_eq!(network[1].path, "/**");
        assert_eq!(network[1].methods, ["GET"]);
        let secret = &manifest.capabilities.secrets[0];
        assert_eq!(
            (
                secret.name.as_str(),
                secret.header.as_str(),
                secret.format.as_str()
            ),
            ("GITHUB_API_TOKEN", "Authorization", "Bearer {}")
        );
        assert_eq!(secret.hosts, [HostPattern::Exact("api.github.com".into())]);
    }

    #[test]
    fn limits_and_capabilities_have_safe_defaults() {
        let manifest = Manifest::parse(
            "[skill]\nname = \"notes\"\nversion = \"1.0.0\"\ndescription = \"Instructions only\"\napi = \"^0.1\"\n",
        )
        .unwrap();
        assert_eq!(manifest.component, None);
        assert_eq!(manifest.capabilities, RequestedCapabilities::default());
        assert_eq!(manifest.limits, Limits::default());
    }

    /// Each malformed manifest is the valid one with one edit; the snapshot
    /// holds the full message an author would see.
    #[test]
    fn malformed_manifests_are_explained() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "unknown_top_level_table",
                "[limits]",
                "[permissions]\nall = true\n\n[limits]",
            ),
            (
                "unknown_skill_key",
                "api = \"^0.1\"",
                "api = \"^0.1\"\nauthor = \"me\"",
            ),
            ("missing_version", "version = \"0.3.1\"\n", ""),
            (
                "version_not_semver",
                "version = \"0.3.1\"",
                "version = \"0.3\"",
            ),
            (
                "name_with_uppercase",
                "name = \"files\"",
                "name = \"Files\"",
            ),
            ("api_not_a_range", "api = \"^0.1\"", "api = \"latest\""),
            (
                "component_escapes_folder",
                "component = \"files.wasm\"",
                "component = \"../other/files.wasm\"",
            ),
            (
                "mount_host_path",
                "source = \"${workspace}\"",
                "source = \"/etc\"",
            ),
            (
                "mount_relative_guest",
                "guest = \"/workspace\"",
                "guest = \"workspace\"",
            ),
            (
                "mount_guest_dotdot",
                "guest = \"/workspace\"",
                "guest = \"/workspace/../etc\"",
            ),
            (
                "mount_bad_access",
                "access = \"read-only\"",
                "access = \"readonly\"",
            ),
            (
                "mount_duplicate_guest",
                "guest = \"/data/\"",
                "guest = \"/workspace\"",
            ),
            (
                "skill_dir_read_write",
                "source = \"${skill_data}\"",
                "source = \"${skill_dir}\"",
            ),
            (
                "env_bad_name",
                "env = [\"GITHUB_TOKEN\"]",
                "env = [\"GITHUB-TOKEN\"]",
            ),
            (
                "env_not_a_list",
                "env = [\"GITHUB_TOKEN\"]",
                "env = \"GITHUB_TOKEN\"",
            ),
            (
                "exec_unknown_key",
                "args = [\"status\", \"**\"]",
                "argv = [\"status\"]",
            ),
            (
                "network_without_scheme",
                "  \"https://api.github.com\",",
                "  \"api.github.com:443\",",
            ),
            (
                "network_bad_scheme",
                "  \"https://api.github.com\",",
                "  \"ftp://api.github.com\",",
            ),
            (
                "network_star_inside_host",
                "  \"https://api.github.com\",",
                "  \"https://api.*.com\",",
            ),
            (
                "network_bad_port",
                "  \"https://api.github.com\",",
                "  \"https://api.github.com:70000\",",
            ),
            (
                "network_not_a_string",
                "  \"https://api.github.com\",",
                "  443,",
            ),
            (
                "network_unknown_key",
                "methods = [\"GET\"]",
                "verbs = [\"GET\"]",
            ),
            (
                "network_bad_method",
                "methods = [\"GET\"]",
                "methods = [\"FETCH\"]",
            ),
            (
                "network_path_dotdot",
                "\"https://*.githubusercontent.com/**\"",
                "\"https://*.githubusercontent.com/a/../b\"",
            ),
            (
                "secret_bad_name",
                "name = \"GITHUB_API_TOKEN\"",
                "name = \"GITHUB-API-TOKEN\"",
            ),
            (
                "secret_reserved_header",
                "header = \"Authorization\"",
                "header = \"Host\"",
            ),
            (
                "secret_format_without_slot",
                "format = \"Bearer {}\"",
                "format = \"Bearer\"",
            ),
            (
                "secret_host_not_reachable",
                "hosts = [\"api.github.com\"]",
                "hosts = [\"api.gitlab.com\"]",
            ),
            (
                "secret_talaria_key",
                "name = \"GITHUB_API_TOKEN\"",
                "name = \"TALARIA_API_KEY\"",
            ),
            (
                "secret_also_in_env",
                "env = [\"GITHUB_TOKEN\"]",
                "env = [\"GITHUB_API_TOKEN\"]",
            ),
            (
                "secret_without_hosts",
                "hosts = [\"api.github.com\"]",
                "hosts = []",
            ),
            (
                "secret_unknown_key",
                "format = \"Bearer {}\"",
                "fmt = \"Bearer {}\"",
            ),
            ("memory_too_large", "memory_mb = 64", "memory_mb = 100000"),
            ("timeout_zero", "timeout_ms = 5000", "timeout_ms = 0"),
            ("memory_wrong_type", "memory_mb = 64", "memory_mb = \"64\""),
            ("toml_syntax", "[limits]", "[limits"),
            (
                "description_with_escape",
                "description = \"Search",
                "description = \"\\u001b[2KSearch",
            ),
            (
                "exec_arg_with_escape",
                "args = [\"status\", \"**\"]",
                "args = [\"status\", \"\\u001b[1A\"]",
            ),
        ];
        for (name, from, to) in cases {
            assert!(VALID.contains(from), "{name}: the edit must apply");
            let text = VALID.replacen(from, to, 1);
            let error = Manifest::parse(&text).expect_err(name);
            insta::assert_snapshot!(*name, error);
        }
    }
}
