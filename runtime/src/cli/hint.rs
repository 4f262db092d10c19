//! The commands the CLI suggests (`talaria skills grant NAME`, ...), written
//! so that they work when pasted: with the global flags this command was
//! given on its command line, quoted for a POSIX shell. Values from the
//! environment are left out: a pasted command inherits them.

use std::sync::OnceLock;

use clap::ArgMatches;
use clap::parser::ValueSource;

/// ` --home DIR --skills-dir DIR ...` as given, set once at start.
static GLOBAL_FLAGS: OnceLock<String> = OnceLock::new();

/// The global flags that change what a later command sees.
const CARRIED: &[(&str, &str)] = &[
    ("home", "--home"),
    ("skills_dir", "--skills-dir"),
    ("workspace", "--workspace"),
    ("bundled_skills", "--bundled-skills"),
];

/// Remember the global flags given on the command line.
pub(crate) fn remember(matches: &ArgMatches) {
    let _ = GLOBAL_FLAGS.set(given_flags(matches));
}

fn given_flags(matches: &ArgMatches) -> String {
    let mut flags = String::new();
    for (id, flag) in CARRIED {
        if matches.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        if let Ok(Some(value)) = matches.try_get_one::<std::path::PathBuf>(id) {
            flags.push_str(&format!(" {flag} {}", quote(&value.to_string_lossy())));
        }
    }
    flags
}

/// `talaria` with the remembered global flags, then `rest` (already quoted).
pub(crate) fn talaria(rest: &str) -> String {
    format!(
        "talaria{} {rest}",
        GLOBAL_FLAGS.get().map(String::as_str).unwrap_or_default()
    )
}

/// `text` as one word for a POSIX shell.
pub(crate) use crate::untrusted_text::shell_word as quote;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(quote("/tmp/my-skill"), "/tmp/my-skill");
        assert_eq!(quote("/tmp/my skill"), "'/tmp/my skill'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn flags_given_on_the_command_line_are_carried_and_the_environment_is_not() {
        use clap::{CommandFactory, FromArgMatches};
        let matches = crate::cli::Cli::command()
            .try_get_matches_from([
                "talaria",
                "--skills-dir",
                "/my skills",
                "skills",
                "list",
                "--workspace",
                "/w",
            ])
            .unwrap();
        crate::cli::Cli::from_arg_matches(&matches).unwrap();
        assert_eq!(
            given_flags(&matches),
            " --skills-dir '/my skills' --workspace /w"
        );
    }
}
