//! The DNS reconciler: a task beside the machine reconciler that keeps the
//! provider's records of every job with a `dns_basename` as the cluster
//! wants them. Each tick it takes the desired records under the cluster
//! lock (never held across a provider call); a pass lists every basename
//! of interest, diffs ([`names::diff`]) and applies the difference. A
//! pass runs when the desired records changed since the last successful
//! one, when `[dns] period` has passed, or when a failed pass's backoff
//! has. Provider failures are events and retries; they never block
//! placement or healing, which run in their own task.

use super::names::{self, Desired};
use super::{Change, DnsError, DnsProvider, RecordSet, RecordType};
use crate::cluster::{lock, SharedCluster};
use crate::config::dns::{embedded_records_file, DnsKind};
use crate::config::ClusterConfig;
use cerebro_types::cluster::ClusterEventKind;
use cerebro_types::dns::{is_in_zone, DnsErrorView, DnsStatus};
use cerebro_types::time::now_ms;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The status `GET /api/v1/dns` answers, shared with the API.
pub type SharedDnsStatus = Arc<Mutex<DnsStatus>>;

/// How long the reconciler waits after failed passes: `first` after the
/// first failure of a streak, twice as long after each further one,
/// never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsBackoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for DnsBackoff {
    /// 1 s doubling to 5 minutes.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl DnsBackoff {
    /// The wait after `failures` failed passes in a row (at least one).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// A provider as [`build_provider`] made it.
pub struct BuiltProvider {
    /// `None`: names are computed and shown, nothing is sent (`none`, or
    /// an embedded server whose default address was taken).
    pub provider: Option<Arc<dyn DnsProvider>>,
    /// Why the configured kind runs as `none` (a warning and a
    /// `dns_failed` event at start).
    pub fallback: Option<String>,
}

/// The DNS provider `config.dns` names: the embedded server (started
/// here), RFC 2136, Dynect, or `route53` — given by the caller (from
/// `ProviderFactory::make_dns`), as this library does not link the AWS SDK.
///
/// # Errors
/// [`DnsError`] when the provider cannot start: an embedded server whose
/// configured `listen` cannot be bound, settings a provider refuses, or
/// `route53` in a build without it (`route53` is `None`).
pub async fn build_provider(
    config: &ClusterConfig,
    route53: Option<Result<Arc<dyn DnsProvider>, DnsError>>,
) -> Result<BuiltProvider, DnsError> {
    let dns = &config.dns;
    let missing = |what: &str| DnsError::Config(format!("[dns] kind = \"{what}\" has no settings"));
    let zone = || {
        dns.zone
            .clone()
            .ok_or_else(|| DnsError::Config("[dns] zone is required".into()))
    };
    let provider: Arc<dyn DnsProvider> = match dns.kind {
        DnsKind::None => {
            return Ok(BuiltProvider {
                provider: None,
                fallback: None,
            })
        }
        DnsKind::Embedded => {
            let settings = dns.embedded.as_ref().ok_or_else(|| missing("embedded"))?;
            let records = embedded_records_file(&config.state_dir);
            match super::embedded::EmbeddedDns::start(settings, dns.zone.clone(), records).await {
                Ok(server) => server,
                Err(error) if !settings.configured => {
                    let reason = format!(
                        "the embedded DNS server cannot answer on {} ({error}): names are computed but not served; set [dns] listen to another address",
                        settings.listen
                    );
                    tracing::warn!("{reason}");
                    return Ok(BuiltProvider {
                        provider: None,
                        fallback: Some(reason),
                    });
                }
                Err(error) => {
                    return Err(DnsError::Config(format!(
                        "the embedded DNS server cannot answer on {}: {error}",
                        settings.listen
                    )))
                }
            }
        }
        DnsKind::Rfc2136 => {
            let settings = dns.rfc2136.clone().ok_or_else(|| missing("rfc2136"))?;
            Arc::new(super::rfc2136::Rfc2136Provider::new(zone()?, settings)?)
        }
        DnsKind::Dynect => {
            let settings = dns.dynect.clone().ok_or_else(|| missing("dynect"))?;
            Arc::new(super::dynect::DynectProvider::new(zone()?, settings)?)
        }
        DnsKind::Route53 => match route53 {
            Some(provider) => provider?,
            None => {
                return Err(DnsError::Config(
                    "this clustersitter is built without the route53 DNS provider".into(),
                ))
            }
        },
    };
    Ok(BuiltProvider {
        provider: Some(provider),
        fallback: None,
    })
}

/// The status before the first tick.
pub fn initial_status(config: &ClusterConfig, provider: Option<&dyn DnsProvider>) -> DnsStatus {
    DnsStatus {
        kind: match provider {
            Some(provider) => provider.kind().to_string(),
            None => "none".to_string(),
        },
        zone: config.dns.zone.clone(),
        ttl: config.dns.ttl,
        listen: provider
            .and_then(|p| p.listen_address())
            .map(|a| a.to_string()),
        ..DnsStatus::default()
    }
}

/// The DNS reconciler's task (see the module).
pub struct DnsReconciler {
    cluster: SharedCluster,
    provider: Option<Arc<dyn DnsProvider>>,
    status: SharedDnsStatus,
    cluster_name: String,
    poll_interval: Duration,
    period: Duration,
    backoff: DnsBackoff,
    /// What the provider held after the last successful pass.
    synced: Option<Desired>,
    last_pass: Option<Instant>,
    failures: u32,
    /// Error codes already told as events in this failure streak.
    told: BTreeSet<String>,
    next_attempt: Option<Instant>,
    /// Names held by another owner, already told as events.
    conflicts: BTreeSet<String>,
}

impl DnsReconciler {
    /// For `cluster`, sending to `provider` (`None`: compute and show
    /// only), its status in `status`.
    pub fn new(
        cluster: SharedCluster,
        provider: Option<Arc<dyn DnsProvider>>,
        status: SharedDnsStatus,
    ) -> Self {
        let (cluster_name, poll_interval, period) = {
            let cluster = lock(&cluster);
            let config = cluster.config();
            (
                config.cluster_name.clone(),
                config.poll_interval,
                config.dns.period,
            )
        };
        Self {
            cluster,
            provider,
            status,
            cluster_name,
            poll_interval,
            period,
            backoff: DnsBackoff::default(),
            synced: None,
            last_pass: None,
            failures: 0,
            told: BTreeSet::new(),
            next_attempt: None,
            conflicts: BTreeSet::new(),
        }
    }

    /// Replaces the backoff (tests use short ones).
    pub fn with_backoff(mut self, backoff: DnsBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Ticks every `poll_interval` until `shutdown`; a pass in flight is
    /// abandoned at shutdown (the next start redoes it).
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = self.tick(Instant::now()) => {}
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll_interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One tick at `now`: takes the desired records, and runs a pass if
    /// one is due. Answers whether a pass ran.
    pub async fn tick(&mut self, now: Instant) -> bool {
        let snapshot = lock(&self.cluster).dns_snapshot();
        {
            let mut status = lock_status(&self.status);
            status.desired = snapshot.desired.record_sets();
        }
        let Some(provider) = self.provider.clone() else {
            return false;
        };
        if !snapshot.settled {
            return false;
        }
        let due = if self.failures > 0 {
            self.next_attempt.is_none_or(|at| now >= at)
        } else {
            self.synced.as_ref() != Some(&snapshot.desired)
                || self
                    .last_pass
                    .is_none_or(|at| now.saturating_duration_since(at) >= self.period)
        };
        if !due {
            return false;
        }
        match pass(
            provider.as_ref(),
            &self.cluster_name,
            &snapshot.desired,
            snapshot.basenames.keys(),
        )
        .await
        {
            Ok(outcome) => self.succeeded(now, &snapshot, outcome),
            Err(error) => self.failed(now, error),
        }
        true
    }

    fn succeeded(
        &mut self,
        now: Instant,
        snapshot: &crate::cluster::DnsSnapshot,
        outcome: PassOutcome,
    ) {
        let mut cluster = lock(&self.cluster);
        if self.failures > 0 {
            cluster.dns_event(
                ClusterEventKind::DnsRecovered,
                "",
                format!(
                    "the DNS provider answers again after {} failed passes",
                    self.failures
                ),
            );
        }
        for (job, message) in updates_by_job(&outcome, snapshot) {
            cluster.dns_event(ClusterEventKind::DnsUpdated, &job, message);
        }
        for name in outcome.conflicts.difference(&self.conflicts) {
            let job = snapshot
                .desired
                .owners
                .get(name)
                .cloned()
                .unwrap_or_default();
            cluster.dns_event(
                ClusterEventKind::DnsConflict,
                &job,
                format!("{name} is held by another owner (no ownership record of cluster '{}'): left alone", self.cluster_name),
            );
        }
        for basename in snapshot.basenames.keys() {
            let wanted = snapshot
                .desired
                .owners
                .keys()
                .any(|name| is_in_zone(name, basename));
            if !wanted {
                cluster.dns_basename_empty(basename);
            }
        }
        drop(cluster);
        self.conflicts = outcome.conflicts.clone();
        self.failures = 0;
        self.told.clear();
        self.next_attempt = None;
        self.last_pass = Some(now);
        self.synced = Some(snapshot.desired.clone());
        let mut status = lock_status(&self.status);
        status.last_sync_ms = Some(now_ms());
        status.error = None;
        status.conflicts = self.conflicts.iter().cloned().collect();
    }

    fn failed(&mut self, now: Instant, error: DnsError) {
        self.failures += 1;
        let delay = self.backoff.after(self.failures);
        self.next_attempt = Some(now + delay);
        self.last_pass = Some(now);
        let message = error.to_string();
        tracing::warn!(
            failures = self.failures,
            ?delay,
            "DNS pass failed: {message}"
        );
        if self.told.insert(error.code().to_string()) {
            lock(&self.cluster).dns_event(
                ClusterEventKind::DnsFailed,
                "",
                format!(
                    "{message} (retrying in {}s, doubling to {}s)",
                    delay.as_secs_f64(),
                    self.backoff.max.as_secs()
                ),
            );
        }
        let mut status = lock_status(&self.status);
        status.error = Some(DnsErrorView {
            message,
            failures: self.failures,
            next_attempt_ms: now_ms() + delay.as_millis() as u64,
        });
    }
}

fn lock_status(status: &SharedDnsStatus) -> std::sync::MutexGuard<'_, DnsStatus> {
    status
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one successful pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// What was listed (every basename, each RRset once).
    pub listed: Vec<RecordSet>,
    /// What was applied, in order.
    pub applied: Vec<Change>,
    pub conflicts: BTreeSet<String>,
}

/// One pass: lists every basename of `basenames`, diffs with `desired`
/// and applies the difference (nothing when there is none).
///
/// # Errors
/// The provider's first failure; the pass stops there.
pub async fn pass<'a>(
    provider: &dyn DnsProvider,
    cluster: &str,
    desired: &Desired,
    basenames: impl Iterator<Item = &'a String>,
) -> Result<PassOutcome, DnsError> {
    // A name under two listed basenames is listed twice: keep it once.
    let mut listed: BTreeMap<(String, RecordType), RecordSet> = BTreeMap::new();
    for basename in basenames {
        for set in provider.list(basename).await? {
            listed.insert((set.name.clone(), set.rtype), set);
        }
    }
    let listed: Vec<RecordSet> = listed.into_values().collect();
    let diff = names::diff(&listed, desired, cluster);
    if !diff.changes.is_empty() {
        provider.apply(&diff.changes).await?;
    }
    Ok(PassOutcome {
        listed,
        applied: diff.changes,
        conflicts: diff.conflicts,
    })
}

/// One `dns_updated` message per job: the names added, changed and
/// removed. A removed name's job is the one its basename was held for.
fn updates_by_job(
    outcome: &PassOutcome,
    snapshot: &crate::cluster::DnsSnapshot,
) -> BTreeMap<String, String> {
    let listed: BTreeSet<&str> = outcome.listed.iter().map(|s| s.name.as_str()).collect();
    let mut by_job: BTreeMap<String, [BTreeSet<String>; 3]> = BTreeMap::new();
    for change in &outcome.applied {
        let name = change.record_set().name.as_str();
        let wanted = snapshot.desired.owners.get(name);
        let job = wanted.cloned().or_else(|| {
            snapshot
                .basenames
                .iter()
                .find(|(basename, _)| is_in_zone(name, basename))
                .map(|(_, job)| job.clone())
        });
        let kind = match (listed.contains(name), wanted.is_some()) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        by_job.entry(job.unwrap_or_default()).or_default()[kind].insert(name.to_string());
    }
    by_job
        .into_iter()
        .map(|(job, [added, changed, removed])| {
            let parts: Vec<String> = [("added", added), ("changed", changed), ("removed", removed)]
                .into_iter()
                .filter(|(_, names)| !names.is_empty())
                .map(|(word, names)| {
                    format!(
                        "{word} {}",
                        names.into_iter().collect::<Vec<_>>().join(", ")
                    )
                })
                .collect();
            (job, format!("DNS names {}", parts.join("; ")))
        })
        .collect()
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
