//! RFC 2136 dynamic updates with TSIG (`[dns] kind = "rfc2136"`): to be written.

use super::{Change, DnsError, DnsProvider, RecordSet};
use crate::config::dns::Rfc2136Settings;
use async_trait::async_trait;

/// Updates an RFC 2136 server (stub: the contract's signature).
pub struct Rfc2136Provider {}

impl Rfc2136Provider {
    /// For the DNS zone `zone` (normalized) at `settings.server`.
    ///
    /// # Errors
    /// [`DnsError::Config`] for a key hickory cannot sign with.
    pub fn new(_zone: String, _settings: Rfc2136Settings) -> Result<Self, DnsError> {
        Err(DnsError::Config("rfc2136 is not written yet".into()))
    }
}

#[async_trait]
impl DnsProvider for Rfc2136Provider {
    fn kind(&self) -> &'static str {
        "rfc2136"
    }
    async fn list(&self, _basename: &str) -> Result<Vec<RecordSet>, DnsError> {
        Ok(Vec::new())
    }
    async fn apply(&self, _changes: &[Change]) -> Result<(), DnsError> {
        Ok(())
    }
}
