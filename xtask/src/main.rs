//! Project tasks, run with `cargo xtask <task>`:
//!
//! - `build-skills`: build every skill crate (bundled skills, examples, test
//!   skills) to wasm32-wasip2 and put each component where its `skill.toml`
//!   says.
//! - `test`: `build-skills`, a Python venv with the official OpenAI client
//!   (`target/test-venv`, for the gateway tests), Debian's `chromium` (apt,
//!   when missing) and playwright-core (`target/test-node`, for the
//!   dashboard's browser test), Debian's docker.io and busybox-static
//!   (apt, when missing), `dockerd` started when no engine answers (left
//!   running, log in `target/dockerd.log`) and a busybox test image
//!   imported once, Debian's openssh-server (its tests start their own
//!   `sshd` on loopback), then every test of the workspace.
//! - `test-services`: what `test` prepares, without running the tests; it
//!   prints the variables that point the tests at it.
//! - `demo`: `build-skills`, then list, grant and call the bundled skills in
//!   a data home of its own.
//! - `install [--prefix DIR]`: `build-skills`, then `talaria` into
//!   `DIR/bin` and the bundled skills into `DIR/share/talaria/skills`
//!   (default `DIR`: `~/.cargo`, whose `bin/` rustup puts on the PATH).
//!   `--release` installs an optimised build instead (the image's build
//!   stage uses it).
//! - `rootfs OUT`: the image's file tree from a release build (`image.rs`);
//!   the Dockerfile's build stage runs it.
//! - `image [--release] [--tag TAG]`: the container image without pulling
//!   anything: the Dockerfile's runtime stage over the tree made from this
//!   machine's binary (the tests build theirs the same way).
//! - `bench-image`: `image`, then the time from `docker run` to a healthy
//!   gateway, against the same binary started on the host.
//!
//! `test`, `demo` and `install` share one build of the host side: `cargo
//! test --workspace --no-run`, which builds `target/debug/talaria` with the
//! package selection and features the tests use. Any other build compiles
//! wasmtime again, about ten minutes on two cores: `cargo run -p
//! talaria-runtime` selects other packages, so features unify differently,
//! and `--release` is another profile.
//! (`cargo build --workspace` is not an option: it links the skill crates,
//! cdylibs meant for wasm32-wasip2, for the host too, and the host linker
//! rejects their WIT export names, which contain `:` (`talaria:skill/...`).)

mod image;
mod image_tasks;
mod install;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const WASM_TARGET: &str = "wasm32-wasip2";
/// The Cargo profile skills are built with (see the workspace Cargo.toml).
const SKILL_PROFILE: &str = "skill";
/// Folders whose sub-folders with both `Cargo.toml` and `skill.toml` are skills.
const SKILL_ROOTS: &[&str] = &["skills", "examples", "tests/skills"];
/// The one build of the host side every task shares (see the module doc).
const SHARED_BUILD: &[&str] = &["test", "--workspace", "--no-run"];
/// What the first shared build costs, said before it starts, since cargo's
/// own output does not: 28 minutes of CPU time measured from a clean target
/// directory, so 15 to 20 minutes on two idle cores.
const FIRST_BUILD: &str = "15 to 20 minutes on 2 cores, most of it wasmtime and cranelift";
const FIRST_SKILLS_BUILD: &str = "a few minutes on 2 cores";

fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "build-skills" => build_skills(&root),
        "test" => {
            build_skills(&root)?;
            let python = test_python(&root)?;
            let browser = test_browser(&root)?;
            let docker_image = test_docker(&root)?;
            test_sshd()?;
            shared_build(&root)?;
            println!(
                "xtask: running every test of the workspace (the same build: nothing is compiled again)"
            );
            run(cargo_command()
                .current_dir(&root)
                .env("TALARIA_TEST_PYTHON", python)
                .env("TALARIA_TEST_CHROMIUM", browser.chromium)
                .env("TALARIA_TEST_NODE_MODULES", browser.node_modules)
                .env("TALARIA_TEST_DOCKER_IMAGE", docker_image)
                .args(["test", "--workspace"]))
        }
        "test-services" => {
            // What `test` prepares, without the tests: for running a few
            // of them by hand.
            build_skills(&root)?;
            let python = test_python(&root)?;
            let browser = test_browser(&root)?;
            let docker_image = test_docker(&root)?;
            test_sshd()?;
            println!("TALARIA_TEST_PYTHON={}", python.display());
            println!("TALARIA_TEST_CHROMIUM={}", browser.chromium.display());
            println!(
                "TALARIA_TEST_NODE_MODULES={}",
                browser.node_modules.display()
            );
            println!("TALARIA_TEST_DOCKER_IMAGE={docker_image}");
            Ok(())
        }
        "demo" => demo(&root),
        "rootfs" => {
            let [out] = rest.as_slice() else { usage() };
            build_skills(&root)?;
            let binary = release_build(&root)?;
            let busybox = Path::new(image_tasks::BUSYBOX);
            anyhow::ensure!(
                busybox.is_file(),
                "{} is missing: install Debian's busybox-static",
                busybox.display()
            );
            image::assemble_rootfs(&binary, &root, busybox, Path::new(out))?;
            println!("xtask: the image's file tree is in {out}");
            Ok(())
        }
        "image" | "bench-image" => {
            let mut release = false;
            let mut tag = image_tasks::LOCAL_IMAGE.to_owned();
            let mut runs = 11;
            let mut flags = rest.iter();
            while let Some(flag) = flags.next() {
                match flag.as_str() {
                    "--release" => release = true,
                    "--tag" => tag = flags.next().cloned().unwrap_or_else(|| usage()),
                    "--runs" if task == "bench-image" => {
                        runs = flags
                            .next()
                            .and_then(|runs| runs.parse().ok())
                            .filter(|runs| *runs > 0)
                            .unwrap_or_else(|| usage())
                    }
                    _ => usage(),
                }
            }
            build_skills(&root)?;
            let binary = if release {
                release_build(&root)?
            } else {
                shared_build(&root)?
            };
            let busybox = test_docker(&root)?;
            let size = image_tasks::build(&root, &binary, &tag)?;
            println!(
                "xtask: built {tag} from {} (the Dockerfile's runtime stage): {:.1} MB",
                binary.display(),
                size as f64 / 1e6
            );
            if task == "bench-image" {
                image_tasks::bench(&binary, &busybox, &tag, runs)?;
            }
            Ok(())
        }
        "install" => {
            let mut prefix = None;
            let mut release = false;
            let mut flags = rest.iter();
            while let Some(flag) = flags.next() {
                match flag.as_str() {
                    "--release" => release = true,
                    "--prefix" => {
                        prefix = Some(PathBuf::from(flags.next().unwrap_or_else(|| usage())))
                    }
                    flag if flag.starts_with("--prefix=") => {
                        prefix = Some(PathBuf::from(&flag["--prefix=".len()..]))
                    }
                    _ => usage(),
                }
            }
            let prefix = match prefix {
                Some(prefix) => prefix,
                None => default_prefix()?,
            };
            install_task(&root, &prefix, release)
        }
        _ => usage(),
    }
}

/// The Python the gateway tests drive the official OpenAI client with, and
/// the Helm chart's test checks the chart with (Helm's code as a library,
/// and the Kubernetes schemas): a virtual environment in the target
/// directory's `test-venv`, created once (about 30 s) and reused while
/// its packages import.
fn test_python(root: &Path) -> anyhow::Result<PathBuf> {
    let venv = target_dir(root).join("test-venv");
    let python = venv.join("bin").join("python");
    let ready = |python: &Path| {
        Command::new(python)
            .args([
                "-c",
                "import openai, helm_python, kubernetes_validate, yaml",
            ])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if ready(&python) {
        return Ok(python);
    }
    println!(
        "xtask: preparing {} with the official OpenAI Python client (for the gateway tests), \
         helm-python-sdk and kubernetes-validate (for the Helm chart's test)",
        venv.display()
    );
    if !python.is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .context("cannot create the test venv: is python3 (with venv) installed?")?;
    }
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "openai>=1.40,<4",
        "helm-python-sdk>=0.2.2,<0.3",
        "kubernetes-validate>=1.37,<2",
    ]))
    .context("cannot install the test packages into the test venv")?;
    anyhow::ensure!(
        ready(&python),
        "openai, helm_python or kubernetes_validate does not import in {}",
        venv.display()
    );
    Ok(python)
}

/// What the dashboard's browser test drives: Debian's Chromium and
/// playwright-core (which never downloads a browser of its own).
struct TestBrowser {
    chromium: PathBuf,
    node_modules: PathBuf,
}

/// The pinned playwright-core, installed into the target directory's
/// `test-node` once.
const PLAYWRIGHT_CORE: &str = "playwright-core@1.65.1";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium from apt when it is missing (as root, or with a message saying
/// what to run), and playwright-core from npm when it is missing.
fn test_browser(root: &Path) -> anyhow::Result<TestBrowser> {
    let chromium = PathBuf::from(CHROMIUM);
    ensure_installed(&chromium, &["chromium"], "the dashboard's browser test")?;
    if !on_path("npm") {
        ensure_installed(
            Path::new("/usr/bin/npm"),
            &["nodejs", "npm"],
            "playwright-core",
        )?;
    }
    let prefix = target_dir(root).join("test-node");
    let node_modules = prefix.join("node_modules");
    let version = PLAYWRIGHT_CORE.rsplit('@').next().unwrap_or_default();
    let installed = std::fs::read_to_string(node_modules.join("playwright-core/package.json"))
        .is_ok_and(|text| text.contains(&format!("\"version\": \"{version}\"")));
    if !installed {
        println!(
            "xtask: installing {PLAYWRIGHT_CORE} into {} for the dashboard's browser test",
            prefix.display()
        );
        std::fs::create_dir_all(&prefix)?;
        run(Command::new("npm")
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&prefix)
            .arg(PLAYWRIGHT_CORE))
        .context("cannot install playwright-core with npm: is Node.js (with npm) installed?")?;
    }
    Ok(TestBrowser {
        chromium,
        node_modules,
    })
}

/// The image the Docker backend's tests run in: a static busybox, imported
/// from a folder (nothing can be pulled from a registry in CI).
const TEST_IMAGE: &str = "talaria-test-busybox:1";

/// A Docker engine for the Docker backend's tests: Debian's docker.io
/// when it is missing, `dockerd` started (and left running for later runs)
/// when none answers, and the test image built once. Fails loudly, with
/// the engine's own words, where no engine can start.
fn test_docker(root: &Path) -> anyhow::Result<String> {
    ensure_installed(
        Path::new("/usr/sbin/dockerd"),
        &["docker.io"],
        "the Docker backend's tests",
    )?;
    ensure_installed(
        Path::new("/bin/busybox"),
        &["busybox-static"],
        "the Docker backend's test image",
    )?;
    if !engine_answers() {
        start_dockerd(root)?;
    }
    let image_exists = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", TEST_IMAGE])
        .output()
        .is_ok_and(|output| output.status.success());
    if !image_exists {
        build_test_image(root)?;
    }
    Ok(TEST_IMAGE.to_owned())
}

/// The SSH backend's tests start their own `sshd` on loopback; they need
/// Debian's openssh-server (which brings the client and `ssh-keygen`).
fn test_sshd() -> anyhow::Result<()> {
    ensure_installed(
        Path::new("/usr/sbin/sshd"),
        &["openssh-server"],
        "the SSH backend's tests",
    )?;
    ensure_installed(
        Path::new("/usr/bin/ssh"),
        &["openssh-client"],
        "the SSH backend",
    )
}

fn engine_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Start `dockerd` in a process group of its own (it outlives this run, so
/// the next run finds it), logging to the target directory's
/// `dockerd.log`, and wait until it answers.
fn start_dockerd(root: &Path) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let log_path = target_dir(root).join("dockerd.log");
    std::fs::create_dir_all(target_dir(root))?;
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    println!(
        "xtask: starting dockerd for the Docker backend's tests (log: {})",
        log_path.display()
    );
    let mut dockerd = Command::new("dockerd")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start dockerd (the Docker backend's tests need a Docker engine; as root, this script starts one)")?;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        if engine_answers() {
            return Ok(());
        }
        if let Some(status) = dockerd.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            anyhow::bail!(
                "dockerd could not start here ({status}); the Docker backend's tests cannot run without an engine. Its last lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    anyhow::bail!(
        "dockerd did not answer within 60 s; see {}",
        log_path.display()
    )
}

/// A root filesystem of static busybox and its applets, imported as
/// [`TEST_IMAGE`].
fn build_test_image(root: &Path) -> anyhow::Result<()> {
    println!("xtask: building the test image {TEST_IMAGE} from busybox (once)");
    let rootfs = target_dir(root).join("test-docker-rootfs");
    let _ = std::fs::remove_dir_all(&rootfs);
    for dir in ["bin", "etc", "tmp", "workspace", "proc", "sys", "dev"] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))?;
    let applets = Command::new("/bin/busybox").arg("--list").output()?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let archive = tar.stdout.take().context("tar has no output")?;
    run(Command::new("docker")
        .args(["import", "--change", "ENV PATH=/bin", "-", TEST_IMAGE])
        .stdin(archive))
    .context("docker import failed")?;
    anyhow::ensure!(tar.wait()?.success(), "tar failed");
    Ok(())
}

/// Whether `program` runs from the PATH.
fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Install the Debian `packages` that provide `path` when it is missing:
/// as root with apt-get (updating the package lists once if needed),
/// otherwise an error saying what to run.
fn ensure_installed(path: &Path, packages: &[&str], purpose: &str) -> anyhow::Result<()> {
    if path.is_file() {
        return Ok(());
    }
    let list = packages.join(" ");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    anyhow::ensure!(
        is_root,
        "{} is missing and this is not root: run `sudo apt-get install -y {list}`, then this again",
        path.display()
    );
    println!("xtask: installing Debian's {list} for {purpose} (once)");
    let install = || {
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"])
            .args(packages))
    };
    if install().is_err() {
        // A fresh machine may have no package lists yet.
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .arg("update"))
        .context("apt-get update failed")?;
        install().with_context(|| format!("cannot install {list} with apt-get"))?;
    }
    anyhow::ensure!(
        path.is_file(),
        "{} is still missing after apt-get",
        path.display()
    );
    Ok(())
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo xtask <task>\n\n\
         tasks:\n  \
         build-skills            build every skill to {WASM_TARGET} and place its component\n  \
         test                    build-skills, then run every test\n  \
         test-services           prepare what the tests need (venv, browser, Docker engine)\n  \
         demo                    build-skills, list the bundled skills and call their tools\n  \
         install [--prefix DIR] [--release]\n                          \
         build-skills, then talaria into DIR/bin and the bundled\n                          \
         skills into DIR/share/talaria/skills (default DIR: ~/.cargo);\n                          \
         --release builds an optimised binary for it (the image does)\n  \
         rootfs OUT              the image's file tree in OUT, from a release build (the\n                          \
         Dockerfile's build stage runs it)\n  \
         image [--release] [--tag TAG]\n                          \
         the container image from the Dockerfile's runtime stage, with this\n                          \
         machine's binary (nothing is pulled;\n                          \
         default TAG: talaria:local)\n  \
         bench-image [--release] [--tag TAG] [--runs N]\n                          \
         image, then the median time from `docker run` to a healthy\n                          \
         gateway, against the same binary on the host\n\n\
         test, demo and install share one build: `cargo test --workspace --no-run`."
    );
    std::process::exit(2);
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}

/// `cargo`, without the variables `cargo run` set for this process. Build
/// scripts ask to run again when some of them change (ring's watches
/// `CARGO_PKG_VERSION_PRE` and `OUT_DIR`), so passing them on would make a
/// build from here and a plain `cargo test --workspace` rebuild each other's
/// dependencies in turn.
fn cargo_command() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&name)
        {
            command.env_remove(name);
        }
    }
    command
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Build `target/debug/talaria` and the tests in one go, saying first what
/// is built and how long it takes; cargo shows its progress. Returns the
/// binary.
fn shared_build(root: &Path) -> anyhow::Result<PathBuf> {
    let binary = target_dir(root).join("debug").join("talaria");
    let cost = if binary.is_file() {
        "built before: only what changed is compiled again".to_owned()
    } else {
        format!("first time: {FIRST_BUILD}; later builds take seconds")
    };
    println!(
        "xtask: building the talaria binary and the tests with `cargo {}` \
         (demo, test and install share this build; {cost})",
        SHARED_BUILD.join(" ")
    );
    run(cargo_command().current_dir(root).args(SHARED_BUILD))?;
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing after the build",
        binary.display()
    );
    Ok(binary)
}

struct SkillCrate {
    dir: PathBuf,
    package: String,
    component: String,
}

fn build_skills(root: &Path) -> anyhow::Result<()> {
    ensure_wasm_target()?;
    let crates = skill_crates(root)?;
    let target_dir = target_dir(root);
    let cost = if target_dir.join(WASM_TARGET).join(SKILL_PROFILE).is_dir() {
        "built before: only what changed is compiled again".to_owned()
    } else {
        format!("first time: {FIRST_SKILLS_BUILD}")
    };
    println!(
        "xtask: building the {} skill components for {WASM_TARGET} (profile `{SKILL_PROFILE}`; {cost})",
        crates.len()
    );
    let mut build = cargo_command();
    build
        .current_dir(root)
        .args(["build", "--profile", SKILL_PROFILE, "--target", WASM_TARGET]);
    for skill in &crates {
        build.args(["--package", &skill.package]);
    }
    run(&mut build)?;
    for skill in &crates {
        let built = target_dir
            .join(WASM_TARGET)
            .join(SKILL_PROFILE)
            .join(format!("{}.wasm", skill.package.replace('-', "_")));
        let destination = skill.dir.join(&skill.component);
        copy_atomically(&built, &destination)?;
        println!(
            "{} -> {}",
            skill.package,
            destination
                .strip_prefix(root)
                .unwrap_or(&destination)
                .display()
        );
    }
    Ok(())
}

/// `rustup target add` is idempotent but slow to start; ask first.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(output)
            if String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET) =>
        {
            Ok(())
        }
        Ok(_) => run(Command::new("rustup").args(["target", "add", WASM_TARGET])),
        // Without rustup the toolchain must already have the target.
        Err(_) => Ok(()),
    }
}

fn skill_crates(root: &Path) -> anyhow::Result<Vec<SkillCrate>> {
    let mut crates = Vec::new();
    for skill_root in SKILL_ROOTS {
        let Ok(entries) = std::fs::read_dir(root.join(skill_root)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        for dir in dirs {
            let (cargo_toml, skill_toml) = (dir.join("Cargo.toml"), dir.join("skill.toml"));
            if !cargo_toml.is_file() || !skill_toml.is_file() {
                continue;
            }
            let package = read_toml(&cargo_toml)?
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .with_context(|| format!("{}: no package.name", cargo_toml.display()))?
                .to_owned();
            let component = read_toml(&skill_toml)?
                .get("skill")
                .and_then(|s| s.get("component"))
                .and_then(|c| c.as_str())
                .with_context(|| format!("{}: no skill.component", skill_toml.display()))?
                .to_owned();
            crates.push(SkillCrate {
                dir,
                package,
                component,
            });
        }
    }
    Ok(crates)
}

fn read_toml(path: &Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))
}

fn copy_atomically(from: &Path, to: &Path) -> anyhow::Result<()> {
    let temp = to.with_extension("wasm.tmp");
    std::fs::copy(from, &temp)
        .with_context(|| format!("cannot copy {} to {}", from.display(), temp.display()))?;
    std::fs::rename(&temp, to)
        .with_context(|| format!("cannot rename {} to {}", temp.display(), to.display()))?;
    Ok(())
}

fn demo(root: &Path) -> anyhow::Result<()> {
    build_skills(root)?;
    let binary = shared_build(root)?;
    // A data home of its own, so the demo leaves the user's ~/.talaria alone.
    // The workspace is `examples/`: Talaria refuses a workspace that overlaps
    // its data home or the skills directory (`skills/` here).
    let home = std::env::temp_dir().join("talaria-demo-home");
    let home = home.to_string_lossy().into_owned();
    let talaria = |args: &[&str]| -> anyhow::Result<()> {
        println!("\n$ talaria {}", args.join(" "));
        run(Command::new(&binary)
            .current_dir(root)
            .args([
                "--home",
                &home,
                "--skills-dir",
                "skills",
                "--workspace",
                "examples",
            ])
            .args(args))
    };
    talaria(&["skills", "list"])?;
    talaria(&["skills", "grant", "text", "--yes"])?;
    talaria(&["skills", "grant", "files", "--yes"])?;
    talaria(&["tool", "list"])?;
    talaria(&[
        "tool",
        "call",
        "text.count",
        r#"{"text": "Talaria runs every skill in a sandbox."}"#,
    ])?;
    talaria(&[
        "tool",
        "call",
        "files.read",
        r#"{"path": "word-stats/README.md", "end_line": 5}"#,
    ])?;
    talaria(&["skills", "audit"]).or_else(|_| {
        println!("(audit exits 1 while a skill is not granted: json is still pending)");
        anyhow::Ok(())
    })?;
    println!(
        "\nThe binary is {}; `cargo xtask install` puts it on the PATH.",
        binary.display()
    );
    Ok(())
}

/// `~/.cargo` (or `$CARGO_HOME`): rustup puts its `bin/` on the PATH.
fn default_prefix() -> anyhow::Result<PathBuf> {
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(cargo_home));
    }
    let home = std::env::home_dir().context("no home directory: pass --prefix DIR")?;
    Ok(home.join(".cargo"))
}

/// `release`: an optimised build of the binary alone (the container image's
/// build stage uses it), instead of the build the tests share.
fn install_task(root: &Path, prefix: &Path, release: bool) -> anyhow::Result<()> {
    build_skills(root)?;
    let binary = if release {
        release_build(root)?
    } else {
        shared_build(root)?
    };
    let installed = install::install(&binary, root, prefix)?;
    println!(
        "xtask: installed {} and the bundled skills ({}) in {}",
        installed.binary.display(),
        installed.skills.join(", "),
        installed.skills_dir.display()
    );
    let bin_dir = prefix.join("bin");
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| same_dir(&dir, &bin_dir)));
    if !on_path {
        println!(
            "xtask: {} is not on your PATH; add it, e.g. in ~/.profile:\n  export PATH=\"{}:$PATH\"",
            bin_dir.display(),
            bin_dir.display()
        );
    }
    Ok(())
}

/// The optimised binary alone (`--release`): another profile than the
/// shared build, so wasmtime compiles again (about 15 minutes on 2 cores
/// the first time).
fn release_build(root: &Path) -> anyhow::Result<PathBuf> {
    println!(
        "xtask: building the release binary with `cargo build --release --locked --bin talaria`"
    );
    run(cargo_command().current_dir(root).args([
        "build",
        "--release",
        "--locked",
        "--bin",
        "talaria",
    ]))?;
    Ok(image_tasks::release_binary(&target_dir(root)))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
