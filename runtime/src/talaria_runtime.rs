//! Talaria: an AI agent runtime whose skills run as sandboxed WebAssembly
//! components.
//!
//! - [`skill`] reads skill folders (`skill.toml`, `SKILL.md`, component).
//! - [`sandbox`] runs skill components under wasmtime with only what they
//!   were granted.
//! - [`home`] is the data home: layout, bootstrap, the single-writer lock.
//! - [`config`] resolves `config.toml`, `TALARIA_*` variables and flags.
//! - [`agent`] is the loop: model client, tools, prompt.
//! - [`memory`] keeps the agent's bounded notes.
//! - [`doctor`] checks a data home and explains how to fix it.
//! - [`cli`] is the `talaria` command line.

pub mod agent;
pub mod app;
pub mod approval;
pub mod backend;
pub mod cli;
pub mod clock;
pub mod config;
pub mod container;
pub mod doctor;
pub mod gateway;
pub mod home;
pub mod leak_scan;
pub mod log_buffer;
pub mod memory;
pub mod sandbox;
pub mod skill;
mod toml_file;
pub mod untrusted_file;
pub mod untrusted_text;
