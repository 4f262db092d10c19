//! `talaria doctor`: checks a data home and explains each problem with the
//! command that fixes it.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigFile, Environment, Flags, ModelSetup};
use crate::home::{Home, LockHolder, WriterLock};
use crate::skill::MountRoots;
use crate::skill::grants::SkillState;

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
    findings.push(check_database(home));
    findings.push(check_lock(home));
    let env = match Environment::load_quietly(home) {
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
    findings.push(check_model(home, &config));
    let skills_dir = skills_dir
        .or_else(|| env.get("TALARIA_SKILLS_DIR").map(PathBuf::from))
        .unwrap_or_else(|| home.skills_dir());
    check_skills(home, &env, &config, &skills_dir, &mut findings).await;
    findings.push(check_backend(home, &env, &config, &skills_dir).await);
    findings
}

/// Where native commands run, and whether a `true` runs there (for Docker
/// this makes, and then removes, a sandbox container).
async fn check_backend(
    home: &Home,
    env: &Environment,
    config: &Config,
    skills_dir: &Path,
) -> Finding {
    if config.backend.value == crate::backend::Kind::None {
        return Finding::ok(
            "backend",
            "none: native commands are refused and the agent has no shell ([backend] kind sets one)",
        );
    }
    let backend = crate::app::make_backend(home, env, config, &config.workspace.value, skills_dir);
    let ran = async {
        backend.prepare().await?;
        backend
            .run(crate::backend::CommandRequest {
                program: "true".into(),
                timeout: std::time::Duration::from_secs(30),
                max_output_bytes: 4096,
                ..Default::default()
            })
            .await
    }
    .await;
    backend.shutdown().await;
    let fix = "`talaria backend check` shows the same; see the README's section on native commands";
    match ran {
        Ok(output) if output.success() => Finding::ok(
            "backend",
            format!(
                "{}; `true` ran in {:.1} ms",
                backend.describe(),
                output.duration.as_secs_f64() * 1000.0
            ),
        ),
        Ok(output) => Finding::problem(
            "backend",
            format!(
                "{}; `true` failed there (exit {:?}): {}",
                backend.describe(),
                output.code,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            fix,
        ),
        Err(error) => Finding::problem("backend", error.to_string(), fix),
    }
}

/// The home exists, is a directory, is private, belongs to and is writable
/// by this user, and so does everything in it; no link in it leads out of
/// it. Returns whether further checks make sense.
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
    // Fixes and the scan use the real directory: `chown -h` on a home
    // reached through a symlink would change only the link, and neither the
    // scan nor `find` descends into a symlink.
    let real_root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let probe = root.join(format!(".doctor-{}.tmp", std::process::id()));
    let writable = std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe));
    if let Err(error) = writable {
        findings.push(Finding::problem(
            "home",
            format!("{} is not writable by uid {uid}: {error}", root.display()),
            format!(
                "chown -h {uid}:{gid} {} && chmod u+rwx {}",
                quote(&real_root),
                quote(&real_root)
            ),
        ));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        findings.push(Finding::problem(
            "home",
            format!(
                "{} is mode {mode:o}: other users can enter it and read every file in it that is \
                 not private on its own (conversations, memory, skills' data)",
                root.display()
            ),
            format!("chmod 700 {}", quote(&real_root)),
        ));
    }
    let scan = scan_home(&real_root, uid);
    for link in scan.links_out.iter().take(MAX_PATHS_LISTED) {
        findings.push(Finding::warning(
            "links",
            format!(
                "{} is a symbolic link to {}, outside the home: whatever follows it (a chown, \
                 chmod or copy of the home, a skill's mount) acts on that file instead",
                link.link.display(),
                link.target.display()
            ),
            format!(
                "remove the link unless you made it on purpose: rm {}",
                quote(&link.link)
            ),
        ));
    }
    if scan.links_out.len() > MAX_PATHS_LISTED {
        findings.push(Finding::warning(
            "links",
            format!(
                "{} more symbolic links lead out of {}",
                scan.links_out.len() - MAX_PATHS_LISTED,
                root.display()
            ),
            format!(
                "list them with `find {} -type l -exec ls -l {{}} +` and remove those you did not make",
                quote(&real_root)
            ),
        ));
    }
    let foreign = &scan.foreign;
    if foreign.is_empty() && metadata.uid() == uid {
        findings.push(Finding::ok(
            "home",
            format!("{} belongs to uid {uid}", root.display()),
        ));
        return true;
    }
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
            if scan.truncated { "+" } else { "" },
            root.display(),
            shown.join(", "),
            if foreign.len() > shown.len() { ", …" } else { "" }
        ),
        chown_fix(&real_root, &scan, uid, gid),
    ));
    true
}

/// The command that hands the foreign files back. `-h` everywhere: a plain
/// `chown` of a symbolic link changes the file it points to, which a link
/// planted in the home can place anywhere on the system.
fn chown_fix(real_root: &Path, scan: &HomeScan, uid: u32, gid: u32) -> String {
    if scan.foreign.len() <= MAX_PATHS_LISTED && !scan.truncated {
        let paths: Vec<String> = scan.foreign.iter().map(|p| quote(p)).collect();
        format!("chown -h {uid}:{gid} {}", paths.join(" "))
    } else {
        format!(
            "find {} ! -user {uid} -exec chown -h {uid}:{gid} {{}} +",
            quote(real_root)
        )
    }
}

/// What a walk of the home found.
#[derive(Debug, Default)]
struct HomeScan {
    /// Files and directories (links included, as links) another user owns.
    foreign: Vec<PathBuf>,
    /// Symbolic links whose target lies outside the home.
    links_out: Vec<OutwardLink>,
    /// Whether the walk stopped at [`MAX_FILES_CHECKED`].
    truncated: bool,
}

#[derive(Debug, PartialEq, Eq)]
struct OutwardLink {
    link: PathBuf,
    /// Where it leads, resolved as far as the file system allows.
    target: PathBuf,
}

/// Walk the home without following links; `real_root` must be canonical.
fn scan_home(real_root: &Path, uid: u32) -> HomeScan {
    let mut scan = HomeScan::default();
    let mut stack = vec![real_root.to_owned()];
    let mut seen = 0;
    while let Some(path) = stack.pop() {
        seen += 1;
        if seen > MAX_FILES_CHECKED {
            scan.truncated = true;
            break;
        }
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.uid() != uid {
            scan.foreign.push(path.clone());
        }
        if metadata.is_symlink() {
            if let Some(target) = link_target(&path)
                && !target.starts_with(real_root)
            {
                scan.links_out.push(OutwardLink { link: path, target });
            }
        } else if metadata.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    scan.foreign.sort();
    scan.links_out.sort_by(|a, b| a.link.cmp(&b.link));
    scan
}

/// Where the link at `link` leads: fully resolved when it can be, else (a
/// dangling link, which a later file could bring to life) its target read
/// lexically from the link's directory.
fn link_target(link: &Path) -> Option<PathBuf> {
    if let Ok(resolved) = link.canonicalize() {
        return Some(resolved);
    }
    let target = std::fs::read_link(link).ok()?;
    let joined = link.parent()?.join(target);
    let mut normal = PathBuf::new();
    for component in joined.components() {
        match component {
            std::path::Component::ParentDir => {
                normal.pop();
            }
            std::path::Component::CurDir => {}
            other => normal.push(other),
        }
    }
    Some(normal)
}

/// `state.db` holds every conversation: it and SQLite's files beside it are
/// private. Talaria creates them 0600; an older version or a restore may not
/// have.
fn check_database(home: &Home) -> Finding {
    let db = home.state_db();
    let files: Vec<PathBuf> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .filter(|path| path.exists())
        .collect();
    if files.is_empty() {
        return Finding::ok("database", "no state.db yet");
    }
    let open: Vec<(&PathBuf, u32)> = files
        .iter()
        .filter_map(|path| {
            let mode = std::fs::metadata(path).ok()?.mode() & 0o777;
            (mode & 0o077 != 0).then_some((path, mode))
        })
        .collect();
    if open.is_empty() {
        return Finding::ok("database", format!("{} is private (0600)", db.display()));
    }
    let described: Vec<String> = open
        .iter()
        .map(|(path, mode)| format!("{} (mode {mode:o})", path.display()))
        .collect();
    let paths: Vec<String> = open.iter().map(|(path, _)| quote(path)).collect();
    Finding::problem(
        "database",
        format!(
            "the session database holds every conversation but other users can read it: {}",
            described.join(", ")
        ),
        format!("chmod 600 {}", paths.join(" ")),
    )
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

/// `talaria chat` needs an endpoint; everything else works without one, so
/// a missing one is a warning.
fn check_model(home: &Home, config: &Config) -> Finding {
    match ModelSetup::needed(config, &home.config_file()) {
        Some(setup) => Finding::warning(
            "model",
            "no model is configured: `talaria chat` has no endpoint to ask (skills and tools work without one)",
            setup.one_line(),
        ),
        None => Finding::ok(
            "model",
            format!(
                "model {:?} at {} ({})",
                config.model.name.value, config.model.base_url.value, config.model.base_url.source
            ),
        ),
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
    env: &Environment,
    config: &Config,
    skills_dir: &Path,
    findings: &mut Vec<Finding>,
) {
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
    // The registry every command uses: one answer to "is this skill
    // granted", the same sandbox settings.
    let registry =
        crate::app::registry(home, env, config, skills_dir.to_owned(), roots, None, None);
    let discovered = match registry.discover() {
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
    let grants = match registry.grants() {
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
    // The commands doctor suggests name the same home and skills directory
    // it checked, so they work when pasted.
    let mut flags = String::new();
    if Home::default_root().ok().as_deref() != Some(home.root()) {
        flags.push_str(&format!(" --home {}", quote(home.root())));
    }
    if skills_dir != home.skills_dir() {
        flags.push_str(&format!(" --skills-dir {}", quote(skills_dir)));
    }
    let mut granted = 0;
    for entry in discovered {
        let skill = match entry {
            Ok(skill) => skill,
            Err(error) => {
                findings.push(Finding::problem(
                    "skills",
                    error.to_string(),
                    "fix its skill.toml or SKILL.md (the error names the key; see the README) or remove the folder",
                ));
                continue;
            }
        };
        let name = skill.name().to_owned();
        match &registry.assess(&skill, &grants).state {
            SkillState::Granted => granted += 1,
            SkillState::Pending => findings.push(Finding::warning(
                "skills",
                format!(
                    "skill {} is pending: never granted, its tools are not offered",
                    skill.label()
                ),
                format!("talaria{flags} skills audit && talaria{flags} skills grant {name}"),
            )),
            SkillState::Drifted(reasons) => findings.push(Finding::warning(
                "skills",
                format!("skill {} is drifted: {}", skill.label(), reasons.join("; ")),
                format!("talaria{flags} skills audit && talaria{flags} skills grant {name}"),
            )),
        }
        if let Err(error) = registry.validate_component(&skill).await {
            findings.push(Finding::problem(
                "components",
                format!("skill {}: {error:#}", skill.label()),
                format!(
                    "rebuild the component with `cargo build --release --target wasm32-wasip2` and reinstall it \
                     with `talaria{flags} skills install DIR`, or `talaria{flags} skills reset {name}` for a bundled skill"
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
    crate::untrusted_text::shell_word(&path.display().to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn real_home() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        (dir, root)
    }

    #[test]
    fn every_suggested_chown_leaves_links_alone() {
        let (_dir, root) = real_home();
        let listed = HomeScan {
            foreign: vec![root.join("workspace/planted"), root.join("state.db")],
            ..Default::default()
        };
        assert_eq!(
            chown_fix(&root, &listed, 1000, 1000),
            format!(
                "chown -h 1000:1000 {} {}",
                root.join("workspace/planted").display(),
                root.join("state.db").display()
            )
        );
        let many = HomeScan {
            foreign: (0..=MAX_PATHS_LISTED)
                .map(|n| root.join(n.to_string()))
                .collect(),
            ..Default::default()
        };
        assert_eq!(
            chown_fix(&root, &many, 1000, 1000),
            format!(
                "find {} ! -user 1000 -exec chown -h 1000:1000 {{}} +",
                root.display()
            )
        );
    }

    #[test]
    fn links_out_of_the_home_are_found_with_their_targets() {
        let (_dir, root) = real_home();
        let (_elsewhere_dir, elsewhere) = real_home();
        let secret = elsewhere.join("secret");
        std::fs::write(&secret, "x").unwrap();
        std::fs::create_dir_all(root.join("workspace/deep")).unwrap();
        std::fs::write(root.join("workspace/notes.txt"), "x").unwrap();
        // Out of the home: absolute, relative, dangling, through a link chain.
        symlink(&secret, root.join("workspace/absolute")).unwrap();
        let up = "../".repeat(root.components().count() + 1);
        let relative = format!("{up}{}", secret.display());
        symlink(&relative, root.join("workspace/deep/relative")).unwrap();
        symlink(elsewhere.join("not-yet"), root.join("dangling")).unwrap();
        symlink(root.join("workspace/absolute"), root.join("chained")).unwrap();
        // Inside the home: not reported.
        symlink("notes.txt", root.join("workspace/inside")).unwrap();
        symlink("../missing", root.join("workspace/deep/dangling-inside")).unwrap();

        let uid = rustix::process::geteuid().as_raw();
        let scan = scan_home(&root, uid);
        let found: Vec<(PathBuf, PathBuf)> = scan
            .links_out
            .into_iter()
            .map(|l| (l.link, l.target))
            .collect();
        assert_eq!(
            found,
            vec![
                (root.join("chained"), secret.clone()),
                (root.join("dangling"), elsewhere.join("not-yet")),
                (root.join("workspace/absolute"), secret.clone()),
                (root.join("workspace/deep/relative"), secret.clone()),
            ]
        );
        assert!(scan.foreign.is_empty(), "{:?}", scan.foreign);
    }

    #[test]
    fn a_home_others_can_enter_and_a_readable_database_are_problems() {
        let (_dir, root) = real_home();
        set_mode(&root, 0o755);
        let (_elsewhere_dir, elsewhere) = real_home();
        symlink(elsewhere.join("passwd"), root.join("planted")).unwrap();
        let home = Home::at(&root);
        let mut findings = Vec::new();
        assert!(check_home(&home, &mut findings));
        let problems: Vec<(&str, Option<&str>)> = findings
            .iter()
            .filter(|f| f.severity != Severity::Ok)
            .map(|f| (f.check, f.fix.as_deref()))
            .collect();
        assert_eq!(
            problems,
            vec![
                (
                    "home",
                    Some(format!("chmod 700 {}", root.display()).as_str())
                ),
                (
                    "links",
                    Some(
                        format!(
                            "remove the link unless you made it on purpose: rm {}",
                            root.join("planted").display()
                        )
                        .as_str()
                    )
                ),
            ]
        );
        let link = &findings[1].message;
        assert!(
            link.contains(&format!("{}", root.join("planted").display()))
                && link.contains(&format!("{}", elsewhere.join("passwd").display())),
            "{link}"
        );

        assert_eq!(check_database(&home).severity, Severity::Ok);
        std::fs::write(home.state_db(), "").unwrap();
        set_mode(&home.state_db(), 0o600);
        let wal = root.join("state.db-wal");
        std::fs::write(&wal, "").unwrap();
        set_mode(&wal, 0o644);
        let finding = check_database(&home);
        assert_eq!(finding.severity, Severity::Problem);
        assert_eq!(
            finding.fix.as_deref(),
            Some(format!("chmod 600 {}", wal.display()).as_str())
        );
        assert!(finding.message.contains("mode 644"), "{}", finding.message);
        set_mode(&wal, 0o600);
        assert_eq!(check_database(&home).severity, Severity::Ok);

        set_mode(&root, 0o700);
        std::fs::remove_file(root.join("planted")).unwrap();
        let mut findings = Vec::new();
        check_home(&home, &mut findings);
        assert!(
            findings.iter().all(|f| f.severity == Severity::Ok),
            "{findings:?}"
        );
    }
}
