//! The embedded DNS server (`[dns] kind = "embedded"`): to be written.

use super::{Change, DnsError, DnsProvider, RecordSet};
use crate::config::dns::EmbeddedSettings;
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;

/// The clustersitter's own DNS server (stub: the contract's signature).
pub struct EmbeddedDns {}

impl EmbeddedDns {
    /// Loads the records saved in `records_file` (if any), binds UDP and
    /// TCP on `settings.listen` and answers from then on until dropped.
    ///
    /// # Errors
    /// [`DnsError::Io`] when the address cannot be bound.
    pub async fn start(
        _settings: &EmbeddedSettings,
        _zone: Option<String>,
        _records_file: PathBuf,
    ) -> Result<Arc<Self>, DnsError> {
        Err(DnsError::Config(
            "the embedded DNS server is not written yet".into(),
        ))
    }
}

#[async_trait]
impl DnsProvider for EmbeddedDns {
    fn kind(&self) -> &'static str {
        "embedded"
    }
    async fn list(&self, _basename: &str) -> Result<Vec<RecordSet>, DnsError> {
        Ok(Vec::new())
    }
    async fn apply(&self, _changes: &[Change]) -> Result<(), DnsError> {
        Ok(())
    }
}
