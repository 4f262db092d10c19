//! `talaria tool list | info | call`: the tools of the granted skills, one
//! of them as the model sees it, and one call in a fresh sandbox.

use std::io::{Read, Write};

use anyhow::Context as _;
use serde_json::json;

use super::Failure;
use crate::agent::tools::skill_tool_definition;
use crate::app::App;
use crate::sandbox::LoadedSkill;
use crate::skill::registry::SkillEntry;
use crate::untrusted_text::{log_line, message};

pub(crate) fn print_tools(entries: &[SkillEntry], as_json: bool) -> anyhow::Result<()> {
    let mut out = super::output::stdout();
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
            let arguments = describe_arguments(&tool.parameters_value());
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

pub(crate) async fn call_tool(app: &App, tool: &str, arguments: &str) -> Result<(), Failure> {
    let (skill_name, tool_name) = split_tool_name(tool)?;
    let arguments = read_arguments(arguments)?;
    let loaded = load_with_tool(app, skill_name, tool_name).await?;
    let output = loaded.call(tool_name, &arguments).await?;
    let result = output.result;
    let mut out = super::output::stdout();
    if result.ends_with('\n') {
        write!(out, "{result}")?;
    } else {
        writeln!(out, "{result}")?;
    }
    Ok(())
}

/// `talaria tool info SKILL.TOOL`: the tool as the model sees it.
pub(crate) async fn info(app: &App, tool: &str, as_json: bool) -> Result<(), Failure> {
    let (skill_name, tool_name) = split_tool_name(tool)?;
    let loaded = load_with_tool(app, skill_name, tool_name).await?;
    let spec = loaded
        .tools()
        .iter()
        .find(|t| t.name == tool_name)
        .context("the tool was found a moment ago")?;
    let definition = skill_tool_definition(skill_name, spec);
    let mut out = super::output::stdout();
    if as_json {
        let shown = definition.unwrap_or(serde_json::Value::Null);
        writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?;
        return Ok(());
    }
    writeln!(out, "{skill_name}.{}", log_line(tool_name))?;
    match &definition {
        Some(definition) => writeln!(
            out,
            "  model name   {}",
            log_line(definition["function"]["name"].as_str().unwrap_or_default())
        )?,
        None => writeln!(
            out,
            "  model name   none: {skill_name}__{} is over the 64 characters models accept; the \
             tool is not offered",
            log_line(tool_name)
        )?,
    }
    writeln!(out, "  description  {}", message(&spec.description))?;
    let arguments = describe_arguments(&spec.parameters_value());
    if !arguments.is_empty() {
        writeln!(out, "  arguments    {arguments}")?;
    }
    // Pretty JSON from the component: its strings may hold anything.
    let schema = serde_json::to_string_pretty(&spec.parameters_value())?;
    writeln!(out, "JSON Schema of the arguments, as sent to the model:")?;
    writeln!(
        out,
        "{}",
        crate::untrusted_text::sanitize(&schema, usize::MAX, true)
    )?;
    Ok(())
}

/// `SKILL.TOOL` split in two, or a usage error.
fn split_tool_name(tool: &str) -> Result<(&str, &str), Failure> {
    tool.split_once('.')
        .filter(|(skill, tool)| !skill.is_empty() && !tool.is_empty())
        .ok_or_else(|| {
            Failure::usage(anyhow::anyhow!(
                "expected SKILL.TOOL (e.g. text.count), found {tool:?}"
            ))
        })
}

/// The granted skill `skill_name`, loaded, checked to offer `tool_name`.
async fn load_with_tool(
    app: &App,
    skill_name: &str,
    tool_name: &str,
) -> Result<LoadedSkill, Failure> {
    let registry = app.registry();
    let skill = registry.find(skill_name).map_err(Failure::usage)?;
    let assessment = registry.assess(&skill, &registry.grants()?);
    if let Some(refusal) = super::skills::refusal(&skill, &assessment.state) {
        return Err(anyhow::anyhow!(refusal).into());
    }
    let effective = assessment
        .effective
        .context("a granted skill has effective capabilities")?;
    if skill.manifest.component.is_none() {
        return Err(Failure::usage(anyhow::anyhow!(
            "skill {} has instructions only (SKILL.md) and no tools",
            skill.label()
        )));
    }
    let loaded = registry.load(&skill, effective).await?;
    if !loaded.tools().iter().any(|t| t.name == tool_name) {
        let known: Vec<&str> = loaded.tools().iter().map(|t| t.name.as_str()).collect();
        return Err(Failure::usage(anyhow::anyhow!(
            "skill {} has no tool {tool_name:?}; it offers: {}",
            loaded.label(),
            known.join(", ")
        )));
    }
    Ok(loaded)
}

/// JSON arguments from the command line or stdin, checked to be an object.
fn read_arguments(arguments: &str) -> Result<String, Failure> {
    let text = if arguments == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the arguments from stdin")
            .map_err(Failure::usage)?;
        text
    } else {
        arguments.to_owned()
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => Ok(text),
        Ok(other) => Err(Failure::usage(anyhow::anyhow!(
            "the arguments must be a JSON object like '{{\"text\": \"hi\"}}', found {}",
            json_kind(&other)
        ))),
        Err(error) => Err(Failure::usage(anyhow::anyhow!(
            "the arguments are not valid JSON: {error}"
        ))),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
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
    }
}
