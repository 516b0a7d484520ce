//! The Route 53 DNS provider of the clustersitter (`[dns] kind =
//! "route53"`): the names of jobs as RRsets of one hosted zone, read with
//! ListResourceRecordSets and written with one ChangeResourceRecordSets
//! (UPSERT and DELETE) per pass, through `aws-sdk-route53` with the
//! credential chain, region and endpoint override the EC2 provider uses.
//!
//! Only this crate, `cerebro-ec2` and the `cerebrod` binaries link the AWS SDK.

mod provider;
pub mod wire;

pub use provider::Route53Provider;

use clustersitter::config::dns::{DnsKind, Route53Settings};
use clustersitter::dns::{DnsError, DnsProvider};
use clustersitter::provider::{MachineProvider, ProviderError};
use clustersitter::{ProviderContext, ProviderFactory};
use std::sync::Arc;

/// Connects to Route 53 for the hosted zone of `zone` (normalized: lowercase,
/// no trailing dot): `settings.hosted_zone_id` when set (checked with
/// GetHostedZone), else the one hosted zone whose name is exactly `zone`
/// (ListHostedZonesByName).
///
/// # Errors
/// [`DnsError::Config`] when no hosted zone is named `zone`, when several
/// are (a public and a private one: set `hosted_zone_id`), or when the
/// configured id names another zone; [`DnsError::Server`] when Route 53
/// cannot be asked.
pub async fn connect(
    zone: String,
    settings: Route53Settings,
) -> Result<Arc<dyn DnsProvider>, DnsError> {
    let provider = Route53Provider::connect(zone, settings).await?;
    Ok(Arc::new(provider))
}

/// Builds the Route 53 DNS provider for a config whose `[dns] kind =
/// "route53"`; builds no machine provider.
pub struct Route53Factory;

#[async_trait::async_trait]
impl ProviderFactory for Route53Factory {
    /// Always `None`: machines come from another factory.
    async fn make(
        &self,
        _context: &ProviderContext<'_>,
    ) -> Option<Result<Arc<dyn MachineProvider>, ProviderError>> {
        None
    }

    /// `None` unless `[dns] kind = "route53"`; then [`connect`] to the
    /// hosted zone of `[dns] zone`.
    async fn make_dns(
        &self,
        context: &ProviderContext<'_>,
    ) -> Option<Result<Arc<dyn DnsProvider>, DnsError>> {
        let dns = &context.config.dns;
        if dns.kind != DnsKind::Route53 {
            return None;
        }
        let (Some(zone), Some(settings)) = (dns.zone.clone(), dns.route53.clone()) else {
            return Some(Err(DnsError::Config(
                "[dns] kind = \"route53\" needs a zone and its settings".into(),
            )));
        };
        Some(connect(zone, settings).await)
    }
}
