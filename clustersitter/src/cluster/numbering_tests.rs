//! One instance number per job: job-wide, stable for the instance's life,
//! naming its task and its `CEREBRO_INSTANCE`, kept across a restart, and
//! given to state written before numbers without renaming what was unique.

use super::tests::fixture_cluster;
use super::*;

fn key(job: &str, zone: &str, slot: u32) -> InstanceKey {
    InstanceKey {
        job: job.into(),
        zone: zone.into(),
        slot,
    }
}

fn keys(job: &str, layout: &[(&str, u32)]) -> Vec<InstanceKey> {
    let mut keys: Vec<InstanceKey> = layout
        .iter()
        .flat_map(|(zone, count)| (0..*count).map(move |slot| key(job, zone, slot)))
        .collect();
    keys.sort();
    keys
}

fn numbers(record: &JobRecord, job: &str, layout: &[(&str, u32)]) -> Vec<u32> {
    keys(job, layout)
        .iter()
        .map(|k| record.instance_number(&k.zone, k.slot).unwrap())
        .collect()
}

fn record() -> JobRecord {
    let spec = cerebro_types::job_file::parse_jobs(
        r#"{"deployment_layout": {"a": {"cpu": 2}, "b": {"cpu": 2}},
            "task_configuration": {"name": "web", "command": "sleep 1000"}}"#,
        "web.conf",
    )
    .unwrap()
    .remove(0);
    JobRecord::new(spec, 0)
}

#[test]
fn two_zones_number_across_the_job_and_a_zone_growing_renumbers_no_other() {
    let mut web = record();
    assert!(web.number_instances(&keys("web", &[("a", 2), ("b", 2)])));
    assert_eq!(numbers(&web, "web", &[("a", 2), ("b", 2)]), [0, 1, 2, 3]);
    // Zone a grows: the new instance takes a free number; b keeps 2 and 3.
    assert!(web.number_instances(&keys("web", &[("a", 3), ("b", 2)])));
    assert_eq!(numbers(&web, "web", &[("a", 3), ("b", 2)]), [0, 1, 4, 2, 3]);
    // Unchanged keys change nothing.
    assert!(!web.number_instances(&keys("web", &[("a", 3), ("b", 2)])));
    // Zone a shrinks back: 4 is free again, the others keep theirs.
    web.number_instances(&keys("web", &[("a", 2), ("b", 2)]));
    assert_eq!(numbers(&web, "web", &[("a", 2), ("b", 2)]), [0, 1, 2, 3]);
    assert_eq!(web.instance_number("a", 2), None);
    // One zone: the number is the slot.
    let mut one = record();
    one.number_instances(&keys("web", &[("a", 5)]));
    assert_eq!(numbers(&one, "web", &[("a", 5)]), [0, 1, 2, 3, 4]);
}

/// The v1 fixture was written when `master`'s instance in local-b and
/// its first in local-a were both `master#0`.
#[test]
fn state_from_before_numbers_gets_unique_numbers_keeping_every_unique_name() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = fixture_cluster(dir.path());
    let names = |job: &str| -> Vec<(String, usize, String)> {
        cluster
            .instances_of(job)
            .into_iter()
            .map(|i| (i.zone, i.index, i.task_name))
            .collect()
    };
    assert_eq!(
        names("master"),
        [
            ("local-a".to_string(), 0, "master#0".to_string()),
            ("local-a".to_string(), 1, "master#1".to_string()),
            ("local-b".to_string(), 2, "master#2".to_string()),
        ]
    );
    // A linked job's instances kept their names (their slots were unique).
    let follower: Vec<String> = names("follower").into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(follower, ["follower#1", "follower#2"]);
    assert_eq!(names("transient job")[0].2, "transient job#0");

    // The task a machine runs says the same number, in its name and its
    // environment.
    let spec = cluster
        .instance_spec(&key("master", "local-b", 0), "local-b-3")
        .unwrap();
    assert_eq!(spec.name, "master#2");
    assert_eq!(spec.env["CEREBRO_INSTANCE"], "2");
    assert_eq!(spec.env["CEREBRO_ZONE"], "local-b");
    // The machine's view numbers its instances the same way.
    let machine = cluster.view_of_machine("local-b-3").unwrap();
    let master = machine
        .instances
        .iter()
        .find(|i| i.job == "master")
        .unwrap();
    assert_eq!((master.index, master.task_name.as_str()), (2, "master#2"));
}

#[test]
fn numbers_are_saved_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = fixture_cluster(dir.path());
    cluster.persist().unwrap();
    let cerebro_host::fs::StateFile::Read(saved) = store::load(dir.path()) else {
        panic!("the saved state loads");
    };
    assert_eq!(saved.jobs["master"].instance_number("local-b", 0), Some(2));
    let again = Cluster::new(cluster.config().clone(), saved, "local");
    assert_eq!(again.instance_number(&key("master", "local-b", 0)), 2);
    assert_eq!(again.instance_number(&key("master", "local-a", 1)), 1);
}

#[test]
fn a_scaled_zone_gets_a_new_number_and_events_name_instances_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    let mut spec = cluster.job("master").unwrap().spec.clone();
    spec.deployment_layout.get_mut("local-a").unwrap().cpu = 3;
    cluster.upsert_job(spec, None);
    // local-a's third instance: its slot (2) is local-b's number, so the
    // lowest free one.
    assert_eq!(cluster.instance_number(&key("master", "local-a", 2)), 3);
    assert_eq!(cluster.instance_number(&key("master", "local-b", 0)), 2);
    let plan = cluster.plan_for(&cluster.job_specs());
    cluster.apply_assignments(&plan.assignments);
    let placed: Vec<String> = cluster
        .events()
        .iter()
        .filter(|e| e.kind == ClusterEventKind::InstancePlaced)
        .map(|e| e.message.clone())
        .collect();
    assert!(
        placed
            .iter()
            .any(|m| m.starts_with("master #3 (local-a) placed on ")),
        "{placed:?}"
    );
}

/// Right after a zone shrinks, the job asks for fewer instances even while
/// the one leaving is still listed (until the next placement), and the
/// others keep their numbers.
#[test]
fn a_shrunk_zone_asks_for_fewer_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = fixture_cluster(dir.path());
    let mut spec = cluster.job("master").unwrap().spec.clone();
    spec.deployment_layout.get_mut("local-a").unwrap().cpu = 1;
    cluster.upsert_job(spec, None);
    let view = cluster.view_of_job("master").unwrap();
    assert_eq!(view.desired_instances, 2);
    assert_eq!(view.instances.len(), 3, "the leaving one is still listed");
    assert_eq!(cluster.instance_number(&key("master", "local-b", 0)), 2);
}
