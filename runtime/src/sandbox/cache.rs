//! On-disk cache of compiled components.
//!
//! Compiling a component takes tens of milliseconds; loading a compiled one
//! takes tens of microseconds. But a compiled artifact is native code that
//! wasmtime runs without verification, so an entry is only used when it is
//! provably ours:
//!
//! - the file name carries blake3(component) and the engine's
//!   precompile-compatibility hash, so another component or another engine
//!   configuration never matches;
//! - the file starts with a keyed blake3 MAC of the artifact, with a key
//!   kept in `cache.key` (mode 0600) beside the entries; an entry whose MAC
//!   does not verify (truncated, corrupted, tampered with by anyone who could
//!   not read the key) is deleted and recompiled, never deserialized.
//!
//! Entries are written to a temporary file, synced and renamed, so a crash
//! leaves either no entry or a complete one. Deleting the directory is always
//! safe.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::Component;

const MAC_LEN: usize = 32;
const KEY_FILE: &str = "cache.key";

pub struct ComponentCache {
    dir: PathBuf,
    key: [u8; 32],
    engine_hash: u64,
}

/// Where a loaded component came from, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    /// Not cached yet, or the entry was rejected and replaced.
    Compiled {
        rejected_entry: bool,
    },
    /// No cache directory configured.
    Disabled,
}

impl ComponentCache {
    pub fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        create_private_dir(dir)
            .with_context(|| format!("cannot create the component cache {}", dir.display()))?;
        let key = load_or_create_key(&dir.join(KEY_FILE))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_owned(),
            key,
            engine_hash: hasher.finish(),
        })
    }

    pub fn entry_path(&self, component_hash: &blake3::Hash) -> PathBuf {
        self.dir.join(format!(
            "{}-{:016x}.cwasm",
            component_hash.to_hex(),
            self.engine_hash
        ))
    }

    /// The compiled form of `wasm` (whose blake3 is `component_hash`), from
    /// the cache when a verified entry exists, compiled and stored otherwise.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        component_hash: &blake3::Hash,
    ) -> anyhow::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(component_hash);
        let mut rejected_entry = false;
        match fs::read(&path) {
            Ok(entry) => match self.verified_artifact(&entry) {
                Some(artifact) => {
                    // SAFETY: `deserialize` runs native code from `artifact`.
                    // The MAC proves this process's cache wrote these exact
                    // bytes with `Component::serialize` for this component
                    // and this engine configuration (the file name), and the
                    // bytes were read into memory once before the check, so
                    // nothing can swap them in between.
                    match unsafe { Component::deserialize(engine, artifact) } {
                        Ok(component) => return Ok((component, CacheOutcome::Hit)),
                        Err(error) => {
                            tracing::warn!(entry = %path.display(), %error, "cached component rejected by wasmtime; recompiling");
                            rejected_entry = true;
                        }
                    }
                }
                None => {
                    tracing::warn!(entry = %path.display(), "cached component failed verification; recompiling");
                    rejected_entry = true;
                }
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(entry = %path.display(), %error, "cannot read cached component; recompiling");
                rejected_entry = true;
            }
        }
        if rejected_entry {
            let _ = fs::remove_file(&path);
        }
        let component = Component::new(engine, wasm)?;
        if let Err(error) = self.store(&path, &component) {
            // The cache is an optimisation: a read-only or full disk must not
            // stop the skill from loading.
            tracing::warn!(entry = %path.display(), error = %format!("{error:#}"), "cannot write the component cache");
        }
        Ok((component, CacheOutcome::Compiled { rejected_entry }))
    }

    fn verified_artifact<'a>(&self, entry: &'a [u8]) -> Option<&'a [u8]> {
        let (mac, artifact) = entry.split_at_checked(MAC_LEN)?;
        let expected = blake3::keyed_hash(&self.key, artifact);
        // `blake3::Hash` equality is constant-time.
        (blake3::Hash::from_bytes(mac.try_into().ok()?) == expected).then_some(artifact)
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        let artifact = component.serialize()?;
        let mac = blake3::keyed_hash(&self.key, &artifact);
        let mut entry = Vec::with_capacity(MAC_LEN + artifact.len());
        entry.extend_from_slice(mac.as_bytes());
        entry.extend_from_slice(&artifact);
        write_atomically(path, &entry, 0o600)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn load_or_create_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    match fs::read(path) {
        Ok(bytes) => bytes.try_into().map_err(|bytes: Vec<u8>| {
            anyhow::anyhow!(
                "{} holds {} bytes, expected 32; delete it (and the cache) to start afresh",
                path.display(),
                bytes.len()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            write_atomically(path, &key, 0o600)?;
            // Two processes may race to create the key: whichever rename
            // landed last wins, and both use what is on disk.
            let bytes =
                fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} changed while being created", path.display()))
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Write `bytes` to `path` so that readers see either the old file or the
/// complete new one: temporary file in the same directory, fsync, rename,
/// fsync the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("path has no parent directory")?;
    let file_name = path
        .file_name()
        .context("path has no file name")?
        .to_string_lossy();
    let temp = dir.join(format!(
        ".{file_name}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| -> anyhow::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .with_context(|| format!("cannot create {}", temp.display()))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
            .with_context(|| format!("cannot rename into {}", path.display()))?;
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
