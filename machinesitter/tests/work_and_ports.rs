//! Where a task runs and what it listens on: a task without `cwd` runs in
//! a directory of its own under the state dir (never in the
//! machinesitter's), and named `ports` are allocated from `--port-range`,
//! one per task, passed in the environment and kept across restarts.

mod common;
use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The workload's working directory, as the kernel says.
fn cwd_of(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).expect("the workload's cwd")
}

/// The stdout the task wrote so far, through the machinesitter's log API.
fn stdout_of(sitter: &MachineSitter, name: &str) -> String {
    let (code, body) = sitter.request(
        "GET",
        &format!("/api/v1/tasks/{}/logs/stdout", encode(name)),
        None,
        None,
    );
    assert_eq!(code, 200, "{body}");
    body["data"].as_str().unwrap_or_default().to_string()
}

/// `<state>/work/<task dir>/`, canonical (the state dir is a temp dir,
/// which may sit behind a symlink).
fn work_dir_of(sitter: &MachineSitter, name: &str) -> PathBuf {
    sitter
        .state_dir()
        .canonicalize()
        .unwrap()
        .join("work")
        .join(cerebro_host::layout::dir_name(name))
}

#[test]
fn a_task_without_cwd_runs_in_its_own_dir_kept_across_restarts_and_removed_with_it() {
    let sitter = MachineSitter::start(&[]);
    let name = "where am i";
    let (code, body) = sitter.put_task(
        name,
        spec("pwd; ls; echo kept >> kept.txt; exec sleep 4711"),
    );
    assert_eq!(code, 201, "{body}");
    let (_, workload) = sitter.wait_running(name);
    let work = work_dir_of(&sitter, name);
    assert_eq!(
        cwd_of(workload),
        work,
        "its own dir, not the machinesitter's"
    );
    let own = std::env::current_dir().unwrap();
    assert_ne!(cwd_of(workload), own);
    let printed = wait_for(TIMEOUT, "pwd's output", || {
        let out = stdout_of(&sitter, name);
        out.contains("work").then_some(out)
    });
    assert!(
        printed.contains(&work.display().to_string()),
        "pwd printed {printed}"
    );
    // `ls` in the machinesitter's cwd (this crate) would list Cargo.toml.
    assert!(!printed.contains("Cargo.toml"), "{printed}");

    // A restart of the task finds what it left there.
    let (code, body) = sitter.request(
        "POST",
        &format!("/api/v1/tasks/{}/restart", encode(name)),
        None,
        None,
    );
    assert_eq!(code, 200, "{body}");
    let restarted = wait_for(TIMEOUT, "the restarted workload", || {
        let (_, pid) = sitter.wait_running(name);
        (pid != workload).then_some(pid)
    });
    assert_eq!(cwd_of(restarted), work);
    wait_for(TIMEOUT, "the second run's line", || {
        std::fs::read_to_string(work.join("kept.txt"))
            .ok()
            .filter(|text| text == "kept\nkept\n")
    });

    let (code, body) = sitter.request(
        "DELETE",
        &format!("/api/v1/tasks/{}", encode(name)),
        None,
        None,
    );
    assert_eq!((code, body["result"].as_str()), (200, Some("deleted")));
    assert!(!work.exists(), "the work dir goes with the task");
}

#[test]
fn a_task_with_cwd_runs_there_and_gets_no_work_dir() {
    let sitter = MachineSitter::start(&[]);
    let mut with_cwd = spec("exec sleep 4712");
    with_cwd["cwd"] = json!("/tmp");
    let (code, body) = sitter.put_task("in tmp", with_cwd);
    assert_eq!(code, 201, "{body}");
    let (_, workload) = sitter.wait_running("in tmp");
    assert_eq!(cwd_of(workload), Path::new("/tmp").canonicalize().unwrap());
    assert!(!work_dir_of(&sitter, "in tmp").exists());
}

/// A free port of 127.0.0.1 for a one-port `--port-range`, held by the
/// returned listener until the test drops it.
fn held_port() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// An HTTP server on `$PORT` serving its working directory, where it
/// first leaves a file named `marker`.
fn web_server(marker: &str) -> serde_json::Value {
    let mut spec = spec(&format!(
        "touch {marker}; exec python3 -m http.server $PORT --bind 127.0.0.1"
    ));
    spec["ports"] = json!(["http"]);
    spec
}

/// `GET http://127.0.0.1:{port}/`, once it answers.
fn get_root(port: u16) -> String {
    let http = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    wait_for(TIMEOUT, &format!("the server on port {port}"), || {
        let response = http.get(format!("http://127.0.0.1:{port}/")).send().ok()?;
        response.text().ok()
    })
}

fn http_port(sitter: &MachineSitter, name: &str) -> u16 {
    *sitter
        .task_view(name)
        .ports
        .get("http")
        .unwrap_or_else(|| panic!("'{name}' has an http port"))
}

#[test]
fn two_tasks_get_different_ports_which_they_bind_and_keep_across_restarts() {
    let mut sitter = MachineSitter::start(&["--port-range", "19600-19699"]);
    for (name, marker) in [("web a", "served-a"), ("web b", "served-b")] {
        let (code, body) = sitter.put_task(name, web_server(marker));
        assert_eq!(code, 201, "{body}");
        // Allocated with the task: the answer to the PUT names its port.
        let port = body["task"]["ports"]["http"].as_u64().unwrap_or_default();
        assert!((19600..=19699).contains(&port), "{body}");
    }
    let (a, b) = (http_port(&sitter, "web a"), http_port(&sitter, "web b"));
    assert_ne!(a, b, "one port is never given to two tasks");
    let (_, pid_a) = sitter.wait_running("web a");
    let (_, pid_b) = sitter.wait_running("web b");
    for (pid, port) in [(pid_a, a), (pid_b, b)] {
        let port = port.to_string();
        assert_eq!(
            cerebro_tests::env_of(pid as u32, "PORT"),
            Some(port.clone())
        );
        assert_eq!(
            cerebro_tests::env_of(pid as u32, "CEREBRO_PORT_HTTP"),
            Some(port)
        );
    }
    // Each serves its own working directory, not the machinesitter's.
    let listing = get_root(a);
    assert!(listing.contains("served-a"), "{listing}");
    assert!(!listing.contains("Cargo.toml"), "{listing}");
    assert!(get_root(b).contains("served-b"));

    // A restart of the task keeps its port.
    let (code, body) = sitter.request("POST", "/api/v1/tasks/web%20a/restart", None, None);
    assert_eq!(code, 200, "{body}");
    let pid = wait_for(TIMEOUT, "web a to run again", || {
        let (_, pid) = sitter.wait_running("web a");
        (pid != pid_a).then_some(pid)
    });
    assert_eq!(http_port(&sitter, "web a"), a);
    assert_eq!(
        cerebro_tests::env_of(pid as u32, "PORT"),
        Some(a.to_string())
    );
    get_root(a);

    // So does a restart of the machinesitter: kept in its state, the tasks
    // are re-adopted, not restarted.
    sitter.kill9();
    sitter.boot();
    assert_eq!(
        (http_port(&sitter, "web a"), http_port(&sitter, "web b")),
        (a, b)
    );
    assert_eq!(sitter.wait_running("web b").1, pid_b, "re-adopted");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sitter.state_dir().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["tasks"]["web b"]["ports"]["http"],
        json!(b),
        "{state}"
    );

    // The same spec again changes nothing; a second port keeps the first.
    let (code, body) = sitter.put_task("web b", web_server("served-b"));
    assert_eq!((code, body["result"].as_str()), (200, Some("unchanged")));
    let mut two = spec("exec sleep 4713");
    two["ports"] = json!(["http", "admin_1"]);
    let (code, body) = sitter.put_task("two ports", two.clone());
    assert_eq!(code, 201, "{body}");
    let (_, pid) = sitter.wait_running("two ports");
    let ports = sitter.task_view("two ports").ports;
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert!(!ports.values().any(|p| *p == a || *p == b), "{ports:?}");
    assert_eq!(
        cerebro_tests::env_of(pid as u32, "CEREBRO_PORT_ADMIN_1"),
        Some(ports["admin_1"].to_string())
    );
    assert_eq!(
        cerebro_tests::env_of(pid as u32, "PORT"),
        None,
        "PORT only for a single port"
    );
    two["ports"] = json!(["admin_1"]);
    let (code, body) = sitter.put_task("two ports", two);
    assert_eq!((code, body["result"].as_str()), (200, Some("updated")));
    assert_eq!(
        body["task"]["ports"],
        json!({"admin_1": ports["admin_1"]}),
        "a kept name keeps its port"
    );
}

#[test]
fn bad_ports_are_a_400_naming_the_field_and_a_full_range_a_409() {
    let (_listener, taken) = held_port();
    let range = format!("{taken}-{taken}");
    let sitter = MachineSitter::start(&["--port-range", &range]);
    let cases = [
        (json!(["HTTP"]), json!({}), "ports"),
        (json!(["web-ui"]), json!({}), "ports"),
        (json!(["a", "a"]), json!({}), "ports"),
        (
            json!((0..17).map(|i| format!("p{i}")).collect::<Vec<_>>()),
            json!({}),
            "ports",
        ),
        (json!("http"), json!({}), "ports"),
        (json!(["http"]), json!({"PORT": "80"}), "env"),
    ];
    for (ports, env, field) in cases {
        let mut bad = spec("sleep 1");
        bad["ports"] = ports.clone();
        bad["env"] = env;
        let (code, reply) = sitter.put_task("bad", bad);
        assert_eq!(code, 400, "{ports}: {reply}");
        let named = reply["field"] == field
            || reply["errors"]
                .as_array()
                .is_some_and(|errors| errors.iter().any(|e| e["field"] == field));
        assert!(named, "{ports}: names {field}: {reply}");
    }
    // The only port of the range is bound by another process.
    let mut wants_one = spec("sleep 1");
    wants_one["ports"] = json!(["http"]);
    let (code, reply) = sitter.put_task("full", wants_one);
    assert_eq!(code, 409, "{reply}");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("ports 'http'") && error.contains(&range),
        "{reply}"
    );
    let (_, tasks) = sitter.request("GET", "/api/v1/tasks", None, None);
    assert_eq!(tasks, json!([]), "nothing was half-applied");
}

#[test]
fn a_bad_port_range_is_refused_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_machinesitter"))
        .args(["--port-range", "9-8", "--tasksitter-bin"])
        .arg(tasksitter_bin())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--port-range"), "{stderr}");
}
