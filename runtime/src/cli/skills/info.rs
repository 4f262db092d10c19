//! `talaria skills info NAME`: one skill in full.

use std::io::Write;
use std::path::PathBuf;

use serde_json::json;

use super::{Failure, usage_if_unknown, write_capabilities};
use crate::app::App;
use crate::cli::hint;
use crate::cli::output::stdout;
use crate::sandbox::ToolSpec;
use crate::skill::grants::{Grant, GrantedBy, SkillState, grant_diff, short_hash};
use crate::skill::report::capabilities_json;
use crate::skill::{Form, Frontmatter, MountSource, Skill};
use crate::untrusted_text::{log_line, message};

/// The tools of a skill, as far as they can be known without running
/// anything that is not granted.
enum Tools {
    Listed(Vec<ToolSpec>),
    InstructionsOnly,
    /// Not granted: the component is not loaded.
    NotLoaded,
    LoadFailed(String),
}

/// The skill's `${skill_data}` directory, whether it exists and what it
/// holds.
struct Data {
    dir: PathBuf,
    used: Option<u64>,
    mounted: bool,
}

pub(crate) async fn info(app: &App, name: &str, as_json: bool) -> Result<(), Failure> {
    let registry = app.registry();
    let skill = registry
        .find(name)
        .map_err(|e| usage_if_unknown(e.into()))?;
    let grants = registry.grants()?;
    let assessment = registry.assess(&skill, &grants);
    let grant = grants.skills.get(skill.name());
    let tools = match (&assessment.effective, &skill.manifest.component) {
        (_, None) => Tools::InstructionsOnly,
        (None, Some(_)) => Tools::NotLoaded,
        (Some(effective), Some(_)) => match registry.load(&skill, effective.clone()).await {
            Ok(loaded) => Tools::Listed(loaded.tools().to_vec()),
            Err(error) => Tools::LoadFailed(format!("{error:#}")),
        },
    };
    let data_dir = app.roots().skill_data.join(skill.name());
    let data = Data {
        used: data_dir
            .is_dir()
            .then(|| crate::sandbox::data_usage(&data_dir)),
        mounted: skill
            .manifest
            .capabilities
            .mounts
            .iter()
            .any(|m| m.source == MountSource::SkillData),
        dir: data_dir,
    };
    // What the skill asks for, in the form a grant records.
    let mut requested = Grant::of(
        &skill,
        &assessment.hash,
        &assessment.requested,
        GrantedBy::Operator,
    );
    // All it asks for, wide destinations and methods included: the grant
    // holds the operator's choice of them.
    (requested.network, requested.secrets) =
        crate::skill::grants::asked_network(&assessment.requested.network);
    if as_json {
        let report = info_json(
            app,
            &skill,
            &assessment.state,
            &assessment.hash.full,
            &requested,
            grant,
            &tools,
            &data,
        );
        writeln!(stdout(), "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }

    let mut out = stdout();
    let manifest = &skill.manifest;
    writeln!(out, "{} — {}", skill.label(), manifest.description)?;
    writeln!(out, "  folder     {}", skill.dir.display())?;
    let component = match &manifest.component {
        Some(component) => component.display().to_string(),
        None => "none (instructions only)".into(),
    };
    writeln!(out, "  component  {component}")?;
    if skill.instructions().is_some() {
        writeln!(out, "  SKILL.md   yes (read by the model)")?;
    }
    let format = match manifest.form {
        Form::Toml => "skill.toml",
        Form::AgentSkill { .. } => "Agent Skills (SKILL.md only)",
    };
    writeln!(out, "  format     {format}")?;
    if manifest.form == Form::Toml {
        writeln!(out, "  api        {}", manifest.api)?;
    }
    if let Some(frontmatter) = skill.frontmatter() {
        write_frontmatter(&mut out, frontmatter)?;
    }
    if let Some(files) = skill.contents().files() {
        let total: u64 = files.files().iter().map(|file| file.size).sum();
        writeln!(
            out,
            "  files      {} ({}; the model opens them on demand)",
            files.files().len(),
            super::human_size(total)
        )?;
        for file in files.files().iter().take(MAX_FILES_SHOWN) {
            writeln!(
                out,
                "    {} ({})",
                log_line(&file.path.display().to_string()),
                super::human_size(file.size)
            )?;
        }
        if files.files().len() > MAX_FILES_SHOWN {
            writeln!(
                out,
                "    ... and {} more",
                files.files().len() - MAX_FILES_SHOWN
            )?;
        }
    }
    writeln!(out, "  hash       {}", assessment.hash.full)?;
    let by = match (&assessment.state, grant) {
        (SkillState::Granted, Some(grant)) => {
            format!(" (by {}, {})", grant.granted_by, grant.granted_at)
        }
        _ => String::new(),
    };
    writeln!(out, "  state      {}{by}", assessment.state.name())?;
    if let SkillState::Drifted(reasons) = &assessment.state {
        for reason in reasons {
            writeln!(out, "  drift      {reason}")?;
        }
    }
    if let Some(moved_from) = grant.and_then(|g| g.moved_from.as_deref()) {
        writeln!(
            out,
            "  moved      by a bundled update, without review, from {moved_from}"
        )?;
    }

    writeln!(out, "requested")?;
    write_capabilities(&mut out, &requested, &assessment.requested.mounts, &app.env)?;
    writeln!(out, "granted")?;
    match grant {
        None => writeln!(
            out,
            "  nothing: review the request above, then `{}`",
            hint::talaria(&format!("skills grant {}", skill.name()))
        )?,
        Some(grant) if grant_diff(grant, &requested).is_empty() => writeln!(
            out,
            "  exactly what is requested, at {}",
            short_hash(&grant.hash)
        )?,
        Some(grant) => {
            writeln!(out, "  at {} (v{})", short_hash(&grant.hash), grant.version)?;
            write_capabilities(&mut out, grant, &assessment.requested.mounts, &app.env)?;
        }
    }

    writeln!(out, "tools")?;
    match &tools {
        Tools::Listed(tools) if tools.is_empty() => writeln!(out, "  none")?,
        Tools::Listed(tools) => {
            for tool in tools {
                // Names and descriptions come from the component: untrusted.
                writeln!(
                    out,
                    "  {}.{}  {}",
                    skill.name(),
                    log_line(&tool.name),
                    message(&tool.description)
                )?;
            }
        }
        Tools::InstructionsOnly => writeln!(out, "  none: the skill has instructions only")?,
        Tools::NotLoaded => writeln!(
            out,
            "  listed once the skill is granted (its component is not run before)"
        )?,
        Tools::LoadFailed(error) => {
            writeln!(out, "  the component does not load: {}", log_line(error))?
        }
    }

    let quota = if data.mounted {
        format!(" of its {} MiB quota", manifest.limits.data_mb)
    } else {
        String::new()
    };
    writeln!(out, "data")?;
    match data.used {
        Some(used) => writeln!(
            out,
            "  {} MiB{quota} in {}",
            used.div_ceil(1 << 20),
            data.dir.display()
        )?,
        None if data.mounted => writeln!(
            out,
            "  none yet ({} is created at the first call)",
            data.dir.display()
        )?,
        None => writeln!(out, "  none (the skill mounts no ${{skill_data}})")?,
    }
    Ok(())
}

/// Files listed by `skills info`; `--json` lists all.
const MAX_FILES_SHOWN: usize = 50;

/// The frontmatter's optional keys, as written (untrusted: sanitised).
fn write_frontmatter(out: &mut impl Write, frontmatter: &Frontmatter) -> std::io::Result<()> {
    if let Some(license) = &frontmatter.license {
        writeln!(out, "  license    {}", log_line(license))?;
    }
    if let Some(compatibility) = &frontmatter.compatibility {
        writeln!(out, "  compat     {}", log_line(compatibility))?;
    }
    if !frontmatter.metadata.is_empty() {
        let pairs: Vec<String> = frontmatter
            .metadata
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        writeln!(out, "  metadata   {}", log_line(&pairs.join(", ")))?;
    }
    if !frontmatter.allowed_tools.is_empty() {
        writeln!(
            out,
            "  allowed-tools  {} (shown, not enforced: the grant and the approvals decide)",
            log_line(&frontmatter.allowed_tools.join(" "))
        )?;
    }
    if !frontmatter.other.is_empty() {
        let keys: Vec<&str> = frontmatter.other.keys().map(String::as_str).collect();
        writeln!(
            out,
            "  other keys {} (kept, not used)",
            log_line(&keys.join(", "))
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn info_json(
    app: &App,
    skill: &Skill,
    state: &SkillState,
    hash: &str,
    requested: &Grant,
    grant: Option<&Grant>,
    tools: &Tools,
    data: &Data,
) -> serde_json::Value {
    let manifest = &skill.manifest;
    let drift: Vec<&String> = match state {
        SkillState::Drifted(reasons) => reasons.iter().collect(),
        _ => Vec::new(),
    };
    let (tools, tools_note) = match tools {
        Tools::Listed(tools) => (
            Some(
                tools
                    .iter()
                    .map(|tool| {
                        json!({
                            "name": tool.name,
                            "description": tool.description,
                            "parameters": tool.parameters,
                        })
                    })
                    .collect::<Vec<_>>(),
            ),
            None,
        ),
        Tools::InstructionsOnly => (Some(Vec::new()), Some("instructions only".to_owned())),
        Tools::NotLoaded => (None, Some("listed once the skill is granted".to_owned())),
        Tools::LoadFailed(error) => (None, Some(format!("the component does not load: {error}"))),
    };
    // Where the manifest's mount templates point at this start.
    let resolved = crate::skill::capabilities::requested(skill, app.roots()).mounts;
    json!({
        "schema": "talaria.skills.info/v1",
        "name": skill.name(),
        "version": manifest.known_version().map(ToString::to_string),
        "format": manifest.form_name(),
        "description": manifest.description,
        "api": (manifest.form == Form::Toml).then(|| manifest.api.to_string()),
        "frontmatter": skill.frontmatter().map(|frontmatter| json!({
            "license": frontmatter.license,
            "compatibility": frontmatter.compatibility,
            "metadata": frontmatter.metadata,
            "allowed_tools": frontmatter.allowed_tools,
            "other": frontmatter.other,
        })),
        "files": skill.contents().files().map(|files| files.files().iter().map(|file| json!({
            "path": file.path,
            "size": file.size,
        })).collect::<Vec<_>>()),
        "component": manifest.component,
        "instructions": skill.instructions().is_some(),
        "dir": skill.dir,
        "hash": hash,
        "state": state.name(),
        "drift": drift,
        "requested": capabilities_json(requested, &resolved, &|name| app.env.get(name).is_some()),
        "granted": grant.map(|grant| {
            let mut granted = capabilities_json(grant, &resolved, &|name| app.env.get(name).is_some());
            granted["by"] = json!(grant.granted_by.to_string());
            granted["at"] = json!(grant.granted_at);
            granted["hash"] = json!(grant.hash);
            granted["version"] = json!(grant.version);
            granted["moved_from"] = json!(grant.moved_from);
            granted
        }),
        "tools": tools,
        "tools_note": tools_note,
        "data": {
            "dir": data.dir,
            "used_bytes": data.used,
            "quota_mb": data.mounted.then_some(manifest.limits.data_mb),
        },
    })
}
