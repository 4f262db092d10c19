//! What the container runs: `gateway run` by default, a `talaria`
//! subcommand when the arguments start with one (`chat -q …`,
//! `talaria skills audit`), any other program as given (`bash`, `id -u`).

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Set in its environment, over what this process has.
    pub env: Vec<(OsString, OsString)>,
}

impl Program {
    /// How the program is named in messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|part| part.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The program for the container's arguments; `talaria` is this binary and
/// `subcommands` the names it answers to.
pub fn resolve(args: &[OsString], talaria: &Path, subcommands: &[String]) -> Program {
    let talaria_with = |args: &[OsString]| Program {
        program: talaria.as_os_str().to_owned(),
        args: args.to_vec(),
        env: Vec::new(),
    };
    let Some(first) = args.first() else {
        return talaria_with(&["gateway".into(), "run".into()]);
    };
    let is_subcommand = first
        .to_str()
        .is_some_and(|first| subcommands.iter().any(|name| name == first));
    if first == OsStr::new("talaria") {
        talaria_with(&args[1..])
    } else if is_subcommand || first.as_encoded_bytes().starts_with(b"-") {
        talaria_with(args)
    } else {
        Program {
            program: first.clone(),
            args: args[1..].to_vec(),
            env: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_pick_the_program() {
        let subcommands: Vec<String> = ["gateway", "chat", "skills", "help"]
            .map(String::from)
            .to_vec();
        let talaria = Path::new("/usr/local/bin/talaria");
        let table: &[(&[&str], &str, &[&str])] = &[
            (&[], "/usr/local/bin/talaria", &["gateway", "run"]),
            (
                &["gateway", "run", "--no-dashboard"],
                "/usr/local/bin/talaria",
                &["gateway", "run", "--no-dashboard"],
            ),
            (
                &["talaria", "skills", "audit"],
                "/usr/local/bin/talaria",
                &["skills", "audit"],
            ),
            (&["talaria"], "/usr/local/bin/talaria", &[]),
            (
                &["chat", "-q", "hi"],
                "/usr/local/bin/talaria",
                &["chat", "-q", "hi"],
            ),
            (&["--version"], "/usr/local/bin/talaria", &["--version"]),
            (&["bash"], "bash", &[]),
            (&["id", "-u"], "id", &["-u"]),
            (
                &["/bin/sh", "-c", "talaria chat"],
                "/bin/sh",
                &["-c", "talaria chat"],
            ),
        ];
        for (args, program, expected) in table {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            let resolved = resolve(&args, talaria, &subcommands);
            assert_eq!(resolved.program, OsString::from(program), "{args:?}");
            assert_eq!(
                resolved.args,
                expected.iter().map(OsString::from).collect::<Vec<_>>(),
                "{args:?}"
            );
        }
    }
}
