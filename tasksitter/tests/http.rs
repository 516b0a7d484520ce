//! The tasksitter's HTTP surface: JSON status and logs, control, auth, HTML, metrics.

mod common;
use common::*;
use serde_json::json;

#[test]
fn status_reports_every_field() {
    let sitter = Sitter::start_http(&[
        "--name",
        "web server",
        "--command",
        "echo up; sleep 60",
        "--mem",
        "100",
        "--cpu",
        "1.5",
        "--time-limit",
        "1h",
    ]);
    let status = sitter.wait_status("a sample of the running task", |s| {
        state_of(s) == StateKind::Running
            && s["processes"].as_u64() > Some(0)
            && s["rss_bytes"].as_u64() > Some(0)
    });
    assert_eq!(status["name"], "web server");
    assert_eq!(status["command"], "echo up; sleep 60");
    let pid = status["pid"].as_u64().unwrap();
    assert_eq!(
        status["state"]["pid"], pid,
        "the pid lives in the running state"
    );
    assert!(status["started_at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(status["uptime_secs"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        (status["starts"].as_u64(), status["restarts"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(status["cpu_cores"].as_f64().is_some());
    assert_eq!(status["limits"]["mem_bytes"], 100 * 1024 * 1024);
    assert_eq!(status["limits"]["cpu_cores"], 1.5);
    assert_eq!(status["limits"]["time_limit_secs"], 3600.0);
    let backend = status["backend"].as_str().unwrap();
    assert!(["cgroup_v1", "cgroup_v2", "poll"].contains(&backend));
    let cgroup_paths = status["cgroup_paths"].as_array().unwrap();
    assert_eq!(
        cgroup_paths.is_empty(),
        backend == "poll",
        "{cgroup_paths:?}"
    );
    assert_eq!(
        status["violations"],
        json!({"memory": 0, "cpu": 0, "time": 0})
    );
    assert!(status["last_exit"].is_null());
    assert_eq!(status["events"][0]["event"], "started");
    assert_eq!(status["tasksitter_pid"], sitter.child.id());
}

#[test]
fn logs_are_listed_tailed_and_followed_by_offset() {
    let sitter = Sitter::start_http(&[
        "--name",
        "printer",
        "--command",
        "for i in 1 2 3 4 5; do echo line-$i; done; echo oops >&2; sleep 60",
    ]);
    wait_for_log_line(&sitter.log_path("printer", "stderr"), "oops");
    let list = sitter.get_json("/api/v1/logs");
    let files: Vec<&str> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, vec!["printer.stdout.log", "printer.stderr.log"]);
    assert!(list["files"][0]["size_bytes"].as_u64().unwrap() > 0);

    let tail = sitter.get_json("/api/v1/logs/stdout?tail=2");
    assert_eq!(tail["data"], "line-4\nline-5\n");
    let next = tail["next_offset"].as_u64().unwrap();
    assert_eq!(next, tail["size_bytes"].as_u64().unwrap());
    let follow = sitter.get_json(&format!("/api/v1/logs/stdout?offset={next}"));
    assert_eq!(
        (follow["data"].as_str(), follow["next_offset"].as_u64()),
        (Some(""), Some(next))
    );
    let from_start = sitter.get_json("/api/v1/logs/stdout?offset=0&limit=1000");
    assert!(from_start["data"]
        .as_str()
        .unwrap()
        .starts_with("--- cerebro tasksitter: start #1"));
    assert_eq!(
        sitter.get_json("/api/v1/logs/stderr?tail=1")["data"],
        "oops\n"
    );

    for (query, field) in [
        ("/api/v1/logs/stdout?tail=-1", "tail"),
        ("/api/v1/logs/stdout?tail=1&offset=0", "offset"),
        ("/api/v1/logs/stdout?path=/etc/passwd", "path"),
        ("/api/v1/logs/..%2F..%2Fetc%2Fpasswd", "stream"),
        ("/api/v1/logs/stdin", "stream"),
    ] {
        let (code, body) = sitter.get_text(query);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (code, body["field"].as_str()),
            (400, Some(field)),
            "{query}: {body}"
        );
    }
}

#[test]
fn uncaptured_stream_is_a_clear_404() {
    let dir = scratch_dir();
    let address_file = dir.path().join("address");
    let mut child = std::process::Command::new(tasksitter_bin())
        .args([
            "--command",
            "sleep 60",
            "--http-monitoring",
            "--http-monitoring-port",
            "0",
            "--http-address-file",
        ])
        .arg(&address_file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let address = wait_for(TIMEOUT, "address", || {
        std::fs::read_to_string(&address_file)
            .ok()
            .filter(|a| !a.is_empty())
    });
    let response = reqwest::blocking::get(format!("http://{address}/api/v1/logs/stdout")).unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("not captured"),
        "{body}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn control_endpoints_stop_start_restart_and_signal() {
    let scratch = scratch_dir();
    let hup = scratch.path().join("hup");
    let command = format!(
        "trap 'echo hup >> {}' HUP; echo ready; while :; do sleep 0.05; done",
        hup.display()
    );
    let sitter = Sitter::start_http(&[
        "--name",
        "ctl",
        "--command",
        &command,
        "--stop-timeout",
        "2s",
    ]);
    wait_for_log_line(&sitter.log_path("ctl", "stdout"), "ready");
    let first_pid = sitter.status()["pid"].as_u64().unwrap();

    let (code, body) = sitter.post("/api/v1/signal", None, Some(json!({"signal": "hup"})));
    assert_eq!(code, 200, "{body}");
    wait_for_log_line(&hup, "hup");
    let (code, body) = sitter.post("/api/v1/signal", None, Some(json!({"signal": "SIGBOGUS"})));
    assert_eq!(
        (code, body["field"].as_str()),
        (400, Some("signal")),
        "{body}"
    );

    let (code, _) = sitter.post("/api/v1/stop", None, None);
    assert_eq!(code, 200);
    let stopped = sitter.wait_status("stopped", |s| state_of(s) == StateKind::Stopped);
    assert!(stopped["pid"].is_null());
    assert_eq!(
        sitter.child.id(),
        stopped["tasksitter_pid"].as_u64().unwrap() as u32,
        "the tasksitter stays up"
    );

    let (code, body) = sitter.post("/api/v1/start", None, None);
    assert_eq!((code, body["result"].as_str()), (200, Some("started")));
    let second = sitter.wait_status("running again", |s| state_of(s) == StateKind::Running);
    let second_pid = second["pid"].as_u64().unwrap();
    assert_ne!(second_pid, first_pid);

    let (code, _) = sitter.post("/api/v1/restart", None, None);
    assert_eq!(code, 200);
    let third = sitter.wait_status("restarted", |s| {
        state_of(s) == StateKind::Running && s["pid"].as_u64() != Some(second_pid)
    });
    assert_eq!(third["starts"], 3);
    assert_eq!(third["restarts"], 1);
}

#[test]
fn posts_need_the_token() {
    let dir = scratch_dir();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "let-me-in\n").unwrap();
    let sitter = Sitter::start_http(&[
        "--name",
        "guarded",
        "--command",
        "sleep 60",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    sitter.wait_status("running", |s| state_of(s) == StateKind::Running);
    let (code, body) = sitter.post("/api/v1/stop", None, None);
    assert_eq!(code, 401);
    assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
    assert_eq!(sitter.post("/api/v1/stop", Some("wrong"), None).0, 401);
    assert_eq!(
        sitter
            .post("/api/v1/signal", None, Some(json!({"signal": "KILL"})))
            .0,
        401
    );
    assert_eq!(
        state_of(&sitter.status()),
        StateKind::Running,
        "refused requests change nothing"
    );
    assert_eq!(sitter.post("/api/v1/stop", Some("let-me-in"), None).0, 200);
    sitter.wait_status("stopped", |s| state_of(s) == StateKind::Stopped);
}

#[test]
fn html_pages_escape_what_the_task_says() {
    let command = "echo '<script>alert(1)</script>'; sleep 60";
    let sitter = Sitter::start_http(&["--name", "<em>bold & \"quoted\"", "--command", command]);
    wait_for_log_line(&sitter.log_path("_em_bold____quoted_", "stdout"), "alert");
    let (code, stats) = sitter.get_text("/stats");
    assert_eq!(code, 200);
    assert!(
        stats.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{stats}"
    );
    assert!(
        stats.contains("&lt;em&gt;bold &amp; &quot;quoted&quot;"),
        "{stats}"
    );
    assert!(!stats.contains("<script>alert") && !stats.contains("<em>"));
    let (code, logs) = sitter.get_text("/logs?stream=stdout&tail=5");
    assert_eq!(code, 200);
    assert!(logs.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!logs.contains("<script>alert"));
}

#[test]
fn metrics_are_prometheus_text() {
    let sitter = Sitter::start_http(&["--name", "metered", "--command", "sleep 60", "--mem", "64"]);
    sitter.wait_status("running", |s| state_of(s) == StateKind::Running);
    let (code, text) = sitter.get_text("/metrics");
    assert_eq!(code, 200);
    for line in [
        "cerebro_task_up{task=\"metered\"} 1",
        "cerebro_task_starts_total{task=\"metered\"} 1",
        "cerebro_task_memory_limit_bytes{task=\"metered\"} 67108864",
        "cerebro_task_violations_total{task=\"metered\",kind=\"memory\"} 0",
        "# TYPE cerebro_task_rss_bytes gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing '{line}' in:\n{text}"
        );
    }
}
