//! `talaria doctor`: checks a data home and explains each problem with the
//! command that fixes it.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigFile, Environment, Flags};
use crate::home::{Home, LockHolder, WriterLock};
use crate::sandbox::Sandbox;
use crate::skill::grants::{self, Grants, SkillState};
use crate::skill::{self, Capabilities, MountRoots};

/// How many files of a home are inspected for ownership; a home is small,
/// the bound only keeps doctor fast on a mistaken `--home /`.
const MAX_FILES_CHECKED: usize = 200_000;
/// How many paths a `chown` suggestion lists before switching to `find`.
const MAX_PATHS_LISTED: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    Warning,
    Problem,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Problem => "problem",
        })
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub check: &'static str,
    #[serde(serialize_with = "serialize_display")]
    pub severity: Severity,
    pub message: String,
    /// The command or edit that fixes it.
    pub fix: Option<String>,
}

fn serialize_display<S: serde::Serializer>(
    severity: &Severity,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(severity)
}

impl Finding {
    fn ok(check: &'static str, message: impl Into<String>) -> Self {
        Self {
            check,
            severity: Severity::Ok,
            message: message.into(),
            fix: None,
        }
    }

    fn problem(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check,
            severity: Severity::Problem,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    fn warning(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check,
            severity: Severity::Warning,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check. Skill checks run only when the home and config are usable.
pub async fn run(home: &Home, flags: &Flags, skills_dir: Option<PathBuf>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let usable = check_home(home, &mut findings);
    if !usable {
        return findings;
    }
    findings.push(check_env_file(home));
    findings.push(check_lock(home));
    let env = match Environment::load(home) {
        Ok(env) => env,
        Err(error) => {
            findings.push(Finding::problem(
                "env file",
                format!("{error:#}"),
                format!("fix the line named above in {}", home.env_file().display()),
            ));
            return findings;
        }
    };
    let config = ConfigFile::load(&home.config_file())
        .and_then(|file| Config::resolve(home, file, &env, flags));
    let config = match config {
        Ok(config) => {
            findings.push(Finding::ok(
                "config",
                format!("{} is valid", home.config_file().display()),
            ));
            config
        }
        Err(error) => {
            findings.push(Finding::problem(
                "config",
                format!("{error:#}"),
                format!(
                    "edit {} (see `talaria config show` once it is valid)",
                    home.config_file().display()
                ),
            ));
            return findings;
        }
    };
    let skills_dir = skills_dir
        .or_else(|| env.get("TALARIA_SKILLS_DIR").map(PathBuf::from))
        .unwrap_or_else(|| home.skills_dir());
    check_skills(home, &config, &skills_dir, &mut findings).await;
    findings
}

/// The home exists, is a directory, belongs to and is writable by this
/// user, and so does everything in it. Returns whether further checks make
/// sense.
fn check_home(home: &Home, findings: &mut Vec<Finding>) -> bool {
    let root = home.root();
    let metadata = match std::fs::metadata(root) {
        Ok(metadata) if metadata.is_dir() => metadata,
        Ok(_) => {
            findings.push(Finding::problem(
                "home",
                format!("{} is not a directory", root.display()),
                "point TALARIA_HOME (or --home) at a directory",
            ));
            return false;
        }
        Err(error) => {
            findings.push(Finding::problem(
                "home",
                format!("{} cannot be opened: {error}", root.display()),
                format!(
                    "create it by running any command, e.g. `talaria --home {} config show`",
                    root.display()
                ),
            ));
            return false;
        }
    };
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let probe = root.join(format!(".doctor-{}.tmp", std::process::id()));
    let writable = std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe));
    if let Err(error) = writable {
        findings.push(Finding::problem(
            "home",
            format!("{} is not writable by uid {uid}: {error}", root.display()),
            format!(
                "chown {uid}:{gid} {} && chmod u+rwx {}",
                quote(root),
                quote(root)
            ),
        ));
    }
    let (foreign, truncated) = foreign_files(root, uid);
    if foreign.is_empty() && metadata.uid() == uid {
        findings.push(Finding::ok(
            "home",
            format!("{} belongs to uid {uid}", root.display()),
        ));
        return true;
    }
    let fix = if foreign.len() <= MAX_PATHS_LISTED && !truncated {
        let paths: Vec<String> = foreign.iter().map(|p| quote(p)).collect();
        format!("chown {uid}:{gid} {}", paths.join(" "))
    } else {
        format!(
            "find {} ! -user {uid} -exec chown -h {uid}:{gid} {{}} +",
            quote(root)
        )
    };
    let shown: Vec<String> = foreign
        .iter()
        .take(5)
        .map(|p| p.display().to_string())
        .collect();
    findings.push(Finding::problem(
        "home",
        format!(
            "{}{} file(s) in {} are not owned by uid {uid}, the user Talaria runs as; files made by another \
             user (often root, through `docker exec`) make the service fail later: {}{}",
            foreign.len(),
            if truncated { "+" } else { "" },
            root.display(),
            shown.join(", "),
            if foreign.len() > shown.len() { ", …" } else { "" }
        ),
        fix,
    ));
    true
}

fn foreign_files(root: &Path, uid: u32) -> (Vec<PathBuf>, bool) {
    let mut foreign = Vec::new();
    let mut stack = vec![root.to_owned()];
    let mut seen = 0;
    while let Some(path) = stack.pop() {
        seen += 1;
        if seen > MAX_FILES_CHECKED {
            return (foreign, true);
        }
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.uid() != uid {
            foreign.push(path.clone());
        }
        if metadata.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    foreign.sort();
    (foreign, false)
}

fn check_env_file(home: &Home) -> Finding {
    let path = home.env_file();
    match std::fs::metadata(&path) {
        Ok(metadata) if metadata.mode() & 0o077 != 0 => Finding::problem(
            ".env",
            format!(
                "{} holds secrets but is mode {:o}: other users can read it",
                path.display(),
                metadata.mode() & 0o777
            ),
            format!("chmod 600 {}", quote(&path)),
        ),
        Ok(_) => Finding::ok(".env", format!("{} is private (0600)", path.display())),
        Err(_) => Finding::ok(".env", "no .env file"),
    }
}

/// A lock is never stale (the kernel drops it with its holder), but the
/// holder's record can outlive a crash; clear it when nobody holds the lock.
fn check_lock(home: &Home) -> Finding {
    let path = home.lock_file();
    let Some(holder) = LockHolder::read(&path) else {
        return Finding::ok("lock", "the home is not in use");
    };
    if holder.is_alive() && holder.pid != std::process::id() {
        return Finding::ok(
            "lock",
            format!("in use by pid {} (`{}`)", holder.pid, holder.command),
        );
    }
    match WriterLock::acquire(&path, "talaria doctor") {
        Ok(lock) => {
            drop(lock);
            Finding::warning(
                "lock",
                format!(
                    "cleared the record of pid {} (`{}`), which died holding the lock",
                    holder.pid, holder.command
                ),
                "nothing left to do; check the logs of that process if it crashed",
            )
        }
        Err(error) => Finding::warning("lock", error.to_string(), "wait for the holder to finish"),
    }
}

async fn check_skills(
    home: &Home,
    config: &Config,
    skills_dir: &Path,
    findings: &mut Vec<Finding>,
) {
    let discovered = match skill::discover(skills_dir) {
        Ok(discovered) => discovered,
        Err(error) => {
            findings.push(Finding::problem(
                "skills",
                format!("{error:#}"),
                format!("create it: mkdir -p {}", quote(skills_dir)),
            ));
            return;
        }
    };
    let grants = match Grants::load(&home.grants_file()) {
        Ok(grants) => grants,
        Err(error) => {
            findings.push(Finding::problem(
                "grants",
                format!("{error:#}"),
                format!(
                    "fix or remove {} and grant skills again",
                    home.grants_file().display()
                ),
            ));
            return;
        }
    };
    let roots = MountRoots {
        workspace: config
            .workspace
            .value
            .canonicalize()
            .unwrap_or_else(|_| config.workspace.value.clone()),
        skill_data: home
            .skill_data_dir()
            .canonicalize()
            .unwrap_or_else(|_| home.skill_data_dir()),
    };
    let sandbox = match Sandbox::new(crate::sandbox::SandboxConfig {
        cache_dir: Some(home.components_cache_dir()),
        ..Default::default()
    }) {
        Ok(sandbox) => sandbox,
        Err(error) => {
            findings.push(Finding::problem(
                "sandbox",
                format!("{error:#}"),
                "report this as a bug",
            ));
            return;
        }
    };
    let mut granted = 0;
    for entry in discovered {
        let skill = match entry {
            Ok(skill) => skill,
            Err(error) => {
                findings.push(Finding::problem(
                    "skills",
                    error.to_string(),
                    "fix the manifest (see the README's manifest reference) or remove the folder",
                ));
                continue;
            }
        };
        let name = skill.name().to_owned();
        let hash = match grants::skill_hash(&skill) {
            Ok(hash) => hash,
            Err(error) => {
                findings.push(Finding::problem(
                    "skills",
                    format!("skill {}: {error:#}", skill.label()),
                    "reinstall it",
                ));
                continue;
            }
        };
        let assessment = grants::assess(
            hash,
            Capabilities::requested(&skill, &roots),
            grants.skills.get(&name),
        );
        match &assessment.state {
            SkillState::Granted => granted += 1,
            SkillState::Pending => findings.push(Finding::warning(
                "skills",
                format!(
                    "skill {} is pending: never granted, its tools are not offered",
                    skill.label()
                ),
                format!("talaria skills audit && talaria skills grant {name}"),
            )),
            SkillState::Drifted(reasons) => findings.push(Finding::warning(
                "skills",
                format!("skill {} is drifted: {}", skill.label(), reasons.join("; ")),
                format!("talaria skills audit && talaria skills grant {name}"),
            )),
        }
        if skill.manifest.component.is_some()
            && let Err(error) = sandbox
                .load(&skill, Capabilities::for_validation(&skill))
                .await
        {
            findings.push(Finding::problem(
                "components",
                format!("{error:#}"),
                format!(
                    "rebuild the component with `cargo build --release --target wasm32-wasip2` and reinstall it \
                     with `talaria skills install DIR`, or `talaria skills reset {name}` for a bundled skill"
                ),
            ));
        }
    }
    findings.push(Finding::ok(
        "skills",
        format!("{granted} skill(s) granted in {}", skills_dir.display()),
    ));
}

/// Quote a path for a shell command.
fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
