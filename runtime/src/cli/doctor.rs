//! `talaria doctor`: check the data home and print the findings, as text or
//! JSON; the checks are `crate::doctor`'s.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{EXIT_FAILURE, Failure};
use crate::config::Flags;
use crate::doctor::{Finding, Severity};
use crate::home::Home;

/// Check the home at `home` (the default one when `None`) and print what was
/// found; the exit code is 1 when any finding is a problem.
pub(crate) async fn run(
    home: Option<&Path>,
    flags: &Flags,
    skills_dir: Option<PathBuf>,
    as_json: bool,
) -> Result<u8, Failure> {
    let root = match home {
        Some(root) => root.to_owned(),
        None => Home::default_root()?,
    };
    let home = Home::at(root);
    let findings = crate::doctor::run(&home, flags, skills_dir).await;
    print_findings(&home, &findings, as_json)?;
    let worst = findings.iter().map(|f| f.severity).max();
    Ok(if worst == Some(Severity::Problem) {
        EXIT_FAILURE
    } else {
        0
    })
}

fn print_findings(home: &Home, findings: &[Finding], as_json: bool) -> anyhow::Result<()> {
    let mut out = super::output::stdout();
    if as_json {
        let report = json!({ "home": home.root(), "findings": findings });
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(out, "talaria doctor: {}", home.root().display())?;
    for finding in findings {
        let mark = match finding.severity {
            Severity::Ok => "ok     ",
            Severity::Warning => "warning",
            Severity::Problem => "PROBLEM",
        };
        writeln!(out, "{mark}  {:<10}  {}", finding.check, finding.message)?;
        if let Some(fix) = &finding.fix {
            writeln!(out, "{:<21}fix: {fix}", "")?;
        }
    }
    let problems = findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    writeln!(out, "{problems} problem(s), {warnings} warning(s)")?;
    Ok(())
}
