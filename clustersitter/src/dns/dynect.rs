//! Dyn Managed DNS (`[dns] kind = "dynect"`): to be written.

use super::{Change, DnsError, DnsProvider, RecordSet};
use crate::config::dns::DynectSettings;
use async_trait::async_trait;

/// A Dyn Managed DNS REST API client (stub: the contract's signature).
pub struct DynectProvider {}

impl DynectProvider {
    /// For the Dyn zone `zone` (normalized); logs in at first use.
    ///
    /// # Errors
    /// [`DnsError::Config`] for an `api_url` that is not a URL.
    pub fn new(_zone: String, _settings: DynectSettings) -> Result<Self, DnsError> {
        Err(DnsError::Config("dynect is not written yet".into()))
    }
}

#[async_trait]
impl DnsProvider for DynectProvider {
    fn kind(&self) -> &'static str {
        "dynect"
    }
    async fn list(&self, _basename: &str) -> Result<Vec<RecordSet>, DnsError> {
        Ok(Vec::new())
    }
    async fn apply(&self, _changes: &[Change]) -> Result<(), DnsError> {
        Ok(())
    }
}
