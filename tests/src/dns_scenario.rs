//! The one end-to-end DNS scenario every provider runs (issue 14,
//! "Tests"): a local cluster with zones `zone-a` and `zone-b` and
//! `[dns] zone = "cerebro.test"`, a job with `dns_basename =
//! "web.cerebro.test"`, and the DNS server itself read after every step
//! through a [`DnsBackend`] (BIND by zone transfer, the embedded server by
//! queries, Dyn's published zone, Route 53's ListResourceRecordSets).
//!
//! The steps, each checked against the server and the views:
//! 1. a foreign record is seeded before the cluster starts;
//! 2. two instances in zone-a and one in zone-b give exactly
//!    `0.zone-a`, `1.zone-a`, `0.zone-b`, `zone-a`, `zone-b` under the
//!    basename, each with its ownership TXT, shown by the CLI and views;
//! 3. the machine holding `0.zone-a` is killed: its replacement gets 0;
//! 4. the foreign record is untouched at every step;
//! 5. a `kill -9` restart and a clean (SIGTERM) restart change nothing;
//! 6. an owned TXT left without its address is removed by the next pass;
//! 7. the job stopped leaves `ZONE.basename` with no records;
//! 8. the job removed leaves only the foreign record.

use crate::{poll_for, wait_for, Cluster, ClusterOptions, SIGTERM, TIMEOUT};
use cerebro_types::cluster::{ClusterEvent, ClusterEventKind, InstanceState, MachineView};
use cerebro_types::dns::{is_in_zone, ownership_text, RecordSet, RecordType};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The DNS zone every backend serves.
pub const ZONE: &str = "cerebro.test";
/// The job's `dns_basename`.
pub const BASENAME: &str = "web.cerebro.test";
/// The cluster's name: what the ownership TXT records carry.
pub const CLUSTER: &str = "dns-e2e";
/// The record no Cerebro wrote (an A in TEST-NET-1, RFC 5737).
pub const FOREIGN: &str = "foreign.web.cerebro.test";
pub const FOREIGN_IP: &str = "192.0.2.7";
/// The foreign record's TTL (not the 60 Cerebro writes).
pub const FOREIGN_TTL: u32 = 300;
/// The TTL Cerebro writes (`[dns] ttl` left at its default).
pub const TTL: u32 = 60;
/// `[dns] period`: how often a pass runs with nothing changed.
pub const PERIOD: &str = "1s";
/// How long a step may take to show in DNS: machines start, are
/// replaced, and a pass may be in backoff.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// What happened to the clustersitter, told to the backend as it happens
/// (the Dyn test checks its request log per boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// It started and serves (its address file is written).
    Booted,
    /// It was killed with SIGKILL.
    Killed,
    /// It stopped by itself after SIGTERM.
    Stopped,
}

/// A DNS provider as the scenario drives it: the config for the cluster
/// and a way to read and change the real server behind Cerebro's back.
pub trait DnsBackend {
    /// For messages: `embedded`, `rfc2136`, ...
    fn name(&self) -> &'static str;

    /// The whole `[dns]` section (see [`dns_section`]).
    fn dns_section(&self) -> String;

    /// Extra environment of the clustersitter (credentials).
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Every A, AAAA and TXT RRset at or under `basename` as the server
    /// holds (and serves) it now. `cluster` is booted.
    fn list(&mut self, cluster: &Cluster, basename: &str) -> BTreeSet<RecordSet>;

    /// Writes `set` into the server directly, as another tool (or a
    /// crashed clustersitter) would have. `cluster` may not be booted
    /// yet; a backend that can only be changed while the clustersitter is
    /// down (the embedded server) stops and boots it again.
    fn seed(&mut self, cluster: &mut Cluster, set: &RecordSet);

    /// Whether [`DnsBackend::list`] tells TTLs (queries through
    /// `crate::dns` do not).
    fn knows_ttl(&self) -> bool {
        true
    }

    /// A counter the server moves on every change it accepts (a zone
    /// serial, a count of change requests), if it has one.
    fn changes(&mut self, _cluster: &Cluster) -> Option<u64> {
        None
    }

    /// Told at every boot, kill and clean stop of the clustersitter.
    fn lifecycle(&mut self, _cluster: &Cluster, _event: Lifecycle) {}
}

/// A `[dns]` section of `kind` for [`ZONE`] with a short [`PERIOD`], then
/// `extra` lines (the provider's settings).
pub fn dns_section(kind: &str, extra: &str) -> String {
    format!("[dns]\nkind = \"{kind}\"\nzone = \"{ZONE}\"\nperiod = \"{PERIOD}\"\n{extra}\n")
}

/// An RRset of `values` at `name`.
pub fn record_set(name: &str, rtype: RecordType, ttl: u32, values: &[&str]) -> RecordSet {
    RecordSet {
        name: name.to_string(),
        rtype,
        ttl,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

/// The foreign record seeded before anything else.
pub fn foreign_record() -> RecordSet {
    record_set(FOREIGN, RecordType::A, FOREIGN_TTL, &[FOREIGN_IP])
}

/// `name` as Cerebro writes it for a local machine: A 127.0.0.1 and the
/// ownership TXT.
fn owned(name: &str) -> [RecordSet; 2] {
    [
        record_set(name, RecordType::A, TTL, &["127.0.0.1"]),
        record_set(name, RecordType::Txt, TTL, &[&ownership_text(CLUSTER)]),
    ]
}

/// The foreign record and every owned name of `names` (relative to
/// [`BASENAME`]).
fn expected(names: &[&str]) -> BTreeSet<RecordSet> {
    let mut sets: BTreeSet<RecordSet> = names
        .iter()
        .flat_map(|n| owned(&format!("{n}.{BASENAME}")))
        .collect();
    sets.insert(foreign_record());
    sets
}

/// The names the running job has: three machines, two zones.
const ALL_NAMES: [&str; 5] = ["0.zone-a", "1.zone-a", "0.zone-b", "zone-a", "zone-b"];
/// The names of the stopped job: the machines still hold its instances.
const MACHINE_NAMES: [&str; 3] = ["0.zone-a", "1.zone-a", "0.zone-b"];

/// `sets` without TTLs, for backends that cannot tell them.
fn comparable(knows_ttl: bool, sets: &BTreeSet<RecordSet>) -> BTreeSet<RecordSet> {
    if knows_ttl {
        return sets.clone();
    }
    sets.iter()
        .map(|s| RecordSet {
            ttl: 0,
            ..s.clone()
        })
        .collect()
}

/// Waits until the server's listing under [`BASENAME`] is `want`; fails
/// with the last listing and the cluster's DNS status.
fn wait_listing(
    backend: &mut dyn DnsBackend,
    cluster: &Cluster,
    want: &BTreeSet<RecordSet>,
    what: &str,
) -> BTreeSet<RecordSet> {
    let knows_ttl = backend.knows_ttl();
    let want = comparable(knows_ttl, want);
    let mut last = BTreeSet::new();
    let found = poll_for(STEP_TIMEOUT, || {
        last = comparable(knows_ttl, &backend.list(cluster, BASENAME));
        (last == want).then(|| last.clone())
    });
    found.unwrap_or_else(|| {
        panic!(
            "[{}] {what}: the server never held exactly the wanted records within {STEP_TIMEOUT:?}\n\
             missing: {:#?}\nunexpected: {:#?}\nDNS status: {:?}",
            backend.name(),
            want.difference(&last).collect::<Vec<_>>(),
            last.difference(&want).collect::<Vec<_>>(),
            cluster.dns_status()
        )
    })
}

/// Every event, oldest first.
fn events(cluster: &Cluster) -> Vec<ClusterEvent> {
    let mut events = cluster
        .api(|c| async move { c.events(Some(10_000)).await })
        .expect("events");
    events.sort_by_key(|e| e.at_ms);
    events
}

fn dns_updates_since(cluster: &Cluster, since_ms: u64) -> Vec<String> {
    events(cluster)
        .into_iter()
        .filter(|e| e.kind == ClusterEventKind::DnsUpdated && e.at_ms >= since_ms)
        .map(|e| e.message)
        .collect()
}

fn now_ms() -> u64 {
    cerebro_types::time::now_ms()
}

/// The job: `sleep MARKER`, 1.5 cores an instance (a 2-core machine holds
/// one), two instances in zone-a and one in zone-b.
fn web_job(marker: &str) -> serde_json::Value {
    let mut job = crate::job(
        "web",
        marker,
        1.5,
        serde_json::json!({"zone-a": {"cpu": 2}, "zone-b": {"cpu": 1}}),
    );
    job["dns_basename"] = BASENAME.into();
    job
}

/// Machine id → its `dns_names`, for the machines that have any.
fn names_by_machine(machines: &[MachineView]) -> BTreeMap<String, Vec<String>> {
    machines
        .iter()
        .filter(|m| !m.dns_names.is_empty())
        .map(|m| (m.id.clone(), m.dns_names.clone()))
        .collect()
}

/// Checks the views and the CLI of the running job: each instance's
/// machine has exactly that instance's `N.ZONE` name, the job shows both
/// `ZONE` names. Answers machine id → its name.
fn check_views_running(cluster: &Cluster) -> BTreeMap<String, String> {
    let job = cluster.job_view("web");
    assert_eq!(
        job.dns_names,
        vec![format!("zone-a.{BASENAME}"), format!("zone-b.{BASENAME}")],
        "JobView.dns_names"
    );
    let mut by_machine = BTreeMap::new();
    for instance in &job.instances {
        let machine = instance.machine.clone().expect("a placed instance");
        let name = instance
            .dns_name
            .clone()
            .unwrap_or_else(|| panic!("instance {} has no dns_name", instance.index));
        assert!(
            name.ends_with(&format!(".{}.{BASENAME}", instance.zone)),
            "{name}: the name of an instance in {}",
            instance.zone
        );
        assert!(
            by_machine.insert(machine.clone(), name).is_none(),
            "two instances on {machine}"
        );
    }
    let names: BTreeSet<&str> = by_machine.values().map(String::as_str).collect();
    let want: BTreeSet<String> = MACHINE_NAMES
        .iter()
        .map(|n| format!("{n}.{BASENAME}"))
        .collect();
    assert_eq!(
        names,
        want.iter().map(String::as_str).collect(),
        "InstanceView.dns_name"
    );
    let shown = names_by_machine(&cluster.machine_views());
    let want_shown: BTreeMap<String, Vec<String>> = by_machine
        .iter()
        .map(|(m, n)| (m.clone(), vec![n.clone()]))
        .collect();
    assert_eq!(shown, want_shown, "MachineView.dns_names");

    let listmachines = stdout_of(cluster, &["listmachines"]);
    for (machine, name) in &by_machine {
        let line = listmachines
            .lines()
            .find(|l| l.contains(machine.as_str()))
            .unwrap_or_else(|| panic!("{machine} not in listmachines:\n{listmachines}"));
        assert!(
            line.contains(name.as_str()),
            "listmachines shows {name} on {machine}'s line:\n{listmachines}"
        );
    }
    let status = stdout_of(cluster, &["status", "web"]);
    assert!(
        status.contains(&format!("dns names: zone-a.{BASENAME}, zone-b.{BASENAME}")),
        "cerebro status web:\n{status}"
    );
    for (machine, name) in &by_machine {
        let line = status
            .lines()
            .find(|l| l.contains(machine.as_str()))
            .unwrap_or_else(|| panic!("{machine} not in status web:\n{status}"));
        assert!(
            line.contains(name.as_str()),
            "status web shows {name} on {machine}'s line:\n{status}"
        );
    }
    by_machine
}

fn stdout_of(cluster: &Cluster, args: &[&str]) -> String {
    let output = cluster.cli(args);
    assert!(
        output.status.success(),
        "cerebro {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Boots the clustersitter again and tells the backend.
fn boot(backend: &mut dyn DnsBackend, cluster: &mut Cluster) {
    cluster.boot();
    backend.lifecycle(cluster, Lifecycle::Booted);
}

/// SIGKILLs the clustersitter and tells the backend.
pub fn kill9(backend: &mut dyn DnsBackend, cluster: &mut Cluster) {
    cluster.kill9();
    backend.lifecycle(cluster, Lifecycle::Killed);
}

/// Stops the clustersitter with SIGTERM and waits for it to exit by
/// itself (its DNS provider closed, its state saved); tells the backend.
pub fn stop_cleanly(backend: &mut dyn DnsBackend, cluster: &mut Cluster) {
    let pid = cluster.daemon.pid().expect("a running clustersitter") as i32;
    crate::kill(pid, SIGTERM);
    let exit = wait_for(TIMEOUT, "the clustersitter to exit after SIGTERM", || {
        cluster
            .daemon
            .child_mut()
            .and_then(|child| child.try_wait().expect("wait for the clustersitter"))
    });
    assert!(
        exit.success(),
        "the clustersitter's exit after SIGTERM: {exit}"
    );
    cluster.daemon.exited();
    backend.lifecycle(cluster, Lifecycle::Stopped);
}

/// Waits until a DNS pass that began after now has succeeded, twice (so
/// at least one periodic pass with nothing changed has run).
fn wait_two_passes(cluster: &Cluster, what: &str) {
    let mut since = now_ms();
    for _ in 0..2 {
        let at = wait_for(STEP_TIMEOUT, what, || {
            let status = cluster.dns_status();
            assert!(
                status.error.is_none(),
                "{what}: the DNS pass failed: {:?}",
                status.error
            );
            status.last_sync_ms.filter(|at| *at > since)
        });
        since = at;
    }
}

/// Restarts the clustersitter (`clean`: SIGTERM, else SIGKILL) and checks
/// that nothing changed in DNS: the same listing, the change counter
/// where the backend has one, and no `dns_updated` event since. Answers
/// what differed (the scenario goes on, and fails at its end).
fn restart_changes_nothing(
    backend: &mut dyn DnsBackend,
    cluster: &mut Cluster,
    want: &BTreeSet<RecordSet>,
    clean: bool,
) -> Vec<String> {
    let how = if clean { "SIGTERM" } else { "kill -9" };
    let name = backend.name();
    let before = wait_listing(backend, cluster, want, &format!("before a {how} restart"));
    let counter = backend.changes(cluster);
    let restarted_ms = now_ms();
    if clean {
        stop_cleanly(backend, cluster);
    } else {
        kill9(backend, cluster);
    }
    boot(backend, cluster);
    wait_two_passes(cluster, &format!("two DNS passes after a {how} restart"));
    let mut problems = Vec::new();
    let knows_ttl = backend.knows_ttl();
    let after = comparable(knows_ttl, &backend.list(cluster, BASENAME));
    if after != before {
        problems.push(format!(
            "[{name}] a {how} restart changed the records: missing {:?}, new {:?}",
            before.difference(&after).collect::<Vec<_>>(),
            after.difference(&before).collect::<Vec<_>>()
        ));
    }
    let counter_after = backend.changes(cluster);
    if counter_after != counter {
        problems.push(format!(
            "[{name}] a {how} restart changed the server: its change counter went from {counter:?} to {counter_after:?}"
        ));
    }
    let updates = dns_updates_since(cluster, restarted_ms);
    if !updates.is_empty() {
        problems.push(format!(
            "[{name}] dns_updated events after a {how} restart: {updates:?}"
        ));
    }
    // Whatever a restart did, the names must come back as they were.
    wait_listing(backend, cluster, want, &format!("after a {how} restart"));
    check_views_running(cluster);
    problems
}

/// Runs the whole scenario against `backend` (see the module). Panics at
/// the first step that fails, saying which, except for the checks of
/// step 5 (a restart changes nothing): those are answered, so that the
/// later steps still run and a test can check more before
/// [`assert_no_problems`].
#[must_use = "the problems found by step 5 fail the test through assert_no_problems"]
pub fn run(backend: &mut dyn DnsBackend) -> Vec<String> {
    let mut cluster = Cluster::new(ClusterOptions {
        cluster_name: CLUSTER,
        dns: Some(backend.dns_section()),
        env: backend.env(),
        ..ClusterOptions::default()
    });

    // 1. The foreign record is there before Cerebro.
    backend.seed(&mut cluster, &foreign_record());
    boot(backend, &mut cluster);
    let only_foreign = expected(&[]);
    wait_listing(
        backend,
        &cluster,
        &only_foreign,
        "step 1: the foreign record alone",
    );

    // 2. The job's names, exactly.
    let (code, reply) = cluster.put_job(&web_job("5414"));
    assert_eq!(code, 201, "{reply}");
    cluster.wait_job_running("web", 3);
    let all = expected(&ALL_NAMES);
    wait_listing(backend, &cluster, &all, "step 2: the running job's names");
    wait_for(STEP_TIMEOUT, "the views to show the job's names", || {
        let job = cluster.job_view("web");
        (job.dns_names.len() == 2 && job.instances.iter().all(|i| i.dns_name.is_some()))
            .then_some(())
    });
    let names = check_views_running(&cluster);
    let zero_a = format!("0.zone-a.{BASENAME}");
    let one_a = format!("1.zone-a.{BASENAME}");
    let victim = names
        .iter()
        .find(|(_, n)| **n == zero_a)
        .map(|(m, _)| m.clone())
        .expect("a machine holds 0.zone-a");
    let keeper = names
        .iter()
        .find(|(_, n)| **n == one_a)
        .map(|(m, _)| m.clone())
        .expect("a machine holds 1.zone-a");

    // 3. The machine of 0.zone-a dies; its replacement gets 0 again.
    cluster.kill_machine(&victim);
    let replacement = wait_for(
        STEP_TIMEOUT,
        "a replacement of the killed machine holding 0.zone-a",
        || {
            cluster.job_running("web", 3)?;
            let shown = names_by_machine(&cluster.machine_views());
            let holder = shown
                .iter()
                .find(|(_, n)| n.contains(&zero_a))
                .map(|(m, _)| m.clone())?;
            (holder != victim).then_some(holder)
        },
    );
    let machines = cluster.machine_views();
    let shown = names_by_machine(&machines);
    assert_eq!(
        shown.get(&keeper),
        Some(&vec![one_a.clone()]),
        "the surviving zone-a machine keeps 1: {shown:?}"
    );
    assert_eq!(
        shown.get(&replacement),
        Some(&vec![zero_a.clone()]),
        "the replacement reuses 0 (not 2): {shown:?}"
    );
    assert!(
        !shown.contains_key(&victim),
        "the killed machine {victim} still has names: {shown:?}"
    );
    let job = cluster.job_view("web");
    assert!(
        job.instances
            .iter()
            .all(|i| i.machine.as_deref() != Some(victim.as_str())),
        "an instance is still on the killed machine"
    );
    wait_listing(
        backend,
        &cluster,
        &all,
        "step 3: the same names after a replacement",
    );
    check_views_running(&cluster);

    // 5. Restarts change nothing (4: the foreign record is in every listing).
    let mut problems = restart_changes_nothing(backend, &mut cluster, &all, false);
    problems.extend(restart_changes_nothing(backend, &mut cluster, &all, true));

    // 6. An owned TXT left without its address goes at the next pass.
    let orphan = format!("7.zone-a.{BASENAME}");
    let seeded_ms = now_ms();
    backend.seed(
        &mut cluster,
        &record_set(&orphan, RecordType::Txt, TTL, &[&ownership_text(CLUSTER)]),
    );
    wait_listing(
        backend,
        &cluster,
        &all,
        "step 6: the orphaned ownership TXT removed",
    );
    let updates = dns_updates_since(&cluster, seeded_ms);
    assert!(
        updates
            .iter()
            .any(|m| m.contains("removed") && m.contains(&orphan)),
        "[{}] a dns_updated event tells {orphan} removed: {updates:?}",
        backend.name()
    );

    // 7. The job stopped: no ZONE.basename; the machines hold the stopped
    // instances, so their N.ZONE.basename names stay.
    stdout_of(&cluster, &["stopjob", "web"]);
    wait_for(STEP_TIMEOUT, "every instance of web to stop", || {
        let job = cluster.job_view("web");
        job.instances
            .iter()
            .all(|i| i.state != InstanceState::Running)
            .then_some(())
    });
    let stopped = expected(&MACHINE_NAMES);
    wait_listing(
        backend,
        &cluster,
        &stopped,
        "step 7: the stopped job's names",
    );
    let shown = names_by_machine(&cluster.machine_views());
    let shown_names: BTreeSet<String> = shown.values().flatten().cloned().collect();
    let want_names: BTreeSet<String> = MACHINE_NAMES
        .iter()
        .map(|n| format!("{n}.{BASENAME}"))
        .collect();
    assert_eq!(
        shown_names, want_names,
        "the machines holding the stopped instances keep their names"
    );

    // 8. The job removed: only the foreign record is left.
    stdout_of(&cluster, &["removejob", "web"]);
    wait_listing(
        backend,
        &cluster,
        &only_foreign,
        "step 8: the removed job's names gone",
    );
    wait_for(STEP_TIMEOUT, "no machine to show a name", || {
        names_by_machine(&cluster.machine_views())
            .is_empty()
            .then_some(())
    });

    stop_cleanly(backend, &mut cluster);
    problems
}

/// Fails the test if [`run`] found problems, listing them all.
pub fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "the scenario ran to its end, but:\n{}",
        problems.join("\n")
    );
}

/// Whether `set` is at or under `basename`: for backends that read a
/// whole zone and answer only what [`DnsBackend::list`] is asked for.
pub fn under(set: &RecordSet, basename: &str) -> bool {
    is_in_zone(&set.name, basename)
}
