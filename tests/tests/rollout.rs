//! A rolling update restarts each instance exactly once, in its machine's
//! turn: a machine the rollout has not reached keeps running what it ran,
//! environment (the job's version) included.

use cerebro_tests::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[test]
fn a_versioned_update_restarts_each_machine_once_in_its_turn() {
    let cluster = Cluster::start(ClusterOptions::default());
    let (code, reply) = cluster.put_job(&job("ticker", "701", 1.5, json!({"zone-a": {"cpu": 2}})));
    assert_eq!(code, 201, "{reply}");
    let before = cluster.wait_job_running("ticker", 2);
    let original: BTreeMap<String, i32> = before
        .iter()
        .map(|i| {
            (
                i["machine"].as_str().unwrap().to_string(),
                i["pid"].as_i64().unwrap() as i32,
            )
        })
        .collect();
    assert_eq!(original.len(), 2, "1.5 cores each: one per machine");

    let (code, reply) = cluster.request(
        "POST",
        "/api/v1/jobs/ticker/update",
        Some(r#"{"version": "T2", "min_healthy_secs": 4}"#),
    );
    assert_eq!(code, 200, "{reply}");

    // Every workload pid seen per machine, and what each saw while the
    // rollout had not reached its machine.
    // The original pids count as seen: the first machine's turn may come
    // before the loop's first look.
    let mut seen: BTreeMap<String, BTreeSet<i32>> = original
        .iter()
        .map(|(machine, pid)| (machine.clone(), BTreeSet::from([*pid])))
        .collect();
    let mut unreached_checks = 0;
    let deadline = Instant::now() + TIMEOUT;
    let mut done = false;
    for _ in 0..10_000 {
        if Instant::now() > deadline {
            break;
        }
        let view = cluster.job_view("ticker");
        let left: Vec<String> = view
            .rollout
            .as_ref()
            .map(|r| r.machines_left.clone())
            .unwrap_or_default();
        for pid in workloads("701") {
            let Some(machine) = env_of(pid as u32, "CEREBRO_MACHINE") else {
                continue;
            };
            if left.contains(&machine) {
                unreached_checks += 1;
                assert_eq!(
                    Some(pid),
                    original.get(&machine).copied(),
                    "{machine} is not reached yet, yet its instance restarted"
                );
                assert_ne!(
                    env_of(pid as u32, "CEREBRO_JOB_VERSION").as_deref(),
                    Some("T2"),
                    "{machine} is not reached yet"
                );
            }
            seen.entry(machine).or_default().insert(pid);
        }
        let settled = view.rollout.is_none()
            && view.instances.iter().all(|i| {
                i.generation == 2
                    && i.pid.is_some_and(|p| {
                        original.get(i.machine.as_deref().unwrap_or("")) != Some(&(p as i32))
                    })
            });
        if settled {
            done = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(done, "the update finished: {seen:?}");
    assert!(
        unreached_checks > 10,
        "the second machine was watched while unreached"
    );
    for (machine, pids) in &seen {
        assert_eq!(
            pids.len(),
            2,
            "{machine}: its instance restarted exactly once: {pids:?}"
        );
    }
    for instance in cluster.wait_job_running("ticker", 2) {
        let pid = instance["pid"].as_i64().unwrap() as i32;
        assert_eq!(
            env_of(pid as u32, "CEREBRO_JOB_VERSION").as_deref(),
            Some("T2")
        );
    }
}
