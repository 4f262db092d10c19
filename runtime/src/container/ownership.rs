//! Who owns the data home.
//!
//! In the root phase, [`give_to`] hands the home to the service user in a
//! targeted way: the home itself and each of its top-level entries, and
//! everything inside the folders that are Talaria's own (`memories/`,
//! `skills/`, …). It does not walk `workspace/` or `home/`: they hold the
//! user's projects, can be large, and keep the ownership their files were
//! given (only the folder itself is handed over). It never follows a
//! symbolic link, and never crosses into another file system: a link planted
//! in the volume cannot make root change a file elsewhere.
//!
//! Started with `--user` (no root phase), [`check_writable`] says exactly
//! which `chown` fixes a home the user cannot write.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use anyhow::Context as _;
use rustix::fs::{AtFlags, CWD, Dir, FileType, Gid, Mode, OFlags, Stat, Uid};

use super::ids::ServiceIds;

/// The folders of the home whose whole content is Talaria's.
const OWN_TREES: &[&str] = &[
    "memories",
    "skills",
    "skill-data",
    "cron",
    "hooks",
    "logs",
    "cache",
];

/// Deeper than any layout Talaria writes; a bound against a crafted tree.
const MAX_DEPTH: usize = 16;

/// Make `root` (created if missing) and the home's own files belong to
/// `ids`. Returns how many entries changed owner.
pub fn give_to(root: &Path, ids: ServiceIds) -> anyhow::Result<usize> {
    if !root.exists() {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the data home {}", root.display()))?;
    }
    let home = open_dir(CWD, root.as_os_str()).with_context(|| {
        format!(
            "cannot open the data home {} (it must be a directory, not a symbolic link)",
            root.display()
        )
    })?;
    let stat = rustix::fs::fstat(&home)?;
    let mut changed = 0;
    if !owned_by(&stat, ids) {
        rustix::fs::fchown(&home, Some(uid(ids)), Some(gid(ids)))
            .with_context(|| format!("cannot change the owner of {}", root.display()))?;
        changed += 1;
    }
    let mut walk = Walk {
        ids,
        device: stat.st_dev,
        changed,
    };
    walk.entries(
        &home,
        root,
        &|name| {
            OWN_TREES
                .iter()
                .any(|own| own.as_bytes() == name.to_bytes())
        },
        0,
    )?;
    Ok(walk.changed)
}

struct Walk {
    ids: ServiceIds,
    device: u64,
    changed: usize,
}

impl Walk {
    /// Hand over each entry of `dir`, descending into the folders
    /// `descend` picks (at the top) or all folders (below).
    fn entries(
        &mut self,
        dir: &OwnedFd,
        path: &Path,
        descend: &dyn Fn(&CStr) -> bool,
        depth: usize,
    ) -> anyhow::Result<()> {
        let listing =
            Dir::read_from(dir).with_context(|| format!("cannot list {}", path.display()))?;
        for entry in listing {
            let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let entry_path = path.join(OsStr::from_bytes(name.to_bytes()));
            let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                // Removed meanwhile: nothing to hand over.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("cannot read {}", entry_path.display()));
                }
            };
            let kind = FileType::from_raw_mode(stat.st_mode);
            if kind == FileType::Symlink || stat.st_dev != self.device {
                continue;
            }
            if !owned_by(&stat, self.ids) {
                rustix::fs::chownat(
                    dir,
                    name,
                    Some(uid(self.ids)),
                    Some(gid(self.ids)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .with_context(|| format!("cannot change the owner of {}", entry_path.display()))?;
                self.changed += 1;
            }
            if kind == FileType::Directory && descend(name) {
                anyhow::ensure!(
                    depth < MAX_DEPTH,
                    "{} is nested deeper than {MAX_DEPTH} folders; not handing over what is inside",
                    entry_path.display()
                );
                let child = open_dir(dir, name.to_bytes())
                    .with_context(|| format!("cannot open {}", entry_path.display()))?;
                self.entries(&child, &entry_path, &|_| true, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// Started as `ids` without a root phase: fine when the home (created if
/// missing) and its top-level entries are writable, otherwise an error that
/// names the `chown` to run.
pub fn check_writable(root: &Path, ids: ServiceIds) -> anyhow::Result<()> {
    let fix = || {
        format!(
            "fix it on the host with `sudo chown -R {uid}:{gid} DIR`, where DIR is the directory mounted \
             at {root} (for a named volume: `docker run --rm -v VOLUME:{root} IMAGE true` without --user, \
             which hands it to the image's user, or start without --user and with -e TALARIA_UID={uid} \
             -e TALARIA_GID={gid})",
            uid = ids.uid,
            gid = ids.gid,
            root = root.display()
        )
    };
    if !root.exists() {
        return std::fs::create_dir_all(root).with_context(|| {
            format!(
                "cannot create the data home {} as uid {}, gid {}; {}",
                root.display(),
                ids.uid,
                ids.gid,
                fix()
            )
        });
    }
    let writable = rustix::fs::access(
        root,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    );
    if writable.is_err() {
        let owner = rustix::fs::stat(root)
            .map(|stat| {
                format!(
                    "owned by {}:{} with mode {:o}",
                    stat.st_uid,
                    stat.st_gid,
                    stat.st_mode & 0o7777
                )
            })
            .unwrap_or_else(|error| format!("unreadable: {error}"));
        anyhow::bail!(
            "the data home {} is not writable by uid {}, gid {} (the container runs with --user, so there \
             is no root phase to fix it): it is {owner}; {}",
            root.display(),
            ids.uid,
            ids.gid,
            fix()
        );
    }
    // What the user cannot write at the top of the home (a file left by a
    // run as another uid). Group write access counts: a Kubernetes fsGroup
    // gives exactly that. `lost+found` is the file system's, not the home's.
    let mut unwritable = Vec::new();
    for entry in
        std::fs::read_dir(root).with_context(|| format!("cannot list {}", root.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list {}", root.display()))?;
        let name = entry.file_name();
        if name == "lost+found" || entry.file_type()?.is_symlink() {
            continue;
        }
        let mut needed = rustix::fs::Access::WRITE_OK;
        if entry.file_type()?.is_dir() {
            needed |= rustix::fs::Access::EXEC_OK;
        }
        if rustix::fs::access(entry.path(), needed).is_err() {
            unwritable.push(name.to_string_lossy().into_owned());
        }
    }
    if !unwritable.is_empty() {
        unwritable.sort();
        anyhow::bail!(
            "in the data home {}, uid {} cannot write {}; {}",
            root.display(),
            ids.uid,
            unwritable.join(", "),
            fix()
        );
    }
    Ok(())
}

fn open_dir(dir: impl AsFd, path: impl rustix::path::Arg) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn owned_by(stat: &Stat, ids: ServiceIds) -> bool {
    stat.st_uid == ids.uid && stat.st_gid == ids.gid
}

fn uid(ids: ServiceIds) -> Uid {
    Uid::from_raw_unchecked(ids.uid)
}

fn gid(ids: ServiceIds) -> Gid {
    Gid::from_raw_unchecked(ids.gid)
}
