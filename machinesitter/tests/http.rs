//! The machinesitter's HTTP surface: validation, capacity, auth, the log
//! proxy and its path safety, status, metrics and HTML.

mod common;
use common::*;
use serde_json::{json, Value};

fn field_of(body: &Value) -> String {
    body["field"].as_str().unwrap_or_default().to_string()
}

#[test]
fn bad_specs_are_refused_naming_the_field_and_change_nothing() {
    let sitter = MachineSitter::start(&[]);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "mem",
            json!({"command": "sleep 1", "mem": -5}).to_string(),
            "mem",
        ),
        (
            "mem size",
            json!({"command": "sleep 1", "mem": "lots"}).to_string(),
            "mem",
        ),
        (
            "uid",
            json!({"command": "sleep 1", "uid": "no-such-user-xyz"}).to_string(),
            "uid",
        ),
        ("command", json!({"command": ""}).to_string(), "command"),
        (
            "max_restarts",
            json!({"command": "sleep 1", "max_restarts": "many"}).to_string(),
            "max_restarts",
        ),
        (
            "unknown field",
            json!({"command": "sleep 1", "colour": "red"}).to_string(),
            "colour",
        ),
        (
            "name mismatch",
            json!({"name": "other", "command": "sleep 1"}).to_string(),
            "name",
        ),
        ("not json", "{\"command\": ".to_string(), "body"),
        ("not an object", "[1, 2]".to_string(), "body"),
        (
            "stop signal",
            json!({"command": "sleep 1", "stop_signal": "SIGNOPE"}).to_string(),
            "stop_signal",
        ),
    ];
    for (what, body, field) in cases {
        let (code, reply) = sitter.request("PUT", "/api/v1/tasks/bad", None, Some(&body));
        assert_eq!(code, 400, "{what}: {reply}");
        assert!(
            field_of(&reply) == field
                || reply["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["field"] == field),
            "{what}: the error names '{field}': {reply}"
        );
        assert!(
            !reply["error"].as_str().unwrap_or_default().is_empty(),
            "{what}: {reply}"
        );
    }
    for name in ["a%2Fb", "tab%09name", &"x".repeat(129)] {
        let (code, reply) = sitter.request(
            "PUT",
            &format!("/api/v1/tasks/{name}"),
            None,
            Some(&spec("sleep 1").to_string()),
        );
        assert_eq!(
            (code, field_of(&reply).as_str()),
            (400, "name"),
            "name '{name}': {reply}"
        );
    }
    let (_, tasks) = sitter.request("GET", "/api/v1/tasks", None, None);
    assert_eq!(tasks, json!([]), "nothing was half-applied");
    assert!(sitter.tasksitters().is_empty());
}

#[test]
fn specs_that_can_never_start_are_a_400_naming_the_field() {
    let sitter = MachineSitter::start(&[]);
    let huge = "x".repeat(200 * 1024);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "nul in command",
            json!({"command": "echo a\u{0}b", "cpu": 0.01}),
            "command",
        ),
        (
            "huge command",
            json!({"command": format!("echo {huge}")}),
            "command",
        ),
        (
            "nul in env key",
            json!({"command": "true", "env": {"A\u{0}B": "v"}}),
            "env",
        ),
        (
            "nul in env value",
            json!({"command": "true", "env": {"A": "v\u{0}w"}}),
            "env",
        ),
        (
            "= in env key",
            json!({"command": "true", "env": {"A=B": "v"}}),
            "env",
        ),
        (
            "empty env key",
            json!({"command": "true", "env": {"": "v"}}),
            "env",
        ),
        (
            "nul in cwd",
            json!({"command": "true", "cwd": "/tmp\u{0}x"}),
            "cwd",
        ),
        (
            "nul in uid",
            json!({"command": "true", "uid": "ro\u{0}ot"}),
            "uid",
        ),
        (
            "nul in gid",
            json!({"command": "true", "gid": "ro\u{0}ot"}),
            "gid",
        ),
        ("absurd cpu", json!({"command": "true", "cpu": 1e12}), "cpu"),
        ("absurd mem", json!({"command": "true", "mem": 1e15}), "mem"),
        (
            "infinite mem",
            json!({"command": "true", "mem": "inf"}),
            "mem",
        ),
        (
            "absurd time limit",
            json!({"command": "true", "time_limit": 1e300}),
            "time_limit",
        ),
        (
            "absurd stop timeout",
            json!({"command": "true", "stop_timeout": 1e300}),
            "stop_timeout",
        ),
        (
            "absurd backoff",
            json!({"command": "true", "backoff": {"max_secs": 1e300}}),
            "backoff.max_secs",
        ),
        (
            "zero log size",
            json!({"command": "true", "log_rotation": {"max_bytes": 0}}),
            "log_rotation.max_bytes",
        ),
        (
            "absurd log backups",
            json!({"command": "true", "log_rotation": {"backups": 4_000_000_000u32}}),
            "log_rotation.backups",
        ),
    ];
    for (what, body, field) in cases {
        let (code, reply) =
            sitter.request("PUT", "/api/v1/tasks/never", None, Some(&body.to_string()));
        assert_eq!(code, 400, "{what}: {reply}");
        assert!(
            field_of(&reply) == field
                || reply["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["field"] == field),
            "{what}: the error names '{field}': {reply}"
        );
    }
    let (_, tasks) = sitter.request("GET", "/api/v1/tasks", None, None);
    assert_eq!(tasks, json!([]), "nothing was accepted");
}

#[test]
fn a_task_that_does_not_fit_is_refused_with_what_is_free() {
    let sitter = MachineSitter::start(&["--capacity-cpu", "1", "--capacity-mem", "100"]);
    let (code, _) = sitter.put_task(
        "small",
        json!({"command": "sleep 401", "cpu": 0.5, "mem": 60}),
    );
    assert_eq!(code, 201);
    let (code, reply) = sitter.put_task(
        "big",
        json!({"command": "sleep 402", "cpu": 0.25, "mem": 60}),
    );
    assert_eq!(code, 409, "{reply}");
    let message = reply["error"].as_str().unwrap();
    assert!(
        message.contains("40 MB") && message.contains("0.50 cores"),
        "says what is free: {message}"
    );
    let (code, _) = sitter.request("GET", "/api/v1/tasks/big", None, None);
    assert_eq!(code, 404, "a refused task is not recorded");

    // Resizing a task counts its own reservation as free.
    let (code, reply) = sitter.put_task(
        "small",
        json!({"command": "sleep 401", "cpu": 1, "mem": 100}),
    );
    assert_eq!(code, 200, "{reply}");
    let (_, status) = sitter.request("GET", "/api/v1/status", None, None);
    assert_eq!(status["reserved"], json!({"cpu": 1.0, "mem_mb": 100.0}));

    let overcommitted = MachineSitter::start(&[
        "--capacity-cpu",
        "1",
        "--capacity-mem",
        "100",
        "--overcommit",
    ]);
    for name in ["one", "two"] {
        let (code, reply) =
            overcommitted.put_task(name, json!({"command": "sleep 403", "cpu": 1, "mem": 100}));
        assert_eq!(code, 201, "{reply}");
    }
}

#[test]
fn capacity_defaults_to_the_real_machine() {
    let sitter = MachineSitter::start(&[]);
    let (code, status) = sitter.request("GET", "/api/v1/status", None, None);
    assert_eq!(code, 200);
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kb: f64 = meminfo
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(status["capacity"]["cpu"].as_f64().unwrap(), cores);
    let mem_mb = status["capacity"]["mem_mb"].as_f64().unwrap();
    assert!(
        (mem_mb - total_kb / 1024.0).abs() < 2.0,
        "{mem_mb} MB vs {total_kb} kB"
    );
}

#[test]
fn status_reports_the_machine_and_each_task() {
    let sitter = MachineSitter::start(&["--machine-id", "rack-7"]);
    sitter.put_task(
        "burner",
        json!({"command": "sh -c 'while :; do :; done'", "cpu": 0.5, "mem": 64}),
    );
    sitter.wait_running("burner");
    let status = wait_for(TIMEOUT, "the burner's usage to be sampled", || {
        let (_, status) = sitter.request("GET", "/api/v1/status", None, None);
        let burner = status["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == "burner")?
            .clone();
        (burner["cpu_cores"].as_f64()? > 0.1
            && burner["rss_bytes"].as_u64()? > 0
            && status["vitals"]["cpu_cores_used"].as_f64()? > 0.1)
            .then_some(status)
    });
    assert_eq!(status["machine_id"], "rack-7");
    assert_eq!(
        status["hostname"],
        nix::unistd::gethostname().unwrap().to_str().unwrap()
    );
    assert_eq!(status["reserved"], json!({"cpu": 0.5, "mem_mb": 64.0}));
    let vitals = &status["vitals"];
    assert!(vitals["mem_total_mb"].as_u64().unwrap() > 0);
    assert!(vitals["mem_used_mb"].as_u64().unwrap() > 0);
    assert!(vitals["disk_free_bytes"].as_u64().unwrap() > 0);
    assert!(vitals["uptime_secs"].as_u64().unwrap() > 0);
    assert_eq!(vitals["load_average"].as_array().unwrap().len(), 3);

    let view = sitter.task_view("burner");
    assert_eq!(
        view.status.as_ref().map(|s| s.state.kind()),
        Some(StateKind::Running)
    );
    let task = serde_json::to_value(view).unwrap();
    let live = &task["status"];
    assert!(live["pid"].as_i64().is_some() && live["restarts"].as_u64().is_some());
    assert!(live["violations"].is_object() && live["limits"]["mem_bytes"] == 64 * 1024 * 1024);
}

#[test]
fn logs_are_served_through_the_machinesitter() {
    let sitter = MachineSitter::start(&[]);
    let command = "for i in 1 2 3 4 5; do echo line-$i; done; echo oops >&2; sleep 404";
    sitter.put_task(
        "Portal Server",
        json!({"command": command, "cpu": 0.1, "mem": 50}),
    );
    sitter.wait_running("Portal Server");
    let base = "/api/v1/tasks/Portal%20Server/logs";
    let chunk = wait_for(TIMEOUT, "the output", || {
        let (code, chunk) = sitter.request("GET", &format!("{base}/stdout?tail=2"), None, None);
        assert_eq!(code, 200, "{chunk}");
        chunk["data"].as_str()?.contains("line-5").then_some(chunk)
    });
    assert_eq!(chunk["data"], "line-4\nline-5\n");
    let (_, all) = sitter.request("GET", &format!("{base}/stdout?offset=0"), None, None);
    assert!(
        all["data"].as_str().unwrap().contains("line-1\nline-2"),
        "{all}"
    );
    let (_, rest) = sitter.request(
        "GET",
        &format!("{base}/stdout?offset={}", all["next_offset"]),
        None,
        None,
    );
    assert_eq!(rest["data"], "", "following from the end gives nothing new");
    let (_, stderr) = sitter.request("GET", &format!("{base}/stderr?tail=1"), None, None);
    assert_eq!(stderr["data"], "oops\n");

    let response = sitter
        .http
        .get(sitter.url("/tasks/Portal%20Server/logs/stdout"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("line-3"));
}

#[test]
fn log_requests_never_open_a_path_from_the_request() {
    let sitter = MachineSitter::start(&[]);
    sitter.put_task("web", spec("sleep 405"));
    sitter.wait_running("web");
    for path in [
        "/api/v1/tasks/web/logs/..%2F..%2Fstate.json",
        "/api/v1/tasks/web/logs/%2Fetc%2Fpasswd",
        "/api/v1/tasks/web/logs/stdout.1",
        "/api/v1/tasks/web/logs/secret",
        "/tasks/web/logs/..%2Fsecret",
    ] {
        let (code, body) = sitter.request("GET", path, None, None);
        assert_eq!(code, 400, "{path}: {body}");
        assert_eq!(field_of(&body), "stream", "{path}: {body}");
    }
    for path in [
        "/api/v1/tasks/..%2F..%2F..%2Fetc/logs/stdout",
        "/api/v1/tasks/%2Fetc%2Fpasswd/logs/stdout",
        "/api/v1/tasks/nope/logs/stdout",
    ] {
        let (code, body) = sitter.request("GET", path, None, None);
        assert_eq!(code, 404, "{path}: {body}");
    }
    for (query, field) in [
        ("path=/etc/passwd", "path"),
        ("file=../state.json", "file"),
        ("tail=lots", "tail"),
        ("offset=-1", "offset"),
        ("tail=1&offset=0", "offset"),
    ] {
        let (code, body) = sitter.request(
            "GET",
            &format!("/api/v1/tasks/web/logs/stdout?{query}"),
            None,
            None,
        );
        assert_eq!(code, 400, "?{query}: {body}");
        assert_eq!(field_of(&body), field, "?{query}: {body}");
    }
}

#[test]
fn mutations_need_the_token_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let sitter = MachineSitter::start(&["--token-file", token_file.to_str().unwrap()]);
    let body = spec("sleep 406").to_string();
    for token in [None, Some("wrong")] {
        let (code, reply) = sitter.request("PUT", "/api/v1/tasks/guarded", token, Some(&body));
        assert_eq!(code, 401, "{reply}");
        assert!(reply["error"].is_string());
    }
    let (code, _) = sitter.request(
        "PUT",
        "/api/v1/tasks/guarded",
        Some("s3cret-token"),
        Some(&body),
    );
    assert_eq!(code, 201);
    sitter.wait_running("guarded");
    for (method, path) in [
        ("POST", "/api/v1/tasks/guarded/stop"),
        ("DELETE", "/api/v1/tasks/guarded"),
    ] {
        let (code, _) = sitter.request(method, path, None, None);
        assert_eq!(code, 401, "{method} {path}");
    }
    let (code, _) = sitter.request("GET", "/api/v1/tasks/guarded", None, None);
    assert_eq!(code, 200, "reads are open");
    let (code, _) = sitter.request(
        "DELETE",
        "/api/v1/tasks/guarded",
        Some("s3cret-token"),
        None,
    );
    assert_eq!(code, 200);
}

#[test]
fn html_pages_escape_names_and_link_logs() {
    let sitter = MachineSitter::start(&[]);
    let name = "<img src=x onerror=alert(1)> & \"q\"";
    let (code, reply) = sitter.put_task(name, spec("echo '<script>alert(1)</script>'; sleep 407"));
    assert_eq!(code, 201, "{reply}");
    sitter.wait_running(name);
    let machine_page = sitter
        .http
        .get(sitter.url("/"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!machine_page.contains("<img"), "names are escaped");
    assert!(machine_page.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot;"));
    let encoded = encode(name);
    assert!(
        machine_page.contains(&format!("/tasks/{encoded}/logs/stdout")),
        "links each task's stdout"
    );
    assert!(
        machine_page.contains(&format!("/tasks/{encoded}/logs/stderr")),
        "links each task's stderr"
    );

    let task_page = sitter
        .http
        .get(sitter.url(&format!("/tasks/{encoded}")))
        .send()
        .unwrap();
    assert_eq!(task_page.status(), 200);
    let task_page = task_page.text().unwrap();
    assert!(
        task_page.contains("&lt;img src=x onerror=alert(1)&gt;")
            && !task_page.contains("<img src=x"),
        "the task page shows its name escaped"
    );
    let log_page = wait_for(TIMEOUT, "the log page to show the output", || {
        let page = sitter
            .http
            .get(sitter.url(&format!("/tasks/{encoded}/logs/stdout")))
            .send()
            .unwrap()
            .text()
            .unwrap();
        page.contains("alert(1)").then_some(page)
    });
    assert!(
        !log_page.contains("<script>alert") && log_page.contains("&lt;script&gt;"),
        "log output is escaped"
    );
}

#[test]
fn metrics_cover_the_machine_and_tasks() {
    // Task names may hold quotes; labels escape them.
    let sitter = MachineSitter::start(&["--machine-id", "m1"]);
    sitter.put_task("svc \"a\"", spec("sleep 408"));
    sitter.wait_running("svc \"a\"");
    let text = wait_for(TIMEOUT, "the task to be up in the metrics", || {
        let text = sitter
            .http
            .get(sitter.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.contains("cerebro_task_up{machine=\"m1\",task=\"svc \\\"a\\\"\"} 1")
            .then_some(text)
    });
    assert!(
        text.contains("# TYPE cerebro_machine_capacity_cpu_cores gauge"),
        "{text}"
    );
    assert!(
        text.contains("cerebro_task_sitter_starts_total{machine=\"m1\",task=\"svc \\\"a\\\"\"} 1"),
        "{text}"
    );
    // Counts that only grow are counters, as their `_total` names say.
    for counter in [
        "cerebro_task_restarts_total",
        "cerebro_task_sitter_starts_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {counter} counter")),
            "{counter}: {text}"
        );
    }
}

#[test]
fn a_machine_id_that_is_not_a_plain_name_is_refused_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_machinesitter"))
        .args(["--machine-id", "..", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("machine id '..'"), "{stderr}");
}

#[test]
fn control_of_an_unknown_task_or_action_is_a_clear_error() {
    let sitter = MachineSitter::start(&[]);
    let (code, body) = sitter.request("POST", "/api/v1/tasks/ghost/start", None, None);
    assert_eq!(code, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("ghost"));
    sitter.put_task("real", spec("sleep 409"));
    let (code, body) = sitter.request("POST", "/api/v1/tasks/real/explode", None, None);
    assert_eq!(code, 404, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("start, stop, restart"));
}

#[test]
fn restart_gives_a_new_workload_under_the_same_tasksitter() {
    let sitter = MachineSitter::start(&[]);
    sitter.put_task("restartable", spec("sleep 410"));
    let (sitter_pid, workload) = sitter.wait_running("restartable");
    let (code, body) = sitter.request("POST", "/api/v1/tasks/restartable/restart", None, None);
    assert_eq!(code, 200, "{body}");
    let (same_sitter, new_workload) = wait_for(TIMEOUT, "the new workload", || {
        let now = sitter.wait_running("restartable");
        (now.1 != workload).then_some(now)
    });
    assert_eq!(same_sitter, sitter_pid);
    assert!(process_gone(workload));
    assert_eq!(cmdline(new_workload), ["sleep", "410"]);
}

#[test]
fn a_failure_after_the_flags_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let state = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_machinesitter"))
        .args(["--port", &port, "--bind", "127.0.0.1", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("machinesitter: error: cannot listen on 127.0.0.1:"),
        "{stderr}"
    );
}

#[test]
fn a_machinesitter_that_cannot_use_its_state_dir_leaves_no_address_file() {
    let scratch = tempfile::tempdir().unwrap();
    // A file where the state dir should be: binding works, loading does not.
    let state_dir = scratch.path().join("state");
    std::fs::write(&state_dir, b"not a directory").unwrap();
    let address_file = scratch.path().join("address");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_machinesitter"))
        .args(["--port", "0", "--bind", "127.0.0.1", "--state-dir"])
        .arg(&state_dir)
        .arg("--address-file")
        .arg(&address_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot use the state dir"), "{stderr}");
    assert!(
        !address_file.exists(),
        "the address file is written only once the machinesitter is ready"
    );
}

#[test]
fn a_throttle_the_poll_backend_cannot_enforce_is_a_400_naming_cpu_action() {
    let sitter = MachineSitter::start(&["--limits-backend", "poll"]);
    let (code, body) = sitter.put_task(
        "throttled",
        json!({"command": "sleep 30", "cpu": 0.1, "cpu_action": "throttle"}),
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(field_of(&body), "cpu_action", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cgroup"),
        "{body}"
    );
    let (code, _) = sitter.request("GET", "/api/v1/tasks/throttled", None, None);
    assert_eq!(code, 404, "a refused spec changes nothing");
    // Restart is what the poll backend can do.
    let (code, body) = sitter.put_task(
        "throttled",
        json!({"command": "sleep 30", "cpu": 0.1, "cpu_action": "restart"}),
    );
    assert_eq!(code, 201, "{body}");
}
