//! The EC2 provider end to end (issue 12, "Tests"): the real
//! `clustersitter` (built with EC2) against moto's EC2 server, its
//! instances "booted" by the harness in `common` running their real user
//! data, so their machinesitters download, check and start as on a VM and
//! register on loopback.
//!
//! The tests share one moto server and take turns at it (each starts from
//! a reset server). Run `scripts/install-moto.sh` and `cargo build
//! --workspace --bins` first (scripts/test.sh does both).

mod common;

use cerebro_tests::moto::MotoServer;
use cerebro_tests::{encode, job, poll_for, wait_for, ClusterOptions};
use cerebro_types::cluster::{InstanceState, MachineState};
use common::{provider_section, smallest_type, Instance, Proxy, ProxyMode, World, AMI};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A VM boots in the time it takes to download two debug binaries and
/// start one; several boot at once on a 2-core machine.
const BOOT: Duration = Duration::from_secs(180);

/// The types the tests allow: the config's default list.
const ALL_TYPES: &[&str] = clustersitter::config::ec2::DEFAULT_INSTANCE_TYPES;

/// An AMI moto does not know anywhere: with AMI validation on, RunInstances
/// answers `InvalidAMIID.NotFound`, as EC2 does.
const MISSING_AMI: &str = "ami-0000000000deadbee";

fn seed_path() -> String {
    format!(
        "{}/../../examples/jobs/seed-job-example.conf",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The `[provider]` section of `examples/clusters/ec2.toml`, as kept: the
/// example must run unchanged against moto.
fn example_provider_section() -> String {
    let example = std::fs::read_to_string(format!(
        "{}/../../examples/clusters/ec2.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("examples/clusters/ec2.toml");
    let start = example
        .find("\n[provider]")
        .expect("the example has a [provider] section");
    example[start + 1..].to_string()
}

/// The events named `name` (newest first).
fn events(world: &World, name: &str) -> Vec<Value> {
    let events = world.cluster.get("/api/v1/events?limit=10000");
    events
        .as_array()
        .expect("events are a list")
        .iter()
        .filter(|e| e["event"] == name)
        .cloned()
        .collect()
}

/// Fails unless no machine id has more than one live instance, and
/// answers the live instances by machine id.
fn assert_one_live_per_machine(live: &[Instance]) -> BTreeMap<String, Instance> {
    let mut by_machine = BTreeMap::new();
    for instance in live {
        if let Some(other) = by_machine.insert(instance.machine_id().to_string(), instance.clone())
        {
            panic!(
                "machine {} has two live instances: {} and {}",
                instance.machine_id(),
                other.id,
                instance.id
            );
        }
    }
    by_machine
}

/// Every instance carries the cluster's tags (and the configured extra one).
fn assert_tagged(world: &World, instance: &Instance, extra: (&str, &str)) {
    assert_eq!(
        instance.tag("cerebro:cluster"),
        Some(world.name),
        "{instance:?}"
    );
    let machine = instance.machine_id();
    assert!(
        !machine.is_empty(),
        "tagged cerebro:machine-id: {instance:?}"
    );
    assert_eq!(instance.tag("Name"), Some(machine), "{instance:?}");
    let zone = instance.tag("cerebro:zone").unwrap_or_default();
    assert_eq!(
        zone,
        format!("aws-{}", instance.availability_zone),
        "{instance:?}"
    );
    assert_eq!(instance.tag(extra.0), Some(extra.1), "{instance:?}");
}

/// Waits until `name` has `count` instances running, each on a ready
/// machine; answers the machine of each.
fn wait_running_on_ready(world: &World, name: &str, count: usize) -> Vec<String> {
    wait_for(
        BOOT,
        &format!("{count} instances of '{name}' running"),
        || {
            let machines = world.cluster.machine_views();
            let ready: BTreeSet<&str> = machines
                .iter()
                .filter(|m| m.state == MachineState::Ready)
                .map(|m| m.id.as_str())
                .collect();
            let job = world.cluster.job_view(name);
            let placed: Vec<String> = job
                .instances
                .iter()
                .filter(|i| i.state == InstanceState::Running)
                .filter_map(|i| i.machine.clone())
                .filter(|m| ready.contains(m.as_str()))
                .collect();
            (job.instances.len() == count && placed.len() == count).then_some(placed)
        },
    )
}

fn put_job(world: &World, job: &Value) {
    let (code, reply) = world.cluster.put_job(job);
    assert!(code == 200 || code == 201, "{code}: {reply}");
}

#[test]
fn the_seed_example_launches_on_a_two_region_cluster_with_types_by_the_rule() {
    let world = World::start(
        MotoServer::shared(),
        "seed",
        &["us-west-2", "us-east-1"],
        example_provider_section(),
        None,
        ClusterOptions {
            // The seed names `mystartup.recipes.deploy`, shipped there.
            recipe_dirs: cerebro_tests::example_recipe_dirs(),
            ..ClusterOptions::default()
        },
    );
    let output = world.cluster.cli(&["updatejobcfg", &seed_path()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // auto_start is false in the seed: its instances are created stopped,
    // each on a ready machine.
    let placed = wait_for(
        BOOT,
        "the seed's 11 instances placed on ready machines",
        || {
            let machines = world.cluster.machine_views();
            let job = world.cluster.job_view("Portal Server");
            let ready = job.instances.len() == 11
                && job.instances.iter().all(|i| {
                    i.state == InstanceState::Stopped
                        && machines.iter().any(|m| {
                            Some(&m.id) == i.machine.as_ref() && m.state == MachineState::Ready
                        })
                });
            ready.then_some((job, machines))
        },
    );
    let (job, machines) = placed;
    world.vms.assert_no_failures();

    let live = world.live();
    let by_machine = assert_one_live_per_machine(&live);
    let regions: BTreeSet<&str> = live.iter().map(|i| i.region.as_str()).collect();
    assert_eq!(
        regions,
        BTreeSet::from(["us-east-1", "us-west-2"]),
        "instances in both regions: {live:?}"
    );
    assert_eq!(
        by_machine.len(),
        machines.len(),
        "one instance per machine, nothing else: {live:?} {machines:?}"
    );
    for machine in &machines {
        let instance = by_machine
            .get(&machine.id)
            .unwrap_or_else(|| panic!("no live instance for machine {}: {live:?}", machine.id));
        assert_tagged(&world, instance, ("project", "cerebro-demo"));
        assert_eq!(instance.tag("cerebro:zone"), Some(machine.zone.as_str()));
        assert_eq!(machine.provider_id.as_deref(), Some(instance.id.as_str()));
        assert_eq!(
            machine.details.instance_type.as_deref(),
            Some(instance.instance_type.as_str())
        );
        assert_eq!(
            machine.details.availability_zone.as_deref(),
            Some(instance.availability_zone.as_str())
        );
        // The smallest allowed type holding what the machine is for.
        let want = smallest_type(ALL_TYPES, machine.reserved.cpu, machine.reserved.mem_mb);
        assert_eq!(
            Some(instance.instance_type.as_str()),
            want,
            "machine {} reserves {:?}",
            machine.id,
            machine.reserved
        );
    }
    let on_west = job
        .instances
        .iter()
        .filter(|i| i.zone == "aws-us-west-2a")
        .count();
    assert_eq!(on_west, 1, "1 in us-west-2a, 10 in us-east-1b");
}

#[test]
fn a_lost_machine_is_terminated_and_replaced_in_its_zone() {
    let world = World::start(
        MotoServer::shared(),
        "heal",
        &["us-west-2"],
        provider_section(4, ALL_TYPES, &[("aws-us-west-2a", AMI)]),
        None,
        ClusterOptions {
            idle_limit: 0,
            ..Default::default()
        },
    );
    put_job(
        &world,
        &job("heal", "7101", 0.5, json!({"aws-us-west-2a": {"cpu": 1}})),
    );
    let first = wait_running_on_ready(&world, "heal", 1).remove(0);
    let old = world.live();
    assert_eq!(old.len(), 1, "{old:?}");
    let old = old[0].clone();
    assert_eq!(old.machine_id(), first);

    world.vms.make_unreachable(&old.id);
    let second = wait_for(BOOT, "the job running on a new machine", || {
        wait_for_machine_other_than(&world, &first)
    });
    let instances = world.instances();
    let old_now = instances.iter().find(|i| i.id == old.id).unwrap();
    assert_eq!(
        old_now.state, "terminated",
        "the lost instance: {old_now:?}"
    );
    assert!(world.vms.is_down(&old.id));
    let live = world.live();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].machine_id(), second);
    assert_eq!(live[0].availability_zone, "us-west-2a", "same zone");
    assert_ne!(live[0].id, old.id);
    for step in ["machine_unreachable", "machine_terminated"] {
        assert!(!events(&world, step).is_empty(), "an event {step}");
    }
    world.vms.assert_no_failures();
}

/// The machine job `heal`'s instance runs on, once it runs and it is not `old`.
fn wait_for_machine_other_than(world: &World, old: &str) -> Option<String> {
    let job = world.cluster.job_view("heal");
    let instance = job.instances.first()?;
    let machine = instance.machine.clone()?;
    (machine != old && instance.state == InstanceState::Running).then_some(machine)
}

#[test]
fn a_clustersitter_killed_while_launching_leaves_no_duplicate_after_restart() {
    let moto = MotoServer::shared();
    let proxy = Proxy::start(moto.port(), ProxyMode::HoldRunInstancesAnswers);
    let mut world = World::start(
        moto,
        "restart",
        &["us-west-2"],
        provider_section(6, &["t3.medium"], &[("aws-us-west-2a", AMI)]),
        Some(proxy.url()),
        ClusterOptions {
            idle_limit: 0,
            // Machines booted before the restart reach it at the same URL.
            port: cerebro_tests::moto::free_port(),
            ..Default::default()
        },
    );
    // 3000 MB each: one instance per t3.medium, three machines.
    put_job(
        &world,
        &job(
            "restart",
            "7102",
            0.5,
            json!({"aws-us-west-2a": {"cpu": 3, "mem": 3000}}),
        ),
    );
    // The first launch reached moto; its answer is held: the instance
    // exists, and the clustersitter does not know its id.
    wait_for(BOOT, "a launch held in the proxy", || {
        (proxy.lost() >= 1 && !world.live().is_empty()).then_some(())
    });
    world.cluster.kill9();
    proxy.set_mode(ProxyMode::Pass);
    world.cluster.boot();
    wait_running_on_ready(&world, "restart", 3);
    // Settled: what runs is what the plan needs, once each.
    let machines = world.cluster.machine_views();
    let live = world.live();
    let by_machine = assert_one_live_per_machine(&live);
    assert_eq!(machines.len(), 3, "{machines:?}");
    assert_eq!(
        by_machine.keys().cloned().collect::<BTreeSet<_>>(),
        machines
            .iter()
            .map(|m| m.id.clone())
            .collect::<BTreeSet<_>>(),
        "every live instance is a machine of the cluster: {live:?}"
    );
    let all = world.instances();
    let mut per_machine: BTreeMap<&str, usize> = BTreeMap::new();
    for instance in &all {
        *per_machine.entry(instance.machine_id()).or_default() += 1;
    }
    assert!(
        per_machine.values().all(|&n| n == 1),
        "each machine id launched once: {all:?}"
    );
    world.vms.assert_no_failures();
}

#[test]
fn a_launch_whose_answer_is_lost_makes_one_instance() {
    let moto = MotoServer::shared();
    let proxy = Proxy::start(moto.port(), ProxyMode::LoseNextRunInstancesAnswer);
    let world = World::start(
        moto,
        "lost",
        &["us-west-2"],
        provider_section(4, ALL_TYPES, &[("aws-us-west-2a", AMI)]),
        Some(proxy.url()),
        ClusterOptions {
            idle_limit: 0,
            ..Default::default()
        },
    );
    put_job(
        &world,
        &job("lost", "7103", 0.5, json!({"aws-us-west-2a": {"cpu": 1}})),
    );
    let machine = wait_running_on_ready(&world, "lost", 1).remove(0);
    assert_eq!(proxy.lost(), 1, "the first RunInstances answer was lost");
    let all = world.instances();
    let mine: Vec<&Instance> = all.iter().filter(|i| i.machine_id() == machine).collect();
    assert_eq!(mine.len(), 1, "one instance for {machine}, ever: {all:?}");
    assert_eq!(all.len(), 1, "{all:?}");
    world.vms.assert_no_failures();
}

/// The answer lost, then EC2 unreachable for 12 s: the lookups after the
/// launch keep trying until one answers, so the machine keeps its id and
/// its one instance (a lookup given up would make the cluster launch a
/// second instance under a new machine id).
#[test]
fn a_launch_whose_answer_is_lost_in_an_outage_makes_one_instance() {
    let moto = MotoServer::shared();
    let proxy = Proxy::start(moto.port(), ProxyMode::LoseNextRunInstancesAnswerThenOutage);
    proxy.set_outage(Duration::from_secs(12));
    let world = World::start(
        moto,
        "outage",
        &["us-west-2"],
        provider_section(4, ALL_TYPES, &[("aws-us-west-2a", AMI)]),
        Some(proxy.url()),
        ClusterOptions {
            idle_limit: 0,
            ..Default::default()
        },
    );
    put_job(
        &world,
        &job("outage", "7104", 0.5, json!({"aws-us-west-2a": {"cpu": 1}})),
    );
    let machine = wait_running_on_ready(&world, "outage", 1).remove(0);
    // The instance may register and run the job before the provider's
    // lookups get through the outage (provisioning runs in the
    // background): the count is taken once the launch's outcome is in.
    wait_for(BOOT, "the launch found after the outage", || {
        (!events(&world, "machine_started").is_empty()).then_some(())
    });
    assert_eq!(proxy.lost(), 1, "the first RunInstances answer was lost");
    assert!(proxy.refused() > 0, "the outage refused requests");
    let all = world.instances();
    assert_eq!(all.len(), 1, "one instance, ever: {all:?}");
    assert_eq!(all[0].machine_id(), machine, "{all:?}");
    world.vms.assert_no_failures();
}

#[test]
fn a_permanent_error_is_one_event_and_slowing_retries() {
    let moto = MotoServer::shared();
    let proxy = Proxy::start(moto.port(), ProxyMode::Pass);
    let world = World::start(
        moto,
        "badami",
        &["us-west-2"],
        provider_section(4, ALL_TYPES, &[("aws-us-west-2a", MISSING_AMI)]),
        Some(proxy.url()),
        ClusterOptions::default(),
    );
    put_job(
        &world,
        &job("badami", "7104", 0.5, json!({"aws-us-west-2a": {"cpu": 1}})),
    );
    // Four launches: three delays to compare.
    let launches = wait_for(Duration::from_secs(240), "4 launch attempts", || {
        let launches = proxy.launches();
        (launches.len() >= 4).then_some(launches)
    });
    let gaps: Vec<Duration> = launches.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[2] > gaps[0], "the retries slow down: gaps {gaps:?}");
    let failed = events(&world, "provision_failed");
    assert_eq!(failed.len(), 1, "one event for one cause: {failed:#?}");
    let message = failed[0]["message"].as_str().unwrap_or_default();
    let said = format!("{} {message}", failed[0]["subject"]);
    assert!(
        said.contains("aws-us-west-2a") && said.contains("InvalidAMIID.NotFound"),
        "names the zone and the code: {}",
        failed[0]
    );
    let status = world.cluster.get("/api/v1/status");
    let zone = status["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["zone"] == "aws-us-west-2a")
        .unwrap_or_else(|| panic!("the zone's status: {status}"));
    assert!(
        zone.to_string().contains("InvalidAMIID.NotFound"),
        "the zone's status shows the failure: {zone}"
    );
    assert!(world.live().is_empty(), "nothing launched");
}

#[test]
fn max_machines_is_never_exceeded() {
    let world = World::start(
        MotoServer::shared(),
        "max",
        &["us-west-2"],
        provider_section(2, &["t3.medium"], &[("aws-us-west-2a", AMI)]),
        None,
        ClusterOptions::default(),
    );
    // 3000 MB each: one per t3.medium, four wanted, two allowed.
    put_job(
        &world,
        &job(
            "max",
            "7105",
            0.5,
            json!({"aws-us-west-2a": {"cpu": 4, "mem": 3000}}),
        ),
    );
    let mut most = 0;
    let mut sample = || {
        let live = world.live().len();
        most = most.max(live);
        assert!(live <= 2, "{live} live instances with max_machines = 2");
    };
    wait_for(BOOT, "two of the four instances running", || {
        sample();
        let job = world.cluster.job_view("max");
        let running = job
            .instances
            .iter()
            .filter(|i| i.state == InstanceState::Running)
            .count();
        (running == 2).then_some(())
    });
    // And it stays so while the other two wait.
    let _ = poll_for(Duration::from_secs(5), || {
        sample();
        None::<()>
    });
    assert_eq!(most, 2);
    let status = world.cluster.get("/api/v1/status");
    assert_eq!(
        status["unplaced"].as_array().map(Vec::len),
        Some(2),
        "the two that do not fit are unplaced: {status}"
    );
}

/// Instances of the cluster in a zone it no longer serves are told once
/// at start, left running, and not counted against `max_machines`.
#[test]
fn instances_in_a_zone_no_longer_served_are_reported_and_not_counted() {
    let moto = MotoServer::shared();
    let ec2 = common::Ec2::new(&moto.url());
    let strays: Vec<String> = ["old-1", "old-2"]
        .iter()
        .map(|id| {
            ec2.launch(
                "us-west-2b",
                &[
                    ("cerebro:cluster", "unserved"),
                    ("cerebro:machine-id", id),
                    ("cerebro:zone", "aws-us-west-2b"),
                ],
            )
        })
        .collect();
    let world = World::start(
        moto,
        "unserved",
        &["us-west-2"],
        provider_section(2, ALL_TYPES, &[("aws-us-west-2a", AMI)]),
        None,
        ClusterOptions::default(),
    );
    put_job(
        &world,
        &job(
            "unserved",
            "7108",
            0.5,
            json!({"aws-us-west-2a": {"cpu": 1}}),
        ),
    );
    let machine = wait_running_on_ready(&world, "unserved", 1).remove(0);
    let told = events(&world, "machine_unmanaged");
    assert_eq!(told.len(), 2, "{told:?}");
    for stray in &strays {
        assert!(
            told.iter().any(|e| e["message"]
                .as_str()
                .unwrap_or_default()
                .contains(stray.as_str())),
            "{stray} is told: {told:?}"
        );
    }
    let live = world.live();
    assert_eq!(live.len(), 3, "the strays left running: {live:?}");
    assert!(live.iter().any(|i| i.machine_id() == machine));
}

#[test]
fn the_idle_limit_terminates_extra_instances() {
    let world = World::start(
        MotoServer::shared(),
        "idle",
        &["us-west-2"],
        provider_section(4, &["t3.medium"], &[("aws-us-west-2a", AMI)]),
        None,
        ClusterOptions {
            idle_limit: 1,
            ..Default::default()
        },
    );
    put_job(
        &world,
        &job(
            "idle",
            "7106",
            0.5,
            json!({"aws-us-west-2a": {"cpu": 3, "mem": 3000}}),
        ),
    );
    wait_running_on_ready(&world, "idle", 3);
    assert_eq!(world.live().len(), 3);
    let (code, reply) =
        world
            .cluster
            .request("DELETE", &format!("/api/v1/jobs/{}", encode("idle")), None);
    assert_eq!(code, 200, "{reply}");
    let all = wait_for(BOOT, "two idle instances terminated, one kept", || {
        let all = world.instances();
        let live = all.iter().filter(|i| i.is_live()).count();
        let terminated = all.iter().filter(|i| i.state == "terminated").count();
        (live == 1 && terminated == 2).then_some(all)
    });
    for instance in all.iter().filter(|i| i.state == "terminated") {
        wait_for(BOOT, "the terminated VMs powered off", || {
            world.vms.is_down(&instance.id).then_some(())
        });
    }
    assert!(!events(&world, "machine_idle_retired").is_empty());
    world.vms.assert_no_failures();
}

/// The clustersitter refuses `provider` at start: exit 2 and
/// `FILE:LINE:COLUMN:` on stderr, pointing at the first `at` in the file.
fn assert_refused(provider: String, at: &str) {
    let cluster = cerebro_tests::Cluster::new(ClusterOptions {
        cluster_name: "refused",
        provider: Some(provider),
        env: common::aws_env("http://127.0.0.1:9"),
        ..Default::default()
    });
    let config = std::fs::read_to_string(cluster.config_path()).unwrap();
    let (line, column) = config
        .lines()
        .enumerate()
        .find_map(|(n, text)| text.find(at).map(|col| (n + 1, col + 1)))
        .unwrap_or_else(|| panic!("{at} in {config}"));
    let (code, stderr) = cluster.boot_refused();
    assert_eq!(code, Some(2), "exit 2: {stderr}");
    let place = format!("{}:{line}:{column}:", cluster.config_path().display());
    assert!(
        stderr.contains(&format!("{place} zone")) && stderr.contains(at),
        "names {place} and the zone: {stderr}"
    );
}

#[test]
fn a_bad_config_is_refused_at_start_with_file_line_and_column() {
    // A zone name that is no AWS availability zone.
    assert_refused(
        provider_section(
            2,
            ALL_TYPES,
            &[("aws-us-west-2a", AMI), ("aws-moon-base-1x", AMI)],
        ),
        "aws-moon-base-1x",
    );
    // A zone whose region has no AMI at any level.
    let provider = format!(
        "{}\n[provider.ec2.zones.aws-eu-west-1a]\n",
        provider_section(2, ALL_TYPES, &[("aws-us-west-2a", AMI)])
    );
    assert_refused(provider, "aws-eu-west-1a");
}
