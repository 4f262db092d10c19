//! Fetching a skill from a git repository with the system `git`: one
//! commit, shallow, into a fresh folder. Nothing of the repository is run:
//! no hooks, no submodules, no `ext::` transport; the operator's own git
//! configuration (credentials, proxies) applies. The folder it gives is
//! then installed like any other (copied, validated, hashed).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Whether `source` names a git repository rather than a local path:
/// `https://`, `http://`, `ssh://`, `git://` and `file://` URLs, and
/// `user@host:path`.
pub fn is_repository(source: &str) -> bool {
    const SCHEMES: [&str; 5] = ["https://", "http://", "ssh://", "git://", "file://"];
    if SCHEMES.iter().any(|scheme| source.starts_with(scheme)) {
        return true;
    }
    // scp-like: `git@github.com:org/repo.git` (no `/` before the `:`).
    match source.split_once(':') {
        Some((host, _)) => host.contains('@') && !host.contains('/'),
        None => false,
    }
}

/// The folder name a clone of `url` gets: its last segment without `.git`.
pub fn repository_name(url: &str) -> String {
    let last = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repository");
    let name = last.strip_suffix(".git").unwrap_or(last);
    if name.is_empty() || name.starts_with('.') {
        "repository".to_owned()
    } else {
        name.to_owned()
    }
}

/// Fetch commit `reference` (a branch, a tag or a full commit id; the
/// default branch when `None`) of `url` into `into`, which must not exist,
/// and check out `sub_path` of it (all of it when `None`). What would be
/// checked out is listed first and refused when it holds a link or passes
/// the bounds of a skill folder; the checkout applies no filter or
/// conversion the repository's `.gitattributes` asks for.
pub fn fetch(
    url: &str,
    reference: Option<&str>,
    sub_path: Option<&Path>,
    into: &Path,
) -> anyhow::Result<()> {
    if url.starts_with('-') || reference.is_some_and(|r| r.starts_with('-') || r.is_empty()) {
        bail!("a repository or a reference may not start with `-`");
    }
    let deadline = Instant::now() + FETCH_TIMEOUT;
    let shown = crate::untrusted_text::log_line(url);
    std::fs::create_dir_all(into).with_context(|| format!("cannot create {}", into.display()))?;
    git(into, &["init", "--quiet"], deadline).context("cannot prepare the folder for the fetch")?;
    git(
        into,
        &[
            "fetch",
            "--quiet",
            "--depth",
            "1",
            "--no-tags",
            "--no-recurse-submodules",
            "--",
            url,
            reference.unwrap_or("HEAD"),
        ],
        deadline,
    )
    .with_context(|| match reference {
        Some(reference) => format!(
            "cannot fetch {} of {shown}",
            crate::untrusted_text::log_line(reference)
        ),
        None => format!("cannot fetch {shown}"),
    })?;
    let pathspec = sub_path
        .map(|path| path.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".to_owned());
    let listing = git(
        into,
        &["ls-tree", "-r", "-l", "-z", "FETCH_HEAD", "--", &pathspec],
        deadline,
    )
    .with_context(|| format!("cannot list what was fetched from {shown}"))?;
    check_listing(&listing)?;
    // No filter driver, no line-ending or encoding conversion: the files
    // are the repository's bytes, and no configured program runs on them.
    std::fs::write(
        into.join(".git/info/attributes"),
        "* -filter -ident -text -eol -working-tree-encoding\n",
    )
    .context("cannot prepare the checkout")?;
    git(
        into,
        &["checkout", "--quiet", "FETCH_HEAD", "--", &pathspec],
        deadline,
    )
    .with_context(|| format!("cannot check out what was fetched from {shown}"))?;
    // The repository's own metadata is not part of any skill.
    std::fs::remove_dir_all(into.join(".git")).ok();
    Ok(())
}

/// Refuse a listing (`git ls-tree -r -l -z`) holding a link, or more
/// files or bytes than a skill folder may.
fn check_listing(listing: &[u8]) -> anyhow::Result<()> {
    use super::{MAX_FILE_BYTES, MAX_TREE_BYTES, MAX_TREE_FILES};
    let mut files = 0usize;
    let mut bytes = 0u64;
    for entry in listing.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        let Some((header, path)) = entry.split_once('\t') else {
            continue;
        };
        let shown = crate::untrusted_text::log_line(path);
        let fields: Vec<&str> = header.split_whitespace().collect();
        let (mode, size) = (fields.first().copied(), fields.get(3).copied());
        match mode {
            Some("120000") => {
                bail!(
                    "{shown} is a symbolic link; a skill folder must hold plain files and folders"
                )
            }
            // A submodule is not fetched, and so not part of the skill.
            Some("160000") => continue,
            _ => {}
        }
        let size: u64 = size.and_then(|s| s.parse().ok()).unwrap_or(0);
        if size > MAX_FILE_BYTES {
            bail!("{shown} is larger than {} MiB", MAX_FILE_BYTES >> 20);
        }
        files += 1;
        bytes = bytes.saturating_add(size);
        if files > MAX_TREE_FILES || bytes > MAX_TREE_BYTES {
            bail!(
                "it holds more than {MAX_TREE_FILES} files or {} MiB: give --path to the skill's folder",
                MAX_TREE_BYTES >> 20
            );
        }
    }
    Ok(())
}

/// Variables that would point git at another repository than the one it
/// is making (set when Talaria runs from a git hook, for one).
const REPOSITORY_VARIABLES: [&str; 6] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
];

/// Run `git ARGS` in `dir`, with nothing of the repository allowed to run
/// and no prompt, stopped (with what it started) at `deadline`; its
/// standard output, or an error with git's own last lines.
fn git(dir: &Path, args: &[&str], deadline: Instant) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.symlinks=false",
            "-c",
            "submodule.recurse=false",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for name in REPOSITORY_VARIABLES {
        command.env_remove(name);
    }
    if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
        // ssh would ask at the terminal for a passphrase or a new host key.
        command.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    let mut child = command
        .spawn()
        .context("cannot run `git` (install git to install skills from a repository)")?;
    let group = child.id();
    let drain = |stream: Option<Box<dyn std::io::Read + Send>>, keep: usize| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut stream) = stream {
                let mut buffer = [0u8; 8192];
                // Read to the end (a full pipe would stall git), keeping
                // at most `keep` bytes.
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    kept.extend_from_slice(&buffer[..n]);
                    if kept.len() > keep {
                        kept.drain(..kept.len() - keep);
                    }
                }
            }
            kept
        })
    };
    use std::io::Read;
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        64 << 20,
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        16 * 1024,
    );
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for git")? {
            break status;
        }
        if Instant::now() > deadline {
            // git and what it started (remote helpers, ssh, index-pack).
            if let Some(group) = rustix::process::Pid::from_raw(group as i32) {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            let _ = child.wait();
            bail!("git took longer than {} s", FETCH_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = said[said.len().saturating_sub(3)..].join(" / ");
        bail!(
            "git {} failed ({status}): {}",
            args.first().copied().unwrap_or(""),
            crate::untrusted_text::log_line(&tail)
        );
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_told_from_paths() {
        for source in [
            "https://github.com/org/skills",
            "file:///srv/skills.git",
            "git@github.com:org/skills.git",
            "ssh://git@host/org/skills",
        ] {
            assert!(is_repository(source), "{source}");
        }
        for source in ["./pdf", "/srv/skills", "pdf.zip", "C:dir", "dir/with:colon"] {
            assert!(!is_repository(source), "{source}");
        }
        assert_eq!(
            repository_name("https://github.com/org/skills.git"),
            "skills"
        );
        assert_eq!(repository_name("git@github.com:org/skills"), "skills");
        assert_eq!(repository_name("file:///srv/x/"), "x");
        assert_eq!(repository_name("https://host/.."), "repository");
    }

    #[test]
    fn a_listing_with_a_link_or_too_much_is_refused() {
        let entry = |mode: &str, size: &str, path: &str| {
            format!("{mode} blob 0123456789abcdef {size}\t{path}\0")
        };
        let good = entry("100644", "12", "pdf/SKILL.md") + &entry("160000", "-", "pdf/vendor");
        check_listing(good.as_bytes()).unwrap();
        let link = entry("120000", "11", "pdf/passwd");
        let error = check_listing(link.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("pdf/passwd is a symbolic link"), "{error}");
        let huge = entry(
            "100644",
            &(super::super::MAX_FILE_BYTES + 1).to_string(),
            "pdf/zeros",
        );
        assert!(check_listing(huge.as_bytes()).is_err());
    }

    #[test]
    fn arguments_that_look_like_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let into = dir.path().join("x");
        let error = fetch("--upload-pack=touch /tmp/pwned", None, None, &into).unwrap_err();
        assert!(error.to_string().contains("may not start with `-`"));
        let error = fetch("https://host/repo", Some("--help"), None, &into).unwrap_err();
        assert!(error.to_string().contains("may not start with `-`"));
    }
}
