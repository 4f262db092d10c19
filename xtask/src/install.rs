//! The install step of `cargo xtask install`: a built `talaria` binary and
//! the bundled skills, laid out under a prefix the way the runtime looks
//! for them:
//!
//! ```text
//! PREFIX/bin/talaria
//! PREFIX/share/talaria/skills/<name>/{skill.toml, SKILL.md, <component>.wasm}
//! ```
//!
//! (the runtime finds bundled skills at `share/talaria/skills` beside the
//! binary's `bin/`). The build happens before, in `main.rs`; this file uses
//! only `std`, `anyhow` and `toml`, so the integration tests include it as
//! it is and install the binary they were built with, without building
//! anything again.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The folder of bundled skills in the repository.
pub const BUNDLED_SKILLS: &str = "skills";

/// What [`install`] put where.
#[derive(Debug)]
pub struct Installed {
    pub binary: PathBuf,
    pub skills_dir: PathBuf,
    pub skills: Vec<String>,
}

/// Copy `binary` to `PREFIX/bin/talaria` and each bundled skill of the
/// repository at `root` (`skills/<name>/`, its component already built) to
/// `PREFIX/share/talaria/skills/<name>/`. Each is swapped in whole: a
/// running `talaria` keeps its old binary, and the skills folder is never
/// a mix of two installs.
pub fn install(binary: &Path, root: &Path, prefix: &Path) -> anyhow::Result<Installed> {
    let bin_dir = prefix.join("bin");
    let share_dir = prefix.join("share").join("talaria");
    for dir in [&bin_dir, &share_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    let skills_dir = share_dir.join("skills");
    let staging = share_dir.join(format!(".skills.new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let mut skills = Vec::new();
    for source in skill_folders(&root.join(BUNDLED_SKILLS))? {
        let name = file_name(&source);
        let destination = staging.join(&name);
        std::fs::create_dir(&destination)?;
        for file in skill_files(&source)? {
            let from = source.join(&file);
            std::fs::copy(&from, destination.join(&file)).with_context(|| {
                format!(
                    "cannot copy {} (is its component built? `cargo xtask build-skills`)",
                    from.display()
                )
            })?;
        }
        skills.push(name);
    }
    let previous = share_dir.join(format!(".skills.old-{}", std::process::id()));
    if skills_dir.exists() {
        std::fs::rename(&skills_dir, &previous)
            .with_context(|| format!("cannot move {} aside", skills_dir.display()))?;
    }
    std::fs::rename(&staging, &skills_dir).with_context(|| {
        format!(
            "cannot rename {} to {}",
            staging.display(),
            skills_dir.display()
        )
    })?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous)
            .with_context(|| format!("cannot remove {}", previous.display()))?;
    }

    let installed = bin_dir.join("talaria");
    let temporary = bin_dir.join(format!(".talaria.new-{}", std::process::id()));
    std::fs::copy(binary, &temporary).with_context(|| {
        format!(
            "cannot copy {} to {}",
            binary.display(),
            temporary.display()
        )
    })?;
    std::fs::rename(&temporary, &installed).with_context(|| {
        format!(
            "cannot rename {} to {}",
            temporary.display(),
            installed.display()
        )
    })?;
    Ok(Installed {
        binary: installed,
        skills_dir,
        skills,
    })
}

/// The sub-folders of `dir` that hold a `skill.toml`, sorted.
fn skill_folders(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.join("skill.toml").is_file())
        .collect();
    folders.sort();
    Ok(folders)
}

/// What a skill ships: its manifest, its instructions when it has them, and
/// the component its manifest names. The crate's sources stay behind.
fn skill_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let manifest = dir.join("skill.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    let component = table
        .get("skill")
        .and_then(|skill| skill.get("component"))
        .and_then(|component| component.as_str());
    let mut files = vec!["skill.toml".to_owned()];
    if dir.join("SKILL.md").is_file() {
        files.push("SKILL.md".to_owned());
    }
    files.extend(component.map(str::to_owned));
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}
