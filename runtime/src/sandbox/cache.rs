//! On-disk cache of compiled components.
//!
//! Compiling a component takes tens to hundreds of milliseconds; loading a
//! compiled one takes a fraction of a millisecond. But a compiled artifact is
//! native code that wasmtime runs without verification, so an entry is only
//! used when it is provably ours:
//!
//! - the file name carries blake3(component) and the engine's
//!   precompile-compatibility hash, so another component or another engine
//!   configuration never matches;
//! - beside each `X.cwasm` lies `X.cwasm.mac`, a keyed blake3 MAC of the
//!   entry's name and artifact under a key kept in `cache.key` (mode 0600); an entry whose MAC
//!   does not verify (truncated, corrupted, copied in from elsewhere,
//!   tampered with by anyone who cannot read the key) is deleted and
//!   recompiled, never deserialized;
//! - the directory must belong to the running user and be writable by no one
//!   else, otherwise the cache is not used at all: after verification
//!   wasmtime maps the file by path, and only its owner can swap it in
//!   between (who could as well rewrite the key or the binary).
//!
//! Files are written to a temporary file, synced and renamed, so a crash
//! leaves either no entry, a complete one, or one whose MAC fails. Deleting
//! the directory is always safe.
//!
//! Several processes starting on one home at once (a gateway and a few
//! `talaria chat` runs) compile each missing entry once: the first takes
//! `X.cwasm.lock` and compiles, the others wait on the lock and then load
//! what it wrote. An entry that fails verification is judged again under the
//! lock, so one still being written is never taken for a tampered one.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::home::{create_private_dir, write_atomically, write_new};

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
        create_private_dir(dir)?;
        check_private_dir(dir)?;
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
        if let Lookup::Verified(component) = self.lookup(engine, &path) {
            return Ok((component, CacheOutcome::Hit));
        }
        // Missing or not verified: decide under the entry's lock, which a
        // process writing it holds until both files are in place.
        let _lock = lock_entry(&path)?;
        let rejected_entry = match self.lookup(engine, &path) {
            Lookup::Verified(component) => return Ok((component, CacheOutcome::Hit)),
            Lookup::Missing => false,
            Lookup::Rejected(why) => {
                tracing::warn!(entry = %path.display(), "{why}; recompiling");
                let _ = fs::remove_file(mac_path(&path));
                let _ = fs::remove_file(&path);
                true
            }
        };
        let component = Component::new(engine, wasm)?;
        tracing::debug!(entry = %path.display(), "compiled a component into the cache");
        if let Err(error) = self.store(&path, &component) {
            // The cache is an optimisation: a read-only or full disk must not
            // stop the skill from loading.
            tracing::warn!(entry = %path.display(), error = %format!("{error:#}"), "cannot write the component cache");
        }
        Ok((component, CacheOutcome::Compiled { rejected_entry }))
    }

    fn lookup(&self, engine: &Engine, path: &Path) -> Lookup {
        match (fs::read(mac_path(path)), fs::read(path)) {
            (Ok(mac), Ok(artifact)) if self.verifies(path, &mac, &artifact) => {
                // SAFETY: `deserialize_file` maps and runs native code from
                // `path`. The MAC proves this cache wrote these exact bytes
                // with `Component::serialize` for this component and this
                // engine configuration (the file name); the directory is
                // private to this user (checked in `open`), so nobody else
                // can replace the file between the check and the mapping.
                match unsafe { Component::deserialize_file(engine, path) } {
                    Ok(component) => Lookup::Verified(component),
                    Err(error) => {
                        Lookup::Rejected(format!("cached component rejected by wasmtime: {error}"))
                    }
                }
            }
            (Err(mac_error), Err(artifact_error))
                if mac_error.kind() == std::io::ErrorKind::NotFound
                    && artifact_error.kind() == std::io::ErrorKind::NotFound =>
            {
                Lookup::Missing
            }
            _ => Lookup::Rejected(
                "cached component missing, unreadable or failing verification".into(),
            ),
        }
    }

    fn verifies(&self, path: &Path, mac: &[u8], artifact: &[u8]) -> bool {
        let Ok(mac) = <[u8; 32]>::try_from(mac) else {
            return false;
        };
        // `blake3::Hash` equality is constant-time.
        blake3::Hash::from_bytes(mac) == self.mac(path, artifact)
    }

    /// The MAC covers the entry's file name too, so a valid entry of one
    /// component cannot be passed off as another's.
    fn mac(&self, path: &Path, artifact: &[u8]) -> blake3::Hash {
        let name = path
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default();
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name);
        hasher.update(artifact);
        hasher.finalize()
    }

    /// Artifact first, MAC second: a crash in between leaves an entry whose
    /// MAC fails, which is recompiled.
    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        let artifact = component.serialize()?;
        let mac = self.mac(path, &artifact);
        write_atomically(path, &artifact, 0o600)?;
        write_atomically(&mac_path(path), mac.as_bytes(), 0o600)
    }
}

enum Lookup {
    Verified(Component),
    Missing,
    Rejected(String),
}

/// Hold `X.cwasm.lock` exclusively until the guard drops.
fn lock_entry(entry: &Path) -> anyhow::Result<EntryLock> {
    let mut name = entry.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = crate::home::open_lock_file(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(EntryLock { _file: file })
}

/// The lock is released when the file is closed.
struct EntryLock {
    _file: fs::File,
}

fn mac_path(entry: &Path) -> PathBuf {
    let mut name = entry.as_os_str().to_owned();
    name.push(".mac");
    PathBuf::from(name)
}

/// Refuse a cache directory that another user owns or can write to.
fn check_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let metadata =
        fs::symlink_metadata(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    let uid = rustix::process::geteuid().as_raw();
    anyhow::ensure!(
        metadata.is_dir() && metadata.uid() == uid && metadata.mode() & 0o022 == 0,
        "the component cache {} must be a directory owned by uid {uid} and writable by no one else \
         (found uid {}, mode {:o}); fix it with `chown {uid} DIR && chmod 700 DIR`, or delete it",
        dir.display(),
        metadata.uid(),
        metadata.mode() & 0o7777
    );
    Ok(())
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
            // Two processes may race to create the key: the first link wins
            // (a rename would let a later key replace one already in use),
            // and every process uses what is on disk.
            write_new(path, &key, 0o600)?;
            let bytes =
                fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} changed while being created", path.display()))
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}
