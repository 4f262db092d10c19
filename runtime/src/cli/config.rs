//! `talaria config show | path`: every effective setting with where it came
//! from, and where `config.toml` is.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::table::write_table;
use crate::app::App;
use crate::home::Home;

/// `talaria config show`. `skills_dir_flag`: whether --skills-dir was given.
pub(crate) fn print_config(app: &App, skills_dir_flag: bool, as_json: bool) -> anyhow::Result<()> {
    let settings = app.config.shown(&app.env);
    let skills_dir = app.registry().skills_dir();
    let skills_dir_source = if skills_dir_flag {
        "flag --skills-dir".to_owned()
    } else if let Some(origin) = app.env.origin("TALARIA_SKILLS_DIR") {
        format!("env TALARIA_SKILLS_DIR, in {origin}")
    } else {
        "default".to_owned()
    };
    let mut out = super::output::stdout();
    if as_json {
        let report = json!({
            "home": app.home.root(),
            "config_file": app.home.config_file(),
            "skills_dir": {"value": skills_dir, "source": skills_dir_source},
            "settings": settings,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(out, "# home: {}", app.home.root().display())?;
    writeln!(out, "# config file: {}", app.home.config_file().display())?;
    writeln!(
        out,
        "# skills directory: {} ({skills_dir_source})",
        skills_dir.display()
    )?;
    let rows: Vec<[String; 3]> = settings
        .into_iter()
        .map(|s| [s.key.to_owned(), s.value, format!("({})", s.source)])
        .collect();
    write_table(&mut out, ["KEY", "VALUE", "SOURCE"], &rows)?;
    Ok(())
}

/// `talaria config path`: where `config.toml` is (or would be), read from
/// nothing but the home's location.
pub(crate) fn print_path(home: Option<&Path>) -> anyhow::Result<()> {
    let root = match home {
        Some(root) => root.to_owned(),
        None => Home::default_root()?,
    };
    writeln!(
        super::output::stdout(),
        "{}",
        Home::at(root).config_file().display()
    )?;
    Ok(())
}
