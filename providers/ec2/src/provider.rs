//! [`Ec2Provider`]: Cerebro machines as EC2 instances, found again by their
//! tags.

use crate::error::{api_error, is_transient};
use crate::user_data::{UserData, USER_DATA_LIMIT};
use async_trait::async_trait;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::{BehaviorVersion, Region};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, IamInstanceProfileSpecification, Instance,
    InstanceStateName, Placement, ResourceType, Tag, TagSpecification,
};
use aws_sdk_ec2::Client;
use base64::Engine;
use cerebro_types::cluster::ProviderDetails;
use cerebro_types::machine::Resources;
use clustersitter::config::ec2::{instance_type, Ec2Config, Ec2Zone, InstanceType};
use clustersitter::provider::{
    FoundMachine, MachineProvider, NewMachine, ProviderError, ProviderStatus, Provisioned,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tag keys every instance of a cluster carries.
pub const TAG_CLUSTER: &str = "cerebro:cluster";
pub const TAG_MACHINE_ID: &str = "cerebro:machine-id";
pub const TAG_ZONE: &str = "cerebro:zone";

/// States of an instance that may still run (or run again): a machine in
/// one of them exists.
const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// RunInstances attempts after transient failures (each after a tag lookup).
const LAUNCH_ATTEMPTS: u32 = 4;

/// DescribeInstances attempts (each with the SDK's own retries) after a
/// launch that may have happened, before its outcome is called unknown:
/// with the waits between them, about a minute.
const LOOKUP_ATTEMPTS: u32 = 5;

/// How long an instance may take from RunInstances to a machinesitter
/// that answers before the cluster replaces it.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long [`MachineProvider::terminate`] waits for EC2 to confirm.
const TERMINATE_WAIT: Duration = Duration::from_secs(600);

/// What the provider needs besides the zones: the cluster's name (its
/// instances' `cerebro:cluster` tag), the machine cap, and what goes into
/// each instance's user data.
#[derive(Debug, Clone)]
pub struct Ec2Settings {
    pub cluster_name: String,
    /// The zones served, each with its settings.
    pub ec2: Ec2Config,
    /// Never more instances of this cluster than this, all regions together.
    pub max_machines: usize,
    /// The EC2 endpoint for every region (e.g. moto's); `None`: what
    /// aws-config finds (`AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`, the
    /// profile's `endpoint_url`, else AWS itself).
    pub endpoint_url: Option<String>,
    /// The cluster's bearer token (empty: an insecure cluster).
    pub token: String,
    /// SHA-256 (lowercase hex) of each binary the cluster serves, by name
    /// (`machinesitter`, `tasksitter`).
    pub binaries_sha256: BTreeMap<String, String>,
}

/// Machines as EC2 instances, in every region its zones are in.
pub struct Ec2Provider {
    settings: Ec2Settings,
    /// One client per region served.
    clients: BTreeMap<String, Client>,
    /// Root device name of each (region, AMI), from DescribeImages.
    root_devices: Mutex<HashMap<(String, String), String>>,
}

impl Ec2Provider {
    /// A provider with one EC2 client per region of `settings`, each from
    /// aws-config's default chain (credentials from the environment, the
    /// profile, SSO or the instance role) with its region, and
    /// `settings.endpoint_url` when set. Calls time out after 20 s per
    /// attempt and 2 minutes in all, so a lost answer never hangs a launch.
    pub async fn connect(settings: Ec2Settings) -> Self {
        let mut clients = BTreeMap::new();
        for region in settings.ec2.regions() {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(region.to_string()))
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_millis(3100))
                        .operation_attempt_timeout(Duration::from_secs(20))
                        .operation_timeout(Duration::from_secs(120))
                        .build(),
                );
            if let Some(url) = &settings.endpoint_url {
                loader = loader.endpoint_url(url);
            }
            let sdk_config = loader.load().await;
            clients.insert(region.to_string(), Client::new(&sdk_config));
        }
        Self::with_clients(settings, clients)
    }

    /// A provider over clients made elsewhere (one per region of
    /// `settings`; e.g. with static test credentials).
    pub fn with_clients(settings: Ec2Settings, clients: BTreeMap<String, Client>) -> Self {
        Self {
            settings,
            clients,
            root_devices: Mutex::new(HashMap::new()),
        }
    }

    fn zone(&self, zone: &str) -> Result<&Ec2Zone, ProviderError> {
        self.settings
            .ec2
            .zones
            .get(zone)
            .ok_or_else(|| ProviderError::UnknownZone(zone.to_string()))
    }

    fn client(&self, region: &str) -> Result<&Client, ProviderError> {
        self.clients
            .get(region)
            .ok_or_else(|| ProviderError::Config(format!("no EC2 client for region {region}")))
    }

    /// Instances of this cluster in `region` (DescribeInstances, every
    /// page) in `states`, narrowed by `extra` filters.
    async fn describe(
        &self,
        region: &str,
        states: &[&str],
        extra: Vec<Filter>,
    ) -> Result<Vec<Instance>, ProviderError> {
        let mut filters = vec![
            Filter::builder()
                .name(format!("tag:{TAG_CLUSTER}"))
                .values(&self.settings.cluster_name)
                .build(),
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(states.iter().map(|s| s.to_string()).collect()))
                .build(),
        ];
        filters.extend(extra);
        self.describe_filtered(region, filters).await
    }

    async fn describe_filtered(
        &self,
        region: &str,
        filters: Vec<Filter>,
    ) -> Result<Vec<Instance>, ProviderError> {
        let mut pages = self
            .client(region)?
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        let mut instances = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error("DescribeInstances", region, e))?;
            for reservation in page.reservations() {
                instances.extend(reservation.instances().iter().cloned());
            }
        }
        Ok(instances)
    }

    /// The live instances tagged with `machine_id` in `region`, oldest first.
    async fn find_machine(
        &self,
        region: &str,
        machine_id: &str,
    ) -> Result<Vec<Instance>, ProviderError> {
        let mut found = self
            .describe(
                region,
                &LIVE_STATES,
                vec![tag_filter(TAG_MACHINE_ID, machine_id)],
            )
            .await?;
        found.sort_by_key(|i| i.launch_time().map(|t| (t.secs(), t.subsec_nanos())));
        Ok(found)
    }

    /// The root device name of `ami` (DescribeImages), remembered.
    async fn root_device(&self, region: &str, ami: &str) -> Result<String, ProviderError> {
        let key = (region.to_string(), ami.to_string());
        if let Some(name) = lock(&self.root_devices).get(&key) {
            return Ok(name.clone());
        }
        let images = self
            .client(region)?
            .describe_images()
            .image_ids(ami)
            .send()
            .await
            .map_err(|e| api_error("DescribeImages", region, e))?;
        let name = images
            .images()
            .first()
            .and_then(|image| image.root_device_name())
            .ok_or_else(|| ProviderError::Api {
                operation: "DescribeImages",
                region: region.to_string(),
                code: "InvalidAMIID.NotFound".into(),
                message: format!("the AMI {ami} is not found or has no root device name"),
                transient: false,
            })?
            .to_string();
        lock(&self.root_devices).insert(key, name.clone());
        Ok(name)
    }

    /// [`Self::find_machine`] after a launch that may have happened,
    /// retried with a growing wait (2, 4, 8... s, for about a minute in
    /// all) until EC2 answers: the instances found (empty: EC2 says none
    /// was launched), or [`ProviderError::OutcomeUnknown`] when no lookup
    /// answered.
    async fn look_up_after_launch(
        &self,
        region: &str,
        machine: &NewMachine,
    ) -> Result<Vec<Instance>, ProviderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.find_machine(region, &machine.id).await {
                Ok(found) => return Ok(found),
                Err(error) if attempt >= LOOKUP_ATTEMPTS => {
                    return Err(ProviderError::OutcomeUnknown {
                        operation: "RunInstances",
                        region: region.to_string(),
                        message: format!(
                            "machine {}: its answer was lost and {LOOKUP_ATTEMPTS} lookups by its tag failed (last: {error})",
                            machine.id
                        ),
                    })
                }
                Err(error) => {
                    tracing::warn!(machine = %machine.id, %error, attempt, "cannot look the launch up yet");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    /// Counts the live instances of this cluster in the zones it serves,
    /// in every region: one left in a zone no longer served is not the
    /// cluster's to manage (the clustersitter reports it at start), so it
    /// does not hold a place under `max_machines`.
    async fn live_count(&self) -> Result<usize, ProviderError> {
        let mut count = 0;
        for region in self.clients.keys() {
            let served: Vec<String> = self
                .settings
                .ec2
                .zones
                .iter()
                .filter(|(_, zone)| zone.region == *region)
                .map(|(name, _)| name.clone())
                .collect();
            if served.is_empty() {
                continue;
            }
            let in_served = Filter::builder()
                .name(format!("tag:{TAG_ZONE}"))
                .set_values(Some(served))
                .build();
            count += self
                .describe(region, &LIVE_STATES, vec![in_served])
                .await?
                .len();
        }
        Ok(count)
    }

    /// The RunInstances request for `machine` as `itype` in `zone`.
    async fn launch_request(
        &self,
        machine: &NewMachine,
        zone: &Ec2Zone,
        itype: &InstanceType,
    ) -> Result<
        aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder,
        ProviderError,
    > {
        let sha = |name: &str| {
            self.settings
                .binaries_sha256
                .get(name)
                .cloned()
                .ok_or_else(|| ProviderError::Config(format!("no SHA-256 of the {name} binary")))
        };
        let (machinesitter_sha256, tasksitter_sha256) = (sha("machinesitter")?, sha("tasksitter")?);
        let script = UserData {
            cluster_url: machine.cluster_url.trim_end_matches('/'),
            token: &self.settings.token,
            machine_id: &machine.id,
            zone: &machine.zone,
            vcpus: itype.vcpus,
            memory_mib: itype.memory_mib,
            machinesitter_sha256: &machinesitter_sha256,
            tasksitter_sha256: &tasksitter_sha256,
        }
        .render();
        if script.len() > USER_DATA_LIMIT {
            return Err(ProviderError::Config(format!(
                "the user data is {} bytes, over EC2's {USER_DATA_LIMIT}",
                script.len()
            )));
        }
        let mut tags = vec![
            tag(TAG_CLUSTER, &self.settings.cluster_name),
            tag(TAG_MACHINE_ID, &machine.id),
            tag(TAG_ZONE, &machine.zone),
            tag("Name", &machine.id),
        ];
        tags.extend(zone.tags.iter().map(|(k, v)| tag(k, v)));
        let mut request = self
            .client(&zone.region)?
            .run_instances()
            .image_id(&zone.ami)
            .instance_type(aws_sdk_ec2::types::InstanceType::from(itype.name))
            .min_count(1)
            .max_count(1)
            .client_token(client_token(&self.settings.cluster_name, &machine.id))
            .placement(
                Placement::builder()
                    .availability_zone(&zone.availability_zone)
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags))
                    .build(),
            )
            .user_data(base64::engine::general_purpose::STANDARD.encode(script));
        if let Some(subnet) = &zone.subnet {
            request = request.subnet_id(subnet);
        }
        for group in &zone.security_groups {
            request = request.security_group_ids(group);
        }
        if let Some(key) = &zone.key_name {
            request = request.key_name(key);
        }
        if let Some(profile) = &zone.iam_instance_profile {
            let spec = IamInstanceProfileSpecification::builder();
            let spec = if profile.starts_with("arn:") {
                spec.arn(profile)
            } else {
                spec.name(profile)
            };
            request = request.iam_instance_profile(spec.build());
        }
        if let Some(size) = zone.root_volume_gb {
            let device = self.root_device(&zone.region, &zone.ami).await?;
            request = request.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(i32::try_from(size).unwrap_or(i32::MAX))
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            );
        }
        Ok(request)
    }

    /// The region and the instance of `provider_id`, if a region served
    /// knows it (DescribeInstances with an `instance-id` filter, which,
    /// unlike `InstanceIds`, answers an unknown id with nothing).
    async fn locate(&self, provider_id: &str) -> Result<Option<(String, Instance)>, ProviderError> {
        for region in self.clients.keys() {
            let found = self
                .describe_filtered(region, vec![filter("instance-id", provider_id)])
                .await?;
            if let Some(instance) = found.into_iter().next() {
                return Ok(Some((region.clone(), instance)));
            }
        }
        Ok(None)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn tag_filter(key: &str, value: &str) -> Filter {
    filter(&format!("tag:{key}"), value)
}

fn tag_value<'a>(instance: &'a Instance, key: &str) -> Option<&'a str> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn state_word(instance: &Instance) -> String {
    instance
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// RunInstances' idempotency token for a machine (EC2: at most 64 ASCII
/// characters, unique per request): `cerebro-` and 48 hex digits of the
/// SHA-256 of the cluster name and the machine id, so the same machine
/// always asks with the same token and no two machines share one.
pub fn client_token(cluster_name: &str, machine_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(cluster_name.as_bytes());
    hasher.update([0]);
    hasher.update(machine_id.as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(24).map(|b| format!("{b:02x}")).collect();
    format!("cerebro-{hex}")
}

/// The wait before launch attempt `attempt + 1` (from 1): 2, 4, 8 s...
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(attempt.min(6)))
}

fn details(region: &str, instance: &Instance) -> ProviderDetails {
    ProviderDetails {
        instance_type: instance.instance_type().map(|t| t.as_str().to_string()),
        region: Some(region.to_string()),
        availability_zone: instance
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_string),
        private_address: instance.private_ip_address().map(str::to_string),
        public_address: instance.public_ip_address().map(str::to_string),
        provider_state: Some(state_word(instance)),
    }
}

/// The size of an instance: its type's, when Cerebro knows the type.
fn instance_size(instance: &Instance) -> Option<Resources> {
    instance
        .instance_type()
        .and_then(|t| instance_type(t.as_str()))
        .map(InstanceType::resources)
}

fn provisioned(region: &str, instance: &Instance, fallback: Resources) -> Provisioned {
    Provisioned {
        provider_id: instance.instance_id().unwrap_or_default().to_string(),
        size: instance_size(instance).unwrap_or(fallback),
        details: details(region, instance),
    }
}

#[async_trait]
impl MachineProvider for Ec2Provider {
    fn kind(&self) -> &'static str {
        "ec2"
    }

    fn largest_machine(&self, zone: &str) -> Option<Resources> {
        self.settings.ec2.zones.get(zone).map(Ec2Zone::largest)
    }

    /// An instance boots, cloud-init runs its user data, and the user data
    /// downloads the binaries (retrying for up to 5 minutes while the
    /// cluster does not answer) before the machinesitter registers.
    fn boot_timeout(&self) -> Duration {
        BOOT_TIMEOUT
    }

    /// Adopts the live instance tagged with `machine.id` if there is one;
    /// else launches the smallest allowed type holding `machine.reserved`
    /// (RunInstances), without the SDK's retries: after a transient
    /// failure the launch may have happened, so the tags are looked up
    /// again (until a lookup answers) before the next attempt. Errors: a
    /// refusal of RunInstances (`Api`, permanent), `Api` after
    /// `LAUNCH_ATTEMPTS` transient failures each followed by a lookup that
    /// answered none, or `OutcomeUnknown` when no lookup could answer.
    async fn provision(&self, machine: &NewMachine) -> Result<Provisioned, ProviderError> {
        let zone = self.zone(&machine.zone)?;
        let region = zone.region.as_str();
        let itype = zone.smallest_holding(machine.reserved).ok_or_else(|| {
            ProviderError::Config(format!(
                "no instance type allowed in {} holds {} cores and {} MB (allowed: {})",
                machine.zone,
                machine.reserved.cpu,
                machine.reserved.mem_mb,
                zone.instance_types
                    .iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if let Some(instance) = self.find_machine(region, &machine.id).await?.first() {
            tracing::info!(machine = %machine.id, instance = ?instance.instance_id(), "adopting the instance already launched for this machine");
            return Ok(provisioned(region, instance, itype.resources()));
        }
        let live = self.live_count().await?;
        if live >= self.settings.max_machines {
            return Err(ProviderError::Limit(self.settings.max_machines));
        }
        let request = self.launch_request(machine, zone, itype).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = request
                .clone()
                .customize()
                .config_override(
                    aws_sdk_ec2::config::Config::builder().retry_config(RetryConfig::disabled()),
                )
                .send()
                .await
                .map_err(|e| api_error("RunInstances", region, e));
            match result {
                Ok(output) => {
                    let instance =
                        output
                            .instances()
                            .first()
                            .ok_or_else(|| ProviderError::Api {
                                operation: "RunInstances",
                                region: region.to_string(),
                                code: "NoInstance".into(),
                                message: "the answer lists no instance".into(),
                                transient: true,
                            })?;
                    tracing::info!(machine = %machine.id, instance = ?instance.instance_id(), instance_type = itype.name, zone = %machine.zone, "launched");
                    return Ok(provisioned(region, instance, itype.resources()));
                }
                Err(error) if is_transient(&error) => {
                    tracing::warn!(machine = %machine.id, %error, attempt, "launch failed on the way; looking for it before trying again");
                    tokio::time::sleep(backoff(attempt)).await;
                    // It may have launched: only a lookup that answers may
                    // say no. Giving up without one would make the cluster
                    // forget the machine id, and its replacement (a new id,
                    // a new ClientToken) a second instance.
                    if let Some(instance) =
                        self.look_up_after_launch(region, machine).await?.first()
                    {
                        return Ok(provisioned(region, instance, itype.resources()));
                    }
                    if attempt >= LAUNCH_ATTEMPTS {
                        // Answered: nothing launched.
                        return Err(error);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// DescribeInstances by instance id in each region served: pending,
    /// running and stopping instances exist; stopped, shutting-down,
    /// terminated and unknown ones are gone (nothing of them runs).
    async fn status(&self, provider_id: &str) -> Result<ProviderStatus, ProviderError> {
        if provider_id.is_empty() {
            return Ok(ProviderStatus::Gone {
                state: "absent".into(),
            });
        }
        Ok(match self.locate(provider_id).await? {
            None => ProviderStatus::Gone {
                state: "absent".into(),
            },
            Some((_, instance)) => {
                let state = state_word(&instance);
                match instance.state().and_then(|s| s.name()) {
                    Some(
                        InstanceStateName::Pending
                        | InstanceStateName::Running
                        | InstanceStateName::Stopping,
                    ) => ProviderStatus::Exists { state },
                    _ => ProviderStatus::Gone { state },
                }
            }
        })
    }

    /// TerminateInstances on the instance and on any other live instance
    /// tagged with `machine_id` (a duplicate launch), then DescribeInstances
    /// until each is terminated or unknown: Ok only then; an error after
    /// 10 minutes.
    async fn terminate(&self, machine_id: &str, provider_id: &str) -> Result<(), ProviderError> {
        let mut doomed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if !provider_id.is_empty() {
            if let Some((region, _)) = self.locate(provider_id).await? {
                doomed
                    .entry(region)
                    .or_default()
                    .push(provider_id.to_string());
            }
        }
        for region in self.clients.keys() {
            for instance in self.find_machine(region, machine_id).await? {
                if let Some(id) = instance.instance_id() {
                    let ids = doomed.entry(region.clone()).or_default();
                    if !ids.iter().any(|known| known == id) {
                        ids.push(id.to_string());
                    }
                }
            }
        }
        for (region, ids) in &doomed {
            self.client(region)?
                .terminate_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .map_err(|e| api_error("TerminateInstances", region, e))?;
        }
        let deadline = Instant::now() + TERMINATE_WAIT;
        let mut pause = Duration::from_secs(1);
        loop {
            let mut left = Vec::new();
            for (region, ids) in &doomed {
                let found = self
                    .describe_filtered(
                        region,
                        vec![Filter::builder()
                            .name("instance-id")
                            .set_values(Some(ids.clone()))
                            .build()],
                    )
                    .await?;
                left.extend(
                    found
                        .iter()
                        .filter(|i| {
                            i.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated)
                        })
                        .map(|i| {
                            format!(
                                "{} ({})",
                                i.instance_id().unwrap_or_default(),
                                state_word(i)
                            )
                        }),
                );
            }
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ProviderError::Api {
                    operation: "DescribeInstances",
                    region: doomed.keys().cloned().collect::<Vec<_>>().join(","),
                    code: "NotTerminated".into(),
                    message: format!(
                        "machine {machine_id}: still not terminated after {} s: {}",
                        TERMINATE_WAIT.as_secs(),
                        left.join(", ")
                    ),
                    transient: true,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    /// The live instances tagged with this cluster in every region
    /// served, with their machine id and zone from their tags.
    async fn discover(&self) -> Result<Vec<FoundMachine>, ProviderError> {
        let mut found = Vec::new();
        for region in self.clients.keys() {
            for instance in self.describe(region, &LIVE_STATES, Vec::new()).await? {
                let (Some(machine_id), Some(provider_id)) =
                    (tag_value(&instance, TAG_MACHINE_ID), instance.instance_id())
                else {
                    continue;
                };
                let zone = tag_value(&instance, TAG_ZONE)
                    .map(str::to_string)
                    .or_else(|| {
                        instance
                            .placement()
                            .and_then(|p| p.availability_zone())
                            .map(|az| format!("aws-{az}"))
                    });
                let Some(zone) = zone else { continue };
                found.push(FoundMachine {
                    machine_id: machine_id.to_string(),
                    zone,
                    provider_id: provider_id.to_string(),
                    address: None,
                    size: instance_size(&instance),
                    details: details(region, &instance),
                });
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_short_and_distinct() {
        let token = client_token("ec2-demo", "m-1");
        assert_eq!(token, client_token("ec2-demo", "m-1"));
        assert!(token.len() <= 64 && token.is_ascii(), "{token}");
        assert_ne!(token, client_token("ec2-demo", "m-2"));
        assert_ne!(token, client_token("other", "m-1"));
        // The separator keeps ("a", "bc") and ("ab", "c") apart.
        assert_ne!(client_token("a", "bc"), client_token("ab", "c"));
    }

    #[test]
    fn launch_backoff_grows() {
        assert!(backoff(1) < backoff(2) && backoff(2) < backoff(3));
        assert!(backoff(40) <= Duration::from_secs(64));
    }

    #[test]
    fn sizes_come_from_the_type_table() {
        let instance = Instance::builder()
            .instance_type(aws_sdk_ec2::types::InstanceType::from("t3.small"))
            .build();
        assert_eq!(
            instance_size(&instance),
            Some(Resources {
                cpu: 2.0,
                mem_mb: 2048.0
            })
        );
        let unknown = Instance::builder()
            .instance_type(aws_sdk_ec2::types::InstanceType::from("x9.mega"))
            .build();
        assert_eq!(instance_size(&unknown), None);
    }
}
