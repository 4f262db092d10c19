//! Finding secrets in text before it leaves Talaria's hands: a tool result
//! on its way to the model (and into `state.db`), an error a tool returns.
//!
//! Two kinds of hit, each replaced by `[REDACTED:NAME]`:
//!
//! - the value of a secret the operator configured (the model's API key,
//!   the gateway's key, every value of the home's `.env`, the variables
//!   skills and backends are given), also in its base64 and URL-encoded
//!   forms: one Aho-Corasick automaton over all of them, leftmost-longest;
//! - a well-known credential shape (API-key prefixes, private-key blocks,
//!   JWTs): one regex of all the shapes, each hit then named by the shape
//!   it matches (hits are rare, so naming them costs nothing).
//!
//! Both passes are linear in the text; `cargo bench --bench leak_scan`
//! measures them on a 1 MiB tool result (see BENCHMARKS.md). Values shorter
//! than [`MIN_SECRET_CHARS`] are not scanned for: `true` or a port number
//! in `.env` would redact half of every result.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use regex::Regex;

/// Shorter values are not secrets worth a redaction (and would match
/// everywhere).
pub const MIN_SECRET_CHARS: usize = 8;

/// Credential shapes found whatever the configuration: `(name, pattern)`.
const SHAPES: &[(&str, &str)] = &[
    // The block runs to its END line (an encrypted PEM's headers
    // included), or to the end of the text when it has none.
    (
        "private-key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----|.*)",
    ),
    ("openai-key", r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{32,}"),
    ("github-token", r"\bgh[pousr]_[A-Za-z0-9]{36,}"),
    ("github-token", r"\bgithub_pat_[A-Za-z0-9_]{22,}"),
    ("gitlab-token", r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    ("aws-access-key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("slack-token", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),
    ("google-api-key", r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("stripe-key", r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,}"),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    ),
];

/// The secrets and shapes of one data home.
pub struct LeakScanner {
    /// The configured values and their encodings; `None` with none.
    values: Option<AhoCorasick>,
    /// The name of each pattern of `values`, by pattern index.
    value_names: Vec<Arc<str>>,
    shapes: &'static Shapes,
}

/// The credential shapes, compiled once per process (a scanner is made
/// for every conversation).
struct Shapes {
    /// All the shapes at once.
    any: Regex,
    /// Each shape alone, anchored, to name a hit.
    each: Vec<(&'static str, Regex)>,
}

fn shapes() -> &'static Shapes {
    static SHAPES_COMPILED: OnceLock<Shapes> = OnceLock::new();
    SHAPES_COMPILED.get_or_init(|| {
        let joined = SHAPES
            .iter()
            .map(|(_, pattern)| format!("(?:{pattern})"))
            .collect::<Vec<_>>()
            .join("|");
        Shapes {
            any: Regex::new(&joined).expect("the credential shapes are valid regexes"),
            each: SHAPES
                .iter()
                .map(|(name, pattern)| {
                    (
                        *name,
                        Regex::new(&format!("^(?:{pattern})$"))
                            .expect("each credential shape is a valid regex"),
                    )
                })
                .collect(),
        }
    })
}

/// What a scan found: the name of each secret or shape, once each, in the
/// order first found.
pub type Found = Vec<Arc<str>>;

impl LeakScanner {
    /// A scanner for `secrets` (name, value) and the credential shapes.
    pub fn new<N: AsRef<str>, V: AsRef<str>>(secrets: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        let mut value_names = Vec::new();
        for (name, value) in secrets {
            let value = value.as_ref();
            if value.chars().count() < MIN_SECRET_CHARS {
                continue;
            }
            let name: Arc<str> = Arc::from(name.as_ref());
            for form in encodings(value) {
                if !patterns.contains(&form) {
                    patterns.push(form);
                    value_names.push(Arc::clone(&name));
                }
            }
        }
        let values = if patterns.is_empty() {
            None
        } else {
            match AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
            {
                Ok(automaton) => Some(automaton),
                // Only past billions of states; the shapes still hold.
                Err(error) => {
                    tracing::warn!("the configured secrets are not scanned for: {error}");
                    None
                }
            }
        };
        Self {
            values,
            value_names,
            shapes: shapes(),
        }
    }

    /// How many configured values (with their encodings) are scanned for.
    pub fn value_count(&self) -> usize {
        self.value_names.len()
    }

    /// `text` with every secret and credential shape replaced by
    /// `[REDACTED:NAME]`, and the names found; borrowed when nothing was.
    pub fn redact<'a>(&self, text: &'a str) -> (Cow<'a, str>, Found) {
        let mut hits: Vec<(usize, usize, Arc<str>)> = Vec::new();
        if let Some(values) = &self.values {
            for hit in values.find_iter(text) {
                let name = Arc::clone(&self.value_names[hit.pattern().as_usize()]);
                hits.push((hit.start(), hit.end(), name));
            }
        }
        for (start, end, name) in self.shape_hits(text) {
            hits.push((start, end, Arc::from(name)));
        }
        if hits.is_empty() {
            return (Cow::Borrowed(text), Vec::new());
        }
        // A configured secret of a known shape is found twice: one span
        // covers both, named by what was found first.
        hits.sort_by_key(|(start, end, _)| (*start, std::cmp::Reverse(*end)));
        let mut out = String::with_capacity(text.len());
        let mut found: Found = Vec::new();
        let mut copied = 0;
        let mut index = 0;
        while index < hits.len() {
            let (start, mut end, name) = hits[index].clone();
            index += 1;
            while index < hits.len() && hits[index].0 < end {
                end = end.max(hits[index].1);
                index += 1;
            }
            out.push_str(&text[copied..start]);
            out.push_str("[REDACTED:");
            out.push_str(&name);
            out.push(']');
            copied = end;
            if !found.contains(&name) {
                found.push(name);
            }
        }
        out.push_str(&text[copied..]);
        (Cow::Owned(out), found)
    }
}

impl LeakScanner {
    /// The names of the secrets and credential shapes in `bytes` (an
    /// outgoing request's URL, a header, a body), without copying them.
    pub fn find(&self, bytes: &[u8]) -> Found {
        let mut found: Found = Vec::new();
        let mut note = |name: Arc<str>| {
            if !found.contains(&name) {
                found.push(name);
            }
        };
        if let Some(values) = &self.values {
            for hit in values.find_iter(bytes) {
                note(Arc::clone(&self.value_names[hit.pattern().as_usize()]));
            }
        }
        let text = String::from_utf8_lossy(bytes);
        for (_, _, name) in self.shape_hits(&text) {
            note(Arc::from(name));
        }
        found
    }

    /// Each credential shape in `text`: where, and which.
    fn shape_hits<'t>(
        &self,
        text: &'t str,
    ) -> impl Iterator<Item = (usize, usize, &'static str)> + 't {
        let shapes = self.shapes;
        shapes.any.find_iter(text).filter_map(move |hit| {
            let name = shapes
                .each
                .iter()
                .find(|(_, shape)| shape.is_match(hit.as_str()))
                .map_or("credential", |(name, _)| name);
            // `sk-` starts kebab-case words too; a key holds a digit.
            let token_like =
                name != "openai-key" || hit.as_str().bytes().any(|b| b.is_ascii_digit());
            token_like.then_some((hit.start(), hit.end(), name))
        })
    }

    /// `bytes` with every configured secret value (and its encodings)
    /// replaced by `[REDACTED:NAME]`, when it held any: for what a server
    /// sends back to a skill, where credential shapes are the server's own
    /// business. Values of the names `kept` says yes to are left as they are.
    pub fn redact_values(
        &self,
        bytes: &[u8],
        kept: &dyn Fn(&str) -> bool,
    ) -> Option<(Vec<u8>, Found)> {
        let values = self.values.as_ref()?;
        let mut out = Vec::new();
        let mut found: Found = Vec::new();
        let mut copied = 0;
        for hit in values.find_iter(bytes) {
            let name = &self.value_names[hit.pattern().as_usize()];
            if kept(name) {
                continue;
            }
            out.extend_from_slice(&bytes[copied..hit.start()]);
            out.extend_from_slice(b"[REDACTED:");
            out.extend_from_slice(name.as_bytes());
            out.push(b']');
            copied = hit.end();
            if !found.contains(name) {
                found.push(Arc::clone(name));
            }
        }
        if found.is_empty() {
            return None;
        }
        out.extend_from_slice(&bytes[copied..]);
        Some((out, found))
    }
}

impl Default for LeakScanner {
    /// The credential shapes only.
    fn default() -> Self {
        Self::new(std::iter::empty::<(&str, &str)>())
    }
}

/// `value` as it may appear in text: as is, percent-encoded, and base64
/// (standard and URL-safe) at each of the three byte offsets it may start
/// at inside a longer encoded text (`user:pass`, `KEY=value`): of each,
/// the characters that depend on the value's bytes alone.
fn encodings(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned()];
    // As a JSON string may write it.
    if value.contains('/') {
        forms.push(value.replace('/', "\\/"));
    }
    let encoded: String = percent_encoding::utf8_percent_encode(value, URL_COMPONENT).collect();
    forms.push(encoded);
    let engines = [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bits = value.len() * 8;
    for engine in engines {
        for offset in 0..3usize {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(value.as_bytes());
            let text = engine.encode(&bytes);
            // Characters wholly inside the value's bits.
            let first = (offset * 8).div_ceil(6);
            let last = (offset * 8 + bits) / 6;
            if let Some(stable) = text.get(first..last)
                && stable.len() >= MIN_SECRET_CHARS
            {
                forms.push(stable.to_owned());
            }
        }
    }
    let mut unique = Vec::new();
    for form in forms {
        if !unique.contains(&form) {
            unique.push(form);
        }
    }
    unique
}

/// What `encodeURIComponent` leaves alone stays; everything else is
/// encoded.
const URL_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_bytes_are_searched_and_responses_redacted_of_values_only() {
        let scanner = LeakScanner::new([("API_TOKEN", "tok-0123456789abcdef")]);
        assert_eq!(
            scanner.find(b"GET /x?t=tok-0123456789abcdef"),
            [Arc::from("API_TOKEN")]
        );
        assert_eq!(
            scanner.find(b"Authorization: Basic dG9rLTAxMjM0NTY3ODlhYmNkZWY="),
            [Arc::from("API_TOKEN")],
            "the base64 form"
        );
        assert_eq!(
            scanner.find(b"ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"),
            [Arc::from("github-token")]
        );
        assert!(scanner.find(b"nothing here").is_empty());

        let (redacted, found) = scanner
            .redact_values(
                b"echo: Bearer tok-0123456789abcdef, ghp_0123456789abcdefghijklmnopqrstuvwxyzAB",
                &|_| false,
            )
            .unwrap();
        assert_eq!(found, [Arc::from("API_TOKEN")]);
        assert_eq!(
            String::from_utf8(redacted).unwrap(),
            "echo: Bearer [REDACTED:API_TOKEN], ghp_0123456789abcdefghijklmnopqrstuvwxyzAB",
            "a server's own credential shapes are its business"
        );
        assert!(scanner.redact_values(b"clean", &|_| false).is_none());
        assert!(
            scanner
                .redact_values(b"tok-0123456789abcdef", &|name| name == "API_TOKEN")
                .is_none(),
            "kept"
        );
        assert!(
            LeakScanner::default()
                .redact_values(b"tok-0123456789abcdef", &|_| false)
                .is_none()
        );
    }

    fn scanner() -> LeakScanner {
        LeakScanner::new([
            ("GITHUB_TOKEN", "tok-very-secret/value+1"),
            ("SHORT", "true"),
            ("DEPLOY_KEY", "deploy-key-7Hq2"),
        ])
    }

    #[test]
    fn configured_values_are_redacted_in_every_encoding() {
        let scanner = scanner();
        let base64 = base64::engine::general_purpose::STANDARD.encode("tok-very-secret/value+1");
        let cases = [
            (
                "token tok-very-secret/value+1 here".to_owned(),
                "token [REDACTED:GITHUB_TOKEN] here",
            ),
            (format!("b64 {base64}"), "b64 [REDACTED:GITHUB_TOKEN]E="),
            (
                "url ?t=tok-very-secret%2Fvalue%2B1&x".to_owned(),
                "url ?t=[REDACTED:GITHUB_TOKEN]&x",
            ),
            (
                "deploy-key-7Hq2deploy-key-7Hq2".to_owned(),
                "[REDACTED:DEPLOY_KEY][REDACTED:DEPLOY_KEY]",
            ),
            ("true is not a secret".to_owned(), "true is not a secret"),
        ];
        // Inside a longer encoded text, at any offset (Basic auth, a
        // base64 of the whole `.env`).
        for prefix in ["u:", "ab:", "abc:"] {
            let text = format!(
                "Authorization: Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{prefix}tok-very-secret/value+1\nNEXT=1"))
            );
            let (redacted, found) = scanner.redact(&text);
            assert_eq!(found.len(), 1, "{prefix}: {redacted}");
        }
        for (text, expected) in cases {
            assert_eq!(scanner.redact(&text).0, expected, "{text}");
        }
        let (_, found) = scanner.redact("tok-very-secret/value+1 and deploy-key-7Hq2");
        let names: Vec<&str> = found.iter().map(|n| &**n).collect();
        assert_eq!(names, ["GITHUB_TOKEN", "DEPLOY_KEY"]);
        assert!(matches!(scanner.redact("nothing here").0, Cow::Borrowed(_)));
    }

    #[test]
    fn credential_shapes_are_redacted_without_configuration() {
        let scanner = LeakScanner::default();
        let github = format!("ghp_{}", "a1B2".repeat(9));
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAA==\n-----END OPENSSH PRIVATE KEY-----";
        let cases = [
            (
                format!("use {github} now"),
                "use [REDACTED:github-token] now",
            ),
            (format!("Bearer {jwt}."), "Bearer [REDACTED:jwt]."),
            (
                format!("key:\n{key}\nend"),
                "key:\n[REDACTED:private-key]\nend",
            ),
            (
                "AKIAABCDEFGHIJKLMNOP is aws".to_owned(),
                "[REDACTED:aws-access-key] is aws",
            ),
            (
                format!("k=sk-proj-{}", "x7Kq".repeat(9)),
                "k=[REDACTED:openai-key]",
            ),
            (
                "sk-learn and ghp_short stay".to_owned(),
                "sk-learn and ghp_short stay",
            ),
            (
                "see sk-hynix-memory-module-datasheet-revision-b".to_owned(),
                "see sk-hynix-memory-module-datasheet-revision-b",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES\n\nMIIE\n-----END RSA PRIVATE KEY-----".to_owned(),
                "[REDACTED:private-key]",
            ),
            (
                "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQdGBF\n=ab12\n-----END PGP PRIVATE KEY BLOCK-----".to_owned(),
                "[REDACTED:private-key]",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(scanner.redact(&text).0, expected, "{text}");
        }
    }

    #[test]
    fn a_configured_secret_of_a_known_shape_is_one_redaction() {
        let token = format!("ghp_{}", "Z9y8".repeat(9));
        let scanner = LeakScanner::new([("GITHUB_TOKEN", token.as_str())]);
        let bracketed = format!("[{token}]");
        let (text, found) = scanner.redact(&bracketed);
        assert_eq!(text, "[[REDACTED:GITHUB_TOKEN]]");
        assert_eq!(found.len(), 1);
    }
}
