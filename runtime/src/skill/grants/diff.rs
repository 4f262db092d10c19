//! How a new grant differs from the previous one, line by line, for the
//! operator to confirm.

use super::{Grant, MountGrant, describe_exec, short_hash};

/// Lines describing how `new` differs from `old`, `+` for added, `-` for
/// removed.
pub fn grant_diff(old: &Grant, new: &Grant) -> Vec<String> {
    let mut lines = Vec::new();
    if old.version != new.version || old.hash != new.hash {
        lines.push(format!(
            "~ v{} {} → v{} {}",
            old.version,
            short_hash(&old.hash),
            new.version,
            short_hash(&new.hash)
        ));
    }
    let mount = |m: &MountGrant| format!("mount {} → {} ({})", m.source, m.guest, m.access.short());
    diff_lists(&mut lines, &old.mounts, &new.mounts, mount);
    diff_lists(&mut lines, &old.env, &new.env, |name| format!("env {name}"));
    diff_lists(&mut lines, &old.exec, &new.exec, |rule| {
        format!("exec {}", describe_exec(rule))
    });
    diff_lists(&mut lines, &old.network, &new.network, |url| {
        format!("network {url}")
    });
    diff_lists(&mut lines, &old.secrets, &new.secrets, |secret| {
        format!("secret {} → {}", secret.name, secret.hosts.join(", "))
    });
    let (a, b) = (old.limits, new.limits);
    for (key, before, after) in [
        ("memory_mb", u64::from(a.memory_mb), u64::from(b.memory_mb)),
        ("timeout_ms", a.timeout_ms, b.timeout_ms),
        ("max_output_bytes", a.max_output_bytes, b.max_output_bytes),
        ("data_mb", u64::from(a.data_mb), u64::from(b.data_mb)),
    ] {
        if before != after {
            lines.push(format!("~ limits.{key} {before} → {after}"));
        }
    }
    lines
}

fn diff_lists<T: PartialEq>(
    lines: &mut Vec<String>,
    old: &[T],
    new: &[T],
    show: impl Fn(&T) -> String,
) {
    for item in new.iter().filter(|item| !old.contains(item)) {
        lines.push(format!("+ {}", show(item)));
    }
    for item in old.iter().filter(|item| !new.contains(item)) {
        lines.push(format!("- {}", show(item)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skill::grants::GrantedBy;
    use crate::skill::grants::tests::{MANIFEST, roots, skill_in};

    #[test]
    fn diffs_name_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let skill = skill_in(dir.path(), MANIFEST, Some(b"x"));
        let requested = crate::skill::capabilities::requested(&skill, &roots(dir.path()));
        let mut old = Grant::of(&skill, skill.hash(), &requested, GrantedBy::Operator);
        old.hash = "blake3:aaaa".into();
        let mut new = old.clone();
        new.hash = "blake3:bbbb".into();
        new.env = vec!["OTHER".into()];
        new.limits.timeout_ms = 9000;
        assert_eq!(
            grant_diff(&old, &new),
            [
                "~ v1.0.0 blake3:aaaa → v1.0.0 blake3:bbbb",
                "+ env OTHER",
                "- env TOKEN",
                "~ limits.timeout_ms 5000 → 9000",
            ]
        );
    }
}
