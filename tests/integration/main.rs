//! Workspace-level integration tests, in one binary (one link instead of
//! one per file): real processes, real SQLite, real skills built by
//! `cargo xtask build-skills`; only the model is a scripted server on
//! loopback.
//!
//! - `hostile_skills`: a purpose-built hostile component against the sandbox
//! - `bundled_skills`: the shipped skills end to end
//! - `operator`: grants, audit, install, config, doctor, the home's lock
//! - `cli`: the command line's conventions
//! - `agent`: the agent loop against the scripted model
//! - `agent_skills`: folders in the Agent Skills format (`tests/agent-skills/`)
//! - `approvals`: `talaria approvals check` as operators use it
//! - `docker_backend`: native commands in a sandbox container of a real
//!   Docker engine (started by `cargo xtask test`)
//! - `ssh_backend`: native commands over the system `ssh` to a real `sshd`
//!   on loopback, started per test with fresh keys
//! - `architecture`: no module of the runtime depends the wrong way
//! - `hardening`: regressions from the outside security review
//! - `gateway`: `talaria gateway run` over real HTTP: the OpenAI-compatible
//!   API, its key, limits, errors, CORS, shutdown
//! - `dashboard`: the dashboard's page and `/api/`: sessions, CSRF, the
//!   `Host` check, the password, each page's work
//! - `first_run`: a new user's path: the README's commands run word for
//!   word, the installed layout, configuring a model
//! - `container`: the image on a real Docker engine: the entrypoint's root
//!   phase and `--user`, first boot, PID 1's signals and reaping, the
//!   compose file's hardening, an upgrade

mod agent;
mod agent_skills;
mod approvals;
mod architecture;
mod bundled_skills;
mod cli;
mod container;
mod dashboard;
mod docker_backend;
mod first_run;
mod gateway;
mod hardening;
mod helm_chart;
mod hostile_skills;
mod network;
mod operator;
mod ssh_backend;
mod support;

// The xtask's own code, included as it is: the tests install and build the
// image with it, on the binary they were built with.
#[path = "../../xtask/src/image.rs"]
#[allow(dead_code)]
mod image;
#[path = "../../xtask/src/install.rs"]
#[allow(dead_code)]
mod install;
