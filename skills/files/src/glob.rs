//! The `glob` tool: workspace paths matching a glob pattern.

use std::fs;
use std::io;
use std::ops::ControlFlow;

use globset::{GlobBuilder, GlobMatcher};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use talaria_sdk::{Capped, ToolError, bounded_count};

use crate::walk::{Kind, Walk};
use crate::workspace::{Workspace, io_error, is_hidden, relative_path};

const DEFAULT_MAX_GLOB_RESULTS: usize = 500;
const MAX_GLOB_RESULTS_LIMIT: usize = 5000;

/// Arguments of `glob`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GlobArgs {
    /// Glob relative to the workspace root: `*` and `?` stay within one path
    /// component, `**` spans directories, `{a,b}` and `[abc]` work. E.g.
    /// `src/**/*.rs`, `**/Cargo.toml`, `docs/*.{md,txt}`.
    pub(crate) pattern: String,
    /// Most paths to return (default 500, at most 5000).
    #[serde(default)]
    pub(crate) max_results: Option<usize>,
    /// Also match entries under names starting with `.` (automatic when the
    /// pattern itself names such a component, like `.github/**`).
    #[serde(default)]
    pub(crate) include_hidden: bool,
}

#[derive(Serialize, Debug, Default)]
pub(crate) struct GlobMatches {
    /// Matching paths relative to the workspace root, in walk order;
    /// directories end with `/`.
    pub(crate) matches: Vec<String>,
    /// True when the search stopped before seeing every match.
    pub(crate) truncated: bool,
}

/// A glob split into the directory to start walking from (its components
/// without wildcards) and how deep below it a match can be.
struct GlobPlan {
    matcher: GlobMatcher,
    base: String,
    max_depth: usize,
    names_hidden: bool,
}

fn plan_glob(pattern: &str) -> Result<GlobPlan, ToolError> {
    if pattern.is_empty() {
        return Err(ToolError::invalid_arguments(
            "the pattern is empty; give a glob such as `**/*.rs`",
        ));
    }
    let has_wildcard = |component: &str| component.contains(['*', '?', '[', '{', '\\']);
    // Wildcards must not hide a `..` from the check, so it sees only the
    // literal components; a `..` among wildcards never matches anything.
    let relative = relative_path(pattern)?;
    if relative.is_empty() {
        return Err(ToolError::invalid_arguments(
            "the pattern names the workspace root itself; add what to match below it, e.g. `*` or `**/*.md`",
        ));
    }
    let components: Vec<&str> = relative.split('/').collect();
    let literal_count = components
        .iter()
        .take_while(|component| !has_wildcard(component))
        .count()
        // The last component is what is matched, even without wildcards.
        .min(components.len() - 1);
    let base = components[..literal_count].join("/");
    let max_depth = if components[literal_count..]
        .iter()
        .any(|component| component.contains("**"))
    {
        usize::MAX
    } else {
        components.len() - literal_count
    };
    let matcher = GlobBuilder::new(&relative)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|error| {
            ToolError::invalid_arguments(format!(
                "invalid glob: {error}; examples: `src/**/*.rs`, `*.md`, `docs/{{a,b}}/*.txt`"
            ))
        })?
        .compile_matcher();
    Ok(GlobPlan {
        matcher,
        base,
        max_depth,
        names_hidden: components.iter().any(|component| is_hidden(component)),
    })
}

impl Workspace {
    pub(crate) fn glob(&self, args: GlobArgs) -> Result<GlobMatches, ToolError> {
        let max_results = bounded_count(
            "max_results",
            args.max_results,
            DEFAULT_MAX_GLOB_RESULTS,
            MAX_GLOB_RESULTS_LIMIT,
        )?;
        let plan = plan_glob(&args.pattern)?;
        match fs::metadata(self.absolute(&plan.base)) {
            Ok(metadata) if metadata.is_dir() => {}
            // Nothing can match below a base that is missing or a file.
            Ok(_) => return Ok(GlobMatches::default()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(GlobMatches::default());
            }
            Err(error) => return Err(io_error(&plan.base, error)),
        }
        let mut matches = Capped::new(max_results);
        let options = Walk {
            max_depth: plan.max_depth,
            include_hidden: args.include_hidden || plan.names_hidden,
        };
        let summary = self.walk(&plan.base, &options, &mut |entry| {
            if !plan.matcher.is_match(&entry.relative) {
                return ControlFlow::Continue(());
            }
            matches.push(if entry.kind == Kind::Dir {
                format!("{}/", entry.relative)
            } else {
                entry.relative.clone()
            })
        })?;
        let (matches, truncated) = matches.into_parts();
        Ok(GlobMatches {
            matches,
            truncated: truncated || summary.exhausted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{glob_args, sample};

    #[test]
    fn glob_matches_relative_to_the_workspace() {
        let tree = sample();
        let glob = |pattern: &str| tree.workspace().glob(glob_args(pattern)).unwrap().matches;
        assert_eq!(glob("src/**/*.rs"), ["src/bin/main.rs", "src/lib.rs"]);
        assert_eq!(glob("**/*.rs"), ["src/bin/main.rs", "src/lib.rs"]);
        assert_eq!(glob("*.rs"), Vec::<String>::new());
        assert_eq!(
            glob("/workspace/*.{toml,txt}"),
            ["Cargo.toml", "latin1.txt"]
        );
        assert_eq!(glob("src/*"), ["src/bin/", "src/lib.rs"]);
        assert_eq!(glob("Cargo.toml"), ["Cargo.toml"]);
        assert_eq!(glob("missing/**"), Vec::<String>::new());
        assert_eq!(glob(".hidden/*.rs"), [".hidden/secret.rs"]);
    }

    #[test]
    fn glob_is_bounded_and_checked() {
        let tree = sample();
        let mut args = glob_args("**");
        args.max_results = Some(3);
        let found = tree.workspace().glob(args).unwrap();
        assert_eq!(found.matches.len(), 3);
        assert!(found.truncated);
        assert!(matches!(
            tree.workspace().glob(glob_args("../**")),
            Err(ToolError::Denied(_))
        ));
        assert!(matches!(
            tree.workspace().glob(glob_args("src/[")),
            Err(ToolError::InvalidArguments(_))
        ));
        assert!(tree.workspace().glob(glob_args("")).is_err());
    }

    #[test]
    fn glob_plan_starts_at_the_literal_prefix() {
        let plan = plan_glob("src/bin/*.rs").unwrap();
        assert_eq!((plan.base.as_str(), plan.max_depth), ("src/bin", 1));
        let plan = plan_glob("src/**/x/*.rs").unwrap();
        assert_eq!((plan.base.as_str(), plan.max_depth), ("src", usize::MAX));
        let plan = plan_glob("Cargo.toml").unwrap();
        assert_eq!((plan.base.as_str(), plan.max_depth), ("", 1));
        let plan = plan_glob("a/b/c").unwrap();
        assert_eq!((plan.base.as_str(), plan.max_depth), ("a/b", 1));
    }
}
