//! Host bindings of the `talaria:skill` WIT package, generated from `wit/0.1.0/`.
//!
//! One module per frozen version of the package: when a breaking version
//! appears, the previous one keeps its module here so old skills keep
//! loading.

wasmtime::component::bindgen!({
    world: "skill",
    path: "../wit/0.1.0",
    exports: { default: async },
});

/// The version of the `talaria:skill` package these bindings implement.
pub const WIT_PACKAGE: &str = "talaria:skill";
pub const WIT_VERSION: semver::Version = semver::Version::new(0, 1, 0);
