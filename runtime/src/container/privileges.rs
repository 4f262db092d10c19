//! Giving up root for good.
//!
//! The order matters and is the one `gosu` and `su-exec` use: supplementary
//! groups first (root's groups would otherwise stay), then the group, then
//! the user, since after `setresuid` the process can no longer change its
//! groups. All three ids (real, effective, saved) change, so nothing is kept
//! to switch back to; the kernel clears the capabilities with them. The calls
//! go through glibc, which applies them to every thread of the process.
//!
//! Then the drop is checked rather than trusted: the ids read back, no
//! supplementary group is left, and `setuid(0)` fails.

use std::io;

use super::ids::ServiceIds;

/// Become `ids` for good. Called while the process has one thread, before
/// anything else runs.
pub fn drop_to(ids: ServiceIds) -> anyhow::Result<()> {
    // SAFETY: plain system calls on integers and a null list of length 0.
    let set = unsafe {
        check(libc::setgroups(0, std::ptr::null()), "setgroups")
            .and_then(|()| check(libc::setresgid(ids.gid, ids.gid, ids.gid), "setresgid"))
            .and_then(|()| check(libc::setresuid(ids.uid, ids.uid, ids.uid), "setresuid"))
    };
    set.map_err(|error| {
        anyhow::anyhow!(
            "cannot switch to uid {}, gid {}: {error} (the container's root phase needs the SETUID and \
             SETGID capabilities; a compose file or pod spec that drops ALL must add those two back)",
            ids.uid,
            ids.gid
        )
    })?;
    verify(ids)
}

fn verify(ids: ServiceIds) -> anyhow::Result<()> {
    let (mut ruid, mut euid, mut suid) = (0, 0, 0);
    let (mut rgid, mut egid, mut sgid) = (0, 0, 0);
    // SAFETY: each call writes three integers through valid pointers.
    let read = unsafe {
        check(
            libc::getresuid(&mut ruid, &mut euid, &mut suid),
            "getresuid",
        )
        .and_then(|()| {
            check(
                libc::getresgid(&mut rgid, &mut egid, &mut sgid),
                "getresgid",
            )
        })
    };
    read?;
    anyhow::ensure!(
        [ruid, euid, suid] == [ids.uid; 3] && [rgid, egid, sgid] == [ids.gid; 3],
        "after the switch the ids are uid {ruid}/{euid}/{suid}, gid {rgid}/{egid}/{sgid}, not {}:{}",
        ids.uid,
        ids.gid
    );
    // SAFETY: a count query, no buffer written.
    let groups = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    anyhow::ensure!(
        groups == 0,
        "after the switch {groups} supplementary groups are left"
    );
    // SAFETY: a plain system call; it must fail.
    let regained = unsafe { libc::setuid(0) } == 0;
    anyhow::ensure!(
        !regained,
        "after the switch the process could become root again"
    );
    Ok(())
}

fn check(result: libc::c_int, call: &str) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        let error = io::Error::last_os_error();
        Err(io::Error::new(error.kind(), format!("{call}: {error}")))
    }
}

/// No program run from here on can gain privileges (setuid binaries, file
/// capabilities), as `no-new-privileges` does where the operator did not
/// set it. Kept across fork and exec.
pub fn forbid_new_privileges() -> anyhow::Result<()> {
    // SAFETY: a plain prctl with integer arguments.
    let result = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    anyhow::ensure!(
        result == 0,
        "cannot set no-new-privileges: {}",
        io::Error::last_os_error()
    );
    Ok(())
}
