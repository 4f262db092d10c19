//! Where a component may send HTTP requests: rules of the form
//! `scheme://host[:port][/path]`, optionally narrowed to some methods, and
//! the secrets the host adds to requests for some hosts.
//!
//! A request must match a rule of the manifest AND a rule of the grant
//! ([`NetworkAccess::allows`]): the manifest says what the skill may ever
//! reach, the grant what the operator chose of it, and neither pattern has
//! to be intersected with the other to get that right.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

/// One rule: a scheme, a host pattern, a port, a path pattern, methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkRule {
    /// The rule as written, for messages and the audit.
    #[serde(rename = "url")]
    pub text: String,
    #[serde(skip)]
    pub scheme: Scheme,
    #[serde(skip)]
    pub host: HostPattern,
    /// `None`: any port (`:*`).
    #[serde(skip)]
    pub port: Option<u16>,
    /// `/**` when the rule names no path.
    #[serde(skip)]
    pub path: String,
    /// Upper-case methods; empty: any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Which hosts a rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// One host name, lower case, or an IP address literal.
    Exact(String),
    /// `*.example.org`: any name ending in `.example.org` (not the name
    /// itself). Holds `example.org`.
    Suffix(String),
    /// `*`: any host at all; only with the operator's explicit grant.
    Any,
}

impl HostPattern {
    /// Parse `api.github.com`, `*.wikipedia.org`, `*`, `127.0.0.1` or
    /// `[::1]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::Any);
        }
        if let Some(suffix) = text.strip_prefix("*.") {
            // `*.0.1` would name addresses, not host names.
            let numeric = suffix
                .split('.')
                .all(|label| label.bytes().all(|b| b.is_ascii_digit()));
            return if is_host_name(suffix) && !numeric {
                Ok(Self::Suffix(suffix.to_ascii_lowercase()))
            } else {
                Err(format!(
                    "{text:?} is not a host pattern: after `*.` comes a host name like `example.org`"
                ))
            };
        }
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return inner
                .parse::<std::net::Ipv6Addr>()
                .map(|ip| Self::Exact(ip.to_string()))
                .map_err(|_| format!("{text:?} is not an IPv6 address"));
        }
        if text.contains('*') {
            return Err(format!(
                "{text:?}: a star may only stand alone (`*`) or begin the host (`*.example.org`)"
            ));
        }
        if let Ok(ip) = text.parse::<std::net::Ipv4Addr>() {
            return Ok(Self::Exact(ip.to_string()));
        }
        if is_host_name(text) {
            Ok(Self::Exact(text.to_ascii_lowercase()))
        } else {
            Err(format!(
                "{text:?} is not a host name (letters, digits, `-` and `.`)"
            ))
        }
    }

    /// Whether `host` (lower case, as [`RequestTarget`] holds it) is one of
    /// these hosts.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(name) => name == host,
            Self::Suffix(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }

    /// Whether every host `other` names is one of these.
    pub fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (Self::Any, _) => true,
            (_, Self::Any) => false,
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(_), Self::Suffix(_)) => false,
            (Self::Suffix(_), Self::Exact(b)) => self.matches(b),
            (Self::Suffix(a), Self::Suffix(b)) => {
                a == b || b.strip_suffix(a.as_str()).is_some_and(|h| h.ends_with('.'))
            }
        }
    }

    /// Any host, or every name under a top-level domain (`*.com`): what
    /// the operator grants only with `--network-any`.
    pub fn is_wide(&self) -> bool {
        match self {
            Self::Any => true,
            Self::Suffix(suffix) => !suffix.contains('.'),
            Self::Exact(_) => false,
        }
    }

    /// The IP address this pattern names, when it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Exact(text) => text.parse().ok(),
            _ => None,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Suffix(suffix) => write!(f, "*.{suffix}"),
            Self::Exact(name) if name.contains(':') => write!(f, "[{name}]"),
            Self::Exact(name) => f.write_str(name),
        }
    }
}

fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The methods a rule may narrow to.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl NetworkRule {
    /// Parse a rule as a manifest or a grant writes it:
    /// `https://api.github.com`, `https://*.wikipedia.org`,
    /// `http://127.0.0.1:8080`, `https://api.github.com/repos/**`,
    /// `https://*`, `http://localhost:*`.
    pub fn parse(text: &str, methods: &[String]) -> Result<Self, String> {
        let (scheme, rest) = match text.split_once("://") {
            Some(("https", rest)) => (Scheme::Https, rest),
            Some(("http", rest)) => (Scheme::Http, rest),
            Some((other, _)) => {
                return Err(format!(
                    "{text:?}: scheme {other:?} is not reachable; expected `https://` or `http://`"
                ));
            }
            None => {
                return Err(format!(
                    "{text:?} is not a URL pattern; expected `https://HOST[:PORT][/PATH]`, e.g. `https://api.github.com`"
                ));
            }
        };
        if text.len() > MAX_RULE_CHARS {
            return Err(format!(
                "a rule is at most {MAX_RULE_CHARS} characters, this one {}",
                text.len()
            ));
        }
        if rest.contains(['?', '#', '@'])
            || rest.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "{text:?}: a rule names a host, a port and a path; no query, fragment, user or spaces"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        let (host, port) = split_port(authority).map_err(|why| format!("{text:?}: {why}"))?;
        let host = HostPattern::parse(host).map_err(|why| format!("{text:?}: {why}"))?;
        let port = match port {
            None => Some(scheme.default_port()),
            Some("*") => None,
            Some(port) => Some(
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{text:?}: port {port:?} is not 1 to 65535 or `*`"))?,
            ),
        };
        let path = match path {
            "" | "/" => "/**".to_owned(),
            path => {
                if path.split('/').any(|s| s == "." || s == "..") {
                    return Err(format!("{text:?}: the path may not hold `.` or `..`"));
                }
                if path.matches('*').count() > MAX_PATH_STARS * 2 {
                    return Err(format!(
                        "{text:?}: a path pattern holds at most {MAX_PATH_STARS} stars"
                    ));
                }
                path.to_owned()
            }
        };
        let mut upper = Vec::with_capacity(methods.len());
        for method in methods {
            let method = method.to_ascii_uppercase();
            if !METHODS.contains(&method.as_str()) {
                return Err(format!(
                    "{text:?}: method {method:?} is not one of {}",
                    METHODS.join(", ")
                ));
            }
            if !upper.contains(&method) {
                upper.push(method);
            }
        }
        Ok(Self {
            text: text.to_owned(),
            scheme,
            host,
            port,
            path,
            methods: upper,
        })
    }

    /// Whether this rule lets `request` through.
    pub fn allows(&self, request: &RequestTarget) -> bool {
        self.scheme == request.scheme
            && self.host.matches(&request.host)
            && self.port.is_none_or(|port| port == request.port)
            && path_matches(&self.path, &request.path)
            && (self.methods.is_empty() || self.methods.contains(&request.method))
    }

    /// Whether the origins this rule names (scheme, hosts, ports) are all
    /// within `self`'s: a grant rule must lie inside a manifest rule.
    pub fn covers_origin(&self, other: &NetworkRule) -> bool {
        self.scheme == other.scheme
            && self.host.covers(&other.host)
            && match (self.port, other.port) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => a == b,
            }
    }
}

impl fmt::Display for NetworkRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        if !self.methods.is_empty() {
            write!(f, " ({})", self.methods.join(", "))?;
        }
        Ok(())
    }
}

/// `host` and `port` of an authority; the port is `None` when not written.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if authority.is_empty() {
        return Err("no host".into());
    }
    if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or("an IPv6 address is written `[::1]`")?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected {rest:?} after the address")),
        };
    }
    Ok(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// Longest rule: the path matcher's work grows with it.
const MAX_RULE_CHARS: usize = 1024;

/// Most stars a path pattern may hold.
const MAX_PATH_STARS: usize = 8;

/// A path pattern against a request path (no query): `*` matches within
/// one segment, `**` any rest, segments included. Dynamic programming over
/// (pattern, path) positions: time is linear in the path for each pattern
/// token, whatever the stars (a backtracking matcher is exponential in
/// them, and both the pattern and the path are the skill's).
fn path_matches(pattern: &str, path: &str) -> bool {
    enum Token {
        Byte(u8),
        Star,
        DoubleStar,
    }
    let bytes = pattern.as_bytes();
    let mut tokens = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'*' if bytes.get(index + 1) == Some(&b'*') => {
                tokens.push(Token::DoubleStar);
                index += 2;
            }
            b'*' => {
                tokens.push(Token::Star);
                index += 1;
            }
            byte => {
                tokens.push(Token::Byte(byte));
                index += 1;
            }
        }
    }
    let path = path.as_bytes();
    // `reach[j]`: the tokens so far can match `path[..j]`.
    let mut reach = vec![false; path.len() + 1];
    reach[0] = true;
    for token in &tokens {
        let mut next = vec![false; path.len() + 1];
        match token {
            Token::Byte(byte) => {
                for j in 0..path.len() {
                    next[j + 1] = reach[j] && path[j] == *byte;
                }
            }
            Token::Star | Token::DoubleStar => {
                let crosses = matches!(token, Token::DoubleStar);
                let mut carried = false;
                for j in 0..=path.len() {
                    carried = reach[j] || (carried && j > 0 && (crosses || path[j - 1] != b'/'));
                    next[j] = carried;
                }
            }
        }
        reach = next;
    }
    reach[path.len()]
}

/// One outgoing request, as the policy judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    pub scheme: Scheme,
    /// Lower case, without a trailing dot; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    /// The path without the query.
    pub path: String,
    /// Upper case.
    pub method: String,
}

impl RequestTarget {
    /// The URL for messages: `https://api.github.com/repos`.
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            format!("{}://{host}{}", self.scheme.as_str(), self.path)
        } else {
            format!(
                "{}://{host}:{}{}",
                self.scheme.as_str(),
                self.port,
                self.path
            )
        }
    }
}

/// A secret the host adds to requests: its value read by the host at each
/// request, never shown to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretRoute {
    /// The name of the secret in the home's `.env`.
    pub name: String,
    /// The header it is sent in.
    pub header: String,
    /// `{}` stands for the value: `Bearer {}`.
    pub format: String,
    /// The hosts it is sent to: those the manifest names and the grant
    /// approved.
    #[serde(serialize_with = "serialize_hosts")]
    pub hosts: Vec<HostPattern>,
}

fn serialize_hosts<S: serde::Serializer>(
    hosts: &[HostPattern],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(hosts.iter().map(ToString::to_string))
}

/// What a component may reach over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkAccess {
    /// The manifest's rules.
    pub requested: Vec<NetworkRule>,
    /// The operator's rules.
    pub granted: Vec<NetworkRule>,
    pub secrets: Vec<SecretRoute>,
}

impl NetworkAccess {
    /// Whether `request` matches a rule of the manifest and a rule of the
    /// grant.
    pub fn allows(&self, request: &RequestTarget) -> bool {
        self.requested.iter().any(|rule| rule.allows(request))
            && self.granted.iter().any(|rule| rule.allows(request))
    }

    pub fn is_empty(&self) -> bool {
        self.granted.is_empty()
    }

    /// Whether the operator named `ip` itself (with the request's scheme
    /// and port): the only way to reach a loopback, private or link-local
    /// address. For this host's own service ports (`exact_port`) a rule for
    /// any port (`:*`) is not enough: the port must be written.
    pub fn names_address(&self, request: &RequestTarget, ip: IpAddr, exact_port: bool) -> bool {
        let literal = RequestTarget {
            host: ip.to_string(),
            ..request.clone()
        };
        self.granted.iter().any(|rule| {
            rule.host.ip() == Some(ip)
                && rule.allows(&literal)
                && (!exact_port || rule.port == Some(request.port))
        })
    }

    /// The secrets to add to a request for `host`.
    pub fn secrets_for<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a SecretRoute> {
        self.secrets
            .iter()
            .filter(move |secret| secret.hosts.iter().any(|pattern| pattern.matches(host)))
    }
}

/// Whether an address is one a request may not reach unless the operator
/// named it: loopback, private, link-local (cloud metadata at
/// 169.254.169.254), shared (100.64/10), unspecified, multicast,
/// documentation and benchmark ranges, and their IPv4-mapped IPv6 forms.
pub fn is_internal_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                // 192.0.0.0/24, IETF protocol assignments.
                || (a == 192 && b == 0 && c == 0)
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_address(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            let first = segments[0];
            // IPv4-compatible (::a.b.c.d, deprecated) carries an IPv4
            // address; so do 6to4 (2002::/16) and Teredo (2001::/32):
            // whatever they hold, they are not a plain destination.
            if segments[..6].iter().all(|s| *s == 0) {
                return true;
            }
            v6.is_loopback()
                || first == 0x2002
                || (first == 0x2001 && segments[1] == 0)
                // 100::/64, discard-only.
                || (first == 0x100 && segments[1..4].iter().all(|s| *s == 0))
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                // 64:ff9b::/96 (NAT64) can reach any IPv4 address.
                || (first == 0x64 && v6.segments()[1] == 0xff9b)
                // 2001::/23, IETF special purpose; 2001:db8::/32 and
                // 3fff::/20, documentation.
                || (first == 0x2001 && segments[1] < 0x200)
                || (first == 0x2001 && segments[1] == 0x0db8)
                || (first == 0x3fff && segments[1] < 0x1000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: &str, url: &str) -> RequestTarget {
        let (scheme, rest) = url.split_once("://").unwrap();
        let scheme = if scheme == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_port(authority).unwrap();
        RequestTarget {
            scheme,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: port.map_or(scheme.default_port(), |p| p.parse().unwrap()),
            path: path.to_owned(),
            method: method.to_owned(),
        }
    }

    #[test]
    fn rules_allow_table() {
        let rule = |text: &str, methods: &[&str]| {
            let methods: Vec<String> = methods.iter().map(|m| (*m).to_owned()).collect();
            NetworkRule::parse(text, &methods).unwrap()
        };
        let cases: &[(NetworkRule, &str, &str, bool)] = &[
            (
                rule("https://api.github.com", &[]),
                "GET",
                "https://api.github.com/repos",
                true,
            ),
            (
                rule("https://api.github.com", &[]),
                "GET",
                "https://API.github.com/",
                false,
            ),
            (
                rule("https://api.github.com", &[]),
                "GET",
                "http://api.github.com/",
                false,
            ),
            (
                rule("https://api.github.com", &[]),
                "GET",
                "https://api.github.com:8443/",
                false,
            ),
            (
                rule("https://api.github.com", &[]),
                "GET",
                "https://github.com/",
                false,
            ),
            (
                rule("https://api.github.com", &[]),
                "GET",
                "https://api.github.com.evil.org/",
                false,
            ),
            (
                rule("https://*.wikipedia.org", &[]),
                "GET",
                "https://en.wikipedia.org/wiki",
                true,
            ),
            (
                rule("https://*.wikipedia.org", &[]),
                "GET",
                "https://a.b.wikipedia.org/",
                true,
            ),
            (
                rule("https://*.wikipedia.org", &[]),
                "GET",
                "https://wikipedia.org/",
                false,
            ),
            (
                rule("https://*.wikipedia.org", &[]),
                "GET",
                "https://evilwikipedia.org/",
                false,
            ),
            (
                rule("http://127.0.0.1:8080", &[]),
                "POST",
                "http://127.0.0.1:8080/x",
                true,
            ),
            (
                rule("http://127.0.0.1:8080", &[]),
                "POST",
                "http://127.0.0.1:8081/x",
                false,
            ),
            (
                rule("http://localhost:*", &[]),
                "GET",
                "http://localhost:9/",
                true,
            ),
            (
                rule("https://*", &[]),
                "GET",
                "https://anything.example/",
                true,
            ),
            (
                rule("https://*", &[]),
                "GET",
                "http://anything.example/",
                false,
            ),
            (rule("http://[::1]:80", &[]), "GET", "http://[::1]/", true),
            (
                rule("https://api.github.com/repos/**", &["GET"]),
                "GET",
                "https://api.github.com/repos/a/b",
                true,
            ),
            (
                rule("https://api.github.com/repos/**", &["GET"]),
                "POST",
                "https://api.github.com/repos/a/b",
                false,
            ),
            (
                rule("https://api.github.com/repos/**", &["GET"]),
                "GET",
                "https://api.github.com/user",
                false,
            ),
            (
                rule("https://api.github.com/repos/*/issues", &["get"]),
                "GET",
                "https://api.github.com/repos/a/issues",
                true,
            ),
            (
                rule("https://api.github.com/repos/*/issues", &[]),
                "GET",
                "https://api.github.com/repos/a/b/issues",
                false,
            ),
            (rule("https://h/a/**/z", &[]), "GET", "https://h/a/z", false),
            (
                rule("https://h/a/**/z", &[]),
                "GET",
                "https://h/a/b/c/z",
                true,
            ),
            (
                rule("https://h/a/*.json", &[]),
                "GET",
                "https://h/a/x.json",
                true,
            ),
            (
                rule("https://h/a/*.json", &[]),
                "GET",
                "https://h/a/x/y.json",
                false,
            ),
            (rule("https://h/a*", &[]), "GET", "https://h/a", true),
            (rule("https://h/**", &[]), "GET", "https://h/", true),
        ];
        for (rule, method, url, allowed) in cases {
            assert_eq!(
                rule.allows(&target(method, url)),
                *allowed,
                "{rule} allows {method} {url}"
            );
        }
    }

    #[test]
    fn many_stars_do_not_take_long() {
        // Exponential for a backtracking matcher; linear here.
        let pattern = format!("/{}x", "**/".repeat(8));
        let path = format!("/{}", "a/".repeat(20_000));
        assert!(!path_matches(&pattern, &path));
        assert!(path_matches(&pattern, &format!("{path}x")));
    }

    #[test]
    fn a_request_needs_the_manifest_and_the_grant() {
        let access = NetworkAccess {
            requested: vec![NetworkRule::parse("https://*", &["GET".into()]).unwrap()],
            granted: vec![NetworkRule::parse("https://*.wikipedia.org", &[]).unwrap()],
            secrets: Vec::new(),
        };
        assert!(access.allows(&target("GET", "https://en.wikipedia.org/")));
        assert!(!access.allows(&target("POST", "https://en.wikipedia.org/")));
        assert!(!access.allows(&target("GET", "https://example.org/")));
        assert!(!NetworkAccess::default().allows(&target("GET", "https://en.wikipedia.org/")));
    }

    #[test]
    fn patterns_cover_table() {
        let p = |text: &str| HostPattern::parse(text).unwrap();
        let cases = [
            ("*", "*.example.org", true),
            ("*", "example.org", true),
            ("*.example.org", "*", false),
            ("*.example.org", "a.example.org", true),
            ("*.example.org", "example.org", false),
            ("*.example.org", "*.a.example.org", true),
            ("*.example.org", "*.example.org", true),
            ("*.a.example.org", "*.example.org", false),
            ("example.org", "example.org", true),
            ("example.org", "*.example.org", false),
        ];
        for (outer, inner, covered) in cases {
            assert_eq!(
                p(outer).covers(&p(inner)),
                covered,
                "{outer} covers {inner}"
            );
        }
        assert!(p("*").is_wide() && p("*.com").is_wide() && !p("*.example.com").is_wide());
    }

    #[test]
    fn internal_addresses_table() {
        let cases = [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("0.0.0.0", true),
            ("::1", true),
            ("::", true),
            ("fd00::1", true),
            ("fe80::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("64:ff9b::a9fe:a9fe", true),
            ("192.0.0.170", true),
            ("::7f00:1", true),
            ("2002:7f00:1::", true),
            ("2001:0:4136:e378::1", true),
            ("100::1", true),
            ("93.184.216.34", false),
            ("2606:4700::1111", false),
            ("::ffff:93.184.216.34", false),
        ];
        for (ip, internal) in cases {
            assert_eq!(is_internal_address(ip.parse().unwrap()), internal, "{ip}");
        }
    }

    #[test]
    fn malformed_rules_are_explained() {
        let cases = [
            ("api.github.com", "is not a URL pattern"),
            ("ftp://example.org", "scheme \"ftp\" is not reachable"),
            ("https://", "no host"),
            ("https://ex*ample.org", "a star may only stand alone"),
            ("https://*.", "after `*.` comes a host name"),
            ("https://example.org:99999", "is not 1 to 65535"),
            ("https://example.org/a/../b", "may not hold `.` or `..`"),
            ("https://example.org/?q=1", "no query"),
            ("https://user@example.org", "no query, fragment, user"),
            ("https://exa mple.org", "no query, fragment, user or spaces"),
            ("https://[::1", "an IPv6 address is written"),
            ("https://*.0.1", "after `*.` comes a host name"),
            (
                "https://h/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*",
                "at most 8 stars",
            ),
        ];
        for (text, expected) in cases {
            let error = NetworkRule::parse(text, &[]).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        let error = NetworkRule::parse("https://example.org", &["FETCH".into()]).unwrap_err();
        assert!(error.contains("method \"FETCH\" is not one of"), "{error}");
    }
}
