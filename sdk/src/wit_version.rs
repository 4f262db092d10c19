// A file of its own so that the host's tests can compile it too and check it
// against the folders of `wit/` and the versions the host implements.

/// The version of the `talaria:skill` WIT package this SDK builds against:
/// its bindings are generated from `wit/<this version>/`.
pub const WIT_PACKAGE_VERSION: &str = "0.1.0";
