//! A lost machine's instances never run twice: the machine is fenced
//! (terminated and confirmed gone) before its instances run elsewhere,
//! unless the job chose `reschedule: "immediately"`.

use cerebro_tests::*;
mod common;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn a_lost_machine_is_fenced_before_its_instances_run_elsewhere() {
    let cluster = Cluster::start(ClusterOptions::default());
    let (code, reply) = cluster.put_job(&job("fenced", "803", 0.5, json!({"zone-a": {"cpu": 1}})));
    assert_eq!(code, 201, "{reply}");
    // Slow to stop (it ignores its stop signal for 8 s), and happy to run twice.
    let mut eager = job("eager", "804", 0.5, json!({"zone-a": {"cpu": 1}}));
    eager["reschedule"] = json!("immediately");
    eager["task_configuration"]["stop_signal"] = json!("WINCH");
    eager["task_configuration"]["stop_timeout"] = json!(8);
    let (code, reply) = cluster.put_job(&eager);
    assert_eq!(code, 201, "{reply}");
    let fenced = cluster.wait_job_running("fenced", 1);
    let eager_before = cluster.wait_job_running("eager", 1);
    let machine = fenced[0]["machine"].as_str().unwrap().to_string();
    assert_eq!(
        eager_before[0]["machine"],
        machine.as_str(),
        "both on one machine"
    );
    let old_fenced = fenced[0]["pid"].as_i64().unwrap() as i32;
    let old_eager = eager_before[0]["pid"].as_i64().unwrap() as i32;

    // Only the machinesitter dies: its tasksitters and workloads live on.
    let dir = cluster.path().join("state").join("machines").join(&machine);
    let machinesitters = common::machinesitters_under(&dir);
    assert_eq!(machinesitters.len(), 1);
    kill(machinesitters[0], libc::SIGKILL);

    let deadline = Instant::now() + TIMEOUT;
    let mut eager_overlapped = false;
    let mut fenced_replacement = None;
    for _ in 0..100_000 {
        assert!(
            Instant::now() < deadline,
            "the fenced job got no replacement"
        );
        let running = workloads("803");
        assert!(
            running.len() <= 1,
            "an instance of 'fenced' runs twice: {running:?} (old {old_fenced})"
        );
        if let Some(&pid) = running.first() {
            if pid != old_fenced {
                fenced_replacement = Some(pid);
            }
        }
        let eager_now = workloads("804");
        if !process_gone(old_eager) && eager_now.iter().any(|p| *p != old_eager) {
            eager_overlapped = true;
        }
        if fenced_replacement.is_some() && (eager_overlapped || process_gone(old_eager)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(process_gone(old_fenced));
    assert!(
        eager_overlapped,
        "'eager' got its replacement while the lost machine was still being fenced"
    );
    let events = cluster.get("/api/v1/events?limit=1000").to_string();
    assert!(events.contains("machine_fenced"), "{events}");
    cluster.wait_job_running("fenced", 1);
    cluster.wait_job_running("eager", 1);
}
