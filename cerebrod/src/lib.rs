//! The providers the `clustersitter` and `cerebrod` binaries build in:
//! EC2 machines (`cerebro-ec2`) and Route 53 names (`cerebro-route53`),
//! besides what the clustersitter library has itself (local machines; the
//! embedded, RFC 2136 and Dynect DNS providers).

use clustersitter::dns::{DnsError, DnsProvider};
use clustersitter::provider::{MachineProvider, ProviderError};
use clustersitter::{ProviderContext, ProviderFactory};
use std::sync::Arc;

/// Machines from [`cerebro_ec2::Ec2Factory`], DNS from
/// [`cerebro_route53::Route53Factory`].
pub struct CloudFactory;

#[async_trait::async_trait]
impl ProviderFactory for CloudFactory {
    async fn make(
        &self,
        context: &ProviderContext<'_>,
    ) -> Option<Result<Arc<dyn MachineProvider>, ProviderError>> {
        cerebro_ec2::Ec2Factory.make(context).await
    }

    async fn make_dns(
        &self,
        context: &ProviderContext<'_>,
    ) -> Option<Result<Arc<dyn DnsProvider>, DnsError>> {
        cerebro_route53::Route53Factory.make_dns(context).await
    }
}

/// The clustersitter's `main` with every cloud provider built in.
pub fn main_entry() -> std::process::ExitCode {
    clustersitter::main_entry_with(&CloudFactory)
}
