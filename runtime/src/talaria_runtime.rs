//! Talaria: an AI agent runtime whose skills run as sandboxed WebAssembly
//! components.
//!
//! - [`skill`] reads skill folders (`skill.toml`, `SKILL.md`, component).
//! - [`sandbox`] runs skill components under wasmtime with only what they
//!   were granted.
//! - [`cli`] is the `talaria` command line.

pub mod cli;
pub mod sandbox;
pub mod skill;
