//! The cluster's rules that need no machine: fencing holds, orphans.

use super::*;
use crate::config::Cli;
use cerebro_types::health::{ExitReason, InstanceHealth};
use cerebro_types::job::Reschedule;
use clap::Parser;

/// The v1 fixture's cluster: `master` on local-a-1 (slots 0, 1) and
/// local-b-3 (slot 0), `follower` beside it, `transient job` on local-b-3.
pub(super) fn fixture_cluster(dir: &std::path::Path) -> Cluster {
    let fixture = cerebro_tests::fixture_dir("v1/clustersitter");
    let config = Cli::try_parse_from(["clustersitter", "--state-dir", dir.to_str().unwrap()])
        .unwrap()
        .into_config()
        .unwrap();
    let cerebro_host::fs::StateFile::Read(state) = store::load(fixture.path()) else {
        panic!("the v1 fixture loads");
    };
    Cluster::new(Arc::new(config), state, "local")
}

fn plan_of(cluster: &Cluster) -> Plan {
    cluster.plan_for(&cluster.job_specs())
}

fn machine_of(plan: &Plan, job: &str, zone: &str, slot: u32) -> Option<String> {
    plan.assignments
        .iter()
        .find(|a| a.key.job == job && a.key.zone == zone && a.key.slot == slot)
        .map(|a| a.machine.clone())
}

#[test]
fn a_lost_machine_holds_its_instances_until_it_is_gone_unless_the_job_opts_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    assert!(cluster.decommission_lost("local-b-3", "the provider says it is gone"));
    let plan = plan_of(&cluster);
    for (job, slot) in [("master", 0), ("transient job", 0)] {
        assert_eq!(
            machine_of(&plan, job, "local-b", slot).as_deref(),
            Some("local-b-3"),
            "{job} waits for the fence"
        );
        assert!(
            plan.provision
                .iter()
                .all(|p| p.for_instances.iter().all(|k| k.job != job)),
            "no machine is asked for {job} before the fence: {:?}",
            plan.provision
        );
    }

    // Opting out: the instance moves at once.
    let mut spec = cluster.job("transient job").unwrap().spec.clone();
    spec.reschedule = Reschedule::Immediately;
    cluster.upsert_job(spec, None);
    let plan = plan_of(&cluster);
    assert_ne!(
        machine_of(&plan, "transient job", "local-b", 0).as_deref(),
        Some("local-b-3")
    );
    assert_eq!(
        machine_of(&plan, "master", "local-b", 0).as_deref(),
        Some("local-b-3")
    );

    // Confirmed gone: nothing is held any more.
    cluster.machine_terminated("local-b-3");
    let plan = plan_of(&cluster);
    assert!(plan.assignments.iter().all(|a| a.machine != "local-b-3"));
}

#[test]
fn only_tasks_of_known_or_removed_jobs_may_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    assert!(cluster.may_remove_task("master#0"));
    assert!(!cluster.may_remove_task("lost-job#0"));
    assert!(!cluster.may_remove_task("hand-made"));
    cluster.remove_job("transient job");
    assert!(
        cluster.may_remove_task("transient job#0"),
        "removed by request"
    );
    cluster.drop_non_persistent_jobs();
    assert!(cluster.may_remove_task("master#7"));
}

#[test]
fn the_state_survives_one_unreadable_copy() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = fixture_cluster(dir.path());
    cluster.persist().unwrap();
    let main = store::state_path(dir.path());
    let previous = store::previous_path(dir.path());
    assert_eq!(
        std::fs::read(&main).unwrap(),
        std::fs::read(&previous).unwrap()
    );
    std::fs::write(&main, b"{\"version\": 1, \"jo").unwrap();
    let store::Loaded::Recovered { state, problem } = store::load_or_previous(dir.path()) else {
        panic!("the previous copy is taken");
    };
    assert_eq!(state.jobs.len(), 3);
    assert!(problem.contains("unreadable"), "{problem}");

    cluster.persist().unwrap();
    std::fs::write(&main, b"").unwrap();
    std::fs::write(&previous, b"[").unwrap();
    assert!(matches!(
        store::load_or_previous(dir.path()),
        store::Loaded::Lost { .. }
    ));
    // A first start has neither.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        store::load_or_previous(empty.path()),
        store::Loaded::Fresh
    ));
}

#[test]
fn a_linked_job_that_would_not_fit_beside_its_master_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = fixture_cluster(dir.path());
    let linked = |cpu: f64| -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "linked_job": "master",
            "task_configuration": {"name": "sidecar", "command": "sleep 1", "cpu": cpu, "mem": 10},
        }))
        .unwrap()
    };
    // Alone it fits a 2-core machine; beside master (0.25) and follower (0.1) it cannot.
    let errors = cluster.check_job(&linked(1.8)).unwrap_err();
    assert_eq!(errors.errors[0].field, "linked_job", "{errors}");
    assert!(errors.errors[0].message.contains("2.15 cores"), "{errors}");
    assert_eq!(cluster.check_job(&linked(1.5)), Ok(None));
}

#[test]
fn a_batch_may_bring_its_master_but_not_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = fixture_cluster(dir.path());
    let job = |name: &str, link: Option<&str>| -> JobSpec {
        let mut value = serde_json::json!({
            "deployment_layout": {"local-a": {"cpu": 1}},
            "task_configuration": {"name": name, "command": "sleep 1", "cpu": 0.1, "mem": 10},
        });
        if let Some(link) = link {
            value["linked_job"] = link.into();
        }
        serde_json::from_value(value).unwrap()
    };
    // The master comes in the same batch: that is how a dry run of two new files looks.
    let batch = [job("web", None), job("sidecar", Some("web"))];
    assert_eq!(cluster.check_job_among(&batch[1], &batch), Ok(None));
    let alone = cluster.check_job(&batch[1]).unwrap_err();
    assert_eq!(alone.errors[0].field, "linked_job", "{alone}");
    // Two jobs of one batch linked to each other: refused, as job by job.
    let circle = [job("a", Some("b")), job("b", Some("a"))];
    let errors = cluster.check_job_among(&circle[0], &circle).unwrap_err();
    assert!(
        errors.errors[0].message.contains("circle"),
        "a circle inside the batch is named: {errors}"
    );
}

/// A task as a machine reports it, reserving `cpu` cores and `mem` MB.
fn reported_task(name: &str, cpu: f64, mem: f64) -> TaskView {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "spec": {"name": name, "command": "sleep 1000", "cpu": cpu, "mem": mem},
        "run_requested": true,
        "deleting": false,
        "status": null,
        "tasksitter": null,
        "sitter_starts": 0,
        "last_error": null,
    }))
    .unwrap()
}

/// local-a-1 answers a poll running `tasks`, each (name, cores, MB).
fn local_a_1_answers(cluster: &mut Cluster, tasks: &[(&str, f64, f64)]) {
    let answer = PollAnswer {
        machine: "local-a-1".into(),
        address: "127.0.0.1:44247".into(),
        tasks: Ok(tasks
            .iter()
            .map(|(name, cpu, mem)| reported_task(name, *cpu, *mem))
            .collect()),
        status: None,
    };
    cluster.record_polls(vec![answer], now_ms(), std::time::Duration::from_secs(60));
}

/// A job of one instance in local-a needing `cpu` cores.
fn big_job(cpu: f64) -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "deployment_layout": {"local-a": {"cpu": 1}},
        "task_configuration": {"name": "big", "command": "sleep 1", "cpu": cpu, "mem": 10},
    }))
    .unwrap()
}

#[test]
fn an_orphans_reservation_counts_against_its_machine() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    // local-a-1 (2 cores) holds master#0, master#1 and follower#1: 0.6 cores.
    local_a_1_answers(
        &mut cluster,
        &[
            ("master#0", 0.25, 64.0),
            ("master#1", 0.25, 64.0),
            ("follower#1", 0.1, 32.0),
            ("orph#0", 0.1, 16.0),
        ],
    );
    assert_eq!(cluster.orphans_on("local-a-1"), vec!["orph#0".to_string()]);
    let view = cluster.view_of_machine("local-a-1").unwrap();
    assert!(
        (view.reserved.cpu - 0.7).abs() < 1e-9,
        "the orphan's 0.1 cores are reserved: {:?}",
        view.reserved
    );
    assert!(
        (view.reserved.mem_mb - (80.0 + 80.0 + 32.0 + 16.0)).abs() < 1e-9,
        "{:?}",
        view.reserved
    );

    // 1.4 cores fit only without the orphan: the instance goes elsewhere.
    cluster.upsert_job(big_job(1.4), None);
    let plan = plan_of(&cluster);
    assert_ne!(
        machine_of(&plan, "big", "local-a", 0).as_deref(),
        Some("local-a-1"),
        "{plan:?}"
    );
    assert!(
        plan.provision
            .iter()
            .any(|p| p.for_instances.iter().any(|k| k.job == "big")),
        "a machine is asked for it: {plan:?}"
    );
    // What fits beside the orphan still goes there.
    cluster.upsert_job(big_job(1.3), None);
    let plan = plan_of(&cluster);
    assert_eq!(
        machine_of(&plan, "big", "local-a", 0).as_deref(),
        Some("local-a-1")
    );
}

#[test]
fn an_instance_a_machine_refuses_as_too_big_is_placed_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    local_a_1_answers(
        &mut cluster,
        &[
            ("master#0", 0.25, 64.0),
            ("master#1", 0.25, 64.0),
            ("follower#1", 0.1, 32.0),
        ],
    );
    cluster.upsert_job(big_job(1.3), None);
    let plan = plan_of(&cluster);
    assert_eq!(
        machine_of(&plan, "big", "local-a", 0).as_deref(),
        Some("local-a-1")
    );
    cluster.apply_assignments(&plan.assignments);
    // The machine knows better (something the cluster cannot see holds room).
    cluster.task_refused("local-a-1", "big#0", "has 1.20 cores free");
    let plan = plan_of(&cluster);
    assert_ne!(
        machine_of(&plan, "big", "local-a", 0).as_deref(),
        Some("local-a-1"),
        "{plan:?}"
    );
    assert!(
        plan.provision
            .iter()
            .any(|p| p.for_instances.iter().any(|k| k.job == "big")),
        "a machine is asked for it: {plan:?}"
    );
    // What it runs stays.
    assert_eq!(
        machine_of(&plan, "master", "local-a", 0).as_deref(),
        Some("local-a-1")
    );
    let events: Vec<String> = cluster.events().iter().map(|e| e.message.clone()).collect();
    assert!(
        events.iter().any(|m| m.contains("refused big#0")),
        "{events:?}"
    );
    // Polls that change nothing keep the refusal; a task leaving frees room.
    local_a_1_answers(
        &mut cluster,
        &[
            ("master#0", 0.25, 80.0),
            ("master#1", 0.25, 80.0),
            ("follower#1", 0.1, 32.0),
        ],
    );
    assert!(cluster.was_refused("local-a-1", "big#0"));
    local_a_1_answers(
        &mut cluster,
        &[("master#0", 0.25, 80.0), ("master#1", 0.25, 80.0)],
    );
    assert!(!cluster.was_refused("local-a-1", "big#0"));
}

#[test]
fn a_refusal_never_rounds_onto_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = fixture_cluster(dir.path());
    let job: JobSpec = serde_json::from_value(serde_json::json!({
        "deployment_layout": {"local-a": {"cpu": 1}},
        "task_configuration": {"name": "edge", "command": "sleep 1", "cpu": 2.0001, "mem": 10},
    }))
    .unwrap();
    let errors = cluster.check_job(&job).unwrap_err();
    assert_eq!(errors.errors[0].field, "task_configuration.cpu", "{errors}");
    assert!(
        errors.errors[0].message.contains("needs 2.0001 cores"),
        "{errors}"
    );
}

/// A machine found at start keeps what the provider tells of it (size,
/// details) in its view and in the saved state, adopted or known.
#[test]
fn a_found_machine_keeps_its_size_and_details() {
    use crate::provider::FoundMachine;
    use cerebro_types::cluster::ProviderDetails;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    let details = ProviderDetails {
        instance_type: Some("t3.small".into()),
        region: Some("us-west-2".into()),
        availability_zone: Some("us-west-2a".into()),
        private_address: Some("10.0.0.7".into()),
        public_address: Some("54.1.2.3".into()),
        provider_state: Some("running".into()),
    };
    let size = Resources {
        cpu: 2.0,
        mem_mb: 2048.0,
    };
    let found = |id: &str| FoundMachine {
        machine_id: id.into(),
        zone: "local-a".into(),
        provider_id: format!("i-{id}"),
        address: None,
        size: Some(size),
        details: details.clone(),
    };
    cluster.machine_found(&found("local-a-9"));
    cluster.machine_found(&found("local-a-1"));
    for id in ["local-a-9", "local-a-1"] {
        let view = cluster.view_of_machine(id).unwrap();
        assert_eq!(view.details, details, "{id}");
        assert_eq!(view.capacity, size, "{id}");
        assert_eq!(
            view.provider_id.as_deref(),
            Some(format!("i-{id}").as_str())
        );
    }
    cluster.persist().unwrap();
    let cerebro_host::fs::StateFile::Read(saved) = store::load(dir.path()) else {
        panic!("the saved state loads");
    };
    assert_eq!(saved.machines["local-a-9"].details, details);
    assert_eq!(saved.machines["local-a-1"].capacity, size);
}

#[test]
fn a_machine_found_in_a_zone_not_served_is_reported_and_left_alone() {
    use crate::provider::FoundMachine;
    use cerebro_types::cluster::ProviderDetails;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    cluster.machine_found(&FoundMachine {
        machine_id: "old-1".into(),
        zone: "aws-us-west-2c".into(),
        provider_id: "i-0123".into(),
        address: None,
        size: None,
        details: ProviderDetails::default(),
    });
    assert!(cluster.machine("old-1").is_none(), "not adopted");
    let told: Vec<_> = cluster
        .events()
        .iter()
        .filter(|e| e.kind == ClusterEventKind::MachineUnmanaged)
        .cloned()
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].message.contains("i-0123") && told[0].message.contains("aws-us-west-2c"),
        "{told:?}"
    );
}

/// A task running since `started_at_ms`, as its machine reports it, with
/// its deployment at `deploy`.
fn deployed_task(
    name: &str,
    started_at_ms: u64,
    deploy: Option<cerebro_types::deploy::DeployStatus>,
) -> TaskView {
    let mut task = reported_task(name, 0.1, 10.0);
    task.status = Some(
        serde_json::from_value(serde_json::json!({
            "name": name, "command": "sleep 1000",
            "state": {"state": "running", "pid": 7, "started_at_ms": started_at_ms},
            "pid": 7, "started_at_ms": started_at_ms, "uptime_secs": null,
            "starts": 1, "restarts": 0, "cpu_cores": 0.0, "rss_bytes": 0, "processes": 1,
            "limits": {"cpu_cores": null, "mem_bytes": null, "time_limit_secs": null, "cpu_action": "throttle"},
            "backend": "poll", "violations": {"memory": 0, "cpu": 0, "time": 0},
            "last_exit": null, "events": [], "tasksitter_pid": 6,
        }))
        .unwrap(),
    );
    task.deploy = deploy;
    task
}

/// A deployment of `release` in `state`; a failed one names its step.
fn deploy_status(
    release: &str,
    state: cerebro_types::deploy::DeployState,
) -> cerebro_types::deploy::DeployStatus {
    let failed = state == cerebro_types::deploy::DeployState::Failed;
    cerebro_types::deploy::DeployStatus {
        release: release.to_string(),
        version: None,
        state,
        running_release: None,
        step: failed.then(|| "step 1 (fetch \"release archive\")".to_string()),
        error: failed.then(|| "sha256 mismatch".to_string()),
        output_tail: failed.then(|| "<got 00ff>".to_string()),
        attempts: 1,
        next_attempt_ms: None,
        updated_ms: 0,
    }
}

/// The release instance `slot` of `master` in `zone` is sent on `machine`.
fn release_of(cluster: &Cluster, zone: &str, slot: u32, machine: &str) -> String {
    let key = InstanceKey {
        job: "master".into(),
        zone: zone.into(),
        slot,
    };
    cluster
        .instance_deployment(&key, machine)
        .expect("a deployment")
        .release_id()
}

fn rollout_events(cluster: &Cluster, kind: ClusterEventKind) -> Vec<String> {
    cluster
        .events()
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.message.clone())
        .collect()
}

#[test]
fn a_rollout_waits_for_each_machine_to_deploy_and_stops_at_a_failed_one() {
    use cerebro_types::deploy::DeployState::{Checking, Failed, Ready};
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    let mut spec = cluster.job("master").unwrap().spec.clone();
    spec.deployment_recipe = Some("release-tarball".into());
    spec.recipe_options = serde_json::from_value(serde_json::json!({
        "url": "http://127.0.0.1:1/app-v1.tar.gz", "sha256": "ab".repeat(32)
    }))
    .unwrap();
    let recipe = cluster.resolve_recipe(&spec).unwrap();
    assert_eq!(
        recipe.as_ref().map(|r| r.source.as_str()),
        Some("builtin:release-tarball")
    );
    assert_eq!(cluster.upsert_job(spec, recipe), UpsertOutcome::Updated);
    let target = cluster
        .job("master")
        .unwrap()
        .rollout
        .as_ref()
        .unwrap()
        .target_generation;
    // The machines not reached yet keep deploying what they did: nothing.
    let key_b = InstanceKey {
        job: "master".into(),
        zone: "local-b".into(),
        slot: 0,
    };
    assert_eq!(cluster.instance_deployment(&key_b, "local-b-3"), None);

    let t0 = 1_000_000;
    assert!(cluster.advance_rollouts(t0));
    let job = cluster.job("master").unwrap();
    assert_eq!(job.generation_on("local-a-1"), target);
    assert!(job.generation_on("local-b-3") < target);
    let key_a = InstanceKey {
        job: "master".into(),
        zone: "local-a".into(),
        slot: 1,
    };
    let sent = cluster.instance_deployment(&key_a, "local-a-1").unwrap();
    assert_eq!(
        (
            sent.instance,
            sent.zone.as_str(),
            sent.machine.as_str(),
            sent.cluster.as_str()
        ),
        (1, "local-a", "local-a-1", "local")
    );
    let (r0, r1) = (
        release_of(&cluster, "local-a", 0, "local-a-1"),
        release_of(&cluster, "local-a", 1, "local-a-1"),
    );
    assert_ne!(r0, r1, "each instance its own release");

    // Running long enough, but one instance is still checking: waits.
    let report = |cluster: &mut Cluster, machine: &str, tasks: Vec<TaskView>| {
        cluster.reports.insert(
            machine.to_string(),
            MachineReport {
                tasks: tasks.into_iter().map(|t| (t.name.clone(), t)).collect(),
                status: None,
            },
        );
    };
    let later = t0 + 60_000;
    report(
        &mut cluster,
        "local-a-1",
        vec![
            deployed_task("master#0", t0 + 1, Some(deploy_status(&r0, Ready))),
            deployed_task("master#1", t0 + 1, Some(deploy_status(&r1, Checking))),
        ],
    );
    cluster.advance_rollouts(later);
    assert!(cluster.job("master").unwrap().generation_on("local-b-3") < target);

    // A failure of the release it was sent stops the rollout there, once.
    report(
        &mut cluster,
        "local-a-1",
        vec![
            deployed_task("master#0", t0 + 1, Some(deploy_status(&r0, Ready))),
            deployed_task("master#1", t0 + 1, Some(deploy_status(&r1, Failed))),
        ],
    );
    assert!(cluster.advance_rollouts(later));
    cluster.advance_rollouts(later + 1000);
    let stopped = rollout_events(&cluster, ClusterEventKind::RolloutStopped);
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    for part in [
        "local-a-1",
        "instance 1",
        "master#1",
        "step 1 (fetch \"release archive\")",
        "sha256 mismatch",
    ] {
        assert!(stopped[0].contains(part), "{part}: {}", stopped[0]);
    }
    assert!(cluster.job("master").unwrap().generation_on("local-b-3") < target);
    let view = cluster.view_of_job("master").unwrap();
    let stop = view
        .rollout
        .unwrap()
        .stopped
        .expect("the view says it stopped");
    assert_eq!((stop.machine.as_str(), stop.instance), ("local-a-1", 1));
    assert_eq!(view.instances[1].deploy.as_ref().unwrap().state, Failed);
    assert_eq!(view.recipe.unwrap().source, "builtin:release-tarball");

    // The machine's retry succeeds: the rollout goes on to local-b-3,
    // which is sent the new recipe with its PUT.
    report(
        &mut cluster,
        "local-a-1",
        vec![
            deployed_task("master#0", t0 + 1, Some(deploy_status(&r0, Ready))),
            deployed_task("master#1", t0 + 1, Some(deploy_status(&r1, Ready))),
        ],
    );
    assert!(cluster.advance_rollouts(later + 2000));
    assert_eq!(
        cluster.job("master").unwrap().generation_on("local-b-3"),
        target
    );
    assert_eq!(
        rollout_events(&cluster, ClusterEventKind::RolloutStopped).len(),
        1
    );
    assert!(cluster
        .job("master")
        .unwrap()
        .rollout
        .as_ref()
        .unwrap()
        .stopped
        .is_none());
    let rb = release_of(&cluster, "local-b", 0, "local-b-3");

    // Running there but deployed a release it was not sent: still waits.
    let t1 = later + 2000;
    report(
        &mut cluster,
        "local-b-3",
        vec![deployed_task(
            "master#2",
            t1 + 1,
            Some(deploy_status("v-old", Ready)),
        )],
    );
    cluster.advance_rollouts(t1 + 60_000);
    assert!(cluster.job("master").unwrap().rollout.is_some());
    report(
        &mut cluster,
        "local-b-3",
        vec![deployed_task(
            "master#2",
            t1 + 1,
            Some(deploy_status(&rb, Ready)),
        )],
    );
    cluster.advance_rollouts(t1 + 60_000);
    let job = cluster.job("master").unwrap();
    assert!(job.rollout.is_none(), "complete");
    assert!(job.superseded_deploys.is_empty());
}

#[test]
fn a_new_recipe_content_or_options_roll_and_old_generations_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let recipes = dir.path().join("recipes");
    std::fs::create_dir_all(recipes.join("mystartup/recipes")).unwrap();
    let file = recipes.join("mystartup/recipes/deploy.toml");
    let recipe = |command: &str| {
        format!("[[steps]]\nkind = \"run\"\ncommand = \"{command}\"\nenv = {{ BRANCH = \"{{{{ options.branch }}}}\" }}\n")
    };
    std::fs::write(&file, recipe("true")).unwrap();
    let state = dir.path().join("state");
    let mut config = Cli::try_parse_from(["clustersitter", "--state-dir", state.to_str().unwrap()])
        .unwrap()
        .into_config()
        .unwrap();
    config.recipe_dirs = vec![recipes.clone()];
    let fixture = cerebro_tests::fixture_dir("v1/clustersitter");
    let cerebro_host::fs::StateFile::Read(loaded) = store::load(fixture.path()) else {
        panic!("the v1 fixture loads");
    };
    let mut cluster = Cluster::new(Arc::new(config), loaded, "local");
    // The fixture's master names mystartup.recipes.deploy with a branch.
    assert!(cluster.resolve_missing_recipes());
    let first = cluster.job("master").unwrap().recipe.clone().unwrap();
    assert_eq!(first.source, file.display().to_string());

    // The same spec and file: unchanged. Another file content: a rollout.
    let spec = cluster.job("master").unwrap().spec.clone();
    let same = cluster.check_job(&spec).unwrap();
    assert_eq!(
        cluster.upsert_job(spec.clone(), same),
        UpsertOutcome::Unchanged
    );
    std::fs::write(&file, recipe("make install")).unwrap();
    let changed = cluster.check_job(&spec).unwrap();
    assert_eq!(
        cluster.upsert_job(spec.clone(), changed),
        UpsertOutcome::Updated
    );
    let job = cluster.job("master").unwrap();
    let rollout = job.rollout.clone().expect("a recipe change rolls");
    let (old, _) = job.deploy_on("local-b-3");
    assert_eq!(
        old.unwrap().sha256,
        first.sha256,
        "not reached: the old recipe"
    );
    cluster.advance_rollouts(now_ms());
    let job = cluster.job("master").unwrap();
    assert_eq!(job.generation_on("local-a-1"), rollout.target_generation);
    assert_ne!(job.deploy_on("local-a-1").0.unwrap().sha256, first.sha256);
    assert_eq!(job.deploy_on("local-b-3").0.unwrap().sha256, first.sha256);

    // Other options roll too; the machines keep the options they had.
    let mut other = spec.clone();
    other
        .recipe_options
        .insert("branch".into(), serde_json::json!("release"));
    let recipe = cluster.check_job(&other).unwrap();
    assert_eq!(cluster.upsert_job(other, recipe), UpsertOutcome::Updated);
    let job = cluster.job("master").unwrap();
    assert_eq!(job.deploy_on("local-b-3").1["branch"], "main");
    assert_eq!(job.deploy_on("local-a-1").1["branch"], "main");

    // A missing option is refused naming it.
    let mut bare = spec.clone();
    bare.recipe_options.clear();
    let errors = cluster.check_job(&bare).unwrap_err();
    assert_eq!(errors.errors[0].field, "recipe_options.branch", "{errors}");

    // updatejob re-reads the file: once gone, the update is refused.
    std::fs::remove_file(&file).unwrap();
    let errors = cluster.resolve_recipe(&spec).unwrap_err();
    assert_eq!(errors.errors[0].field, "deployment_recipe");
    assert!(
        errors.errors[0].message.contains(
            &recipes
                .join("mystartup/recipes/deploy.toml")
                .display()
                .to_string()
        ),
        "{errors}"
    );
}

#[test]
fn an_older_job_whose_recipe_does_not_resolve_keeps_running_with_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    assert!(!cluster.resolve_missing_recipes());
    let job = cluster.job("master").unwrap();
    assert!(job.recipe.is_none());
    let key = InstanceKey {
        job: "master".into(),
        zone: "local-a".into(),
        slot: 0,
    };
    assert!(cluster.instance_spec(&key, "local-a-1").is_some());
    assert_eq!(cluster.instance_deployment(&key, "local-a-1"), None);
    let events = rollout_events(&cluster, ClusterEventKind::RecipeUnresolved);
    assert_eq!(events.len(), 1);
    assert!(
        events[0].contains("no recipe 'mystartup.recipes.deploy'")
            && events[0].contains("runs as before"),
        "{events:?}"
    );
}

/// A failed deployment is one event at its first failed attempt (retries
/// only fill the deploy log), and a release turning ready is one more.
#[test]
fn deploy_failures_and_readiness_are_events_once() {
    use super::machines::deploy_change;
    use cerebro_types::deploy::DeployState::{Failed, Installing, Pending, Ready};
    let task = |state, attempts: u32| {
        let mut status = deploy_status("v2-abc", state);
        status.attempts = attempts;
        deployed_task("web#0", 1, Some(status))
    };
    let change = |before: &TaskView, after: &TaskView| {
        deploy_change("m-1", "web#0", Some(before), after).map(|(_, kind, message)| (kind, message))
    };
    let (kind, message) = change(&task(Installing, 0), &task(Failed, 1)).unwrap();
    assert_eq!(kind, ClusterEventKind::DeployFailed);
    for part in [
        "web#0",
        "v2-abc",
        "step 1 (fetch \"release archive\")",
        "sha256 mismatch",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert_eq!(change(&task(Failed, 1), &task(Failed, 1)), None);
    assert_eq!(
        change(&task(Installing, 1), &task(Failed, 2)),
        None,
        "a retry failing again"
    );
    let (kind, message) = change(&task(Installing, 2), &task(Ready, 3)).unwrap();
    assert_eq!(kind, ClusterEventKind::DeployReady);
    assert!(message.ends_with("ready after 3 attempts"), "{message}");
    assert_eq!(change(&task(Ready, 3), &task(Ready, 3)), None);
    // A first sight of a task (a clustersitter restart) says nothing.
    assert_eq!(deploy_change("m-1", "web#0", None, &task(Ready, 1)), None);
    assert_eq!(change(&task(Pending, 0), &task(Pending, 0)), None);
}

/// The fixture with `master` named under `master.cerebro.test`.
fn named_fixture(dir: &std::path::Path) -> Cluster {
    let mut cluster = fixture_cluster(dir);
    let mut spec = cluster.job("master").unwrap().spec.clone();
    spec.dns_basename = Some("Master.Cerebro.Test.".into());
    cluster.upsert_job(spec, None);
    cluster
}

#[test]
fn a_zone_name_has_the_machines_where_an_instance_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = named_fixture(dir.path());
    let running = |slot| deployed_task(&instance_task_name("master", slot), now_ms(), None);
    let answer = |tasks: Vec<TaskView>| PollAnswer {
        machine: "local-a-1".into(),
        address: "127.0.0.1:44247".into(),
        tasks: Ok(tasks),
        status: None,
    };
    // None of its two instances runs: not in local-a.master....
    cluster.record_polls(
        vec![answer(Vec::new())],
        now_ms(),
        std::time::Duration::from_secs(60),
    );
    let snapshot = cluster.dns_snapshot();
    let names: Vec<&String> = snapshot.desired.owners.keys().collect();
    assert_eq!(
        names,
        [
            "0.local-a.master.cerebro.test",
            "0.local-b.master.cerebro.test"
        ]
    );
    // One runs (the other still starting, as when its zone grew): it serves.
    cluster.record_polls(
        vec![answer(vec![running(0)])],
        now_ms(),
        std::time::Duration::from_secs(60),
    );
    let snapshot = cluster.dns_snapshot();
    let zone = &snapshot.desired.sets[&(
        "local-a.master.cerebro.test".to_string(),
        cerebro_types::dns::RecordType::A,
    )];
    assert_eq!(zone.values, ["127.0.0.1".to_string()].into());
    assert!(!snapshot
        .desired
        .owners
        .contains_key("local-b.master.cerebro.test"));
    // Unreachable: out of the zone name, keeping its own.
    for _ in 0..3 {
        cluster.record_polls(
            vec![PollAnswer {
                tasks: Err(cerebro_client::ClientError::Status {
                    url: "http://127.0.0.1:44247".into(),
                    status: 503,
                    body: String::new(),
                }),
                ..answer(Vec::new())
            }],
            now_ms(),
            std::time::Duration::from_secs(60),
        );
    }
    assert_eq!(
        cluster.machine("local-a-1").unwrap().state(),
        MachineState::Unreachable
    );
    let snapshot = cluster.dns_snapshot();
    assert!(!snapshot
        .desired
        .owners
        .contains_key("local-a.master.cerebro.test"));
    assert!(snapshot
        .desired
        .owners
        .contains_key("0.local-a.master.cerebro.test"));
}

#[test]
fn a_stored_job_outside_the_zone_is_told_once_and_gets_no_names() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = cerebro_tests::fixture_dir("v1/clustersitter");
    let mut config =
        Cli::try_parse_from(["clustersitter", "--state-dir", dir.path().to_str().unwrap()])
            .unwrap()
            .into_config()
            .unwrap();
    config.dns.zone = Some("example.org".into());
    let cerebro_host::fs::StateFile::Read(mut state) = store::load(fixture.path()) else {
        panic!("the v1 fixture loads");
    };
    state.jobs.get_mut("master").unwrap().spec.dns_basename = Some("m.cerebro.test".into());
    let mut cluster = Cluster::new(Arc::new(config), state, "local");
    cluster.note_nameless_jobs();
    let told: Vec<String> = cluster
        .events()
        .iter()
        .filter(|e| e.kind == ClusterEventKind::DnsConflict)
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("not in the DNS zone 'example.org'"),
        "{told:?}"
    );
    assert!(cluster.dns_snapshot().desired.sets.is_empty());
    assert!(cluster.view_of_job("master").unwrap().dns_names.is_empty());
}

/// The ports a machine allocated for an instance's task show in the
/// instance's view at the machine's address; an instance whose task
/// reports none shows none (and no host).
#[test]
fn an_instance_shows_the_ports_its_machine_allocated_at_the_machines_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    let before = cluster.view_of_job("master").unwrap();
    let placed: Vec<_> = before
        .instances
        .iter()
        .filter(|i| i.machine.as_deref() == Some("local-a-1"))
        .cloned()
        .collect();
    assert_eq!(placed.len(), 2, "{placed:?}");
    assert!(placed
        .iter()
        .all(|i| i.ports.is_empty() && i.host.is_none()));
    let mut with_ports = reported_task(&placed[0].task_name, 0.1, 10.0);
    with_ports.ports = [("http".to_string(), 20007u16)].into();
    let without = reported_task(&placed[1].task_name, 0.1, 10.0);
    cluster.reports.insert(
        "local-a-1".into(),
        MachineReport {
            tasks: [with_ports, without]
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            status: None,
        },
    );
    let view = cluster.view_of_job("master").unwrap();
    let shown = &view.instances[placed[0].index];
    assert_eq!(shown.host.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        shown.endpoints(),
        vec![("http".to_string(), "127.0.0.1:20007".to_string())]
    );
    let other = &view.instances[placed[1].index];
    assert!(other.ports.is_empty() && other.host.is_none(), "{other:?}");
    // Absent from the JSON of an instance without ports, as in older answers.
    let json = serde_json::to_value(other).unwrap();
    assert!(
        json.get("ports").is_none() && json.get("host").is_none(),
        "{json}"
    );
}

/// An instance on a machine whose last poll failed no longer counts as
/// running: it is pending, its machine named, from the first missed poll.
#[test]
fn an_instance_of_a_machine_that_missed_a_poll_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    let mut task = deployed_task("master#0", now_ms(), None);
    task.spec.cpu = Some(0.25);
    let answer = |tasks| PollAnswer {
        machine: "local-a-1".into(),
        address: "127.0.0.1:44247".into(),
        tasks,
        status: None,
    };
    let timeout = std::time::Duration::from_secs(60);
    cluster.record_polls(vec![answer(Ok(vec![task]))], now_ms(), timeout);
    let on_a = |cluster: &Cluster| {
        cluster
            .instances_of("master")
            .into_iter()
            .find(|i| i.machine.as_deref() == Some("local-a-1") && i.slot == 0)
            .unwrap()
    };
    assert_eq!(on_a(&cluster).health, InstanceHealth::Running);
    let refused = cerebro_client::ClientError::Status {
        url: "http://127.0.0.1:44247/api/v1/tasks".into(),
        status: 503,
        body: String::new(),
    };
    cluster.record_polls(vec![answer(Err(refused))], now_ms(), timeout);
    let instance = on_a(&cluster);
    assert_eq!(instance.health, InstanceHealth::Pending);
    let pending = instance.pending.unwrap();
    assert_eq!(
        (pending.code.as_str(), pending.message.as_str()),
        ("machine_unreachable", "its machine local-a-1 missed 1 poll")
    );
    let job = cluster.view_of_job("master").unwrap();
    assert_eq!(job.running_instances, 0);
    assert_eq!(cluster.status().instances.running, 0);
}

mod instance_events {
    use super::super::machines::{instance_changes, InstanceChange};
    use super::*;
    use cerebro_types::health::CRASH_LOOP_WINDOW_MS;
    use cerebro_types::task::{
        CpuAction, EventKind, ExitStatus, Limits, LimitsBackendKind, TaskEvent, TaskState,
        TaskStatus, Violation, ViolationCounts, ViolationKind,
    };

    const NOW: u64 = 50_000_000;
    const MB: f64 = 1024.0 * 1024.0;

    fn status(state: TaskState, restarts: u64, events: Vec<TaskEvent>) -> TaskStatus {
        let mut violations = ViolationCounts::default();
        for event in &events {
            if let EventKind::Violation(v) = &event.kind {
                violations.record(v.kind);
            }
        }
        let last_exit = events.iter().rev().find_map(|e| match e.kind {
            EventKind::Exited { status, .. } => Some(status),
            _ => None,
        });
        TaskStatus {
            pid: state.pid(),
            started_at_ms: state.started_at_ms(),
            state,
            starts: restarts + 1,
            restarts,
            processes: 1,
            violations,
            last_exit,
            events,
            ..TaskStatus::not_started(
                "ticker#2",
                "hog",
                Limits {
                    cpu_cores: None,
                    mem_bytes: Some(128 * 1024 * 1024),
                    time_limit_secs: None,
                    cpu_action: CpuAction::Restart,
                },
                LimitsBackendKind::Poll,
                1,
            )
        }
    }

    fn running(pid: u32, at: u64) -> TaskState {
        TaskState::Running {
            pid,
            started_at_ms: at,
        }
    }

    fn event(at_ms: u64, kind: EventKind) -> TaskEvent {
        TaskEvent { at_ms, kind }
    }

    fn oom() -> Violation {
        Violation {
            kind: ViolationKind::Memory,
            measured: 210.0 * MB,
            limit: 128.0 * MB,
            by_kernel: true,
        }
    }

    /// One run of the process started as `pid` at `at`: started, went past
    /// its memory limit, was killed, and is restarted by its policy.
    fn oom_run(pid: u32, at: u64) -> Vec<TaskEvent> {
        vec![
            event(
                at,
                EventKind::Started {
                    pid,
                    start_number: u64::from(pid),
                },
            ),
            event(at + 100, EventKind::Violation(oom())),
            event(
                at + 110,
                EventKind::Exited {
                    pid,
                    status: ExitStatus::Signal(9),
                },
            ),
            event(at + 120, EventKind::Restarting { attempt: pid }),
        ]
    }

    fn messages(before: Option<&TaskStatus>, after: &TaskStatus) -> Vec<(String, String)> {
        instance_changes(before, NOW - 1_000, after, NOW)
            .iter()
            .map(|c| {
                let (kind, message) = c.describe("ticker #2 (local-b)", "local-b-1");
                (kind.name().to_string(), message)
            })
            .collect()
    }

    /// Two ends between two polls are one event that says two, so the
    /// events add up to the restart count.
    #[test]
    fn two_ends_between_polls_are_told_as_two() {
        let before = status(running(1, NOW - 5_000), 1, vec![]);
        let after = status(
            running(3, NOW - 100),
            3,
            vec![
                event(
                    NOW - 900,
                    EventKind::Exited {
                        pid: 1,
                        status: ExitStatus::Code(3),
                    },
                ),
                event(
                    NOW - 300,
                    EventKind::Exited {
                        pid: 2,
                        status: ExitStatus::Code(4),
                    },
                ),
            ],
        );
        let told = messages(Some(&before), &after);
        assert!(
            told.iter().any(|(kind, message)| kind == "instance_exited"
                && message
                    == "ticker #2 (local-b) on local-b-1 ended 2 times since the last poll, the last: exit code 4; restarts 2 to 3"),
            "{told:?}"
        );
    }

    #[test]
    fn a_first_start_is_the_one_runs_event_and_a_stopped_task_says_nothing() {
        let up = status(
            running(4242, NOW - 500),
            0,
            vec![event(
                NOW - 500,
                EventKind::Started {
                    pid: 4242,
                    start_number: 1,
                },
            )],
        );
        assert_eq!(
            messages(None, &up),
            vec![(
                "instance_started".to_string(),
                "ticker #2 (local-b) running on local-b-1, pid 4242".to_string()
            )]
        );
        let stopped = status(TaskState::Stopped, 0, vec![]);
        assert!(messages(None, &stopped).is_empty(), "auto_start false");
        assert_eq!(messages(Some(&stopped), &up).len(), 1);
        assert!(messages(Some(&up), &up).is_empty(), "told once");
        // Stopped by request: nothing ran, nothing ended badly.
        assert!(messages(Some(&up), &stopped).is_empty());
    }

    #[test]
    fn an_oom_kill_is_a_violation_with_its_values_and_an_exit_with_its_reason() {
        let first = oom_run(1, NOW - 900);
        let before = status(running(1, NOW - 900), 0, first[..1].to_vec());
        let mut events = first.clone();
        events.push(event(
            NOW - 600,
            EventKind::Started {
                pid: 2,
                start_number: 2,
            },
        ));
        let after = status(running(2, NOW - 600), 1, events);
        assert_eq!(
            messages(Some(&before), &after),
            vec![
                (
                    "instance_violation".to_string(),
                    "ticker #2 (local-b) on local-b-1: killed by the kernel for memory: 210.0 MB used, limit 128.0 MB".to_string()
                ),
                (
                    "instance_exited".to_string(),
                    "ticker #2 (local-b) on local-b-1 ended: killed by the kernel for memory: 210.0 MB used, limit 128.0 MB (killed by signal 9); restart 1".to_string()
                ),
            ],
            "a restart by its own policy is no new start"
        );
        assert!(messages(Some(&after), &after).is_empty());
    }

    /// The tasksitter learns of a kernel OOM kill after the exit: the
    /// violation that follows an exit is still that exit's reason.
    #[test]
    fn a_kernel_oom_told_after_the_exit_is_its_reason() {
        let before = status(
            running(1, NOW - 900),
            0,
            oom_run(1, NOW - 900)[..1].to_vec(),
        );
        let mut events = before.events.clone();
        events.push(event(
            NOW - 800,
            EventKind::Exited {
                pid: 1,
                status: ExitStatus::Code(137),
            },
        ));
        events.push(event(NOW - 790, EventKind::Violation(oom())));
        events.push(event(NOW - 780, EventKind::Restarting { attempt: 1 }));
        let after = status(
            TaskState::Backoff {
                restart_at_ms: NOW,
                attempt: 1,
            },
            1,
            events,
        );
        let told = messages(Some(&before), &after);
        assert_eq!(told.len(), 2, "{told:?}");
        assert_eq!(
            told[1].1,
            "ticker #2 (local-b) on local-b-1 ended: killed by the kernel for memory: 210.0 MB used, limit 128.0 MB (exit code 137); restart 1"
        );
        assert_eq!(
            ExitReason::last_of(&after)
                .and_then(|r| r.violation)
                .map(|v| v.by_kernel),
            Some(true)
        );
    }

    #[test]
    fn violations_the_history_lost_are_counted_from_the_counters() {
        let before = status(running(1, NOW - 5_000), 0, vec![]);
        let mut after = before.clone();
        after.violations.memory = 2;
        assert_eq!(
            messages(Some(&before), &after),
            vec![(
                "instance_violation".to_string(),
                "ticker #2 (local-b) on local-b-1: 2 more violations of its memory limit of 128.0 MB since the last poll".to_string()
            )]
        );
    }

    #[test]
    fn crash_looping_is_told_once_as_it_begins() {
        let mut events = Vec::new();
        let mut statuses = Vec::new();
        for pid in 1..=5u32 {
            let at = NOW - 5_000 + u64::from(pid) * 500;
            events.extend(oom_run(pid, at));
            statuses.push(status(
                TaskState::Backoff {
                    restart_at_ms: at + 400,
                    attempt: pid,
                },
                u64::from(pid),
                events.clone(),
            ));
        }
        let told: Vec<Vec<String>> = statuses
            .windows(2)
            .map(|w| {
                messages(Some(&w[0]), &w[1])
                    .into_iter()
                    .map(|(kind, _)| kind)
                    .collect()
            })
            .collect();
        assert_eq!(
            told,
            vec![
                vec!["instance_violation", "instance_exited"],
                vec![
                    "instance_violation",
                    "instance_exited",
                    "instance_crash_looping"
                ],
                vec!["instance_violation", "instance_exited"],
                vec!["instance_violation", "instance_exited"],
            ]
        );
        let (_, message) = messages(Some(&statuses[1]), &statuses[2]).remove(2);
        assert_eq!(
            message,
            "ticker #2 (local-b) on local-b-1 is crash-looping: 3 restarts in 5 min; last: killed by the kernel for memory: 210.0 MB used, limit 128.0 MB (killed by signal 9)"
        );
        // Its restarts aged out of the window: a new loop is told again.
        let calm = instance_changes(
            Some(&statuses[2]),
            NOW + CRASH_LOOP_WINDOW_MS,
            &statuses[3],
            NOW,
        );
        assert!(calm
            .iter()
            .any(|c| matches!(c, InstanceChange::CrashLooping { .. })));
    }

    #[test]
    fn a_fatal_end_is_one_failure() {
        let before = status(
            running(1, NOW - 900),
            2,
            oom_run(1, NOW - 900)[..1].to_vec(),
        );
        let mut events = before.events.clone();
        events.push(event(
            NOW - 100,
            EventKind::Exited {
                pid: 1,
                status: ExitStatus::Code(3),
            },
        ));
        let fatal = status(
            TaskState::Fatal {
                status: ExitStatus::Code(3),
                restarts: 2,
            },
            2,
            events,
        );
        assert_eq!(
            messages(Some(&before), &fatal),
            vec![(
                "instance_failed".to_string(),
                "ticker #2 (local-b) on local-b-1 failed: exit code 3".to_string()
            )]
        );
        assert!(messages(Some(&fatal), &fatal).is_empty());
    }

    /// Through the polls: events name the job, its instance by the
    /// cluster's number and zone, and the machine; no machine-subject
    /// task events any more.
    #[test]
    fn polls_make_job_events_on_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = fixture_cluster(dir.path());
        let with_status = |status: TaskStatus| {
            let mut task = reported_task("master#1", 0.25, 64.0);
            task.status = Some(status);
            task
        };
        let answer = |task: TaskView| PollAnswer {
            machine: "local-a-1".into(),
            address: "127.0.0.1:44247".into(),
            tasks: Ok(vec![task]),
            status: None,
        };
        let start = now_ms();
        let up = status(running(77, start), 0, vec![]);
        let mut stopped = up.clone();
        stopped.state = TaskState::Stopped;
        stopped.pid = None;
        let timeout = std::time::Duration::from_secs(60);
        cluster.record_polls(vec![answer(with_status(stopped))], start, timeout);
        cluster.record_polls(vec![answer(with_status(up))], start + 1_000, timeout);
        let told: Vec<&ClusterEvent> = cluster
            .events()
            .iter()
            .filter(|e| e.kind == ClusterEventKind::InstanceStarted)
            .collect();
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(
            told[0].message,
            "master #1 (local-a) running on local-a-1, pid 77"
        );
        assert_eq!(told[0].machine.as_deref(), Some("local-a-1"));
        assert!(told[0].concerns(&cerebro_types::cluster::EventSubject::Job("master".into())));

        // Its tasksitter dies and the machine starts another, which starts
        // the process anew with counts from zero: told all the same.
        let mut anew = with_status(status(running(78, start + 2_000), 0, vec![]));
        anew.sitter_starts += 1;
        cluster.record_polls(vec![answer(anew.clone())], start + 3_000, timeout);
        // An update gives it a new spec, and so a new tasksitter: on purpose,
        // not an end.
        let mut updated = anew;
        updated.sitter_starts += 1;
        updated
            .spec
            .env
            .insert("CEREBRO_JOB_GENERATION".into(), "3".into());
        cluster.record_polls(vec![answer(updated)], start + 4_000, timeout);
        let exited: Vec<&ClusterEvent> = cluster
            .events()
            .iter()
            .filter(|e| e.kind == ClusterEventKind::InstanceExited)
            .collect();
        assert_eq!(exited.len(), 1, "{exited:?}");
        assert!(
            exited[0]
                .message
                .starts_with("master #1 (local-a) on local-a-1: its tasksitter ended"),
            "{}",
            exited[0].message
        );
    }
}
