//! A whole cluster on one machine: the clustersitter with the local
//! provider, real machinesitters, tasksitters and workloads.

use cerebro_tests::*;
mod common;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn zones_of(instances: &[Value]) -> BTreeMap<String, usize> {
    let mut zones = BTreeMap::new();
    for instance in instances {
        *zones
            .entry(instance["zone"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    zones
}

fn machine_zone(cluster: &Cluster, id: &str) -> String {
    cluster.get(&format!("/api/v1/machines/{id}"))["zone"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_two_zone_job_runs_as_its_layout_says() {
    let cluster = Cluster::start(ClusterOptions::default());
    let (code, reply) = cluster.put_job(&job(
        "web",
        "501",
        0.5,
        json!({"zone-a": {"cpu": 2}, "zone-b": {"cpu": 1, "mem": 64}}),
    ));
    assert_eq!(code, 201, "{reply}");
    let instances = cluster.wait_job_running("web", 3);
    assert_eq!(
        zones_of(&instances),
        BTreeMap::from([("zone-a".into(), 2), ("zone-b".into(), 1)])
    );
    for instance in &instances {
        let machine = instance["machine"].as_str().unwrap();
        assert_eq!(
            machine_zone(&cluster, machine),
            instance["zone"],
            "an instance runs in its zone"
        );
        let pid = instance["pid"].as_u64().unwrap() as i32;
        assert_eq!(cmdline(pid), ["sleep", "501"]);
    }
    assert_eq!(workloads("501").len(), 3, "exactly the three instances run");
    let b = cluster
        .machines()
        .into_iter()
        .find(|m| m["zone"] == "zone-b")
        .unwrap();
    assert_eq!(
        b["reserved"]["mem_mb"], 64.0,
        "an instance reserves max(task mem, zone mem)"
    );
    assert_eq!(b["reserved"]["cpu"], 0.5);
}

#[test]
fn a_killed_machine_is_replaced_and_its_instances_run_again() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.put_job(&job("api", "502", 1.5, json!({"zone-a": {"cpu": 2}})));
    let instances = cluster.wait_job_running("api", 2);
    let victim = instances[0]["machine"].as_str().unwrap().to_string();
    let survivor = instances[1]["machine"].as_str().unwrap().to_string();
    assert_ne!(victim, survivor, "1.5 cores each: one instance per machine");
    let old_pid = instances[0]["pid"].as_u64().unwrap() as i32;

    cluster.kill_machine(&victim);
    wait_for(
        TIMEOUT,
        "the killed machine's workload to die with it",
        || process_gone(old_pid).then_some(()),
    );
    let instances = wait_for(
        TIMEOUT,
        "a replacement machine running the instance",
        || {
            let instances = cluster.job_running("api", 2)?;
            instances
                .iter()
                .all(|i| i["machine"] != victim.as_str())
                .then_some(instances)
        },
    );
    assert!(
        instances.iter().any(|i| i["machine"] == survivor.as_str()),
        "the healthy machine keeps its instance"
    );
    wait_for(TIMEOUT, "the dead machine to be dropped", || {
        cluster
            .machines()
            .iter()
            .all(|m| m["id"] != victim.as_str())
            .then_some(())
    });
    assert_eq!(workloads("502").len(), 2);
    let events = cluster.get("/api/v1/events?limit=500");
    let about_victim: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == victim.as_str())
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        about_victim.iter().any(|m| m.contains("unreachable")),
        "{about_victim:?}"
    );
    assert!(
        about_victim.iter().any(|m| m.contains("decommissioning")),
        "{about_victim:?}"
    );
    // With the provider's id of it.
    assert!(
        about_victim.iter().any(|m| m.starts_with("terminated (")),
        "{about_victim:?}"
    );
}

#[test]
fn kill9_of_the_clustersitter_loses_nothing_and_duplicates_nothing() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.put_job(&job(
        "db",
        "503",
        1.5,
        json!({"zone-a": {"cpu": 2}, "zone-b": {"cpu": 1}}),
    ));
    let mut transient = job("scratch", "504", 0.1, json!({"zone-b": {"cpu": 1}}));
    transient["persistent"] = json!(false);
    cluster.put_job(&transient);
    let before = cluster.wait_job_running("db", 3);
    cluster.wait_job_running("scratch", 1);
    let machines_before: Vec<Value> = cluster.machines().iter().map(|m| m["id"].clone()).collect();
    // Set through the API: it holds until a restart, where the config's
    // idle limit (1 here) applies again.
    let (code, reply) = cluster.request("PUT", "/api/v1/idle-limit", Some(r#"{"limit": 3}"#));
    assert_eq!(code, 200, "{reply}");
    let events_before = cluster.get("/api/v1/events?limit=1000");
    assert!(!events_before.as_array().unwrap().is_empty());

    cluster.kill9();
    cluster.boot();
    let zones = cluster.get("/api/v1/status")["zones"].clone();
    assert!(
        zones
            .as_array()
            .unwrap()
            .iter()
            .all(|z| z["idle_limit"] == 1),
        "{zones}"
    );

    // The history from before the crash is still there to read.
    let events_after = cluster.get("/api/v1/events?limit=1000");
    for event in events_before.as_array().unwrap() {
        assert!(
            events_after.as_array().unwrap().contains(event),
            "{event} was kept across the crash"
        );
    }

    let after = cluster.wait_job_running("db", 3);
    let pids = |instances: &[Value]| {
        instances
            .iter()
            .map(|i| (i["machine"].clone(), i["pid"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pids(&before),
        pids(&after),
        "the same machines run the same workloads"
    );
    let machines_after: Vec<Value> = cluster.machines().iter().map(|m| m["id"].clone()).collect();
    assert_eq!(
        machines_before, machines_after,
        "running machines are adopted, not provisioned again"
    );
    assert_eq!(workloads("503").len(), 3);
    let (code, _) = cluster.request("GET", "/api/v1/jobs/scratch", None);
    assert_eq!(code, 404, "a non-persistent job does not survive a restart");
    wait_for(TIMEOUT, "the dropped job's instance to stop", || {
        workloads("504").is_empty().then_some(())
    });
    let machinesitters = common::machinesitters_under(cluster.path());
    assert_eq!(
        machinesitters.len(),
        machines_after.len(),
        "one machinesitter per machine"
    );
}

#[test]
fn idle_machines_beyond_the_limit_are_decommissioned() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.put_job(&job("batch", "505", 1.5, json!({"zone-a": {"cpu": 3}})));
    cluster.wait_job_running("batch", 3);
    assert_eq!(cluster.machines().len(), 3);
    let (code, _) = cluster.request("DELETE", "/api/v1/jobs/batch", None);
    assert_eq!(code, 200);
    wait_for(TIMEOUT, "idle machines down to the limit of 1", || {
        let machines = cluster.machines();
        (machines.len() == 1 && workloads("505").is_empty()).then_some(())
    });
    let (code, status) = cluster.request("PUT", "/api/v1/idle-limit", Some(r#"{"limit": 0}"#));
    assert_eq!(code, 200, "{status}");
    wait_for(TIMEOUT, "no machines left", || {
        cluster.machines().is_empty().then_some(())
    });
    let leftovers = processes_under(&cluster.path().join("state/machines"));
    assert!(
        leftovers.is_empty(),
        "terminated machines leave no process: {leftovers:?}"
    );
}

#[test]
fn a_linked_job_follows_its_master_and_restarts_when_it_is_updated() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.put_job(&job("master", "506", 1.5, json!({"zone-a": {"cpu": 2}})));
    let mut sidecar = job("sidecar", "507", 0.25, json!({}));
    sidecar["linked_job"] = json!("master");
    let (code, reply) = cluster.put_job(&sidecar);
    assert_eq!(code, 201, "{reply}");
    let masters = cluster.wait_job_running("master", 2);
    let sidecars = cluster.wait_job_running("sidecar", 2);
    let machines = |instances: &[Value]| {
        let mut m: Vec<String> = instances
            .iter()
            .map(|i| i["machine"].as_str().unwrap().to_string())
            .collect();
        m.sort();
        m
    };
    assert_eq!(
        machines(&masters),
        machines(&sidecars),
        "the sidecar runs on every and only the master's machines"
    );
    let sidecar_pids: Vec<Value> = sidecars.iter().map(|i| i["pid"].clone()).collect();

    let (code, reply) = cluster.request(
        "POST",
        "/api/v1/jobs/master/update",
        Some(r#"{"min_healthy_secs": 0.5}"#),
    );
    assert_eq!(code, 200, "{reply}");
    wait_for(TIMEOUT, "every sidecar to restart", || {
        let now = cluster.job_running("sidecar", 2)?;
        now.iter()
            .all(|i| !sidecar_pids.contains(&i["pid"]))
            .then_some(())
    });
    // Linking the master to its own follower would leave neither placeable.
    let mut looped = job("master", "506", 1.5, json!({"zone-a": {"cpu": 2}}));
    looped["linked_job"] = json!("sidecar");
    let (code, reply) = cluster.put_job(&looped);
    assert_eq!(code, 400, "{reply}");
    assert_eq!(reply["errors"][0]["field"], "linked_job", "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("master -> sidecar -> master"),
        "{reply}"
    );
    assert!(
        cluster.job("master")["spec"]["linked_job"].is_null(),
        "nothing was applied"
    );
    let (code, reply) = cluster.request("DELETE", "/api/v1/jobs/master", None);
    assert_eq!(code, 409, "a master with linked jobs stays: {reply}");
}

/// Instances restarted by a rolling update with `min_healthy = 1s` (one per
/// machine) started at least 1 s apart.
fn assert_started_a_machine_at_a_time(instances: &[Value]) {
    let mut starts: Vec<u64> = instances
        .iter()
        .map(|i| i["started_at_ms"].as_u64().unwrap())
        .collect();
    starts.sort();
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= 1000,
            "each machine waits for the previous one to be healthy 1 s: {starts:?}"
        );
    }
}

#[test]
fn a_rolling_update_restarts_one_machine_at_a_time() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.put_job(&job("rolling", "508", 1.5, json!({"zone-a": {"cpu": 3}})));
    let before = cluster.wait_job_running("rolling", 3);
    let (code, reply) = cluster.request(
        "POST",
        "/api/v1/jobs/rolling/update",
        Some(r#"{"version": "v2", "min_healthy_secs": 1}"#),
    );
    assert_eq!(code, 200, "{reply}");
    let after = wait_for(TIMEOUT, "every instance at the new generation", || {
        let job = cluster.job("rolling");
        let instances = job["instances"].as_array()?.clone();
        (job["rollout"].is_null()
            && instances
                .iter()
                .all(|i| i["generation"] == 2 && i["state"] == "running")
            && instances
                .iter()
                .zip(&before)
                .all(|(a, b)| a["pid"] != b["pid"]))
        .then_some(instances)
    });
    assert_started_a_machine_at_a_time(&after);
    assert!(has_env(&after[0]["pid"], "CEREBRO_JOB_VERSION=v2"));
}

/// Whether the process `pid` has `NAME=VALUE` in its environment.
fn has_env(pid: &Value, pair: &str) -> bool {
    std::fs::read(format!("/proc/{}/environ", pid.as_u64().unwrap_or(0)))
        .is_ok_and(|environ| environ.split(|b| *b == 0).any(|kv| kv == pair.as_bytes()))
}

#[test]
fn a_changed_task_configuration_rolls_out_one_machine_at_a_time() {
    let cluster = Cluster::start(ClusterOptions::default());
    let mut spec = job("reconfig", "512", 1.5, json!({"zone-a": {"cpu": 3}}));
    cluster.put_job(&spec);
    let before = cluster.wait_job_running("reconfig", 3);

    spec["task_configuration"]["env"] = json!({"COLOR": "blue"});
    let (code, reply) = cluster.put_job(&spec);
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["result"], "updated", "{reply}");
    assert_eq!(reply["job"]["rollout"]["target_generation"], 2, "{reply}");

    // Midway, one machine runs the new configuration and the others still
    // run the old one, untouched.
    wait_for(TIMEOUT, "one instance switched while the rest wait", || {
        let instances = cluster.job("reconfig")["instances"].as_array()?.clone();
        let blue = instances
            .iter()
            .filter(|i| has_env(&i["pid"], "COLOR=blue"))
            .count();
        let untouched = instances
            .iter()
            .filter(|i| before.iter().any(|b| b["pid"] == i["pid"]))
            .count();
        (blue == 1 && untouched == 2).then_some(())
    });
    let after = wait_for(TIMEOUT, "every instance on the new configuration", || {
        let job = cluster.job("reconfig");
        let instances = job["instances"].as_array()?.clone();
        (job["rollout"].is_null()
            && instances.iter().all(|i| {
                i["state"] == "running" && i["generation"] == 2 && has_env(&i["pid"], "COLOR=blue")
            }))
        .then_some(instances)
    });
    assert_started_a_machine_at_a_time(&after);

    // Changing only the layout moves no running instance.
    spec["deployment_layout"] = json!({"zone-a": {"cpu": 4}});
    let (code, reply) = cluster.put_job(&spec);
    assert_eq!(code, 200, "{reply}");
    assert!(reply["job"]["rollout"].is_null(), "{reply}");
    let grown = cluster.wait_job_running("reconfig", 4);
    for instance in &after {
        assert!(
            grown.iter().any(|g| g["pid"] == instance["pid"]),
            "instance {instance} kept running"
        );
    }
}

#[test]
fn a_job_starts_and_stops_on_request_whatever_auto_start_says() {
    let cluster = Cluster::start(ClusterOptions::default());
    let mut spec = job("manual", "513", 0.5, json!({"zone-a": {"cpu": 2}}));
    spec["task_configuration"]["auto_start"] = json!(false);
    cluster.put_job(&spec);
    let all_in = |count: usize, state: &str| {
        let instances = cluster.job("manual")["instances"].as_array()?.clone();
        (instances.len() == count && instances.iter().all(|i| i["state"] == state)).then_some(())
    };
    wait_for(TIMEOUT, "both instances created stopped", || {
        all_in(2, "stopped")
    });
    assert!(workloads("513").is_empty());

    let (code, reply) = cluster.request("POST", "/api/v1/jobs/manual/start", None);
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["job"]["run_requested"], true, "{reply}");
    cluster.wait_job_running("manual", 2);
    assert_eq!(workloads("513").len(), 2);

    // Instances placed later follow the request too.
    spec["deployment_layout"] = json!({"zone-a": {"cpu": 3}});
    cluster.put_job(&spec);
    cluster.wait_job_running("manual", 3);

    let (code, reply) = cluster.request("POST", "/api/v1/jobs/manual/stop", None);
    assert_eq!(code, 200, "{reply}");
    wait_for(TIMEOUT, "every instance stopped", || {
        all_in(3, "stopped")?;
        workloads("513").is_empty().then_some(())
    });
    assert_eq!(
        cluster.job("manual")["desired_instances"],
        3,
        "the job stays"
    );

    let (code, reply) = cluster.request("POST", "/api/v1/jobs/nosuch/start", None);
    assert_eq!(code, 404, "{reply}");
}

#[test]
fn jobs_for_zones_the_cluster_does_not_serve_are_refused_by_name() {
    // The seed's recipe is found, so the zones are what is refused. (The
    // seed loading and deploying: tests/tests/deploy.rs.)
    let cluster = Cluster::start(ClusterOptions {
        recipe_dirs: example_recipe_dirs(),
        ..Default::default()
    });
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/jobs/seed-job-example.conf"
    ))
    .unwrap();
    let (code, reply) = cluster.request("PUT", "/api/v1/jobs/Portal%20Server", Some(&seed));
    assert_eq!(code, 400, "{reply}");
    let text = reply.to_string();
    assert!(
        text.contains("aws-us-east-1b") && text.contains("aws-us-west-2a"),
        "names the zones: {text}"
    );
    assert!(
        text.contains("zone-a, zone-b"),
        "names the zones the cluster serves: {text}"
    );
    let bad = "{\n  \"deployment_layout\": {\"zone-a\": {\"cpu\": 1}},\n  \"task_configuration\": {\"name\": \"x\", \"command\": \"true\", \"mem\": \"lots\"}\n}";
    let (code, reply) = cluster.request("PUT", "/api/v1/jobs/x", Some(bad));
    assert_eq!(code, 400, "{reply}");
    assert_eq!(reply["field"], "task_configuration.mem", "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("line 3, column 65"),
        "{reply}"
    );
    let (code, reply) = cluster.request(
        "PUT",
        "/api/v1/jobs/other",
        Some(&job("y", "509", 0.1, json!({"zone-a": {"cpu": 1}})).to_string()),
    );
    assert_eq!(
        (code, reply["field"].as_str()),
        (400, Some("task_configuration.name")),
        "{reply}"
    );
    let (code, jobs) = cluster.request("GET", "/api/v1/jobs", None);
    assert_eq!(code, 200);
    assert_eq!(jobs, json!([]), "nothing half-applied");
}

#[test]
fn machines_register_join_and_a_replaced_machine_that_returns_loses_its_stale_tasks() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.put_job(&job("svc", "510", 1.5, json!({"zone-a": {"cpu": 1}})));
    let instances = cluster.wait_job_running("svc", 1);
    let victim = instances[0]["machine"].as_str().unwrap().to_string();
    cluster.kill_machine(&victim);
    wait_for(TIMEOUT, "the victim to be replaced and dropped", || {
        let running = cluster.job_running("svc", 1)?;
        (running[0]["machine"] != victim.as_str()
            && cluster
                .machines()
                .iter()
                .all(|m| m["id"] != victim.as_str()))
        .then_some(())
    });
    // The clustersitter restarting meanwhile forgets nothing.
    cluster.kill9();
    cluster.boot();

    // The old machine comes back (say, after a network partition) with the task it ran.
    let start_machine = |id: &str, zone: &str, dir: &str, register: bool| {
        cluster.start_machine(id, zone, dir, register)
    };
    let (mut cut_off, address) = start_machine(&victim, "zone-a", "returned", false);
    let http = reqwest::blocking::Client::new();
    let stale = json!({"command": "sleep 510", "cpu": 0.1, "mem": 10});
    let response = http
        .put(format!("http://{address}/api/v1/tasks/svc%230"))
        .bearer_auth(cluster.token.as_deref().unwrap())
        .json(&stale)
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    wait_for(TIMEOUT, "the stale copy to run", || {
        (workloads("510").len() == 2).then_some(())
    });
    cut_off.kill().unwrap();
    cut_off.wait().unwrap();
    // Back on the network: it re-adopts its task and registers.
    let (_returned, address) = start_machine(&victim, "zone-a", "returned", true);
    wait_for(TIMEOUT, "the stale task to be removed", || {
        let tasks: Value = http
            .get(format!("http://{address}/api/v1/tasks"))
            .send()
            .ok()?
            .json()
            .ok()?;
        tasks.as_array()?.is_empty().then_some(())
    });
    wait_for(TIMEOUT, "only the replacement to run", || {
        (workloads("510").len() == 1).then_some(())
    });
    let events = cluster.get("/api/v1/events?limit=500");
    assert!(
        events
            .to_string()
            .contains("registered after being decommissioned"),
        "{events}"
    );

    // An id that is not a plain name is refused before anything is stored.
    for bad in ["..", "", "a/b", ".hidden"] {
        let body = json!({"machine_id": bad, "address": "127.0.0.1:9", "capacity": {"cpu": 1.0, "mem_mb": 512.0}, "zone": "zone-a"});
        let (code, reply) =
            cluster.request("POST", "/api/v1/machines/register", Some(&body.to_string()));
        assert_eq!(code, 400, "{bad:?}: {reply}");
        assert_eq!(reply["errors"][0]["field"], "machine_id", "{reply}");
    }
    assert!(cluster
        .machines()
        .iter()
        .all(|m| m["address"] != "127.0.0.1:9"));

    // A machine the cluster never saw joins by registering in a served zone.
    let (_joined, _) = start_machine("hand-made-1", "zone-b", "hand-made", true);
    wait_for(TIMEOUT, "the hand-made machine to join", || {
        cluster
            .machines()
            .iter()
            .any(|m| m["id"] == "hand-made-1" && m["zone"] == "zone-b" && m["state"] == "ready")
            .then_some(())
    });
}
