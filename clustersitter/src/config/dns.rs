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
