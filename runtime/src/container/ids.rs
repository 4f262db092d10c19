//! Which user the service runs as in the container.
//!
//! `TALARIA_UID`/`TALARIA_GID` win; `PUID`/`PGID` are accepted because many
//! operators already set them for other images. Without either, the image's
//! `talaria` user (10000:10000). A group given without a user, or a user
//! without a group, pairs with the image's default for the other half,
//! except that a user alone also becomes its own group: the convention of one
//! private group per user, so the files it creates are not group-owned by a
//! stranger.

/// The image's `talaria` user and group (also the Helm chart's `runAsUser`).
pub const DEFAULT_ID: u32 = 10000;

/// The highest id accepted: `(uid_t) -1` means "no change" to the id
/// calls. Directory users (LDAP, SSSD) have ids far above 65535.
const MAX_ID: u32 = u32::MAX - 1;

/// The user and group the service runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceIds {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error(
        "{variable}={value:?} is not a usable id: give digits only, from 1 to {MAX_ID} (0 is root, which \
         the service never runs as)"
    )]
    Invalid {
        variable: &'static str,
        value: String,
    },
}

impl ServiceIds {
    /// The ids the environment asks for; `lookup` reads one variable (an
    /// empty value counts as unset, as compose files often leave them).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, IdError> {
        let uid = first_id(&lookup, &["TALARIA_UID", "PUID"])?;
        let gid = first_id(&lookup, &["TALARIA_GID", "PGID"])?;
        Ok(Self {
            uid: uid.unwrap_or(DEFAULT_ID),
            gid: gid.or(uid).unwrap_or(DEFAULT_ID),
        })
    }
}

fn first_id(
    lookup: &impl Fn(&str) -> Option<String>,
    variables: &[&'static str],
) -> Result<Option<u32>, IdError> {
    for &variable in variables {
        let Some(value) = lookup(variable).filter(|value| !value.is_empty()) else {
            continue;
        };
        let invalid = || IdError::Invalid {
            variable,
            value: value.clone(),
        };
        if !value.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid());
        }
        let id: u32 = value.parse().map_err(|_| invalid())?;
        if id == 0 || id > MAX_ID {
            return Err(invalid());
        }
        return Ok(Some(id));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pairs: &[(&str, &str)]) -> Result<ServiceIds, IdError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ServiceIds::from_env(|name| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    }

    #[test]
    fn which_variables_win() {
        type Env<'a> = &'a [(&'a str, &'a str)];
        let table: &[(Env, (u32, u32))] = &[
            (&[], (10000, 10000)),
            (
                &[("TALARIA_UID", "1234"), ("TALARIA_GID", "2345")],
                (1234, 2345),
            ),
            (&[("PUID", "1000"), ("PGID", "100")], (1000, 100)),
            (
                &[("TALARIA_UID", "1234"), ("PUID", "1000"), ("PGID", "100")],
                (1234, 100),
            ),
            (&[("TALARIA_UID", "1234")], (1234, 1234)),
            (&[("TALARIA_GID", "2345")], (10000, 2345)),
            (&[("TALARIA_UID", ""), ("PUID", "1000")], (1000, 1000)),
            (&[("TALARIA_UID", "65533")], (65533, 65533)),
            (&[("PUID", "1234567890")], (1234567890, 1234567890)),
        ];
        for (env, (uid, gid)) in table {
            assert_eq!(
                ids(env),
                Ok(ServiceIds {
                    uid: *uid,
                    gid: *gid
                }),
                "{env:?}"
            );
        }
    }

    #[test]
    fn unusable_ids_are_refused_naming_the_variable() {
        for (variable, value) in [
            ("TALARIA_UID", "0"),
            ("TALARIA_UID", "abc"),
            ("TALARIA_UID", "-1"),
            ("TALARIA_UID", "+5"),
            ("TALARIA_UID", " 5"),
            ("PUID", "4294967295"),
            ("PGID", "0"),
            ("TALARIA_GID", "99999999999"),
        ] {
            let error = ids(&[(variable, value)]).expect_err(value);
            assert_eq!(
                error,
                IdError::Invalid {
                    variable: match variable {
                        "TALARIA_UID" => "TALARIA_UID",
                        "TALARIA_GID" => "TALARIA_GID",
                        "PUID" => "PUID",
                        _ => "PGID",
                    },
                    value: value.to_owned()
                }
            );
            assert!(error.to_string().starts_with(&format!("{variable}=")));
        }
    }
}
