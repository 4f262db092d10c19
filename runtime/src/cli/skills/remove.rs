//! `talaria skills remove NAME`: say what will go and what stays, ask, and
//! report what was done; the removal is the registry's.

use std::io::Write;

use super::{Failure, NoTerminal, confirm, human_size, usage_if_unknown};
use crate::app::App;
use crate::cli::hint;
use crate::cli::output::stdout;
use crate::skill::registry::{RemoveRequest, Removed, RemovedData};

pub(crate) fn remove(app: &App, name: &str, yes: bool, purge_data: bool) -> Result<(), Failure> {
    let outcome = app
        .registry()
        .remove(name, purge_data, |request| {
            describe(request)?;
            if yes {
                return Ok(true);
            }
            let again = format!(
                "skills remove {name} --yes{}",
                if purge_data { " --purge-data" } else { "" }
            );
            confirm(
                &format!("Remove {name}?"),
                NoTerminal::Remove(hint::talaria(&again)),
            )
        })
        .map_err(usage_if_unknown)?;
    let Some(Removed { revoked, data }) = outcome else {
        return Err(anyhow::anyhow!("not removed").into());
    };
    let mut out = stdout();
    writeln!(out, "removed {name}")?;
    match revoked {
        Some(grant) => writeln!(out, "  revoked its grant (v{})", grant.version)?,
        None => writeln!(out, "  it had no grant")?,
    }
    match data {
        RemovedData::None => {}
        RemovedData::Kept(dir, bytes) => writeln!(
            out,
            "  kept its data ({}) in {}; delete it with `rm -r {}`",
            human_size(bytes),
            dir.display(),
            hint::quote(&dir.to_string_lossy())
        )?,
        RemovedData::Purged(dir) => writeln!(out, "  deleted its data in {}", dir.display())?,
    }
    Ok(())
}

/// What will be removed and what kept, before asking.
fn describe(request: &RemoveRequest<'_>) -> anyhow::Result<()> {
    let mut out = stdout();
    let label = match request.skill {
        Some(skill) => skill.label().to_owned(),
        None => format!("{} (its skill.toml or SKILL.md is invalid)", request.name),
    };
    writeln!(out, "Remove skill {label}")?;
    writeln!(out, "  delete   the folder {}", request.dir.display())?;
    match request.grant {
        Some(grant) => writeln!(
            out,
            "  revoke   its grant (v{}, by {}, {})",
            grant.version, grant.granted_by, grant.granted_at
        )?,
        None => writeln!(out, "  grant    none")?,
    }
    match request.data {
        Some((dir, bytes)) if request.purge_data => writeln!(
            out,
            "  delete   its data, {} in {}",
            human_size(bytes),
            dir.display()
        )?,
        Some((dir, bytes)) => writeln!(
            out,
            "  keep     its data, {} in {} (--purge-data deletes it)",
            human_size(bytes),
            dir.display()
        )?,
        None => writeln!(out, "  data     none")?,
    }
    if request.bundled {
        writeln!(
            out,
            "  bundled  it ships with Talaria and stays removed; `{}` brings it back",
            hint::talaria(&format!("skills reset {}", request.name))
        )?;
    }
    Ok(())
}
