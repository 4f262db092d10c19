//! The workspace as the model sees it: paths from the model are checked and
//! normalised before the file system is touched, and I/O errors are worded so
//! that the model knows what to do next.

use std::fs;
use std::io;
use std::path::PathBuf;

use talaria_sdk::ToolError;

/// Where the host mounts the workspace inside the sandbox (see `skill.toml`).
pub(crate) const GUEST_ROOT: &str = "/workspace";

/// Turn a path from the model into a normalised path relative to the
/// workspace root ("" for the root itself). Refuses anything that could leave
/// the workspace before the file system is touched: the sandbox would refuse
/// too, but with a message that does not tell the model what to do instead.
pub(crate) fn relative_path(requested: &str) -> Result<String, ToolError> {
    if requested.contains('\0') {
        return Err(ToolError::invalid_arguments(
            "paths must not contain NUL characters",
        ));
    }
    let relative = match requested.strip_prefix(GUEST_ROOT) {
        Some("") => "",
        Some(rest) if rest.starts_with('/') => rest,
        _ if requested.starts_with('/') => {
            return Err(ToolError::denied(format!(
                "`{requested}` is outside the workspace; this skill sees only the workspace, \
                 so give a path relative to its root (e.g. `src/main.rs`) or starting with `{GUEST_ROOT}/`"
            )));
        }
        _ => requested,
    };
    let mut components = Vec::new();
    for component in relative.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                return Err(ToolError::denied(format!(
                    "`{requested}` uses `..`, which is not allowed: this skill sees only the workspace; \
                     give the path from the workspace root instead"
                )));
            }
            name => components.push(name),
        }
    }
    Ok(components.join("/"))
}

/// How a workspace-relative path is shown to the model.
pub(crate) fn display(relative: &str) -> &str {
    if relative.is_empty() { "." } else { relative }
}

pub(crate) fn join_relative(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

pub(crate) fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// An I/O error on `relative`, worded for the model.
pub(crate) fn io_error(relative: &str, error: io::Error) -> ToolError {
    let shown = display(relative);
    match error.kind() {
        io::ErrorKind::NotFound => ToolError::failed(format!(
            "`{shown}` does not exist in the workspace; use `list` or `glob` to find the right path"
        )),
        io::ErrorKind::PermissionDenied => ToolError::denied(format!(
            "access to `{shown}` was refused ({error}); this skill reaches only the workspace, \
             and symbolic links leading out of it are blocked"
        )),
        _ => ToolError::failed(format!("could not read `{shown}`: {error}")),
    }
}

/// The file tree under a root directory, as the model sees it.
pub(crate) struct Workspace {
    root: PathBuf,
}

impl Workspace {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub(crate) fn absolute(&self, relative: &str) -> PathBuf {
        if relative.is_empty() {
            self.root.clone()
        } else {
            self.root.join(relative)
        }
    }

    /// Metadata of `relative`, following a final symbolic link like opening
    /// the path would.
    pub(crate) fn metadata(&self, relative: &str) -> Result<fs::Metadata, ToolError> {
        fs::metadata(self.absolute(relative)).map_err(|error| io_error(relative, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::ReadArgs;
    use crate::test_support::list_args;

    #[test]
    fn relative_paths_are_normalised() {
        assert_eq!(relative_path("src/lib.rs").unwrap(), "src/lib.rs");
        assert_eq!(relative_path("./src//lib.rs/").unwrap(), "src/lib.rs");
        assert_eq!(
            relative_path("/workspace/src/lib.rs").unwrap(),
            "src/lib.rs"
        );
        assert_eq!(relative_path("/workspace").unwrap(), "");
        assert_eq!(relative_path("/workspace/").unwrap(), "");
        assert_eq!(relative_path("").unwrap(), "");
        assert_eq!(relative_path(".").unwrap(), "");
        assert_eq!(relative_path("a/.../b").unwrap(), "a/.../b");
    }

    #[test]
    fn paths_leaving_the_workspace_are_denied() {
        for path in [
            "../etc/passwd",
            "src/../../x",
            "/workspace/../etc",
            "/etc/passwd",
            "/workspaces/x",
            "/",
        ] {
            let error = relative_path(path).unwrap_err();
            assert!(matches!(error, ToolError::Denied(_)), "{path}: {error:?}");
        }
        assert!(
            relative_path("/tmp")
                .unwrap_err()
                .message()
                .contains("relative to its root")
        );
        assert!(relative_path("..").unwrap_err().message().contains("`..`"));
        assert!(matches!(
            relative_path("a\0b").unwrap_err(),
            ToolError::InvalidArguments(_)
        ));
    }

    #[test]
    fn denied_paths_are_refused_before_touching_the_file_system() {
        // The root does not exist: a denial here cannot come from the OS.
        let workspace = Workspace::new("/nonexistent-talaria-root");
        let error = workspace.read(ReadArgs {
            path: "../secret".into(),
            start_line: None,
            end_line: None,
            line_numbers: None,
            max_bytes: None,
        });
        assert!(matches!(error, Err(ToolError::Denied(_))));
        let error = workspace.list(list_args(Some("/etc"), None));
        assert!(matches!(error, Err(ToolError::Denied(_))));
    }
}
