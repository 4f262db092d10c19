//! The container image's file tree, and the image built from it without
//! pulling anything.
//!
//! [`assemble_rootfs`] lays out what the Dockerfile's runtime stage copies
//! onto `scratch`: the binary, the bundled skills, the C libraries the
//! binary links (what `ldd` lists, so they are the very ones it was built
//! against), a static busybox for `/bin/sh` and the usual tools, the
//! `talaria` user (10000:10000) and the CA certificates. The Dockerfile's
//! build stage calls it through `cargo xtask rootfs`.
//!
//! [`build_image`] builds the Dockerfile's runtime stage from a tree
//! assembled here, without the build stage (which needs a Rust image from
//! a registry): `cargo xtask image` does that on machines that cannot pull,
//! and the integration tests build the image they test with the binary
//! they were built with. Uses only `std` and `anyhow`, so the tests include
//! this file as it is.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

/// The stage of the Dockerfile that needs a Rust image.
const BUILD_STAGE: &str = "FROM ${RUST_IMAGE} AS build";
/// The stage that becomes the image.
const RUNTIME_STAGE: &str = "FROM ${BASE_IMAGE} AS runtime";
/// The runtime stage's one copy from the build stage.
const COPY_FROM_BUILD: &str = "COPY --from=build /out/ /";

/// What [`build_image`] assembled (the tests build a second image from it).
#[allow(dead_code)]
pub struct ImageContext {
    /// The build context (holds `Dockerfile` and `rootfs/`).
    pub dir: PathBuf,
    /// `rootfs/usr/local`: `bin/talaria` and `share/talaria/skills/`.
    pub prefix: PathBuf,
}

/// `docker` with the legacy builder: engines without buildx refuse the
/// default BuildKit, and the Dockerfile needs nothing only BuildKit has.
pub fn docker() -> Command {
    let mut command = Command::new("docker");
    command.env("DOCKER_BUILDKIT", "0");
    command
}

/// The image's users: root for the entrypoint's first moments, and the
/// service user (the Helm chart's `runAsUser`).
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      talaria:x:10000:10000:Talaria:/opt/data/home:/bin/sh\n";
const GROUP: &str = "root:x:0:\ntalaria:x:10000:\n";

/// Lay out in `out` the file tree of the image: `usr/local/bin/talaria`
/// (`binary` without debug symbols), `usr/local/share/talaria/skills/` (the
/// bundled skills of the repository at `root`, components built), the
/// libraries `binary` links at the paths `ldd` gives, `bin/busybox` with a
/// link per applet, `etc/passwd`, `etc/group`, and the CA certificates.
pub fn assemble_rootfs(
    binary: &Path,
    root: &Path,
    busybox: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    let prefix = out.join("usr").join("local");
    std::fs::create_dir_all(prefix.join("bin"))?;
    let stripped = out.join(".talaria-stripped");
    let strip = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(binary)
        .output()
        .context("cannot run strip (binutils)")?;
    anyhow::ensure!(
        strip.status.success(),
        "strip failed: {}",
        String::from_utf8_lossy(&strip.stderr)
    );
    let installed = super::install::install(&stripped, root, &prefix);
    let _ = std::fs::remove_file(&stripped);
    installed?;

    for library in linked_libraries(binary)? {
        let relative = library.strip_prefix("/").unwrap_or(&library);
        let target = out.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Copied through links: the tree holds the files themselves.
        std::fs::copy(&library, &target)
            .with_context(|| format!("cannot copy {}", library.display()))?;
    }

    let bin = out.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(busybox, bin.join("busybox"))
        .with_context(|| format!("cannot copy {} (a static busybox)", busybox.display()))?;
    let applets = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("cannot run {}", busybox.display()))?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        let link = bin.join(applet);
        if applet.is_empty() || applet == "busybox" || link.exists() {
            continue;
        }
        std::os::unix::fs::symlink("busybox", &link)?;
    }
    anyhow::ensure!(bin.join("sh").exists(), "{} has no sh", busybox.display());

    let etc = out.join("etc");
    std::fs::create_dir_all(etc.join("ssl").join("certs"))?;
    std::fs::write(etc.join("passwd"), PASSWD)?;
    std::fs::write(etc.join("group"), GROUP)?;
    let certificates = Path::new("/etc/ssl/certs/ca-certificates.crt");
    std::fs::copy(certificates, etc.join("ssl/certs/ca-certificates.crt"))
        .with_context(|| format!("cannot copy {} (ca-certificates)", certificates.display()))?;
    Ok(())
}

/// Tag `tag` from the repository at `root`: its Dockerfile's runtime stage
/// over a tree [`assemble_rootfs`] made from `binary` and `busybox`.
/// `build_args` go to `docker build` as they are.
pub fn build_image(
    binary: &Path,
    root: &Path,
    busybox: &Path,
    tag: &str,
    work: &Path,
    build_args: &[&str],
) -> anyhow::Result<ImageContext> {
    let dir = work.join("image");
    let rootfs = dir.join("rootfs");
    assemble_rootfs(binary, root, busybox, &rootfs)?;
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile"))
        .with_context(|| format!("cannot read {}", root.join("Dockerfile").display()))?;
    std::fs::write(dir.join("Dockerfile"), runtime_stage(&dockerfile)?)?;
    let mut args = vec!["-t", tag];
    args.extend_from_slice(build_args);
    build(&dir, &args)?;
    Ok(ImageContext {
        prefix: rootfs.join("usr").join("local"),
        dir,
    })
}

/// The Dockerfile without its build stage, the runtime stage copying from
/// the context's `rootfs/`.
pub fn runtime_stage(dockerfile: &str) -> anyhow::Result<String> {
    let build = dockerfile
        .find(BUILD_STAGE)
        .with_context(|| format!("the Dockerfile has no `{BUILD_STAGE}` stage"))?;
    let runtime = dockerfile
        .find(RUNTIME_STAGE)
        .with_context(|| format!("the Dockerfile has no `{RUNTIME_STAGE}` stage"))?;
    anyhow::ensure!(build < runtime, "the build stage must come first");
    let stage = &dockerfile[runtime..];
    anyhow::ensure!(
        stage.matches(COPY_FROM_BUILD).count() == 1,
        "the runtime stage must `{COPY_FROM_BUILD}` exactly once"
    );
    Ok(format!(
        "{}{}",
        &dockerfile[..build],
        stage.replace(COPY_FROM_BUILD, "COPY rootfs/ /")
    ))
}

/// `docker build -q ARGS CONTEXT`. The image a `-t` tag named before is
/// removed when nothing uses it, so rebuilding does not pile up untagged
/// images.
pub fn build(context: &Path, args: &[&str]) -> anyhow::Result<()> {
    let tag = args
        .windows(2)
        .find(|pair| pair[0] == "-t")
        .map(|pair| pair[1]);
    let previous = tag.and_then(image_id);
    let output = docker()
        .args(["build", "-q"])
        .args(args)
        .arg(context)
        .output()
        .context("cannot run docker")?;
    anyhow::ensure!(
        output.status.success(),
        "docker build {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    if let Some(previous) = previous
        && tag.and_then(image_id).as_ref() != Some(&previous)
    {
        // Fails, harmlessly, while a container or another tag uses it.
        let _ = docker().args(["rmi", &previous]).output();
    }
    Ok(())
}

/// The host port published for the container `name`'s `port`.
pub fn published_port(name: &str, port: u16) -> anyhow::Result<u16> {
    let output = docker()
        .args(["port", name, &format!("{port}/tcp")])
        .output()
        .context("cannot run docker")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .and_then(|line| line.rsplit(':').next())
        .and_then(|port| port.trim().parse().ok())
        .with_context(|| format!("port {port} of {name} is not published"))
}

/// The id of the image `tag` names, if any.
fn image_id(tag: &str) -> Option<String> {
    let output = docker()
        .args(["image", "inspect", "--format", "{{.Id}}", tag])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The shared libraries `binary` loads, as `ldd` lists them.
fn linked_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd")?;
    let listing = String::from_utf8_lossy(&output.stdout);
    if let Some(missing) = listing.lines().find(|line| line.contains("not found")) {
        anyhow::bail!(
            "{} needs a library this machine lacks: {}",
            binary.display(),
            missing.trim()
        );
    }
    let libraries: Vec<PathBuf> = listing
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, after)) => after.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect();
    anyhow::ensure!(
        !libraries.is_empty(),
        "ldd listed no libraries for {}: {listing}",
        binary.display()
    );
    Ok(libraries)
}
