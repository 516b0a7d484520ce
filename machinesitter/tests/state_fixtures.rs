//! The machinesitter's persisted files as an older version wrote them
//! (`testdata/v1/machinesitter`: a machine of a local cluster running a
//! linked job's instance and two instances of a job in a rolling update)
//! load into today's types with nothing lost.

use cerebro_tests::{assert_journal_loads, assert_nothing_lost, fixture_dir};
use cerebro_types::machine::MachineEvent;
use machinesitter::state::{self, Loaded};
use serde_json::Value;

#[test]
fn machine_state_v1_loads_with_nothing_lost() {
    let dir = fixture_dir("v1/machinesitter");
    let old: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("state.json")).unwrap())
            .unwrap();
    let Loaded::Read(state) = state::load(dir.path()) else {
        panic!("the v1 machine state must load");
    };
    assert_nothing_lost(&old, &serde_json::to_value(&state).unwrap(), "state.json");
    assert_eq!(state.tasks.len(), 3);
    let follower = &state.tasks["follower#1"];
    assert!(follower.run_requested);
    assert_eq!(follower.spec.mem, Some(32.0));
    assert!(follower.runtime.is_some(), "the tasksitter it ran under");
}

#[test]
fn machine_events_v1_load_with_nothing_lost() {
    let dir = fixture_dir("v1/machinesitter");
    assert_journal_loads::<MachineEvent>(&dir.path().join("events.jsonl"));
}
