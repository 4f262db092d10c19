//! `talaria doctor`: the findings of the data home's checks, as text or
//! JSON.

use std::io::Write;

use serde_json::json;

pub(crate) fn print_findings(
    home: &crate::home::Home,
    findings: &[crate::doctor::Finding],
    as_json: bool,
) -> anyhow::Result<()> {
    use crate::doctor::Severity;
    let mut out = std::io::stdout().lock();
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
