//! The clustersitter's persisted files as an older version wrote them
//! (`testdata/v1/clustersitter`, made by a local cluster in the middle of a
//! rolling update, with a linked job, a started and a stopped job, a
//! replaced machine and per-zone idle limits) load into today's types with
//! nothing lost. A change to a persisted type that breaks this breaks
//! every running cluster's upgrade.

use cerebro_host::fs::StateFile;
use cerebro_tests::{assert_journal_loads, assert_nothing_lost, fixture_dir};
use cerebro_types::cluster::ClusterEvent;
use clustersitter::store;
use serde_json::Value;

#[test]
fn cluster_state_v1_loads_with_nothing_lost() {
    let dir = fixture_dir("v1/clustersitter");
    let old: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("cluster.json")).unwrap())
            .unwrap();
    let StateFile::Read(state) = store::load(dir.path()) else {
        panic!("the v1 cluster state must load");
    };
    assert_nothing_lost(&old, &serde_json::to_value(&state).unwrap(), "cluster.json");

    // What the rest of the code reads from it, beyond the bytes.
    assert_eq!(state.jobs.len(), 3);
    let master = &state.jobs["master"];
    assert_eq!(master.generation, 2);
    assert_eq!(master.generation_on("local-a-1"), 2);
    assert_eq!(master.generation_on("local-b-3"), 1);
    assert_eq!(master.task_configuration_on("local-b-3").mem, Some(64.0));
    assert_eq!(master.task_configuration_on("local-a-1").mem, Some(80.0));
    assert!(master.rollout.is_some(), "the rolling update in progress");
    assert_eq!(state.jobs["follower"].run_requested, Some(true));
    assert_eq!(state.jobs["transient job"].run_requested, Some(false));
    assert_eq!(state.jobs["transient job"].version.as_deref(), Some("v2"));
    assert_eq!(state.machines.len(), 2);
    // Written before providers told details: they load as none told.
    for machine in state.machines.values() {
        assert!(
            machine.details.is_empty(),
            "{}: {:?}",
            machine.id,
            machine.details
        );
        assert!(machine.provider_id.is_some());
    }
    assert!(state.was_retired("local-b-2"));
    assert_eq!(state.idle_limit("local-a"), 2);
    assert_eq!(state.idle_limit("local-b"), 0);
    assert_eq!(state.assignments.len(), 6);
    // Written before DNS names: no numbers, no basenames held.
    assert!(state.dns_numbers.is_empty());
    assert!(state.dns_basenames.is_empty());
}

#[test]
fn cluster_events_v1_load_with_nothing_lost() {
    let dir = fixture_dir("v1/clustersitter");
    assert_journal_loads::<ClusterEvent>(&dir.path().join("events.jsonl"));
}
