//! `talaria skills export`: a skill written for Talaria as a folder other
//! agents read in the Agent Skills format. The folder is copied as shipped
//! (`skill.toml` and the component stay: Talaria reads them back); its
//! `SKILL.md` gets the frontmatter the format requires when it lacks one,
//! so agents without a sandbox use the skill's instructions.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::manifest::is_agent_skill_name;
use super::{INSTRUCTIONS_FILE, Skill, install};

/// Write `skill` to `into/NAME`, which must not exist; returns that folder.
/// The copy is assembled beside it and renamed into place, so a failure
/// leaves nothing half-written.
pub fn export(skill: &Skill, into: &Path) -> anyhow::Result<PathBuf> {
    let name = skill.name();
    if !is_agent_skill_name(name) {
        bail!(
            "skill {}: the Agent Skills format allows no leading or trailing `-` and no `--` in a name; \
             rename the skill to export it",
            skill.label()
        );
    }
    let destination = into.join(name);
    if std::fs::symlink_metadata(&destination).is_ok() {
        bail!(
            "{} already exists; remove it or export to another folder",
            destination.display()
        );
    }
    std::fs::create_dir_all(into).with_context(|| format!("cannot create {}", into.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.export-"))
        .tempdir_in(into)
        .with_context(|| format!("cannot write in {}", into.display()))?;
    let staged = staging.path().join(name);
    install::copy_tree(&skill.dir, &staged)?;
    if skill.frontmatter().is_none() {
        let text = instructions_with_frontmatter(skill);
        // Held to the rules it is exported for, as a reader would check it.
        super::manifest::parse_frontmatter(&text, name).map_err(|error| {
            anyhow::anyhow!("skill {}: the exported SKILL.md: {error}", skill.label())
        })?;
        std::fs::write(staged.join(INSTRUCTIONS_FILE), text).with_context(|| {
            format!("cannot write {}", staged.join(INSTRUCTIONS_FILE).display())
        })?;
    }
    // Never over a folder made since the check above.
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        &staged,
        rustix::fs::CWD,
        &destination,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .with_context(|| format!("cannot create {}", destination.display()))?;
    Ok(destination)
}

/// SKILL.md with a frontmatter made from the manifest, then the old
/// instructions without any frontmatter they had (or the description).
fn instructions_with_frontmatter(skill: &Skill) -> String {
    let manifest = &skill.manifest;
    let mut text = String::new();
    let _ = writeln!(text, "---");
    let _ = writeln!(text, "name: {}", manifest.name);
    let _ = writeln!(text, "description: {}", yaml_quoted(&manifest.description));
    let _ = writeln!(text, "metadata:");
    let _ = writeln!(text, "  version: \"{}\"", manifest.version);
    let _ = writeln!(text, "---");
    match skill.instructions().map(without_frontmatter) {
        Some(body) if !body.trim().is_empty() => text.push_str(body),
        _ => {
            let _ = writeln!(text, "\n# {}\n\n{}", manifest.name, manifest.description);
        }
    }
    text
}

/// `text` after a leading `---` … `---` block, if it has one.
fn without_frontmatter(text: &str) -> &str {
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return text;
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        offset += line.len();
        if line.trim_end() == "---" {
            return &rest[offset..];
        }
    }
    text
}

/// A YAML double-quoted scalar.
fn yaml_quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skill_toml_skill_gets_a_frontmatter_and_keeps_its_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("notes");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("skill.toml"),
            "[skill]\nname = \"notes\"\nversion = \"1.4.0\"\ndescription = \"Take \\\"good\\\" notes\"\napi = \"^0.1\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("SKILL.md"),
            "---\ndescription: x\n---\n# Notes\nBody\n",
        )
        .unwrap();
        let skill = Skill::load(&dir).unwrap();
        assert!(skill.frontmatter().is_none());
        let out = root.path().join("out");
        let exported = export(&skill, &out).unwrap();
        assert_eq!(exported, out.join("notes"));
        let text = std::fs::read_to_string(exported.join("SKILL.md")).unwrap();
        assert_eq!(
            text,
            "---\nname: notes\ndescription: \"Take \\\"good\\\" notes\"\nmetadata:\n  version: \"1.4.0\"\n---\n# Notes\nBody\n"
        );
        assert!(exported.join("skill.toml").is_file());
        // Read back, it is the same skill, with the instructions' frontmatter.
        let again = Skill::load(&exported).unwrap();
        assert_eq!(
            again.frontmatter().unwrap().description,
            "Take \"good\" notes"
        );
        // Never over an existing folder.
        let error = export(&skill, &out).unwrap_err().to_string();
        assert!(error.contains("already exists"), "{error}");
        let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
        assert_eq!(left.len(), 1);
    }
}
