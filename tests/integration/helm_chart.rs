//! The Helm chart (`deploy/helm/talaria`): linted and rendered by Helm's
//! own code, every rendered manifest validated against the Kubernetes
//! schemas, the security settings and the values schema checked, with no
//! cluster. The checks are in `tests/helm/check_chart.py`; the Python is the
//! test venv `cargo xtask test` prepares (with `helm-python-sdk` and
//! `kubernetes-validate`).

use std::process::Command;

use crate::support::repo_root;

#[test]
fn the_chart_lints_renders_and_validates() {
    let python = std::env::var_os("TALARIA_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv/bin/python"));
    assert!(
        python.is_file(),
        "{} is missing: `cargo xtask test` creates it (a venv with helm-python-sdk and kubernetes-validate)",
        python.display()
    );
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(&python)
        .arg(repo_root().join("tests/helm/check_chart.py"))
        .arg(repo_root().join("deploy/helm/talaria"))
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("lint clean, 2 renders valid, 4 bad values refused"),
        "{stdout}{stderr}"
    );
    // The rendered manifests are there to read.
    assert!(out.path().join("default/deployment.yaml").is_file());
    assert!(out.path().join("full/networkpolicy.yaml").is_file());
}
