//! `[dns]` in the cluster config: which DNS provider gets the names of
//! jobs with a `dns_basename`, the zone it serves, and its settings.
//!
//! ```toml
//! [dns]
//! kind = "rfc2136"          # none | embedded | rfc2136 | route53 | dynect
//! zone = "cerebro.test"     # required for rfc2136, route53, dynect
//! ttl = 60                  # seconds, of every record written
//! server = "127.0.0.1:53"   # rfc2136: where UPDATEs go (UDP; TCP for AXFR)
//! key_file = "key.conf"     # rfc2136: `tsig-keygen` output (hmac-sha256)
//! ```
//!
//! Without `[dns]`, a local cluster runs the embedded server on
//! 127.0.0.1:8600 and an EC2 cluster sends nothing (`none`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[dns] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsKind {
    /// Names are computed and shown; nothing is sent anywhere.
    None,
    /// The clustersitter answers DNS for its names itself (UDP and TCP).
    Embedded,
    /// Dynamic updates (RFC 2136) signed with TSIG (RFC 8945).
    Rfc2136,
    /// Amazon Route 53 (the `cerebro-route53` crate).
    Route53,
    /// Dyn Managed DNS REST API (retired by Oracle in 2023; kept for
    /// configs migrating from the original Cerebro).
    Dynect,
}

impl DnsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsKind::None => "none",
            DnsKind::Embedded => "embedded",
            DnsKind::Rfc2136 => "rfc2136",
            DnsKind::Route53 => "route53",
            DnsKind::Dynect => "dynect",
        }
    }
}

/// A secret read from the config (a TSIG key, a password): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `[dns]`, checked.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub kind: DnsKind,
    /// The DNS zone the provider serves, normalized (lowercase, no
    /// trailing dot). Every job's `dns_basename` must be in it. Required
    /// for rfc2136, route53 and dynect; optional for embedded (then it
    /// answers for every name it owns) and none.
    pub zone: Option<String>,
    /// Seconds, of every record Cerebro writes (default 60).
    pub ttl: u32,
    /// How often the reconciler lists and compares even when nothing
    /// changed (default 30 s): what repairs edits made behind its back.
    pub period: Duration,
    /// `Some` exactly when `kind` is embedded.
    pub embedded: Option<EmbeddedSettings>,
    /// `Some` exactly when `kind` is rfc2136.
    pub rfc2136: Option<Rfc2136Settings>,
    /// `Some` exactly when `kind` is route53.
    pub route53: Option<Route53Settings>,
    /// `Some` exactly when `kind` is dynect.
    pub dynect: Option<DynectSettings>,
}

/// The embedded DNS server.
#[derive(Debug, Clone)]
pub struct EmbeddedSettings {
    /// Where it answers, on UDP and TCP both (`listen`, default
    /// 127.0.0.1:8600; port 0 picks a free one, see `GET /api/v1/dns`).
    pub listen: SocketAddr,
    /// Whether `listen` was written in the config: a default address
    /// already in use is a warning and an event, a configured one an
    /// error at start.
    pub configured: bool,
}

/// An RFC 2136 server and the TSIG key updates are signed with.
#[derive(Debug, Clone)]
pub struct Rfc2136Settings {
    /// `server`: where UPDATE messages go (UDP, TCP for zone transfers).
    pub server: SocketAddr,
    /// The key's name, as the server knows it (`key "NAME" { ... }`).
    pub key_name: String,
    /// `hmac-sha256` (the default), `hmac-sha384` or `hmac-sha512`: the
    /// algorithms hickory signs with.
    pub key_algorithm: String,
    /// The decoded key (`secret` in base64 in the config or key file).
    pub key_secret: Secret,
    /// How long one request may take (default 5 s).
    pub timeout: Duration,
}

/// Amazon Route 53, with the credential chain EC2 uses.
#[derive(Debug, Clone)]
pub struct Route53Settings {
    /// `hosted_zone_id`; when absent, the hosted zone named `zone` is
    /// looked up (ListHostedZonesByName) when the provider starts.
    pub hosted_zone_id: Option<String>,
    /// `endpoint_url` in `[dns]`, else `[provider] endpoint_url`, else
    /// the SDK's own (`AWS_ENDPOINT_URL_ROUTE_53`, `AWS_ENDPOINT_URL`,
    /// real AWS).
    pub endpoint_url: Option<String>,
    /// `region` (Route 53 is global; the SDK still signs with one).
    /// Default `us-east-1`.
    pub region: String,
}

/// Dyn Managed DNS REST API.
#[derive(Debug, Clone)]
pub struct DynectSettings {
    /// `api_url`, default `https://api.dynect.net` (the paths under it
    /// start with `/REST/`).
    pub api_url: String,
    pub customer: String,
    pub user: String,
    /// `password_file` (relative to the config file), or the environment
    /// variable `CEREBRO_DYNECT_PASSWORD`.
    pub password: Secret,
}

/// Where an embedded server listens when `[dns] listen` is not given.
pub const DEFAULT_EMBEDDED_LISTEN: &str = "127.0.0.1:8600";

/// The state file of the embedded server's records, under the state dir,
/// so a restarted clustersitter answers at once as before.
pub fn embedded_records_file(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("dns-embedded.json")
}

impl DnsConfig {
    /// `[dns]` when the config has none: the embedded server on
    /// [`DEFAULT_EMBEDDED_LISTEN`] for a local cluster, `none` otherwise.
    pub fn default_for(provider: super::ProviderKind) -> Self {
        let embedded = provider == super::ProviderKind::Local;
        Self {
            kind: if embedded {
                DnsKind::Embedded
            } else {
                DnsKind::None
            },
            zone: None,
            ttl: 60,
            period: Duration::from_secs(30),
            embedded: embedded.then(|| EmbeddedSettings {
                listen: DEFAULT_EMBEDDED_LISTEN.parse().expect("a socket address"),
                configured: false,
            }),
            rfc2136: None,
            route53: None,
            dynect: None,
        }
    }
}

/// `[dns]` as written: every key of every kind, each checked against
/// `kind` by [`resolve`] (a key of another kind is an error at its place).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    pub kind: Option<Spanned<DnsKind>>,
    pub zone: Option<Spanned<String>>,
    pub ttl: Option<Spanned<i64>>,
    pub period: Option<Spanned<String>>,
    // embedded
    pub listen: Option<Spanned<String>>,
    // rfc2136
    pub server: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub key_name: Option<Spanned<String>>,
    pub key_secret: Option<Spanned<String>>,
    pub key_algorithm: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    // route53
    pub hosted_zone_id: Option<Spanned<String>>,
    pub endpoint_url: Option<Spanned<String>>,
    pub region: Option<Spanned<String>>,
    // dynect
    pub api_url: Option<Spanned<String>>,
    pub customer: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
}

use toml::Spanned;

/// The TSIG algorithms hickory signs with (RFC 8945 §6).
pub const KEY_ALGORITHMS: [&str; 3] = ["hmac-sha256", "hmac-sha384", "hmac-sha512"];

/// The most a TTL may be (RFC 2181 §8: 2^31 - 1 seconds).
pub const MAX_TTL: i64 = 2_147_483_647;

/// The environment variable a Dyn password is read from when the config
/// names no `password_file`.
pub const DYNECT_PASSWORD_ENV: &str = "CEREBRO_DYNECT_PASSWORD";

/// What [`resolve`] needs besides the section.
pub struct ResolveContext<'a> {
    /// Relative paths (`key_file`, `password_file`) are relative to it.
    pub config_dir: &'a std::path::Path,
    /// The machine provider's kind: what `kind` defaults to.
    pub provider: super::ProviderKind,
    /// `[provider] endpoint_url`: Route 53's default endpoint.
    pub provider_endpoint_url: Option<&'a str>,
    /// Where the section starts (for problems of the section as a whole).
    pub at: Range<usize>,
    /// Reads `CEREBRO_DYNECT_PASSWORD` (a parameter so tests need no
    /// process environment).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

use std::ops::Range;

/// A problem at a byte range of the config file.
pub type Problem = (Range<usize>, String);

/// Checks `[dns]` into a [`DnsConfig`], with every problem at its place.
pub fn resolve(section: &DnsSection, context: &ResolveContext) -> (DnsConfig, Vec<Problem>) {
    let mut problems: Vec<Problem> = Vec::new();
    let mut config = DnsConfig::default_for(context.provider);
    let kind = section
        .kind
        .as_ref()
        .map(|k| *k.get_ref())
        .unwrap_or(config.kind);
    let kind_at = section
        .kind
        .as_ref()
        .map(|k| k.span())
        .unwrap_or(context.at.clone());
    config.kind = kind;
    if let Some(zone) = &section.zone {
        match cerebro_types::dns::check_host_name(zone.get_ref()) {
            Ok(()) => config.zone = Some(cerebro_types::dns::normalize_name(zone.get_ref())),
            Err(message) => problems.push((zone.span(), format!("dns.zone: {message}"))),
        }
    }
    if let Some(ttl) = &section.ttl {
        match u32::try_from(*ttl.get_ref()) {
            Ok(value) if (1..=MAX_TTL).contains(ttl.get_ref()) => config.ttl = value,
            _ => problems.push((
                ttl.span(),
                format!("dns.ttl must be 1 to {MAX_TTL} seconds (RFC 2181 §8)"),
            )),
        }
    }
    if let Some(period) = &section.period {
        match cerebro_types::human::parse_duration(period.get_ref()) {
            Ok(d) if d >= Duration::from_millis(50) => config.period = d,
            Ok(_) => problems.push((period.span(), "dns.period must be at least 50ms".into())),
            Err(e) => problems.push((period.span(), format!("dns.period: {e}"))),
        }
    }
    // Which keys belong to which kind, for "a key of another kind".
    let keys = [
        ("listen", span(&section.listen), DnsKind::Embedded),
        ("server", span(&section.server), DnsKind::Rfc2136),
        ("key_file", span(&section.key_file), DnsKind::Rfc2136),
        ("key_name", span(&section.key_name), DnsKind::Rfc2136),
        ("key_secret", span(&section.key_secret), DnsKind::Rfc2136),
        (
            "key_algorithm",
            span(&section.key_algorithm),
            DnsKind::Rfc2136,
        ),
        ("timeout", span(&section.timeout), DnsKind::Rfc2136),
        (
            "hosted_zone_id",
            span(&section.hosted_zone_id),
            DnsKind::Route53,
        ),
        (
            "endpoint_url",
            span(&section.endpoint_url),
            DnsKind::Route53,
        ),
        ("region", span(&section.region), DnsKind::Route53),
        ("api_url", span(&section.api_url), DnsKind::Dynect),
        ("customer", span(&section.customer), DnsKind::Dynect),
        ("user", span(&section.user), DnsKind::Dynect),
        (
            "password_file",
            span(&section.password_file),
            DnsKind::Dynect,
        ),
    ];
    for (key, at, owner) in keys {
        if let Some(at) = at {
            if owner != kind {
                problems.push((
                    at,
                    format!(
                        "dns.{key} is a key of kind = \"{}\", not of kind = \"{}\"",
                        owner.as_str(),
                        kind.as_str()
                    ),
                ));
            }
        }
    }
    let needs_zone = matches!(kind, DnsKind::Rfc2136 | DnsKind::Route53 | DnsKind::Dynect);
    if needs_zone && section.zone.is_none() {
        problems.push((
            kind_at.clone(),
            format!(
                "kind = \"{}\" needs dns.zone, the DNS zone it updates",
                kind.as_str()
            ),
        ));
    }
    config.embedded = None;
    match kind {
        DnsKind::None => {}
        DnsKind::Embedded => {
            let mut settings = EmbeddedSettings {
                listen: DEFAULT_EMBEDDED_LISTEN.parse().expect("a socket address"),
                configured: false,
            };
            if let Some(listen) = &section.listen {
                match listen.get_ref().parse::<SocketAddr>() {
                    Ok(address) => {
                        settings.listen = address;
                        settings.configured = true;
                    }
                    Err(_) => problems.push((
                        listen.span(),
                        format!(
                            "dns.listen: '{}' is not an address and port (e.g. 127.0.0.1:8600)",
                            listen.get_ref()
                        ),
                    )),
                }
            }
            config.embedded = Some(settings);
        }
        DnsKind::Rfc2136 => config.rfc2136 = rfc2136(section, context, &kind_at, &mut problems),
        DnsKind::Route53 => {
            config.route53 = Some(Route53Settings {
                hosted_zone_id: section.hosted_zone_id.as_ref().map(|v| v.get_ref().clone()),
                endpoint_url: section
                    .endpoint_url
                    .as_ref()
                    .map(|v| v.get_ref().trim_end_matches('/').to_string())
                    .or_else(|| context.provider_endpoint_url.map(str::to_string)),
                region: section
                    .region
                    .as_ref()
                    .map(|v| v.get_ref().clone())
                    .unwrap_or_else(|| "us-east-1".into()),
            });
            if let Some(url) = &section.endpoint_url {
                if !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://"))
                {
                    problems.push((
                        url.span(),
                        "dns.endpoint_url must be an http:// or https:// URL".into(),
                    ));
                }
            }
        }
        DnsKind::Dynect => config.dynect = dynect(section, context, &kind_at, &mut problems),
    }
    (config, problems)
}

fn span<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
    value.as_ref().map(Spanned::span)
}

fn rfc2136(
    section: &DnsSection,
    context: &ResolveContext,
    kind_at: &Range<usize>,
    problems: &mut Vec<Problem>,
) -> Option<Rfc2136Settings> {
    let server = match &section.server {
        None => {
            problems.push((
                kind_at.clone(),
                "kind = \"rfc2136\" needs dns.server, the address and port UPDATEs go to".into(),
            ));
            None
        }
        Some(server) => match parse_server(server.get_ref()) {
            Some(address) => Some(address),
            None => {
                problems.push((
                    server.span(),
                    format!(
                        "dns.server: '{}' is not an address and port (e.g. 127.0.0.1:53)",
                        server.get_ref()
                    ),
                ));
                None
            }
        },
    };
    let mut key: Option<(String, String, Vec<u8>)> = None;
    match (&section.key_file, &section.key_name, &section.key_secret) {
        (Some(file), None, None) => {
            let path = context.config_dir.join(file.get_ref());
            match std::fs::read_to_string(&path) {
                Err(error) => problems.push((
                    file.span(),
                    format!("dns.key_file: cannot read {}: {error}", path.display()),
                )),
                Ok(text) => match parse_key_file(&text) {
                    Ok(parsed) => key = Some(parsed),
                    Err(message) => problems.push((
                        file.span(),
                        format!("dns.key_file: {}: {message}", path.display()),
                    )),
                },
            }
        }
        (None, Some(name), Some(secret)) => match decode_base64(secret.get_ref()) {
            Some(bytes) => {
                let algorithm = section
                    .key_algorithm
                    .as_ref()
                    .map(|a| a.get_ref().to_ascii_lowercase())
                    .unwrap_or_else(|| "hmac-sha256".into());
                key = Some((name.get_ref().clone(), algorithm, bytes));
            }
            None => problems.push((
                secret.span(),
                "dns.key_secret must be the key in base64 (as tsig-keygen prints it)".into(),
            )),
        },
        (None, None, None) => problems.push((
            kind_at.clone(),
            "kind = \"rfc2136\" needs a TSIG key: dns.key_file (tsig-keygen's output), or dns.key_name and dns.key_secret".into(),
        )),
        (Some(file), _, _) => problems.push((
            file.span(),
            "dns.key_file and dns.key_name/dns.key_secret are two ways to give the key: give one".into(),
        )),
        (None, Some(name), None) => problems.push((
            name.span(),
            "dns.key_name needs dns.key_secret (or use dns.key_file)".into(),
        )),
        (None, None, Some(secret)) => problems.push((
            secret.span(),
            "dns.key_secret needs dns.key_name (or use dns.key_file)".into(),
        )),
    }
    if let (Some(algorithm), Some((_, from_file, _))) = (&section.key_algorithm, &mut key) {
        // An explicit algorithm wins over the key file's.
        *from_file = algorithm.get_ref().to_ascii_lowercase();
    }
    if let Some((_, algorithm, _)) = &key {
        if !KEY_ALGORITHMS.contains(&algorithm.as_str()) {
            let at = span(&section.key_algorithm)
                .or_else(|| span(&section.key_file))
                .unwrap_or(kind_at.clone());
            problems.push((
                at,
                format!(
                    "dns.key_algorithm: '{algorithm}' is not one of {}",
                    KEY_ALGORITHMS.join(", ")
                ),
            ));
        }
    }
    let mut timeout = Duration::from_secs(5);
    if let Some(text) = &section.timeout {
        match cerebro_types::human::parse_duration(text.get_ref()) {
            Ok(d) if !d.is_zero() => timeout = d,
            Ok(_) => problems.push((text.span(), "dns.timeout must be more than 0".into())),
            Err(e) => problems.push((text.span(), format!("dns.timeout: {e}"))),
        }
    }
    let (key_name, key_algorithm, key_secret) = key?;
    Some(Rfc2136Settings {
        server: server?,
        key_name,
        key_algorithm,
        key_secret: Secret(key_secret),
        timeout,
    })
}

/// `host:port` with an IP host; a bare IP means port 53.
fn parse_server(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// Reads `tsig-keygen`'s output, `key "NAME" { algorithm ALG; secret
/// "BASE64"; };`, into (name, algorithm, secret bytes).
///
/// # Errors
/// What is missing or malformed, as a sentence.
pub fn parse_key_file(text: &str) -> Result<(String, String, Vec<u8>), String> {
    // BIND's config syntax allows comments in three styles.
    let mut clean = String::new();
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("");
        let line = line.split('#').next().unwrap_or("");
        clean.push_str(line);
        clean.push('\n');
    }
    let tokens = tokenize(&clean);
    let mut iter = tokens.iter().map(String::as_str).peekable();
    let shape = "expected key \"NAME\" { algorithm ALGORITHM; secret \"BASE64\"; };";
    if iter.next() != Some("key") {
        return Err(shape.into());
    }
    let name = iter
        .next()
        .filter(|n| *n != "{")
        .ok_or_else(|| shape.to_string())?
        .trim_matches('"')
        .trim_end_matches('.')
        .to_string();
    if iter.next() != Some("{") {
        return Err(shape.into());
    }
    let (mut algorithm, mut secret) = (None, None);
    loop {
        match iter.next() {
            Some("}") => break,
            Some("algorithm") => {
                algorithm = iter
                    .next()
                    .map(|a| a.trim_matches('"').to_ascii_lowercase());
            }
            Some("secret") => secret = iter.next().map(|s| s.trim_matches('"').to_string()),
            Some(";") => continue,
            Some(other) => return Err(format!("unexpected '{other}' in the key")),
            None => return Err(shape.into()),
        }
        if iter.next() != Some(";") {
            return Err(shape.into());
        }
    }
    let algorithm = algorithm.ok_or("the key has no algorithm")?;
    let secret = secret.ok_or("the key has no secret")?;
    let bytes = decode_base64(&secret).ok_or("the key's secret is not base64")?;
    if name.is_empty() {
        return Err("the key has no name".into());
    }
    Ok((name, algorithm, bytes))
}

/// Words, quoted strings, and `{`, `}`, `;` on their own.
fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '{' | '}' | ';' => tokens.push(c.to_string()),
            '"' => {
                let mut word = String::from('"');
                for c in chars.by_ref() {
                    word.push(c);
                    if c == '"' {
                        break;
                    }
                }
                tokens.push(word);
            }
            c => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || matches!(next, '{' | '}' | ';' | '"') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                tokens.push(word);
            }
        }
    }
    tokens
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    (!bytes.is_empty()).then_some(bytes)
}

fn dynect(
    section: &DnsSection,
    context: &ResolveContext,
    kind_at: &Range<usize>,
    problems: &mut Vec<Problem>,
) -> Option<DynectSettings> {
    let mut missing = |key: &str, value: &Option<Spanned<String>>| -> Option<String> {
        match value {
            Some(v) if !v.get_ref().is_empty() => Some(v.get_ref().clone()),
            Some(v) => {
                problems.push((v.span(), format!("dns.{key} must not be empty")));
                None
            }
            None => {
                problems.push((
                    kind_at.clone(),
                    format!("kind = \"dynect\" needs dns.{key}"),
                ));
                None
            }
        }
    };
    let customer = missing("customer", &section.customer);
    let user = missing("user", &section.user);
    let password = match &section.password_file {
        Some(file) => {
            let path = context.config_dir.join(file.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(text) if !text.trim().is_empty() => Some(text.trim_end().as_bytes().to_vec()),
                Ok(_) => {
                    problems.push((
                        file.span(),
                        format!("dns.password_file: {} is empty", path.display()),
                    ));
                    None
                }
                Err(error) => {
                    problems.push((
                        file.span(),
                        format!("dns.password_file: cannot read {}: {error}", path.display()),
                    ));
                    None
                }
            }
        }
        None => match (context.env)(DYNECT_PASSWORD_ENV) {
            Some(password) if !password.is_empty() => Some(password.into_bytes()),
            _ => {
                problems.push((
                    kind_at.clone(),
                    format!("kind = \"dynect\" needs a password: dns.password_file, or the environment variable {DYNECT_PASSWORD_ENV}"),
                ));
                None
            }
        },
    };
    let api_url = section
        .api_url
        .as_ref()
        .map(|u| u.get_ref().trim_end_matches('/').to_string())
        .unwrap_or_else(|| "https://api.dynect.net".into());
    if let Some(url) = &section.api_url {
        if !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://")) {
            problems.push((
                url.span(),
                "dns.api_url must be an http:// or https:// URL".into(),
            ));
        }
    }
    Some(DynectSettings {
        api_url,
        customer: customer?,
        user: user?,
        password: Secret(password?),
    })
}
