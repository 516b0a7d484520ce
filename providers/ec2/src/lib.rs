//! The EC2 machine provider of the clustersitter: each Cerebro machine is
//! one EC2 instance, launched with `aws-sdk-ec2` from the zone's settings
//! (`[provider.ec2]`, see `clustersitter::config::ec2`), tagged with its
//! cluster, machine id and zone so a restarted clustersitter finds it
//! again, and booted by its user data (see [`user_data`]), which fetches
//! the machinesitter from the clustersitter and starts it.
//!
//! Only this crate and the `cerebrod` binaries link the AWS SDK.

mod error;
pub mod provider;
pub mod user_data;

pub use error::{api_error, transient_answer};
pub use provider::{client_token, Ec2Provider, Ec2Settings, TAG_CLUSTER, TAG_MACHINE_ID, TAG_ZONE};

use clustersitter::config::ProviderKind;
use clustersitter::provider::{MachineProvider, ProviderError};
use clustersitter::{ProviderContext, ProviderFactory};
use std::sync::Arc;

/// Builds an [`Ec2Provider`] for a config whose `[provider] kind = "ec2"`.
pub struct Ec2Factory;

#[async_trait::async_trait]
impl ProviderFactory for Ec2Factory {
    /// `None` for any other kind.
    ///
    /// # Errors
    /// [`ProviderError::Config`] when the machinesitter and tasksitter
    /// binaries that instances download could not be located (with why).
    async fn make(
        &self,
        context: &ProviderContext<'_>,
    ) -> Option<Result<Arc<dyn MachineProvider>, ProviderError>> {
        let config = context.config;
        if config.provider.kind != ProviderKind::Ec2 {
            return None;
        }
        let catalog = match &context.binaries {
            Ok(catalog) => catalog,
            Err(error) => {
                return Some(Err(ProviderError::Config(format!(
                    "EC2 machines download the machinesitter and tasksitter from this clustersitter: {error}"
                ))))
            }
        };
        if config.advertise_url.is_none() {
            tracing::warn!(
                "no advertise_url: instances are told to reach this clustersitter at its bound address, which a real EC2 instance cannot reach if it is a loopback one"
            );
        }
        let settings = Ec2Settings {
            cluster_name: config.cluster_name.clone(),
            ec2: config.provider.ec2.clone().unwrap_or_default(),
            max_machines: config.provider.max_machines,
            endpoint_url: config.provider.endpoint_url.clone(),
            token: config
                .token
                .as_ref()
                .map(|t| t.expose().to_string())
                .unwrap_or_default(),
            binaries_sha256: catalog
                .all()
                .map(|b| (b.name.to_string(), b.sha256.clone()))
                .collect(),
        };
        let provider: Arc<dyn MachineProvider> = Arc::new(Ec2Provider::connect(settings).await);
        Some(Ok(provider))
    }
}
