//! Write [Talaria](https://example.invalid/talaria) skills in Rust.
//!
//! A skill is a WebAssembly component exporting tools through the
//! `talaria:skill` WIT package. With this crate a tool is an ordinary function
//! taking a deserialisable argument struct and returning a serialisable value:
//!
//! ```no_run
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//! use talaria_sdk::{ToolError, Toolset};
//!
//! /// Arguments of `shout`.
//! #[derive(Deserialize, JsonSchema)]
//! struct ShoutArgs {
//!     /// The text to shout.
//!     text: String,
//! }
//!
//! fn shout(args: ShoutArgs) -> Result<String, ToolError> {
//!     Ok(args.text.to_uppercase())
//! }
//!
//! fn tools() -> Toolset {
//!     Toolset::new().tool("shout", "Upper-case a text.", shout)
//! }
//!
//! talaria_sdk::export_skill!(tools);
//! ```
//!
//! A skill crate is a `cdylib` depending on `talaria-sdk`, `serde` (with
//! `derive`) and `schemars` 1.x.
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! in `target/wasm32-wasip2/release/` is the component named in `skill.toml`.
//!
//! What the SDK does for you:
//! - derives each tool's JSON Schema from its argument type (doc comments
//!   become descriptions);
//! - turns arguments that do not fit the type into
//!   [`ToolError::InvalidArguments`] carrying serde's message;
//! - returns a result that serialises to a JSON string as plain text, and
//!   anything else as JSON;
//! - wraps the host's `log` and `exec` imports in [`host`];
//! - sends HTTP requests to the destinations the operator granted, with
//!   the secrets the host adds, through [`http`];
//! - offers helpers in [`bounds`] that keep arguments, lists and texts within
//!   limits and tell the model when something was cut.

pub mod bounds;
mod error;
pub mod host;
pub mod http;
mod toolset;
mod wit_version;

pub use bounds::{Capped, bounded_count, clip, clip_with_note};
pub use error::ToolError;
pub use toolset::Toolset;
pub use wit_version::WIT_PACKAGE_VERSION;

/// Bindings generated from the `talaria:skill` WIT package, the version in
/// [`WIT_PACKAGE_VERSION`]. Skill authors do not need them; they are public
/// for [`export_skill!`].
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "skill",
        path: "../wit/0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_skill_bindings",
        default_bindings_module: "talaria_sdk::bindings",
    });
}

/// Used by [`export_skill!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::exports::talaria::skill::tools::Guest;
    use crate::bindings::talaria::skill::types::{Tool, ToolError as WitToolError};

    pub fn list(toolset: &crate::Toolset) -> Vec<Tool> {
        toolset
            .descriptions()
            .map(|(name, description, parameters)| Tool {
                name: name.to_owned(),
                description: description.to_owned(),
                parameters,
            })
            .collect()
    }

    pub fn call(
        toolset: &crate::Toolset,
        name: &str,
        arguments: &str,
    ) -> Result<String, WitToolError> {
        toolset.call(name, arguments).map_err(|error| match error {
            crate::ToolError::InvalidArguments(message) => WitToolError::InvalidArguments(message),
            crate::ToolError::Failed(message) => WitToolError::Failed(message),
            crate::ToolError::Denied(message) => WitToolError::Denied(message),
        })
    }
}

/// Export a skill's tools to the host.
///
/// Takes the path of a function returning the skill's [`Toolset`]. Use it once
/// per skill crate, at the crate root.
#[macro_export]
macro_rules! export_skill {
    ($toolset:path) => {
        struct __TalariaSkill;

        impl $crate::__private::Guest for __TalariaSkill {
            fn list() -> ::std::vec::Vec<$crate::bindings::talaria::skill::types::Tool> {
                $crate::__private::list(&$toolset())
            }

            fn call(
                name: ::std::string::String,
                arguments: ::std::string::String,
            ) -> ::std::result::Result<
                ::std::string::String,
                $crate::bindings::talaria::skill::types::ToolError,
            > {
                $crate::__private::call(&$toolset(), &name, &arguments)
            }
        }

        $crate::bindings::__export_skill_bindings!(__TalariaSkill with_types_in $crate::bindings);
    };
}
