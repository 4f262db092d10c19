//! Who owns the data home.
//!
//! In the root phase, [`give_to`] hands the home to the service user in a
//! targeted way: the home itself, the entries Talaria keeps at its top
//! ([`home::top_level_entries`]; nothing else a mounted folder holds), and
//! everything inside the folders that are Talaria's own (`memories/`,
//! `skills/`, …). It does not walk `workspace/` or `home/`: they hold the
//! user's projects, can be large, and keep the owners their files were
//! given (only the folder itself is handed over).
//!
//! Root must not be led elsewhere by what is in the volume, so each entry
//! is opened without following a link (`O_PATH|O_NOFOLLOW`), looked at and
//! handed over through that descriptor, and a folder is entered through the
//! same descriptor: a link is never followed, and an entry swapped between
//! the look and the change is not the one changed. It skips what lies on
//! another mount (a bind mount inside the home is the operator's), and
//! files with more than one hard link (one could be a link to a file
//! outside Talaria's folders).
//!
//! Started with `--user` (no root phase), [`check_writable`] says exactly
//! which `chown` fixes a home the user cannot write.
//!
//! [`home::top_level_entries`]: crate::home::top_level_entries

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use anyhow::Context as _;
use rustix::fs::{AtFlags, CWD, Dir, FileType, Gid, Mode, OFlags, Statx, StatxFlags, Uid};

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
    "run",
];

/// Deeper than any layout Talaria writes; a deeper folder is left as it is.
const MAX_DEPTH: usize = 16;

/// Make `root` (created if missing) and the home's own files belong to
/// `ids`. Returns how many entries changed owner.
pub fn give_to(root: &Path, ids: ServiceIds) -> anyhow::Result<usize> {
    anyhow::ensure!(
        root.parent().is_some(),
        "refusing {} as the data home: it would hand the whole file system to uid {}",
        root.display(),
        ids.uid
    );
    if !root.exists() {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the data home {}", root.display()))?;
    }
    let home = rustix::fs::openat(
        CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| {
        format!(
            "cannot open the data home {} (it must be a directory, not a symbolic link)",
            root.display()
        )
    })?;
    let stat = look(&home)?;
    let mut walk = Walk {
        ids,
        mount: Mount::of(&stat),
        changed: 0,
    };
    walk.hand_over(&home, &stat, root)?;
    let own: Vec<&str> = crate::home::top_level_entries().collect();
    walk.entries(
        &home,
        root,
        &|name| own.contains(&name),
        &|name| OWN_TREES.contains(&name),
        0,
    )?;
    Ok(walk.changed)
}

/// Where a file lies: the mount id where the kernel reports it (Linux 5.8
/// and later; a bind mount of the same disk has its own), else the device.
#[derive(PartialEq, Eq)]
struct Mount {
    id: Option<u64>,
    device: (u32, u32),
}

impl Mount {
    fn of(stat: &Statx) -> Self {
        Self {
            id: (stat.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(stat.stx_mnt_id),
            device: (stat.stx_dev_major, stat.stx_dev_minor),
        }
    }
}

struct Walk {
    ids: ServiceIds,
    mount: Mount,
    changed: usize,
}

impl Walk {
    /// Hand over the entries of `dir` that `pick` names, descending into
    /// the folders `descend` names.
    fn entries(
        &mut self,
        dir: &OwnedFd,
        path: &Path,
        pick: &dyn Fn(&str) -> bool,
        descend: &dyn Fn(&str) -> bool,
        depth: usize,
    ) -> anyhow::Result<()> {
        let listing =
            Dir::read_from(dir).with_context(|| format!("cannot list {}", path.display()))?;
        for entry in listing {
            let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
            let name = entry.file_name();
            // A name that is not UTF-8 is none Talaria writes at the top;
            // inside its own folders, it is still its.
            let text = match name.to_str() {
                Ok(text) => text,
                Err(_) if depth == 0 => continue,
                Err(_) => "",
            };
            if name.to_bytes() == b"." || name.to_bytes() == b".." || (depth == 0 && !pick(text)) {
                continue;
            }
            let entry_path = path.join(OsStr::from_bytes(name.to_bytes()));
            let fd = match rustix::fs::openat(
                dir,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Removed meanwhile: nothing to hand over.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("cannot open {}", entry_path.display()));
                }
            };
            let stat =
                look(&fd).with_context(|| format!("cannot read {}", entry_path.display()))?;
            let kind = FileType::from_raw_mode(stat.stx_mode.into());
            if kind == FileType::Symlink || Mount::of(&stat) != self.mount {
                continue;
            }
            if kind != FileType::Directory && stat.stx_nlink > 1 {
                eprintln!(
                    "talaria container: left {} as it is: it has {} hard links",
                    entry_path.display(),
                    stat.stx_nlink
                );
                continue;
            }
            self.hand_over(&fd, &stat, &entry_path)?;
            if kind == FileType::Directory && (depth > 0 || descend(text)) {
                if depth + 1 >= MAX_DEPTH {
                    eprintln!(
                        "talaria container: left what is inside {} as it is: deeper than {MAX_DEPTH} folders",
                        entry_path.display()
                    );
                    continue;
                }
                // Entered through the descriptor just checked, not by name.
                let child = rustix::fs::openat(
                    &fd,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .with_context(|| format!("cannot open {}", entry_path.display()))?;
                self.entries(&child, &entry_path, &|_| true, &|_| true, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Change the owner of what `fd` refers to, when it is not `ids` yet.
    fn hand_over(&mut self, fd: &OwnedFd, stat: &Statx, path: &Path) -> anyhow::Result<()> {
        if stat.stx_uid == self.ids.uid && stat.stx_gid == self.ids.gid {
            return Ok(());
        }
        rustix::fs::chownat(
            fd,
            "",
            Some(Uid::from_raw_unchecked(self.ids.uid)),
            Some(Gid::from_raw_unchecked(self.ids.gid)),
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        )
        .with_context(|| format!("cannot change the owner of {}", path.display()))?;
        self.changed += 1;
        Ok(())
    }
}

/// What `fd` refers to, the link itself for a link.
fn look(fd: &impl AsFd) -> anyhow::Result<Statx> {
    Ok(rustix::fs::statx(
        fd,
        "",
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )?)
}

/// Started as `ids` without a root phase: fine when the home (created if
/// missing) and its top-level entries are writable, otherwise an error that
/// names the `chown` to run.
pub fn check_writable(root: &Path, ids: ServiceIds) -> anyhow::Result<()> {
    let fix = || {
        format!(
            "fix it on the host with `sudo chown -R {uid}:{gid} DIR`, where DIR is the directory mounted \
             at {root}; or, for a named volume, start once without --user and with `-e TALARIA_UID={uid} \
             -e TALARIA_GID={gid}`: the entrypoint then hands the home to that user itself",
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
