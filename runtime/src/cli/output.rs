//! Tables and JSON for `skills list`, `tool list` and `config show`.

use std::io::Write;

use serde_json::json;

use crate::app::App;
use crate::skill::registry::SkillEntry;
use crate::untrusted_text::{log_line, message};

pub(crate) fn print_skills(entries: &[SkillEntry], as_json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if as_json {
        let skills: Vec<serde_json::Value> = entries.iter().map(skill_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&skills)?)?;
        return Ok(());
    }
    if entries.is_empty() {
        writeln!(out, "no skills installed")?;
        return Ok(());
    }
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|entry| match entry {
            SkillEntry::Invalid(error) => [
                folder_name(&error.file),
                "-".into(),
                "-".into(),
                "invalid".into(),
                log_line(&error.message),
            ],
            SkillEntry::Known {
                skill,
                assessment,
                loaded,
            } => {
                let (tools, state, note) = match loaded {
                    Some(Ok(loaded)) => (
                        loaded.tools().len().to_string(),
                        "granted",
                        skill.manifest.description.clone(),
                    ),
                    Some(Err(error)) => ("-".into(), "failed", log_line(error)),
                    None if skill.manifest.component.is_none() => (
                        "0".into(),
                        assessment.state.name(),
                        skill.manifest.description.clone(),
                    ),
                    None => (
                        "-".into(),
                        assessment.state.name(),
                        skill.manifest.description.clone(),
                    ),
                };
                [
                    skill.name().to_owned(),
                    skill.manifest.version.to_string(),
                    tools,
                    state.into(),
                    note,
                ]
            }
        })
        .collect();
    write_table(
        &mut out,
        ["NAME", "VERSION", "TOOLS", "STATE", "DESCRIPTION"],
        &rows,
    )?;
    Ok(())
}

fn skill_json(entry: &SkillEntry) -> serde_json::Value {
    match entry {
        SkillEntry::Invalid(error) => json!({
            "name": folder_name(&error.file),
            "state": "invalid",
            "error": error.to_string(),
            "dir": error.file.parent(),
        }),
        SkillEntry::Known {
            skill,
            assessment,
            loaded,
        } => {
            let (state, tools, error) = match loaded {
                Some(Ok(loaded)) => (
                    "granted",
                    loaded.tools().iter().map(|t| t.name.clone()).collect(),
                    None,
                ),
                Some(Err(error)) => ("failed", Vec::new(), Some(error.clone())),
                None => (assessment.state.name(), Vec::new(), None),
            };
            json!({
                "name": skill.name(),
                "version": skill.manifest.version.to_string(),
                "description": skill.manifest.description,
                "state": state,
                "instructions_only": skill.manifest.component.is_none(),
                "tools": tools,
                "error": error,
                "dir": skill.dir,
            })
        }
    }
}

pub(crate) fn print_tools(entries: &[SkillEntry], as_json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let ready = entries.iter().filter_map(|entry| match entry {
        SkillEntry::Known {
            skill,
            loaded: Some(Ok(loaded)),
            ..
        } => Some((skill, loaded)),
        _ => None,
    });
    if as_json {
        let tools: Vec<serde_json::Value> = ready
            .flat_map(|(skill, loaded)| {
                loaded.tools().iter().map(move |tool| {
                    json!({
                        "name": format!("{}.{}", skill.name(), tool.name),
                        "skill": skill.name(),
                        "tool": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    })
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&tools)?)?;
        return Ok(());
    }
    let mut any = false;
    for (skill, loaded) in ready {
        for tool in loaded.tools() {
            any = true;
            // Names and descriptions come from the component: untrusted.
            writeln!(out, "{}.{}", skill.name(), log_line(&tool.name))?;
            writeln!(out, "    {}", message(&tool.description))?;
            let arguments = describe_arguments(&tool.parameters);
            if !arguments.is_empty() {
                writeln!(out, "    arguments: {arguments}")?;
            }
        }
    }
    if !any {
        writeln!(
            out,
            "no tools: no skill is ready (see `talaria skills list`)"
        )?;
    }
    Ok(())
}

pub(crate) fn print_config(app: &App, as_json: bool) -> anyhow::Result<()> {
    let settings = app.config.shown();
    let mut out = std::io::stdout().lock();
    if as_json {
        let report = json!({
            "home": app.home.root(),
            "config_file": app.home.config_file(),
            "settings": settings,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(out, "# home: {}", app.home.root().display())?;
    writeln!(out, "# config file: {}", app.home.config_file().display())?;
    let rows: Vec<[String; 3]> = settings
        .into_iter()
        .map(|s| [s.key.to_owned(), s.value, format!("({})", s.source)])
        .collect();
    write_table(&mut out, ["KEY", "VALUE", "SOURCE"], &rows)?;
    Ok(())
}

pub(crate) fn print_findings(
    home: &crate::home::Home,
    findings: &[crate::doctor::Finding],
    as_json: bool,
) -> anyhow::Result<()> {
    use crate::doctor::Severity;
    let mut out = std::io::stdout().lock();
    if as_json {
        let report = json!({ "home": home.root(), "findings": findings });
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(out, "talaria doctor: {}", home.root().display())?;
    for finding in findings {
        let mark = match finding.severity {
            Severity::Ok => "ok     ",
            Severity::Warning => "warning",
            Severity::Problem => "PROBLEM",
        };
        writeln!(out, "{mark}  {:<10}  {}", finding.check, finding.message)?;
        if let Some(fix) = &finding.fix {
            writeln!(out, "{:<21}fix: {fix}", "")?;
        }
    }
    let problems = findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    writeln!(out, "{problems} problem(s), {warnings} warning(s)")?;
    Ok(())
}

/// `path (string, required), limit (integer)` from a JSON Schema object.
/// The schema comes from the component, so every name in it is sanitised.
fn describe_arguments(schema: &serde_json::Value) -> String {
    let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
        return String::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    properties
        .iter()
        .map(|(name, property)| {
            let kind = match property.get("type") {
                Some(serde_json::Value::String(kind)) => kind.clone(),
                Some(serde_json::Value::Array(kinds)) => kinds
                    .iter()
                    .filter_map(|k| k.as_str())
                    .filter(|k| *k != "null")
                    .collect::<Vec<_>>()
                    .join("|"),
                _ => "any".into(),
            };
            let (shown, kind) = (log_line(name), log_line(&kind));
            if required.contains(&name.as_str()) {
                format!("{shown} ({kind}, required)")
            } else {
                format!("{shown} ({kind})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The folder of a skill, for display: any name can be created on disk,
/// escape sequences included.
pub(crate) fn folder_name(manifest: &std::path::Path) -> String {
    manifest
        .parent()
        .and_then(|dir| dir.file_name())
        .map(|name| log_line(&name.to_string_lossy()))
        .unwrap_or_else(|| "?".into())
}

fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut line = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        line
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_summarised_from_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "limit": {"type": ["integer", "null"]},
                "anything": {}
            },
            "required": ["path"]
        });
        assert_eq!(
            describe_arguments(&schema),
            "anything (any), limit (integer), path (string, required)"
        );
        assert_eq!(describe_arguments(&json!({"type": "object"})), "");
    }

    #[test]
    fn schema_names_from_a_component_are_sanitised() {
        let schema = json!({
            "type": "object",
            "properties": {
                "\u{1b}[2Jpath\u{1b}]0;pwned\u{7}": {"type": "string\u{1b}[31m"},
            },
            "required": ["\u{1b}[2Jpath\u{1b}]0;pwned\u{7}"]
        });
        assert_eq!(describe_arguments(&schema), "path (string, required)");
        assert_eq!(
            folder_name(std::path::Path::new("/skills/evil\u{1b}[2J/skill.toml")),
            "evil"
        );
    }
}
