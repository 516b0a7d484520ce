//! Nothing impossible gets in: jobs no machine of their zone can ever
//! hold, rolling-update requests and machine registrations that make no
//! sense are refused at the door with a 400 naming the field, and nothing
//! is provisioned for them.

use cerebro_tests::*;
use serde_json::{json, Value};

/// The first error's field and the whole body as text.
fn refusal(reply: &Value) -> (String, String) {
    (
        reply["errors"][0]["field"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        reply.to_string(),
    )
}

#[test]
fn a_job_no_machine_of_its_zone_can_hold_is_refused_and_nothing_is_provisioned() {
    let cluster = Cluster::start(ClusterOptions::default());
    // The issue's reproduction: past any machine at all, TaskSpec's own bound refuses it.
    let absurd = r#"{"persistent": true, "deployment_layout": {"zone-a": {"cpu": 1}},
        "task_configuration": {"name": "hugemem", "command": "sleep 601", "mem": 99999999999999999999999}}"#;
    let (code, reply) = cluster.request("PUT", "/api/v1/jobs/hugemem", Some(absurd));
    assert_eq!(code, 400, "{reply}");
    assert_eq!(refusal(&reply).0, "task_configuration.mem", "{reply}");
    // A size a machine could have, but not one of this zone's (512 MB).
    let huge_task = r#"{"persistent": true, "deployment_layout": {"zone-a": {"cpu": 1}},
        "task_configuration": {"name": "hugemem", "command": "sleep 601", "mem": 100000}}"#;
    let (code, reply) = cluster.request("PUT", "/api/v1/jobs/hugemem", Some(huge_task));
    assert_eq!(code, 400, "{reply}");
    let (field, body) = refusal(&reply);
    assert_eq!(field, "task_configuration.mem", "{body}");
    assert!(body.contains("512"), "the largest machine is named: {body}");

    let huge_zone_mem = json!({"persistent": true, "deployment_layout": {"zone-b": {"cpu": 1, "mem": 4096}},
        "task_configuration": {"name": "zonemem", "command": "sleep 601", "mem": 20}});
    let (code, reply) = cluster.put_job(&huge_zone_mem);
    assert_eq!(code, 400, "{reply}");
    assert_eq!(refusal(&reply).0, "deployment_layout.zone-b.mem", "{reply}");

    let many_cores = job("cores", "601", 8.0, json!({"zone-a": {"cpu": 1}}));
    let (code, reply) = cluster.put_job(&many_cores);
    assert_eq!(code, 400, "{reply}");
    let (field, body) = refusal(&reply);
    assert_eq!(field, "task_configuration.cpu", "{body}");
    assert!(body.contains("2 cores"), "{body}");

    // The dry run refuses it the same way.
    let (code, reply) = cluster.request("POST", "/api/v1/plan", Some(huge_task));
    assert_eq!(code, 400, "{reply}");
    assert_eq!(refusal(&reply).0, "task_configuration.mem", "{reply}");

    // A job that fits is taken, so the cluster is alive and placing.
    let (code, reply) = cluster.put_job(&job("fits", "602", 0.5, json!({"zone-a": {"cpu": 1}})));
    assert_eq!(code, 201, "{reply}");
    cluster.wait_job_running("fits", 1);
    assert!(cluster.jobs().iter().all(|j| j.name != "hugemem"));
    assert_eq!(
        cluster.machines().len(),
        1,
        "one machine, for the job that fits"
    );
}

#[test]
fn a_machine_registering_with_nonsense_is_refused_by_field() {
    let cluster = Cluster::start(ClusterOptions::default());
    let good = json!({"machine_id": "hand-1", "address": "127.0.0.1:9", "capacity": {"cpu": 1.0, "mem_mb": 512.0}, "zone": "zone-a"});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "capacity.cpu",
            json!({"cpu": -5.0, "mem_mb": 512.0}),
            "negative cores",
        ),
        (
            "capacity.cpu",
            json!({"cpu": 0.0, "mem_mb": 512.0}),
            "no cores",
        ),
        (
            "capacity.mem_mb",
            json!({"cpu": 1.0, "mem_mb": 1e308}),
            "absurd memory",
        ),
        (
            "capacity.mem_mb",
            json!({"cpu": 1.0, "mem_mb": -5.0}),
            "negative memory",
        ),
        (
            "capacity.cpu",
            json!({"cpu": 1e308, "mem_mb": 512.0}),
            "absurd cores",
        ),
    ];
    for (field, capacity, what) in cases {
        let mut body = good.clone();
        body["capacity"] = capacity;
        let (code, reply) =
            cluster.request("POST", "/api/v1/machines/register", Some(&body.to_string()));
        assert_eq!(code, 400, "{what}: {reply}");
        assert_eq!(refusal(&reply).0, field, "{what}: {reply}");
    }
    for address in [
        "0.0.0.0:0",
        "0.0.0.0:40000",
        "127.0.0.1:0",
        "[::]:40000",
        "224.0.0.1:80",
        "nonsense",
    ] {
        let mut body = good.clone();
        body["address"] = json!(address);
        let (code, reply) =
            cluster.request("POST", "/api/v1/machines/register", Some(&body.to_string()));
        assert_eq!(code, 400, "{address}: {reply}");
        assert_eq!(refusal(&reply).0, "address", "{address}: {reply}");
    }
    let mut body = good.clone();
    body["zone"] = json!("zone-z");
    let (code, reply) =
        cluster.request("POST", "/api/v1/machines/register", Some(&body.to_string()));
    assert_eq!(code, 400, "{reply}");
    assert_eq!(refusal(&reply).0, "zone", "{reply}");
    assert!(cluster.machines().is_empty(), "nothing joined");

    // Nothing answers at the good body's address: a machine must be where it says.
    let (code, reply) =
        cluster.request("POST", "/api/v1/machines/register", Some(&good.to_string()));
    assert_eq!(code, 400, "{reply}");
    assert_eq!(refusal(&reply).0, "address", "{reply}");
    let (_machine, address) = cluster.start_machine("hand-1", "zone-a", "hand-1", false);
    let mut good = good.clone();
    good["address"] = json!(address);
    let (code, reply) =
        cluster.request("POST", "/api/v1/machines/register", Some(&good.to_string()));
    assert_eq!(code, 200, "a sane machine still joins: {reply}");
    // Known now: it cannot be moved to an address that does not answer as
    // it, nor to another zone (either would take a healthy machine down).
    for (field, change) in [
        ("address", json!({"address": "127.0.0.1:9"})),
        ("zone", json!({"zone": "zone-b"})),
    ] {
        let mut body = good.clone();
        body.as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        let (code, reply) =
            cluster.request("POST", "/api/v1/machines/register", Some(&body.to_string()));
        assert_eq!(code, 400, "{body}: {reply}");
        assert_eq!(refusal(&reply).0, field, "{reply}");
    }
    assert_eq!(
        cluster.machines()[0]["address"],
        json!(address),
        "not moved"
    );
    assert_eq!(cluster.machines()[0]["zone"], "zone-a");
    // Known now: a re-registration with nonsense is refused just the same,
    // and the capacity stays what the machine itself reports.
    let capacity = wait_for(TIMEOUT, "the hand-made machine to be polled", || {
        let machine = cluster.machines()[0].clone();
        (machine["state"] == "ready").then(|| machine["capacity"].clone())
    });
    let mut body = good.clone();
    body["capacity"] = json!({"cpu": -5.0, "mem_mb": 512.0});
    let (code, reply) =
        cluster.request("POST", "/api/v1/machines/register", Some(&body.to_string()));
    assert_eq!(code, 400, "{reply}");
    assert_eq!(cluster.machines()[0]["capacity"], capacity);
}

#[test]
fn update_requests_and_job_strings_that_end_up_in_an_environment_are_bounded() {
    let cluster = Cluster::start(ClusterOptions::default());
    let (code, reply) = cluster.put_job(&job("ticker", "603", 0.5, json!({"zone-a": {"cpu": 1}})));
    assert_eq!(code, 201, "{reply}");
    // 2 MB is refused by the body limit already (413); a version well
    // under that limit but far over the field's bound still is refused here.
    let (code, reply) = cluster.request(
        "POST",
        "/api/v1/jobs/ticker/update",
        Some(&json!({"version": "v".repeat(2 * 1024 * 1024)}).to_string()),
    );
    assert!(code == 400 || code == 413, "{code}: {reply}");
    let huge = "v".repeat(10 * 1024);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"version": huge}), "version"),
        (json!({"version": "v\u{0}2"}), "version"),
        (json!({"version": "v2\nINJECTED=1"}), "version"),
        (json!({"version": ""}), "version"),
        (json!({"max_parallel": 0}), "max_parallel"),
        (json!({"max_parallel": 1_000_000}), "max_parallel"),
        (json!({"min_healthy_secs": -1}), "min_healthy_secs"),
        (json!({"min_healthy_secs": 1e300}), "min_healthy_secs"),
    ];
    for (body, field) in cases {
        let (code, reply) = cluster.request(
            "POST",
            "/api/v1/jobs/ticker/update",
            Some(&body.to_string()),
        );
        let short: String = reply.to_string().chars().take(300).collect();
        assert_eq!(code, 400, "{field}: {short}");
        assert_eq!(refusal(&reply).0, field, "{short}");
    }
    let view = cluster.job_view("ticker");
    assert_eq!(view.generation, 1, "nothing refused changed the job");
    assert_eq!(view.version, None);

    let base = job("strings", "604", 0.5, json!({"zone-a": {"cpu": 1}}));
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "deployment_recipe",
            json!("redis\u{0}"),
            "deployment_recipe",
        ),
        (
            "deployment_recipe",
            json!("r".repeat(1000)),
            "deployment_recipe",
        ),
        ("recipe_options", json!({"ke\u{0}y": "v"}), "recipe_options"),
        (
            "recipe_options",
            json!({"k".repeat(1000): "v"}),
            "recipe_options",
        ),
        (
            "recipe_options",
            json!({"port": "6379\u{0}"}),
            "recipe_options.port",
        ),
        (
            "recipe_options",
            json!({"nested": {"deep": ["a\u{0}"]}}),
            "recipe_options.nested",
        ),
        (
            "recipe_options",
            json!({"big": "x".repeat(100 * 1024)}),
            "recipe_options.big",
        ),
        ("dns_basename", json!("a".repeat(300)), "dns_basename"),
        ("linked_job", json!("mas\u{0}ter"), "linked_job"),
    ];
    for (key, value, field) in cases {
        let mut body = base.clone();
        body[key] = value;
        let (code, reply) = cluster.put_job(&body);
        assert_eq!(code, 400, "{field}: {reply}");
        assert_eq!(refusal(&reply).0, field, "{reply}");
    }
    assert!(cluster.jobs().iter().all(|j| j.name != "strings"));
}
