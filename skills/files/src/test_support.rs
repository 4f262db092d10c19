//! A temporary workspace tree and argument builders shared by the tools'
//! tests.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::glob::GlobArgs;
use crate::list::ListArgs;
use crate::workspace::Workspace;

/// A directory tree under the system temp dir, removed on drop.
pub(crate) struct TempTree {
    pub(crate) root: PathBuf,
}

impl TempTree {
    pub(crate) fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "talaria-skill-files-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&root).unwrap();
        Self { root }
    }

    pub(crate) fn file(&self, relative: &str, content: impl AsRef<[u8]>) -> &Self {
        let path = self.root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        self
    }

    pub(crate) fn dir(&self, relative: &str) -> &Self {
        fs::create_dir_all(self.root.join(relative)).unwrap();
        self
    }

    pub(crate) fn workspace(&self) -> Workspace {
        Workspace::new(&self.root)
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

pub(crate) fn sample() -> TempTree {
    let tree = TempTree::new();
    tree.file("Cargo.toml", "[package]\nname = \"demo\"\n")
        .file(
            "src/lib.rs",
            "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n",
        )
        .file(
            "src/bin/main.rs",
            "fn main() {\n    println!(\"{}\", demo::add(1, 2));\n}\n",
        )
        .file("docs/guide.md", "# Guide\nCall add to add.\n")
        .file(".hidden/secret.rs", "fn add() {}\n")
        .file("image.bin", b"\x89PNG\0\0\0binary add")
        .file("latin1.txt", b"caf\xe9 add\n")
        .dir("empty");
    tree
}

pub(crate) fn list_args(path: Option<&str>, depth: Option<usize>) -> ListArgs {
    ListArgs {
        path: path.map(str::to_owned),
        depth,
        max_entries: None,
        include_hidden: false,
    }
}

pub(crate) fn glob_args(pattern: &str) -> GlobArgs {
    GlobArgs {
        pattern: pattern.into(),
        max_results: None,
        include_hidden: false,
    }
}
