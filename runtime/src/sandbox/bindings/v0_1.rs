//! Host bindings of `talaria:skill@0.1.0`, generated from `wit/0.1.0/`.
//!
//! Serves every component built against a 0.1.x version up to [`VERSION`]
//! (the component model's compatibility rule). `GuestState` implements its
//! `host` and `types` imports. The sandbox reaches these bindings through
//! the façade in `bindings.rs`; this module is the newest version, so its
//! types are the façade's and need no conversion.

wasmtime::component::bindgen!({
    world: "skill",
    path: "../wit/0.1.0",
    exports: { default: async },
    // `exec` waits for a backend (a container, another host): the guest's
    // task yields meanwhile instead of blocking a worker thread.
    imports: { "talaria:skill/host.exec": async },
});

/// The version of the package in `wit/0.1.0/`, which these bindings
/// implement.
pub const VERSION: semver::Version = semver::Version::new(0, 1, 0);
