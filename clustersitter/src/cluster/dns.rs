//! The cluster's side of DNS names: which jobs get names, machine
//! numbers (persisted), the hosts the desired records are made of, and
//! the names the views show. The DNS reconciler (`crate::dns::reconcile`)
//! takes these under the lock and talks to the provider without it.

use super::*;
use crate::dns::names::{self, Desired, Host};
use cerebro_types::deploy::DeployState;
use cerebro_types::dns::{is_in_zone, normalize_name, zone_name};
use std::collections::BTreeSet;

/// What the DNS reconciler takes from the cluster for one tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSnapshot {
    pub desired: Desired,
    /// Every basename to list: wanted ones and those persisted as
    /// possibly holding records, each with its (last) job.
    pub basenames: BTreeMap<String, String>,
    /// Whether every ready machine hosting a named job has answered a
    /// poll since this clustersitter started. Until then whether its
    /// instances run is unknown (reports are not persisted), and a pass
    /// would take every `ZONE.basename` away for a moment after each
    /// restart; the reconciler waits. A machine that never answers turns
    /// unreachable after the failure threshold, which settles it too.
    pub settled: bool,
}

/// A job without names, and why.
pub type Nameless = (String, NamelessReason);

/// Why a job with a `dns_basename` gets no names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamelessReason {
    /// Its basename is not in the served `[dns] zone`.
    OutsideZone { basename: String, zone: String },
    /// Another job's basename is the same or one holds the other.
    Overlaps { basename: String, other_job: String },
}

impl std::fmt::Display for NamelessReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NamelessReason::OutsideZone { basename, zone } => write!(
                f,
                "dns_basename '{basename}' is not in the DNS zone '{zone}' this cluster serves: its names are not written"
            ),
            NamelessReason::Overlaps {
                basename,
                other_job,
            } => write!(
                f,
                "dns_basename '{basename}' overlaps job '{other_job}''s: its names are not written"
            ),
        }
    }
}

impl Cluster {
    /// Problems of `basename` (for job `job`) in this cluster: outside
    /// the served zone, or overlapping another job's basename (among
    /// `known`, the jobs as they would be).
    fn basename_problem<'a>(
        &self,
        job: &str,
        basename: &str,
        others: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Option<NamelessReason> {
        let basename = normalize_name(basename);
        if let Some(zone) = &self.config.dns.zone {
            if !is_in_zone(&basename, zone) {
                return Some(NamelessReason::OutsideZone {
                    basename,
                    zone: zone.clone(),
                });
            }
        }
        for (other_job, other) in others {
            if other_job != job && names::basenames_overlap(&basename, &normalize_name(other)) {
                return Some(NamelessReason::Overlaps {
                    basename,
                    other_job: other_job.to_string(),
                });
            }
        }
        None
    }

    /// The check of `spec.dns_basename` for [`Cluster::check_job_among`]:
    /// in the served zone, and no other job's (nor one of `batch`) the
    /// same, above or below it.
    pub(super) fn check_dns_basename(
        &self,
        spec: &JobSpec,
        batch: &[JobSpec],
        errors: &mut ValidationErrors,
    ) {
        let Some(basename) = &spec.dns_basename else {
            return;
        };
        let others = self
            .state
            .jobs
            .iter()
            .filter(|(name, _)| !batch.iter().any(|b| b.name() == name.as_str()))
            .filter_map(|(name, job)| Some((name.as_str(), job.spec.dns_basename.as_deref()?)))
            .chain(
                batch
                    .iter()
                    .filter_map(|job| Some((job.name(), job.dns_basename.as_deref()?))),
            );
        // The longest name it makes: the highest machine number a zone
        // can reach, in each zone of the job. A basename of at most 200
        // characters and zones of at most 48 fit unless max_machines runs
        // to millions; this keeps such a name out all the same.
        let highest = u32::try_from(self.config.provider.max_machines).unwrap_or(u32::MAX);
        for zone in spec.deployment_layout.keys() {
            let longest = cerebro_types::dns::machine_name(highest, zone, basename);
            if let Err(message) = cerebro_types::dns::check_host_name(&longest) {
                errors.push(
                    "dns_basename",
                    format!(
                        "'{basename}' makes names DNS cannot carry in zone '{zone}': {message}"
                    ),
                );
                return;
            }
        }
        if let Some(problem) = self.basename_problem(spec.name(), basename, others) {
            let message = match problem {
                NamelessReason::OutsideZone { basename, zone } => format!(
                    "'{basename}' is not in the DNS zone '{zone}' this cluster serves ([dns] zone)"
                ),
                NamelessReason::Overlaps {
                    basename,
                    other_job,
                } => format!(
                    "'{basename}' would share names with job '{other_job}' (the same basename, or one under the other)"
                ),
            };
            errors.push("dns_basename", message);
        }
    }

    /// Jobs with names: (job, normalized basename), sorted by job. A job
    /// whose basename is outside the zone, or overlaps that of a job
    /// before it (by name), has none, and is in the second list.
    pub fn dns_jobs(&self) -> (Vec<(String, String)>, Vec<Nameless>) {
        let mut named: Vec<(String, String)> = Vec::new();
        let mut nameless = Vec::new();
        for (name, job) in &self.state.jobs {
            let Some(basename) = &job.spec.dns_basename else {
                continue;
            };
            let before = named.iter().map(|(j, b)| (j.as_str(), b.as_str()));
            match self.basename_problem(name, basename, before) {
                Some(reason) => nameless.push((name.clone(), reason)),
                None => named.push((name.clone(), normalize_name(basename))),
            }
        }
        (named, nameless)
    }

    /// At start: one event per stored job whose names will not be
    /// written (its basename left the zone, or overlaps another's).
    pub fn note_nameless_jobs(&mut self) {
        let (_, nameless) = self.dns_jobs();
        for (job, reason) in nameless {
            self.event(ClusterEventKind::DnsConflict, &job, reason.to_string());
        }
    }

    /// Per `ZONE.basename`, the machines hosting the job there that keep
    /// or get a number (not being decommissioned), oldest first.
    fn dns_hosting(&self, named: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
        let mut hosting: BTreeMap<String, Vec<&MachineRecord>> = BTreeMap::new();
        for (job, basename) in named {
            let mut seen = BTreeSet::new();
            for assignment in self.state.assignments.iter().filter(|a| a.key.job == *job) {
                let Some(machine) = self.state.machines.get(&assignment.machine) else {
                    continue;
                };
                if machine.state() == MachineState::Decommissioning
                    || !seen.insert(machine.id.as_str())
                {
                    continue;
                }
                hosting
                    .entry(zone_name(&machine.zone, basename))
                    .or_default()
                    .push(machine);
            }
        }
        hosting
            .into_iter()
            .map(|(name, mut machines)| {
                machines.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
                (name, machines.into_iter().map(|m| m.id.clone()).collect())
            })
            .collect()
    }

    /// Brings the machine numbers up to date; answers whether they
    /// changed (then the state needs persisting).
    pub fn update_dns_numbers(&mut self) -> bool {
        let (named, _) = self.dns_jobs();
        let hosting = self.dns_hosting(&named);
        names::update_numbers(&mut self.state.dns_numbers, &hosting)
    }

    /// Whether machine `machine` serves `job`: it is ready, and at least
    /// one of its instances of the job runs (and, for a job with a recipe,
    /// reports the release it was sent ready). One is enough: a machine
    /// whose zone grew by an instance still starting, or with one instance
    /// crash-looping beside others that run, still answers.
    fn serves(&self, job: &str, machine: &MachineRecord) -> bool {
        if machine.state() != MachineState::Ready {
            return false;
        }
        let Some(report) = self.reports.get(&machine.id) else {
            return false;
        };
        self.assignments_on(&machine.id)
            .filter(|a| a.key.job == job)
            .any(|assignment| {
                let task = report.tasks.get(&self.task_name_of(&assignment.key));
                let runs = task
                    .and_then(|t| t.status.as_ref())
                    .is_some_and(|s| s.state.kind() == cerebro_types::StateKind::Running);
                let deployed = match self.instance_deployment(&assignment.key, &machine.id) {
                    None => true,
                    Some(deployment) => task.and_then(|t| t.deploy.as_ref()).is_some_and(|d| {
                        d.release == deployment.release_id() && d.state == DeployState::Ready
                    }),
                };
                runs && deployed
            })
    }

    /// The hosts of every named job, from the numbers as they are.
    pub fn dns_hosts(&self) -> Vec<Host> {
        let (named, _) = self.dns_jobs();
        let mut hosts = Vec::new();
        for (job, basename) in &named {
            for machine_id in self.machines_hosting(job) {
                let Some(machine) = self.state.machines.get(&machine_id) else {
                    continue;
                };
                let zone_name = zone_name(&machine.zone, basename);
                let Some(number) = self
                    .state
                    .dns_numbers
                    .get(&zone_name)
                    .and_then(|numbers| numbers.get(&machine_id))
                else {
                    continue;
                };
                // A name DNS cannot carry (a job stored before a longer
                // zone or a higher max_machines) would fail every pass:
                // that machine goes without a name instead.
                let name = format!("{number}.{zone_name}");
                if let Err(error) = cerebro_types::dns::check_host_name(&name) {
                    tracing::warn!(%error, "no DNS name for machine {machine_id} of job {job}");
                    continue;
                }
                hosts.push(Host {
                    machine: machine_id.clone(),
                    job: job.clone(),
                    basename: basename.clone(),
                    zone_name,
                    number: *number,
                    ip: names::machine_ip(
                        machine.details.private_address.as_deref(),
                        machine.address.as_deref(),
                    ),
                    serving: self.serves(job, machine),
                });
            }
        }
        hosts
    }

    /// What the DNS reconciler needs now: numbers updated, the desired
    /// records, and every basename to list (wanted ones are recorded as
    /// held before any record is written, so a crash never loses track of
    /// them). Persists when the numbers or the held basenames changed.
    pub fn dns_snapshot(&mut self) -> DnsSnapshot {
        let mut changed = self.update_dns_numbers();
        let hosts = self.dns_hosts();
        let desired =
            names::desired_records(&self.config.cluster_name, self.config.dns.ttl, &hosts);
        for host in &hosts {
            if host.ip.is_some() && self.state.dns_basenames.get(&host.basename) != Some(&host.job)
            {
                self.state
                    .dns_basenames
                    .insert(host.basename.clone(), host.job.clone());
                changed = true;
            }
        }
        if changed {
            if let Err(error) = self.persist() {
                tracing::error!(%error, "cannot persist the DNS numbers");
            }
        }
        let settled = hosts.iter().all(|host| {
            self.state
                .machines
                .get(&host.machine)
                .is_none_or(|machine| {
                    machine.state() != MachineState::Ready || self.reports.contains_key(&machine.id)
                })
        });
        DnsSnapshot {
            desired,
            basenames: self.state.dns_basenames.clone(),
            settled,
        }
    }

    /// After a successful pass: `basename` holds nothing of this cluster
    /// any more; it is forgotten unless a job still wants it.
    pub fn dns_basename_empty(&mut self, basename: &str) {
        let (named, _) = self.dns_jobs();
        if named.iter().any(|(_, b)| b == basename) {
            return;
        }
        if self.state.dns_basenames.remove(basename).is_some() {
            if let Err(error) = self.persist() {
                tracing::error!(%error, "cannot persist the DNS basenames");
            }
        }
    }

    /// Records an event for the DNS reconciler.
    pub fn dns_event(&mut self, kind: ClusterEventKind, subject: &str, message: String) {
        self.event(kind, subject, message);
    }

    /// `N.ZONE.basename` of `machine` for `job`, if it has one.
    pub(super) fn dns_machine_name(&self, job: &str, machine: &str) -> Option<String> {
        let basename = self.state.jobs.get(job)?.spec.dns_basename.as_deref()?;
        let record = self.state.machines.get(machine)?;
        let name = zone_name(&record.zone, basename);
        let number = self.state.dns_numbers.get(&name)?.get(machine)?;
        Some(format!("{number}.{name}"))
    }

    /// Every `N.ZONE.basename` of `machine`, sorted.
    pub(super) fn dns_names_of_machine(&self, machine: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .state
            .dns_numbers
            .iter()
            .filter_map(|(name, numbers)| Some(format!("{}.{name}", numbers.get(machine)?)))
            .collect();
        names.sort();
        names
    }

    /// `ZONE.basename` of every zone `job` has instances in, sorted; none
    /// for a job whose names are not written ([`Cluster::dns_jobs`]).
    pub(super) fn dns_names_of_job(&self, job: &str, zones: &BTreeSet<String>) -> Vec<String> {
        let (named, _) = self.dns_jobs();
        let Some((_, basename)) = named.iter().find(|(name, _)| name == job) else {
            return Vec::new();
        };
        zones.iter().map(|zone| zone_name(zone, basename)).collect()
    }
}
