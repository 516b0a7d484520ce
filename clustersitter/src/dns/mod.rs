//! DNS names for jobs (see `cerebro_types::dns` for the names): the
//! provider trait every DNS backend implements, the changes the
//! reconciler sends, and the backends this library links itself
//! (embedded, RFC 2136, Dynect). Route 53 lives in `cerebro-route53`, so
//! only that crate and `cerebrod` link the AWS SDK.

pub mod dynect;
pub mod embedded;
pub mod names;
pub mod reconcile;
pub mod rfc2136;

pub use cerebro_types::dns::{RecordSet, RecordType};

use async_trait::async_trait;

/// Why a DNS provider call failed. Every failure is retried by the
/// reconciler with backoff; none stops placement or healing.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The server refused or failed the operation. `code` is its word
    /// (an RCODE such as `REFUSED`/`NOTAUTH` for RFC 2136, Route 53's
    /// error code such as `InvalidChangeBatch`, a Dyn `ERR_CD`), or a
    /// short word for a failure that never reached it (`timeout`, `io`).
    #[error("{operation}: {code}: {message}")]
    Server {
        operation: &'static str,
        code: String,
        message: String,
    },
    /// The provider's settings cannot work (found when used: e.g. no
    /// Route 53 hosted zone has the configured name).
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl DnsError {
    /// What tells one failure from another, for one event per kind of
    /// failure in a streak: the server's code, or `config`/`io`.
    pub fn code(&self) -> &str {
        match self {
            DnsError::Server { code, .. } => code,
            DnsError::Config(_) => "config",
            DnsError::Io(_) => "io",
        }
    }
}

/// One change to the zone. Changes replace whole RRsets (RFC 2136 §2.5:
/// a delete of the RRset then adds, in one UPDATE; Route 53: UPSERT), so
/// a repeated change is harmless and a lost one is redone by the next
/// pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Make the RRset at (`name`, `rtype`) exactly this.
    Upsert(RecordSet),
    /// Remove this RRset, as it was listed (Route 53 deletes only an
    /// exact match of name, type, TTL and values).
    Delete(RecordSet),
}

impl Change {
    pub fn record_set(&self) -> &RecordSet {
        match self {
            Change::Upsert(set) | Change::Delete(set) => set,
        }
    }
}

/// A DNS backend. One instance serves one DNS zone
/// (`[dns] zone`); every name it is given is in that zone.
#[async_trait]
pub trait DnsProvider: Send + Sync {
    /// `embedded`, `rfc2136`, `route53` or `dynect`.
    fn kind(&self) -> &'static str;

    /// Every A, AAAA and TXT RRset at `basename` or below it (names
    /// normalized as in [`RecordSet`]); other types are left out. The
    /// reconciler decides what of it is Cerebro's by the ownership TXT.
    ///
    /// # Errors
    /// [`DnsError`] when the server cannot be read.
    async fn list(&self, basename: &str) -> Result<Vec<RecordSet>, DnsError>;

    /// Applies `changes` in order, in as few requests as the provider
    /// allows (one UPDATE message, one ChangeBatch, one publish). Order
    /// matters: the reconciler puts an ownership TXT before the address
    /// records it owns, and deletes it after them, so a crash between
    /// two requests never leaves an address without its owner.
    ///
    /// # Errors
    /// [`DnsError`]; some of the changes may have been applied, and the
    /// next pass lists again and redoes what is missing.
    async fn apply(&self, changes: &[Change]) -> Result<(), DnsError>;

    /// Ends the provider's session, if it keeps one (Dyn: logout).
    /// Called once when the clustersitter stops.
    async fn close(&self) {}

    /// Where an embedded server answers, for `GET /api/v1/dns`.
    fn listen_address(&self) -> Option<std::net::SocketAddr> {
        None
    }
}
