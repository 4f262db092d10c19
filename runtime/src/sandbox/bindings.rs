//! The host side of the `talaria:skill` WIT package: every version the host
//! implements, behind one façade.
//!
//! The package's text sits in `wit/<version>/`, one folder per version, and
//! each version has a module of its own here with its own `bindgen!`
//! (`v0_1` for `wit/0.1.0/`). The sandbox goes through the façade:
//! [`SkillPre`] and [`Skill`] hold the bindings of the version a component
//! was built for, picked from the names of its imports and exports
//! ([`version_of`]), and hand back the newest version's types, so that
//! components built for an older version keep loading when a new one is
//! added.
//!
//! Adding version 0.2:
//! 1. its WIT in `wit/0.2.0/` (the tests below check the folder's name
//!    against the package version written inside it);
//! 2. `bindings/v0_2.rs` with its `bindgen!` and `VERSION`, made `latest`
//!    here; `v0_1.rs` gains `From` conversions of its types into the new
//!    ones;
//! 3. `ApiVersion::V0_2`, and one arm in each `match` of this file;
//! 4. `GuestState` implements the new `host` imports;
//! 5. the SDK generates its bindings from `wit/0.2.0` and says so in
//!    `talaria_sdk::WIT_PACKAGE_VERSION`;
//! 6. the sandbox's checks that compare a component with the single
//!    [`WIT_VERSION`] (its version, its `tools` export, the manifest's `api`
//!    range) ask [`version_of`] instead.

pub mod v0_1;

use semver::Version;
use wasmtime::AsContextMut;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasData, InstancePre, Linker};

use v0_1 as latest;

/// The façade's types: the newest version's, older ones converted into them.
pub use latest::talaria::skill::types::{Tool, ToolError};

/// The name of the WIT package, without its version.
pub const WIT_PACKAGE: &str = "talaria:skill";

/// The newest version of the package the host implements: the one skills
/// are built against today.
pub const WIT_VERSION: Version = latest::VERSION;

/// A version of the package the host implements, each with its bindings
/// module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V0_1,
}

impl ApiVersion {
    /// Every version the host implements, oldest first.
    pub const ALL: [ApiVersion; 1] = [ApiVersion::V0_1];

    /// The version of the package its bindings were generated from.
    pub const fn version(self) -> Version {
        match self {
            ApiVersion::V0_1 => v0_1::VERSION,
        }
    }

    /// The version whose bindings serve a component built against `found`.
    fn serving(found: &Version) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|api| compatible(found, &api.version()))
    }
}

/// The component model's rule: bindings of `implemented` serve a component
/// built against `found` when both have the same major version (for 0.x,
/// the same minor) and `found` is not newer.
fn compatible(found: &Version, implemented: &Version) -> bool {
    if implemented.major != 0 {
        found.major == implemented.major && found.minor <= implemented.minor
    } else {
        found.major == 0 && found.minor == implemented.minor && found.patch <= implemented.patch
    }
}

/// The version of the package `component` was built against, read from the
/// instances it imports and exports (`talaria:skill/tools@0.1.0`, ...). The
/// error names the component's version and the host's.
pub fn version_of(component: &Component) -> Result<ApiVersion, String> {
    let engine = component.engine();
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .chain(ty.exports(engine))
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name);
    version_from_names(names)
}

/// [`version_of`] over the names of a component's instances: every name in
/// the package carries a version the host implements, the same one.
fn version_from_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<ApiVersion, String> {
    let prefix = format!("{WIT_PACKAGE}/");
    let mut picked: Option<(ApiVersion, &str)> = None;
    for name in names {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Some((_, version)) = rest.split_once('@') else {
            return Err(format!(
                "component uses {name} without a version; this host implements {}",
                implemented()
            ));
        };
        let api = Version::parse(version)
            .ok()
            .and_then(|found| ApiVersion::serving(&found))
            .ok_or_else(|| {
                format!(
                    "component was built against {WIT_PACKAGE}@{version} but this host implements {}; \
                     rebuild the skill with a talaria-sdk for {WIT_VERSION}",
                    implemented()
                )
            })?;
        match picked {
            Some((first, first_version)) if first != api => {
                return Err(format!(
                    "component mixes {WIT_PACKAGE}@{first_version} and {WIT_PACKAGE}@{version}; \
                     rebuild the skill with a talaria-sdk for {WIT_VERSION}"
                ));
            }
            Some(_) => {}
            None => picked = Some((api, version)),
        }
    }
    picked.map(|(api, _)| api).ok_or_else(|| {
        format!(
            "component neither imports nor exports an interface of {WIT_PACKAGE}; \
             this host implements {}",
            implemented()
        )
    })
}

/// `talaria:skill@0.1.0` (`… and talaria:skill@0.2.0` for more versions).
/// The versions this host implements, for messages: `talaria:skill@0.1.0`.
pub fn implemented() -> String {
    ApiVersion::ALL
        .map(|api| format!("{WIT_PACKAGE}@{}", api.version()))
        .join(" and ")
}

/// A component linked against the bindings of its version, ready to
/// instantiate.
pub enum SkillPre<T: 'static> {
    V0_1(v0_1::SkillPre<T>),
}

impl<T: Send + 'static> SkillPre<T> {
    /// Pick the bindings of the version `instance_pre`'s component was built
    /// for and check that it exports their `tools`.
    pub fn new(instance_pre: InstancePre<T>) -> wasmtime::Result<Self> {
        let api = version_of(instance_pre.component()).map_err(wasmtime::Error::msg)?;
        Ok(match api {
            ApiVersion::V0_1 => Self::V0_1(v0_1::SkillPre::new(instance_pre)?),
        })
    }

    pub fn instance_pre(&self) -> &InstancePre<T> {
        match self {
            Self::V0_1(pre) => pre.instance_pre(),
        }
    }

    pub async fn instantiate_async(
        &self,
        store: impl AsContextMut<Data = T>,
    ) -> wasmtime::Result<Skill> {
        Ok(match self {
            Self::V0_1(pre) => Skill::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

/// An instance of a component, through the bindings of its version.
pub enum Skill {
    V0_1(v0_1::Skill),
}

impl Skill {
    /// Add the host's imports of every version to `linker`; `D::Data`
    /// implements each version's `host`.
    pub fn add_to_linker<T, D>(
        linker: &mut Linker<T>,
        host_getter: fn(&mut T) -> D::Data<'_>,
    ) -> wasmtime::Result<()>
    where
        // `Send`: `exec` is an async import, its future holds the data.
        D: HasData + Send,
        for<'a> D::Data<'a>:
            v0_1::talaria::skill::host::Host + v0_1::talaria::skill::types::Host + Send,
        T: Send + 'static,
    {
        v0_1::Skill::add_to_linker::<T, D>(linker, host_getter)
    }

    /// The component's `tools`, reached as with the generated bindings
    /// (`skill.talaria_skill_tools().call_list(…)`) whatever its version.
    pub fn talaria_skill_tools(&self) -> Tools<'_> {
        Tools(self)
    }
}

/// The `tools` export of a [`Skill`].
pub struct Tools<'a>(&'a Skill);

impl Tools<'_> {
    pub async fn call_list<S: AsContextMut>(&self, store: S) -> wasmtime::Result<Vec<Tool>>
    where
        S::Data: Send,
    {
        match self.0 {
            Skill::V0_1(skill) => skill.talaria_skill_tools().call_list(store).await,
        }
    }

    pub async fn call_call<S: AsContextMut>(
        &self,
        store: S,
        name: &str,
        arguments: &str,
    ) -> wasmtime::Result<Result<String, ToolError>>
    where
        S::Data: Send,
    {
        match self.0 {
            Skill::V0_1(skill) => {
                skill
                    .talaria_skill_tools()
                    .call_call(store, name, arguments)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The SDK's constant, compiled from the SDK's own source.
    mod sdk {
        include!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../sdk/src/wit_version.rs"
        ));
    }

    /// What the `package` declarations of the `.wit` files in `dir` name.
    fn declared_packages(dir: &Path) -> Vec<String> {
        let mut declared = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|ext| ext != "wit") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                if let Some(package) = line.trim().strip_prefix("package ") {
                    declared.push(package.trim_end_matches(';').trim().to_owned());
                }
            }
        }
        declared.dedup();
        declared
    }

    #[test]
    fn the_wit_folders_the_host_and_the_sdk_agree_on_the_versions() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut folders = Vec::new();
        for entry in std::fs::read_dir(root.join("wit")).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            assert!(
                entry.file_type().unwrap().is_dir(),
                "wit/{name}: wit/ holds one folder per version of the package, nothing else"
            );
            let version = Version::parse(&name).unwrap_or_else(|e| {
                panic!("wit/{name}: a folder is named by the version of the package it holds: {e}")
            });
            assert_eq!(
                declared_packages(&entry.path()),
                [format!("{WIT_PACKAGE}@{name}")],
                "wit/{name}: the package written inside must be {WIT_PACKAGE}@{name}"
            );
            folders.push(version);
        }
        folders.sort();

        let implemented: Vec<Version> = ApiVersion::ALL.map(ApiVersion::version).to_vec();
        assert_eq!(
            folders.iter().map(Version::to_string).collect::<Vec<_>>(),
            implemented
                .iter()
                .map(Version::to_string)
                .collect::<Vec<_>>(),
            "each folder of wit/ has its bindings module on the host (ApiVersion::ALL, oldest first) \
             and each bindings module its folder"
        );
        let newest = folders.last().expect("wit/ holds at least one version");
        assert_eq!(
            WIT_VERSION.to_string(),
            newest.to_string(),
            "WIT_VERSION is the newest version in wit/"
        );

        assert_eq!(
            sdk::WIT_PACKAGE_VERSION,
            newest.to_string(),
            "talaria_sdk::WIT_PACKAGE_VERSION is the newest version in wit/"
        );
        let sdk = std::fs::read_to_string(root.join("sdk/src/lib.rs")).unwrap();
        assert!(
            sdk.contains(&format!("path: \"../wit/{newest}\"")),
            "the SDK generates its bindings from wit/{newest}"
        );
    }

    #[test]
    fn a_component_is_served_by_the_bindings_of_its_version() {
        let v0_1 = [
            "wasi:cli/environment@0.2.6",
            "talaria:skill/types@0.1.0",
            "talaria:skill/host@0.1.0",
            "talaria:skill/tools@0.1.0",
        ];
        assert_eq!(version_from_names(v0_1.into_iter()), Ok(ApiVersion::V0_1));

        let refused = [
            (
                vec!["talaria:skill/tools@0.2.0"],
                "component was built against talaria:skill@0.2.0 but this host implements \
                 talaria:skill@0.1.0; rebuild the skill with a talaria-sdk for 0.1.0",
            ),
            (
                vec!["talaria:skill/tools@0.1.1"],
                "component was built against talaria:skill@0.1.1 but this host implements \
                 talaria:skill@0.1.0; rebuild the skill with a talaria-sdk for 0.1.0",
            ),
            (
                vec!["talaria:skill/tools"],
                "component uses talaria:skill/tools without a version; this host implements \
                 talaria:skill@0.1.0",
            ),
            (
                vec!["wasi:cli/environment@0.2.6"],
                "component neither imports nor exports an interface of talaria:skill; \
                 this host implements talaria:skill@0.1.0",
            ),
        ];
        for (names, message) in refused {
            assert_eq!(
                version_from_names(names.iter().copied()),
                Err(message.to_owned()),
                "{names:?}"
            );
        }
    }

    #[test]
    fn versions_follow_the_component_model_rule() {
        let cases = [
            ("0.1.0", "0.1.0", true),
            ("0.1.0", "0.1.2", true),
            ("0.1.1", "0.1.0", false),
            ("0.2.0", "0.1.0", false),
            ("0.0.9", "0.1.0", false),
            ("1.0.0", "0.1.0", false),
            ("1.2.0", "1.3.0", true),
            ("1.3.0", "1.2.0", false),
            ("2.0.0", "1.3.0", false),
        ];
        for (found, implemented, served) in cases {
            let (found, implemented) = (
                Version::parse(found).unwrap(),
                Version::parse(implemented).unwrap(),
            );
            assert_eq!(
                compatible(&found, &implemented),
                served,
                "{found} by {implemented}"
            );
        }
    }
}
