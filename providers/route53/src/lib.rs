//! The Route 53 DNS provider of the clustersitter: to be written.
//!
//! Only this crate, `cerebro-ec2` and the `cerebrod` binaries link the AWS SDK.

use clustersitter::config::dns::Route53Settings;
use clustersitter::dns::{DnsError, DnsProvider};
use std::sync::Arc;

/// Connects to Route 53 for the hosted zone of `zone` (stub: the
/// contract's signature; the real one looks the hosted zone up).
///
/// # Errors
/// [`DnsError`] when no hosted zone is named `zone`.
pub async fn connect(
    _zone: String,
    _settings: Route53Settings,
) -> Result<Arc<dyn DnsProvider>, DnsError> {
    Err(DnsError::Config("route53 is not written yet".into()))
}
