//! Who may use the dashboard: the operator's password (a slow salted hash
//! in the home), the signed session cookie a login sets, the CSRF token
//! every state-changing request carries, and the bound on login attempts.
//!
//! - The password is hashed with Argon2id (OWASP's parameters: 19 MiB,
//!   2 passes) and stored as a PHC string in `dashboard.password` (0600),
//!   written atomically; the password itself is never stored or logged.
//! - A session is 128 random bits, known to this process only (a restart
//!   logs everyone out) and valid for [`SESSION_LIFETIME`]. The cookie holds
//!   the id and a keyed BLAKE3 MAC of it under a per-process key, so a
//!   cookie this process did not issue is refused before any lookup.
//! - The CSRF token is another MAC of the session id: it is handed to the
//!   page by `GET /api/session` (a same-origin read: no CORS here) and sent
//!   back in `X-CSRF-Token`, which a cross-site form cannot set.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};

use crate::home::Home;

/// The cookie that carries the session.
pub const COOKIE: &str = "talaria_session";
/// How long a session lasts after its login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at once; the oldest goes first beyond this.
const MAX_SESSIONS: usize = 256;
/// Login attempts allowed per client address within [`LOGIN_WINDOW`].
pub const LOGIN_ATTEMPTS: usize = 10;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Bounds of a password: long enough to resist guessing through the rate
/// limit, short enough that hashing it is not a way to burn CPU.
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The file that holds the password's hash.
pub fn password_file(home: &Home) -> PathBuf {
    home.root().join("dashboard.password")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password is too short: {chars} characters, at least {MIN_PASSWORD_CHARS} needed")]
    TooShort { chars: usize },
    #[error("the password is too long: at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("the password has control characters or a line break")]
    ControlCharacters,
}

/// Check a new password against the bounds.
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError::ControlCharacters);
    }
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort { chars });
    }
    Ok(())
}

/// The PHC string of `password` under a fresh random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| anyhow::anyhow!("cannot encode the salt: {e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC string (slow on purpose).
pub fn verify_password(stored: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Hash and store a new password, replacing any previous one.
pub fn set_password(home: &Home, password: &str) -> anyhow::Result<PathBuf> {
    check_new_password(password)?;
    let hash = hash_password(password)?;
    let path = password_file(home);
    crate::home::write_atomically(&path, format!("{hash}\n").as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Remove the password; returns whether there was one.
pub fn remove_password(home: &Home) -> anyhow::Result<bool> {
    let path = password_file(home);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// The stored hash, if a password is set. A file that is not a PHC string
/// is an error, not "no password": the dashboard must not open up because
/// its password file was damaged.
pub fn load_password_hash(path: &Path) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", path.display()));
        }
    };
    let hash = text.trim().to_owned();
    PasswordHash::new(&hash).map_err(|_| {
        anyhow::anyhow!(
            "{}: not a password hash; set the password again with `talaria gateway set-password`",
            path.display()
        )
    })?;
    Ok(Some(hash))
}

/// Which password a session was opened under: a fingerprint of the stored
/// hash, or none. A session opened under another password (or before one
/// was set) ends when the password changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordEpoch(Option<[u8; 32]>);

impl PasswordEpoch {
    pub fn of(stored_hash: Option<&str>) -> Self {
        Self(stored_hash.map(|hash| *blake3::hash(hash.as_bytes()).as_bytes()))
    }
}

struct LiveSession {
    expires: Instant,
    epoch: PasswordEpoch,
}

/// The sessions of this process.
pub struct Sessions {
    key: [u8; 32],
    live: Mutex<HashMap<String, LiveSession>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            key: rand::random(),
            live: Mutex::new(HashMap::new()),
        }
    }
}

impl Sessions {
    /// A new session under the password `epoch`; returns the cookie's
    /// value.
    pub fn create(&self, now: Instant, epoch: PasswordEpoch) -> String {
        let id = super::super::random_hex::<16>();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, session| session.expires > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(id, _)| id.clone())
        {
            live.remove(&oldest);
        }
        live.insert(
            id.clone(),
            LiveSession {
                expires: now + SESSION_LIFETIME,
                epoch,
            },
        );
        format!("{id}.{}", self.mac("session", &id))
    }

    /// The session id a cookie value stands for, if it is one of ours, still
    /// valid, and opened under the current password.
    pub fn check(&self, cookie: &str, now: Instant, epoch: &PasswordEpoch) -> Option<String> {
        let (id, mac) = cookie.split_once('.')?;
        if !constant_time_eq::constant_time_eq(mac.as_bytes(), self.mac("session", id).as_bytes()) {
            return None;
        }
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(id)
            .is_some_and(|session| session.expires > now && session.epoch == *epoch)
            .then(|| id.to_owned())
    }

    pub fn end(&self, id: &str) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.remove(id);
    }

    /// The CSRF token of a session.
    pub fn csrf_token(&self, id: &str) -> String {
        self.mac("csrf", id)
    }

    pub fn csrf_matches(&self, id: &str, token: &str) -> bool {
        constant_time_eq::constant_time_eq(token.as_bytes(), self.csrf_token(id).as_bytes())
    }

    fn mac(&self, purpose: &str, id: &str) -> String {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(purpose.as_bytes());
        hasher.update(b"\0");
        hasher.update(id.as_bytes());
        hasher.finalize().to_hex().to_string()
    }
}

/// At most [`LOGIN_ATTEMPTS`] login attempts per client in any
/// [`LOGIN_WINDOW`] (an IPv6 client is its /64: one host holds many
/// addresses), at most [`MAX_TRACKED_CLIENTS`] clients at once, and at most
/// [`CONCURRENT_VERIFICATIONS`] passwords hashed at a time (each takes 19 MiB
/// and tens of milliseconds).
pub struct LoginLimiter {
    attempts: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    verifying: std::sync::Arc<tokio::sync::Semaphore>,
}

const MAX_TRACKED_CLIENTS: usize = 4096;
pub const CONCURRENT_VERIFICATIONS: usize = 2;

impl Default for LoginLimiter {
    fn default() -> Self {
        Self {
            attempts: Mutex::new(HashMap::new()),
            verifying: std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT_VERIFICATIONS)),
        }
    }
}

/// The key a client's attempts are counted under.
fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl LoginLimiter {
    /// Count an attempt from `client`; `Err` holds how long until the next
    /// one is allowed.
    pub fn attempt(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let key = client_key(client);
        if !attempts.contains_key(&key) && attempts.len() >= MAX_TRACKED_CLIENTS {
            attempts.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|last| now.duration_since(*last) < LOGIN_WINDOW)
            });
            if attempts.len() >= MAX_TRACKED_CLIENTS {
                // Thousands of clients guessing at once: everyone waits.
                return Err(LOGIN_WINDOW);
            }
        }
        let times = attempts.entry(key).or_default();
        while times
            .front()
            .is_some_and(|first| now.duration_since(*first) >= LOGIN_WINDOW)
        {
            times.pop_front();
        }
        if times.len() >= LOGIN_ATTEMPTS {
            let first = times.front().copied().unwrap_or(now);
            return Err(LOGIN_WINDOW.saturating_sub(now.duration_since(first)));
        }
        times.push_back(now);
        Ok(())
    }

    /// A permit to hash a password, if fewer than
    /// [`CONCURRENT_VERIFICATIONS`] are running.
    pub fn verification(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        std::sync::Arc::clone(&self.verifying)
            .try_acquire_owned()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_bounds() {
        let cases: &[(&str, Result<(), PasswordError>)] = &[
            ("correct horse battery", Ok(())),
            ("short", Err(PasswordError::TooShort { chars: 5 })),
            // Characters, not bytes: twelve accented letters are enough.
            ("éééééééééééé", Ok(())),
            ("with a\nline break", Err(PasswordError::ControlCharacters)),
        ];
        for (password, expected) in cases {
            assert_eq!(&check_new_password(password), expected, "{password:?}");
        }
        assert_eq!(
            check_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(PasswordError::TooLong)
        );
    }

    #[test]
    fn hashes_are_salted_and_verify() {
        let first = hash_password("correct horse battery").unwrap();
        let second = hash_password("correct horse battery").unwrap();
        assert!(first.starts_with("$argon2id$"), "{first}");
        assert_ne!(first, second, "a fresh salt each time");
        assert!(verify_password(&first, "correct horse battery"));
        assert!(!verify_password(&first, "correct horse batterY"));
        assert!(!verify_password("not a hash", "correct horse battery"));
    }

    #[test]
    fn a_damaged_password_file_is_an_error_not_an_open_door() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        assert_eq!(load_password_hash(&password_file(&home)).unwrap(), None);
        std::fs::write(password_file(&home), "hunter2\n").unwrap();
        let error = load_password_hash(&password_file(&home)).unwrap_err();
        assert!(error.to_string().contains("not a password hash"), "{error}");
        set_password(&home, "correct horse battery").unwrap();
        let stored = load_password_hash(&password_file(&home)).unwrap().unwrap();
        assert!(verify_password(&stored, "correct horse battery"));
        let mode = std::fs::metadata(password_file(&home))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(remove_password(&home).unwrap());
        assert!(!remove_password(&home).unwrap());
    }

    #[test]
    fn cookies_are_signed_and_expire() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let none = PasswordEpoch::of(None);
        let cookie = sessions.create(now, none.clone());
        let id = sessions
            .check(&cookie, now, &none)
            .expect("a fresh cookie is valid");
        assert!(cookie.starts_with(&id));
        // Another process's key, a forged MAC, a bare id: refused.
        assert_eq!(Sessions::default().check(&cookie, now, &none), None);
        assert_eq!(
            sessions.check(&format!("{id}.{}", "0".repeat(64)), now, &none),
            None
        );
        assert_eq!(sessions.check(&id, now, &none), None);
        assert_eq!(sessions.check(&cookie, now + SESSION_LIFETIME, &none), None);
        sessions.end(&id);
        assert_eq!(sessions.check(&cookie, now, &none), None);
    }

    #[test]
    fn a_new_password_ends_the_sessions_opened_before_it() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let before = PasswordEpoch::of(None);
        let first = PasswordEpoch::of(Some("$argon2id$first"));
        let second = PasswordEpoch::of(Some("$argon2id$second"));
        let open = sessions.create(now, before.clone());
        let logged_in = sessions.create(now, first.clone());
        assert!(sessions.check(&open, now, &before).is_some());
        assert_eq!(sessions.check(&open, now, &first), None);
        assert!(sessions.check(&logged_in, now, &first).is_some());
        assert_eq!(sessions.check(&logged_in, now, &second), None);
        assert_eq!(sessions.check(&logged_in, now, &before), None);
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let none = PasswordEpoch::of(None);
        let a = sessions
            .check(&sessions.create(now, none.clone()), now, &none)
            .unwrap();
        let b = sessions
            .check(&sessions.create(now, none.clone()), now, &none)
            .unwrap();
        assert!(sessions.csrf_matches(&a, &sessions.csrf_token(&a)));
        assert!(!sessions.csrf_matches(&a, &sessions.csrf_token(&b)));
        assert!(!sessions.csrf_matches(&a, ""));
    }

    #[test]
    fn logins_are_limited_per_client_and_window() {
        let limiter = LoginLimiter::default();
        let now = Instant::now();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..LOGIN_ATTEMPTS {
            assert_eq!(limiter.attempt(client, now), Ok(()));
        }
        let wait = limiter.attempt(client, now + Duration::from_secs(20));
        assert_eq!(wait, Err(Duration::from_secs(40)));
        assert_eq!(limiter.attempt(other, now), Ok(()));
        assert_eq!(limiter.attempt(client, now + LOGIN_WINDOW), Ok(()));
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let limiter = LoginLimiter::default();
        let now = Instant::now();
        for host in 0..LOGIN_ATTEMPTS {
            let address: IpAddr = format!("2001:db8:1:2::{host:x}").parse().unwrap();
            assert_eq!(limiter.attempt(address, now), Ok(()));
        }
        let next: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(limiter.attempt(next, now).is_err());
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limiter.attempt(elsewhere, now), Ok(()));
    }

    #[test]
    fn password_hashing_runs_a_few_at_a_time() {
        let limiter = LoginLimiter::default();
        let permits: Vec<_> = (0..CONCURRENT_VERIFICATIONS)
            .map(|_| limiter.verification().expect("a free permit"))
            .collect();
        assert!(limiter.verification().is_none());
        drop(permits);
        assert!(limiter.verification().is_some());
    }
}
