//! A corrupt cluster state loses nothing that runs: the last good copy is
//! taken back, and when there is none the tasks machines still run are
//! kept and reported as orphans, never killed.

use cerebro_tests::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn state_file(cluster: &Cluster, name: &str) -> std::path::PathBuf {
    cluster.path().join("state").join(name)
}

/// Cuts a state file short, as a torn write or a full disk would leave it.
fn corrupt(path: &std::path::Path) {
    let text = std::fs::read(path).unwrap_or_else(|_| b"{\"version\": 1, \"jobs\": {}}".to_vec());
    std::fs::write(path, &text[..text.len() / 2]).unwrap();
}

fn event_names(cluster: &Cluster) -> Vec<String> {
    cluster
        .get("/api/v1/events?limit=1000")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Starts a cluster running a persistent job of four instances; answers
/// the cluster and the workload pids.
fn four_running(marker: &str, idle_limit: u32) -> (Cluster, BTreeSet<i32>) {
    let cluster = Cluster::start(ClusterOptions {
        idle_limit,
        ..ClusterOptions::default()
    });
    let (code, reply) = cluster.put_job(&job("keep", marker, 0.5, json!({"zone-a": {"cpu": 4}})));
    assert_eq!(code, 201, "{reply}");
    let instances = cluster.wait_job_running("keep", 4);
    let pids = instances
        .iter()
        .map(|i| i["pid"].as_i64().unwrap() as i32)
        .collect();
    (cluster, pids)
}

#[test]
fn a_corrupt_state_file_is_recovered_from_its_last_good_copy() {
    let (mut cluster, pids) = four_running("801", 1);
    cluster.kill9();
    corrupt(&state_file(&cluster, "cluster.json"));
    cluster.boot();
    let after = cluster.wait_job_running("keep", 4);
    let after: BTreeSet<i32> = after
        .iter()
        .map(|i| i["pid"].as_i64().unwrap() as i32)
        .collect();
    assert_eq!(pids, after, "the same workloads run: nothing restarted");
    assert_eq!(workloads("801").len(), 4);
    let events = event_names(&cluster);
    assert!(events.iter().any(|e| e == "state_recovered"), "{events:?}");
    assert!(cluster.machines().iter().all(|m| m["orphans"] == json!([])));
}

#[test]
fn with_every_copy_corrupt_running_tasks_are_kept_and_reported_as_orphans() {
    // Idle limit 0: a machine with orphans must not be retired as idle.
    let (mut cluster, pids) = four_running("802", 0);
    cluster.kill9();
    corrupt(&state_file(&cluster, "cluster.json"));
    corrupt(&state_file(&cluster, "cluster.json.prev"));
    cluster.boot();
    let orphans = wait_for(TIMEOUT, "the machine to report its orphans", || {
        let machines = cluster.machines();
        let orphans: BTreeSet<String> = machines
            .iter()
            .flat_map(|m| m["orphans"].as_array().cloned().unwrap_or_default())
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect();
        (orphans.len() == 4).then_some(orphans)
    });
    assert!(
        orphans.iter().all(|o| o.starts_with("keep#")),
        "{orphans:?}"
    );
    let seen_at = |cluster: &Cluster| -> u64 {
        cluster
            .machines()
            .iter()
            .filter_map(|m| m["last_seen_ms"].as_u64())
            .max()
            .unwrap_or(0)
    };
    // Several reconcile rounds later, every workload still runs.
    let first = seen_at(&cluster);
    wait_for(TIMEOUT, "two seconds of polls", || {
        (seen_at(&cluster) > first + 2000).then_some(())
    });
    for pid in &pids {
        assert!(!process_gone(*pid), "orphan {pid} was killed");
    }
    assert_eq!(workloads("802").len(), 4);
    let events = event_names(&cluster);
    assert!(events.iter().any(|e| e == "task_orphaned"), "{events:?}");
    assert!(
        events.iter().any(|e| e == "state_file_unreadable"),
        "{events:?}"
    );
    let machines: Vec<Value> = cluster.machines();
    assert!(!machines.is_empty(), "the machine is adopted, not retired");

    // The orphans' room is taken: the machines running them show it
    // reserved, and a job that fits only without them runs elsewhere.
    let with_orphans: BTreeSet<String> = machines
        .iter()
        .filter(|m| m["orphans"].as_array().is_some_and(|o| !o.is_empty()))
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    for machine in &machines {
        let held = machine["orphans"].as_array().map_or(0, Vec::len) as f64;
        let reserved = machine["reserved"]["cpu"].as_f64().unwrap();
        assert!(
            reserved + 1e-9 >= 0.5 * held,
            "{held} orphans of 0.5 cores each: {machine}"
        );
    }
    let (code, reply) = cluster.put_job(&job("fresh", "803", 1.5, json!({"zone-a": {"cpu": 1}})));
    assert_eq!(code, 201, "{reply}");
    let fresh = cluster.wait_job_running("fresh", 1);
    let on = fresh[0]["machine"].as_str().unwrap();
    assert!(
        !with_orphans.contains(on),
        "fresh runs on {on}, beside orphans on {with_orphans:?}"
    );
    for pid in &pids {
        assert!(!process_gone(*pid), "orphan {pid} was killed");
    }
}
