use super::*;
use cerebro_types::job::ZoneLayout;
use cerebro_types::TaskSpec;

fn job(name: &str, zones: &[(&str, u32)], cpu: f64, mem_mb: f64) -> JobSpec {
    let mut task = TaskSpec::new(name, "sleep 1000");
    task.cpu = Some(cpu);
    task.mem = Some(mem_mb);
    JobSpec {
        dns_basename: None,
        deployment_recipe: None,
        deployment_layout: zones
            .iter()
            .map(|(zone, count)| {
                let layout = ZoneLayout {
                    cpu: *count,
                    mem: None,
                };
                (zone.to_string(), layout)
            })
            .collect(),
        recipe_options: BTreeMap::new(),
        persistent: false,
        linked_job: None,
        reschedule: Default::default(),
        task_configuration: task,
    }
}

fn linked(name: &str, master: &str, cpu: f64, mem_mb: f64) -> JobSpec {
    let mut spec = job(name, &[], cpu, mem_mb);
    spec.linked_job = Some(master.to_string());
    spec
}

fn machine_in(
    id: &str,
    zone: &str,
    number: u32,
    cpu: f64,
    mem_mb: f64,
    state: MachineState,
) -> PlacementMachine {
    PlacementMachine {
        id: id.to_string(),
        zone: zone.to_string(),
        capacity: Resources { cpu, mem_mb },
        state,
        number,
    }
}

fn machine(id: &str, zone: &str, number: u32, cpu: f64, mem_mb: f64) -> PlacementMachine {
    machine_in(id, zone, number, cpu, mem_mb, MachineState::Ready)
}

/// `count` ready machines `PREFIX-01`... in `zone`, numbered from 1.
fn machines(prefix: &str, zone: &str, count: u32, cpu: f64, mem_mb: f64) -> Vec<PlacementMachine> {
    (1..=count)
        .map(|n| machine(&format!("{prefix}-{n:02}"), zone, n, cpu, mem_mb))
        .collect()
}

fn sizes(zones: &[(&str, f64, f64)]) -> BTreeMap<String, Resources> {
    zones
        .iter()
        .map(|(zone, cpu, mem_mb)| {
            let size = Resources {
                cpu: *cpu,
                mem_mb: *mem_mb,
            };
            (zone.to_string(), size)
        })
        .collect()
}

fn two_zones() -> BTreeMap<String, Resources> {
    sizes(&[("local-a", 4.0, 8192.0), ("local-b", 4.0, 8192.0)])
}

/// A provider that can start machines far bigger than the default size
/// in every zone, so oversized instances get machines of their own.
fn roomy(zones: &BTreeMap<String, Resources>) -> BTreeMap<String, Resources> {
    zones
        .keys()
        .map(|zone| {
            let size = Resources {
                cpu: 1024.0,
                mem_mb: 1024.0 * 1024.0 * 1024.0,
            };
            (zone.clone(), size)
        })
        .collect()
}

fn run(
    jobs: &[JobSpec],
    machines: &[PlacementMachine],
    previous: &[Assignment],
    zone_machine_size: &BTreeMap<String, Resources>,
) -> Plan {
    let plan = place(&PlacementInput {
        jobs,
        machines,
        previous,
        zone_machine_size,
        largest_machine: &roomy(zone_machine_size),
    });
    assert_capacity_respected(&plan, jobs, machines);
    assert_plan_consistent(&plan, machines);
    plan
}

fn assert_capacity_respected(plan: &Plan, jobs: &[JobSpec], machines: &[PlacementMachine]) {
    let mut reserved: BTreeMap<&str, Need> = BTreeMap::new();
    for assignment in &plan.assignments {
        let spec = jobs
            .iter()
            .find(|j| j.name() == assignment.key.job)
            .expect("assigned job exists");
        let need = spec.need_in(&assignment.key.zone);
        let total = reserved
            .entry(assignment.machine.as_str())
            .or_insert(NO_NEED);
        *total = add_needs(*total, need);
    }
    for (id, total) in reserved {
        let m = machines
            .iter()
            .find(|m| m.id == id)
            .expect("machine exists");
        assert!(
            total.cpu <= m.capacity.cpu + EPSILON && total.mem_mb <= m.capacity.mem_mb + EPSILON,
            "machine {id} over capacity: {total:?} > {:?}",
            m.capacity
        );
    }
}

/// Sorted output, unique keys, instances only on usable machines of their zone.
fn assert_plan_consistent(plan: &Plan, machines: &[PlacementMachine]) {
    assert!(
        plan.assignments.windows(2).all(|w| w[0].key < w[1].key),
        "assignments sorted, keys unique"
    );
    assert!(
        plan.unplaced.windows(2).all(|w| w[0].key <= w[1].key),
        "unplaced sorted"
    );
    let assigned: BTreeSet<&InstanceKey> = plan.assignments.iter().map(|a| &a.key).collect();
    for unplaced in &plan.unplaced {
        assert!(
            !assigned.contains(&unplaced.key),
            "{:?} both placed and unplaced",
            unplaced.key
        );
    }
    for assignment in &plan.assignments {
        let m = machines
            .iter()
            .find(|m| m.id == assignment.machine)
            .expect("machine exists");
        assert!(
            m.state.accepts_instances(),
            "{} got an instance in state {:?}",
            m.id,
            m.state
        );
        assert_eq!(
            m.zone, assignment.key.zone,
            "{:?} outside its zone",
            assignment.key
        );
    }
}

fn machine_of<'p>(plan: &'p Plan, job: &str, zone: &str, slot: u32) -> Option<&'p str> {
    plan.assignments
        .iter()
        .find(|a| a.key.job == job && a.key.zone == zone && a.key.slot == slot)
        .map(|a| a.machine.as_str())
}

/// Machine id → instances of `job` on it.
fn spread_of(plan: &Plan, job: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in plan.assignments.iter().filter(|a| a.key.job == job) {
        *counts.entry(a.machine.clone()).or_insert(0) += 1;
    }
    counts
}

fn machines_running(plan: &Plan, job: &str) -> BTreeSet<String> {
    spread_of(plan, job).into_keys().collect()
}

fn unplaced_of<'p>(plan: &'p Plan, job: &str) -> Vec<&'p Unplaced> {
    plan.unplaced.iter().filter(|u| u.key.job == job).collect()
}

#[test]
fn capacity_is_never_exceeded_and_every_instance_is_accounted_for() {
    let jobs = vec![
        job("big", &[("local-a", 5)], 3.0, 1000.0),
        job("memory", &[("local-a", 6)], 0.5, 6000.0),
        job("small", &[("local-a", 20), ("local-b", 3)], 0.25, 100.0),
        job("web", &[("local-a", 7), ("local-b", 2)], 1.0, 512.0),
    ];
    let mut all = machines("a", "local-a", 4, 4.0, 8192.0);
    all.extend(machines("b", "local-b", 1, 2.0, 1024.0));
    let plan = run(&jobs, &all, &[], &two_zones());

    let wanted: usize = jobs
        .iter()
        .flat_map(|j| j.deployment_layout.values())
        .map(|z| z.cpu as usize)
        .sum();
    assert_eq!(plan.assignments.len() + plan.unplaced.len(), wanted);
    assert!(!plan.provision.is_empty(), "not everything fits: {plan:?}");
    let for_instances: usize = plan.provision.iter().map(|p| p.for_instances.len()).sum();
    assert_eq!(for_instances, plan.unplaced.len());
}

#[test]
fn exactly_full_machine_still_fits() {
    // 0.1 + 0.2 + ... do not add up exactly in binary floating point.
    let jobs = vec![job("tenth", &[("local-a", 10)], 0.1, 0.0)];
    let plan = run(
        &jobs,
        &machines("a", "local-a", 1, 1.0, 0.0),
        &[],
        &two_zones(),
    );
    assert_eq!(plan.assignments.len(), 10);
    assert!(plan.unplaced.is_empty());
}

#[test]
fn instances_spread_evenly_over_four_machines_before_doubling_up() {
    for (instances, each) in [(4, 1), (8, 2)] {
        let jobs = vec![job("web", &[("local-a", instances)], 1.0, 100.0)];
        let plan = run(
            &jobs,
            &machines("a", "local-a", 4, 8.0, 8192.0),
            &[],
            &two_zones(),
        );
        let spread = spread_of(&plan, "web");
        assert_eq!(spread.len(), 4);
        assert!(spread.values().all(|&n| n == each), "{spread:?}");
    }
}

#[test]
fn new_instances_prefer_machines_with_fewer_instances_in_total() {
    let jobs = vec![
        job("busy", &[("local-a", 2)], 1.0, 100.0),
        job("web", &[("local-a", 1)], 1.0, 100.0),
    ];
    let all = machines("a", "local-a", 3, 8.0, 8192.0);
    let plan = run(&jobs, &all, &[], &two_zones());
    assert_eq!(
        machines_running(&plan, "busy"),
        BTreeSet::from(["a-01".into(), "a-02".into()])
    );
    assert_eq!(machine_of(&plan, "web", "local-a", 0), Some("a-03"));
}

#[test]
fn instances_stay_in_their_zone() {
    let jobs = vec![job("web", &[("local-a", 3), ("local-b", 2)], 1.0, 100.0)];
    let mut all = machines("a", "local-a", 1, 8.0, 8192.0);
    all.extend(machines("b", "local-b", 2, 8.0, 8192.0));
    let plan = run(&jobs, &all, &[], &two_zones());
    assert_eq!(plan.assignments.len(), 5);
    for a in &plan.assignments {
        let expected_prefix = if a.key.zone == "local-a" { "a-" } else { "b-" };
        assert!(a.machine.starts_with(expected_prefix), "{a:?}");
    }
    // Room in local-b does not help local-a.
    let full_a = vec![
        machine("a-01", "local-a", 1, 1.0, 8192.0),
        machine("b-01", "local-b", 1, 8.0, 8192.0),
    ];
    let plan = run(&jobs, &full_a, &[], &two_zones());
    assert_eq!(unplaced_of(&plan, "web").len(), 2);
    assert!(unplaced_of(&plan, "web")
        .iter()
        .all(|u| u.key.zone == "local-a"));
}

#[test]
fn linked_job_follows_its_master_to_exactly_its_machines() {
    let jobs = vec![
        job("db", &[("local-a", 3), ("local-b", 1)], 1.0, 100.0),
        linked("logs", "db", 0.5, 50.0),
    ];
    let mut all = machines("a", "local-a", 5, 4.0, 8192.0);
    all.extend(machines("b", "local-b", 2, 4.0, 8192.0));
    let plan = run(&jobs, &all, &[], &two_zones());
    let db_machines = machines_running(&plan, "db");
    assert_eq!(db_machines.len(), 4);
    assert_eq!(machines_running(&plan, "logs"), db_machines);
    assert!(spread_of(&plan, "logs").values().all(|&n| n == 1));
    for a in plan.assignments.iter().filter(|a| a.key.job == "logs") {
        let m = all
            .iter()
            .find(|m| m.id == a.machine)
            .expect("machine exists");
        assert_eq!(
            (a.key.zone.as_str(), a.key.slot),
            (m.zone.as_str(), m.number)
        );
    }
    assert!(plan.unplaced.is_empty());
}

#[test]
fn linked_job_gets_one_instance_per_machine_even_when_the_master_doubles_up() {
    let jobs = vec![
        job("db", &[("local-a", 4)], 1.0, 100.0),
        linked("logs", "db", 1.0, 100.0),
    ];
    let plan = run(
        &jobs,
        &machines("a", "local-a", 2, 8.0, 8192.0),
        &[],
        &two_zones(),
    );
    assert_eq!(
        spread_of(&plan, "db").values().copied().collect::<Vec<_>>(),
        vec![2, 2]
    );
    assert_eq!(
        spread_of(&plan, "logs")
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![1, 1]
    );
}

#[test]
fn a_new_master_instance_needs_room_for_its_linked_jobs() {
    // a-01 has room for the master alone, a-02 for master and follower.
    let jobs = vec![
        job("db", &[("local-a", 1)], 1.0, 100.0),
        linked("logs", "db", 1.0, 100.0),
    ];
    let all = vec![
        machine("a-01", "local-a", 1, 1.0, 8192.0),
        machine("a-02", "local-a", 2, 2.0, 8192.0),
    ];
    let plan = run(&jobs, &all, &[], &two_zones());
    assert_eq!(machine_of(&plan, "db", "local-a", 0), Some("a-02"));
    assert_eq!(machine_of(&plan, "logs", "local-a", 2), Some("a-02"));
    assert!(plan.unplaced.is_empty());

    // The follower's room is reserved once per machine, not per master instance.
    let jobs = vec![
        job("db", &[("local-a", 2)], 1.0, 100.0),
        linked("logs", "db", 1.0, 100.0),
    ];
    let plan = run(
        &jobs,
        &[machine("a-01", "local-a", 1, 3.0, 8192.0)],
        &[],
        &two_zones(),
    );
    assert_eq!(plan.assignments.len(), 3);
    assert!(plan.unplaced.is_empty());
}

#[test]
fn the_room_for_a_follower_is_not_taken_by_a_later_job() {
    // "aaa" sorts before "db", "zzz" after it: neither may take logs' room.
    let jobs = vec![
        job("aaa", &[("local-a", 1)], 1.0, 100.0),
        job("db", &[("local-a", 1)], 1.0, 100.0),
        linked("logs", "db", 1.0, 100.0),
        job("zzz", &[("local-a", 1)], 1.0, 100.0),
    ];
    let plan = run(
        &jobs,
        &[machine("a-01", "local-a", 1, 3.0, 8192.0)],
        &[],
        &two_zones(),
    );
    assert_eq!(machine_of(&plan, "logs", "local-a", 1), Some("a-01"));
    assert_eq!(machine_of(&plan, "db", "local-a", 0), Some("a-01"));
    assert_eq!(unplaced_of(&plan, "zzz").len(), 1);
}

#[test]
fn linked_chains_follow_the_root_and_reserve_room_for_the_whole_chain() {
    let jobs = vec![
        linked("c-agent", "b-sidecar", 1.0, 100.0),
        linked("b-sidecar", "a-root", 1.0, 100.0),
        job("a-root", &[("local-a", 2)], 1.0, 100.0),
    ];
    // a-01 can hold root and sidecar but not the agent as well.
    let all = vec![
        machine("a-01", "local-a", 1, 2.0, 8192.0),
        machine("a-02", "local-a", 2, 3.0, 8192.0),
        machine("a-03", "local-a", 3, 3.0, 8192.0),
    ];
    let plan = run(&jobs, &all, &[], &two_zones());
    let root = machines_running(&plan, "a-root");
    assert_eq!(root, BTreeSet::from(["a-02".into(), "a-03".into()]));
    assert_eq!(machines_running(&plan, "b-sidecar"), root);
    assert_eq!(machines_running(&plan, "c-agent"), root);
    assert!(plan.unplaced.is_empty(), "{:?}", plan.unplaced);
}

#[test]
fn a_missing_master_gives_one_unplaced_entry() {
    let jobs = vec![
        linked("logs", "db", 1.0, 100.0),
        job("web", &[("local-a", 1)], 1.0, 100.0),
    ];
    let plan = run(
        &jobs,
        &machines("a", "local-a", 2, 4.0, 8192.0),
        &[],
        &two_zones(),
    );
    assert!(machines_running(&plan, "logs").is_empty());
    let entries = unplaced_of(&plan, "logs");
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].key,
        InstanceKey {
            job: "logs".into(),
            zone: String::new(),
            slot: 0
        }
    );
    assert_eq!(entries[0].reason, "linked job 'db' does not exist");
}

#[test]
fn a_link_cycle_gives_each_member_an_entry_and_terminates() {
    let jobs = vec![
        linked("x", "y", 1.0, 100.0),
        linked("y", "z", 1.0, 100.0),
        linked("z", "x", 1.0, 100.0),
        linked("self", "self", 1.0, 100.0),
        linked("hanger-on", "x", 1.0, 100.0),
        job("web", &[("local-a", 1)], 1.0, 100.0),
    ];
    let plan = run(
        &jobs,
        &machines("a", "local-a", 2, 4.0, 8192.0),
        &[],
        &two_zones(),
    );
    assert_eq!(
        plan.assignments.len(),
        1,
        "only web runs: {:?}",
        plan.assignments
    );
    for name in ["x", "y", "z"] {
        let entries = unplaced_of(&plan, name);
        assert_eq!(entries.len(), 1, "{name}");
        assert_eq!(
            entries[0].reason,
            "linked jobs form a cycle: x -> y -> z -> x"
        );
    }
    assert_eq!(
        unplaced_of(&plan, "self")[0].reason,
        "linked jobs form a cycle: self -> self"
    );
    let hanger_on = unplaced_of(&plan, "hanger-on");
    assert_eq!(hanger_on.len(), 1);
    assert!(
        hanger_on[0].reason.contains("'x' cannot be placed"),
        "{}",
        hanger_on[0].reason
    );
}

#[test]
fn a_follower_added_later_without_room_is_unplaced_with_a_reason() {
    let master = job("db", &[("local-a", 1)], 2.0, 100.0);
    let all = vec![machine("a-01", "local-a", 1, 2.0, 8192.0)];
    let first = run(std::slice::from_ref(&master), &all, &[], &two_zones());
    assert_eq!(machine_of(&first, "db", "local-a", 0), Some("a-01"));

    let jobs = vec![master, linked("logs", "db", 1.0, 100.0)];
    let plan = run(&jobs, &all, &first.assignments, &two_zones());
    assert_eq!(
        machine_of(&plan, "db", "local-a", 0),
        Some("a-01"),
        "the master stays"
    );
    let entries = unplaced_of(&plan, "logs");
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].key,
        InstanceKey {
            job: "logs".into(),
            zone: "local-a".into(),
            slot: 1
        }
    );
    assert!(
        entries[0].reason.contains("a-01") && entries[0].reason.contains("no room"),
        "{}",
        entries[0].reason
    );
    assert!(plan.provision.is_empty());
}

fn mixed_workload() -> (Vec<JobSpec>, Vec<PlacementMachine>) {
    let jobs = vec![
        job("api", &[("local-a", 5), ("local-b", 3)], 1.0, 512.0),
        job("batch", &[("local-a", 9)], 0.5, 2048.0),
        job("db", &[("local-a", 2), ("local-b", 2)], 2.0, 4096.0),
        linked("logs", "db", 0.25, 64.0),
        linked("metrics", "logs", 0.25, 64.0),
        job("huge", &[("local-b", 1)], 16.0, 100.0),
        job("elsewhere", &[("aws-us-east-1b", 2)], 1.0, 1.0),
        linked("orphan", "gone", 1.0, 1.0),
    ];
    let mut all = machines("a", "local-a", 4, 4.0, 8192.0);
    all.extend(machines("b", "local-b", 2, 4.0, 8192.0));
    all.push(machine_in(
        "a-05",
        "local-a",
        5,
        4.0,
        8192.0,
        MachineState::Provisioning,
    ));
    all.push(machine_in(
        "a-06",
        "local-a",
        6,
        4.0,
        8192.0,
        MachineState::Unreachable,
    ));
    (jobs, all)
}

#[test]
fn the_plan_does_not_depend_on_input_order() {
    let (jobs, all) = mixed_workload();
    let zones = two_zones();
    let first = run(&jobs, &all, &[], &zones);
    // Some previous assignments kept, some stale, to shuffle as well.
    let mut previous: Vec<Assignment> = first.assignments.iter().step_by(2).cloned().collect();
    previous.push(Assignment {
        key: InstanceKey {
            job: "api".into(),
            zone: "local-a".into(),
            slot: 99,
        },
        machine: "a-01".into(),
    });
    let expected = run(&jobs, &all, &previous, &zones);

    for rotation in 1..5 {
        let mut jobs2 = jobs.clone();
        let mut all2 = all.clone();
        let mut previous2 = previous.clone();
        jobs2.reverse();
        let len = jobs2.len();
        jobs2.rotate_left(rotation % len);
        let len = all2.len();
        all2.rotate_left(rotation % len);
        all2.reverse();
        previous2.reverse();
        let len = previous2.len();
        previous2.rotate_left(rotation % len);
        assert_eq!(
            run(&jobs2, &all2, &previous2, &zones),
            expected,
            "rotation {rotation}"
        );
    }
}

/// Every assignment of `before` is in `after` unchanged, except those on
/// machine `gone`.
fn assert_kept(before: &Plan, after: &Plan, gone: Option<&str>) {
    for a in &before.assignments {
        if Some(a.machine.as_str()) != gone {
            assert_eq!(
                after.assignments.iter().find(|b| b.key == a.key),
                Some(a),
                "{a:?} moved"
            );
        }
    }
}

#[test]
fn adding_a_machine_moves_nothing() {
    let (jobs, mut all) = mixed_workload();
    let zones = two_zones();
    let before = run(&jobs, &all, &[], &zones);
    all.push(machine("a-00", "local-a", 7, 64.0, 65536.0));
    all.push(machine("b-00", "local-b", 3, 64.0, 65536.0));
    let after = run(&jobs, &all, &before.assignments, &zones);
    assert_kept(&before, &after, None);
    // The new machines take what was waiting, so nothing waits anymore.
    assert!(after.provision.is_empty(), "{:?}", after.provision);
    assert!(after.assignments.len() > before.assignments.len());
}

#[test]
fn removing_a_machine_moves_only_its_instances() {
    let jobs = vec![
        job("api", &[("local-a", 6)], 1.0, 512.0),
        job("db", &[("local-a", 3)], 1.0, 512.0),
        linked("logs", "db", 0.5, 64.0),
    ];
    let zones = two_zones();
    let all = machines("a", "local-a", 4, 8.0, 8192.0);
    let before = run(&jobs, &all, &[], &zones);
    assert!(before.unplaced.is_empty());
    let gone = machine_of(&before, "db", "local-a", 0)
        .expect("db placed")
        .to_string();
    let remaining: Vec<PlacementMachine> = all.iter().filter(|m| m.id != gone).cloned().collect();
    let after = run(&jobs, &remaining, &before.assignments, &zones);
    assert_kept(&before, &after, Some(&gone));
    assert!(after.assignments.iter().all(|a| a.machine != gone));
    let masters_after = after
        .assignments
        .iter()
        .filter(|a| a.key.job != "logs")
        .count();
    assert_eq!(masters_after, 9, "every master instance re-placed");
    assert_eq!(
        machines_running(&after, "logs"),
        machines_running(&after, "db")
    );
    assert!(after.unplaced.is_empty(), "{:?}", after.unplaced);
}

#[test]
fn lower_counts_drop_the_highest_slots_and_keep_the_rest() {
    let zones = two_zones();
    let all = machines("a", "local-a", 3, 8.0, 8192.0);
    let before = run(
        &[job("web", &[("local-a", 5)], 1.0, 1.0)],
        &all,
        &[],
        &zones,
    );
    let after = run(
        &[job("web", &[("local-a", 2)], 1.0, 1.0)],
        &all,
        &before.assignments,
        &zones,
    );
    assert_eq!(after.assignments, before.assignments[..2].to_vec());
}

#[test]
fn a_previous_assignment_to_a_machine_of_another_zone_is_not_kept() {
    let zones = two_zones();
    let all = vec![
        machine("a-01", "local-a", 1, 8.0, 8192.0),
        machine("b-01", "local-b", 1, 8.0, 8192.0),
    ];
    let previous = vec![Assignment {
        key: InstanceKey {
            job: "web".into(),
            zone: "local-a".into(),
            slot: 0,
        },
        machine: "b-01".into(),
    }];
    let plan = run(
        &[job("web", &[("local-a", 1)], 1.0, 1.0)],
        &all,
        &previous,
        &zones,
    );
    assert_eq!(machine_of(&plan, "web", "local-a", 0), Some("a-01"));
}

#[test]
fn a_previous_assignment_that_no_longer_fits_is_moved() {
    let zones = two_zones();
    let all = machines("a", "local-a", 2, 2.0, 8192.0);
    let before = run(
        &[job("web", &[("local-a", 2)], 1.0, 1.0)],
        &all,
        &[],
        &zones,
    );
    // Both now need 2 cores; a-01 keeps slot 0, slot 1 goes elsewhere.
    let after = run(
        &[job("web", &[("local-a", 2)], 2.0, 1.0)],
        &all,
        &before.assignments,
        &zones,
    );
    let slot0 = machine_of(&before, "web", "local-a", 0);
    assert_eq!(machine_of(&after, "web", "local-a", 0), slot0);
    assert!(machine_of(&after, "web", "local-a", 1).is_some());
    assert_ne!(machine_of(&after, "web", "local-a", 1), slot0);
}

#[test]
fn instances_that_fit_nowhere_are_packed_into_new_machines_of_the_default_size() {
    let jobs = vec![job("web", &[("local-a", 5)], 1.0, 1024.0)];
    let plan = run(&jobs, &[], &[], &two_zones());
    assert!(plan.assignments.is_empty());
    assert_eq!(plan.provision.len(), 2);
    let default = Resources {
        cpu: 4.0,
        mem_mb: 8192.0,
    };
    assert!(plan
        .provision
        .iter()
        .all(|p| p.zone == "local-a" && p.size == default));
    let mut group_sizes: Vec<usize> = plan
        .provision
        .iter()
        .map(|p| p.for_instances.len())
        .collect();
    group_sizes.sort();
    assert_eq!(group_sizes, vec![1, 4]);
    assert_eq!(plan.unplaced.len(), 5);
    assert!(plan
        .unplaced
        .iter()
        .all(|u| u.reason == "waiting for a new machine in local-a"));
}

#[test]
fn provisioning_packs_largest_first() {
    // First fit decreasing: [3, 1] and [3, 1], not [3], [3], [1, 1].
    let jobs = vec![
        job("large", &[("local-a", 2)], 3.0, 100.0),
        job("small", &[("local-a", 2)], 1.0, 100.0),
    ];
    let plan = run(&jobs, &[], &[], &two_zones());
    assert_eq!(plan.provision.len(), 2, "{:?}", plan.provision);
    for request in &plan.provision {
        let jobs: Vec<&str> = request
            .for_instances
            .iter()
            .map(|k| k.job.as_str())
            .collect();
        assert_eq!(jobs, vec!["large", "small"]);
    }
}

#[test]
fn provisioning_leaves_room_for_linked_jobs() {
    let jobs = vec![
        job("db", &[("local-a", 4)], 1.0, 100.0),
        linked("logs", "db", 1.0, 100.0),
    ];
    let plan = run(&jobs, &[], &[], &two_zones());
    // One machine of 4 cores: db with logs (2), then two more db (4); the fourth db needs another.
    let mut group_sizes: Vec<usize> = plan
        .provision
        .iter()
        .map(|p| p.for_instances.len())
        .collect();
    group_sizes.sort();
    assert_eq!(group_sizes, vec![1, 3]);
    assert!(plan
        .provision
        .iter()
        .flat_map(|p| &p.for_instances)
        .all(|k| k.job == "db"));
}

#[test]
fn an_oversized_instance_gets_a_machine_of_its_own_size() {
    let jobs = vec![
        job("huge", &[("local-a", 2)], 8.0, 1024.0),
        job("wide", &[("local-a", 1)], 1.0, 20000.0),
        job("small", &[("local-a", 1)], 1.0, 100.0),
    ];
    let plan = run(&jobs, &[], &[], &two_zones());
    let request_for = |job: &str| {
        plan.provision
            .iter()
            .filter(|p| p.for_instances.iter().any(|k| k.job == job))
            .collect::<Vec<_>>()
    };
    let huge = request_for("huge");
    assert_eq!(huge.len(), 2);
    for request in huge {
        assert_eq!(request.for_instances.len(), 1);
        assert_eq!(
            request.size,
            Resources {
                cpu: 8.0,
                mem_mb: 8192.0
            }
        );
    }
    let wide = request_for("wide");
    assert_eq!(wide.len(), 1);
    assert_eq!(wide[0].for_instances.len(), 1);
    assert_eq!(
        wide[0].size,
        Resources {
            cpu: 4.0,
            mem_mb: 20000.0
        }
    );
    let small = request_for("small");
    assert_eq!(small.len(), 1);
    assert_eq!(
        small[0].size,
        Resources {
            cpu: 4.0,
            mem_mb: 8192.0
        }
    );
    assert_eq!(plan.provision.len(), 4);
}

#[test]
fn an_unserved_zone_is_named_with_the_zones_that_are_served() {
    let jobs = vec![job(
        "web",
        &[("aws-us-east-1b", 2), ("local-a", 1)],
        1.0,
        100.0,
    )];
    let plan = run(
        &jobs,
        &machines("a", "local-a", 1, 4.0, 8192.0),
        &[],
        &two_zones(),
    );
    assert_eq!(machine_of(&plan, "web", "local-a", 0), Some("a-01"));
    let entries = unplaced_of(&plan, "web");
    assert_eq!(entries.len(), 2);
    for (slot, entry) in entries.iter().enumerate() {
        assert_eq!(
            entry.key,
            InstanceKey {
                job: "web".into(),
                zone: "aws-us-east-1b".into(),
                slot: slot as u32
            }
        );
        assert_eq!(
            entry.reason,
            "zone 'aws-us-east-1b' is not served by this cluster (it serves: local-a, local-b)"
        );
    }
    assert!(plan.provision.is_empty());
}

#[test]
fn a_provisioning_machine_prevents_asking_twice() {
    let jobs = vec![job("web", &[("local-a", 3)], 1.0, 1024.0)];
    let zones = two_zones();
    let first = run(&jobs, &[], &[], &zones);
    assert_eq!(first.provision.len(), 1);
    let request = &first.provision[0];

    let provisioning = vec![machine_in(
        "new-1",
        &request.zone,
        1,
        request.size.cpu,
        request.size.mem_mb,
        MachineState::Provisioning,
    )];
    let second = run(&jobs, &provisioning, &first.assignments, &zones);
    assert!(second.provision.is_empty(), "{:?}", second.provision);
    assert!(second.unplaced.is_empty());
    assert_eq!(
        machines_running(&second, "web"),
        BTreeSet::from(["new-1".to_string()])
    );
    assert_eq!(second.assignments.len(), 3);
}

#[test]
fn unreachable_and_decommissioning_machines_get_nothing_and_lose_their_instances() {
    let jobs = vec![
        job("web", &[("local-a", 4)], 1.0, 100.0),
        linked("logs", "web", 0.5, 10.0),
    ];
    let zones = two_zones();
    let healthy = machines("a", "local-a", 2, 8.0, 8192.0);
    let before = run(&jobs, &healthy, &[], &zones);
    assert_eq!(machines_running(&before, "web").len(), 2);

    let mut after_failure = vec![
        machine_in("a-01", "local-a", 1, 8.0, 8192.0, MachineState::Unreachable),
        machine_in(
            "a-02",
            "local-a",
            2,
            8.0,
            8192.0,
            MachineState::Decommissioning,
        ),
    ];
    after_failure.push(machine("a-03", "local-a", 3, 8.0, 8192.0));
    let after = run(&jobs, &after_failure, &before.assignments, &zones);
    assert_eq!(
        machines_running(&after, "web"),
        BTreeSet::from(["a-03".to_string()])
    );
    assert_eq!(
        machines_running(&after, "logs"),
        BTreeSet::from(["a-03".to_string()])
    );
    assert_eq!(after.assignments.len(), 5);
    assert!(after.unplaced.is_empty());
}

#[test]
fn machines_sharing_a_number_do_not_duplicate_follower_keys() {
    let jobs = vec![
        job("db", &[("local-a", 2)], 1.0, 100.0),
        linked("logs", "db", 1.0, 100.0),
    ];
    let all = vec![
        machine("a-01", "local-a", 7, 4.0, 8192.0),
        machine("a-02", "local-a", 7, 4.0, 8192.0),
    ];
    let zones = two_zones();
    // Not through `run`: the unplaced entry necessarily shares its key
    // with the placed one, which is the point of the message.
    let plan = place(&PlacementInput {
        jobs: &jobs,
        machines: &all,
        previous: &[],
        zone_machine_size: &zones,
        largest_machine: &roomy(&zones),
    });
    assert_capacity_respected(&plan, &jobs, &all);
    assert!(plan.assignments.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(machines_running(&plan, "db").len(), 2);
    assert_eq!(machines_running(&plan, "logs").len(), 1);
    let entries = unplaced_of(&plan, "logs");
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0].reason.contains("same number 7"),
        "{}",
        entries[0].reason
    );
}

/// Builds `machine_count` machines over two zones and `job_count` jobs
/// of `instances_per_zone` instances in each zone, some with followers.
fn large_cluster(
    machine_count: u32,
    job_count: u32,
    instances_per_zone: u32,
) -> (
    Vec<JobSpec>,
    Vec<PlacementMachine>,
    BTreeMap<String, Resources>,
) {
    let zones = sizes(&[("zone-a", 16.0, 32768.0), ("zone-b", 16.0, 32768.0)]);
    let mut all = machines("a", "zone-a", machine_count / 2, 16.0, 32768.0);
    all.extend(machines("b", "zone-b", machine_count / 2, 16.0, 32768.0));
    let mut jobs = Vec::new();
    for n in 0..job_count {
        let cpu = [0.5, 1.0, 0.25, 2.0][n as usize % 4];
        let mem = [256.0, 1024.0, 128.0, 2048.0][n as usize % 4];
        let name = format!("job-{n:05}");
        jobs.push(job(
            &name,
            &[
                ("zone-a", instances_per_zone),
                ("zone-b", instances_per_zone),
            ],
            cpu,
            mem,
        ));
        if n % 20 == 0 {
            jobs.push(linked(&format!("{name}-agent"), &name, 0.1, 32.0));
        }
    }
    (jobs, all, zones)
}

#[test]
fn two_thousand_machines_and_twenty_thousand_instances_are_placed_and_then_kept() {
    let (jobs, all, zones) = large_cluster(2_000, 100, 100);
    let plan = place(&PlacementInput {
        jobs: &jobs,
        machines: &all,
        previous: &[],
        zone_machine_size: &zones,
        largest_machine: &roomy(&zones),
    });
    assert_capacity_respected(&plan, &jobs, &all);
    let masters = plan
        .assignments
        .iter()
        .filter(|a| !a.key.job.ends_with("-agent"))
        .count();
    assert_eq!(masters, 20_000);
    assert!(plan.unplaced.is_empty() && plan.provision.is_empty());

    let again = place(&PlacementInput {
        jobs: &jobs,
        machines: &all,
        previous: &plan.assignments,
        zone_machine_size: &zones,
        largest_machine: &roomy(&zones),
    });
    assert_eq!(again, plan);
}

/// The pool must choose exactly what a scan of every machine in
/// (instances, id) order would choose.
#[test]
fn zone_pool_takes_what_a_linear_scan_would_take() {
    let mut seed: u64 = 0x5eed;
    let mut next = move |bound: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % bound
    };
    // Uneven steps, so needs and free room fall between the classes' edges.
    let room = |next: &mut dyn FnMut(u64) -> u64| Need {
        cpu: next(40) as f64 / 7.0,
        mem_mb: next(40) as f64 * 97.0,
    };
    for members in [0usize, 1, 2, 3, 7, 64, 100] {
        let machines: Vec<usize> = (0..members).map(|m| m * 3 + 1).collect();
        let mut pool = ZonePool::new(machines.clone());
        let mut state: BTreeMap<usize, (u32, Need)> = BTreeMap::new();
        let put = |pool: &mut ZonePool, machine: usize, next: &mut dyn FnMut(u64) -> u64| {
            let entry = (next(5) as u32, room(next));
            pool.insert(machine, entry.0, entry.1);
            entry
        };
        for &machine in &machines {
            let entry = put(&mut pool, machine, &mut next);
            state.insert(machine, entry);
        }
        for _ in 0..500 {
            let need = room(&mut next);
            // Some machines are refused by `fits` regardless of their room.
            let refused = next(4) as usize;
            let fits = |machine: usize| {
                let (_, free) = state[&machine];
                machine % 4 != refused
                    && free.cpu + EPSILON >= need.cpu
                    && free.mem_mb + EPSILON >= need.mem_mb
            };
            let expected = state
                .iter()
                .filter(|(&machine, _)| fits(machine))
                .min_by_key(|(&machine, &(instances, _))| (instances, machine))
                .map(|(&machine, _)| machine);
            assert_eq!(pool.take_first_with_room(need, fits), expected);
            if let Some(machine) = expected {
                state.remove(&machine);
            }
            // Put a machine back with changed numbers, or take one out.
            if !machines.is_empty() {
                let machine = machines[next(machines.len() as u64) as usize];
                if next(3) == 0 {
                    pool.remove(machine);
                    state.remove(&machine);
                } else {
                    let entry = put(&mut pool, machine, &mut next);
                    state.insert(machine, entry);
                }
            }
        }
    }
}

#[test]
fn no_machine_is_asked_for_that_could_not_hold_its_instance() {
    let jobs = vec![
        job("hugemem", &[("local-a", 1)], 1.0, 1e23),
        job("cores", &[("local-b", 2)], 64.0, 100.0),
        job("bigger", &[("local-a", 1)], 6.0, 9000.0),
        job("small", &[("local-a", 1)], 1.0, 100.0),
    ];
    let zones = two_zones();
    let largest = sizes(&[("local-a", 8.0, 16384.0), ("local-b", 8.0, 16384.0)]);
    let plan = place(&PlacementInput {
        jobs: &jobs,
        machines: &[],
        previous: &[],
        zone_machine_size: &zones,
        largest_machine: &largest,
    });
    for request in &plan.provision {
        assert!(
            request.size.cpu <= 8.0 && request.size.mem_mb <= 16384.0,
            "never larger than the zone's largest machine: {request:?}"
        );
        for key in &request.for_instances {
            let need = jobs
                .iter()
                .find(|j| j.name() == key.job)
                .unwrap()
                .need_in(&key.zone);
            assert!(
                need.cpu <= request.size.cpu && need.mem_mb <= request.size.mem_mb,
                "{key:?} fits the machine asked for it: {request:?}"
            );
        }
    }
    for job in ["hugemem", "cores"] {
        assert!(
            plan.provision
                .iter()
                .all(|p| p.for_instances.iter().all(|k| k.job != job)),
            "nothing is provisioned for {job}"
        );
        let unplaced = unplaced_of(&plan, job);
        assert!(!unplaced.is_empty(), "{job} is reported unplaced");
        assert!(
            unplaced
                .iter()
                .all(|u| u.reason.contains("largest: 8 cores, 16384 MB")),
            "{unplaced:?}"
        );
    }
    // Bigger than the default size but within the largest: a machine of its own.
    let bigger: Vec<_> = plan
        .provision
        .iter()
        .filter(|p| p.for_instances.iter().any(|k| k.job == "bigger"))
        .collect();
    assert_eq!(bigger.len(), 1);
    assert_eq!(
        bigger[0].size,
        Resources {
            cpu: 6.0,
            mem_mb: 9000.0
        }
    );
    assert_eq!(
        unplaced_of(&plan, "small").len(),
        1,
        "waiting for its new machine"
    );
}
