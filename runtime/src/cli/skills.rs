//! `talaria skills list | info | grant | revoke | install | remove | new |
//! reset | audit`: printing and asking; the work is the registry's. `info`,
//! `remove` and the scaffold of `new` have modules of their own.

mod info;
mod remove;
mod scaffold;

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use serde_json::json;

use super::table::write_table;
use super::{Failure, hint};
use crate::app::App;
use crate::config::Environment;
use crate::skill::grants::{Grant, GrantChoices, GrantedBy, SkillState, describe_exec, short_hash};
use crate::skill::registry::{ActionError, GrantOutcome, SkillEntry, SkillRegistry};
use crate::skill::report::{audit_json, data_usage, folder_name};
use crate::skill::{self, GrantedMount, Limits};
use crate::untrusted_text::log_line;

pub(crate) use info::info;
pub(crate) use remove::remove;
pub(crate) use scaffold::new;

pub(crate) fn print_skills(entries: &[SkillEntry], as_json: bool) -> anyhow::Result<()> {
    let mut out = super::output::stdout();
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
                    skill.manifest.shown_version(),
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
                "version": skill.manifest.known_version().map(ToString::to_string),
                "format": skill.manifest.form_name(),
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

/// `talaria skills grant NAME`: show exactly what will be granted, with the
/// difference from the previous grant, and record it once confirmed.
pub(crate) async fn grant(
    app: &App,
    name: &str,
    choices: &GrantChoices,
    yes: bool,
) -> Result<(), Failure> {
    let env = &app.env;
    let outcome = app
        .registry()
        .grant(name, choices, |request| {
            let mut out = super::output::stdout();
            writeln!(
                out,
                "Grant skill {} ({})",
                request.skill.label(),
                short_hash(&request.grant.hash)
            )?;
            write_capabilities(&mut out, request.grant, &request.requested.mounts, env)?;
            for note in &request.notes {
                writeln!(out, "{note}")?;
            }
            if let Some(previous) = request.previous {
                writeln!(
                    out,
                    "Changes since the grant of {} by {}:",
                    previous.granted_at, previous.granted_by
                )?;
                for line in &request.changes {
                    writeln!(out, "  {line}")?;
                }
            }
            drop(out);
            if yes {
                return Ok(true);
            }
            confirm(
                &format!("Grant these capabilities to {}?", request.skill.label()),
                NoTerminal::Grant,
            )
        })
        .await
        .map_err(usage_if_unknown)?;
    match outcome {
        GrantOutcome::Granted => writeln!(super::output::stdout(), "granted {name}")?,
        GrantOutcome::Unchanged => writeln!(
            super::output::stdout(),
            "skill {name} is already granted exactly this; nothing to do"
        )?,
        GrantOutcome::Declined => return Err(anyhow::anyhow!("not granted").into()),
    }
    Ok(())
}

/// An unknown skill name is a usage error (exit 2).
fn usage_if_unknown(error: anyhow::Error) -> Failure {
    if error.downcast_ref::<ActionError>().is_some() || error.downcast_ref::<NoTerminal>().is_some()
    {
        Failure::usage(error)
    } else {
        error.into()
    }
}

/// `talaria skills revoke NAME`.
pub(crate) fn revoke(app: &App, name: &str) -> Result<(), Failure> {
    match app.registry().revoke(name).map_err(usage_if_unknown)? {
        Some(grant) => writeln!(
            super::output::stdout(),
            "revoked the grant of {name} v{}; the skill is pending",
            grant.version
        )?,
        None => writeln!(
            super::output::stdout(),
            "{name} had no grant; nothing to revoke"
        )?,
    }
    Ok(())
}

/// `talaria skills install PATH`: copy a skill folder into the skills
/// directory after validating the copy; the previous revision stays in
/// place and running unless the new one is complete and valid.
/// `talaria skills install SOURCE [--path DIR] [--ref REF]`: each skill
/// folder the source holds, installed and reported on its own line.
pub(crate) async fn install(
    app: &App,
    source: &str,
    sub_path: Option<&Path>,
    reference: Option<&str>,
) -> Result<(), Failure> {
    use crate::skill::install::source::{Fetched, Source};
    let parsed = Source::parse(source).map_err(Failure::usage)?;
    let scratch_parent = app.registry().skills_dir().join(".staging");
    let fetched =
        Fetched::fetch(&parsed, sub_path, reference, &scratch_parent).map_err(|error| {
            if matches!(parsed, Source::Folder(_)) {
                Failure::usage(error)
            } else {
                Failure::from(error)
            }
        })?;
    let folders = fetched.skill_folders().map_err(Failure::usage)?;
    if let [folder] = folders.as_slice() {
        return install_one(app, &fetched, folder)
            .await
            .map_err(|(failure, _)| failure);
    }
    let mut failed = 0;
    for folder in &folders {
        if let Err((failure, name)) = install_one(app, &fetched, folder).await {
            failed += 1;
            writeln!(
                super::output::stdout(),
                "not installed {name}: {}",
                log_line(&format!("{:#}", failure.error))
            )?;
        }
    }
    let total = folders.len();
    if failed > 0 {
        return Err(Failure::from(anyhow::anyhow!(
            "{failed} of {total} skills in {} were not installed (see above); the others were",
            fetched.shown(&fetched.root)
        )));
    }
    writeln!(
        super::output::stdout(),
        "installed all {total} skills of {}",
        fetched.shown(&fetched.root)
    )?;
    Ok(())
}

/// Install the skill in `folder` of `fetched` and say what became of it;
/// an error comes with the folder's name.
async fn install_one(
    app: &App,
    fetched: &crate::skill::install::source::Fetched,
    folder: &Path,
) -> Result<(), (Failure, String)> {
    let name = folder
        .file_name()
        .map(|name| log_line(&name.to_string_lossy()))
        .unwrap_or_default();
    // Messages name the source the operator gave, never the scratch folder.
    let named = |error: anyhow::Error| {
        anyhow::anyhow!("{}", fetched.replace_scratch(&format!("{error:#}")))
    };
    if let Err(error) = skill::Skill::load(folder) {
        return Err((Failure::usage(named(error.into())), name));
    }
    let installed = match app.registry().install(folder).await {
        Ok(installed) => installed,
        Err(error) => return Err((Failure::from(named(error)), name)),
    };
    report_installed(&installed).map_err(|error| (Failure::from(error), name))
}

fn report_installed(installed: &crate::skill::registry::Installed) -> anyhow::Result<()> {
    let (skill, state) = (&installed.skill, &installed.state);
    let what = if skill.manifest.component.is_none() {
        " (instructions only)"
    } else {
        ""
    };
    if installed.granted_now {
        let covers = if skill.hash().parts.folder.is_some() {
            "every file of it"
        } else {
            "skill.toml and SKILL.md"
        };
        writeln!(
            super::output::stdout(),
            "installed {}{what}; it asks for nothing beyond being read, so it is granted, \
             pinned to {} ({covers}: a later change needs `{}`)",
            skill.label(),
            crate::skill::grants::short_hash(&skill.hash().full),
            hint::talaria(&format!("skills grant {}", skill.name()))
        )?;
        return Ok(());
    }
    match refusal(skill, state) {
        None => writeln!(
            super::output::stdout(),
            "installed {}; it is granted",
            skill.label()
        )?,
        Some(why) => writeln!(
            super::output::stdout(),
            "installed {}; {why}",
            skill.label()
        )?,
    }
    Ok(())
}

/// Why `skill` may not run, with the commands that fix it as this command's
/// user would paste them.
pub(crate) fn refusal(skill: &skill::Skill, state: &SkillState) -> Option<String> {
    let why = SkillRegistry::refusal(skill, state)?;
    let again = if matches!(state, SkillState::Drifted(_)) {
        " again"
    } else {
        ""
    };
    Some(format!(
        "{why}; review it with `{}` and grant it{again} with `{}`",
        hint::talaria("skills audit"),
        hint::talaria(&format!("skills grant {}", skill.name()))
    ))
}

/// `talaria skills export NAME DIR`: the skill as an Agent Skills folder.
pub(crate) fn export(app: &App, name: &str, dir: &Path) -> Result<(), Failure> {
    let skill = app
        .registry()
        .find(name)
        .map_err(|e| usage_if_unknown(e.into()))?;
    let written = skill::export::export(&skill, dir).map_err(Failure::usage)?;
    writeln!(
        super::output::stdout(),
        "exported {} to {} (Agent Skills: SKILL.md with its frontmatter{})",
        skill.label(),
        written.display(),
        if skill.manifest.component.is_some() {
            "; skill.toml and the component, for Talaria"
        } else {
            ""
        }
    )?;
    Ok(())
}

/// `talaria skills reset NAME`: restore the shipped copy of a bundled skill.
pub(crate) fn reset(app: &App, name: &str) -> Result<(), Failure> {
    let shipped = app.bundled_dir().ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "no bundled skills are configured (set --bundled-skills, TALARIA_BUNDLED_SKILLS or \
             skills.bundled to the folder of shipped skills)"
        ))
    })?;
    let outcome = app
        .registry()
        .reset(shipped, name)
        .map_err(Failure::usage)?;
    writeln!(
        super::output::stdout(),
        "{name}: restored the shipped copy; {}",
        outcome.describe(name)
    )?;
    Ok(())
}

/// Ask the operator at the terminal; refuse outright without one.
fn confirm(question: &str, refusal: NoTerminal) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(anyhow::Error::new(refusal));
    }
    let mut out = super::output::stdout();
    write!(out, "{question} [y/N] ")?;
    out.flush()?;
    drop(out);
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
}

/// An action that needs confirmation, asked for without a terminal.
#[derive(Debug, thiserror::Error)]
enum NoTerminal {
    #[error(
        "refusing to grant without confirmation: stdin is not a terminal; review the capabilities \
         above and pass --yes to grant them"
    )]
    Grant,
    #[error(
        "refusing to remove without confirmation: stdin is not a terminal; review the above and \
         run `{0}`"
    )]
    Remove(String),
}

fn write_capabilities(
    out: &mut impl Write,
    grant: &Grant,
    resolved: &[GrantedMount],
    env: &Environment,
) -> std::io::Result<()> {
    if grant.mounts.is_empty() {
        writeln!(out, "  mounts   none")?;
    }
    for (index, mount) in grant.mounts.iter().enumerate() {
        let label = if index == 0 { "mounts" } else { "" };
        // The grant names the template; show where it points at this start.
        let now = resolved
            .iter()
            .find(|m| m.source.variable() == mount.source && m.guest == mount.guest)
            .map(|m| format!(" = {}", m.host.display()))
            .unwrap_or_default();
        writeln!(
            out,
            "  {label:<8} {}{now} → {} ({})",
            mount.source,
            mount.guest,
            mount.access.short()
        )?;
    }
    let env_names: Vec<String> = grant
        .env
        .iter()
        .map(|name| {
            format!(
                "{name} ({})",
                if env.get(name).is_some() {
                    "set"
                } else {
                    "not set"
                }
            )
        })
        .collect();
    writeln!(out, "  env      {}", list_or_none(&env_names))?;
    let exec: Vec<String> = grant.exec.iter().map(describe_exec).collect();
    writeln!(out, "  exec     {}", list_or_none(&exec))?;
    writeln!(out, "  network  {}", list_or_none(&grant.network))?;
    let secrets: Vec<String> = grant
        .secrets
        .iter()
        .map(|secret| {
            format!(
                "{} → {} ({})",
                secret.name,
                secret.hosts.join(", "),
                if env.get(&secret.name).is_some() {
                    "set"
                } else {
                    "not set"
                }
            )
        })
        .collect();
    if !secrets.is_empty() {
        writeln!(out, "  secrets  {}", secrets.join("; "))?;
    }
    writeln!(out, "  limits   {}", describe_limits(&grant.limits))
}

/// `512 bytes`, `3.4 KiB`, `12.0 MiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn describe_limits(limits: &Limits) -> String {
    format!(
        "memory {} MiB, timeout {} ms, output {} bytes, data {} MiB",
        limits.memory_mb, limits.timeout_ms, limits.max_output_bytes, limits.data_mb
    )
}

/// `talaria skills audit`: the operator's view of every skill. Returns
/// whether every skill is granted.
pub(crate) async fn audit(app: &App, as_json: bool) -> Result<bool, Failure> {
    let entries = app.registry().entries(false).await?;
    let grants = app.registry().grants()?;
    // Grants of skills whose folder is gone: they grant nothing, but an
    // operator should see them, and clear them.
    let orphaned = app.registry().orphaned_grants(&grants);
    let all_granted = orphaned.is_empty()
        && entries.iter().all(|entry| {
            matches!(entry, SkillEntry::Known { assessment, .. } if assessment.state == SkillState::Granted)
        });
    if as_json {
        let skills: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| audit_json(e, &grants, &|name| app.env.get(name).is_some()))
            .chain(orphaned.iter().map(|(name, grant)| {
                json!({
                    "name": name,
                    "state": "orphaned",
                    "granted_version": grant.version,
                    "granted_hash": grant.hash,
                    "granted_at": grant.granted_at,
                    "fix": hint::talaria(&format!("skills revoke {name}")),
                })
            }))
            .collect();
        let report = json!({
            "schema": "talaria.skills.audit/v1",
            "home": app.home.root(),
            "all_granted": all_granted,
            "skills": skills,
        });
        writeln!(
            super::output::stdout(),
            "{}",
            serde_json::to_string_pretty(&report)?
        )?;
        return Ok(all_granted);
    }
    let mut out = super::output::stdout();
    if entries.is_empty() {
        writeln!(
            out,
            "no skills installed in {}",
            app.registry().skills_dir().display()
        )?;
    }
    for entry in &entries {
        match entry {
            SkillEntry::Invalid(error) => {
                writeln!(out, "{}  invalid", folder_name(&error.file))?;
                writeln!(out, "  error    {error}")?;
            }
            SkillEntry::Known {
                skill, assessment, ..
            } => {
                let grant = grants.skills.get(skill.name());
                let by = match (&assessment.state, grant) {
                    (SkillState::Granted, Some(grant)) => {
                        format!(" (by {}, {})", grant.granted_by, grant.granted_at)
                    }
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "{}  {}  {}  {}{by}",
                    skill.name(),
                    skill
                        .manifest
                        .known_version()
                        .map_or_else(|| "-".to_owned(), |v| format!("v{v}")),
                    short_hash(&assessment.hash.full),
                    assessment.state.name()
                )?;
                if let SkillState::Drifted(reasons) = &assessment.state {
                    for reason in reasons {
                        writeln!(out, "  drift    {reason}")?;
                    }
                }
                if let Some(moved_from) = grant.and_then(|g| g.moved_from.as_deref()) {
                    writeln!(
                        out,
                        "  moved    by a bundled update, without review, from {moved_from}"
                    )?;
                }
                if let Some((dir, used)) = data_usage(assessment) {
                    let limit_mb = u64::from(assessment.requested.limits.data_mb);
                    writeln!(
                        out,
                        "  data     {} MiB of {limit_mb} MiB in {}{}",
                        used.div_ceil(1 << 20),
                        dir.display(),
                        if used > limit_mb << 20 {
                            " (over its quota: the skill does not run until files are removed)"
                        } else {
                            ""
                        }
                    )?;
                }
                // Show what the skill would get (granted) or asks for; its
                // network destinations and secrets are the operator's
                // choice, so those of its grant, or all it asks for.
                let mut shown = Grant::of(
                    skill,
                    &assessment.hash,
                    &assessment.requested,
                    GrantedBy::Operator,
                );
                match grant {
                    Some(grant) => {
                        shown.network = grant.network.clone();
                        shown.secrets = grant.secrets.clone();
                    }
                    None => {
                        (shown.network, shown.secrets) =
                            crate::skill::grants::asked_network(&assessment.requested.network);
                    }
                }
                write_capabilities(&mut out, &shown, &assessment.requested.mounts, &app.env)?;
            }
        }
        writeln!(out)?;
    }
    for (name, grant) in &orphaned {
        writeln!(
            out,
            "{name}  v{}  {}  orphaned (granted at {}; its folder is gone from {})",
            grant.version,
            short_hash(&grant.hash),
            grant.granted_at,
            app.registry().skills_dir().display()
        )?;
        writeln!(
            out,
            "  fix      {}",
            hint::talaria(&format!("skills revoke {name}"))
        )?;
        writeln!(out)?;
    }
    let summary = if all_granted {
        "every skill is granted".to_owned()
    } else {
        let waiting = entries.len() + orphaned.len()
            - entries
                .iter()
                .filter(|e| matches!(e, SkillEntry::Known { assessment, .. } if assessment.state == SkillState::Granted))
                .count();
        format!(
            "{waiting} skill(s) need attention: grant with `talaria skills grant NAME`, clear orphaned grants with `talaria skills revoke NAME`"
        )
    };
    writeln!(out, "{summary}")?;
    Ok(all_granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_readable() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(4096), "4.0 KiB");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
    }
}
